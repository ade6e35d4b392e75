"""The Telenor OAuth and API client: authorize URL, token exchange, refresh, logout, data calls.

The httpx clients are created and closed by the lifespan (app.py) and handed in here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlencode

import aiohttp
import httpx

from .config import AppConfig, TelenorSettings
from .kit.errors import BffError
from .observe.logs import request_id
from .observe.tracing import inject


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


# What a token response may carry. Telenor says ~3599 s today; never hard-code it.
DEFAULT_LIFETIME = 3600  # when `expires_in` is absent: a cautious hour
MAX_LIFETIME = 30 * 86400
MAX_TOKEN_CHARS = 4096
_VISIBLE_ASCII = re.compile(r"[\x21-\x7e]+")  # RFC 6750's b64token and more: no space, no CR/LF
_SECONDS = re.compile(r"[ \t]*[0-9]{1,9}[ \t]*")


def _lifetime(value: object) -> int:
    """`expires_in` as whole seconds: a number or a numeric string (some of Telenor's clients
    decode it as one), finite and within bounds; anything else makes the response unusable."""
    if value is None:
        return DEFAULT_LIFETIME
    if isinstance(value, bool):  # (a bool is an int to Python)
        raise TokenError("invalid_response")
    if isinstance(value, str) and _SECONDS.fullmatch(value):
        value = int(value)
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise TokenError("invalid_response")
    if not 1 <= value <= MAX_LIFETIME:
        raise TokenError("invalid_response")
    return int(value)


def _token(value: object, *, required: bool) -> str | None:
    """A token we will put in a header: visible ASCII of bounded length, or None if absent."""
    if value is None and not required:
        return None
    if (
        not isinstance(value, str)
        or len(value) > MAX_TOKEN_CHARS
        or not _VISIBLE_ASCII.fullmatch(value)
    ):
        raise TokenError("invalid_response")
    return value


def _parse_tokens(status: int, content: bytes) -> TokenSet:
    try:
        body = json.loads(content)
    except (ValueError, RecursionError) as exc:  # (deep nesting fits in a small body)
        raise TokenError("invalid_response") from exc
    if not isinstance(body, dict):
        raise TokenError("invalid_response")
    if status != 200:
        error = body.get("error")
        raise TokenError(
            error
            if isinstance(error, str) and len(error) <= 64 and _VISIBLE_ASCII.fullmatch(error)
            else "invalid_response"
        )
    token = _token(body.get("access_token"), required=True)
    assert token is not None
    refresh = body.get("refresh_token") or None  # "" means none
    return TokenSet(token, _lifetime(body.get("expires_in")), _token(refresh, required=False))


async def read_capped(chunks: AsyncIterator[bytes], cap: int) -> bytes:
    """The whole body, or `BodyTooLarge` as soon as it passes `cap` bytes."""
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > cap:
            raise BodyTooLarge(cap)
    return bytes(body)


class BodyTooLarge(Exception):
    """An upstream answer longer than `BFF_MAX_UPSTREAM_BODY_BYTES`."""


def _with_request_id(headers: dict[str, str]) -> dict[str, str]:
    """The current request's id travels upstream so Telenor's logs and ours line up."""
    rid = request_id.get()
    if rid:
        headers["X-Request-ID"] = rid
    return inject(headers)  # (and the trace, when there is one: W3C traceparent)


class Telenor:
    """Talks to Telenor (or the sandbox) for one BFF; shared by every app."""

    def __init__(
        self,
        settings: TelenorSettings,
        oauth: httpx.AsyncClient,
        api: aiohttp.ClientSession,
        *,
        max_body: int,
    ) -> None:
        self._settings = settings
        self._oauth = oauth
        self.api = api
        self.api_base = settings.api
        self.max_body = max_body

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
            async with self._oauth.stream(
                "POST",
                self._settings.token,
                data=form,
                auth=(app.client_id, app.client_secret.get_secret_value()),
                headers=_with_request_id({"Accept": "application/json"}),
            ) as response:
                if response.status_code >= 500 or response.status_code == 429:
                    raise BffError("upstream_error", status=502)
                content = await read_capped(response.aiter_bytes(), self.max_body)
        except httpx.HTTPError as exc:
            raise BffError(classify(exc)) from None
        except BodyTooLarge:
            raise TokenError("invalid_response") from None
        return _parse_tokens(response.status_code, content)

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

    async def msisdn(self, access_token: str) -> str | None:
        """The subscriber's number as Mobile User Info reports it, or None (any failure: the
        login goes on without it)."""
        url = f"{self.api_base}/user-info/v1/users"
        headers = _with_request_id({"Authorization": f"Bearer {access_token}"})
        try:
            async with self.api.get(url, headers=headers, allow_redirects=False) as up:
                if up.status != 200:
                    return None
                body = json.loads(await read_capped(up.content.iter_any(), self.max_body))
        except (aiohttp.ClientError, TimeoutError, BodyTooLarge, ValueError, RecursionError):
            return None
        number = body.get("mobileNumber") if isinstance(body, dict) else None
        return number if isinstance(number, str) and number.strip() else None

    async def logout(self, access_token: str) -> None:
        """Best effort: a slow or failing Telenor never blocks the local logout."""
        with contextlib.suppress(httpx.HTTPError):
            # Streamed and left unread: the answer ("OK!") changes nothing, whatever its size.
            async with self._oauth.stream(
                "GET",
                self._settings.logout,
                headers=_with_request_id({"Authorization": f"Bearer {access_token}"}),
                timeout=self._settings.logout_timeout_seconds,
            ):
                pass
