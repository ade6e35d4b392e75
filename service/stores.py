"""Redis stores: login state, sessions, handoff codes (DESIGN §5).

Every operation touches a single key, so Redis Cluster works. Secrets never appear in keys or
in plaintext values: sessions and handoffs are AES-GCM sealed under the SHA-256 of their id.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import NoScriptError, RedisError

from .crypto import Cipher, digest, new_token
from .errors import BffError

Clock = Callable[[], float]
RETRY_AFTER = "2"


def unavailable() -> BffError:
    return BffError("store_unavailable", "Try again shortly.", headers={"Retry-After": RETRY_AFTER})


# Any Redis failure: down, timeout, cluster reshuffle.
REDIS_FAILURES = (TimeoutError, RedisError, OSError)


@asynccontextmanager
async def redis_errors() -> AsyncIterator[None]:
    """Turn any Redis failure into a 503 with Retry-After."""
    try:
        yield
    except REDIS_FAILURES as exc:
        raise unavailable() from exc


@dataclass(frozen=True)
class LoginState:
    """What a `state` value stands for while the user is at Telenor."""

    app: str
    return_to: str
    mode: str
    binding: str  # SHA-256 of the login-binding cookie
    verifier: str | None  # our PKCE verifier towards Telenor
    client_challenge: str | None  # the mobile app's S256 challenge (handoff mode)
    created_at: float


class StateStore:
    """Single-use login states: `SET … EX` on start, `GETDEL` on callback."""

    def __init__(self, redis: Redis | RedisCluster, prefix: str, ttl: int, clock: Clock) -> None:
        self._redis = redis
        self._prefix = prefix + "state:"
        self._ttl = ttl
        self._clock = clock

    async def issue(self, state: LoginState) -> str:
        value = new_token(24)  # 192 bits
        async with redis_errors():
            await self._redis.set(self._prefix + value, json.dumps(asdict(state)), ex=self._ttl)
        return value

    async def consume(self, value: str) -> LoginState | None:
        """The state, exactly once; None when unknown, used or expired."""
        return await self._read(value, self._redis.getdel)

    async def peek(self, value: str) -> LoginState | None:
        """The state, left in place for its callback; None when unknown, used or expired."""
        return await self._read(value, self._redis.get)

    async def _read(
        self, value: str, command: Callable[[str], Awaitable[bytes | str | None]]
    ) -> LoginState | None:
        if not value or len(value) > 128:
            return None
        async with redis_errors():
            raw = await command(self._prefix + value)
        if raw is None:
            return None
        state = LoginState(**json.loads(raw))
        # Redis expiry is the rule; the clock check also covers a skewed or paused Redis.
        if self._clock() - state.created_at > self._ttl:
            return None
        return state


@dataclass(frozen=True)
class Session:
    """A signed-in user of one app. Held encrypted; the id itself is never stored."""

    app: str
    access_token: str
    expires_at: float  # access-token expiry (epoch seconds)
    ends_at: float  # absolute end of the session
    refresh_token: str | None = None


class SessionStore:
    """Encrypted sessions keyed by the SHA-256 of an opaque 256-bit id.

    Records opened recently are remembered by (Redis key, exact ciphertext): a session's next
    call skips AES-GCM and JSON. That changes nothing Redis decides (the record is still read
    every time, so a logout, expiry or refresh, which delete or re-seal it, takes effect at
    once) and nothing the cipher decides (the associated data is the Redis key, part of the
    lookup). The map is bounded by `OPENED_MAX` and starts over when full.
    """

    OPENED_MAX = 10_000

    def __init__(
        self,
        redis: Redis | RedisCluster,
        prefix: str,
        cipher: Cipher,
        max_seconds: int,
        clock: Clock,
    ) -> None:
        self._redis = redis
        self._prefix = prefix + "session:"
        self._cipher = cipher
        self._max = max_seconds
        self._clock = clock
        self._opened: dict[tuple[str, bytes], Session] = {}

    def key(self, session_id: str) -> str:
        """`{prefix}session:{<sha256>}`: the braces are a Cluster hash tag, so the session's
        lock and rate-limit counter live in its slot (one script touches both)."""
        return f"{self._prefix}{{{digest(session_id)}}}"

    def seal(self, session: Session, key: str) -> bytes:
        return self._cipher.seal(json.dumps(asdict(session)).encode(), key)

    def unseal(self, blob: bytes, key: str) -> Session | None:
        plain = self._cipher.open(blob, key)
        return Session(**json.loads(plain)) if plain else None

    def new(self, app: str, access_token: str, expires_in: int, refresh: str | None) -> Session:
        now = self._clock()
        return Session(app, access_token, now + expires_in, now + self._max, refresh)

    def ttl(self, session: Session) -> int:
        """Seconds Redis keeps the record: the token's life (capped), or the cap with refresh."""
        end = session.ends_at if session.refresh_token else min(session.expires_at, session.ends_at)
        return max(1, int(end - self._clock()))

    async def create(self, session: Session) -> tuple[str, int]:
        """Store a session under a brand-new id (no fixation); returns (id, ttl)."""
        session_id = new_token(32)
        ttl = self.ttl(session)
        key = self.key(session_id)
        async with redis_errors():
            await self._redis.set(key, self.seal(session, key), ex=ttl)
        return session_id, ttl

    def decode(self, blob: bytes | None, key: str) -> Session | None:
        """A live session from a stored record, or None (missing, undecryptable, ended)."""
        if blob is None:
            return None
        session = self._opened.get((key, blob))
        if session is None:
            session = self.unseal(blob, key)
            if session is None:
                return None
            if len(self._opened) >= self.OPENED_MAX:
                self._opened.clear()
            self._opened[(key, blob)] = session
        now = self._clock()
        if now >= session.ends_at or (session.refresh_token is None and now >= session.expires_at):
            return None
        return session

    async def replace(self, key: str, session: Session) -> None:
        async with redis_errors():
            await self._redis.set(key, self.seal(session, key), ex=self.ttl(session))

    async def delete_key(self, key: str) -> None:
        async with redis_errors():
            await self._redis.delete(key)

    async def lock(self, key: str, seconds: float) -> bool:
        """A short Redis lock for one session's refresh, shared by all workers and replicas."""
        async with redis_errors():
            return bool(await self._redis.set(key + ":lock", b"1", nx=True, px=int(seconds * 1000)))

    async def unlock(self, key: str) -> None:
        async with redis_errors():
            await self._redis.delete(key + ":lock")

    async def raw(self, key: str) -> bytes | None:
        async with redis_errors():
            return _bytes(await self._redis.get(key))

    async def raw_counted(self, key: str, limiter: RateLimiter) -> bytes | None:
        """The record and, for a live one, this session's API call count: one round trip (a
        script: EVALSHA itself, since redis-py's `Script` wrapper costs more than the call)."""
        if not limiter.active("api"):
            return await self.raw(key)
        args = (b"2", key, limiter.key("api", key[key.rindex("{") :]), limiter.expiry)
        run = self._redis.execute_command
        try:  # (not `redis_errors()`: this is the hot path, and a try costs nothing)
            try:
                blob, count = await run("EVALSHA", _READ_AND_COUNT_SHA, *args)
            except NoScriptError:  # a restarted or new Redis: EVAL caches the script again
                blob, count = await run("EVAL", _READ_AND_COUNT, *args)
        except REDIS_FAILURES as exc:
            raise unavailable() from exc
        if blob is not None:
            limiter.enforce("api", int(count))
        return _bytes(blob)


