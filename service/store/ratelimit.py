"""Rate limits: fixed one-minute windows counted in Redis, shared by every worker and replica.

Counters are `{prefix}rl:{tag}{kind}:{subject}:{window}`. A login start counts its limits in
one script (`hit`): the client's own (per address, per browser) first, and the app-wide
ceiling only for a start they let through, so one client cannot use up everyone's ceiling. An
API call is counted inside the read of its session (`read_counted`, one script), so the limit
costs the proxied call no round trip. Each script's keys share a Cluster hash tag.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import NoScriptError

from ..kit.clock import Clock
from ..kit.errors import BffError
from .redis import REDIS_FAILURES, Coalescer, as_bytes, redis_errors, unavailable

# GET a key; only when it exists, count one event in its window (no counters for unknown ids).
# KEYS[1] and KEYS[2] share a hash tag, so this also runs on Redis Cluster.
_READ_AND_COUNT = """
local blob = redis.call('GET', KEYS[1])
if not blob then return {false, 0} end
local n = redis.call('INCR', KEYS[2])
if n == 1 then redis.call('EXPIRE', KEYS[2], ARGV[1]) end
return {blob, n}
"""
# Count KEYS in order (the client's own limits, then a ceiling on everyone; limits in
# ARGV[2..]) and stop at the first one past its limit: the ceiling counts only the starts the
# client's own limits let through. Returns which key decided and its count.
_COUNT_CHAIN = """
local n = 0
for i = 1, #KEYS do
  n = redis.call('INCR', KEYS[i])
  if n == 1 then redis.call('EXPIRE', KEYS[i], ARGV[1]) end
  if n > tonumber(ARGV[i + 1]) then return {i, n} end
end
return {#KEYS, n}
"""


def _sha(script: str) -> bytes:
    """The name Redis caches a script under (SHA-1 is Redis's choice, not a security one)."""
    return hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest().encode()


_READ_AND_COUNT_SHA = _sha(_READ_AND_COUNT)
_COUNT_CHAIN_SHA = _sha(_COUNT_CHAIN)


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
        self._reads = Coalescer(redis)  # (the session reads of one turn: one pipeline)

    def active(self, kind: str) -> bool:
        return self._limits.get(kind, 0) > 0

    def _key(self, kind: str, subject: str, tag: str = "") -> str:
        return f"{self._prefix}{tag}{kind}:{subject}:{int(self._clock() // self.WINDOW)}"

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

    async def hit(self, *counts: tuple[str, str], ceiling: tuple[str, str], tag: str) -> None:
        """Count one event against each of the client's own (kind, subject) limits in turn,
        and against `ceiling` only when all of them let it through; enforce them. One round
        trip; `tag` is the keys' shared Cluster hash tag (`{…}`)."""
        chain = [(kind, subject) for kind, subject in (*counts, ceiling) if self.active(kind)]
        if not chain:
            return
        keys = [self._key(kind, subject, tag) for kind, subject in chain]
        limits = [str(self._limits[kind]).encode() for kind, _ in chain]
        async with redis_errors():
            which, count = await self._script(
                _COUNT_CHAIN_SHA, _COUNT_CHAIN, keys, [self._expiry, *limits]
            )
        self._enforce(chain[int(which) - 1][0], int(count))

    async def _script(
        self, sha: bytes, source: str, keys: list[str], args: list[bytes]
    ) -> list[Any]:
        """EVALSHA itself (redis-py's `Script` wrapper costs more than the call), and EVAL on
        a Redis that has not seen the script yet (restarted, new, failed over)."""
        run = self._redis.execute_command
        try:
            reply: list[Any] = await run("EVALSHA", sha, len(keys), *keys, *args)
        except NoScriptError:
            reply = await run("EVAL", source, len(keys), *keys, *args)
        return reply

    async def read_counted(self, key: str, kind: str, subject: str) -> bytes | None:
        """GET `key` and, when it exists, count one `kind` event of `subject`: one round trip
        (a script; EVALSHA itself, since redis-py's `Script` wrapper costs more than the call).
        `subject` must carry `key`'s Cluster hash tag."""
        run = self._reads.execute
        try:  # (not `redis_errors()`: this is the hot path, and a try costs nothing)
            if not self.active(kind):
                return as_bytes(await run("GET", key))
            args = (b"2", key, self._key(kind, subject), self._expiry)
            try:
                blob, count = await run("EVALSHA", _READ_AND_COUNT_SHA, *args)
            except NoScriptError:  # a restarted or new Redis: EVAL caches the script again
                blob, count = await self._redis.execute_command("EVAL", _READ_AND_COUNT, *args)
        except REDIS_FAILURES as exc:
            raise unavailable(exc) from exc
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
