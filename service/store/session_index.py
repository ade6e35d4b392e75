"""Who is signed in: the index of live sessions by app and by subscriber, and revocation.

Every session is listed under its app and, once the login learnt it, under its subscriber (the
MSISDN as Mobile User Info reports it, kept only as a keyed hash). Revoking deletes the session
records themselves, so it takes effect on the next request on every replica: the proxied call
reads the record on every call (its decrypted-record map is keyed by the exact ciphertext, and
there is none to find), and the call stays one round trip.

Keys, each touching one slot (Redis Cluster):

* `{prefix}idx:app:{app}` and `{prefix}idx:sub:{hash}`: sorted sets of the sessions' opaque
  references, scored by when each session ends, so ended ones are skipped and pruned;
* `{prefix}ref:{ref}`: what the index knows of one session (JSON: its Redis key, app, how it
  authenticates, when it began and ends, its subscriber); it ends with the session.

That is about 670 bytes of Redis per session beside its own record of about 510
(bench/README.md).

The reference is random: it says nothing about the session id or its key. The index may hold
entries of sessions that ended otherwise (a logout, an expiry): listing checks each record.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

from redis.asyncio import Redis, RedisCluster

from ..kit.clock import Clock
from .redis import redis_errors

BATCH = 500  # entries per pipeline when revoking many


@dataclass(frozen=True)
class Entry:
    """One session as the index lists it. `key` stays inside the BFF."""

    ref: str
    key: str
    app: str
    via: str
    created_at: float
    ends_at: float
    subscriber: str | None

    @property
    def record(self) -> str:
        return json.dumps(
            {
                "key": self.key,
                "app": self.app,
                "via": self.via,
                "created": self.created_at,
                "ends": self.ends_at,
                "sub": self.subscriber,
            },
            separators=(",", ":"),
        )

    @classmethod
    def of(cls, ref: str, record: bytes | str) -> Entry:
        data = json.loads(record)
        return cls(
            ref, data["key"], data["app"], data["via"], data["created"], data["ends"], data["sub"]
        )


def normal_msisdn(value: str) -> str:
    """A phone number's digits (`+47 900 00 001` and `4790000001` are one subscriber)."""
    return re.sub(r"\D", "", value)


class SubscriberHash:
    """The keyed hash a subscriber is known by: HMAC-SHA256 under a key derived from each
    session key. New sessions use the first key; lookups try all, so rotation loses nothing."""

    def __init__(self, session_keys: Iterable[bytes]) -> None:
        self._keys = [
            hashlib.sha256(b"line-auth-bff subscriber\0" + key).digest() for key in session_keys
        ]

    def __call__(self, msisdn: str) -> str:
        return self.all(msisdn)[0]

    def all(self, msisdn: str) -> list[str]:
        digits = normal_msisdn(msisdn).encode()
        # 80 bits: no collision among a country's subscribers, and too short for the log's
        # redactor to take it for a secret (24+ token characters).
        return [hmac.new(key, digits, hashlib.sha256).hexdigest()[:20] for key in self._keys]


class SessionIndex:
    """Lists and revokes sessions by app, by subscriber, by reference."""

    def __init__(
        self, redis: Redis | RedisCluster, *, prefix: str, max_seconds: int, clock: Clock
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._max = max_seconds
        self._clock = clock

    def _app_key(self, app: str) -> str:
        return f"{self._prefix}idx:app:{app}"

    def _sub_key(self, subscriber: str) -> str:
        return f"{self._prefix}idx:sub:{subscriber}"

    def _ref_key(self, ref: str) -> str:
        return f"{self._prefix}ref:{ref}"

    def add_to(self, pipe: object, entry: Entry, ttl: int) -> None:
        """Queue the commands that list `entry` on a pipeline that also stores its session."""
        ref = entry.ref
        pipe.zadd(self._app_key(entry.app), {ref: entry.ends_at})  # type: ignore[attr-defined]
        pipe.expire(self._app_key(entry.app), self._max)  # type: ignore[attr-defined]
        if entry.subscriber:
            sub = self._sub_key(entry.subscriber)
            pipe.zadd(sub, {ref: entry.ends_at})  # type: ignore[attr-defined]
            pipe.expire(sub, self._max)  # type: ignore[attr-defined]
        pipe.set(self._ref_key(ref), entry.record, ex=ttl)  # type: ignore[attr-defined]

    async def _entries(self, index: str) -> list[Entry]:
        """The entries of one index whose sessions have not ended by the clock."""
        async with redis_errors():
            refs: list[bytes] = await self._redis.zrangebyscore(index, self._clock(), "+inf")  # type: ignore[assignment]  # redis-py's reply type is a union
            if not refs:
                return []
            pipe = self._redis.pipeline(transaction=False)
            for ref in refs:
                pipe.get(self._ref_key(ref.decode()))
            records = await pipe.execute()
        return [
            Entry.of(ref.decode(), record)
            for ref, record in zip(refs, records, strict=True)
            if record is not None  # (its session ended: the reference went with it)
        ]

    async def live(
        self, *, apps: Iterable[str], subscribers: Iterable[str] = (), app: str | None = None
    ) -> list[Entry]:
        """The live sessions of these subscribers (any of their hashes), or else of these
        apps; only of `app` when given. A session whose record is gone (logged out, expired,
        revoked) is not listed, and leaves the index."""
        indexes = [self._sub_key(s) for s in subscribers] or [self._app_key(a) for a in apps]
        found: dict[str, Entry] = {}
        for index in indexes:
            for entry in await self._entries(index):
                if app is None or entry.app == app:
                    found[entry.ref] = entry
        entries = sorted(found.values(), key=lambda e: e.created_at)
        if not entries:
            return []
        async with redis_errors():
            pipe = self._redis.pipeline(transaction=False)
            for entry in entries:
                pipe.exists(entry.key)
            alive = await pipe.execute()
        gone = [e for e, there in zip(entries, alive, strict=True) if not there]
        if gone:
            await self._forget(gone)
        return [e for e, there in zip(entries, alive, strict=True) if there]

    async def by_ref(self, ref: str) -> Entry | None:
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", ref):
            return None
        async with redis_errors():
            record = await self._redis.get(self._ref_key(ref))
        if record is None:
            return None
        entry = Entry.of(ref, record)
        async with redis_errors():
            exists = await self._redis.exists(entry.key)
        return entry if exists else None

    async def revoke(self, entries: list[Entry]) -> int:
        """End these sessions now; how many were still there."""
        revoked = 0
        for start in range(0, len(entries), BATCH):
            batch = entries[start : start + BATCH]
            async with redis_errors():
                pipe = self._redis.pipeline(transaction=False)
                for entry in batch:
                    pipe.delete(entry.key)
                replies = await pipe.execute()
            revoked += sum(int(r) for r in replies)
            await self._forget(batch)
        return revoked

    async def _forget(self, entries: list[Entry]) -> None:
        """Take entries out of the index (their sessions are gone)."""
        async with redis_errors():
            pipe = self._redis.pipeline(transaction=False)
            for entry in entries:
                pipe.zrem(self._app_key(entry.app), entry.ref)
                if entry.subscriber:
                    pipe.zrem(self._sub_key(entry.subscriber), entry.ref)
                pipe.delete(self._ref_key(entry.ref))
            await pipe.execute()
