"""The JSON API for SPAs and mobile apps: login start, session status, sign out everywhere.

Errors are problem+json. The proxied data calls (`/api/{app}/user-info`, `/device-info`,
`/telenor/{path}`) are not routes here: the edge answers them (`contract/proxied.py`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter
from starlette.responses import JSONResponse, Response

from ..auth.flow import LoginStart
from ..contract.models import (
    RevokeAllResponse,
    SessionStatus,
    StartRequest,
    StartResponse,
)
from ..contract.security import PROBLEMS, PUBLIC, SIGNED_IN, SIGNED_IN_OR_NOT
from .deps import AppDep, RequestDep, ServicesDep

router = APIRouter(tags=["api"], responses=PROBLEMS)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@router.post(
    "/api/{app}/auth/start",
    response_model=StartResponse,
    operation_id="startLogin",
    openapi_extra={"security": PUBLIC},
)
async def start(
    app: AppDep, body: StartRequest, req: RequestDep, services: ServicesDep
) -> Response:
    """Start a login for an app that opens the browser itself; sets the login-binding cookie."""
    started = await services.flow.start(
        LoginStart.of(
            req,
            return_to=body.return_to,
            mode=body.mode,
        )
    )
    response = JSONResponse(
        {"authorization_url": started.authorization_url, "expires_at": _iso(started.expires_at)},
        headers={"Cache-Control": "no-store"},
    )
    services.cookies.set_binding(response, app.id, started.binding)
    return response


@router.get(
    "/api/{app}/session",
    response_model=SessionStatus,
    operation_id="getSession",
    openapi_extra={"security": SIGNED_IN_OR_NOT},
)
async def session(app: AppDep, req: RequestDep, services: ServicesDep) -> Response:
    """Whether the caller is signed in to this app (200 either way)."""
    cfg = app.config
    caller = await services.auth.current(req, cfg)
    if caller is None:
        query = urlencode({"return_to": cfg.return_urls[0]}) if cfg.return_urls else ""
        body: dict[str, Any] = {
            "authenticated": False,
            "login_url": f"{services.settings.public_url}/auth/{app.id}/login"
            + (f"?{query}" if query else ""),
        }
    else:
        end = caller.session.ends
        body = {
            "authenticated": True,
            "expires_at": _iso(end),
            "expires_in": max(0, int(end - services.clock())),
        }
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


@router.post(
    "/api/{app}/session/revoke-all",
    response_model=RevokeAllResponse,
    operation_id="revokeAllSessions",
    openapi_extra={"security": SIGNED_IN},
)
async def revoke_all(app: AppDep, req: RequestDep, services: ServicesDep) -> Response:
    """Sign out on all devices: end every session of the caller's subscriber in this app (the
    caller's own included). Cookie callers need `X-CSRF: 1`, as for every cookie call."""
    revoked = await services.auth.revoke_all(req, app.config)
    response = JSONResponse({"revoked": revoked}, headers={"Cache-Control": "no-store"})
    if req.credential is not None and req.credential.kind == "cookie":
        services.cookies.clear_session(response, app.id)
    return response
