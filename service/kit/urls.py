"""URL rules every layer shares, with no dependency of their own: origins and sites, the
loopback redirect URI of RFC 8252 §7.3, a native redirect URI's syntax, and adding a query."""

from __future__ import annotations

import re
from urllib.parse import urlencode, urlsplit, urlunsplit

_LOOPBACK = re.compile(r"http://(127\.0\.0\.1|\[::1\])(?::(\d{1,5}))?(/[^#]*)?")
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f\\#]")
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")
_HTTPS_REST = re.compile(r"//[a-z0-9.-]+(:\d+)?(/.*)?")


def origin_of(url: str) -> str:
    """`scheme://host[:port]` of a URL, lower-cased, default ports dropped."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    port = parts.port
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    netloc = host if port is None or port == default else f"{host}:{port}"
    if ":" in host:  # IPv6 literal
        netloc = f"[{host}]" if port is None or port == default else f"[{host}]:{port}"
    return f"{parts.scheme.lower()}://{netloc}"


def site_of(url: str) -> str:
    """A cheap registrable-domain guess (last two labels) used to warn about third-party cookies."""
    host = (urlsplit(url).hostname or "").lower()
    if host.replace(".", "").isdigit() or ":" in host or host == "localhost":
        return host
    return ".".join(host.split(".")[-2:])


def schemeful_site(url: str) -> str:
    """`scheme://site`: what browsers compare to call a request same-site (SameSite cookies)."""
    return f"{urlsplit(url).scheme}://{site_of(url)}"


def loopback(uri: str) -> tuple[str, str] | None:
    """(host, path and query) of an `http://127.0.0.1[:port]/…` or `http://[::1]…` URI."""
    match = _LOOPBACK.fullmatch(uri)
    if match is None or (match.group(2) and not 0 < int(match.group(2)) < 65536):
        return None
    return match.group(1), match.group(3) or "/"


def redirect_uri_problem(uri: str) -> str | None:
    """Why `uri` cannot be registered as a native redirect URI (RFC 8252 §7), or None."""
    if _FORBIDDEN.search(uri):
        return "must have no spaces, backslashes or fragment"
    scheme, _, rest = uri.partition(":")
    if not rest or not _SCHEME.fullmatch(scheme):
        return "must start with a lower-case scheme"
    if scheme == "https":
        return None if _HTTPS_REST.fullmatch(rest) else "is not an https URL"
    if scheme == "http":
        return None if loopback(uri) else "may be http only on 127.0.0.1 or [::1] (RFC 8252 §7.3)"
    if "." not in scheme:
        return "a private-use scheme must be a reversed domain name, like no.example.app"
    return None


def with_query(url: str, **params: str) -> str:
    """`url` with `params` appended to its query (custom schemes included)."""
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))
