"""The app factory and its lifespan: the only place clients are created and closed."""

from __future__ import annotations

import gc
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import httpx
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from httpx_aiohttp import AiohttpTransport
from pydantic import SecretStr
from starlette.exceptions import HTTPException
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from .config import Settings, config_problems, generate_key
from .cookies import Cookies
from .cors import BrowserGuard, HttpsOnly
from .crypto import Cipher
from .deps import Services
from .errors import BffError, problem_for, problem_response
from .events import Events
from .flow import LoginFlow
from .limits import BodyLimit
from .logs import REDACTOR, AccessLog
from .metrics import Metrics
from .pages import Pages
from .proxy import ApiProxy
from .redis import create_redis
from .routes import api, auth, demo, ops
from .sessions import SessionAuth
from .stores import Clock, HandoffStore, RateLimiter, SessionStore, StateStore
from .telenor import Telenor

GC_THRESHOLDS = (20_000, 50, 100)


class ConfigError(Exception):
    """The configuration has fatal problems; `check-config` lists them."""


def prepared(settings: Settings) -> Settings:
    """Settings ready to run: development gets generated keys; fatal problems refuse to start."""
    if settings.env == "development" and not settings.session_keys:
        settings = settings.model_copy(update={"session_keys": SecretStr(generate_key())})
    fatal = [p.message for p in config_problems(settings) if p.fatal]
    if fatal:
        raise ConfigError("; ".join(fatal))
    return settings


def _http_client(timeout: float, max_connections: int) -> httpx.AsyncClient:
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    return httpx.AsyncClient(
        transport=AiohttpTransport(limits=limits),
        timeout=httpx.Timeout(timeout, connect=min(timeout, 3.0)),
        limits=limits,
        follow_redirects=False,
    )