# GET the session; only when it exists, count the call in its window (no counters for unknown
# ids). KEYS[1] and KEYS[2] share a hash tag, so this also runs on Redis Cluster.
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
    """Fixed one-minute windows counted in Redis (`{prefix}rl:{kind}:{subject}:{window}`).

    The counters are shared by every worker and replica. The API count rides in the session
    read (`SessionStore.raw_counted`, one script), so a limit costs no extra round trip.
    """

    WINDOW = 60
    CEILINGS = frozenset({"login_app"})  # limits on everyone together, not on one client

    def __init__(
        self,
        redis: Redis | RedisCluster,
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
        self.expiry = str(self.WINDOW * 2).encode()

    def active(self, kind: str) -> bool:
        return self._limits.get(kind, 0) > 0

    def key(self, kind: str, subject: str) -> str:
        return f"{self._prefix}{kind}:{subject}:{int(self._clock() // self.WINDOW)}"

    def enforce(self, kind: str, count: int) -> None:
        """429 with the seconds left in this window once `count` passes the limit (503 `busy`
        for an app-wide ceiling: the user did nothing wrong, the service is full)."""
        if count > self._limits[kind]:
            self._on_limit(kind)
            retry = self.WINDOW - int(self._clock() % self.WINDOW)
            code = "busy" if kind in self.CEILINGS else "rate_limited"
            raise BffError(
                code,
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
                key = self.key(kind, subject)
                pipe.incr(key)
                pipe.expire(key, self.WINDOW * 2)
            replies = await pipe.execute()
        for (kind, _), count in zip(active, replies[::2], strict=True):
            self.enforce(kind, int(count))


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


@dataclass(frozen=True)
class Handoff:
    """A finished mobile login waiting for the app to redeem it with its PKCE verifier."""

    app: str
    challenge: str
    session: dict[str, Any]


class HandoffStore:
    """One-time handoff codes: sealed under the SHA-256 of the code, consumed with `GETDEL`."""

    def __init__(self, redis: Redis | RedisCluster, prefix: str, cipher: Cipher, ttl: int) -> None:
        self._redis = redis
        self._prefix = prefix + "handoff:"
        self._cipher = cipher
        self.ttl = ttl

    async def issue(self, handoff: Handoff) -> str:
        code = new_token(24)
        key = self._prefix + digest(code)
        async with redis_errors():
            await self._redis.set(
                key, self._cipher.seal(json.dumps(asdict(handoff)).encode(), key), ex=self.ttl
            )
        return code

    async def consume(self, code: str) -> Handoff | None:
        """The handoff, exactly once (a wrong verifier burns it too)."""
        if not code or len(code) > 128:
            return None
        key = self._prefix + digest(code)
        async with redis_errors():
            blob = _bytes(await self._redis.getdel(key))
        plain = self._cipher.open(blob, key) if blob else None
        return Handoff(**json.loads(plain)) if plain else None


def _bytes(value: bytes | str | None) -> bytes | None:
    """redis-py's declared return type; our clients never decode responses."""
    return value.encode() if isinstance(value, str) else value
