"""The one way out for errors: every error response of the BFF leaves through `Responder`.

It picks the form: a native app's login that fails goes back to the app (RFC 6749 §4.1.2.1,
`auth/native.OAuthError`); otherwise the request's surface decides (the bilingual page for a
browser-flow GET, RFC 9457 problem+json for everything else). It counts the error in
`bff_errors_total` and sends it. The edge's refusals, the routes' `BffError`s and
`OAuthError`s, FastAPI's own 404/405/422 and unexpected exceptions all come here.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..auth.native import OAuthError
from ..contract.scope import SCOPE_KEY, RequestScope
from ..kit.errors import BffError, problem_for
from ..observe.events import Events
from ..observe.tracing import mark
from .pages import Pages


class Responder:
    """Renders, counts and sends error responses."""

    def __init__(self, *, pages: Pages, events: Events) -> None:
        self._pages = pages
        self._events = events

    def response(self, scope: Scope, error: BffError) -> Response:
        """The response for `error`, counted."""
        flow = error.flow
        if flow is not None and flow.mode == "native" and flow.return_to is not None:
            return self.oauth(OAuthError.login_failed(error))
        self.count(error.code)
        mark(**{"error.type": error.code})  # (on the request's span, when it is traced)
        req: RequestScope | None = scope.get(SCOPE_KEY)
        if req is not None and req.surface == "page":
            return self._pages.error(Request(scope), error)
        return problem_for(error)

    async def send(self, scope: Scope, receive: Receive, send: Send, error: BffError) -> None:
        await self.response(scope, error)(scope, receive, send)

    def oauth(self, error: OAuthError) -> Response:
        """An OAuth error of the native profile, counted by its code, rendering itself."""
        self.count(error.code)
        mark(**{"error.type": error.code})
        return error.response()

    def page_again(self, scope: Scope, error: BffError) -> Response:
        """The page of an error already answered and counted, shown again (in the other
        language): not a new error, so not counted."""
        return self._pages.error(Request(scope), error)

    def count(self, code: str) -> None:
        """Count an error response sent elsewhere (the HTTP protocol's 431)."""
        self._events.error(code)
