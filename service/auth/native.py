"""OAuth 2.0 for native apps (RFC 8252): the BFF as each app's own authorization server.

A native app speaks standard OAuth to the BFF (authorization code, public client, S256 PKCE);
the BFF speaks line-authenticated OAuth to Telenor in between, and the app's access token is
an opaque BFF session token, never Telenor's. Everything of that profile lives here:

* `RedirectUris`: which redirect URIs an app may use;
* `AuthorizationServer`: the authorization request's rules (client, redirect URI, response
  type, state, S256 challenge), the token and revocation requests, the RFC 8414 metadata;
* `AuthorizationCodeGrant`: the one grant, owning both of its ends: the code the app gets
  when its login finishes (`respond`) and the code's redemption at the token endpoint;
* `OAuthError`: every error of the profile, which renders itself as the RFC 6749 §4.1.2.1
  redirect (when the app's redirect URI is known and checked) or as the §5.2 JSON.

The login in between is the browser flow's (`flow.py`, mode `native`); the routes are in
`routes/oauth2.py`.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from pydantic import BaseModel, ValidationError
from starlette.responses import Response

from ..config import AppConfig, Settings
from ..contract.models import TokenRequest, TokenRevocation
from ..contract.scope import RequestScope
from ..kit.clock import Clock
from ..kit.crypto import pkce_challenge
from ..kit.errors import BffError
from ..kit.responses import no_store_json, redirect
from ..kit.urls import loopback, with_query
from ..observe.events import event
from ..store.stores import AuthCode, CodeStore, LoginState, Session, SessionStore, known
from .flow import LoginFlow, LoginStart, NativeClient, Started
from .sessions import SessionAuth

CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")
STATE = re.compile(r"[\x20-\x7e]{1,512}")  # RFC 6749 Appendix A.5, bounded: it is stored
VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")  # RFC 7636 §4.1
FORM = "application/x-www-form-urlencoded"
M = TypeVar("M", bound=BaseModel)

# Our failure codes, as the RFC 6749 §4.1.2.1 error the app gets on its redirect URI.
_REDIRECT_ERRORS = {
    "access_denied": "access_denied",
    "wrong_browser": "access_denied",
    "rate_limited": "temporarily_unavailable",
    "busy": "temporarily_unavailable",
    "overloaded": "temporarily_unavailable",
    "store_unavailable": "temporarily_unavailable",
    "telenor_unavailable": "temporarily_unavailable",
    "challenge_required": "invalid_request",
    "bad_request": "invalid_request",
}


class OAuthError(Exception):
    """An error of the native profile, rendering itself: with `redirect_uri` (a registered
    one, checked) the RFC 6749 §4.1.2.1 redirect carrying the app's `state`; without, the
    §5.2 JSON of the token or revocation endpoint. `code` is what `bff_errors_total` counts:
    a login's own failure code, or `oauth_<error>`."""

    def __init__(
        self,
        error: str,
        description: str,
        *,
        status: int = 400,
        redirect_uri: str | None = None,
        state: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(error)
        self.error = error
        self.description = description
        self.status = status
        self.redirect_uri = redirect_uri
        self.state = state
        self.code = code or f"oauth_{error}"

    @classmethod
    def login_failed(cls, failure: BffError) -> OAuthError:
        """A native login's failure (its `flow` names the app's redirect URI and state), as
        the app hears it: the RFC 6749 error, and our own code as the description."""
        flow = failure.flow
        return cls(
            _REDIRECT_ERRORS.get(failure.code, "server_error"),
            failure.code,
            redirect_uri=flow.return_to if flow else None,
            state=flow.client_state if flow else None,
            code=failure.code,
        )

    def response(self) -> Response:
        if self.redirect_uri is not None:
            params = {"error": self.error, "error_description": self.description}
            if self.state is not None:
                params["state"] = self.state
            return redirect(with_query(self.redirect_uri, **params))
        body = {"error": self.error, "error_description": self.description}
        return no_store_json(body, self.status)


class RedirectUris:
    """One app's registered redirect URIs (`BFF_APPS__{ID}__NATIVE_REDIRECT_URIS`): exact
    matches, except that a loopback URI matches on any port (RFC 8252 §7.3)."""

    def __init__(self, app: AppConfig) -> None:
        self._exact = frozenset(app.native_redirect_uris)
        self._loopback = frozenset(
            found for uri in app.native_redirect_uris if (found := loopback(uri)) is not None
        )

    def __bool__(self) -> bool:
        return bool(self._exact)

    def match(self, uri: str | None) -> str | None:
        """The URI to redirect to, when it is registered; None otherwise."""
        if not uri or len(uri) > 2048:
            return None
        if uri in self._exact:
            return uri
        found = loopback(uri)
        return uri if found is not None and found in self._loopback else None


def read_form(content_type: str, body: bytes) -> dict[str, str]:
    """A token or revocation request's form: each field once (RFC 6749 §3.2)."""
    if content_type.split(";")[0].strip().lower() != FORM:
        raise OAuthError("invalid_request", f"The body must be {FORM}.")
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=True)
    except UnicodeDecodeError:
        raise OAuthError("invalid_request", "The body is not UTF-8.") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise OAuthError("invalid_request", f"{name} is given more than once.")
        form[name] = value
    return form


