"""A faithful simulator of Telenor's line-authenticated OAuth and data APIs, as an ASGI app.

Where Telenor is undocumented it follows RFC 6749 / RFC 7636. The state is `state.py`'s, the
routes `routes.py`'s, the data and answers `model.py`'s; this module builds the app on them.
"""

from __future__ import annotations

import time
from collections import deque

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from ..config import Settings
from ..kit.clock import Clock
from .model import ForcedResponse, LargeBody, Recorded
from .routes import router
from .state import SandboxState
from .subscribers import Subscriber


class Sandbox(SandboxState):
    """The simulator: its state, and its ASGI app (`Sandbox.app`)."""

    def __init__(self, settings: Settings, *, clock: Clock = time.time) -> None:
        super().__init__(settings, clock=clock)
        app = FastAPI(title="Telenor sandbox", docs_url=None, redoc_url=None, openapi_url=None)
        app.state.sandbox = self
        app.include_router(router)
        self.app: ASGIApp = _Recorder(app, self.requests)


class _Recorder:
    """Pure ASGI: remember each request's method, path and headers for tests to inspect."""

    def __init__(self, app: ASGIApp, log: deque[Recorded]) -> None:
        self.app = app
        self.log = log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            self.log.append(Recorded(scope["method"], scope["path"], headers))
        await self.app(scope, receive, send)


__all__ = ["ForcedResponse", "LargeBody", "Sandbox", "Subscriber"]
