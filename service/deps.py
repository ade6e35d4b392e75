"""What routes receive: the services built by the lifespan (STYLE: `Annotated` dependencies)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from redis.asyncio import Redis, RedisCluster
from starlette.requests import Request

from .config import Settings
from .cookies import Cookies
from .flow import LoginFlow
from .metrics import Metrics
from .pages import Pages
from .proxy import ApiProxy
from .sessions import SessionAuth
from .stores import Clock


@dataclass(frozen=True)
class Services:
    """Everything a request may use; created once per process by the lifespan."""

    settings: Settings
    redis: Redis | RedisCluster
    cookies: Cookies
    flow: LoginFlow
    auth: SessionAuth
    proxy: ApiProxy
    pages: Pages
    clock: Clock
    metrics: Metrics


async def get_services(request: Request) -> Services:
    """Async on purpose: FastAPI runs a plain `def` dependency in its thread pool, which cost
    the proxied call five-sixths of its throughput (bench/README.md)."""
    services: Services = request.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
