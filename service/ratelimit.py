"""Rate limits: fixed one-minute windows counted in Redis, shared by every worker and replica.

Counters are `{prefix}rl:{kind}:{subject}:{window}`. A login start counts its limits (per
address, per browser, per app) in one pipeline; an API call is counted inside the read of its
session (`read_counted`, one script), so the limit costs the proxied call no round trip.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import NoScriptError

from .clock import Clock
from .errors import BffError
from .redis import REDIS_FAILURES, as_bytes, redis_errors, unavailable

# GET a key; only when it exists, count one event in its window (no counters for unknown ids).
# KEYS[1] and KEYS[2] share a hash tag, so this also runs on Redis Cluster.
_READ_AND_COUNT = """
local blob = redis.call('GET', KEYS[1])
if not blob then return {false, 0} end
local n = redis.call('INCR', KEYS[2])
if n == 1 then redis.call('EXPIRE', KEYS[2], ARGV[1]) end
return {blob, n}
"""
# The name Redis caches the script under (SHA-1 is Redis's choice, not a security one).
_READ_AND_COUNT_SHA = (
    hashlib.sha1(_READ_AND_COUNT.encode(), usedforsecurity=False).hexdigest().encode()
)


class RateLimiter:
    """Counts events per (kind, subject) and refuses those past their kind's limit."""

    WINDOW = 60
    CEILINGS = frozenset({"login_app"})  # limits on everyone together, not on one client

    def __init__(
        self,
        redis: Redis | RedisCluster,
        *,
        prefix: str,
        limits: dict[str, int],
        clock: Clock,
        on_limit: Callable[[str], None],
    ) -> None:
        self._redis = redis
        self._prefix = prefix + "rl:"
        self._limits = limits
        self._clock = clock
        self._on_limit = on_limit
        # A counter outlives its window by one, so a late call still finds it (bytes: sent as is).
        self._expiry = str(self.WINDOW * 2).encode()

    def active(self, kind: str) -> bool:
        return self._limits.get(kind, 0) > 0

    def _key(self, kind: str, subject: str) -> str:
        return f"{self._prefix}{kind}:{subject}:{int(self._clock() // self.WINDOW)}"

    def _enforce(self, kind: str, count: int) -> None:
        """429 with the seconds left in this window once `count` passes the limit (503 `busy`
        for an app-wide ceiling: the user did nothing wrong, the service is full)."""
        if count > self._limits[kind]:
            self._on_limit(kind)
            retry = self.WINDOW - int(self._clock() % self.WINDOW)
            raise BffError(
                "busy" if kind in self.CEILINGS else "rate_limited",
                f"At most {self._limits[kind]} per minute; try again in {retry} s.",
                headers={"Retry-After": str(retry)},
            )

    async def hit(self, *counts: tuple[str, str]) -> None:
        """Count one event against each (kind, subject) at once (one round trip) and enforce
        every limit, in the order given."""
        active = [(kind, subject) for kind, subject in counts if self.active(kind)]
        if not active:
            return
        async with redis_errors():
            pipe = self._redis.pipeline(transaction=False)
            for kind, subject in active:
                key = self._key(kind, subject)
                pipe.incr(key)
                pipe.expire(key, self.WINDOW * 2)
            replies = await pipe.execute()
        for (kind, _), count in zip(active, replies[::2], strict=True):
            self._enforce(kind, int(count))

    async def read_counted(self, key: str, kind: str, subject: str) -> bytes | None:
        """GET `key` and, when it exists, count one `kind` event of `subject`: one round trip
        (a script; EVALSHA itself, since redis-py's `Script` wrapper costs more than the call).
        `subject` must carry `key`'s Cluster hash tag."""
        run = self._redis.execute_command
        try:  # (not `redis_errors()`: this is the hot path, and a try costs nothing)
            if not self.active(kind):
                return as_bytes(await run("GET", key))
            args = (b"2", key, self._key(kind, subject), self._expiry)
            try:
                blob, count = await run("EVALSHA", _READ_AND_COUNT_SHA, *args)
            except NoScriptError:  # a restarted or new Redis: EVAL caches the script again
                blob, count = await run("EVAL", _READ_AND_COUNT, *args)
        except REDIS_FAILURES as exc:
            raise unavailable() from exc
        if blob is not None:
            self._enforce(kind, int(count))
        return as_bytes(blob)


def address_bucket(address: str, ipv6_prefix: int) -> str:
    """What a per-address limit counts: an IPv4 address, or the IPv6 prefix it lies in (one
    subscriber's /64 holds countless addresses). Anything else is counted as it is."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{ip}/{ipv6_prefix}", strict=False))
    return str(ip)