def _parsed(model: type[M], form: Mapping[str, str]) -> M:
    """The form as `model`, or `invalid_request` naming what is missing or wrong."""
    try:
        return model.model_validate(form)
    except ValidationError as exc:
        names = sorted({str(err["loc"][0]) for err in exc.errors() if err.get("loc")})
        raise OAuthError("invalid_request", f"Missing or invalid: {', '.join(names)}.") from None


class AuthorizationCodeGrant:
    """The authorization code grant, both of its ends: the code a finished login leaves on
    the app's redirect URI, and its redemption for a BFF session token."""

    def __init__(self, *, codes: CodeStore, sessions: SessionStore, clock: Clock) -> None:
        self._codes = codes
        self._sessions = sessions
        self._clock = clock

    async def respond(self, state: LoginState, session: Session) -> str:
        """The authorization response (RFC 6749 §4.1.2): a single-use code for the session
        to be, on the app's redirect URI, with the app's state."""
        if state.client_challenge is None:  # (no native start stores one without it)
            raise BffError("bad_request")
        code = await self._codes.issue(
            AuthCode(state.app, state.client_challenge, state.return_to, asdict(session))
        )
        params = {"code": code}
        if state.client_state is not None:
            params["state"] = state.client_state
        return with_query(state.return_to, **params)

    async def exchange(self, app_id: str, request: TokenRequest) -> tuple[str, int]:
        """A bearer session token and its lifetime for the code and its PKCE verifier (RFC
        6749 §4.1.3, RFC 7636 §4.6). A code works once; a second use also ends the session
        the first one got (RFC 6749 §4.1.2), since the code may have been stolen."""
        session_id, key = self._sessions.new_id()
        redeemed = await self._codes.redeem(request.code, key)
        if redeemed.reused is not None:
            await self._sessions.delete_key(redeemed.reused)
            event("authorization code reused", logging.WARNING, app=app_id)
            raise OAuthError("invalid_grant", "The code was already used; its session is ended.")
        found = redeemed.code
        if found is None:
            raise OAuthError("invalid_grant", "The code is unknown or expired.")
        if found.app != app_id:
            raise OAuthError("invalid_grant", "The code belongs to another client.")
        if found.redirect_uri != request.redirect_uri:
            raise OAuthError("invalid_grant", "redirect_uri is not the authorization request's.")
        verifier = request.code_verifier
        if not VERIFIER.fullmatch(verifier) or not hmac.compare_digest(
            pkce_challenge(verifier), found.challenge
        ):
            raise OAuthError("invalid_grant", "code_verifier does not match the code_challenge.")
        session = known(Session, found.session)
        if not session.live(self._clock()):
            raise OAuthError("invalid_grant", "The login behind this code has already ended.")
        token, ttl, _ = await self._sessions.create(session, via="bearer", session_id=session_id)
        if await self._codes.was_reused(request.code):  # (a reuse that came before the session)
            await self._sessions.delete_key(key)
            raise OAuthError("invalid_grant", "The code was used twice; its session is ended.")
        return token, ttl


