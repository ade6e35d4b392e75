"""Real servers for tests: Redis (shared or private) and uvicorn on loopback threads."""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

import uvicorn

from service.embedded import EmbeddedRedis, free_port


def _pong(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.3) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def shared_redis() -> tuple[str, EmbeddedRedis | None]:
    """BFF_TEST_REDIS_URL / REDIS_URL, else 127.0.0.1:6379 when it answers, else our own server."""
    for name in ("BFF_TEST_REDIS_URL", "REDIS_URL"):
        if os.environ.get(name):
            return os.environ[name], None
    if _pong("127.0.0.1", 6379):
        return "redis://127.0.0.1:6379/0", None
    server = EmbeddedRedis().start()
    return server.url, server


class Clock:
    """Real time plus an offset tests can move forward (instead of sleeping)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


class ThreadedServer:
    """uvicorn serving an ASGI app from a background thread on a loopback port."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.port = port or free_port()
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ThreadedServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(10)


__all__ = ["Clock", "EmbeddedRedis", "ThreadedServer", "free_port", "shared_redis"]
