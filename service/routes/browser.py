"""Browser-flow routes: login (and the network entry's hop), callback, logout, and a callback's
error page again in the other language.

Failures of the GET routes are the bilingual error page (`edge/respond.py` picks it by the
request's surface), never JSON and never a stack trace.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlencode

from fastapi import APIRouter, BackgroundTasks
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..auth.flow import START_PARAMS, LoginStart
from ..contract.security import PAGES, PROBLEMS, PUBLIC, SIGNED_IN_OR_NOT
from ..edge.pages import TEXTS
from ..kit.errors import BffError
from ..kit.responses import redirect
from .deps import AppDep, RequestDep, ServicesDep

_Route = TypeVar("_Route", bound=Callable[..., Any])
router = APIRouter(tags=["browser flow"])


def _hop(path: str, operation_id: str) -> Callable[[_Route], _Route]:
    """A browser-flow GET, open to anyone: a redirect on the way, or the error page."""
    return router.get(
        path,
        status_code=302,
        response_class=RedirectResponse,
        responses=PAGES,
        operation_id=operation_id,
        openapi_extra={"security": PUBLIC},
    )


@_hop("/auth/{app}/login", "beginBrowserLogin")
async def login(
    app: AppDep,
    request: Request,
    req: RequestDep,
    services: ServicesDep,
    return_to: str | None = None,
    mode: str | None = None,
    network: str | None = None,
) -> Response:
    """Start a login: 302 to Telenor's authorize page, with a fresh single-use state.

    On the plain-http network-authentication entry, first a hop to this same route over https
    (`network=1`), which sets the `__Host-` binding cookie and sends the browser back to the
    http entry's `/network` route, from where it leaves for Telenor.
    """
    start = LoginStart.of(
        req,
        return_to=return_to,
        mode=mode,
        network=network == "1",
    )
    settings = services.settings
    if settings.https and req.scheme == "http":
        services.flow.check_start(start)
        query = {k: v for k, v in request.query_params.items() if k in START_PARAMS}
        hop = f"{settings.public_url}/auth/{app.id}/login?{urlencode({**query, 'network': '1'})}"
        return redirect(hop)
    started = await services.flow.start(start)
    response = redirect(started.authorization_url)
    services.cookies.set_binding(response, app.id, started.binding)
    return response


@_hop("/auth/{app}/network", "leaveNetworkEntry")
async def network(app: AppDep, services: ServicesDep, state: str = "") -> Response:
    """The network-authentication entry's last hop: from plain http to Telenor's authorize
    page, for a login the https hop has started (and bound to this browser)."""
    return redirect(await services.flow.leave(app.id, state))


@router.get("/auth/{app}/error", include_in_schema=False)
async def error_page(
    app: AppDep,
    request: Request,
    services: ServicesDep,
    code: str = "",
    return_to: str | None = None,
) -> Response:
    """A callback's error page again, in the language asked for (its language switch): the
    page of `code`, with the way back only to a return URL the app allows."""
    flow = services.flow.flow(app.id, services.flow.return_url(app.id, return_to))
    shown = code if code in TEXTS else "bad_request"
    return services.responder.page_again(request.scope, BffError(shown, flow=flow))


@_hop("/auth/{app}/callback", "finishBrowserLogin")
async def callback(
    app: AppDep, request: Request, req: RequestDep, services: ServicesDep
) -> Response:
    """The callback registered at Telenor: check state and browser, redeem the code, sign in.
    A native app's login ends on its redirect URI either way: the code, or the error."""
    # (A native login's failure renders as that redirect: `edge/respond.Responder`.)
    finished = await services.flow.finish(app.id, request.query_params, req.binding, req.client)
    # (no-referrer: the callback URL carries the code; never let it leak on as a Referer.)
    response = redirect(finished.redirect_to)
    if finished.session_id is not None:
        services.cookies.set_session(response, app.id, finished.session_id, finished.max_age)
    return response


@router.post(
    "/auth/{app}/logout",
    status_code=204,
    response_class=Response,
    responses=PROBLEMS,
    operation_id="logout",
    openapi_extra={"security": SIGNED_IN_OR_NOT},
)
async def logout(
    app: AppDep, req: RequestDep, services: ServicesDep, background: BackgroundTasks
) -> Response:
    """End the session (cookie or bearer); Telenor's logout runs best-effort afterwards."""
    ended = await services.auth.logout(req)
    response = Response(status_code=204, headers={"Cache-Control": "no-store"})
    if req.credential is None or req.credential.kind == "cookie":  # (a bearer is not the cookie)
        services.cookies.clear_session(response, app.id)
    if ended is not None:
        background.add_task(services.flow.telenor_logout, ended.access_token)
    response.background = background
    return response
