"""The Telenor API proxy: allow-listed paths, header hygiene, upstream failures mapped (DESIGN §3).

The upstream URL is `{telenor_api}/{path}` where `path` must equal an entry of the app's
`upstream_paths` exactly; the request contributes nothing else to the URL (no query, no host),
so encoded traversal and host tricks have nothing to bend.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import aiohttp

from .config import Settings
from .errors import BffError
from .logs import request_id
from .metrics import Metrics, status_class
from .sessions import RawHeaders, SessionAuth
from .telenor import BodyTooLarge, Telenor, classify, read_capped

FORWARD_REQUEST = frozenset({b"accept", b"accept-language", b"if-none-match"})
# Upstream response headers worth passing on. Not X-Request-ID: the client gets ours (which
# Telenor received), set by the access log.
KEEP_RESPONSE = frozenset({b"content-type", b"etag", b"last-modified", b"content-language"})


class Proxied(NamedTuple):
    """Telenor's answer as it goes back to the client: status, kept headers, body."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


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

    async def forward(self, headers: RawHeaders, app_id: str, path: str) -> Proxied:
        """The request's raw ASGI headers in, Telenor's answer out (or a `BffError`)."""
        self.check_path(app_id, path)
        caller = await self._auth.current(headers, app_id, self._apps[app_id])
        if caller is None:
            raise BffError("not_authenticated", "Sign in first.")
        upstream_headers = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in headers
            if name in FORWARD_REQUEST
        }
        upstream_headers["Authorization"] = f"Bearer {caller.session.access_token}"
        rid = request_id.get()
        if rid:
            upstream_headers["X-Request-ID"] = rid
        app = caller.session.app
        url = self._urls[app][path]  # allow-listed: checked above
        started = time.perf_counter()
        cap = self._telenor.max_body
        try:
            async with self._telenor.api.get(
                url, headers=upstream_headers, allow_redirects=False
            ) as up:
                length = up.content_length
                if length is not None and length > cap:
                    raise BodyTooLarge(cap)
                # A known length is read at once; a chunked answer only up to the cap.
                body = await (
                    up.read() if length is not None else read_capped(up.content.iter_any(), cap)
                )
                status = up.status
                raw = up.raw_headers
        except (aiohttp.ClientError, TimeoutError) as exc:
            failure = classify(exc)
            self._count(app, path, failure.removeprefix("upstream_"))
            raise BffError(failure) from None
        except BodyTooLarge:
            self._count(app, path, "too_large")
            raise BffError("upstream_error", f"Telenor's answer is over {cap} bytes.") from None
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
            retry = next((v for k, v in raw if k.lower() == b"retry-after"), b"1").decode()
            raise BffError(
                "upstream_rate_limited",
                headers={"Retry-After": retry if retry.isdigit() else "1"},
            )
        if status >= 500:
            raise BffError("upstream_error", f"Telenor answered {status}.")
        kept = [(name.lower(), value) for name, value in raw if name.lower() in KEEP_RESPONSE]
        # Personal data: no cache keeps it, whatever Telenor's own Cache-Control says.
        kept.append((b"cache-control", b"no-store"))
        if status not in (204, 304):
            kept.append((b"content-length", str(len(body)).encode()))
        return Proxied(status, kept, body)
