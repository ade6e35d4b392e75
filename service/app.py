"""The app factory and its lifespan: the only place clients are created and closed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import httpx
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from httpx_aiohttp import AiohttpTransport
from pydantic import SecretStr
from redis.asyncio import Redis, RedisCluster
from starlette.exceptions import HTTPException
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from .auth.cookies import Cookies
from .auth.flow import LoginFlow
from .auth.native import AuthorizationCodeGrant, AuthorizationServer, OAuthError
from .auth.sessions import SessionAuth
from .config import Settings, config_problems, generate_key
from .edge.asgi import Edge
from .edge.classify import Classifier
from .edge.cors import BrowserPolicy
from .edge.limits import Admission
from .edge.listeners import Listeners
from .edge.pages import Pages
from .edge.plain_http import PlainHttp
from .edge.proxy import ApiProxy
from .edge.respond import Responder
from .kit.clock import Clock
from .kit.crypto import Cipher
from .kit.errors import BffError
from .observe.events import Events
from .observe.logs.access import AccessLog
from .observe.logs.redact import Redactor
from .observe.metrics import Metrics, build_version
from .observe.tracing import Tracing
from .routes import admin, api, browser, demo, oauth2, ops
from .routes.deps import Services
from .routes.openapi import admin_document, openapi_document
from .store.ratelimit import RateLimiter
from .store.redis import create_redis, timed
from .store.session_index import SubscriberHash
from .store.stores import CodeStore, SessionStore, StateStore
from .telenor import Telenor


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


def client_secrets(settings: Settings) -> list[str]:
    """The configuration's literal secrets, which no log line may carry."""
    return [app.client_secret.get_secret_value() for app in settings.apps.values()]


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


DESCRIPTION = (
    "Backend-for-frontend for Telenor Norway's line-authenticated OAuth and the Mobile User "
    "Info / Mobile Device Info APIs. Browsers get an HttpOnly cookie, mobile apps an opaque "
    "bearer session token; neither ever sees Telenor's tokens."
)


@dataclass(frozen=True)
class Parts:
    """What one app holds for its whole life, built before its lifespan starts."""

    settings: Settings
    clock: Clock
    cookies: Cookies
    cipher: Cipher
    subscribers: SubscriberHash
    metrics: Metrics
    events: Events
    responder: Responder
    tracing: Tracing

    @classmethod
    def of(cls, settings: Settings, clock: Clock) -> Parts:
        metrics = Metrics()
        events = Events(metrics)
        return cls(
            settings=settings,
            clock=clock,
            cookies=Cookies(settings),
            cipher=Cipher(settings.keys()),
            subscribers=SubscriberHash(settings.keys()),
            metrics=metrics,
            events=events,
            responder=Responder(pages=Pages(), events=events),
            tracing=Tracing(version=build_version()),
        )


