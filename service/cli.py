"""`line-auth-bff` (also `python -m service`): serve, dev, sandbox, check-config, openapi."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from .config import Problem, Settings, generate_key, load_settings

GC_THRESHOLDS = (20_000, 50, 100)
# On SIGTERM: how long in-flight requests may take to finish (a pod's grace period must be
# longer, with its preStop pause added: deploy/kubernetes/deployment.yaml).
DRAIN_SECONDS = 20


def factory() -> FastAPI:
    """uvicorn's factory for `serve` (each worker builds its app from the environment)."""
    from .app import client_secrets, create_app
    from .observe.logs.setup import configure_logging

    settings = Settings()
    access_log = configure_logging(
        settings.log_format, settings.log_level, client_secrets(settings)
    )
    app = create_app(settings, access_log=access_log)
    tune_gc()
    return app


def tune_gc() -> None:
    """For a server process, once its app is built: what exists now lives as long as the
    process, so it leaves the collector's way (fewer and shorter GC pauses, which shows in the
    p99); a request leaves short-lived containers only, so the young generation is collected
    every 20 000 allocations instead of 700 (3 % less CPU per proxied call, bench/README.md)."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _metrics_dir(workers: int) -> str | None:
    """Several workers share metrics through files; a fresh directory per start of `serve`."""
    from .observe.metrics import MULTIPROC_ENV

    if workers < 2:
        return None
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        for stale in Path(directory).glob("*.db"):
            stale.unlink()
        return None
    directory = tempfile.mkdtemp(prefix="bff-metrics-")
    os.environ[MULTIPROC_ENV] = directory
    return directory


def cmd_check_config(args: argparse.Namespace) -> int:
    """Print every configuration problem, one line each; exit 1 when one is fatal."""
    if args.generate_key:
        print(generate_key())
        return 0
    settings, problems = load_settings()
    for problem in problems:
        print(problem)
    if settings is not None and not problems:
        print(f"ok: {len(settings.apps)} app(s), env={settings.env}")
    return 1 if settings is None or any(p.fatal for p in problems) else 0


def cmd_openapi(args: argparse.Namespace) -> int:
    """Print the OpenAPI spec (the same one the running service serves at /openapi.json), or
    with --admin the admin API's."""
    from .app import create_app

    # Defaults only (no environment): the spec is the same wherever it is printed.
    settings = Settings.model_construct(env="development")
    app = create_app(settings)
    spec = app.admin_openapi() if args.admin else app.openapi()
    print(json.dumps(spec, indent=2, sort_keys=True))
    return 0


def cmd_sessions(args: argparse.Namespace) -> int:
    """List or revoke live sessions, straight in Redis (the admin API's operations)."""
    settings, problems = load_settings()
    fatal = [p for p in problems if p.fatal]
    for problem in fatal:
        print(problem, file=sys.stderr)
    if settings is None or fatal:
        return 2
    if args.action == "revoke" and not (args.ref or args.app or args.subscriber):
        print("FATAL sessions revoke: name --ref, --app or --subscriber", file=sys.stderr)
        return 2
    if args.app and args.app not in settings.apps:
        print(f"FATAL --app {args.app}: no such app is configured", file=sys.stderr)
        return 2
    from .kit.errors import BffError

    try:
        return asyncio.run(_sessions(args, settings))
    except BffError as exc:
        print(f"FATAL {exc.title}: {exc.detail or exc.code}", file=sys.stderr)
        return 1


