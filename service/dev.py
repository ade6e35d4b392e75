"""`line-auth-bff dev`: BFF + sandbox + demo app on loopback with zero configuration."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys

import uvicorn

from .app import client_secrets, create_app
from .config import Settings
from .edge.limits import PROTOCOLS
from .kit.crypto import new_token
from .observe.logs.setup import configure_logging
from .sandbox import Sandbox
from .store.embedded import EmbeddedRedis

DEMO_CLIENT_ID = "demo-client"
DEMO_SECRET = "demo-secret-not-for-production"  # noqa: S105  (the sandbox's demo client)


def dev_settings(port: int, redis_url: str | None, host: str = "localhost") -> Settings:
    """Development settings: the demo app, the sandbox on port+1; the environment may add more."""
    public = f"http://{host}:{port}"
    overrides: dict[str, object] = {
        "env": "development",
        "public_url": public,
        "telenor": {"base_url": f"http://{host}:{port + 1}"},
        # The admin listener on port+2, with a token of this run's own (printed).
        "admin": {"address": f"127.0.0.1:{port + 2}", "tokens": f"dev:{new_token(18)}"},
    }
    if redis_url:
        overrides["redis_url"] = redis_url
    settings = Settings(**overrides)  # type: ignore[arg-type]  # pydantic coerces the dicts
    if "demo" not in settings.apps:
        apps = dict(settings.apps)
        apps["demo"] = Settings.model_validate(
            {
                "env": "development",
                "apps": {
                    "demo": {
                        "client_id": DEMO_CLIENT_ID,
                        "client_secret": DEMO_SECRET,
                        "display_name": "Demo-appen",
                        "allowed_origins": [public],
                        "return_urls": [f"{public}/demo"],
                        # A native app can try the OAuth profile against `dev` at once.
                        "native_redirect_uris": [
                            "no.example.lineauthdemo:/oauth2redirect",
                            "http://127.0.0.1/oauth2redirect",
                        ],
                    }
                },
            }
        ).apps["demo"]
        settings = settings.model_copy(update={"apps": apps})
    return settings


async def run_dev(port: int, host: str = "127.0.0.1") -> int:
    busy = [p for p in (port, port + 1, port + 2) if not free_to_bind(host, p)]
    if busy:
        print(
            f"FATAL port {busy[0]} on {host} is in use: dev needs {port}, {port + 1} (sandbox) "
            f"and {port + 2} (admin); try ./scripts/dev --port {port + 100}",
            file=sys.stderr,
        )
        return 2
    redis: EmbeddedRedis | None = None
    redis_url = os.environ.get("BFF_REDIS_URL")
    if not redis_url:
        redis = EmbeddedRedis().start()
        redis_url = redis.url
    try:
        settings = dev_settings(port, redis_url)
        access_log = configure_logging("human", settings.log_level, client_secrets(settings))
        sandbox = Sandbox(settings)
        admin = f"http://{settings.admin.address}/admin/sessions"
        token = next(iter(settings.admin.tokens_by_name().values()))
        servers = [
            uvicorn.Server(
                uvicorn.Config(
                    create_app(settings, access_log=access_log),
                    host=host,
                    port=port,
                    log_config=None,
                    access_log=False,
                    proxy_headers=False,
                    http=PROTOCOLS["httptools"],
                    h11_max_incomplete_event_size=settings.max_header_bytes,
                )
            ),
            uvicorn.Server(
                uvicorn.Config(
                    sandbox.app, host=host, port=port + 1, log_config=None, access_log=False
                )
            ),
        ]
        print(
            f"Line Auth BFF (development)\n"
            f"  demo page      {settings.public_url}/demo\n"
            f"  BFF            {settings.public_url}\n"
            f"  OpenAPI        {settings.public_url}/openapi.json\n"
            f"  sandbox        http://localhost:{port + 1}/\n"
            f"  admin          {admin}  (Authorization: Bearer {token})\n"
            f"  Redis          {'embedded ' if redis else ''}{redis_url}\n"
            f"Ctrl-C stops everything.",
            flush=True,
        )
        sockets = [_bind(host, port), _bind("127.0.0.1", port + 2)]
        with contextlib.suppress(asyncio.CancelledError, KeyboardInterrupt):
            await asyncio.gather(servers[0].serve(sockets=sockets), servers[1].serve())
    finally:
        if redis is not None:
            redis.close()
    return 0


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
