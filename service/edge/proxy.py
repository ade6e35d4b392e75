"""The Telenor API proxy: allow-listed paths, header hygiene, upstream failures mapped.

The upstream URL is `{telenor_api}/{path}` where `path` must equal an entry of the app's
`upstream_paths` exactly; the request contributes nothing else to the URL (no query, no host),
so encoded traversal and host tricks have nothing to bend. Which routes are proxied is
declared in `contract/proxied.py`.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import aiohttp

from ..auth.sessions import SessionAuth
from ..config import Settings
from ..contract.scope import RequestScope
from ..kit.errors import BffError
from ..observe.metrics import Metrics
from ..observe.tracing import Tracing, inject
from ..telenor import BodyTooLarge, Telenor, classify, read_capped

# Upstream response headers worth passing on. Not X-Request-ID: the client gets ours (which
# Telenor received), set at the edge.
KEEP_RESPONSE = frozenset({b"content-type", b"etag", b"last-modified", b"content-language"})


class Proxied(NamedTuple):
    """Telenor's answer as it goes back to the client: status, kept headers, body."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


class ApiProxy:
    """Forwards one allow-listed GET to Telenor with the session's access token."""

    def __init__(
        self,
        *,
        settings: Settings,
        telenor: Telenor,
        auth: SessionAuth,
        metrics: Metrics,
        tracing: Tracing | None = None,
    ) -> None:
        self._trace = tracing if tracing is not None and tracing.on else None
        self._metrics = metrics
        base = telenor.api_base
        # The allow-list, each path with its full upstream URL built once.
        self._urls = {
            app: {path: f"{base}/{path}" for path in cfg.upstream_paths}
            for app, cfg in settings.apps.items()
        }
        self._apps = settings.apps
        self._telenor = telenor
        self._auth = auth

    async def forward(self, req: RequestScope) -> Proxied:
        """A proxied GET in, Telenor's answer out (or a `BffError`)."""
        app, path = req.app, req.upstream
        if app is None:
            raise BffError(
                "unknown_app", f"No app called {(req.named or '')[:40]!r} is configured."
            )
        url = self._urls[app].get(path or "")
        if url is None or path is None:
            raise BffError("path_not_allowed")
        caller = await self._auth.current(req, self._apps[app])
        if caller is None:
            raise BffError("not_authenticated", "Sign in first.")
        upstream_headers = {
            "Authorization": f"Bearer {caller.session.access_token}",
            "X-Request-ID": req.request_id,
        }
        for name, value in req.forward:  # (Accept, Accept-Language, If-None-Match only)
            upstream_headers[name.decode("latin-1")] = value.decode("latin-1")
        span = None
        if self._trace is not None:  # (the upstream call's span, and its traceparent)
            span = self._trace.start("GET telenor", **{"telenor.path": path})
            inject(upstream_headers, span)
        started = time.perf_counter()
        cap = self._telenor.max_body
        status = 0
        try:
            async with self._telenor.api.get(
                url, headers=upstream_headers, allow_redirects=False
            ) as up:
                length = up.content_length
                if length is not None and length > cap:
                    raise BodyTooLarge(cap)
                # A known length is read at once; a chunked or compressed answer (aiohttp
                # inflates it: a small gzip can be a huge body) only up to the cap.
                plain = length is not None and "Content-Encoding" not in up.headers
                body = await (up.read() if plain else read_capped(up.content.iter_any(), cap))
                status = up.status
                raw = up.raw_headers
        except (aiohttp.ClientError, TimeoutError) as exc:
            failure = classify(exc)
            self._metrics.count_proxied(app, path, failure.removeprefix("upstream_"))
            raise BffError(failure) from None
        except BodyTooLarge:
            self._metrics.count_proxied(app, path, "too_large")
            raise BffError("upstream_error", f"Telenor's answer is over {cap} bytes.") from None
        finally:
            if span is not None:
                span.set_attribute("http.response.status_code", status)
                span.end()
        self._metrics.observe_upstream(app, path, status, time.perf_counter() - started)
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
        kept = []
        for name, value in raw:
            lowered = name.lower()
            if lowered in KEEP_RESPONSE:
                kept.append((lowered, value))
        # Personal data: no cache keeps it, whatever Telenor's own Cache-Control says.
        kept.append((b"cache-control", b"no-store"))
        if status not in (204, 304):
            kept.append((b"content-length", str(len(body)).encode()))
        return Proxied(status, kept, body)
