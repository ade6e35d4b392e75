"""Where a login may send the browser back to: the one open-redirect rule (RFC 9700 §4.11).

A `return_to` is accepted when it equals an entry of the app's `return_urls` exactly, or when an
entry ends in `/` and `return_to` has the same scheme, host and port and a path under it. The URL
is parsed strictly and then compared *as re-serialised*, so tricks that browsers and parsers read
differently (backslashes, userinfo, control characters, percent-encoded dots) never match.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

from ..config import AppConfig

_FORBIDDEN = re.compile(r"[\x00-\x20\x7f\\]|%(2e|2f|5c|00|09|0a|0d)", re.IGNORECASE)


class ReturnUrlPolicy:
    """Checks `return_to` values against one app's `return_urls`."""

    def __init__(self, app: AppConfig) -> None:
        self._exact = frozenset(app.return_urls)
        self._prefixes = tuple(
            url
            for url in app.return_urls
            if url.endswith("/") and url.startswith(("https://", "http://"))
        )

    def check(self, return_to: str | None) -> str | None:
        """The accepted URL, or None when it is not allowed."""
        if not return_to or len(return_to) > 2048:
            return None
        if return_to in self._exact:
            return return_to
        if _FORBIDDEN.search(return_to):
            return None
        try:
            parts = urlsplit(return_to)
            port = parts.port
        except ValueError:
            return None
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.username:
            return None
        if parts.password is not None or "@" in parts.netloc:
            return None
        path_segments = parts.path.split("/")
        if ".." in path_segments or "." in path_segments:
            return None
        canonical = urlunsplit(
            (parts.scheme, parts.netloc.lower(), parts.path or "/", parts.query, "")
        )
        if canonical != return_to and canonical != return_to.split("#", 1)[0]:
            return None
        for prefix in self._prefixes:
            p = urlsplit(prefix)
            if (
                p.scheme == parts.scheme
                and p.hostname == parts.hostname
                and p.port == port
                and (parts.path or "/").startswith(p.path)
            ):
                return canonical
        return None