async def _sessions(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import UTC, datetime

    from .observe.events import Events
    from .observe.metrics import Metrics
    from .store.redis import create_redis
    from .store.session_index import SessionIndex, SubscriberHash

    redis, close = create_redis(settings)
    try:
        index = SessionIndex(
            redis,
            prefix=settings.redis_key_prefix,
            max_seconds=settings.session_max_seconds,
            clock=time.time,
        )
        hashes = SubscriberHash(settings.keys()).all(args.subscriber) if args.subscriber else []
        apps = [args.app] if args.app else list(settings.apps)
        if args.ref:
            entry = await index.by_ref(args.ref)
            entries = [entry] if entry else []
        else:
            entries = await index.live(apps=apps, subscribers=hashes, app=args.app)
        if args.action == "list":
            for e in entries:
                created = datetime.fromtimestamp(e.created_at, UTC).isoformat(timespec="seconds")
                ends = datetime.fromtimestamp(e.ends_at, UTC).isoformat(timespec="seconds")
                print(
                    json.dumps(
                        {
                            "ref": e.ref,
                            "app": e.app,
                            "via": e.via,
                            "created_at": created,
                            "expires_at": ends,
                        }
                    )
                )
            return 0
        revoked = await index.revoke(entries)
        Events(Metrics()).revoked(
            by="cli",
            revoked=revoked,
            app=args.app,
            subscriber=hashes[0] if hashes else None,
            session_ref=args.ref,
        )
        print(json.dumps({"revoked": revoked}))
        return 0
    finally:
        await close()


def cmd_serve(args: argparse.Namespace) -> int:
    """Production server: uvicorn with uvloop/httptools; settings from the environment. A
    fatal problem is one line on stderr, and exit status 2: never a traceback."""
    from .app import prepared

    settings, problems = load_settings()
    if settings is not None and settings.admin.address and settings.admin.port == args.port:
        problems.append(
            Problem(f"BFF_ADMIN__ADDRESS {settings.admin.address}: the public port too", True)
        )
    for problem in problems:
        print(problem, file=sys.stderr)
    if settings is None or any(p.fatal for p in problems):
        print("refusing to start (line-auth-bff check-config lists the same)", file=sys.stderr)
        return 2
    settings = prepared(settings)
    made = _metrics_dir(args.workers)
    try:
        _run(args, settings)
    finally:
        if made:
            shutil.rmtree(made, ignore_errors=True)
    return 0


def _run(args: argparse.Namespace, settings: Settings) -> None:
    """uvicorn, as `uvicorn.run` would run it, on two sockets: the public port and the admin
    listener (every worker serves both; the app tells them apart by the local port)."""
    from uvicorn.supervisors import Multiprocess

    from .edge.limits import PROTOCOLS

    config = uvicorn.Config(
        "service.cli:factory",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        loop="uvloop",
        # uvicorn's protocol of that name, with the request head capped (service/edge/limits.py).
        http=PROTOCOLS[args.http],
        h11_max_incomplete_event_size=settings.max_header_bytes,
        proxy_headers=False,  # the app applies BFF_TRUSTED_PROXIES itself
        server_header=False,
        timeout_graceful_shutdown=DRAIN_SECONDS,
        log_config=None,  # the factory routes uvicorn's loggers through ours
        access_log=False,  # the edge writes one line per request, with its request id
    )
    sockets = [config.bind_socket()]
    if settings.admin.address:
        sockets.append(_bind(settings.admin.host, settings.admin.port))
    server = uvicorn.Server(config)
    if config.workers > 1:
        Multiprocess(config, sockets=sockets).run()
    else:
        server.run(sockets=sockets)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family=family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def cmd_sandbox(args: argparse.Namespace) -> int:
    """The Telenor sandbox alone, registering every app of the BFF's settings."""
    from .sandbox import Sandbox

    settings = Settings(env="development")
    print(f"Telenor sandbox on http://{args.host}:{args.port}/ ({len(settings.apps)} client(s))")
    uvicorn.run(Sandbox(settings).app, host=args.host, port=args.port, log_level="warning")
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    """Zero configuration: embedded Redis, the sandbox on port+1, the demo app, human logs."""
    from .dev import run_dev

    return run_dev(
        args.port,
        args.host,
        public_url=args.public_url,
        apps_file=args.apps_file,
        env_file=args.env_file,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="line-auth-bff", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the BFF (production)")
    serve.add_argument("--host", default=os.environ.get("HOST", "0.0.0.0"))  # noqa: S104
    serve.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument(
        "--http",
        choices=("httptools", "h11"),
        default="httptools",
        help="uvicorn's HTTP implementation (h11 is pure Python)",
    )
    serve.set_defaults(func=cmd_serve)

    dev = sub.add_parser("dev", help="run BFF + sandbox + demo with zero configuration")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8000)
    dev.add_argument(
        "--public-url",
        help="the origin browsers and phones use, e.g. http://10.0.2.2:8000 for an Android "
        "emulator (default BFF_PUBLIC_URL, else http://localhost:PORT)",
    )
    dev.add_argument("--apps-file", help="apps of your own beside demo (TOML, as BFF_APPS_FILE)")
    dev.add_argument(
        "--env-file", help="read settings from this file (dev reads no .env unless told)"
    )
    dev.set_defaults(func=cmd_dev)

    sandbox = sub.add_parser("sandbox", help="run the Telenor sandbox alone")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8001)
    sandbox.set_defaults(func=cmd_sandbox)

    check = sub.add_parser("check-config", help="list configuration problems")
    check.add_argument("--generate-key", action="store_true", help="print a new session key")
    check.set_defaults(func=cmd_check_config)

    openapi = sub.add_parser("openapi", help="print the OpenAPI spec")
    openapi.add_argument("--admin", action="store_true", help="the admin API's spec instead")
    openapi.set_defaults(func=cmd_openapi)

    sessions = sub.add_parser("sessions", help="list or revoke live sessions (in Redis)")
    sessions.add_argument("action", choices=("list", "revoke"))
    sessions.add_argument("--app", help="an app id")
    sessions.add_argument("--subscriber", help="an MSISDN, as Mobile User Info reports it")
    sessions.add_argument("--ref", help="one session's reference (from `sessions list`)")
    sessions.set_defaults(func=cmd_sessions)

    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code
