"""What routes receive: the services built by the lifespan, the request's `RequestScope`, and
the configured app its path names (`Annotated` dependencies)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from redis.asyncio import Redis, RedisCluster
from starlette.requests import Request

from ..auth.cookies import Cookies
from ..auth.flow import LoginFlow
from ..auth.native import AuthorizationServer
from ..auth.sessions import SessionAuth
from ..config import AppConfig, Settings
from ..contract.scope import SCOPE_KEY, RequestScope
from ..edge.proxy import ApiProxy
from ..edge.respond import Responder
from ..kit.clock import Clock
from ..kit.errors import BffError
from ..observe.events import Events
from ..observe.metrics import Metrics
from ..store.session_index import SessionIndex, SubscriberHash


@dataclass(frozen=True)
class Services:
    """Everything a request may use; created once per process by the lifespan."""

    settings: Settings
    redis: Redis | RedisCluster
    cookies: Cookies
    flow: LoginFlow
    auth: SessionAuth
    native: AuthorizationServer
    proxy: ApiProxy
    clock: Clock
    metrics: Metrics
    responder: Responder
    events: Events
    subscribers: SubscriberHash
    index: SessionIndex


async def get_services(request: Request) -> Services:
    """Async on purpose: FastAPI runs a plain `def` dependency in its thread pool, which cost
    the proxied call five-sixths of its throughput (bench/README.md)."""
    services: Services = request.state.services
    return services


async def get_request(request: Request) -> RequestScope:
    """The facts the edge worked out for this request."""
    req: RequestScope = request.scope[SCOPE_KEY]
    return req


ServicesDep = Annotated[Services, Depends(get_services)]
RequestDep = Annotated[RequestScope, Depends(get_request)]


@dataclass(frozen=True)
class App:
    """The configured app a route's `{app}` names."""

    id: str
    config: AppConfig


async def get_app(app: str, services: ServicesDep) -> App:
    """The app of the path, or `unknown_app` (a page on the browser flow, else a problem)."""
    config = services.settings.apps.get(app)
    if config is None:
        raise BffError("unknown_app", f"No app called {app[:40]!r} is configured.")
    return App(app, config)


AppDep = Annotated[App, Depends(get_app)]
