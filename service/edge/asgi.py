"""The edge: every HTTP request enters the BFF here, once, as plain ASGI.

In order, for each request:

1. classify it into a `RequestScope` (`classify.py`), kept in `scope["bff"]`;
   beyond `BFF_MAX_IN_FLIGHT` requests at once in this process, a wait of at most
   `BFF_SHED_AFTER_MS` for a slot, then 503 `overloaded` (`limits.Admission`; the probes and
   the admin listener are never shed);
2. which listener may serve it (`listeners.py`), then on the public listener the plain-http
   rule (`plain_http.py`): pass, redirect to https, or refuse;
3. for a guarded request, CORS and CSRF (`cors.py`): a preflight is answered here;
4. the body limit (`limits.py`), before anything reads a body;
5. a proxied GET (`contract/proxied.py`) is answered here by the proxy, with no framework around
   it (the hot path); anything else goes on to FastAPI's routes.

Every response gets the request id, guarded ones their CORS headers (and a 401 its
`WWW-Authenticate`); every request gets one access line, written when its response is
complete; every error leaves through `respond.Responder`, an unexpected one as a 500 with a
redacted traceback in the log that names the request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Sequence
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..contract.scope import SCOPE_KEY, RequestScope
from ..kit.errors import BffError
from ..observe.logs import request_id
from ..observe.logs.access import AccessLog
from ..observe.metrics import METHODS, Metrics
from ..observe.tracing import Tracing, current_trace_id, parent_of
from .classify import Classifier
from .cors import BrowserPolicy
from .limits import Admission, read_body
from .listeners import Listeners
from .plain_http import PlainHttp, Redirect
from .proxy import ApiProxy, Proxied
from .respond import Responder

log = logging.getLogger("line_auth_bff")


class Edge:
    """The outer ASGI layer around FastAPI's own stack."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        classify: Classifier,
        listeners: Listeners,
        plain_http: PlainHttp,
        browser: BrowserPolicy,
        max_body: int,
        admission: Admission,
        responder: Responder,
        access_log: AccessLog,
        metrics: Metrics,
        tracing: Tracing,
        routes: Sequence[Any],
    ) -> None:
        self._observe = metrics.observe_request
        self._tracing = tracing if tracing.on else None
        self.app = app
        self._classify = classify
        self._listeners = listeners
        self._plain_http = plain_http if plain_http.active else None
        self._browser = browser
        self._max_body = max_body
        self.admission = admission
        self._responder = responder
        self._access = access_log
        self._routes = routes  # Starlette routes: what names a request refused before routing

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """Classify, then what serves the request, for the server to await (a plain function:
        one frame fewer to pass through each time the request resumes)."""
        if scope["type"] != "http":
            return self.app(scope, receive, send)
        req = scope[SCOPE_KEY] = self._classify(scope)
        if self._tracing is not None:
            return self._traced(self._tracing, req, scope, receive, send)
        return self._serve(req, scope, receive, send)

    async def _traced(
        self, tracing: Tracing, req: RequestScope, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """`_serve` inside the request's server span, which gets the outcome at the end. A
        `traceparent` is believed only from a trusted proxy."""
        parent = parent_of(scope["headers"]) if req.trusted_peer else None
        status = 0

        async def out(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        method = req.method if req.method in METHODS else "_OTHER"  # (client-chosen)
        with tracing.server(method, req.scheme, parent) as span:
            try:
                await self._serve(req, scope, receive, out)
            finally:
                route = self._template(req, scope)
                span.update_name(f"{method} {route or '(unmatched)'}")
                span.set_attribute("http.response.status_code", status)
                if route:
                    span.set_attribute("http.route", route)
                if req.app:
                    span.set_attribute("app", req.app)

    async def _serve(self, req: RequestScope, scope: Scope, receive: Receive, send: Send) -> None:
        token = request_id.set(req.request_id)
        extra = [(b"x-request-id", req.request_id.encode())]
        if req.guarded:
            extra += self._browser.response_headers(req)
        status = 0
        started = time.perf_counter()
        logged = False

        def access_line() -> None:
            # Written when the response is complete, so its duration and its place among the
            # lines leave out any background task that runs after it (Telenor's logout).
            nonlocal logged
            logged = True
            seconds = time.perf_counter() - started
            route = self._template(req, scope)
            trace_id = current_trace_id() if self._tracing is not None else None
            self._access.write(
                (
                    req.method,
                    route,
                    status,
                    int(seconds * 100_000 + 0.5) / 100,  # ms, to two places (`round` costs 3x)
                    req.client,
                    req.request_id,
                    trace_id,
                )
            )
            self._observe(route, req.method, status, seconds)

        async def out(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", ()), *extra]
                if status == 401 and req.guarded:
                    headers.append(self._browser.challenge(req))
                message["headers"] = headers
                await send(message)
                return
            await send(message)
            if not message.get("more_body") and not logged:
                access_line()

        admission = self.admission
        if admission.in_flight < admission.limit or not _sheddable(req):
            admission.in_flight += 1
            admitted = True
        else:
            admitted = await admission.wait()
        try:
            if not admitted:
                raise BffError("overloaded", headers={"Retry-After": "1"})
            proxied = await self._handle(req, scope, receive, out)
            if proxied is not None:  # (the hot path: sent as is, with no `out` around it)
                status = proxied.status
                headers = proxied.headers  # (built for this answer: ours to extend)
                headers += extra
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": proxied.body})
                access_line()
        except BffError as exc:
            if status:  # the response has begun: all we can do is end the connection
                raise
            await self._responder.send(scope, receive, out, exc)
        except Exception as exc:
            log.error(
                "unexpected error",
                exc_info=exc,
                extra={"fields": {"route": self._template(req, scope)}},
            )
            if status:
                raise
            internal = BffError("internal", "Something went wrong on our side.")
            await self._responder.send(scope, receive, out, internal)
        finally:
            if admitted:
                admission.leave()
            if not logged:  # no complete response (a disconnect, a failure mid-response)
                access_line()
            request_id.reset(token)

    def _handle(
        self, req: RequestScope, scope: Scope, receive: Receive, send: Send
    ) -> Awaitable[Proxied | None]:
        """Steps 2 to 5; a refusal is raised as a `BffError`. Returns what answers the request,
        for `_serve` to await (a plain function, like `__call__`): a proxied GET's answer comes
        back for the caller to send; anything else is sent there."""
        self._listeners.check(req)
        if self._plain_http is not None and req.listener == "public":
            redirect = self._plain_http.check(req, scope)
            if redirect is not None:
                return _redirect(redirect, send)
        if req.guarded:
            if req.preflight:
                return _empty(204, self._browser.preflight(req), send)
            self._browser.check(req)
        if req.content_length or req.chunked:
            return self._after_body(req, scope, receive, send)
        return self._dispatch(req, scope, receive, send)

    async def _after_body(
        self, req: RequestScope, scope: Scope, receive: Receive, send: Send
    ) -> Proxied | None:
        whole = await read_body(req, receive, self._max_body)
        if whole is None:
            return None
        return await self._dispatch(req, scope, whole, send)

    def _dispatch(
        self, req: RequestScope, scope: Scope, receive: Receive, send: Send
    ) -> Awaitable[Proxied | None]:
        if req.proxied is not None:
            if req.method != "GET":
                raise BffError("method_not_allowed", headers={"Allow": "GET"})
            proxy: ApiProxy = scope["state"]["services"].proxy
            return proxy.forward(req)
        return self.app(scope, receive, send)

    def _template(self, req: RequestScope, scope: Scope) -> str | None:
        """The route template the request matched: a proxied route's own, else the one
        FastAPI routed it to. A request refused before routing (CORS/CSRF, https, rate limits)
        is named by the first route whose pattern and method fit; a 404 stays None."""
        if req.proxied is not None:
            return req.proxied.template
        route = scope.get("route")
        if route is not None:
            return getattr(route, "path", None)
        for candidate in self._routes:
            if req.method in (candidate.methods or ()) and candidate.path_regex.match(req.path):
                return str(candidate.path)
        return None


def _sheddable(req: RequestScope) -> bool:
    """What load shedding may refuse: not the probes, nothing on the admin listener."""
    return req.surface != "ops" and req.listener == "public"


async def _redirect(redirect: Redirect, send: Send) -> None:
    await _empty(308, [(b"location", redirect.location)], send)


async def _empty(status: int, headers: list[tuple[bytes, bytes]], send: Send) -> None:
    headers = [*headers, (b"content-length", b"0")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b""})
