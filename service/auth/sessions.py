"""Who is calling: the session behind a cookie or a bearer token, refresh, logout.

A request is authenticated by `Authorization: Bearer <session token>` (mobile apps) or by the
app's session cookie (SPAs). Either resolves in one Redis round trip (a script that also counts
the call against the session's rate limit); the record names its app, so a credential of app A
never authenticates app B.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from ..config import AppConfig
from ..contract.scope import RequestScope
from ..kit.clock import Clock
from ..kit.errors import BffError
from ..observe.events import Events
from ..observe.tracing import NO_TRACE, REDIS_READ, Tracing
from ..store.ratelimit import RateLimiter
from ..store.stores import Session, SessionStore
from ..telenor import Telenor, TokenError

REFRESH_LOCK_SECONDS = 15.0
REFRESH_POLL_SECONDS = 0.05
MAX_CREDENTIAL = 256  # a session token or id is 43 characters; anything far longer is not one


@dataclass
class Caller:
    """An authenticated request: the Redis key of its session and the session itself."""

    key: str
    session: Session
    via: str  # "cookie" | "bearer"


class SessionAuth:
    """Resolves, refreshes and ends sessions."""

    def __init__(
        self,
        *,
        sessions: SessionStore,
        telenor: Telenor,
        refresh_skew: int,
        refresh_wait: float,
        clock: Clock,
        limiter: RateLimiter,
        events: Events,
        tracing: Tracing | None = None,
    ) -> None:
        self._trace = tracing if tracing is not None and tracing.on else None
        self._limiter = limiter
        self._events = events
        self._sessions = sessions
        self._telenor = telenor
        self._skew = refresh_skew
        self._refresh_wait = refresh_wait
        self._clock = clock
        self._inflight: dict[str, asyncio.Future[Session]] = {}

    def _session_key(self, req: RequestScope) -> str | None:
        """The Redis key of the session the request's credential names. The session id itself
        goes no further than this."""
        credential = req.credential
        if credential is None or not 0 < len(credential.secret) <= MAX_CREDENTIAL:
            return None
        return self._sessions.key(credential.secret)

    def _caller(self, blob: bytes | None, key: str, via: str, app_id: str) -> Caller | None:
        session = self._sessions.decode(blob, key)
        if session is None or session.app != app_id:
            return None
        return Caller(key, session, via)

    async def current(self, req: RequestScope, app: AppConfig) -> Caller | None:
        """The live session of this app behind the request's credential, refreshed when due:
        one round trip without a refresh, which also counts the call against the session's
        rate limit."""
        key = self._session_key(req)
        if key is None or req.app is None or req.credential is None:
            return None
        if self._trace is None:
            blob = await self._limiter.read_counted(key, "api", SessionStore.hash_tag(key))
        else:
            with self._trace.child("redis session read", **REDIS_READ):
                blob = await self._limiter.read_counted(key, "api", SessionStore.hash_tag(key))
        caller = self._caller(blob, key, req.credential.kind, req.app)
        if caller is None:
            return None
        session = caller.session
        if session.refresh_token and session.expires_at - self._clock() <= self._skew:
            caller.session = await self._refresh(key, session, app)
        return caller

    async def end(self, caller: Caller) -> None:
        """Forget a session whose token Telenor no longer accepts."""
        await self._sessions.delete_key(caller.key)

    async def _refresh(self, key: str, session: Session, app: AppConfig) -> Session:
        """Refresh once per session: one flight per process, one Redis lock across processes."""
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Session] = asyncio.get_running_loop().create_future()
        # Mark the outcome as retrieved even when no waiter came along.
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._inflight[key] = future
        try:
            result = await self._refresh_shared(key, session, app)
        except BaseException as exc:
            future.set_exception(exc)
            raise
        else:
            future.set_result(result)
            return result
        finally:
            del self._inflight[key]

    async def _refresh_shared(self, key: str, session: Session, app: AppConfig) -> Session:
        if not await self._sessions.lock(key, REFRESH_LOCK_SECONDS):
            return await self._await_other_refresh(key, session)
        try:
            # Double-check under the lock: another worker may have refreshed since we read it
            # (its refresh token is then spent, and using it would end the session).
            current = self._sessions.decode(await self._sessions.raw(key), key)
            if current is None:
                raise BffError("session_expired")
            if current.access_token != session.access_token:
                return current
            assert session.refresh_token is not None
            try:
                with (self._trace or NO_TRACE).child("token refresh", app=session.app):
                    tokens = await self._telenor.refresh(app, session.refresh_token)
            except TokenError:
                self._events.refreshed(session.app, "rejected")
                await self._sessions.delete_key(key)
                raise BffError("session_expired", "Telenor refused to refresh.") from None
            except BffError:
                self._events.refreshed(session.app, "unavailable")
                if self._clock() < session.expires_at:
                    return session  # Telenor is down but the token still works: use it.
                raise
            now = self._clock()
            fresh = Session(
                session.app,
                tokens.access_token,
                now + tokens.expires_in,
                session.ends_at,
                tokens.refresh_token or session.refresh_token,
            )
            await self._sessions.replace(key, fresh)
            self._events.refreshed(session.app, "ok")
            return fresh
        finally:
            await self._sessions.unlock(key)

    async def _await_other_refresh(self, key: str, session: Session) -> Session:
        """Another worker holds the lock: reuse its result once it lands in Redis."""
        deadline = self._clock() + self._refresh_wait
        while self._clock() < deadline:
            await asyncio.sleep(REFRESH_POLL_SECONDS)
            current = self._sessions.decode(await self._sessions.raw(key), key)
            if current is None:
                raise BffError("session_expired")
            if current.access_token != session.access_token:
                return current
        if self._clock() < session.expires_at:
            return session
        raise BffError("upstream_timeout", "The token refresh did not finish in time.")

    async def logout(self, req: RequestScope) -> Session | None:
        """End the caller's session; the ended session (for Telenor's logout) or None."""
        if req.app is None or req.credential is None:
            return None
        return await self.end_credential(
            req.app, req.credential.secret, req.credential.kind, req.client
        )

    async def end_credential(
        self, app_id: str, secret: str, via: str, client: str | None
    ) -> Session | None:
        """End the session of this app that `secret` (a session id or token) names: a logout,
        or a native app's RFC 7009 revocation. The ended session, or None."""
        if not 0 < len(secret) <= MAX_CREDENTIAL:
            return None
        key = self._sessions.key(secret)
        caller = self._caller(await self._sessions.raw(key), key, via, app_id)
        if caller is None:
            return None
        await self._sessions.delete_key(caller.key)
        session = caller.session
        self._events.logout(
            app_id,
            caller.via,
            subscriber=session.subscriber,
            session_ref=session.ref or None,
            client=client,
        )
        return session

    async def revoke_all(self, req: RequestScope, app: AppConfig) -> int:
        """End every session of the caller's subscriber in this app ("sign out on all my
        devices"), the caller's own included; how many ended."""
        caller = await self.current(req, app)
        if caller is None or req.app is None:
            raise BffError("not_authenticated", "Sign in first.")
        subscriber = caller.session.subscriber
        index = self._sessions.index
        entries = (
            await index.live(apps=(), subscribers=[subscriber], app=req.app) if subscriber else []
        )
        revoked = await index.revoke(entries)
        if not any(entry.key == caller.key for entry in entries):
            await self._sessions.delete_key(caller.key)  # (not indexed by subscriber)
            revoked += 1
        self._events.revoked(
            by="user",
            revoked=revoked,
            app=req.app,
            subscriber=subscriber,
            session_ref=caller.session.ref or None,
            client=req.client,
        )
        return revoked
