"""CORS per app and CSRF for browser requests: the one place both rules live.

They guard `/api/{app}/…` and `/auth/{app}/logout` of a configured app (`RequestScope.guarded`):

* CORS: only the app's `allowed_origins` get `Access-Control-Allow-Origin` (the exact origin,
  with credentials, `Vary: Origin`), on preflights and on every response, errors included, so
  the SPA can read a 401 or 429. An origin of app A gets nothing on app B's routes.
* CSRF: a request that carries the app's session cookie (and no bearer token) needs
  `X-CSRF: 1` (a custom header forces a CORS preflight) and, when it sends `Origin`, an allowed
  one. A logout is refused from another origin, or with `Sec-Fetch-Site: cross-site` and no
  `Origin`, whether or not a cookie came with it. Bearer requests carry no ambient authority
  and need none of this.
"""

from __future__ import annotations

from collections.abc import Callable

from ..config import Settings
from ..contract.scope import RequestScope
from ..kit.errors import BffError

MAX_AGE = b"600"
ALLOW_HEADERS = b"Content-Type, X-CSRF, X-Request-ID, Authorization, Accept, Accept-Language"
ALLOW_METHODS = b"GET, POST, OPTIONS"
EXPOSE_HEADERS = b"Retry-After, X-Request-ID, WWW-Authenticate"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
AMBIENT_ACTIONS = frozenset({"logout"})  # routes that act on the browser's session itself
Headers = list[tuple[bytes, bytes]]
_VARY: Headers = [(b"vary", b"Origin")]


class BrowserPolicy:
    """The CORS and CSRF rules of every app, built from the settings once."""

    def __init__(
        self, settings: Settings, *, on_reject: Callable[[str, str, str | None], None]
    ) -> None:
        self._origins = {app: frozenset(cfg.allowed_origins) for app, cfg in settings.apps.items()}
        self._on_reject = on_reject
        # The CORS headers of each (app, allowed origin), built once.
        self._cors = {
            (app, origin): [
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"access-control-allow-credentials", b"true"),
                (b"access-control-expose-headers", EXPOSE_HEADERS),
                (b"vary", b"Origin"),
            ]
            for app, origins in self._origins.items()
            for origin in origins
        }

    def allowed(self, req: RequestScope) -> bool:
        """Whether the request's Origin is one of its app's."""
        return req.origin is not None and req.origin in self._origins.get(req.app or "", ())

    def response_headers(self, req: RequestScope) -> Headers:
        """What every response to a guarded request carries (not to be changed: shared)."""
        return self._cors.get((req.app, req.origin), _VARY)  # type: ignore[arg-type]  # (None: no entry)

    @staticmethod
    def challenge(req: RequestScope) -> tuple[bytes, bytes]:
        """RFC 6750 §3: a 401 names its scheme, and says why when a bearer token was sent."""
        bearer = req.credential is not None and req.credential.kind == "bearer"
        return b"www-authenticate", b'Bearer error="invalid_token"' if bearer else b"Bearer"

    def preflight(self, req: RequestScope) -> Headers:
        """What a 204 answer to a preflight from an allowed origin adds to `response_headers`."""
        if not self.allowed(req):
            self._reject(req, "preflight_origin")
            raise BffError("origin_not_allowed", status=403)
        return [
            (b"access-control-allow-methods", ALLOW_METHODS),
            (b"access-control-allow-headers", ALLOW_HEADERS),
            (b"access-control-max-age", MAX_AGE),
        ]

    def check(self, req: RequestScope) -> None:
        """Raise the refusal of a request these rules do not let through."""
        credential = req.credential
        bearer = credential is not None and credential.kind == "bearer"
        cookie = credential is not None and not bearer
        # Logout acts on the browser's session whether or not a cookie comes with it (it
        # clears the cookie): a cross-site one is refused even without. A bearer request
        # carries no ambient authority.
        ambient = not bearer and req.action in AMBIENT_ACTIONS and req.method not in SAFE_METHODS
        if not (cookie or ambient):
            if req.origin is not None and not self.allowed(req):
                self._reject(req, "cors_origin")  # answered, but the page may not read it
            return
        if (req.origin is not None and not self.allowed(req)) or (
            ambient and req.cross_site and req.origin is None
        ):
            self._reject(req, "origin")
            origin = req.origin[:100] if req.origin is not None else "of a cross-site request"
            raise BffError("origin_not_allowed", f"Origin {origin} is not allowed for this app.")
        if cookie and not req.csrf:
            self._reject(req, "csrf_header")
            raise BffError("csrf_header_missing")

    def _reject(self, req: RequestScope, reason: str) -> None:
        self._on_reject(req.app or "", reason, req.origin)
