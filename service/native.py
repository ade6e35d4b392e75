"""OAuth 2.0 for native apps (RFC 8252): the BFF as each app's own authorization server.

A native app speaks standard OAuth to the BFF (authorization code, public client, S256 PKCE);
the BFF speaks line-authenticated OAuth to Telenor in between, and the app's access token is
an opaque BFF session token, never Telenor's. This module owns the rules of that profile:
which redirect URIs an app may use (`RedirectUris`), the RFC 8414 metadata, and the errors
(RFC 6749 §4.1.2.1 on the redirect, §5.2 from the token endpoint). The routes are in
`routes/oauth2.py`; the login itself is the browser flow's (`flow.py`, mode `native`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from starlette.responses import Response

from .config import AppConfig, Settings
from .errors import BffError
from .responses import no_store_json, redirect
from .urls import loopback, with_query

CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")
STATE = re.compile(r"[\x20-\x7e]{1,512}")  # RFC 6749 Appendix A.5, bounded: it is stored
VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")  # RFC 7636 §4.1
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


def issuer(settings: Settings, app: str) -> str:
    return f"{settings.public_url}/oauth2/{app}"


def metadata(settings: Settings, app: str) -> dict[str, Any]:
    """The RFC 8414 authorization server metadata of one app. No `jwks_uri` and no ID-token
    fields: the BFF issues no ID tokens, so OpenID discovery's fields would be untrue."""
    base = issuer(settings, app)
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


def error_redirect(
    redirect_uri: str, state: str | None, error: BffError, oauth_error: str | None = None
) -> str:
    """The app's redirect URI with the RFC 6749 §4.1.2.1 error for `error` (or `oauth_error`),
    and its state."""
    params = {
        "error": oauth_error or _REDIRECT_ERRORS.get(error.code, "server_error"),
        "error_description": error.code,
    }
    if state is not None:
        params["state"] = state
    return with_query(redirect_uri, **params)


def back_to_app(
    count: Callable[[str], None],
    redirect_uri: str,
    state: str | None,
    error: BffError,
    oauth_error: str | None = None,
) -> Response:
    """A native login's failure, counted (`count`), as the RFC 6749 §4.1.2.1 redirect to the
    app's verified redirect URI (with its state, when there is one to send back)."""
    count(error.code)
    return redirect(error_redirect(redirect_uri, state, error, oauth_error))


def success_redirect(redirect_uri: str, code: str, state: str | None) -> str:
    return with_query(redirect_uri, code=code, **({"state": state} if state is not None else {}))


class OAuthError(Exception):
    """An RFC 6749 §5.2 error of the token or revocation endpoint."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(error)
        self.error = error
        self.description = description
        self.status = status

    def response(self) -> Response:
        body = {"error": self.error, "error_description": self.description}
        return token_response(body, self.status)


def token_response(body: dict[str, Any], status: int = 200) -> Response:
    """JSON as RFC 6749 §5.1 asks for a token response: never cached."""
    return no_store_json(body, status)
