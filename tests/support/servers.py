"""Real servers for tests: Redis (shared or private) and uvicorn on loopback threads."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
import uvicorn
from redis.crc import key_slot

from service.store.embedded import EmbeddedRedis, end_process, free_port, server_binary


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

    def __init__(self, app: Any, port: int | None = None, lifespan: str = "off") -> None:
        self.port = port or free_port()
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan=lifespan,
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


async def until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """Poll a condition another thread, process or timer makes true (bounded)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def distinct_free_ports(n: int) -> list[int]:
    """n free loopback ports, all different: each is held until the last is found."""
    held = []
    try:
        for _ in range(n):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            held.append(sock)
        return [int(sock.getsockname()[1]) for sock in held]
    finally:
        for sock in held:
            sock.close()


class LocalCluster:
    """Three cluster-mode servers on loopback ports, slots split evenly (a real Redis Cluster)."""

    def __init__(self, size: int = 3, *extra_args: str) -> None:
        # The bus port is explicit: the default (port + 10000) overflows for high free ports.
        # All 2 * size ports are distinct (one free port asked for after another may repeat).
        ports = distinct_free_ports(2 * size)
        self.bus_ports = ports[size:]
        self.nodes = [
            EmbeddedRedis(
                port,
                "--cluster-enabled",
                "yes",
                "--cluster-port",
                str(bus),
                "--cluster-node-timeout",
                "2000",
                *extra_args,
            )
            for port, bus in zip(ports[:size], self.bus_ports, strict=True)
        ]

    def slots(self, node: int) -> range:
        """The slots a node serves: an even split, in node order (the last takes the rest)."""
        per = 16384 // len(self.nodes)
        return range(node * per, 16384 if node == len(self.nodes) - 1 else (node + 1) * per)

    def node_of(self, key: str) -> int:
        """Which node serves `key`."""
        slot = key_slot(key.encode())
        return next(i for i in range(len(self.nodes)) if slot in self.slots(i))

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self) -> LocalCluster:
        try:
            return self._start()
        except BaseException:
            self.close()  # never leave servers behind when the cluster does not form
            raise

    def _start(self) -> LocalCluster:
        for node in self.nodes:
            node.start()
        clients = [redis.Redis(port=node.port) for node in self.nodes]
        for i, client in enumerate(clients):
            slots = self.slots(i)
            client.execute_command("CLUSTER ADDSLOTSRANGE", slots.start, slots.stop - 1)
        for node, bus in zip(self.nodes[1:], self.bus_ports[1:], strict=True):
            clients[0].execute_command("CLUSTER MEET", "127.0.0.1", node.port, bus)
        deadline = time.monotonic() + 20

        def converged(client: redis.Redis) -> bool:
            info = client.execute_command("CLUSTER INFO")  # parsed into a dict by redis-py
            return bool(
                info["cluster_state"] == "ok"
                and int(info["cluster_known_nodes"]) == len(clients)
                and int(info["cluster_slots_ok"]) == 16384
            )

        while not all(converged(c) for c in clients):
            if time.monotonic() > deadline:
                raise RuntimeError("the local cluster did not converge")
            time.sleep(0.05)
        for client in clients:
            client.close()
        return self

    def close(self) -> None:
        for node in self.nodes:
            node.close()


