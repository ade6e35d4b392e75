"""The rules that check a configuration: `check-config` prints them, `serve` refuses to start on
a fatal one.

`load_settings` reads the settings the way the service does and reports, in one run, every
problem it finds, each naming the setting as an operator writes it (the environment variable,
or the key in `BFF_APPS_FILE`):

* names the service does not know, wherever they come from (the environment, `.env`, the
  apps file, a nested app field), with the nearest valid name; fatal in production, a warning
  in development;
* values it cannot use (pydantic's validation errors, renamed);
* `config_problems`: what is valid but unsafe or unworkable.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dotenv import dotenv_values
from pydantic import BaseModel, ValidationError

from ..kit.urls import origin_of, site_of
from .settings import (
    AdminSettings,
    AppConfig,
    SandboxClient,
    SandboxSettings,
    Settings,
    TelenorSettings,
    parse_keys,
)

PREFIX = "BFF_"
# Environment variables of the test harness, not settings (tests/support/servers.py).
RESERVED = ("BFF_TEST_",)
# The session key printed in .env.example: anyone can read it.
EXAMPLE_KEY = "q5pN2m1kOq9cS7iVx3yWb0tR8uE4aZ6dF1gH2jK3lM4"
_PLACEHOLDER = re.compile(r"^(replace[-_ ]?with|change[-_ ]?me|your[-_ ]|<|todo|xxx)", re.I)


@dataclass(frozen=True)
class Problem:
    """One finding; fatal ones stop the service from starting."""

    message: str
    fatal: bool

    def __str__(self) -> str:
        return f"{'FATAL' if self.fatal else 'WARN '} {self.message}"


def load_settings(
    environ: Mapping[str, str] | None = None,
    env_file: str | Path | None = ".env",
    *,
    settings_cls: type[Settings] = Settings,
    defaults: Mapping[str, Any] | None = None,
    strict_names: bool | None = None,
) -> tuple[Settings | None, list[Problem]]:
    """The settings the service would run with (None when they cannot be built) and every
    problem found in them.

    `settings_cls` and `defaults` are how `dev` reads the same sources with its own defaults
    underneath; `strict_names` makes an unknown name fatal (by default it is in production)."""
    environ = os.environ if environ is None else environ
    dotenv: dict[str, str | None] = {}
    if env_file is not None and Path(env_file).is_file():
        dotenv = dotenv_values(env_file)
    names = {name.upper(): name for name in (*dotenv, *environ) if name.upper().startswith(PREFIX)}
    strict = _env_of(environ, dotenv) != "development" if strict_names is None else strict_names
    problems = [
        Problem(f"{name}: unknown setting{_suggestion(name)}", strict)
        for name in sorted(names)
        if not _known(name)
    ]
    try:
        settings = settings_cls(_env_file=env_file, **(defaults or {}))
    except ValidationError as exc:
        return None, [*problems, *_validation_problems(exc)]
    except ValueError as exc:  # BFF_APPS_FILE unreadable
        return None, [*problems, Problem(str(exc), True)]
    if settings.apps_file is not None:
        problems += _apps_file_problems(settings.apps_file, strict)
    return settings, [*problems, *config_problems(settings)]


def peek(name: str, environ: Mapping[str, str], env_file: str | Path | None) -> str | None:
    """One setting's raw value as the sources give it (the environment, then the env file),
    before the settings are read."""
    if name in environ:
        return environ[name]
    if env_file is not None and Path(env_file).is_file():
        return dotenv_values(env_file).get(name)
    return None


def _env_of(environ: Mapping[str, str], dotenv: Mapping[str, str | None]) -> str:
    for source in (environ, dotenv):
        for name, value in source.items():
            if name.upper() == "BFF_ENV" and value:
                return value.strip().lower()
    return "production"


# -- names ------------------------------------------------------------------------------------

_GROUPS: dict[str, type[BaseModel]] = {
    "TELENOR": TelenorSettings,
    "ADMIN": AdminSettings,
    "SANDBOX": SandboxSettings,
}


def _fields(model: type[BaseModel]) -> set[str]:
    return {name.upper() for name in model.model_fields}


def _known(name: str) -> bool:
    """Whether `BFF_…` (upper-cased) is a name the settings read."""
    if name.startswith(RESERVED):
        return True
    rest = name.removeprefix(PREFIX)
    top, _, nested = rest.partition("__")
    if not nested:
        return top in _fields(Settings)
    if top == "APPS":
        app, _, field = nested.partition("__")
        return bool(app) and field in _fields(AppConfig)
    if top == "SANDBOX" and nested.startswith("CLIENTS__"):
        client, _, field = nested.removeprefix("CLIENTS__").partition("__")
        return bool(client) and field in _fields(SandboxClient)
    group = _GROUPS.get(top)
    return group is not None and nested in _fields(group) and nested != "CLIENTS"


def _candidates(name: str) -> list[str]:
    """Every valid name of the same shape as `name` (an app's fields for an app's, …)."""
    rest = name.removeprefix(PREFIX)
    top, _, nested = rest.partition("__")
    if not nested:
        return [PREFIX + f for f in _fields(Settings)]
    if top == "APPS":
        app = nested.partition("__")[0]
        return [f"{PREFIX}APPS__{app}__{f}" for f in _fields(AppConfig)]
    if top == "SANDBOX" and nested.startswith("CLIENTS__"):
        client = nested.removeprefix("CLIENTS__").partition("__")[0]
        return [f"{PREFIX}SANDBOX__CLIENTS__{client}__{f}" for f in _fields(SandboxClient)]
    groups = [g for g in _GROUPS if difflib.get_close_matches(top, [g], cutoff=0.7)]
    return [f"{PREFIX}{g}__{f}" for g in groups for f in _fields(_GROUPS[g])]


def _suggestion(name: str) -> str:
    near = difflib.get_close_matches(name, _candidates(name), n=1, cutoff=0.75)
    return f" (did you mean {near[0]}?)" if near else ""


def _apps_file_problems(path: Path, production: bool) -> list[Problem]:
    """Unknown tables and keys in the apps file (its values are validated with the rest)."""
    try:
        with open(path, "rb") as fh:
            document = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError):
        return []  # (reported by the settings themselves)
    out = [
        Problem(f"BFF_APPS_FILE {path}: [{table}] is not a table the service reads", production)
        for table in document
        if table != "apps"
    ]
    fields = {name for name in AppConfig.model_fields}
    for app, table in (document.get("apps") or {}).items():
        for key in table if isinstance(table, dict) else ():
            if key not in fields:
                near = difflib.get_close_matches(key, sorted(fields), n=1, cutoff=0.75)
                hint = f" (did you mean {near[0]}?)" if near else ""
                out.append(
                    Problem(
                        f"BFF_APPS_FILE {path}: [apps.{app}] {key}: unknown setting{hint}",
                        production,
                    )
                )
    return out


def _validation_problems(exc: ValidationError) -> list[Problem]:
    """pydantic's errors, each named by its environment variable."""
    out = []
    for err in exc.errors():
        loc = [str(part) for part in err.get("loc", ()) if not isinstance(part, int)]
        name = PREFIX + "__".join(part.upper() for part in loc) if loc else "settings"
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        out.append(Problem(f"{name}: {message}", True))
    return out


