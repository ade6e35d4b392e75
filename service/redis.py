"""The Redis client factory: standalone, Cluster or Sentinel, always with explicit timeouts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from .config import Settings


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
