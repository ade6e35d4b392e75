"""Redis stores: login states, sessions, native apps' authorization codes.

Every operation touches a single key, so Redis Cluster works. Secrets never appear in keys or
in plaintext values: sessions and codes are AES-GCM sealed under the SHA-256 of their id.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, TypeVar

from redis.asyncio import Redis, RedisCluster

from ..kit.clock import Clock
from ..kit.crypto import Cipher, digest, new_token
from .redis import as_bytes, redis_errors, unreplicated
from .session_index import Entry, SessionIndex

T = TypeVar("T")


def known(record: type[T], data: dict[str, Any]) -> T:
    """A stored record, from the members this version knows: a newer replica may have added
    some during a rolling upgrade, and a record must stay readable both ways."""
    names = {f.name for f in fields(record)}  # type: ignore[arg-type]  # (a dataclass type)
    return record(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class LoginState:
    """What a `state` value stands for while the user is at Telenor."""

    app: str
    return_to: str
    mode: str
    binding: str  # SHA-256 of the login-binding cookie
    verifier: str | None  # our PKCE verifier towards Telenor
    client_challenge: str | None  # the native app's S256 challenge (mode "native")
    created_at: float
    client_state: str | None = None  # the native app's own `state`, returned to it as sent


# The state, deleted only when the callback's browser holds its binding (ARGV: the SHA-256
# of each binding the browser sent): {1, state} when consumed, {0, state} when left for the
# browser that started the login, nil when there is none.
_CONSUME_BOUND = """
local value = redis.call('GET', KEYS[1])
if not value then return false end
local binding = cjson.decode(value)['binding']
for i = 1, #ARGV do
  if ARGV[i] == binding then
    redis.call('DEL', KEYS[1])
    return {1, value}
  end
