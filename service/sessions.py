"""Who is calling: the session behind a cookie or a bearer token, refresh, handoff, logout.

A request is authenticated by `Authorization: Bearer <session token>` (mobile apps) or by the
app's session cookie (SPAs). Either resolves in one Redis round trip (a script that also counts
the call against the session's rate limit); the record names its app, so a credential of app A
never authenticates app B.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Sequence
from dataclasses import dataclass

from starlette.requests import cookie_parser

from .config import AppConfig
from .cookies import Cookies
from .crypto import pkce_challenge
from .errors import BffError
from .events import Events
from .stores import Clock, HandoffStore, RateLimiter, Session, SessionStore
from .telenor import Telenor, TokenError

RawHeaders = Sequence[tuple[bytes, bytes]]
REFRESH_LOCK_SECONDS = 15.0
REFRESH_POLL_SECONDS = 0.05


@dataclass
class Caller:
    """An authenticated request: the Redis key of its session and the session itself."""

    key: str
    session: Session
    via: str  # "cookie" | "bearer"


class SessionAuth:
    """Resolves, refreshes and ends sessions; redeems handoff codes."""

    def __init__(
        self,
        sessions: SessionStore,
        handoffs: HandoffStore,
        telenor: Telenor,
        cookies: Cookies,
        refresh_skew: int,
        refresh_wait: float,
        clock: Clock,
        limiter: RateLimiter,
        events: Events,
    ) -> None:
        self._limiter = limiter
        self._events = events
        self._sessions = sessions
        self._handoffs = handoffs
        self._telenor = telenor
        self._cookies = cookies
        self._skew = refresh_skew
        self._refresh_wait = refresh_wait
        self._clock = clock
        self._inflight: dict[str, asyncio.Future[Session]] = {}

    def _session_key(self, headers: RawHeaders, app: str) -> tuple[str, str] | None:
        """(Redis key of the session, "bearer"|"cookie") from a request's raw headers, bearer
        first. The session id itself goes no further than this."""
        authorization = cookie = None
        for name, value in headers:
            if name == b"authorization" and authorization is None:
                authorization = value
            elif name == b"cookie" and cookie is None:
                cookie = value
        if authorization and authorization[:7].lower() == b"bearer ":
            token = authorization[7:].strip().decode("latin-1")
            return (self._sessions.key(token), "bearer") if 0 < len(token) <= 256 else None
        if cookie is None:
            return None
        found = self._cookies.read_session(cookie_parser(cookie.decode("latin-1")), app)
        return (self._sessions.key(found), "cookie") if found and len(found) <= 256 else None

    def _caller(self, blob: bytes | None, key: str, via: str, app_id: str) -> Caller | None:
        session = self._sessions.decode(blob, key)
        if session is None or session.app != app_id:
            return None
        return Caller(key, session, via)

    async def current(self, headers: RawHeaders, app_id: str, app: AppConfig) -> Caller | None:
        """The live session of this app behind the request's credential, refreshed when due:
        one round trip without a refresh, which also counts the call against the session's
        rate limit."""
        found = self._session_key(headers, app_id)
        if found is None:
            return None
        key, via = found
        blob = await self._sessions.raw_counted(key, self._limiter)
        caller = self._caller(blob, key, via, app_id)
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

    async def redeem_handoff(self, app_id: str, code: str, verifier: str) -> tuple[str, int]:
        """A bearer session token for a one-time handoff code and its PKCE verifier."""
        handoff = await self._handoffs.consume(code)
        if (
            handoff is None
            or handoff.app != app_id
            or not 43 <= len(verifier) <= 128
            or not hmac.compare_digest(pkce_challenge(verifier), handoff.challenge)
        ):
            raise BffError("handoff_invalid")
        session = Session(**handoff.session)
        if self._clock() >= min(session.expires_at, session.ends_at) and not session.refresh_token:
            raise BffError("handoff_invalid", "The login behind this code has already ended.")
        return await self._sessions.create(session)

    async def logout(self, headers: RawHeaders, app_id: str) -> Session | None:
        """End the caller's session; the ended session (for Telenor's logout) or None."""
        found = self._session_key(headers, app_id)
        if found is None:
            return None
        key, via = found
        caller = self._caller(await self._sessions.raw(key), key, via, app_id)
        if caller is None:
            return None
        await self._sessions.delete_key(caller.key)
        self._events.logout(app_id, caller.via)
        return caller.session