# -- values -----------------------------------------------------------------------------------


def _loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def config_problems(s: Settings) -> list[Problem]:
    """Every problem of a valid configuration, in words a person can act on; never a secret."""
    out: list[Problem] = []

    def fatal(msg: str) -> None:
        out.append(Problem(msg, True))

    def warn(msg: str) -> None:
        out.append(Problem(msg, False))

    prod = s.is_production
    if prod and not s.https:
        fatal(f"BFF_PUBLIC_URL {s.public_url} is http; production needs https")
    if s.network_auth_url and not s.network_auth_url.startswith("http://"):
        warn("BFF_NETWORK_AUTH_URL should be plain http (network authentication needs http)")
    raw_keys = s.session_keys.get_secret_value() if s.session_keys else ""
    if not raw_keys.strip():
        if prod:
            fatal(
                "BFF_SESSION_KEYS is missing: set one or more base64url 32-byte keys "
                "(line-auth-bff check-config --generate-key prints one)"
            )
    else:
        for i, key in enumerate(parse_keys(s.session_keys), start=1):
            if len(key) != 32:
                fatal(f"BFF_SESSION_KEYS key #{i} is not base64url for exactly 32 bytes")
            elif len(set(key)) < 8:
                fatal(f"BFF_SESSION_KEYS key #{i} is weak (too few distinct bytes)")
        if prod and EXAMPLE_KEY in raw_keys:
            fatal(
                "BFF_SESSION_KEYS holds the example key printed in .env.example: generate your "
                "own (line-auth-bff check-config --generate-key)"
            )
    # The token, logout and API calls carry the client secret or tokens: never in clear to
    # anything but this machine (the sandbox, a test stand-in). The authorize URL carries
    # neither, and network authentication may need it on plain http.
    for name, url in (
        ("BFF_TELENOR__TOKEN_URL", s.telenor.token),
        ("BFF_TELENOR__LOGOUT_URL", s.telenor.logout),
        ("BFF_TELENOR__API_URL", s.telenor.api),
    ):
        if prod and url.startswith("http://") and not _loopback(url):
            fatal(f"{name} {url} is plain http: it would carry secrets in clear")
    admin = s.admin
    if admin.address and not admin.tokens_by_name():
        host = admin.host
        if prod and host not in ("127.0.0.1", "::1", "localhost"):
            fatal(
                f"BFF_ADMIN__ADDRESS {admin.address} is not loopback and BFF_ADMIN__TOKENS is "
                "empty: anyone who reaches it could revoke sessions"
            )
    if not s.apps:
        warn("no apps configured: set BFF_APPS__<ID>__CLIENT_ID and friends")
    if s.redis_sentinels and s.redis_cluster:
        fatal("BFF_REDIS_CLUSTER and BFF_REDIS_SENTINELS are exclusive")
    if s.redis_wait_replicas and s.redis_wait_timeout_ms >= s.redis_timeout_seconds * 1000:
        fatal(
            f"BFF_REDIS_WAIT_TIMEOUT_MS {s.redis_wait_timeout_ms} must be shorter than "
            f"BFF_REDIS_TIMEOUT_SECONDS {s.redis_timeout_seconds:g} (the wait would time out the "
            "connection)"
        )
    if not s.redis_url.startswith(("redis://", "rediss://", "unix://")):
        fatal("BFF_REDIS_URL must start with redis://, rediss:// or unix://")
    for app_id, app in s.apps.items():
        out += _app_problems(s, app_id, app)
    limits = (
        s.rate_limit_login_per_minute,
        s.rate_limit_login_per_browser_per_minute,
        s.rate_limit_login_per_app_per_minute,
        s.rate_limit_api_per_minute,
    )
    if prod and not all(limits):
        warn("a rate limit is off (BFF_RATE_LIMIT_*_PER_MINUTE=0)")
    if prod and s.trusted_proxies == ["127.0.0.1", "::1"]:
        warn(
            "BFF_TRUSTED_PROXIES is loopback only: behind a load balancer, list its addresses "
            "or client IPs and https detection will be wrong"
        )
    return out


