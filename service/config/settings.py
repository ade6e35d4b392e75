"""The settings, as typed models: what the service can be told (`BFF_…`)."""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from ..kit.urls import origin_of, redirect_uri_problem

APP_ID = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
DEFAULT_UPSTREAM_PATHS = ("user-info/v1/users", "mobile-device-info/v1/device")


def _split_list(value: Any) -> Any:
    """Accept a JSON list or a comma-separated string for list settings."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


class AppConfig(BaseModel):
    """One Telenor client the BFF serves (`BFF_APPS__{ID}__…`)."""

    # Unknown fields are reported, named as the operator wrote them, by `checks.load_settings`.
    model_config = ConfigDict(extra="ignore")

    client_id: str
    client_secret: SecretStr
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    return_urls: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Native apps' redirect URIs (RFC 8252): private-use schemes, claimed https URLs, loopback.
    native_redirect_uris: Annotated[list[str], NoDecode] = Field(default_factory=list)
    scope: str | None = None
    display_name: str | None = None
    upstream_paths: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_UPSTREAM_PATHS)
    )
    pkce: bool = True
    send_redirect_uri: bool = True
    send_response_type: bool = True
    # Learn the subscriber (one Mobile User Info call per login) to list and revoke its
    # sessions by MSISDN; off, the app's sessions are revocable by app and reference only.
    subscriber_index: bool = True

    _split = field_validator(
        "allowed_origins", "return_urls", "native_redirect_uris", "upstream_paths", mode="before"
    )(_split_list)

    @field_validator("native_redirect_uris")
    @classmethod
    def _native_redirects(cls, value: list[str]) -> list[str]:
        for uri in value:
            problem = redirect_uri_problem(uri)
            if problem:
                raise ValueError(f"native redirect URI {uri!r} {problem}")
        return value

    @field_validator("allowed_origins")
    @classmethod
    def _origins_are_origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin == "*" or origin_of(origin) != origin.rstrip("/").lower():
                raise ValueError(
                    f"allowed origin {origin!r} must be exactly scheme://host[:port], "
                    "no path, no '*'"
                )
        return [origin.rstrip("/").lower() for origin in value]

    @field_validator("upstream_paths")
    @classmethod
    def _paths_are_relative(cls, value: list[str]) -> list[str]:
        for path in value:
            if not re.fullmatch(r"[A-Za-z0-9._~-]+(/[A-Za-z0-9._~-]+)*", path) or ".." in path:
                raise ValueError(
                    f"upstream path {path!r} must be a plain relative path like a/v1/b"
                )
        return value


class TelenorSettings(BaseModel):
    """Telenor's endpoints (`BFF_TELENOR__…`); each URL defaults from `base_url`."""

    base_url: str = "https://api.telenor.no"
    authorize_url: str | None = None
    token_url: str | None = None
    logout_url: str | None = None
    api_url: str | None = None
    timeout_seconds: float = 10.0
    logout_timeout_seconds: float = 2.0

    @property
    def authorize(self) -> str:
        return self.authorize_url or f"{self.base_url.rstrip('/')}/oauth/v2/authorize"

    @property
    def token(self) -> str:
        return self.token_url or f"{self.base_url.rstrip('/')}/oauth/v2/token"

    @property
    def logout(self) -> str:
        return self.logout_url or f"{self.base_url.rstrip('/')}/oauth/v2/logout"

    @property
    def api(self) -> str:
        return (self.api_url or self.base_url).rstrip("/")


class AdminSettings(BaseModel):
    """The admin listener (`BFF_ADMIN__…`): metrics and the admin API, off the public port."""

    # host:port of the listener; empty turns it off.
    address: str = "127.0.0.1:9100"
    # Comma-separated `name:token` entries (a bare token is named token-1, token-2, …); the
    # name is what the audit log says an admin call was made with.
    tokens: SecretStr | None = None

    @field_validator("address")
    @classmethod
    def _host_port(cls, value: str) -> str:
        value = value.strip()
        if value:
            host, _, port = value.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{value!r} must be host:port, like 127.0.0.1:9100")
        return value

    @property
    def host(self) -> str:
        return self.address.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.address.rpartition(":")[2]) if self.address else 0

    def tokens_by_name(self) -> dict[str, str]:
        """name -> token."""
        out: dict[str, str] = {}
        raw = self.tokens.get_secret_value() if self.tokens else ""
        for i, entry in enumerate((e.strip() for e in raw.split(",")), start=1):
            if entry:
                name, sep, token = entry.partition(":")
                out[name if sep else f"token-{i}"] = token if sep else entry
        return out


