"""The Telenor sandbox's state and its answers: clients, login attempts, grants, tokens, faults,
the pages it renders, and what its endpoints answer in Telenor's shapes. In memory and per
process: a stand-in for development, demos and tests. The routes (`routes.py`) act on it; the
app (`app.py`) is built on it."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import random
import secrets
import time
from collections import deque
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from ..config import Settings
from ..kit.clock import Clock
from .model import (
    Attempt,
    Client,
    Faults,
    Grant,
    Recorded,
    Token,
    api_error,
    large_body,
    oauth_error,
)


def _language(request: Request) -> str:
    lang = request.query_params.get("lang")
    if lang in ("nb", "en"):
        return lang
    accept = request.headers.get("accept-language", "").lower()
    first = accept.split(",")[0].strip()
    return "en" if first.startswith("en") else "nb"


class SandboxState:
    """The simulator's state: what its routes read and change."""

    def __init__(self, settings: Settings, *, clock: Clock = time.time) -> None:
        self.settings = settings.sandbox
        self.clock = clock
        self.clients: dict[str, Client] = {}
        for app_id, app in settings.apps.items():
            self.clients[app.client_id] = Client(
                app.client_id,
                app.client_secret.get_secret_value(),
                [settings.callback_url(app_id)],
                app.display_name or app_id,
            )
        for name, extra in self.settings.clients.items():
            self.clients[extra.client_id] = Client(
                extra.client_id,
                extra.client_secret.get_secret_value(),
                extra.callback_urls,
                extra.display_name or name,
            )
        self.attempts: dict[str, Attempt] = {}
        self.grants: dict[str, Grant] = {}
        self.tokens: dict[str, Token] = {}
        self.faults = Faults()
        self.requests: deque[Recorded] = deque(maxlen=2000)
        self.token_lifetime = self.settings.token_lifetime_seconds
        self.refresh_tokens = self.settings.refresh_tokens
        self._pages = Environment(
            loader=FileSystemLoader(Path(__file__).parent / "templates"),
            autoescape=select_autoescape(default=True),
        )

    # -- helpers -------------------------------------------------------------------------

    def calls(self, endpoint_path: str) -> list[Recorded]:
        """Requests the sandbox received on one path (tests assert on these)."""
        return [r for r in self.requests if r.path == endpoint_path]

    def awaiting_consent(self, attempt_id: str) -> Attempt | None:
        """The attempt whose subscriber is identified and has not answered the consent yet."""
        attempt = self.attempts.get(attempt_id)
        if attempt is None or attempt.status != "identified" or attempt.msisdn is None:
            return None
        return attempt

    def reset(self) -> None:
        self.faults = Faults()
        self.requests.clear()
        self.token_lifetime = self.settings.token_lifetime_seconds
        self.refresh_tokens = self.settings.refresh_tokens

    async def fault(self, endpoint: str) -> Response | None:
        delay = self.faults.latency.get(endpoint) or self.faults.latency.get("*")
        if delay:
            await asyncio.sleep(delay)
        if endpoint in self.faults.hang or "*" in self.faults.hang:
            await asyncio.sleep(self.settings.hang_seconds)
        for forced in self.faults.responses:
            if forced.endpoint not in (endpoint, "*"):
                continue
            if forced.remaining is not None:
                if forced.remaining <= 0:
                    continue
                forced.remaining -= 1
            elif forced.fraction is not None and random.random() >= forced.fraction:  # noqa: S311
                continue
            if forced.status == 429:
                return JSONResponse(
                    {"code": 42901, "message": "Rate limit exceeded"},
                    status_code=429,
                    headers={"Retry-After": "7"},
                )
            return JSONResponse(
                {"code": forced.status * 100 + 1, "message": "Injected fault"},
                status_code=forced.status,
            )
        for large in self.faults.large:
            if large.endpoint in (endpoint, "*"):
                return large_body(large)
        return None

    def token_body(self, body: dict[str, Any]) -> Response:
        """A successful token response, with any injected odd members (NaN and Infinity are
        written as JavaScript literals, as a careless encoder would)."""
        text = self.faults.token_body
        if text is None:
            text = json.dumps({**body, **self.faults.token_fields})  # allow_nan: on purpose
        return Response(text, media_type="application/json", headers={"Cache-Control": "no-store"})

    def page(self, request: Request, template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        lang = _language(request)
        html = self._pages.get_template(template).render(lang=lang, en=lang == "en", **ctx)
        return HTMLResponse(
            html,
            status_code=status,
            headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
        )

    def answer(self, attempt: Attempt, **params: str) -> RedirectResponse:
        if attempt.state is not None:
            params["state"] = attempt.state
        attempt.status = "done"
        sep = "&" if "?" in attempt.redirect_uri else "?"
        return RedirectResponse(f"{attempt.redirect_uri}{sep}{urlencode(params)}", status_code=302)

    def issue(self, client_id: str, msisdn: str, kind: str = "access") -> str:
        value = secrets.token_urlsafe(32)
        lifetime = self.token_lifetime if kind == "access" else 30 * 86400
        self.tokens[value] = Token(client_id, msisdn, self.clock() + lifetime, kind)
        return value

    def bearer(self, request: Request) -> Token | JSONResponse:
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("bearer "):
            return api_error(40102, "Missing access token")
        token = self.tokens.get(header[7:].strip())
        if token is None or token.revoked or token.kind != "access":
            return api_error(40105, "Invalid access token")
        if self.clock() >= token.expires_at:
            return api_error(40106, "Access token expired")
        return token

    def client_auth(self, request: Request) -> Client | None:
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("basic "):
            return None
        try:
            client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        client = self.clients.get(client_id)
        if client is None or not hmac.compare_digest(client.secret.encode(), secret.encode()):
            return None
        return client

    def refresh(self, client: Client, value: str) -> Response:
        refresh = self.tokens.get(value)
        if (
            refresh is None
            or refresh.kind != "refresh"
            or refresh.revoked
            or refresh.client_id != client.client_id
        ):
            return oauth_error("invalid_grant")
        refresh.revoked = True  # rotation: each refresh token works once
        access = self.issue(client.client_id, refresh.msisdn)
        new_refresh = self.issue(client.client_id, refresh.msisdn, "refresh")
        return self.token_body(
            {
                "access_token": access,
                "expires_in": self.token_lifetime,
                "refresh_token": new_refresh,
                "token_type": "Bearer",
            }
        )
