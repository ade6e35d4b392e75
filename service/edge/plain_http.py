"""What plain http may reach when the public URL is https, and the redirect for the rest.

Plain http serves the network-authentication entry (`/auth/{app}/login` and
`/auth/{app}/network`, when `BFF_NETWORK_AUTH_URL` is set) and the health probes (load
balancers probe plain http). Any other GET is redirected to the same path on
`BFF_PUBLIC_URL`; API routes and other methods get 403 problem+json instead (a redirect would
replay a body or leak a token over http). The redirect is built from the public origin and a
plain absolute path only, never from `Host` or a request target such as `*@evil.example/x`.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.types import Scope

from ..config import Settings
from ..contract.scope import RequestScope
from ..kit.errors import BffError

OPS = frozenset({"/healthz", "/readyz", "/metrics"})
ENTRY = frozenset({"login", "network"})  # the network-authentication entry's routes


@dataclass(frozen=True)
class Redirect:
    location: bytes


class PlainHttp:
    """Decides each plain-http request: pass, redirect to https, or refuse."""

    def __init__(self, settings: Settings) -> None:
        self.active = settings.https
        self._public = settings.public_url.encode()
        self._entry = settings.network_auth_url is not None

    def check(self, req: RequestScope, scope: Scope) -> Redirect | None:
        """None to go on; a redirect to send; or the refusal, raised."""
        if req.scheme != "http" or req.path in OPS:
            return None
        get = req.method in ("GET", "HEAD")
        parts = req.path.split("/")
        entry = len(parts) == 4 and parts[1] == "auth" and parts[3] in ENTRY
        if self._entry and entry and get:
            return None
        if req.path.startswith("/api/") or not get:
            raise BffError("https_required")
        raw: bytes = scope.get("raw_path") or req.path.encode()
        # Only a plain absolute path goes after the public origin: `*@evil.example/x` or
        # `//evil.example/x` joined to it would name another host (or look like it).
        if not raw.startswith(b"/") or raw.startswith((b"//", b"/\\")):
            raise BffError("bad_request", "Not a path.")
        query = scope.get("query_string", b"")
        return Redirect(self._public + raw + (b"?" + query if query else b""))