def _api_client(timeout: float, max_connections: int) -> aiohttp.ClientSession:
    """The proxied calls' client: aiohttp itself. httpx's layers over the same aiohttp engine
    cost more CPU per call than everything else the BFF does (bench/README.md)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(
            limit=max_connections, limit_per_host=max_connections, ttl_dns_cache=300
        ),
        timeout=aiohttp.ClientTimeout(total=timeout, connect=min(timeout, 3.0)),
        cookie_jar=aiohttp.DummyCookieJar(),  # upstream cookies are never kept or sent
        raise_for_status=False,
    )


def _is_page(request: Request) -> bool:
    """Browser-flow routes answer with the error page; everything else with problem+json."""
    parts = request.url.path.split("/")
    return request.method in ("GET", "HEAD") and len(parts) >= 3 and parts[1] == "auth"


def create_app(settings: Settings, *, clock: Clock = time.time) -> FastAPI:
    """The BFF as an ASGI app. Nothing here touches the network until the lifespan starts."""
    settings = prepared(settings)
    cookies = Cookies(settings)
    pages = Pages()
    cipher = Cipher(settings.keys())
    metrics = Metrics()
    # The redaction layer knows this configuration's literal secrets, whatever the log format.
    REDACTOR.add(app.client_secret.get_secret_value() for app in settings.apps.values())
    events = Events(metrics)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, Any]]:
        redis, close_redis = create_redis(settings)
        thresholds = gc.get_threshold()
        timeout = settings.telenor.timeout_seconds
        oauth_http = _http_client(timeout, 50)
        api_http = _api_client(timeout, 200)
        try:
            telenor = Telenor(
                settings.telenor, oauth_http, api_http, max_body=settings.max_upstream_body_bytes
            )
            prefix = settings.redis_key_prefix
            sessions = SessionStore(redis, prefix, cipher, settings.session_max_seconds, clock)
            handoffs = HandoffStore(redis, prefix, cipher, settings.handoff_ttl_seconds)
            states = StateStore(redis, prefix, settings.state_ttl_seconds, clock)
            limiter = RateLimiter(
                redis,
                prefix,
                {
                    "login": settings.rate_limit_login_per_minute,
                    "login_browser": settings.rate_limit_login_per_browser_per_minute,
                    "login_app": settings.rate_limit_login_per_app_per_minute,
                    "api": settings.rate_limit_api_per_minute,
                },
                clock,
                events.rate_limited,
            )
            flow = LoginFlow(settings, states, sessions, handoffs, telenor, clock, limiter, events)
            session_auth = SessionAuth(
                sessions,
                handoffs,
                telenor,
                cookies,
                settings.refresh_skew_seconds,
                timeout + 1.0,
                clock,
                limiter,
                events,
            )
            services = Services(
                settings=settings,
                redis=redis,
                cookies=cookies,
                flow=flow,
                auth=session_auth,
                proxy=ApiProxy(settings, telenor, session_auth, metrics),
                pages=pages,
                clock=clock,
                metrics=metrics,
            )
            # Everything built so far lives as long as the process: keep it out of the
            # collector's way (fewer and shorter GC pauses, which shows in the p99). A request
            # leaves short-lived containers only, so the young generation is collected every
            # 20 000 allocations instead of 700 (3 % less CPU per proxied call, bench/README.md).
            gc.freeze()
            gc.set_threshold(*GC_THRESHOLDS)
            yield {"services": services}
        finally:
            gc.set_threshold(*thresholds)
            await api_http.close()
            await oauth_http.aclose()
            await close_redis()

    app = BffApp(
        title="Line Auth BFF",
        version="0.1.0",
        description=(
            "Backend-for-frontend for Telenor Norway's line-authenticated OAuth and the Mobile "
            "User Info / Mobile Device Info APIs. Browsers get an HttpOnly cookie, mobile apps an "
            "opaque bearer session token; neither ever sees Telenor's tokens."
        ),
        lifespan=lifespan,
        # Our own metrics and logs cover this; FastAPI's OpenTelemetry probe otherwise looks up
        # the tracer provider (an os.environ read) on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        # FastAPI's /docs and /redoc load unpinned bundles from a public CDN, on the origin
        # where the session cookie lives: a compromised release could read the API. The
        # document itself stays at /openapi.json (and in openapi/openapi.json).
        docs_url=None,
        redoc_url=None,
    )
    # Starlette would redirect `/path/` to `/path`, building Location from the Host header.
    app.router.redirect_slashes = False
    routers = [auth.router, api.router, ops.router]
    if settings.env == "development" and "demo" in settings.apps:
        routers.append(demo.router)
    for router in routers:
        app.include_router(router)
    # What the access log names a request by when it was refused before routing.
    routes = [route for router in routers for route in router.routes]

    @app.exception_handler(BffError)
    async def on_bff_error(request: Request, exc: BffError) -> Response:
        events.error(exc.code)
        if _is_page(request):
            return pages.error(request, exc)
        return problem_for(exc)

    @app.exception_handler(HTTPException)
    async def on_http_error(request: Request, exc: HTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
        events.error(code)
        if _is_page(request) and exc.status_code == 404:
            return pages.error(request, BffError("not_found"))
        headers = dict(exc.headers or {})
        return problem_response(code, status=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> Response:
        # Field locations and messages only: never echo the submitted values (they may be codes).
        detail = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg', 'invalid')}"
            for err in exc.errors()[:5]
        )
        events.error("invalid_request")
        return problem_response("invalid_request", detail[:500])

    def edge(inner: ASGIApp) -> ASGIApp:
        """Our pure-ASGI layers around FastAPI's own stack, innermost first."""
        layer: Any = api.ProxiedRoutes(inner, on_error=events.error)
        layer = BrowserGuard(layer, settings=settings, cookies=cookies, on_reject=events.rejected)
        layer = HttpsOnly(layer, settings=settings)
        # Before anything answers: a refusal must not leave a huge body to be read anyway.
        layer = BodyLimit(layer, max_bytes=settings.max_body_bytes, on_error=events.error)
        # X-Forwarded-For/-Proto are believed only from BFF_TRUSTED_PROXIES.
        layer = ProxyHeadersMiddleware(layer, trusted_hosts=settings.trusted_proxies)
        # Outermost: every response, including the layers' own refusals and unexpected errors
        # (AccessLog answers those with a 500 problem), gets a request id and one log line.
        return AccessLog(layer, on_error=events.error, routes=routes)

    app.edge = edge
    return app


class BffApp(FastAPI):
    """FastAPI with the BFF's own layers (`edge`) outside FastAPI's middleware stack.

    The proxied calls are answered inside the edge, so they skip the layers FastAPI puts first
    (exception telemetry, body limit), which do nothing for them: a proxied GET has no body.
    Starlette's `ServerErrorMiddleware` goes: it would answer a bug with plain text and raise
    on, where `AccessLog` answers it with a problem, the request id and a redacted traceback.
    """

    edge: Callable[[ASGIApp], ASGIApp] = staticmethod(lambda inner: inner)

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        if isinstance(stack, ServerErrorMiddleware):
            stack = stack.app
        return self.edge(stack)
