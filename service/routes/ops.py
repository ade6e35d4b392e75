"""Ops endpoints: liveness, readiness, metrics; and the JS client's fixed path."""

from __future__ import annotations

import asyncio
import logging
from functools import cache
from pathlib import Path

from fastapi import APIRouter
from starlette.responses import JSONResponse, Response

from ..contract.security import PUBLIC
from ..kit.errors import BffError
from ..observe.events import event
from ..store.redis import REDIS_FAILURES, failure_class
from .deps import ServicesDep

router = APIRouter(tags=["ops"])


@router.get("/healthz", operation_id="getHealth", openapi_extra={"security": PUBLIC})
async def healthz() -> dict[str, str]:
    """The process is alive; touches nothing."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={503: {"description": "A dependency is down"}},
    operation_id="getReadiness",
    openapi_extra={"security": PUBLIC},
)
async def readyz(services: ServicesDep) -> Response:
    """Ready when every dependency answers within its timeout (today: Redis PING)."""
    failed = []
    try:
        async with asyncio.timeout(services.settings.redis_timeout_seconds + 0.5):
            await services.redis.ping()
    except REDIS_FAILURES as exc:
        failed.append(f"redis ({failure_class(exc)})")
    if failed:
        # Every failed probe is a line (a probe comes every few seconds, not per request).
        event("not ready", logging.ERROR, failed=failed)
        raise BffError(
            "not_ready", f"Not answering: {', '.join(failed)}.", headers={"Retry-After": "5"}
        )
    return JSONResponse({"status": "ok", "checks": {"redis": "ok"}})


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def metrics(services: ServicesDep) -> Response:
    """Prometheus metrics (summed over all workers); keep it off the public internet."""
    return Response(services.metrics.render(), media_type=services.metrics.content_type)


CLIENT_PATH = "/client/line-auth-bff.js"


@cache
def _client_js() -> bytes:
    """The browser client (clients/js/index.js), as one ES module."""
    return (Path(__file__).parent.parent / "static" / "line-auth-bff.js").read_bytes()


@router.get(CLIENT_PATH, include_in_schema=False)
async def client_js() -> Response:
    """The JS client, at a fixed path: `import { createClient } from "{public}/client/…"`.
    Public and credential-free, so any origin may load it as a module script."""
    return Response(
        _client_js(),
        media_type="text/javascript",
        headers={"Cache-Control": "public, max-age=300", "Access-Control-Allow-Origin": "*"},
    )
