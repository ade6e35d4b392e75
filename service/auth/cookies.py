"""Every cookie the BFF sets, in one place: names, attributes, reading.

On https the names carry the `__Host-Http-` prefix, so the browser itself enforces Secure,
HttpOnly, Path=/ and no Domain. Cookies are per app so two apps in one browser never collide.
Plain names are used only where `Secure` is impossible: development over http://localhost. The
plain-http network-authentication entry sets no cookie at all: it sends the browser through an
https hop that sets the `__Host-` binding first (`LoginFlow`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Literal

from starlette.responses import Response

from ..config import Settings

SECURE_PREFIX = "__Host-Http-"
# RFC 6265 §4.1.1: a cookie name is an RFC 7230 token.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def parse_cookies(headers: Iterable[bytes]) -> dict[str, str]:
    """The cookies of a request's Cookie headers (HTTP/2 may send several), read strictly.

    Only spaces and tabs around a pair are dropped, and a name must be a token byte for byte.
    A lenient parser (Starlette's strips every Unicode space) reads `\xa0__Host-Http-x`, a
    name a browser lets any site set, as the `__Host-` cookie it cannot set. A name sent more
    than once counts as absent: which one is ours is unknowable.
    """
    found: dict[str, str] = {}
    repeated: set[str] = set()
    for header in headers:
        for pair in header.split(b";"):
            name, eq, value = pair.strip(b" \t").partition(b"=")
            if not eq or not _TOKEN.fullmatch(name):
                continue
            key = name.decode("ascii")
            if key in found:
                repeated.add(key)
            found[key] = value.strip(b" \t").strip(b'"').decode("latin-1")
    for key in repeated:
        del found[key]
    return found


class Cookies:
    """Names and attributes of the session and login-binding cookies."""

    def __init__(self, settings: Settings) -> None:
        self._secure = settings.https
        self._binding_max_age = settings.state_ttl_seconds

    def session_name(self, app: str) -> str:
        return f"{SECURE_PREFIX}bff-{app}" if self._secure else f"bff-{app}"

    def binding_name(self, app: str) -> str:
        """On https only this `__Host-` name counts (`edge/classify.Classifier` reads no other): a
        plain-name cookie can be planted by any host under the parent domain or by an
        injected plain-http response, and a `__Host-` one by neither."""
        return f"{SECURE_PREFIX}bff-{app}-bind" if self._secure else f"bff-{app}-bind"

    def set_session(self, response: Response, app: str, session_id: str, max_age: int) -> None:
        self._set(response, self.session_name(app), session_id, max_age, "strict")

    def clear_session(self, response: Response, app: str) -> None:
        self._set(response, self.session_name(app), "", 0, "strict")

    def set_binding(self, response: Response, app: str, value: str) -> None:
        # Lax, not Strict: Telenor's redirect back to the callback is a cross-site navigation.
        self._set(response, self.binding_name(app), value, self._binding_max_age, "lax")

    def _set(
        self,
        response: Response,
        name: str,
        value: str,
        max_age: int,
        samesite: Literal["lax", "strict"],
    ) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            secure=self._secure,
            httponly=True,
            samesite=samesite,
        )
