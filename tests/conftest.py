"""Shared fixtures: a real Redis, the real sandbox on a loopback port, the real BFF app."""

from __future__ import annotations

import io
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from service.app import create_app
from service.config import Settings
from service.observe.logs.formats import JsonFormatter
from service.sandbox import Sandbox
from tests.support.browser import new_browser, running
from tests.support.config import make_settings
from tests.support.servers import Clock, EmbeddedRedis, ThreadedServer, shared_redis


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url, server = shared_redis()
    yield url
    if server is not None:
        server.close()


@pytest.fixture(scope="session")
def sandbox_clock() -> Clock:
    return Clock()


@pytest.fixture(scope="session")
def sandbox_server(redis_url: str, sandbox_clock: Clock) -> Iterator[tuple[Sandbox, str]]:
    sandbox = Sandbox(make_settings(redis_url, "unused:", "http://unused"), clock=sandbox_clock)
    server = ThreadedServer(sandbox.app).start()
    yield sandbox, server.url
    server.stop()


@pytest.fixture
def sandbox(sandbox_server: tuple[Sandbox, str], sandbox_clock: Clock) -> Iterator[Sandbox]:
    """The session's sandbox with faults, request log, knobs and clock reset for this test."""
    box, _ = sandbox_server
    box.reset()
    sandbox_clock.offset = 0
    yield box
    box.reset()


@pytest.fixture
def sandbox_url(sandbox_server: tuple[Sandbox, str]) -> str:
    return sandbox_server[1]


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def prefix(redis: Redis) -> AsyncIterator[str]:
    """A key prefix of this test's own; only its keys are removed afterwards (no FLUSHALL)."""
    value = f"test:{uuid.uuid4().hex[:12]}:"
    yield value
    keys = [k async for k in redis.scan_iter(match=f"{value}*", count=500)]
    if keys:
        await redis.delete(*keys)


@dataclass
class Bff:
    """One running BFF for a test, plus what tests inspect."""

    asgi: Any
    settings: Settings
    clock: Clock
    sandbox: Sandbox

    def browser(self, client_ip: str = "127.0.0.1") -> httpx.AsyncClient:
        return new_browser(self.asgi, client_ip)


BffFactory = Callable[..., AbstractAsyncContextManager[Bff]]


@pytest.fixture
def make_bff(redis_url: str, prefix: str, sandbox: Sandbox, sandbox_url: str) -> BffFactory:
    """Build a BFF with setting overrides: `async with make_bff(apps=...) as bff:`."""
    # Every BFF of a test starts at the beginning of one rate-limit window (fixed minutes):
    # a test's counts never straddle two windows by chance, and its BFFs share the window.
    window_start = 60 - time.time() % 60 + 0.001

    @asynccontextmanager
    async def factory(**overrides: Any) -> AsyncIterator[Bff]:
        clock = Clock()
        clock.offset = window_start
        url = overrides.pop("redis_url", redis_url)
        settings = make_settings(url, prefix, sandbox_url, **overrides)
        app = create_app(settings, clock=clock)
        async with running(app) as asgi:
            yield Bff(asgi, settings, clock, sandbox)

    return factory


@pytest.fixture
async def bff(make_bff: BffFactory) -> AsyncIterator[Bff]:
    async with make_bff() as running_bff:
        yield running_bff


@pytest.fixture
async def browser(bff: Bff) -> AsyncIterator[httpx.AsyncClient]:
    async with bff.browser() as client:
        yield client


@pytest.fixture
def private_redis() -> Iterator[EmbeddedRedis]:
    """A Redis of this test's own that it may stop and start again (outage tests)."""
    server = EmbeddedRedis().start()
    yield server
    server.close()


@pytest.fixture
def log_output() -> Iterator[Callable[[], str]]:
    """Everything every logger writes at DEBUG, through the service's own JSON formatter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream.getvalue
    root.removeHandler(handler)
    root.setLevel(level)
