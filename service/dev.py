"""`line-auth-bff dev`: BFF + sandbox + demo app on loopback with zero configuration, and the
apps, origins and URLs of your own beside the demo (`--apps-file`, the environment)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import uvicorn

from .app import client_secrets, create_app
from .config import Problem, Settings, layered, load_settings, peek
from .edge.limits import PROTOCOLS
from .kit.crypto import new_token
from .observe.logs.setup import configure_logging
from .sandbox import Sandbox
from .store.embedded import EmbeddedRedis

DEMO_CLIENT_ID = "demo-client"
DEMO_SECRET = "demo-secret-not-for-production"  # noqa: S105  (the sandbox's demo client)
DEV_SECRET = "dev-secret-not-for-production"  # noqa: S105
# The demo app's native redirect URIs: a native app can try the OAuth profile at once.
DEMO_NATIVE_REDIRECT_URIS = (
    "no.example.lineauthdemo:/oauth2redirect",
    "http://127.0.0.1/oauth2redirect",
)
# Stands for "start the embedded Redis" until the sources are read; never connected to.
EMBEDDED_REDIS = "redis://embedded-redis.invalid:6379/0"


def load_dev_settings(
    port: int,
    host: str = "127.0.0.1",
    *,
    public_url: str | None = None,
    apps_file: str | None = None,
    env_file: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[Settings | None, list[Problem]]:
    """What `dev` runs with, read as `check-config` reads (`load_settings`): the demo app, the
    sandbox on port+1, the admin listener on port+2, and whatever the environment, the
    `--env-file` and the `--apps-file` add. An unknown name is fatal here: `dev` is where a
    configuration is first written."""
    environ = os.environ if environ is None else environ
    forced: dict[str, Any] = {"env": "development"}
    if public_url:
        forced["public_url"] = public_url
    if apps_file:
        forced["apps_file"] = apps_file
    public = (public_url or peek("BFF_PUBLIC_URL", environ, env_file) or "").rstrip("/")
    public = public or f"http://localhost:{port}"
    parts = urlsplit(public)
    defaults = {
        "public_url": public,
        "redis_url": EMBEDDED_REDIS,
        # The BFF calls the sandbox here; the browser (or a phone's) is sent to it on the
        # public URL's host.
        "telenor": {
            "base_url": f"http://{_reach(host)}:{port + 1}",
            "authorize_url": f"{parts.scheme}://{parts.hostname}:{port + 1}/oauth/v2/authorize",
        },
        # The admin listener on port+2, with a token of this run's own (printed).
        "admin": {"address": f"127.0.0.1:{port + 2}", "tokens": f"dev:{new_token(18)}"},
        "apps": {
            "demo": {
                "client_id": DEMO_CLIENT_ID,
                "client_secret": DEMO_SECRET,
                "display_name": "Demo-appen",
                "allowed_origins": [public],
                "return_urls": [f"{public}/demo"],
                "native_redirect_uris": list(DEMO_NATIVE_REDIRECT_URIS),
            }
        },
    }
    return load_settings(
        environ,
        env_file=env_file,
        settings_cls=layered(forced, _sandbox_client),
        defaults=defaults,
        strict_names=True,
    )


def dev_settings(port: int, redis_url: str | None, host: str = "127.0.0.1") -> Settings:
    """The zero-configuration settings (the demo app) for tests and embedding; raises on a
    problem `dev` would refuse."""
    settings, problems = load_dev_settings(port, host, environ={})
    fatal = [str(p) for p in problems if p.fatal]
    if settings is None or fatal:
        raise ValueError("; ".join(fatal))
    return settings.model_copy(update={"redis_url": redis_url or EMBEDDED_REDIS})


def _sandbox_client(app_id: str) -> dict[str, Any]:
    """An app of your own needs no Telenor client in `dev`: the sandbox registers this one."""
    return {"client_id": f"{app_id}-dev-client", "client_secret": DEV_SECRET}


def _reach(host: str) -> str:
    """Where this machine reaches a server that `dev` binds on `host`."""
    return "localhost" if host in ("0.0.0.0", "::", "127.0.0.1", "localhost") else host  # noqa: S104


def run_dev(
    port: int,
    host: str = "127.0.0.1",
    *,
    public_url: str | None = None,
    apps_file: str | None = None,
    env_file: str | None = None,
) -> int:
    """`dev`: every problem one line (exit 2 on a fatal one), then the servers until Ctrl-C."""
    if env_file is None and Path(".env").is_file():
        print("dev is not reading ./.env (pass --env-file .env to use it)", flush=True)
    elif env_file is not None:
        if not Path(env_file).is_file():
            print(f"FATAL --env-file {env_file}: no such file", file=sys.stderr)
            return 2
        print(f"dev is reading settings from {env_file}", flush=True)
    settings, problems = load_dev_settings(
        port, host, public_url=public_url, apps_file=apps_file, env_file=env_file
    )
    for problem in problems:
        print(problem, file=sys.stderr, flush=True)
    if settings is None or any(p.fatal for p in problems):
        print("refusing to start (fix the FATAL lines above)", file=sys.stderr)
        return 2
    binds = [(host, port), (host, port + 1)]
    if settings.admin.address:
        binds.append((settings.admin.host, settings.admin.port))
    busy = [p for h, p in binds if not free_to_bind(h, p)]
    if busy:
        print(
            f"FATAL port {busy[0]} is in use: dev needs {port}, {port + 1} (sandbox) and "
            f"{port + 2} (admin); try ./scripts/dev --port {port + 100}",
            file=sys.stderr,
        )
        return 2
    redis: EmbeddedRedis | None = None
    if settings.redis_url == EMBEDDED_REDIS:
        redis = EmbeddedRedis().start()
        settings = settings.model_copy(update={"redis_url": redis.url})
    try:
        asyncio.run(_serve(settings, host, port, embedded=redis is not None))
    except KeyboardInterrupt:
        pass
    finally:
        if redis is not None:
            redis.close()
    return 0


async def _serve(settings: Settings, host: str, port: int, *, embedded: bool) -> None:
    access_log = configure_logging("human", settings.log_level, client_secrets(settings))
    sandbox = Sandbox(settings)
    bff = uvicorn.Config(
        create_app(settings, access_log=access_log),
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        proxy_headers=False,
        http=PROTOCOLS["httptools"],
        h11_max_incomplete_event_size=settings.max_header_bytes,
    )
    upstream = uvicorn.Config(
        sandbox.app, host=host, port=port + 1, log_config=None, access_log=False
    )
    print(_banner(settings, port, embedded), flush=True)
    sockets = [_bind(host, port)]
    if settings.admin.address:
        sockets.append(_bind(settings.admin.host, settings.admin.port))
    with contextlib.suppress(asyncio.CancelledError, KeyboardInterrupt):
        await asyncio.gather(
            uvicorn.Server(bff).serve(sockets=sockets), uvicorn.Server(upstream).serve()
        )


def _banner(settings: Settings, port: int, embedded: bool) -> str:
    public = settings.public_url
    lines = [
        "Line Auth BFF (development)",
        f"  demo page      {public}/demo",
        f"  BFF            {public}",
        f"  OpenAPI        {public}/openapi.json",
        f"  sandbox        {settings.telenor.authorize.removesuffix('/oauth/v2/authorize')}/",
    ]
    if settings.admin.address:
        token = next(iter(settings.admin.tokens_by_name().values()), "")
        lines.append(
            f"  admin          http://{settings.admin.address}/admin/sessions"
            f"  (Authorization: Bearer {token})"
        )
    lines.append(f"  Redis          {'embedded ' if embedded else ''}{settings.redis_url}")
    for app_id, app in settings.apps.items():
        lines.append(f"  app {app_id:<10} client {app.client_id}")
        for label, values in (
            ("origins", app.allowed_origins),
            ("return URLs", app.return_urls),
            ("native URIs", app.native_redirect_uris),
        ):
            if values:
                lines.append(f"    {label:<12} {', '.join(values)}")
    lines.append("Ctrl-C stops everything.")
    return "\n".join(lines)


def free_to_bind(host: str, port: int) -> bool:
    """Whether `dev` can bind the port as it will (`_bind`): nobody listens there. Connections
    of the last run that linger in TIME-WAIT after a Ctrl-C do not count."""
    try:
        _bind(host, port).close()
    except OSError:
        return False
    return True


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket()
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock
