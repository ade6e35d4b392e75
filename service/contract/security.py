"""What the OpenAPI document says every route shares: how a caller proves who it is (the
security schemes, and the three requirements a route picks from), and the error responses
routes declare (problem+json, or the browser flow's error page).

A leaf: routes and the document builder (`routes/openapi.py`) import it, and it imports neither."""

from __future__ import annotations

from typing import Any

from .models import Problem

# How a caller proves who it is; each route declares which it needs (`openapi_extra`).
SECURITY_SCHEMES = {
    "sessionCookie": {
        "type": "apiKey",
        "in": "cookie",
        "name": "__Host-Http-bff-{app}",
        "description": "The HttpOnly session cookie the BFF sets when a browser signs in "
        "(`{app}` is the app id; the browser sends it, scripts cannot read it). A call with "
        "it also needs `X-CSRF: 1`.",
    },
    "csrfHeader": {
        "type": "apiKey",
        "in": "header",
        "name": "X-CSRF",
        "description": "`1` on every cookie-authenticated call: a custom header makes the "
        "browser ask first (a CORS preflight), which only the app's origins pass.",
    },
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "The opaque session token a mobile app received for its login.",
    },
}
SIGNED_IN: list[dict[str, list[str]]] = [{"sessionCookie": [], "csrfHeader": []}, {"bearer": []}]
SIGNED_IN_OR_NOT = [*SIGNED_IN, {}]  # answers either way, differently
PUBLIC: list[dict[str, list[str]]] = []


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI responses of these statuses: a `Problem`, as problem+json."""
    return {
        status: {"model": Problem, "content": {"application/problem+json": {}}}
        for status in statuses
    }


PROBLEMS = problems(400, 401, 403, 404, 422, 429, 502, 503, 504)
# A browser-flow route's failures: the bilingual error page.
PAGES: dict[int | str, dict[str, Any]] = {
    status: {"description": "The error page (nb/en)", "content": {"text/html": {}}}
    for status in (400, 403, 404, 429, 502, 503, 504)
}
