"""Redis: the client for the configured deployment (standalone, Cluster or Sentinel, always
with explicit timeouts), and what its failures mean to a request (503 with Retry-After)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from .config import Settings
from .errors import BffError

RETRY_AFTER = "2"
# Any Redis failure: down, timeout, cluster reshuffle.
REDIS_FAILURES = (TimeoutError, RedisError, OSError)


def unavailable() -> BffError:
    return BffError("store_unavailable", "Try again shortly.", headers={"Retry-After": RETRY_AFTER})


@asynccontextmanager
async def redis_errors() -> AsyncIterator[None]:
    """Turn any Redis failure into a 503 with Retry-After."""
    try:
        yield
    except REDIS_FAILURES as exc:
        raise unavailable() from exc


def as_bytes(value: bytes | str | None) -> bytes | None:
    """A reply as bytes: redis-py declares `bytes | str`; our clients never decode replies."""
    return value.encode() if isinstance(value, str) else value


def create_redis(settings: Settings) -> tuple[Redis | RedisCluster, Callable[[], Awaitable[None]]]:
    """A client for the configured deployment (bounded waits so an outage fails fast: 503) and
    the function that closes it and every connection it opened (Sentinel's included)."""
    timeout = settings.redis_timeout_seconds
    timeouts = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    if settings.redis_cluster:
        cluster = RedisCluster.from_url(settings.redis_url, retry=Retry(NoBackoff(), 1), **timeouts)
        return cluster, cluster.aclose
    if settings.redis_sentinels:
        hosts = []
        for entry in settings.redis_sentinels:
            host, _, port = entry.rpartition(":")
            hosts.append((host or entry, int(port or 26379)))
        sentinel = Sentinel(hosts, sentinel_kwargs=timeouts, **timeouts)  # type: ignore[no-untyped-call]  # redis-py leaves Sentinel.__init__ untyped
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
