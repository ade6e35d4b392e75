"""Every cookie the BFF sets, in one place: names, attributes, reading (DESIGN §6).

On https the names carry the `__Host-Http-` prefix, so the browser itself enforces Secure,
HttpOnly, Path=/ and no Domain. Cookies are per app so two apps in one browser never collide.
Plain names are used only where `Secure` is impossible: development over http://localhost, and
the binding cookie set on the plain-http network-authentication entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from starlette.responses import Response

from .config import Settings

SECURE_PREFIX = "__Host-Http-"


class Cookies:
    """Names and attributes of the session and login-binding cookies."""

    def __init__(self, settings: Settings) -> None:
        self._secure = settings.https
        self._binding_max_age = settings.state_ttl_seconds

    def session_name(self, app: str) -> str:
        return f"{SECURE_PREFIX}bff-{app}" if self._secure else f"bff-{app}"

    def _binding_name(self, app: str, secure: bool) -> str:
        return f"{SECURE_PREFIX}bff-{app}-bind" if secure else f"bff-{app}-bind"

    def read_session(self, cookies: Mapping[str, str], app: str) -> str | None:
        return cookies.get(self.session_name(app)) or None

    def read_binding(self, cookies: Mapping[str, str], app: str) -> list[str]:
        """Binding values present; both names, since the login may have started on plain http."""
        names = {self._binding_name(app, self._secure), self._binding_name(app, False)}
        return [cookies[name] for name in names if cookies.get(name)]

    def set_session(self, response: Response, app: str, session_id: str, max_age: int) -> None:
        self._set(response, self.session_name(app), session_id, max_age, "strict", self._secure)

    def clear_session(self, response: Response, app: str) -> None:
        self._set(response, self.session_name(app), "", 0, "strict", self._secure)

    def set_binding(self, response: Response, app: str, value: str, over_https: bool) -> None:
        # Lax, not Strict: Telenor's redirect back to the callback is a cross-site navigation.
        secure = self._secure and over_https
        name = self._binding_name(app, secure)
        self._set(response, name, value, self._binding_max_age, "lax", secure)

    @staticmethod
    def _set(
        response: Response,
        name: str,
        value: str,
        max_age: int,
        samesite: Literal["lax", "strict"],
        secure: bool,
    ) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            secure=secure,
            httponly=True,
            samesite=samesite,
        )
