"""The admin API, on the admin listener only: list live sessions, revoke them by reference, by
subscriber, by app. Every call needs `Authorization: Bearer <token>` of `BFF_ADMIN__TOKENS`
and leaves an audit line, allowed or not."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from starlette.requests import Request
from starlette.responses import Response

from ..contract.models import AdminSession, AdminSessions, RevocationRequest, RevocationResult
from ..contract.security import problems
from ..kit.errors import BffError
from ..store.session_index import Entry
from .deps import RequestDep, Services, ServicesDep

router = APIRouter(prefix="/admin", tags=["admin"], responses=problems(401, 404, 422, 503))


async def admin_caller(
    request: Request, req: RequestDep, services: ServicesDep
) -> AsyncIterator[str]:
    """The name of the admin token the call carries (compared in constant time with every
    configured one); a 401 without a valid one. Each call leaves an audit line."""
    sent = req.credential.secret if req.credential and req.credential.kind == "bearer" else ""
    names = [
        name
        for name, token in services.settings.admin.tokens_by_name().items()
        if hmac.compare_digest(sent.encode(), token.encode())
    ]
    route = getattr(request.scope.get("route"), "path", req.path)
    name = names[0] if names and sent else None
    outcome = 401 if name is None else 200
    try:
        if name is None:
            raise BffError(
                "admin_unauthorized", headers={"WWW-Authenticate": 'Bearer realm="admin"'}
            )
        yield name
    except BffError as exc:
        outcome = exc.status or 500
        raise
    finally:
        services.events.admin_call(
            by=name, method=req.method, route=route, status=outcome, client=req.client
        )


AdminDep = Annotated[str, Depends(admin_caller)]


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


async def _matching(services: Services, app: str | None, subscriber: str | None) -> list[Entry]:
    apps = list(services.settings.apps)
    if app is not None and app not in apps:
        raise BffError("unknown_app", f"No app called {app[:40]!r} is configured.")
    hashes = services.subscribers.all(subscriber) if subscriber else []
    index = services.index
    return await index.live(apps=[app] if app else apps, subscribers=hashes, app=app)


@router.get("/openapi.json", include_in_schema=False)
async def document(request: Request, admin: AdminDep) -> dict[str, Any]:
    """This API's OpenAPI document."""
    spec: dict[str, Any] = request.app.admin_openapi()
    return spec


@router.get("/sessions", response_model=AdminSessions, operation_id="listSessions")
async def list_sessions(
    admin: AdminDep,
    services: ServicesDep,
    app: str | None = None,
    subscriber: Annotated[str | None, Query(max_length=32)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Live sessions of an app, of a subscriber (the MSISDN), of both, or of every app."""
    entries = await _matching(services, app, subscriber)
    return {
        "sessions": [
            AdminSession(
                ref=e.ref,
                app=e.app,
                via="bearer" if e.via == "bearer" else "cookie",
                created_at=_iso(e.created_at),
                expires_at=_iso(e.ends_at),
            )
            for e in entries[:limit]
        ],
        "truncated": len(entries) > limit,
    }


@router.delete(
    "/sessions/{ref}", status_code=204, response_class=Response, operation_id="revokeSession"
)
async def revoke_session(
    ref: str, admin: AdminDep, req: RequestDep, services: ServicesDep
) -> Response:
    """End one session, by its reference; it is refused on every replica from the next call."""
    index = services.index
    entry = await index.by_ref(ref)
    if entry is None:
        raise BffError("not_found", "No live session has this reference.")
    revoked = await index.revoke([entry])
    services.events.revoked(
        by=admin, revoked=revoked, app=entry.app, session_ref=entry.ref, client=req.client
    )
    return Response(status_code=204)


@router.post("/revocations", response_model=RevocationResult, operation_id="revokeSessions")
async def revoke_sessions(
    body: RevocationRequest, admin: AdminDep, req: RequestDep, services: ServicesDep
) -> dict[str, int]:
    """End every session of a subscriber, of an app, or of the subscriber in that app."""
    if not body.app and not body.subscriber:
        raise BffError("invalid_request", "Name an app, a subscriber, or both.")
    entries = await _matching(services, body.app, body.subscriber)
    revoked = await services.index.revoke(entries)
    hashed = services.subscribers(body.subscriber) if body.subscriber else None
    services.events.revoked(
        by=admin, revoked=revoked, app=body.app, subscriber=hashed, client=req.client
    )
    return {"revoked": revoked}
