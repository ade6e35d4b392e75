"""The browser login: start (state, binding, authorize URL) and finish (the callback).

Order on the callback follows RFC 9700 §4.7: the state is checked against the app and the
login-binding cookie, and consumed only by the browser that holds that binding, *before* the
code is redeemed or an error acted on. So a forged or replayed callback never reaches
Telenor's token endpoint, and a callback sent from another browser cannot end the login.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlencode, urlsplit

from ..config import AppConfig, Settings
from ..contract.scope import RequestScope
from ..kit.clock import Clock
from ..kit.crypto import digest, new_token, pkce_challenge
from ..kit.errors import BffError, Flow
from ..kit.urls import schemeful_site
from ..observe.events import Events
from ..observe.tracing import NO_TRACE, Tracing
from ..store.ratelimit import RateLimiter, address_bucket
from ..store.session_index import SubscriberHash
from ..store.stores import LoginState, Session, SessionStore, StateStore
from ..telenor import Telenor, TokenError
from .return_urls import ReturnUrlPolicy

_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")  # new_token(32)
START_PARAMS = ("return_to", "mode")
KEPT_LOGINS = 3  # logins of one browser that may finish in parallel (tabs)


@dataclass(frozen=True)
class Binding:
    """The login-binding cookie: `{browser}.{login}[.{login}…]`.

    Every login mints a fresh binding of its own (`issue`), and its state stores only the
    SHA-256 of it; the callback must present it (RFC 9700 §4.7: the state is bound to the
    browser). The few before it are kept beside it, so logins started in parallel tabs can all
    finish. `browser` is a stable random id of this browser: the key of its own login limit,
    nothing else. The cookie is `__Host-` on https, so no other host can plant one.
    """

    browser: str
    logins: tuple[str, ...]

    @classmethod
    def parse(cls, value: str | None) -> Binding | None:
        parts = value.split(".") if value else []
        if not 2 <= len(parts) <= KEPT_LOGINS + 1 or not all(map(_TOKEN.fullmatch, parts)):
            return None
        return cls(parts[0], tuple(parts[1:]))

    @classmethod
    def issue(cls, previous: Binding | None) -> tuple[Binding, str]:
        """The cookie for a new login (its browser id kept) and the new login's binding."""
        login = new_token(32)
        if previous is None:
            return cls(new_token(32), (login,)), login
        return cls(previous.browser, (login, *previous.logins)[:KEPT_LOGINS]), login

    @property
    def value(self) -> str:
        return ".".join((self.browser, *self.logins))


@dataclass(frozen=True)
class NativeClient:
    """A native app's authorization request, as its authorization server (`native.py`) has
    checked it: the registered redirect URI it named, its S256 challenge, its state."""

    redirect_uri: str
    challenge: str
    state: str | None


class NativeEnding(Protocol):
    """How a native app's login ends: its authorization server's answer (`native.py`)."""

    async def respond(self, state: LoginState, session: Session) -> str:
        """The app's redirect URI with the code for `session` and the app's state."""
        ...


@dataclass(frozen=True)
class LoginStart:
    """A request to start a login: from the login page's query, the JSON API's body, or a
    native app's checked authorization request (`native`)."""

    app: str
    return_to: str | None
    mode: str | None
    binding: str | None  # the browser's binding cookie, if any
    client: str  # its address, for the per-address limit
    network: bool = False  # leave for Telenor through the plain-http network entry
    native: NativeClient | None = None

    @classmethod
    def of(
        cls,
        req: RequestScope,
        *,
        return_to: str | None = None,
        mode: str | None = None,
        network: bool = False,
        native: NativeClient | None = None,
    ) -> LoginStart:
        return cls(
            app=req.named or "",
            return_to=native.redirect_uri if native is not None else return_to,
            mode=mode,
            binding=req.binding,
            client=req.client or "unknown",
            network=network,
            native=native,
        )


@dataclass(frozen=True)
class Started:
    authorization_url: str  # Telenor's, or the network entry's way there
    binding: str  # the binding cookie's new value
    expires_at: float


@dataclass(frozen=True)
class Finished:
    redirect_to: str
    mode: str
    session: Session
    session_id: str | None = None  # cookie mode only
    max_age: int = 0


