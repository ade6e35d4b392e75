"""The Telenor API proxy: allow-listed paths, header hygiene, upstream failures mapped (DESIGN §3).

The upstream URL is `{telenor_api}/{path}` where `path` must equal an entry of the app's
`upstream_paths` exactly; the request contributes nothing else to the URL (no query, no host),
so encoded traversal and host tricks have nothing to bend.
"""

from __future__ import annotations

import time
from typing import Any

import aiohttp
from starlette.requests import Request
from starlette.responses import Response

from .config import Settings
from .errors import BffError
from .logs import request_id
from .metrics import Metrics, status_class
from .sessions import Caller, SessionAuth
from .telenor import Telenor, classify

FORWARD_REQUEST = frozenset({b"accept", b"accept-language", b"if-none-match"})
KEEP_RESPONSE = frozenset(
    {"content-type", "etag", "cache-control", "last-modified", "content-language", "x-request-id"}
)


class ApiProxy:
    """Forwards one allow-listed GET to Telenor with the session's access token."""

    def __init__(
        self, settings: Settings, telenor: Telenor, auth: SessionAuth, metrics: Metrics
    ) -> None:
        self._metrics = metrics
        # Metric children by label values, so the hot path skips `labels()` (a lock and a
        # lookup each). The keys are configured apps, allow-listed paths and status classes.
        self._counters: dict[tuple[str, str, str], Any] = {}
        self._latency: dict[tuple[str, str], Any] = {}
        base = telenor.api_base
        # The allow-list, each path with its full upstream URL built once.
        self._urls = {
            app: {path: f"{base}/{path}" for path in cfg.upstream_paths}
            for app, cfg in settings.apps.items()
        }
        self._apps = settings.apps
        self._telenor = telenor
        self._auth = auth

    def check_path(self, app_id: str, path: str) -> None:
        if path not in self._urls.get(app_id, {}):
            raise BffError("path_not_allowed")

    def _count(self, app: str, path: str, outcome: str) -> None:
        counter = self._counters.get((app, path, outcome))
        if counter is None:
            counter = self._counters[(app, path, outcome)] = self._metrics.proxied.labels(
                app, path, outcome
            )
        counter.inc()

    async def forward(self, request: Request, app_id: str, path: str) -> Response:
        self.check_path(app_id, path)
        caller = await self._auth.require(request, app_id, self._apps[app_id])
        return await self.call(request, caller, path)

    async def call(self, request: Request, caller: Caller, path: str) -> Response:
        headers = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in request.headers.raw
            if name in FORWARD_REQUEST
        ]
        headers.append(("Authorization", f"Bearer {caller.session.access_token}"))
        rid = request_id.get()
        if rid:
            headers.append(("X-Request-ID", rid))
        app = caller.session.app
        url = self._urls[app][path]  # allow-listed: forward() checked it
        started = time.perf_counter()
        try:
            async with self._telenor.api.get(url, headers=headers, allow_redirects=False) as up:
                body = await up.read()
                status = up.status
                kept = {k: v for k, v in up.headers.items() if k.lower() in KEEP_RESPONSE}
                retry = up.headers.get("retry-after", "1")
        except (aiohttp.ClientError, TimeoutError) as exc:
            failure = classify(exc)
            self._count(app, path, failure.removeprefix("upstream_"))
            raise BffError(failure) from None
        elapsed = time.perf_counter() - started
        latency = self._latency.get((app, path))
        if latency is None:
            latency = self._latency[(app, path)] = self._metrics.proxy_latency.labels(app, path)
        latency.observe(elapsed)
        self._count(app, path, status_class(status))
        if status == 401:
            # 40105 invalid / 40106 expired: the token is dead, so is the session.
            await self._auth.end(caller)
            raise BffError("session_expired", "Telenor no longer accepts this session's token.")
        if status == 429:
            raise BffError(
                "upstream_rate_limited",
                headers={"Retry-After": retry if retry.isdigit() else "1"},
            )
        if status >= 500:
            raise BffError("upstream_error", f"Telenor answered {status}.")
        return Response(body, status_code=status, headers=kept)