class AuthorizationServer:
    """Each app's authorization server: authorize, token, revoke, and its metadata."""

    def __init__(
        self,
        *,
        settings: Settings,
        flow: LoginFlow,
        grant: AuthorizationCodeGrant,
        auth: SessionAuth,
    ) -> None:
        self._settings = settings
        self._flow = flow
        self._grant = grant
        self._auth = auth
        self._redirect_uris = {app: RedirectUris(cfg) for app, cfg in settings.apps.items()}

    def issuer(self, app: str) -> str:
        return f"{self._settings.public_url}/oauth2/{app}"

    def metadata(self, app: str) -> dict[str, Any]:
        """The RFC 8414 authorization server metadata of one app (404 for an app without
        native redirect URIs). No `jwks_uri` and no ID-token fields: the BFF issues no ID
        tokens, so OpenID discovery's fields would be untrue."""
        if not self._redirect_uris[app]:
            raise BffError("not_found", "This app has no native redirect URIs.")
        base = self.issuer(app)
        return {
            "issuer": base,
            "authorization_endpoint": f"{base}/authorize",
            "token_endpoint": f"{base}/token",
            "revocation_endpoint": f"{base}/revoke",
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none"],
            "revocation_endpoint_auth_methods_supported": ["none"],
        }

    async def authorize(self, req: RequestScope, app: str, query: Mapping[str, str]) -> Started:
        """The authorization request (RFC 6749 §4.1.1 with RFC 7636 S256), started as a
        login. A wrong `client_id` or an unregistered `redirect_uri` is the error page and
        redirects nowhere; every other failure goes back to the app (`OAuthError`, or the
        login's own, which names the app's redirect URI)."""
        if query.get("client_id", "") != app:
            raise BffError("bad_client", "client_id must be the app id.", flow=self._flow.flow(app))
        target = self._redirect_uris[app].match(query.get("redirect_uri", ""))
        if target is None:
            raise BffError("bad_redirect_uri", flow=self._flow.flow(app))
        state = query.get("state")
        if query.get("response_type", "") != "code":
            raise OAuthError(
                "unsupported_response_type",
                "bad_request",
                redirect_uri=target,
                state=state,
                code="bad_request",
            )
        if state is not None and not STATE.fullmatch(state):
            # Too long to keep (or not RFC 6749's characters): refused, and not sent back.
            raise OAuthError(
                "invalid_request", "bad_request", redirect_uri=target, code="bad_request"
            )
        challenge = query.get("code_challenge")
        if query.get("code_challenge_method") != "S256" or not (
            challenge and CHALLENGE.fullmatch(challenge)
        ):
            raise OAuthError(
                "invalid_request",
                "challenge_required",
                redirect_uri=target,
                state=state,
                code="challenge_required",
            )
        # When the network entry is set, every native login leaves through it: the app
        # cannot choose, and Telenor identifies the line only on its plain-http leg.
        return await self._flow.start(
            LoginStart.of(
                req,
                native=NativeClient(target, challenge, state),
                network=self._settings.network_auth_url is not None,
            )
        )

    async def token(self, app: str, form: Mapping[str, str]) -> dict[str, Any]:
        """The token request of a public client (RFC 6749 §4.1.3): code and verifier for a
        BFF session token; its errors are RFC 6749 §5.2 JSON."""
        if form.get("client_id") != app:
            raise OAuthError("invalid_client", "client_id must be the app id.", status=401)
        if form.get("grant_type") != "authorization_code":
            raise OAuthError("unsupported_grant_type", "Only authorization_code is supported.")
        access, ttl = await self._grant.exchange(app, _parsed(TokenRequest, form))
        return {"access_token": access, "token_type": "Bearer", "expires_in": ttl}

    async def revoke(self, app: str, form: Mapping[str, str], client: str | None) -> Session | None:
        """RFC 7009 revocation: ends the session the token names, as a logout; the ended
        session, or None (an unknown or already ended token is not an error)."""
        if form.get("client_id", app) != app:
            raise OAuthError("invalid_client", "client_id must be the app id.", status=401)
        request = _parsed(TokenRevocation, form)
        return await self._auth.end_credential(app, request.token, "bearer", client)
