"""JSON API for SPAs and mobile apps (DESIGN §3). Errors are problem+json."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..deps import ServicesDep
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
    services.cookies.set_binding(
        response, app, started.binding, over_https=request.url.scheme == "https"
    )
    return response


@router.get("/api/{app}/session", response_model=SessionStatus)
async def session(app: str, request: Request, services: ServicesDep) -> Response:
    """Whether the caller is signed in to this app (200 either way)."""
    cfg = services.flow.app(app)
    caller = await services.auth.current(request, app, cfg)
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


@router.get(
    "/api/{app}/user-info",
    response_model=UserInfo,
    responses={200: {"description": "Telenor Mobile User Info, passed through"}},
)
async def user_info(app: str, request: Request, services: ServicesDep) -> Response:
    """The signed-in user's Mobile User Info."""
    services.flow.app(app)
    return await services.proxy.forward(request, app, "user-info/v1/users")


@router.get("/api/{app}/device-info", response_model=DeviceInfo)
async def device_info(app: str, request: Request, services: ServicesDep) -> Response:
    """The signed-in user's Mobile Device Info."""
    services.flow.app(app)
    return await services.proxy.forward(request, app, "mobile-device-info/v1/device")


@router.get("/api/{app}/telenor/{path:path}")
async def telenor(app: str, path: str, request: Request, services: ServicesDep) -> Response:
    """Any GET on the app's `upstream_paths` allow-list, proxied with the session's token."""
    services.flow.app(app)
    return await services.proxy.forward(request, app, path)