def create_app(
    settings: Settings, *, clock: Clock = time.time, access_log: AccessLog | None = None
) -> BffApp:
    """The BFF as an ASGI app. Nothing here touches the network until the lifespan starts,
    and nothing outside the app changes: `access_log` is where the access lines go (the one
    `configure_logging` returns; by default, records through `logging`)."""
    parts = Parts.of(prepared(settings), clock)
    app = BffApp(
        title="Line Auth BFF",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=_lifespan(parts),
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
    public = _include_routes(app, parts.settings)
    _handle_errors(app, parts.responder)
    routes = [*public, *admin.router.routes]
    app.edge = lambda inner: _edge(inner, parts, access_log or AccessLog(), routes)
    return app


def _include_routes(app: BffApp, settings: Settings) -> list[BaseRoute]:
    """The routers, and the two OpenAPI documents of their routes; the public routes."""
    routers = [browser.router, api.router, oauth2.router, ops.router]
    if settings.env == "development" and "demo" in settings.apps:
        routers.append(demo.router)
    for router in routers:
        app.include_router(router)
    # The admin API is served on the admin listener only, and documented on its own.
    app.include_router(admin.router, include_in_schema=False)
    public = [route for router in routers for route in router.routes]
    app.openapi = lambda: openapi_document(app, public)  # type: ignore[method-assign]  # FastAPI's hook
    app.admin_openapi = lambda: admin_document(app, [*ops.router.routes, *admin.router.routes])
    return public


def _handle_errors(app: BffApp, responder: Responder) -> None:
    """Every error a route raises, FastAPI's own included, leaves through the `Responder`."""

    @app.exception_handler(BffError)
    async def on_bff_error(request: Request, exc: BffError) -> Response:
        return responder.response(request.scope, exc)

    @app.exception_handler(OAuthError)
    async def on_oauth_error(request: Request, exc: OAuthError) -> Response:
        return responder.oauth(exc)

    @app.exception_handler(HTTPException)
    async def on_http_error(request: Request, exc: HTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
        error = BffError(code, status=exc.status_code, headers=dict(exc.headers or {}))
        return responder.response(request.scope, error)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> Response:
        # Field locations and messages only: never echo the submitted values (they may be codes).
        detail = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg', 'invalid')}"
            for err in exc.errors()[:5]
        )
        return responder.response(request.scope, BffError("invalid_request", detail[:500]))


def _edge(inner: ASGIApp, parts: Parts, access_log: AccessLog, routes: list[BaseRoute]) -> Edge:
    settings = parts.settings
    return Edge(
        inner,
        classify=Classifier(settings, parts.cookies, Redactor(client_secrets(settings))),
        listeners=Listeners(settings),
        plain_http=PlainHttp(settings),
        browser=BrowserPolicy(settings, on_reject=parts.events.rejected),
        max_body=settings.max_body_bytes,
        admission=Admission(settings.max_in_flight, settings.shed_after_ms / 1000),
        responder=parts.responder,
        access_log=access_log,
        metrics=parts.metrics,
        tracing=parts.tracing,
        routes=routes,
    )


def _lifespan(parts: Parts) -> Callable[[FastAPI], AbstractAsyncContextManager[dict[str, Any]]]:
    """The clients, created when the app starts and closed when it stops, and the services
    built on them: what every request's `scope["state"]["services"]` is."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, Any]]:
        settings, metrics = parts.settings, parts.metrics
        redis, close_redis = create_redis(settings)
        timed(redis, metrics.observe_redis)
        flusher = asyncio.create_task(_flush_every_second(metrics))
        timeout = settings.telenor.timeout_seconds
        oauth_http = _http_client(timeout, 50)
        api_http = _api_client(timeout, 200)
        try:
            telenor = Telenor(
                settings.telenor, oauth_http, api_http, max_body=settings.max_upstream_body_bytes
            )
            yield {"services": _services(parts, redis, telenor)}
        finally:
            flusher.cancel()
            metrics.deferred.flush()
            parts.tracing.shutdown()
            await api_http.close()
            await oauth_http.aclose()
            await close_redis()

    return lifespan


def _services(parts: Parts, redis: Redis | RedisCluster, telenor: Telenor) -> Services:
    """Every service a request may use, wired together once per process."""
    settings, clock, events, tracing = parts.settings, parts.clock, parts.events, parts.tracing
    prefix = settings.redis_key_prefix
    sessions = SessionStore(
        redis,
        prefix=prefix,
        cipher=parts.cipher,
        max_seconds=settings.session_max_seconds,
        clock=clock,
        wait=(settings.redis_wait_replicas, settings.redis_wait_timeout_ms),
        on_unreplicated=parts.metrics.unreplicated_writes.inc,
    )
    limiter = RateLimiter(
        redis,
        prefix=prefix,
        limits={
            "login": settings.rate_limit_login_per_minute,
            "login_browser": settings.rate_limit_login_per_browser_per_minute,
            "login_app": settings.rate_limit_login_per_app_per_minute,
            "api": settings.rate_limit_api_per_minute,
        },
        clock=clock,
        on_limit=events.rate_limited,
    )
    session_auth = SessionAuth(
        sessions=sessions,
        telenor=telenor,
        refresh_skew=settings.refresh_skew_seconds,
        refresh_wait=settings.telenor.timeout_seconds + 1.0,
        clock=clock,
        limiter=limiter,
        events=events,
        tracing=tracing,
    )
    codes = CodeStore(redis, prefix=prefix, cipher=parts.cipher, ttl=settings.code_ttl_seconds)
    grant = AuthorizationCodeGrant(codes=codes, sessions=sessions, clock=clock)
    flow = LoginFlow(
        settings=settings,
        states=StateStore(redis, prefix=prefix, ttl=settings.state_ttl_seconds, clock=clock),
        sessions=sessions,
        native=grant,
        telenor=telenor,
        clock=clock,
        limiter=limiter,
        events=events,
        subscribers=parts.subscribers,
        tracing=tracing,
    )
    return Services(
        settings=settings,
        redis=redis,
        cookies=parts.cookies,
        flow=flow,
        auth=session_auth,
        native=AuthorizationServer(settings=settings, flow=flow, grant=grant, auth=session_auth),
        proxy=ApiProxy(
            settings=settings,
            telenor=telenor,
            auth=session_auth,
            metrics=parts.metrics,
            tracing=tracing,
        ),
        clock=clock,
        metrics=parts.metrics,
        responder=parts.responder,
        events=events,
        subscribers=parts.subscribers,
        index=sessions.index,
    )


async def _flush_every_second(metrics: Metrics) -> None:
    """The hot path's samples reach their series (and, with several workers, the shared
    files another worker renders) at most a second late."""
    while True:
        await asyncio.sleep(1.0)
        metrics.deferred.flush()


class BffApp(FastAPI):
    """FastAPI with the BFF's edge (`edge/asgi.py`) outside FastAPI's middleware stack.

    The proxied calls are answered at the edge, so they skip the layers FastAPI puts first
    (exception telemetry, body limit), which do nothing for them: a proxied GET has no body.
    Starlette's `ServerErrorMiddleware` goes: it would answer a bug with plain text and raise
    on, where the edge answers it with a problem, the request id and a redacted traceback.
    """

    edge: Callable[[ASGIApp], ASGIApp] = staticmethod(lambda inner: inner)
    # The admin API's own OpenAPI document (`/admin/openapi.json`, `openapi --admin`).
    admin_openapi: Callable[[], dict[str, Any]]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """An HTTP request goes straight to the edge: FastAPI's and Starlette's own entry
        (telemetry switches, the stack built on first use) has nothing to do for it."""
        stack = self.middleware_stack
        if stack is None or scope["type"] != "http" or self.root_path:
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self
        await stack(scope, receive, send)

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        if isinstance(stack, ServerErrorMiddleware):
            stack = stack.app
        return self.edge(stack)
