"""`line-auth-bff dev` as a real process for tests: adjacent ports, start, its output, stop."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from service.store.embedded import end_process, free_port

READY = "Ctrl-C stops everything."


def adjacent_ports(n: int = 3) -> int:
    """A port whose n - 1 successors are free too (`dev` puts the sandbox on port + 1 and the
    admin listener on port + 2)."""
    for _ in range(50):
        port = free_port()
        try:
            for offset in range(1, n):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port + offset))
        except OSError:
            continue
        return port
    raise RuntimeError(f"no {n} adjacent free ports")


@dataclass
class Dev:
    """A running `dev`: its port and every line it has written (stdout and stderr)."""

    proc: subprocess.Popen[str]
    port: int
    lines: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)
    reader: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://localhost:{self.port}"

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if line.strip() == READY:
                self.ready.set()
        self.ready.set()  # exited

    def stop(self) -> str:
        end_process(self.proc, 20)  # type: ignore[arg-type]
        if self.reader is not None:
            self.reader.join(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.output


def dev_env(**extra: str) -> dict[str, str]:
    """The environment without any BFF_ setting of the caller's, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BFF_")}
    return {**env, **extra}


def start_dev(cwd: Path, *args: str, env: dict[str, str] | None = None) -> Dev:
    """`dev` on three free ports, once it has printed its banner (or exited)."""
    port = adjacent_ports()
    proc = subprocess.Popen(
        [sys.executable, "-m", "service", "dev", "--port", str(port), *args],
        env=dev_env() if env is None else env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    dev = Dev(proc, port)
    dev.reader = threading.Thread(target=dev.read, daemon=True)
    dev.reader.start()
    deadline = time.monotonic() + 60
    while dev.ready.wait(max(0.0, deadline - time.monotonic())) and proc.poll() is None:
        try:
            if httpx.get(f"{dev.url}/healthz", timeout=2).status_code == 200:
                return dev
        except httpx.TransportError:
            dev.ready.wait(0.05)  # uvicorn is still starting its servers
        if time.monotonic() > deadline:
            break
    dev.stop()
    raise AssertionError(f"dev did not start:\n{dev.output}")


def refused(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`dev` expected to refuse at once: its exit and output."""
    return subprocess.run(
        [sys.executable, "-m", "service", "dev", "--port", str(adjacent_ports()), *args],
        env=dev_env() if env is None else env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