def _app_problems(s: Settings, app_id: str, app: AppConfig) -> Iterable[Problem]:
    env = f"BFF_APPS__{app_id.upper()}__"
    prod = s.is_production
    secret = app.client_secret.get_secret_value()
    if not secret:
        yield Problem(f"{env}CLIENT_SECRET: the client secret is missing", True)
    elif prod and _PLACEHOLDER.match(secret):
        yield Problem(
            f"{env}CLIENT_SECRET is a placeholder: set the secret from Telenor's dashboard", True
        )
    if not app.client_id:
        yield Problem(f"{env}CLIENT_ID: the client id is missing", True)
    if not app.return_urls:
        yield Problem(f"{env}RETURN_URLS is empty: no login can finish", False)
    for url in app.return_urls:
        parts = urlsplit(url)
        if parts.scheme in ("http", "https"):
            if origin_of(url) not in app.allowed_origins and origin_of(url) != s.public_url:
                yield Problem(
                    f"{env}RETURN_URLS: {url} is outside allowed_origins "
                    f"({env}ALLOWED_ORIGINS {app.allowed_origins})",
                    True,
                )
            if prod and parts.scheme == "http":
                yield Problem(f"{env}RETURN_URLS: {url} is http in production", True)
        elif not re.fullmatch(r"[a-z][a-z0-9+.-]*", parts.scheme) or parts.scheme in (
            "javascript",
            "data",
            "file",
            "vbscript",
            "blob",
        ):
            yield Problem(f"{env}RETURN_URLS: {url!r} has no usable scheme", True)
    for origin in app.allowed_origins:
        if prod and origin.startswith("http://"):
            yield Problem(f"{env}ALLOWED_ORIGINS: {origin} is http in production", True)
        if site_of(origin) != site_of(s.public_url):
            yield Problem(
                f"{env}ALLOWED_ORIGINS: {origin} is on another site than {s.public_url}: "
                "browsers block third-party cookies, so cookie mode will not work from it "
                "(native apps: use OAuth at /oauth2/{app}/authorize; browsers: serve the BFF "
                "under the same site)",
                False,
            )
    if not app.pkce:
        yield Problem(f"{env}PKCE is off (RFC 9700 §2.1.1 recommends it)", False)
