"""CORS per app and CSRF for cookie sessions: the one place both rules live (DESIGN §3).

Pure ASGI (no BaseHTTPMiddleware) so it costs microseconds on the proxied hot path. It guards
`/api/{app}/…` and `/auth/{app}/logout`:

* CORS: only the app's `allowed_origins` get `Access-Control-Allow-Origin` (the exact origin,
  with credentials, `Vary: Origin`), on preflights and on every response, errors included, so
  the SPA can read a 401 or 429. An origin of app A gets nothing on app B's routes.
* CSRF: a request that carries the app's session cookie (and no bearer token) needs
  `X-CSRF: 1` (a custom header forces a CORS preflight) and, when it sends `Origin`, an allowed
  one. Bearer requests carry no ambient authority and need neither.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .config import Settings
from .cookies import Cookies
from .errors import problem_response

MAX_AGE = "600"
ALLOW_HEADERS = "Content-Type, X-CSRF, X-Request-ID, Authorization, Accept, Accept-Language"
ALLOW_METHODS = "GET, POST, OPTIONS"
EXPOSE_HEADERS = "Retry-After, X-Request-ID, WWW-Authenticate"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class _AppRules:
    __slots__ = ("cookie_marker", "origins")

    def __init__(self, origins: list[str], cookie_name: str) -> None:
        self.origins = frozenset(origins)
        self.cookie_marker = cookie_name.encode() + b"="


class BrowserGuard:
    """ASGI middleware enforcing CORS and CSRF for the app named in the path."""

    def __init__(
        self,
        app: ASGIApp,
        settings: Settings,
        cookies: Cookies,
        on_reject: Callable[[str, str], None] | None = None,
    ) -> None:
        self.app = app
        self._rules = {
            app_id: _AppRules(cfg.allowed_origins, cookies.session_name(app_id))
            for app_id, cfg in settings.apps.items()
        }
        self._on_reject = on_reject or (lambda app, reason: None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        parts = path.split("/", 4)
        # ["", "api"|"auth", app, rest...]
        if len(parts) < 4 or parts[1] not in ("api", "auth"):
            await self.app(scope, receive, send)
            return
        if parts[1] == "auth" and parts[3] != "logout":
            await self.app(scope, receive, send)
            return
        rules = self._rules.get(parts[2])
        if rules is None:
            await self.app(scope, receive, send)
            return

        # The first of each header counts, as for `SessionAuth._session_key`; a session cookie in
        # any Cookie header makes the request cookie-authenticated.
        origin = authorization = csrf = preflight = fetch_site = None
        session_cookie = False
        for name, value in scope["headers"]:
            if name == b"cookie":
                session_cookie = session_cookie or rules.cookie_marker in value
            elif name == b"origin":
                origin = value.decode("latin-1") if origin is None else origin
            elif name == b"authorization":
                authorization = value if authorization is None else authorization
            elif name == b"x-csrf":
                csrf = value if csrf is None else csrf
            elif name == b"access-control-request-method":
                preflight = value
            elif name == b"sec-fetch-site":
                fetch_site = value if fetch_site is None else fetch_site
        allowed = origin is not None and origin in rules.origins

        if scope["method"] == "OPTIONS" and preflight is not None:
            if not allowed:
                self._on_reject(parts[2], "preflight_origin")
                await problem_response("origin_not_allowed", status=403)(scope, receive, send)
                return
            headers = [
                *_cors_headers(origin),
                (b"access-control-allow-methods", ALLOW_METHODS.encode()),
                (b"access-control-allow-headers", ALLOW_HEADERS.encode()),
                (b"access-control-max-age", MAX_AGE.encode()),
                (b"content-length", b"0"),
            ]
            await send({"type": "http.response.start", "status": 204, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return

        extra = _cors_headers(origin) if allowed else [(b"vary", b"Origin")]
        bearer = authorization is not None and authorization[:7].lower() == b"bearer "
        # RFC 6750 §3: a 401 names its scheme, and says why when a bearer token was sent.
        challenge = (b"www-authenticate", b'Bearer error="invalid_token"' if bearer else b"Bearer")

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", ()), *extra]
                if message["status"] == 401:
                    headers.append(challenge)
                message["headers"] = headers
            await send(message)

        # A request that changes state (a POST: logout above all) from a page of another
        # origin is refused whether or not a cookie came with it; so is a cookie request.
        unsafe = scope["method"] not in SAFE_METHODS
        if not bearer and (session_cookie or unsafe):
            cross_site = fetch_site == b"cross-site" and origin is None
            if (origin is not None and not allowed) or (unsafe and cross_site):
                self._on_reject(parts[2], "origin")
                await problem_response(
                    "origin_not_allowed",
                    f"Origin {(origin or 'of a cross-site request')[:100]} is not allowed for "
                    "this app.",
                )(scope, receive, send_with_cors)
                return
            if session_cookie and csrf != b"1":
                self._on_reject(parts[2], "csrf_header")
                await problem_response("csrf_header_missing")(scope, receive, send_with_cors)
                return
        await self.app(scope, receive, send_with_cors)


def _cors_headers(origin: str | None) -> list[tuple[bytes, bytes]]:
    assert origin is not None
    return [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"access-control-allow-credentials", b"true"),
        (b"access-control-expose-headers", EXPOSE_HEADERS.encode()),
        (b"vary", b"Origin"),
    ]


class HttpsOnly:
    """Plain http serves only the network-authentication login (DESIGN §6).

    When the public URL is https, any other http request is redirected to https (API and
    non-GET routes get 403 problem+json instead: a redirect would replay a body or leak a
    token over http). Health probes stay reachable over http for load balancers.
    """

    OPS = frozenset({"/healthz", "/readyz", "/metrics"})
    ENTRY = frozenset({"login", "network"})  # the network-authentication entry's routes

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self._active = settings.https
        self._public = settings.public_url.encode()
        self._entry = settings.network_auth_url is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._active or scope["type"] != "http" or scope.get("scheme") != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        parts = path.split("/")
        is_entry = len(parts) == 4 and parts[1] == "auth" and parts[3] in self.ENTRY
        if (self._entry and is_entry and scope["method"] in ("GET", "HEAD")) or path in self.OPS:
            await self.app(scope, receive, send)
            return
        if path.startswith("/api/") or scope["method"] not in ("GET", "HEAD"):
            await problem_response("https_required")(scope, receive, send)
            return
        raw: bytes = scope.get("raw_path") or path.encode()
        # Only a plain absolute path goes after the public origin: `*@evil.example/x` or
        # `//evil.example/x` joined to it would name another host (or look like it).
        if not raw.startswith(b"/") or raw.startswith(b"//") or raw.startswith(b"/\\"):
            await problem_response("bad_request", "Not a path.")(scope, receive, send)
            return
        query = scope.get("query_string", b"")
        location = self._public + raw + (b"?" + query if query else b"")
        await send(
            {
                "type": "http.response.start",
                "status": 308,
                "headers": [(b"location", location), (b"content-length", b"0")],
            }
        )
        await send({"type": "http.response.body", "body": b""})
