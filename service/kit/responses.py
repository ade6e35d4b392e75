"""Response shapes more than one layer sends: a redirect that nothing caches or refers on, and
a JSON body as RFC 6749 §5.1 asks for OAuth's answers (never cached)."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import RedirectResponse, Response


def redirect(url: str) -> Response:
    """A 302 to `url`; no-referrer, since a callback's URL carries a code and a state."""
    response = RedirectResponse(url, status_code=302)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def no_store_json(body: dict[str, Any], status: int = 200) -> Response:
    """JSON as RFC 6749 §5.1 asks for a token response: never cached."""
    return Response(
        json.dumps(body, separators=(",", ":")),
        status_code=status,
        media_type="application/json",
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )
