"""The Redis client factory: standalone, Cluster or Sentinel, always with explicit timeouts."""

from __future__ import annotations

from typing import TypeAlias

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.retry import Retry

from .config import Settings

RedisClient: TypeAlias = "Redis | RedisCluster"


def create_redis(settings: Settings) -> Redis | RedisCluster:
    """A client for the configured deployment; bounded waits so an outage fails fast (503)."""
    timeout = settings.redis_timeout_seconds
    common = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "health_check_interval": 0,
    }
    if settings.redis_cluster:
        return RedisCluster.from_url(  # type: ignore[no-any-return]  # redis-py stub returns Any
            settings.redis_url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1),
        )
    if settings.redis_sentinels:
        hosts = []
        for entry in settings.redis_sentinels:
            host, _, port = entry.rpartition(":")
            hosts.append((host or entry, int(port or 26379)))
        sentinel = Sentinel(hosts, sentinel_kwargs=common, **common)
        return sentinel.master_for(settings.redis_sentinel_service, retry=Retry(NoBackoff(), 1))
    return Redis.from_url(  # type: ignore[no-any-return]  # redis-py stub returns Any
        settings.redis_url, retry=Retry(NoBackoff(), 0), **common
    )
