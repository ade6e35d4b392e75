"""Redis: the client for the configured deployment (standalone, Cluster or Sentinel, always
with explicit timeouts), what its failures mean to a request (503 with Retry-After), and the
coalescing of the commands one turn of the event loop issues into one pipeline."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    ClusterDownError,
    ReadOnlyError,
    RedisClusterException,
    RedisClusterUnreachableError,
    RedisError,
    SlotNotCoveredError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..config import Settings
from ..kit.errors import BffError
from ..observe.events import NowAndThen

RETRY_AFTER = "2"
# Any Redis failure: down, timeout, cluster reshuffle. (redis-py's cluster errors, such as no
# node reachable or a slot no node serves, are not RedisErrors.)
REDIS_FAILURES = (TimeoutError, RedisError, RedisClusterException, OSError)
# One line of one failure class at most every LOG_EVERY seconds, per process.
_now_and_then = NowAndThen()


def failure_class(exc: BaseException) -> str:
    """Why Redis failed, in words an operator can act on: a wrong password must not look
    like a stopped server."""
    chain: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and len(chain) < 8:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    text = " ".join(str(e) for e in chain).upper()
    if any(isinstance(e, ssl.SSLError) for e in chain):
        return "tls failure"
    if any(isinstance(e, AuthenticationError | AuthorizationError) for e in chain) or (
        "NOAUTH" in text or "WRONGPASS" in text
    ):
        return "authentication failed"
    if any(isinstance(e, ReadOnlyError) for e in chain) or "READONLY" in text:
        return "read-only (a replica)"
    if any(isinstance(e, ClusterDownError | SlotNotCoveredError) for e in chain) or (
        "CLUSTERDOWN" in text
    ):
        return "cluster down"
    if any(isinstance(e, TimeoutError | RedisTimeoutError) for e in chain):
        return "timeout"
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or "REFUSED" in text:
        return "connection refused"
    if any(isinstance(e, RedisClusterUnreachableError) for e in chain):
        return "no cluster node reachable"
    return "unavailable"


def unavailable(exc: BaseException | None = None) -> BffError:
    """The 503 a request gets when Redis fails; the cause is logged by class (at most once
    every `LOG_EVERY` seconds per class)."""
    if exc is not None:
        cause = failure_class(exc)
        _now_and_then(cause, "redis failed", logging.ERROR, cause=cause, error=type(exc).__name__)
    return BffError("store_unavailable", "Try again shortly.", headers={"Retry-After": RETRY_AFTER})


@asynccontextmanager
async def redis_errors() -> AsyncIterator[None]:
    """Turn any Redis failure into a 503 with Retry-After."""
    try:
        yield
    except REDIS_FAILURES as exc:
        raise unavailable(exc) from exc


def unreplicated(acknowledged: int, wanted: int) -> None:
    """A write fewer replicas acknowledged in time than `BFF_REDIS_WAIT_REPLICAS` asks for:
    it stands (the login goes on), but a failover now could lose it."""
    _now_and_then(
        "unreplicated",
        "session write not replicated in time",
        logging.WARNING,
        acknowledged=acknowledged,
        wanted=wanted,
    )


def as_bytes(value: bytes | str | None) -> bytes | None:
    """A reply as bytes: redis-py declares `bytes | str`; our clients never decode replies."""
    return value.encode() if isinstance(value, str) else value


def timed(client: Redis | RedisCluster, observe: Callable[[str, float], None]) -> None:
    """Report every round trip of `client` to `observe(command, seconds)`, failures included:
    each command by its name, each pipeline as `pipeline`. (redis-py has no hook for this, so
    the client's two entry points are wrapped, on this one instance.)"""
    command = client.execute_command
    pipeline = client.pipeline

    async def execute_command(*args: Any, **options: Any) -> Any:
        started = time.perf_counter()
        try:
            return await command(*args, **options)
        finally:
            observe(str(args[0]), time.perf_counter() - started)

    def timed_pipeline(*args: Any, **options: Any) -> Any:
        pipe = pipeline(*args, **options)
        run = pipe.execute

        async def execute(*call: Any, **kw: Any) -> Any:
            started = time.perf_counter()
            try:
                return await run(*call, **kw)
            finally:
                observe("pipeline", time.perf_counter() - started)

        pipe.execute = execute  # type: ignore[method-assign]
        return pipe

    client.execute_command = execute_command  # type: ignore[method-assign]
    client.pipeline = timed_pipeline  # type: ignore[method-assign]


def create_redis(settings: Settings) -> tuple[Redis | RedisCluster, Callable[[], Awaitable[None]]]:
    """A client for the configured deployment (bounded waits so an outage fails fast: 503) and
    the function that closes it and every connection it opened (Sentinel's included)."""
    timeout = settings.redis_timeout_seconds
    timeouts: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    if settings.redis_cluster:
        cluster = RedisCluster.from_url(settings.redis_url, retry=Retry(NoBackoff(), 1), **timeouts)
        return cluster, cluster.aclose
    if settings.redis_sentinels:
        hosts = []
        for entry in settings.redis_sentinels:
            host, _, port = entry.rpartition(":")
            hosts.append((host or entry, int(port or 26379)))
        sentinel = Sentinel(hosts, sentinel_kwargs=timeouts, **timeouts)
        primary: Redis = sentinel.master_for(
            settings.redis_sentinel_service, retry=Retry(NoBackoff(), 1)
        )

        async def close() -> None:
            await primary.aclose()
            for client in sentinel.sentinels:
                await client.aclose()

        return primary, close
    client = Redis.from_url(
        settings.redis_url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )
    return client, client.aclose


_Batch = list[tuple[tuple[Any, ...], asyncio.Future[Any]]]  # commands and who waits for each


class Coalescer:
    """Sends the commands that one turn of the event loop issues to Redis together, as one
    pipeline (no transaction): under load, the session reads of many requests share one
    write, one read and one pass through the client, and each still waits one round trip.

    The first command of a turn waits for the turn to end (one `sleep(0)`). Alone, it is
    sent as a plain command. With company, the batch is sent from a task of its own, and every
    caller waits for its own reply or error: a cancelled caller cancels only its own wait, and
    a failure of the whole round trip (Redis down, a timeout) fails every command in it, as
    it would have failed each one alone.

    Not on Redis Cluster: a cluster pipeline fails every command when one node is
    unreachable, and does not retry a dropped connection when it returns errors per command;
    there each command goes alone, as before."""

    def __init__(self, redis: Redis | RedisCluster) -> None:
        self._redis = redis
        self._on = not isinstance(redis, RedisCluster)
        self._joined: _Batch | None = None
        self._sending: set[asyncio.Task[None]] = set()  # (a task the loop must not lose)

    async def execute(self, *args: Any) -> Any:
        joined = self._joined
        if joined is not None:  # a turn's batch is gathering: join it
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            joined.append((args, future))
            return await future
        if not self._on:
            return await self._redis.execute_command(*args)
        self._joined = joined = []
        try:
            await asyncio.sleep(0)  # the rest of this turn's requests join
        except BaseException:  # (cancelled: what joined still goes)
            if joined:
                self._send_soon(joined)
            raise
        finally:
            self._joined = None
        if not joined:
            return await self._redis.execute_command(*args)
        mine: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        joined.append((args, mine))
        self._send_soon(joined)
        return await mine

    def _send_soon(self, batch: _Batch) -> None:
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: _Batch) -> None:
        try:
            pipe = self._redis.pipeline(transaction=False)
            for args, _ in batch:
                pipe.execute_command(*args)
            replies = await pipe.execute(raise_on_error=False)
        except Exception as exc:
            replies = [exc] * len(batch)
        except BaseException:  # (the loop is shutting down: nobody waits in vain)
            self._settle(batch, [RedisConnectionError("shutting down")] * len(batch))
            raise
        self._settle(batch, replies)

    @staticmethod
    def _settle(batch: _Batch, replies: list[Any]) -> None:
        for (_, future), reply in zip(batch, replies, strict=True):
            if future.done():  # (its caller was cancelled)
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)
