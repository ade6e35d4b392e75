"""`line-auth-bff` (also `python -m service`): serve, dev, sandbox, check-config, openapi."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError

from .config import Settings, config_problems, generate_key

GC_THRESHOLDS = (20_000, 50, 100)


def factory() -> FastAPI:
    """uvicorn's factory for `serve` (each worker builds its app from the environment)."""
    from .app import client_secrets, create_app
    from .logs.setup import configure_logging

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
    from .metrics import MULTIPROC_ENV

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


def _print_validation(exc: ValidationError) -> None:
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ())) or "settings"
        print(f"FATAL {where}: {err.get('msg')}", file=sys.stderr)


def cmd_check_config(args: argparse.Namespace) -> int:
    """Print every configuration problem; exit 1 when one is fatal."""
    if args.generate_key:
        print(generate_key())
        return 0
    try:
        settings = Settings()
    except ValidationError as exc:
        _print_validation(exc)
        return 1
    problems = config_problems(settings)
    for p in problems:
        print(f"{'FATAL' if p.fatal else 'WARN '} {p.message}")
    if not problems:
        print(f"ok: {len(settings.apps)} app(s), env={settings.env}")
    return 1 if any(p.fatal for p in problems) else 0


def cmd_openapi(args: argparse.Namespace) -> int:
    """Print the OpenAPI spec (the same one the running service serves at /openapi.json)."""
    from .app import create_app

    # Defaults only (no environment): the spec is the same wherever it is printed.
    settings = Settings.model_construct(env="development")
    spec = create_app(settings).openapi()
    print(json.dumps(spec, indent=2, sort_keys=True))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Production server: uvicorn with uvloop/httptools; settings from the environment."""
    try:
        from .app import prepared

        settings = prepared(Settings())
    except (ValidationError, ValueError) as exc:
        print(f"refusing to start: {exc}", file=sys.stderr)
        print("run `line-auth-bff check-config` for the full list", file=sys.stderr)
        return 2
    made = _metrics_dir(args.workers)
    try:
        _run(args, settings)
    finally:
        if made:
            shutil.rmtree(made, ignore_errors=True)
    return 0


def _run(args: argparse.Namespace, settings: Settings) -> None:
    from .limits import PROTOCOLS

    uvicorn.run(
        "service.cli:factory",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        loop="uvloop",
        # uvicorn's protocol of that name, with the request head capped (service/limits.py).
        http=PROTOCOLS[args.http],
        h11_max_incomplete_event_size=settings.max_header_bytes,
        proxy_headers=False,  # the app applies BFF_TRUSTED_PROXIES itself
        server_header=False,
        timeout_graceful_shutdown=20,
        log_config=None,  # the factory routes uvicorn's loggers through ours
        access_log=False,  # AccessLog writes one line per request, with its request id
    )


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

    return asyncio.run(run_dev(args.port, args.host))


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
    dev.set_defaults(func=cmd_dev)

    sandbox = sub.add_parser("sandbox", help="run the Telenor sandbox alone")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8001)
    sandbox.set_defaults(func=cmd_sandbox)

    check = sub.add_parser("check-config", help="list configuration problems")
    check.add_argument("--generate-key", action="store_true", help="print a new session key")
    check.set_defaults(func=cmd_check_config)

    openapi = sub.add_parser("openapi", help="print the OpenAPI spec")
    openapi.set_defaults(func=cmd_openapi)

    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code
