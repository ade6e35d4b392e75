"""A faithful simulator of Telenor's line-authenticated OAuth and data APIs (DESIGN §8).

Everything is in memory and per process: it is a stand-in for development, demos and tests.
Where Telenor is undocumented it follows RFC 6749 / RFC 7636.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import random
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.types import ASGIApp, Receive, Scope, Send

from ..config import Settings
from ..stores import Clock
from .subscribers import SUBSCRIBERS, Subscriber

DENIED = "The resource owner denied the request"
ENDPOINTS = ("authorize", "token", "user-info", "device-info", "logout")


@dataclass
class Client:
    client_id: str
    secret: str
    callbacks: list[str]
    name: str


@dataclass
class Attempt:
    """One visit to /oauth/v2/authorize, on its way through identification and consent."""

    id: str
    client: Client
    redirect_uri: str  # where the answer goes
    sent_redirect_uri: str | None
    state: str | None
    scope: str | None
    challenge: str | None
    created_at: float
    msisdn: str | None = None
    status: str = "pending"  # pending -> identified -> done | declined


@dataclass
class Grant:
    client_id: str
    redirect_uri: str | None
    challenge: str | None
    msisdn: str
    created_at: float
    used: bool = False
    tokens: list[str] = field(default_factory=list)


@dataclass
class Token:
    client_id: str
    msisdn: str
    expires_at: float
    kind: str = "access"
    revoked: bool = False


@dataclass
class ForcedResponse:
    endpoint: str
    status: int
    remaining: int | None = None
    fraction: float | None = None


@dataclass
class LargeBody:
    """An answer of `size` bytes (with Content-Length, or chunked) instead of the real one."""

    endpoint: str
    size: int
    chunked: bool = False


@dataclass
class Faults:
    latency: dict[str, float] = field(default_factory=dict)
    responses: list[ForcedResponse] = field(default_factory=list)
    hang: set[str] = field(default_factory=set)
    large: list[LargeBody] = field(default_factory=list)
    # Extra response headers on an endpoint's normal answers (e.g. a Cache-Control).
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    # Members replacing those of every successful token response (odd values Telenor might send).
    token_fields: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "latency": self.latency,
            "responses": [r.__dict__ for r in self.responses],
            "hang": sorted(self.hang),
            "large": [b.__dict__ for b in self.large],
            "headers": self.headers,
            "token_fields": self.token_fields,
        }


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]


def _language(request: Request) -> str:
    lang = request.query_params.get("lang")
    if lang in ("nb", "en"):
        return lang
    accept = request.headers.get("accept-language", "").lower()
    first = accept.split(",")[0].strip()
    return "en" if first.startswith("en") else "nb"


class Sandbox:
    """The simulator's state and its ASGI app (`Sandbox.app`)."""

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
        self.app: ASGIApp = _Recorder(self._build(), self.requests)

    # -- helpers -------------------------------------------------------------------------

    def calls(self, endpoint_path: str) -> list[Recorded]:
        """Requests the sandbox received on one path (tests assert on these)."""
        return [r for r in self.requests if r.path == endpoint_path]

    def reset(self) -> None:
        self.faults = Faults()
        self.requests.clear()
        self.token_lifetime = self.settings.token_lifetime_seconds
        self.refresh_tokens = self.settings.refresh_tokens

    async def _fault(self, endpoint: str) -> Response | None:
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
                return _large_body(large)
        return None

    def _token_body(self, body: dict[str, Any]) -> Response:
        """A successful token response, with any injected odd members (NaN and Infinity are
        written as JavaScript literals, as a careless encoder would)."""
        text = json.dumps({**body, **self.faults.token_fields})  # allow_nan: on purpose
        return Response(text, media_type="application/json", headers={"Cache-Control": "no-store"})

    def _page(self, request: Request, template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        lang = _language(request)
        html = self._pages.get_template(template).render(lang=lang, en=lang == "en", **ctx)
        return HTMLResponse(
            html,
            status_code=status,
            headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
        )

    def _answer(self, attempt: Attempt, **params: str) -> RedirectResponse:
        if attempt.state is not None:
            params["state"] = attempt.state
        attempt.status = "done"
        sep = "&" if "?" in attempt.redirect_uri else "?"
        return RedirectResponse(f"{attempt.redirect_uri}{sep}{urlencode(params)}", status_code=302)

    def _issue(self, client_id: str, msisdn: str, kind: str = "access") -> str:
        value = secrets.token_urlsafe(32)
        lifetime = self.token_lifetime if kind == "access" else 30 * 86400
        self.tokens[value] = Token(client_id, msisdn, self.clock() + lifetime, kind)
        return value

    def _bearer(self, request: Request) -> Token | JSONResponse:
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("bearer "):
            return _api_error(40102, "Missing access token")
        token = self.tokens.get(header[7:].strip())
        if token is None or token.revoked or token.kind != "access":
            return _api_error(40105, "Invalid access token")
        if self.clock() >= token.expires_at:
            return _api_error(40106, "Access token expired")
        return token

    def _client_auth(self, request: Request) -> Client | None:
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

    # -- the app ---------------------------------------------------------------------------

    def _build(self) -> FastAPI:
        app = FastAPI(title="Telenor sandbox", docs_url=None, redoc_url=None, openapi_url=None)
        sandbox = self

        @app.get("/oauth/v2/authorize")
        async def authorize(request: Request) -> Response:
            if (fault := await sandbox._fault("authorize")) is not None:
                return fault
            q = request.query_params
            client = sandbox.clients.get(q.get("client_id", ""))
            if client is None:
                return sandbox._page(request, "error.html", 400, reason="unknown_client")
            redirect_uri = q.get("redirect_uri")
            if redirect_uri is not None and redirect_uri not in client.callbacks:
                return sandbox._page(request, "error.html", 400, reason="redirect_uri")
            if not client.callbacks:
                return sandbox._page(request, "error.html", 400, reason="redirect_uri")
            if q.get("response_type", "code") != "code":
                return sandbox._page(request, "error.html", 400, reason="response_type")
            challenge = q.get("code_challenge")
            if challenge and q.get("code_challenge_method", "plain") != "S256":
                return sandbox._page(request, "error.html", 400, reason="pkce")
            attempt = Attempt(
                id=secrets.token_urlsafe(16),
                client=client,
                redirect_uri=redirect_uri or client.callbacks[0],
                sent_redirect_uri=redirect_uri,
                state=q.get("state"),
                scope=q.get("scope"),
                challenge=challenge,
                created_at=sandbox.clock(),
            )
            sandbox.attempts[attempt.id] = attempt
            msisdn = request.headers.get("x-sandbox-msisdn")
            # Network authentication: the operator enriches plain-http requests only.
            if request.url.scheme == "http" and msisdn in SUBSCRIBERS:
                attempt.msisdn = msisdn
                attempt.status = "identified"
                return RedirectResponse(f"/sandbox/consent/{attempt.id}", status_code=302)
            return RedirectResponse(f"/sandbox/ussd/{attempt.id}", status_code=302)

        @app.get("/sandbox/ussd/{attempt_id}")
        async def ussd_page(attempt_id: str, request: Request) -> Response:
            attempt = sandbox.attempts.get(attempt_id)
            if attempt is None or attempt.status == "done":
                return sandbox._page(request, "error.html", 404, reason="attempt")
            if attempt.status == "identified":
                return RedirectResponse(f"/sandbox/consent/{attempt.id}", status_code=303)
            if attempt.status == "declined":
                return sandbox._answer(attempt, error="access_denied", error_description=DENIED)
            if sandbox.clock() - attempt.created_at > sandbox.settings.ussd_timeout_seconds:
                return sandbox._answer(
                    attempt,
                    error="temporarily_unavailable",
                    error_description="The user did not answer the USSD message in time",
                )
            return sandbox._page(
                request, "ussd.html", attempt=attempt, subscribers=SUBSCRIBERS.values()
            )

        @app.post("/sandbox/ussd/{attempt_id}")
        async def ussd_answer(attempt_id: str, request: Request) -> Response:
            attempt = sandbox.attempts.get(attempt_id)
            if attempt is None or attempt.status != "pending":
                return JSONResponse({"error": "no USSD session waiting"}, status_code=404)
            is_form = request.headers.get("content-type", "").startswith(
                ("application/x-www-form-urlencoded", "multipart/form-data")
            )
            data: dict[str, Any]
            if is_form:
                data = dict(await request.form())
            else:
                try:
                    data = await request.json()
                except ValueError:
                    data = {}
            answer = str(data.get("answer", ""))
            msisdn = str(data.get("msisdn") or next(iter(SUBSCRIBERS)))
            if answer not in ("1", "2") or msisdn not in SUBSCRIBERS:
                return JSONResponse(
                    {"error": "answer must be 1 or 2; msisdn a test subscriber"}, status_code=400
                )
            attempt.msisdn = msisdn
            attempt.status = "identified" if answer == "1" else "declined"
            if is_form:
                return RedirectResponse(f"/sandbox/ussd/{attempt.id}", status_code=303)
            return JSONResponse({"status": attempt.status})

        @app.get("/sandbox/consent/{attempt_id}")
        async def consent_page(attempt_id: str, request: Request) -> Response:
            attempt = sandbox.attempts.get(attempt_id)
            if attempt is None or attempt.status != "identified" or attempt.msisdn is None:
                return sandbox._page(request, "error.html", 404, reason="attempt")
            return sandbox._page(
                request, "consent.html", attempt=attempt, subscriber=SUBSCRIBERS[attempt.msisdn]
            )

        @app.post("/sandbox/consent/{attempt_id}")
        async def consent(attempt_id: str, request: Request) -> Response:
            attempt = sandbox.attempts.get(attempt_id)
            if attempt is None or attempt.status != "identified" or attempt.msisdn is None:
                return sandbox._page(request, "error.html", 404, reason="attempt")
            decision = (await request.form()).get("decision")
            if decision == "deny":
                return sandbox._answer(attempt, error="access_denied", error_description=DENIED)
            if decision != "approve":
                return sandbox._page(request, "error.html", 400, reason="decision")
            code = secrets.token_urlsafe(24)
            sandbox.grants[code] = Grant(
                attempt.client.client_id,
                attempt.sent_redirect_uri,
                attempt.challenge,
                attempt.msisdn,
                sandbox.clock(),
            )
            return sandbox._answer(attempt, code=code)

        @app.post("/oauth/v2/token")
        async def token(request: Request) -> Response:
            if (fault := await sandbox._fault("token")) is not None:
                return fault
            client = sandbox._client_auth(request)
            if client is None:
                return JSONResponse(
                    {"error": "invalid_client"},
                    status_code=401,
                    headers={"WWW-Authenticate": 'Basic realm="telenor"'},
                )
            form = await request.form()
            grant_type = form.get("grant_type")
            if grant_type == "refresh_token" and sandbox.refresh_tokens:
                return sandbox._refresh(client, str(form.get("refresh_token", "")))
            if grant_type != "authorization_code":
                return _oauth_error("unsupported_grant_type")
            code = str(form.get("code", ""))
            grant = sandbox.grants.get(code)
            if grant is None or grant.client_id != client.client_id:
                return _oauth_error("invalid_grant")
            if grant.used:
                # RFC 6749 §4.1.2: a replayed code revokes what it issued.
                for value in grant.tokens:
                    sandbox.tokens[value].revoked = True
                return _oauth_error("invalid_grant")
            grant.used = True
            if sandbox.clock() - grant.created_at > sandbox.settings.code_ttl_seconds:
                return _oauth_error("invalid_grant")
            if grant.redirect_uri is not None and form.get("redirect_uri") != grant.redirect_uri:
                return _oauth_error("invalid_grant")
            if grant.challenge is not None:
                verifier = str(form.get("code_verifier", ""))
                digest = hashlib.sha256(verifier.encode()).digest()
                computed = base64.urlsafe_b64encode(digest).decode().rstrip("=")
                if not verifier or not hmac.compare_digest(computed, grant.challenge):
                    return _oauth_error("invalid_grant")
            access = sandbox._issue(client.client_id, grant.msisdn)
            grant.tokens.append(access)
            body: dict[str, Any] = {"access_token": access, "expires_in": sandbox.token_lifetime}
            if sandbox.refresh_tokens:
                refresh = sandbox._issue(client.client_id, grant.msisdn, "refresh")
                grant.tokens.append(refresh)
                body.update(refresh_token=refresh, token_type="Bearer")  # noqa: S106  (a type name)
            return sandbox._token_body(body)

        @app.get("/user-info/v1/users")
        async def user_info(request: Request) -> Response:
            if (fault := await sandbox._fault("user-info")) is not None:
                return fault
            token = sandbox._bearer(request)
            if isinstance(token, JSONResponse):
                return token
            return JSONResponse(
                SUBSCRIBERS[token.msisdn].user, headers=sandbox.faults.headers.get("user-info")
            )

        @app.get("/mobile-device-info/v1/device")
        async def device_info(request: Request) -> Response:
            if (fault := await sandbox._fault("device-info")) is not None:
                return fault
            token = sandbox._bearer(request)
            if isinstance(token, JSONResponse):
                return token
            return JSONResponse(
                SUBSCRIBERS[token.msisdn].device, headers=sandbox.faults.headers.get("device-info")
            )

        @app.get("/oauth/v2/logout")
        async def logout(request: Request) -> Response:
            if (fault := await sandbox._fault("logout")) is not None:
                return fault
            token = sandbox._bearer(request)
            if isinstance(token, JSONResponse):
                return token
            token.revoked = True
            return PlainTextResponse("OK!")

        @app.get("/sandbox/faults")
        async def get_faults() -> JSONResponse:
            return JSONResponse(sandbox.faults.as_json())

        @app.put("/sandbox/faults")
        async def set_faults(request: Request) -> JSONResponse:
            """Replace the fault set: {latency: {endpoint: s}, responses: [...], hang: [...]}."""
            try:
                body = await request.json()
                faults = Faults(
                    latency={str(k): float(v) for k, v in body.get("latency", {}).items()},
                    responses=[
                        ForcedResponse(
                            str(r["endpoint"]),
                            int(r["status"]),
                            r.get("count"),
                            r.get("fraction"),
                        )
                        for r in body.get("responses", [])
                    ],
                    hang={str(e) for e in body.get("hang", [])},
                    large=[
                        LargeBody(str(b["endpoint"]), int(b["size"]), bool(b.get("chunked")))
                        for b in body.get("large", [])
                    ],
                    headers={
                        str(e): {str(k): str(v) for k, v in h.items()}
                        for e, h in body.get("headers", {}).items()
                    },
                    token_fields=dict(body.get("token_fields", {})),
                )
            except (ValueError, KeyError, TypeError, AttributeError):
                return JSONResponse({"error": "bad fault description"}, status_code=400)
            unknown = (
                set(faults.latency)
                | {r.endpoint for r in faults.responses}
                | faults.hang
                | {b.endpoint for b in faults.large}
                | set(faults.headers)
            ) - {*ENDPOINTS, "*"}
            if unknown:
                return JSONResponse({"error": f"unknown endpoints {sorted(unknown)}"}, 400)
            sandbox.faults = faults
            return JSONResponse(faults.as_json())

        @app.delete("/sandbox/faults")
        async def clear_faults() -> JSONResponse:
            sandbox.faults = Faults()
            return JSONResponse(sandbox.faults.as_json())

        @app.get("/sandbox/subscribers")
        async def subscribers() -> JSONResponse:
            return JSONResponse([s.user for s in SUBSCRIBERS.values()])

        @app.get("/")
        async def index(request: Request) -> Response:
            return sandbox._page(request, "index.html", subscribers=SUBSCRIBERS.values())

        return app

    def _refresh(self, client: Client, value: str) -> Response:
        refresh = self.tokens.get(value)
        if (
            refresh is None
            or refresh.kind != "refresh"
            or refresh.revoked
            or refresh.client_id != client.client_id
        ):
            return _oauth_error("invalid_grant")
        refresh.revoked = True  # rotation: each refresh token works once
        access = self._issue(client.client_id, refresh.msisdn)
        new_refresh = self._issue(client.client_id, refresh.msisdn, "refresh")
        return self._token_body(
            {
                "access_token": access,
                "expires_in": self.token_lifetime,
                "refresh_token": new_refresh,
                "token_type": "Bearer",
            }
        )


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


def _large_body(large: LargeBody) -> Response:
    """`large.size` bytes of JSON-looking filler, streamed in 64 KiB pieces."""
    piece = b" " * 65536

    async def chunks() -> AsyncIterator[bytes]:
        left = large.size
        while left > 0:
            yield piece[: min(left, len(piece))]
            left -= len(piece)

    headers = {} if large.chunked else {"Content-Length": str(large.size)}
    return StreamingResponse(chunks(), media_type="application/json", headers=headers)


def _oauth_error(error: str) -> JSONResponse:
    return JSONResponse({"error": error}, status_code=400, headers={"Cache-Control": "no-store"})


def _api_error(code: int, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=401)


__all__ = ["Sandbox", "Subscriber"]