class SandboxClient(BaseModel):
    """A client registered at the sandbox in addition to (or instead of) the BFF's own apps."""

    client_id: str
    client_secret: SecretStr
    callback_urls: Annotated[list[str], NoDecode] = Field(default_factory=list)
    display_name: str | None = None

    _split = field_validator("callback_urls", mode="before")(_split_list)


class SandboxSettings(BaseModel):
    """Knobs of the Telenor sandbox (`BFF_SANDBOX__…`)."""

    clients: dict[str, SandboxClient] = Field(default_factory=dict)
    token_lifetime_seconds: int = 3599
    refresh_tokens: bool = False
    code_ttl_seconds: int = 60
    ussd_timeout_seconds: int = 120
    hang_seconds: float = 30.0


class Settings(BaseSettings):
    """Everything the service can be told. Passed into `create_app`, never read at import."""

    model_config = SettingsConfigDict(
        env_prefix="BFF_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
    )

    env: Literal["production", "development"] = "production"
    public_url: str = "http://localhost:8000"
    network_auth_url: str | None = None
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_cluster: bool = False
    redis_sentinels: Annotated[list[str], NoDecode] = Field(default_factory=list)
    redis_sentinel_service: str = "mymaster"
    redis_key_prefix: str = "bff:"
    redis_timeout_seconds: float = 1.0
    # Durable logins: after writing a new session, wait (Redis WAIT, in the same round trip)
    # until this many replicas hold it, at most the timeout; 0 does not wait.
    redis_wait_replicas: int = Field(default=0, ge=0, le=16)
    redis_wait_timeout_ms: int = Field(default=250, ge=1, le=10_000)
    session_keys: SecretStr | None = None
    telenor: TelenorSettings = Field(default_factory=TelenorSettings)
    admin: AdminSettings = Field(default_factory=AdminSettings)
    state_ttl_seconds: int = Field(default=600, ge=30, le=3600)
    code_ttl_seconds: int = Field(default=60, ge=5, le=600)  # native apps' codes
    session_max_seconds: int = Field(default=28800, ge=60)
    refresh_skew_seconds: int = Field(default=60, ge=0)
    apps: dict[str, AppConfig] = Field(default_factory=dict)
    apps_file: Path | None = None
    # Login starts per client address (an IPv4 address, or an IPv6 prefix of
    # `rate_limit_ipv6_prefix` bits): a flood guard sized for carrier-grade NAT, where one
    # address carries a mobile operator's whole pool of subscribers.
    rate_limit_login_per_minute: int = Field(default=3000, ge=0)
    # Login starts per browser (its binding cookie): what stops one browser or script.
    rate_limit_login_per_browser_per_minute: int = Field(default=30, ge=0)
    # Login starts per app, from everyone: bounds the live states in Redis and what reaches
    # Telenor, whatever the number of addresses.
    rate_limit_login_per_app_per_minute: int = Field(default=6000, ge=0)
    rate_limit_ipv6_prefix: int = Field(default=64, ge=32, le=128)
    rate_limit_api_per_minute: int = Field(default=600, ge=0)
    # Size limits on what clients send and what Telenor answers.
    max_header_bytes: int = Field(default=32768, ge=4096, le=1 << 20)
    max_body_bytes: int = Field(default=16384, ge=1024, le=16 << 20)
    max_upstream_body_bytes: int = Field(default=1 << 20, ge=16384, le=64 << 20)
    # Requests one process serves at once (0: no limit); one more waits up to
    # `shed_after_ms` for a slot, then gets 503 `overloaded` with Retry-After (probes and the
    # admin listener excepted).
    max_in_flight: int = Field(default=256, ge=0)
    shed_after_ms: int = Field(default=100, ge=0, le=10_000)
    log_format: Literal["json", "human"] = "json"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["127.0.0.1", "::1"]
    )
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)

    _split = field_validator("redis_sentinels", "trusted_proxies", mode="before")(_split_list)

    @model_validator(mode="before")
    @classmethod
    def _merge_apps_file(cls, data: Any) -> Any:
        """Apps from `BFF_APPS_FILE` (TOML, `[apps.<id>]` tables) under env values: env wins;
        then each app's `app_defaults` under both."""
        if not isinstance(data, dict):
            return data
        apps = _tables(data.get("apps"))
        path = data.get("apps_file")
        if path:
            try:
                with open(path, "rb") as fh:
                    document = tomllib.load(fh)
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise ValueError(f"BFF_APPS_FILE {path}: {exc}") from exc
            merged = _tables(document.get("apps"))
            for app, fields in apps.items():
                below = merged.get(app, {})
                both = isinstance(below, dict) and isinstance(fields, dict)
                merged[app] = {**below, **fields} if both else fields
            apps = merged
        if not apps:
            return data
        filled = {
            app: {**cls.app_defaults(app), **fields} if isinstance(fields, dict) else fields
            for app, fields in apps.items()
        }
        return {**data, "apps": filled}

    @classmethod
    def app_defaults(cls, app_id: str) -> dict[str, Any]:
        """Values an app gets when neither the environment nor the apps file gives them: none
        here (`dev` gives its apps a sandbox client)."""
        return {}

    @field_validator("apps")
    @classmethod
    def _app_ids(cls, apps: dict[str, AppConfig]) -> dict[str, AppConfig]:
        for app_id in apps:
            if not APP_ID.match(app_id):
                raise ValueError(
                    f"app id {app_id!r} must match ^[a-z][a-z0-9_]{{0,31}}$ "
                    "(lower-case letter first, then letters, digits or _)"
                )
        seen: dict[str, str] = {}
        for app_id, app in apps.items():
            if app.client_id in seen:
                raise ValueError(
                    f"apps {seen[app.client_id]!r} and {app_id!r} share client id; "
                    "each app needs its own Telenor client"
                )
            seen[app.client_id] = app_id
        return apps

    @field_validator("public_url", "network_auth_url")
    @classmethod
    def _origin_only(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.rstrip("/")
        if urlsplit(value).scheme not in ("http", "https") or origin_of(value) != value.lower():
            raise ValueError(f"{value!r} must be an origin like https://bff.example.no (no path)")
        return value

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def https(self) -> bool:
        return self.public_url.startswith("https://")

    def callback_url(self, app: str) -> str:
        return f"{self.public_url}/auth/{app}/callback"

    def keys(self) -> list[bytes]:
        """The session encryption keys, first one encrypting (validated in `config_problems`)."""
        return parse_keys(self.session_keys)


def layered(
    forced: Mapping[str, Any], app_defaults: Callable[[str], dict[str, Any]]
) -> type[Settings]:
    """`Settings` whose init values lie beneath the environment and the env file (defaults
    that one variable can change a field of), with `forced` above them, and `app_defaults`
    filling what no source gives an app. How `dev` layers its zero configuration."""

    class Layered(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            above = InitSettingsSource(settings_cls, dict(forced))
            return above, env_settings, dotenv_settings, file_secret_settings, init_settings

        @classmethod
        def app_defaults(cls, app_id: str) -> dict[str, Any]:
            return app_defaults(app_id)

    return Layered


def _tables(value: Any) -> dict[str, Any]:
    """`{app id: fields}` from the environment or a TOML document, ids lower-cased; what is not
    a table is left to validation."""
    if not isinstance(value, dict):
        return {}
    return {str(k).lower(): dict(v) if isinstance(v, dict) else v for k, v in value.items()}


def parse_keys(raw: SecretStr | None) -> list[bytes]:
    if raw is None:
        return []
    keys = []
    for part in raw.get_secret_value().split(","):
        part = part.strip()
        if not part:
            continue
        try:
            key = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        except (binascii.Error, ValueError):
            key = b""
        keys.append(key)
    return keys


def generate_key() -> str:
    """A fresh base64url 32-byte session key."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