class LocalSentinel:
    """A primary (and with `replica`, one replica of it) and one Sentinel watching it as
    `mymaster`; `failover()` makes Sentinel promote the replica."""

    def __init__(
        self,
        service: str = "mymaster",
        replica: bool = False,
        *,
        durable: bool = False,
        down_after_ms: int = 5000,
    ) -> None:
        self.service = service
        self.down_after_ms = down_after_ms
        # With `durable`, each node keeps its data across a stop (AOF, fsync every second, as
        # most deployments run it: a stop writes everything, a crash loses at most a second,
        # which the replica holds).
        keep = ("--appendonly", "yes", "--appendfsync", "everysec") if durable else ()
        # Redis waits 5 s by default before it streams a first sync to a replica.
        self.primary = EmbeddedRedis(None, "--repl-diskless-sync-delay", "0", *keep)
        self.replica = (
            EmbeddedRedis(None, "--replicaof", "127.0.0.1", str(self.primary.port), *keep)
            if replica
            else None
        )
        self.port = free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="bff-sentinel-"))
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> LocalSentinel:
        self.primary.start()
        if self.replica is not None:
            self.replica.start()
            # Sentinel learns of replicas from the primary's INFO: let it see this one at once.
            replica = redis.Redis(port=self.replica.port)
            _wait(lambda: replica.info("replication")["master_link_status"] == "up", "replica")
            replica.close()
            # The replica's side of the link is up about a second before it acknowledges a
            # write (until then WAIT returns 0). Tests of durable writes start after a write
            # it has acknowledged (a WAIT with nothing written counts it at once).
            primary = redis.Redis(port=self.primary.port)

            def acknowledged() -> bool:
                primary.set("fixture:replica-ready", b"1", ex=5)
                return bool(primary.execute_command("WAIT", 1, 100) == 1)

            _wait(acknowledged, "the replica to acknowledge a write")
            primary.close()
        conf = self._dir / "sentinel.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self._dir}\n"
            f"sentinel monitor {self.service} 127.0.0.1 {self.primary.port} 1\n"
            f"sentinel down-after-milliseconds {self.service} {self.down_after_ms}\n"
            f"sentinel failover-timeout {self.service} 10000\n"
        )
        self._proc = subprocess.Popen(
            [server_binary(), str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not _pong("127.0.0.1", self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError("the sentinel did not start")
            time.sleep(0.02)
        return self

    def failover(self) -> None:
        """Promote the replica (SENTINEL FAILOVER) and wait until Sentinel names it and the
        old primary has become its replica."""
        assert self.replica is not None
        sentinel = redis.Redis(port=self.port, decode_responses=True)
        old = redis.Redis(port=self.primary.port, decode_responses=True)
        new = redis.Redis(port=self.replica.port, decode_responses=True)
        try:
            _wait(
                lambda: any(
                    r["flags"] == "slave" and r["master-link-status"] == "ok"
                    for r in sentinel.sentinel_slaves(self.service)
                ),
                "Sentinel to see a healthy replica",
            )
            # A planned failover: the replica has every write first (replication is async, and
            # Sentinel promotes without waiting; an unplanned one may lose the last writes).
            target = old.info("replication")["master_repl_offset"]
            _wait(lambda: new.info("replication")["slave_repl_offset"] >= target, "replication")
            _wait(lambda: self._failover_started(sentinel), "Sentinel to start the failover")
            _wait(
                lambda: (
                    sentinel.sentinel_get_master_addr_by_name(self.service)[1] == self.replica.port  # type: ignore[union-attr]
                    and old.info("replication")["role"] == "slave"
                ),
                "the failover",
                seconds=30,
            )
        finally:
            sentinel.close()
            old.close()
            new.close()

    def primary_now(self) -> int:
        """The port Sentinel names as the primary now."""
        sentinel = redis.Redis(port=self.port, decode_responses=True)
        try:
            return int(sentinel.sentinel_get_master_addr_by_name(self.service)[1])
        finally:
            sentinel.close()

    def by_role(self) -> tuple[EmbeddedRedis, EmbeddedRedis]:
        """(the node Sentinel names as the primary now, the other one): after a restart of
        both, Sentinel may have promoted either."""
        assert self.replica is not None
        if self.primary_now() == self.replica.port:
            return self.replica, self.primary
        return self.primary, self.replica

    def _failover_started(self, sentinel: redis.Redis) -> bool:
        try:
            sentinel.execute_command("SENTINEL", "FAILOVER", self.service)
        except redis.ResponseError as exc:  # NOGOODSLAVE while its view is still settling
            if "NOGOODSLAVE" not in str(exc):
                raise
            return False
        return True

    def close(self) -> None:
        end_process(self._proc)
        if self.replica is not None:
            self.replica.close()
        self.primary.close()
        shutil.rmtree(self._dir, ignore_errors=True)


def _wait(condition: Callable[[], bool], what: str, seconds: float = 10.0) -> None:
    """Poll a condition the servers make true (bounded)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


__all__ = [
    "Clock",
    "EmbeddedRedis",
    "LocalCluster",
    "LocalSentinel",
    "ThreadedServer",
    "free_port",
    "shared_redis",
    "until",
]