end
return {0, value}
"""


class StateStore:
    """Single-use login states: `SET … EX` on start; on the callback, deleted by the browser
    that started the login, and only by it (`consume_bound`)."""

    def __init__(self, redis: Redis | RedisCluster, *, prefix: str, ttl: int, clock: Clock) -> None:
        self._redis = redis
        self._prefix = prefix + "state:"
        self._ttl = ttl
        self._clock = clock
        self._consume_bound = redis.register_script(_CONSUME_BOUND)

    async def issue(self, state: LoginState) -> str:
        value = new_token(24)  # 192 bits
        async with redis_errors():
            await self._redis.set(self._prefix + value, json.dumps(asdict(state)), ex=self._ttl)
        return value

    async def consume_bound(
        self, value: str, bindings: list[str]
    ) -> tuple[LoginState | None, bool]:
        """(the state, whether it was consumed): exactly once, and only for a browser that
        sent its binding (`bindings`: their SHA-256). Another browser's callback leaves it for
        the right one (RFC 9700 §4.7), so it cannot end that login. (None, False) when
        unknown, used or expired."""
        if not value or len(value) > 128:
            return None, False
        async with redis_errors():
            found = await self._consume_bound(keys=[self._prefix + value], args=bindings)
        if not found:
            return None, False
        consumed, raw = found
        state = known(LoginState, json.loads(raw))
        if self._clock() - state.created_at > self._ttl:
            return None, False
        return state, bool(consumed)

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
        state = known(LoginState, json.loads(raw))
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
    ref: str = ""  # the opaque reference operators see (never the id or its key)
    via: str = "cookie"  # how it authenticates: "cookie" or "bearer"
    created_at: float = 0.0
    subscriber: str | None = None  # the keyed hash of its MSISDN, when the login learnt it

    @functools.cached_property  # (a record opened once serves many calls: `SessionStore.decode`)
    def ends(self) -> float:
        """When the session is over: its absolute end with a refresh token (the token is
        renewed), else whichever comes first of that and the token's expiry."""
        return self.ends_at if self.refresh_token else min(self.expires_at, self.ends_at)

    def live(self, now: float) -> bool:
        return now < self.ends


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
        *,
        prefix: str,
        cipher: Cipher,
        max_seconds: int,
        clock: Clock,
        wait: tuple[int, int] = (0, 0),
        on_unreplicated: Callable[[], None] = lambda: None,
    ) -> None:
        self._redis = redis
        self._wait = wait  # (replicas, milliseconds): BFF_REDIS_WAIT_*
        self._on_unreplicated = on_unreplicated
        self._prefix = prefix + "session:"
        self._cipher = cipher
        self._max = max_seconds
        self._clock = clock
        self._opened: dict[str, tuple[bytes, Session]] = {}  # key: (ciphertext, session)
        self._keys: dict[str, str] = {}
        self.index = SessionIndex(redis, prefix=prefix, max_seconds=max_seconds, clock=clock)

    def key(self, session_id: str) -> str:
        """`{prefix}session:{<sha256>}`: the braces are a Cluster hash tag, so the session's
        lock and rate-limit counter live in its slot (one script touches both). Remembered
        for the ids seen recently, as their records are (`OPENED_MAX`)."""
        key = self._keys.get(session_id)
        if key is None:
            if len(self._keys) >= self.OPENED_MAX:
                self._keys.clear()
            key = self._keys[session_id] = f"{self._prefix}{{{digest(session_id)}}}"
        return key

    @staticmethod
    def hash_tag(key: str) -> str:
        """The `{<sha256>}` part of a session key: what its rate-limit counter is named by."""
        return key[key.rindex("{") :]

    def seal(self, session: Session, key: str) -> bytes:
        return self._cipher.seal(json.dumps(asdict(session)).encode(), key)

    def unseal(self, blob: bytes, key: str) -> Session | None:
        plain = self._cipher.open(blob, key)
        return known(Session, json.loads(plain)) if plain else None

    def new(
        self,
        app: str,
        access_token: str,
        expires_in: int,
        refresh: str | None,
        subscriber: str | None = None,
    ) -> Session:
        now = self._clock()
        return Session(
            app,
            access_token,
            now + expires_in,
            now + self._max,
            refresh,
            created_at=now,
            subscriber=subscriber,
        )

    def ttl(self, session: Session) -> int:
        """Seconds Redis keeps the record: until the session ends."""
        return max(1, int(session.ends - self._clock()))

    def new_id(self) -> tuple[str, str]:
        """A brand-new session id (never one a client chose: no fixation) and its key."""
        session_id = new_token(32)
        return session_id, self.key(session_id)

    async def create(
        self, session: Session, via: str = "cookie", session_id: str | None = None
    ) -> tuple[str, int, Session]:
        """Store a session under a brand-new id (`new_id`'s, or a fresh one) and list it in
        the index (one pipeline; with `BFF_REDIS_WAIT_REPLICAS`, its WAIT too, except on a
        Cluster, where it is a second call to the key's node); returns (id, ttl, the session
        as stored)."""
        session_id = session_id or new_token(32)
        session = replace(session, ref=new_token(16), via=via)
        ttl = self.ttl(session)
        key = self.key(session_id)
        entry = Entry(
            session.ref, key, session.app, via, session.created_at, session.ends, session.subscriber
        )
        async with redis_errors():
            pipe = self._redis.pipeline(transaction=False)
            pipe.set(key, self.seal(session, key), ex=ttl)
            self.index.add_to(pipe, entry, ttl)
            replicas, ms = self._wait
            cluster = self._redis if isinstance(self._redis, RedisCluster) else None
            if replicas and cluster is None:
                pipe.execute_command("WAIT", replicas, ms)
            replies = await pipe.execute()
            if replicas:
                if cluster is not None:
                    node = cluster.get_node_from_key(key)
                    acked = await cluster.execute_command("WAIT", replicas, ms, target_nodes=node)
                else:
                    acked = replies[-1]
                if int(acked) < replicas:
                    unreplicated(int(acked), replicas)
                    self._on_unreplicated()
        return session_id, ttl, session

    def decode(self, blob: bytes | None, key: str) -> Session | None:
        """A live session from a stored record, or None (missing, undecryptable, ended)."""
        if blob is None:
            return None
        # (By key, then the ciphertext compared: hashing the whole record per call cost more.)
        opened = self._opened.get(key)
        if opened is not None and opened[0] == blob:
            session = opened[1]
        else:
            unsealed = self.unseal(blob, key)
            if unsealed is None:
                return None
            if len(self._opened) >= self.OPENED_MAX:
                self._opened.clear()
            self._opened[key] = blob, unsealed
            session = unsealed
        return session if session.live(self._clock()) else None

    async def replace(self, key: str, session: Session) -> None:
        """Re-seal a session (a refresh), only if it is still there: a revocation while the
        refresh was on its way must stand."""
        async with redis_errors():
            await self._redis.set(key, self.seal(session, key), ex=self.ttl(session), xx=True)

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
            return as_bytes(await self._redis.get(key))