class LoginFlow:
    """Starts and finishes logins for every configured app."""

    def __init__(
        self,
        *,
        settings: Settings,
        states: StateStore,
        sessions: SessionStore,
        native: NativeEnding,
        telenor: Telenor,
        clock: Clock,
        limiter: RateLimiter,
        events: Events,
        subscribers: SubscriberHash,
        tracing: Tracing | None = None,
    ) -> None:
        self._tracing = tracing or NO_TRACE
        self._limiter = limiter
        self._events = events
        self._subscribers = subscribers
        self._settings = settings
        self._states = states
        self._sessions = sessions
        self._native = native
        self._telenor = telenor
        self._clock = clock
        self._policies = {a: ReturnUrlPolicy(cfg) for a, cfg in settings.apps.items()}

    def app(self, app_id: str) -> AppConfig:
        cfg = self._settings.apps.get(app_id)
        if cfg is None:
            raise BffError("unknown_app", f"No app called {app_id[:40]!r} is configured.")
        return cfg

    def flow(
        self,
        app_id: str,
        return_to: str | None = None,
        mode: str = "cookie",
        client_state: str | None = None,
    ) -> Flow:
        cfg = self.app(app_id)
        if return_to is None:  # (a callback whose state is gone: "try again" needs somewhere)
            return_to = next(
                (u for u in cfg.return_urls if u.startswith(("https:", "http:"))), None
            )
        return Flow(app_id, cfg.display_name or app_id, return_to, mode, client_state)

    def return_url(self, app_id: str, return_to: str | None) -> str | None:
        """`return_to` when the app allows it (the one open-redirect rule), else None."""
        return self._policies[app_id].check(return_to)

    def start_flow(self, start: LoginStart) -> Flow:
        """What an error page (or a native app's error redirect) needs of this start."""
        if start.native is None:
            return self.flow(start.app)
        native = start.native
        return self.flow(start.app, native.redirect_uri, "native", native.state)

    def check_start(self, start: LoginStart) -> tuple[AppConfig, str, str]:
        """(app, accepted return URL, mode) of a login request, or the BffError to show. A
        native start was checked by its authorization server (`native.py`)."""
        app_id = start.app
        cfg = self.app(app_id)
        if start.native is not None:
            return cfg, start.native.redirect_uri, "native"
        base = self.flow(app_id)
        if start.mode not in (None, "cookie"):
            detail = "mode must be cookie"
            if start.mode == "handoff":
                detail = (
                    f"Handoff mode is gone: native apps use OAuth at /oauth2/{app_id}/authorize."
                )
            raise BffError("bad_request", detail, flow=base)
        checked = self.return_url(app_id, start.return_to)
        if checked is None:
            raise BffError(
                "bad_return_to", "return_to is not one of the app's return URLs.", flow=base
            )
        return cfg, checked, "cookie"

    async def start(self, start: LoginStart) -> Started:
        """A fresh single-use state, bound to a fresh binding, and the URL to send the browser
        to: Telenor's authorize URL, or with `network` the plain-http entry's way there. A
        failure names the login it stopped (its page, or a native app's error redirect)."""
        try:
            return await self._start(start)
        except BffError as exc:
            exc.flow = exc.flow or self.start_flow(start)
            raise

    async def _start(self, start: LoginStart) -> Started:
        cfg, checked, mode = self.check_start(start)
        app_id = start.app
        previous = Binding.parse(start.binding)
        binding, login = Binding.issue(previous)
        counts = [("login", address_bucket(start.client, self._settings.rate_limit_ipv6_prefix))]
        if previous is not None:  # a browser's first login counts against its address only
            counts.append(("login_browser", digest(binding.browser)))
        await self._limiter.hit(*counts, ceiling=("login_app", app_id), tag=f"{{login:{app_id}}}:")
        verifier = new_token(48) if cfg.pkce else None
        record = LoginState(
            app=app_id,
            return_to=checked,
            mode=mode,
            binding=digest(login),
            verifier=verifier,
            client_challenge=start.native.challenge if start.native else None,
            created_at=self._clock(),
            client_state=start.native.state if start.native else None,
        )
        state = await self._states.issue(record)
        entry = self._settings.network_auth_url
        if start.network and entry:
            # Telenor identifies the line only on a plain-http leg: leave from the http entry.
            url = f"{entry}/auth/{app_id}/network?{urlencode({'state': state})}"
        else:
            url = self._authorize_url(app_id, cfg, state, record)
        self._events.login_started(app_id, mode)
        return Started(url, binding.value, record.created_at + self._settings.state_ttl_seconds)

    def _authorize_url(self, app_id: str, cfg: AppConfig, state: str, record: LoginState) -> str:
        challenge = pkce_challenge(record.verifier) if record.verifier else None
        return self._telenor.authorize_url(
            cfg, state, self._settings.callback_url(app_id), challenge
        )

    async def leave(self, app_id: str, state: str) -> str:
        """Telenor's authorize URL for a login started on the https hop (read, not consumed:
        the callback consumes it)."""
        cfg = self.app(app_id)
        record = await self._states.peek(state)
        if record is None:
            raise BffError("login_expired", flow=self.flow(app_id))
        if record.app != app_id:
            raise BffError("wrong_app", flow=self.flow(app_id))
        return self._authorize_url(app_id, cfg, state, record)

    async def telenor_logout(self, access_token: str) -> None:
        """Best-effort logout at Telenor (optional in its API; never blocks ours)."""
        await self._telenor.logout(access_token)

    async def finish(
        self,
        app_id: str,
        params: Mapping[str, str],
        binding_cookie: str | None,
        client: str | None = None,
    ) -> Finished:
        """Validate the callback, redeem the code, create the session; raise BffError otherwise."""
        cfg = self.app(app_id)
        binding = Binding.parse(binding_cookie)
        try:
            finished = await self._finish(app_id, cfg, params, binding.logins if binding else ())
        except BffError as exc:
            self._events.login_failed(app_id, exc.code, client=client)
            raise
        self._events.login_completed(
            app_id,
            finished.mode,
            subscriber=finished.session.subscriber,
            session_ref=finished.session.ref or None,
            client=client,
        )
        if finished.session_id is not None:  # a cookie login
            self._cross_site(app_id, finished.redirect_to)
        return finished

    def _cross_site(self, app_id: str, page: str) -> None:
        """Warn when the page a cookie login returns to is on another site than the BFF: its
        calls will carry no session cookie (browsers block third-party cookies)."""
        bff = self._settings.public_url
        if urlsplit(page).scheme in ("http", "https") and schemeful_site(page) != schemeful_site(
            bff
        ):
            self._events.cross_site_login(app_id, schemeful_site(bff), schemeful_site(page))

    async def _finish(
        self, app_id: str, cfg: AppConfig, params: Mapping[str, str], bindings: tuple[str, ...]
    ) -> Finished:
        state, bound = await self._states.consume_bound(
            params.get("state", ""), [digest(b) for b in bindings]
        )
        error = params.get("error")
        flow = (
            self.flow(app_id, state.return_to, state.mode, state.client_state)
            if state is not None and state.app == app_id and bound
            else self.flow(app_id)  # (another browser learns nothing of the login: not its
        )  # return URL, not a native app's state)
        if state is not None and state.app != app_id:
            raise BffError("wrong_app", flow=flow)
        if state is not None and not bound:
            # Not this browser's login: left in place, for the browser that started it.
            raise BffError("wrong_browser", flow=flow)
        if error:
            # Telenor's documented denial; other RFC 6749 §4.1.2.1 codes get the generic page.
            code = "access_denied" if error == "access_denied" else "telenor_error"
            raise BffError(code, _safe(params.get("error_description")), flow=flow)
        if state is None:
            raise BffError("login_expired", flow=flow)
        auth_code = params.get("code")
        if not auth_code or len(auth_code) > 512:
            raise BffError("bad_callback", flow=flow)
        started = time.perf_counter()
        try:
            with self._tracing.child("token exchange", app=app_id):
                tokens = await self._telenor.exchange_code(
                    cfg, auth_code, self._settings.callback_url(app_id), state.verifier
                )
        except TokenError as exc:
            self._events.token_exchange(app_id, "rejected", time.perf_counter() - started)
            raise BffError(
                "token_rejected", f"Token endpoint said {exc.error}.", flow=flow
            ) from None
        except BffError as exc:
            self._events.token_exchange(app_id, "unavailable", time.perf_counter() - started)
            raise BffError("telenor_unavailable", status=exc.status, flow=flow) from None
        self._events.token_exchange(app_id, "ok", time.perf_counter() - started)
        subscriber = None
        if cfg.subscriber_index:  # one Mobile User Info call, to revoke by subscriber later
            msisdn = await self._telenor.msisdn(tokens.access_token)
            subscriber = self._subscribers(msisdn) if msisdn else None
        session = self._sessions.new(
            app_id, tokens.access_token, tokens.expires_in, tokens.refresh_token, subscriber
        )
        if state.mode == "native":
            try:
                return Finished(await self._native.respond(state, session), "native", session)
            except BffError as exc:
                exc.flow = flow  # (the app hears of it on its redirect URI)
                raise
        session_id, ttl, stored = await self._sessions.create(session)
        return Finished(state.return_to, "cookie", stored, session_id, ttl)


def _safe(text: str | None) -> str | None:
    """An upstream description, trimmed to printable ASCII for a page or a log line."""
    if not text:
        return None
    return "".join(ch for ch in text[:200] if 32 <= ord(ch) < 127) or None
