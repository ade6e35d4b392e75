"""What a request is, as every layer reads it: the `RequestScope` the edge builds once per
request (`edge/classify.py`) and keeps in `scope["bff"]`. The type lives here, below every
layer that reads it; its builder lives in the edge."""

from __future__ import annotations

from typing import Literal, NamedTuple

from .proxied import ProxiedRoute

SCOPE_KEY = "bff"
Surface = Literal["page", "api", "ops", "other"]


class Credential(NamedTuple):
    """What authenticates a request: a bearer session token or a session cookie, as sent."""

    kind: Literal["bearer", "cookie"]
    secret: str


class RequestScope(NamedTuple):
    """The facts of one request. Immutable: a step that learns more keeps it to itself. (A
    NamedTuple: a frozen dataclass of these fields cost the proxied call 3 µs more to build.)"""

    method: str
    path: str
    listener: Literal["public", "admin"]  # which socket it came in on
    scheme: str  # X-Forwarded-Proto's, from a trusted proxy
    client: str | None  # the client X-Forwarded-For names, from a trusted proxy
    trusted_peer: bool  # the peer is one of BFF_TRUSTED_PROXIES
    request_id: str
    surface: Surface  # page: a browser-flow GET (errors are the page); otherwise problem+json
    app: str | None  # the app id the path names (/api/{app}/…, /auth/{app}/…), if configured
    named: str | None  # whatever the path names there, configured or not
    action: str | None  # what follows the app id: "login", "user-info", "logout", …
    guarded: bool  # under the app's CORS and CSRF rules: /api/{app}/… and its logout
    proxied: ProxiedRoute | None  # a proxied route (the proxy answers its GETs), and
    upstream: str | None  # the Telenor path it asks for
    credential: Credential | None
    binding: str | None  # the app's login-binding cookie
    origin: str | None
    csrf: bool  # X-CSRF: 1
    cross_site: bool  # Sec-Fetch-Site: cross-site
    preflight: bool  # OPTIONS with Access-Control-Request-Method
    content_length: int | None
    chunked: bool
    forward: tuple[tuple[bytes, bytes], ...]  # the request headers a proxied call passes on
