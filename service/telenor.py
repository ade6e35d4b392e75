"""The Telenor OAuth and API client: authorize URL, token exchange, refresh, logout, data calls.

The httpx clients are created and closed by the lifespan (app.py) and handed in here.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from urllib.parse import urlencode

import aiohttp
import httpx

from .config import AppConfig, TelenorSettings
from .errors import BffError
from .logs import request_id


@dataclass(frozen=True)
class TokenSet:
    access_token: str
    expires_in: int
    refresh_token: str | None


class TokenError(Exception):
    """The token endpoint refused (RFC 6749 §5.2 `error`), or answered something unusable."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


def classify(exc: BaseException) -> str:
    """`upstream_timeout` or `upstream_unreachable` for a transport failure.

    httpx-aiohttp maps some aiohttp errors loosely (a refused connection can surface as
    ConnectTimeout), so the cause chain decides: a connect-phase failure is "unreachable".
    """
    chain: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and len(chain) < 8:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    unreachable = aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError | httpx.ConnectError
    if any(isinstance(e, unreachable) for e in chain):
        return "upstream_unreachable"
    if any(
        isinstance(e, httpx.ReadTimeout | httpx.PoolTimeout | asyncio.TimeoutError) for e in chain
    ):
        return "upstream_timeout"
    if any(isinstance(e, httpx.ConnectTimeout) for e in chain):
        return "upstream_unreachable"
    return "upstream_timeout" if isinstance(exc, httpx.TimeoutException) else "upstream_unreachable"


def _parse_tokens(response: httpx.Response) -> TokenSet:
    try:
        body = response.json()
    except ValueError as exc:
        raise TokenError("invalid_response") from exc
    if not isinstance(body, dict):
        raise TokenError("invalid_response")
    if response.status_code != 200:
        error = body.get("error")
        raise TokenError(
            error if isinstance(error, str) and error.isascii() else "invalid_response"
        )
    token = body.get("access_token")
    expires_in = body.get("expires_in")
    if not isinstance(token, str) or not token:
        raise TokenError("invalid_response")
    # Telenor says ~3599 s today; never hard-code it. A missing lifetime gets a cautious hour.
    lifetime = int(expires_in) if isinstance(expires_in, int | float) and expires_in > 0 else 3600
    refresh = body.get("refresh_token")
    return TokenSet(token, lifetime, refresh if isinstance(refresh, str) and refresh else None)


def _with_request_id(headers: dict[str, str]) -> dict[str, str]:
    """The current request's id travels upstream so Telenor's logs and ours line up."""
    rid = request_id.get()
    if rid:
        headers["X-Request-ID"] = rid
    return headers


class Telenor:
    """Talks to Telenor (or the sandbox) for one BFF; shared by every app."""

    def __init__(
        self, settings: TelenorSettings, oauth: httpx.AsyncClient, api: aiohttp.ClientSession
    ) -> None:
        self._settings = settings
        self._oauth = oauth
        self.api = api
        self.api_base = settings.api

    def authorize_url(
        self,
        app: AppConfig,
        state: str,
        redirect_uri: str,
        challenge: str | None,
    ) -> str:
        params = {"client_id": app.client_id, "state": state}
        if app.send_response_type:
            params["response_type"] = "code"
        if app.send_redirect_uri:
            params["redirect_uri"] = redirect_uri
        if app.scope:
            params["scope"] = app.scope
        if challenge:
            params["code_challenge"] = challenge
            params["code_challenge_method"] = "S256"
        return f"{self._settings.authorize}?{urlencode(params)}"

    async def _token_request(self, app: AppConfig, form: dict[str, str]) -> TokenSet:
        try:
            response = await self._oauth.post(
                self._settings.token,
                data=form,
                auth=(app.client_id, app.client_secret.get_secret_value()),
                headers=_with_request_id({"Accept": "application/json"}),
            )
        except httpx.HTTPError as exc:
            raise BffError(classify(exc)) from None
        if response.status_code >= 500 or response.status_code == 429:
            raise BffError("upstream_error", status=502)
        return _parse_tokens(response)

    async def exchange_code(
        self, app: AppConfig, code: str, redirect_uri: str, verifier: str | None
    ) -> TokenSet:
        """Step 4 of Telenor's flow: the one-time code for an access token (HTTP Basic)."""
        form = {"grant_type": "authorization_code", "code": code}
        if app.send_redirect_uri:
            form["redirect_uri"] = redirect_uri
        if verifier:
            form["code_verifier"] = verifier
        return await self._token_request(app, form)

    async def refresh(self, app: AppConfig, refresh_token: str) -> TokenSet:
        return await self._token_request(
            app, {"grant_type": "refresh_token", "refresh_token": refresh_token}
        )

    async def logout(self, access_token: str) -> None:
        """Best effort: a slow or failing Telenor never blocks the local logout."""
        with contextlib.suppress(httpx.HTTPError):
            await self._oauth.get(
                self._settings.logout,
                headers=_with_request_id({"Authorization": f"Bearer {access_token}"}),
                timeout=self._settings.logout_timeout_seconds,
            )