@dataclass(frozen=True)
class AuthCode:
    """A finished native-app login waiting for the app's token request (RFC 6749 §4.1.3)."""

    app: str
    challenge: str  # the app's S256 code_challenge
    redirect_uri: str  # as the authorization request sent it (the token request must match)
    session: dict[str, Any]


@dataclass(frozen=True)
class Redeemed:
    """What a token request found behind a code: the code's login on its first use; on any
    later use, the key of the session the first use was given (to end it, RFC 6749 §4.1.2)."""

    code: AuthCode | None = None
    reused: str | None = None


class CodeStore:
    """Single-use authorization codes, sealed under the SHA-256 of the code.

    Redeeming swaps the record, atomically (`SET … XX GET KEEPTTL`), for a marker naming the
    session key its one redemption gets. So a code works once. A later use finds the marker,
    puts it back flagged `reused` (its own swap replaced it for a moment) and ends that
    session; the first redemption looks for the flag once its session exists (`was_reused`),
    so a reuse that lands before the session does still ends it. The marker lives until the
    code's own expiry.
    """

    def __init__(
        self, redis: Redis | RedisCluster, *, prefix: str, cipher: Cipher, ttl: int
    ) -> None:
        self._redis = redis
        self._prefix = prefix + "code:"
        self._cipher = cipher
        self.ttl = ttl

    async def issue(self, code: AuthCode) -> str:
        value = new_token(24)  # 192 bits
        key = self._prefix + digest(value)
        async with redis_errors():
            await self._redis.set(key, self._seal(asdict(code), key), ex=self.ttl)
        return value

    async def redeem(self, value: str, session_key: str) -> Redeemed:
        """The code's login, exactly once (a failed redemption spends it too); the session
        key of the first redemption on a reuse; nothing when unknown or expired."""
        if not value or len(value) > 128:
            return Redeemed()
        key = self._prefix + digest(value)
        marker = self._seal({"used": session_key}, key)
        async with redis_errors():
            old = await self._redis.set(key, marker, xx=True, keepttl=True, get=True)
        blob = as_bytes(old) if isinstance(old, bytes | str) else None
        plain = self._cipher.open(blob, key) if blob else None
        if not plain:
            return Redeemed()
        data = json.loads(plain)
        if "used" in data:
            first = self._seal({"used": data["used"], "reused": True}, key)
            async with redis_errors():
                await self._redis.set(key, first, xx=True, keepttl=True)
            return Redeemed(reused=data["used"])
        return Redeemed(code=known(AuthCode, data))

    async def was_reused(self, value: str) -> bool:
        """Whether a later use of this redeemed code has been seen."""
        key = self._prefix + digest(value)
        async with redis_errors():
            blob = as_bytes(await self._redis.get(key))
        plain = self._cipher.open(blob, key) if blob else None
        return bool(plain and json.loads(plain).get("reused"))

    def _seal(self, data: dict[str, Any], key: str) -> bytes:
        return self._cipher.seal(json.dumps(data).encode(), key)
