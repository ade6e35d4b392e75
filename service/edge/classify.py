"""What a request is, worked out once at the edge: a `RequestScope` in `scope["bff"]`.

Every later step (the plain-http rule, CORS and CSRF, the body limit, the proxy dispatch, the
session lookup, the error exit, the access log) reads this one object instead of parsing the
request again. So each fact has one reading, above all the credential rule: the first
`Authorization` header, when it is `Bearer …`, is the credential; otherwise the app's session
cookie, looked for in every `Cookie` header (HTTP/2 may split one into several).

From a peer in `BFF_TRUSTED_PROXIES` (and only there), `X-Forwarded-Proto` (`http` or
`https`) and `X-Forwarded-For` (by uvicorn's rules: the rightmost address that is not itself a
trusted proxy) replace the scheme and the client, in the ASGI scope too, before anything reads
them.
"""

from __future__ import annotations

import random
import re
from typing import Literal

from starlette.types import Scope
from uvicorn.middleware.proxy_headers import _TrustedHosts  # (uvicorn's own trust rules)

from ..auth.cookies import Cookies, parse_cookies
from ..config import Settings
from ..contract.proxied import PROXIED_ROUTES
from ..contract.scope import Credential, RequestScope, Surface
from ..observe.logs.redact import Redactor

OPS_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json"})
# Request headers a proxied call passes on to Telenor (nothing else of the request goes).
FORWARDED = frozenset({b"accept", b"accept-language", b"if-none-match"})
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_HEADER_SLOTS = {
    name: slot
    for slot, name in enumerate(
        (
            b"authorization",
            b"cookie",
            b"origin",
            b"x-csrf",
            b"sec-fetch-site",
            b"access-control-request-method",
            b"x-request-id",
            b"content-length",
            b"transfer-encoding",
            b"x-forwarded-proto",
            b"x-forwarded-for",
        )
    )
}
_SCHEMES = frozenset({"http", "https"})


def new_request_id() -> str:
    """16 hex digits; a correlation id, not a secret, so no system-entropy call per request."""
    return f"{random.getrandbits(64):016x}"


class Classifier:
    """Builds the `RequestScope` of each request; its tables come from the settings once."""

    def __init__(self, settings: Settings, cookies: Cookies, redactor: Redactor) -> None:
        self._cookies = {
            app: (cookies.session_name(app), cookies.binding_name(app)) for app in settings.apps
        }
        self._routes = {route.name: route for route in PROXIED_ROUTES}
        self._redactor = redactor
        self._admin_port = settings.admin.port or None  # (no admin listener: no port matches)
        self._trusted = _TrustedHosts(settings.trusted_proxies)

    def __call__(self, scope: Scope) -> RequestScope:
        method: str = scope["method"]
        path: str = scope["path"]
        parts = path.split("/", 4)  # "", "api"|"auth"|"oauth2", app, action[, rest]
        area = parts[1] if len(parts) > 2 else None
        named = parts[2] if area in ("api", "auth", "oauth2") else None
        app = named if named in self._cookies else None
        action = parts[3] if len(parts) > 3 else None
        if area == "auth" or area == "oauth2":  # (the browser's GETs; a native app's POSTs)
            surface: Surface = "page" if method in ("GET", "HEAD") else "api"
        elif area == "api":
            surface = "api"
        else:
            surface = "ops" if path in OPS_PATHS else "other"
        proxied = upstream = None
        if area == "api" and action in self._routes:
            route = self._routes[action]
            rest = parts[4] if len(parts) > 4 else None
            if route.upstream is not None and rest is None:
                proxied, upstream = route, route.upstream
            elif route.upstream is None and rest:
                proxied, upstream = route, rest

        found: list[bytes | None] = [None] * len(_HEADER_SLOTS)
        cookies: list[bytes] = []
        forwarded_for: list[bytes] = []
        forward: list[tuple[bytes, bytes]] = []
        for name, value in scope["headers"]:
            slot = _HEADER_SLOTS.get(name)
            if slot is None:
                if name in FORWARDED:
                    forward.append((name, value))
            elif slot == 1:
                cookies.append(value)
            elif slot >= 9:  # (as uvicorn reads them: the last proto, every X-Forwarded-For)
                if slot == 9:
                    found[9] = value
                else:
                    forwarded_for.append(value)
            elif found[slot] is None:  # the first of each header counts
                found[slot] = value
        authorization, _, origin, csrf, fetch_site, preflight, rid, length, chunked = found[:9]
        proto = found[9]

        credential = None
        binding = None
        if authorization is not None and authorization[:7].lower() == b"bearer ":
            credential = Credential("bearer", authorization[7:].strip().decode("latin-1"))
        if cookies and app is not None:
            jar = parse_cookies(cookies)
            session_name, binding_name = self._cookies[app]
            binding = jar.get(binding_name) or None
            session = jar.get(session_name)
            if credential is None and session:
                credential = Credential("cookie", session)

        client = scope.get("client")
        scheme = scope.get("scheme", "http")
        trusted = (client[0] if client else None) in self._trusted
        if trusted:  # the proxy's word on the scheme and the client, for every later layer
            if proto is not None and proto.decode("latin-1").strip() in _SCHEMES:
                scheme = scope["scheme"] = proto.decode("latin-1").strip()
            if forwarded_for:
                host, port = self._trusted.get_trusted_client_address(
                    b", ".join(forwarded_for).decode("latin-1")
                )
                if host:
                    client = scope["client"] = (host, port)
        server = scope.get("server")
        listener: Literal["public", "admin"] = (
            "admin" if server and server[1] == self._admin_port else "public"
        )
        # Positional, each value in a local of its field's name or commented with it: keywords
        # cost the proxied call about 6,000 instructions for these 23 fields, 0.7 % of the
        # call (callgrind, bench/README.md; CPython matches each keyword against every name).
        # tests/test_edge.py reads every boolean back by name, so a swap fails there.
        return RequestScope(
            method,
            path,
            listener,
            scheme,
            client[0] if client else None,  # client
            trusted,  # trusted_peer
            self._request_id(rid),  # request_id
            surface,
            app,
            named,
            action,
            app is not None and (area == "api" or action == "logout"),  # guarded
            proxied,
            upstream,
            credential,
            binding,
            origin.decode("latin-1") if origin is not None else None,  # origin
            csrf == b"1",  # csrf
            fetch_site == b"cross-site",  # cross_site
            preflight is not None and method == "OPTIONS",  # preflight
            int(length) if length is not None and length.isdigit() else None,  # content_length
            chunked is not None,  # chunked
            tuple(forward),  # forward
        )

    def _request_id(self, sent: bytes | None) -> str:
        """The client's X-Request-ID when it is safe to log as is: a fixed charset, and nothing
        the redactor would take for a secret (a client that puts its session id here gets a
        new id instead)."""
        if sent is not None:
            text = sent.decode("latin-1")
            if _REQUEST_ID.match(text) and self._redactor(text) == text:
                return text
        return new_request_id()
