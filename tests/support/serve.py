"""`line-auth-bff serve` as a real process for tests: its environment, start, readiness, stop."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from service.store.embedded import end_process, free_port
from tests.support.browser import ADMIN_TOKEN
from tests.support.config import APPS, KEYS


def refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return False
    except OSError:
        return True


def _apps_toml(path: Path) -> Path:
    lines = []
    for app, fields in APPS.items():
        lines.append(f"[apps.{app}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in fields.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def serve_env(redis_url: str, prefix: str, sandbox_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "BFF_ENV": "production",
        "BFF_PUBLIC_URL": "https://bff.test",
        "BFF_REDIS_URL": redis_url,
        "BFF_REDIS_KEY_PREFIX": prefix,  # the sessions of the in-process BFF of the test
        "BFF_SESSION_KEYS": KEYS,
        "BFF_TELENOR__BASE_URL": sandbox_url,
        "BFF_APPS_FILE": str(_apps_toml(tmp_path / "apps.toml")),
        "BFF_TRUSTED_PROXIES": "127.0.0.1",
        "BFF_ADMIN__ADDRESS": f"127.0.0.1:{free_port()}",
        "BFF_ADMIN__TOKENS": f"ops:{ADMIN_TOKEN}",
    }


def admin_url(env: dict[str, str]) -> str:
    """The admin listener of a `serve` started with `env`."""
    return f"http://{env['BFF_ADMIN__ADDRESS']}"


def start_serve(env: dict[str, str], cwd: Path, *args: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "service",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *args,
        ],
        env=env,
        cwd=cwd,  # no .env here
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    return proc, port


async def wait_ready(client: httpx.AsyncClient, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if (await client.get("/readyz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline and proc.poll() is None, "serve did not start"
        await asyncio.sleep(0.05)


def stop(proc: subprocess.Popen[bytes]) -> str:
    end_process(proc, 20)
    output = proc.stdout.read().decode() if proc.stdout else ""
    if proc.stdout:
        proc.stdout.close()
    return output
