"""One error model: domain errors carry a code, a status and safe text.

`CATALOG` is the one table of codes, statuses and titles. `problem_response` renders an error as
RFC 9457 problem+json; `edge/pages.Pages` renders the same errors as the bilingual page; which one a
request gets, `edge/respond.Responder` decides. Nothing here ever includes a secret.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from starlette.responses import Response

PROBLEM_TYPE = "urn:line-auth-bff:problem:"

# code -> (HTTP status, title). The code is also what `?error=` carries back to an app.
CATALOG: dict[str, tuple[int, str]] = {
    "bad_request": (400, "Bad request"),
    "invalid_request": (422, "The request is not valid"),
    "not_found": (404, "Not found"),
    "method_not_allowed": (405, "Method not allowed"),
    "unknown_app": (404, "Unknown app"),
    "bad_return_to": (400, "return_to is not allowed for this app"),
    "challenge_required": (400, "A native app's login needs an S256 code_challenge"),
    "bad_client": (400, "client_id is not this app's"),
    "bad_redirect_uri": (400, "redirect_uri is not registered for this app"),
    "not_authenticated": (401, "Not signed in"),
    "session_expired": (401, "The session has ended"),
    "csrf_header_missing": (401, "The X-CSRF: 1 header is required with a session cookie"),
    "origin_not_allowed": (403, "This origin may not call this app"),
    "https_required": (403, "This endpoint is only served over https"),
    "path_not_allowed": (404, "This Telenor API path is not on the app's allow-list"),
    "rate_limited": (429, "Too many requests"),
    "busy": (503, "Too many sign-ins are being started right now"),
    "header_too_large": (431, "The request headers are too large"),
    "body_too_large": (413, "The request body is too large"),
    "upstream_rate_limited": (429, "Telenor is rate limiting this app"),
    "upstream_error": (502, "Telenor answered with an error"),
    "upstream_unreachable": (502, "Telenor could not be reached"),
    "upstream_timeout": (504, "Telenor did not answer in time"),
    "store_unavailable": (503, "The session store is unavailable"),
    "overloaded": (503, "The service is busy; try again shortly"),
    "not_ready": (503, "A dependency is not answering"),
    "internal": (500, "Internal error"),
    "admin_unauthorized": (401, "A valid admin token is required"),
    # Browser-flow outcomes (rendered as pages; listed so their statuses live in one place).
    "access_denied": (403, "You declined"),
    "telenor_error": (400, "Telenor reported an error"),
    "login_expired": (400, "The login expired or was already used"),
    "wrong_app": (400, "The login belongs to another app"),
    "wrong_browser": (400, "The login was started in another browser"),
    "telenor_unavailable": (502, "Telenor is not answering"),
    "token_rejected": (502, "Telenor did not accept the login"),
    "bad_callback": (400, "The answer from Telenor was incomplete"),
}


@dataclass(frozen=True)
class Flow:
    """What an error page needs to know about the login it interrupts."""

    app: str
    display_name: str
    return_to: str | None = None
    mode: str = "cookie"
    client_state: str | None = None  # a native app's state


@dataclass
class BffError(Exception):
    """A failure with a code from `CATALOG` and text that is safe to show anyone."""

    code: str
    detail: str | None = None
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    flow: Flow | None = None

    def __post_init__(self) -> None:
        super().__init__(self.code)
        if self.status is None:
            self.status = CATALOG.get(self.code, (500, ""))[0]

    @property
    def title(self) -> str:
        return CATALOG.get(self.code, (500, "Error"))[1]


def problem_body(code: str, detail: str | None = None, status: int | None = None) -> bytes:
    """The RFC 9457 problem+json document for `code`."""
    default_status, title = CATALOG.get(code, (500, "Error"))
    body = {"type": PROBLEM_TYPE + code, "title": title, "status": status or default_status}
    if detail:
        body["detail"] = detail
    return json.dumps(body, separators=(",", ":")).encode()


def problem_response(
    code: str,
    detail: str | None = None,
    status: int | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """An RFC 9457 problem+json response for `code`."""
    status = status or CATALOG.get(code, (500, ""))[0]
    out_headers = {"Cache-Control": "no-store"}
    out_headers.update(headers or {})
    return Response(
        problem_body(code, detail, status),
        status_code=status,
        media_type="application/problem+json",
        headers=out_headers,
    )


def problem_for(error: BffError) -> Response:
    return problem_response(error.code, error.detail, error.status, error.headers)
