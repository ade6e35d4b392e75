"""JSON API for SPAs and mobile apps (DESIGN §3). Errors are problem+json."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ..deps import Services, ServicesDep
from ..errors import BffError, problem_for
from ..models import (
    DeviceInfo,
    HandoffRequest,
    HandoffResponse,
    Problem,
    SessionStatus,
    StartRequest,
    StartResponse,
    UserInfo,
)

PROBLEMS: dict[int | str, dict[str, Any]] = {
    status: {"model": Problem, "content": {"application/problem+json": {}}}
    for status in (400, 401, 403, 404, 422, 429, 502, 503, 504)
}
router = APIRouter(tags=["api"], responses=PROBLEMS)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@router.post("/api/{app}/auth/start", response_model=StartResponse)
async def start(app: str, body: StartRequest, request: Request, services: ServicesDep) -> Response:
    """Start a login for an app that opens the browser itself; sets the login-binding cookie."""
    started = await services.flow.start(
        app,
        body.return_to,
        body.mode,
        body.code_challenge,
        body.code_challenge_method,
        services.cookies.read_binding(request.cookies, app),
        request.client.host if request.client else "unknown",
    )
    response = JSONResponse(
        {"authorization_url": started.authorization_url, "expires_at": _iso(started.expires_at)},
        headers={"Cache-Control": "no-store"},
    )
    services.cookies.set_binding(response, app, started.binding)
    return response


@router.get("/api/{app}/session", response_model=SessionStatus)
async def session(app: str, request: Request, services: ServicesDep) -> Response:
    """Whether the caller is signed in to this app (200 either way)."""
    cfg = services.flow.app(app)
    caller = await services.auth.current(request.scope["headers"], app, cfg)
    if caller is None:
        query = urlencode({"return_to": cfg.return_urls[0]}) if cfg.return_urls else ""
        body: dict[str, Any] = {
            "authenticated": False,
            "login_url": f"{services.settings.public_url}/auth/{app}/login"
            + (f"?{query}" if query else ""),
        }
    else:
        s = caller.session
        end = s.ends_at if s.refresh_token else min(s.expires_at, s.ends_at)
        body = {
            "authenticated": True,
            "expires_at": _iso(end),
            "expires_in": max(0, int(end - services.clock())),
        }
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


@router.post("/api/{app}/session/handoff", response_model=HandoffResponse)
async def handoff(app: str, body: HandoffRequest, services: ServicesDep) -> Response:
    """Redeem a one-time handoff code (with its PKCE verifier) for a bearer session token."""
    services.flow.app(app)
    token, ttl = await services.auth.redeem_handoff(app, body.handoff_code, body.code_verifier)
    return JSONResponse(
        {"session_token": token, "token_type": "Bearer", "expires_in": ttl},
        headers={"Cache-Control": "no-store"},
    )


# The proxied GETs are the hot path: `ProxiedRoutes` below serves them as plain ASGI, in front
# of FastAPI's routing and dependency resolution (which cost as much as the rest of the call,
# bench/README.md). These declarations are the same endpoints for the OpenAPI document and for
# anything `ProxiedRoutes` passes on.
SHORTCUTS = {"user-info": "user-info/v1/users", "device-info": "mobile-device-info/v1/device"}


@router.get(
    "/api/{app}/user-info",
    response_model=UserInfo,
    responses={200: {"description": "Telenor Mobile User Info, passed through"}},
)
async def user_info(app: str, request: Request, services: ServicesDep) -> Response:
    """The signed-in user's Mobile User Info."""
    return await _proxy(services, request, app, SHORTCUTS["user-info"])


@router.get("/api/{app}/device-info", response_model=DeviceInfo)
async def device_info(app: str, request: Request, services: ServicesDep) -> Response:
    """The signed-in user's Mobile Device Info."""
    return await _proxy(services, request, app, SHORTCUTS["device-info"])


@router.get("/api/{app}/telenor/{path:path}")
async def telenor(app: str, path: str, request: Request, services: ServicesDep) -> Response:
    """Any GET on the app's `upstream_paths` allow-list, proxied with the session's token."""
    return await _proxy(services, request, app, path)


async def _proxy(services: Services, request: Request, app: str, path: str) -> Response:
    services.flow.app(app)
    status, headers, body = await services.proxy.forward(request.scope["headers"], app, path)
    response = Response(body, status_code=status)
    response.raw_headers = headers
    return response


@dataclass(frozen=True)
class _Route:
    """What the access log reads from `scope["route"]`: the route template."""

    path: str


_TEMPLATES = {
    "user-info": _Route("/api/{app}/user-info"),
    "device-info": _Route("/api/{app}/device-info"),
    "telenor": _Route("/api/{app}/telenor/{path:path}"),
}


class ProxiedRoutes:
    """Pure ASGI for `GET /api/{app}/user-info|device-info|telenor/{path}`; the rest passes on.

    It sits inside the CORS/CSRF guard, so every check still applies; errors are the same
    problem+json the exception handlers give, counted by `on_error`. Telenor's answer goes out
    as two ASGI messages, with no Request or Response objects in between.
    """

    def __init__(self, app: ASGIApp, on_error: Callable[[str], None]) -> None:
        self.app = app
        self._on_error = on_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        matched = _proxied(scope) if scope["type"] == "http" else None
        if matched is None:
            await self.app(scope, receive, send)
            return
        app, what, upstream = matched
        scope["route"] = _TEMPLATES[what]
        services: Services = scope["state"]["services"]
        try:
            services.flow.app(app)
            status, headers, body = await services.proxy.forward(scope["headers"], app, upstream)
        except BffError as exc:
            self._on_error(exc.code)
            await problem_for(exc)(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _proxied(scope: Scope) -> tuple[str, str, str] | None:
    """(app, which route, upstream path) for a proxied GET, else None."""
    if scope["method"] != "GET":
        return None
    parts = scope["path"].split("/", 4)  # "", "api", app, what[, path]
    if len(parts) < 4 or parts[1] != "api":
        return None
    what = parts[3]
    if len(parts) == 4 and what in SHORTCUTS:
        return parts[2], what, SHORTCUTS[what]
    if what == "telenor" and len(parts) == 5 and parts[4]:
        return parts[2], what, parts[4]
    return None
