"""The sandbox's data: clients, login attempts, grants, tokens, injected faults, and the
answers Telenor gives in its own shapes."""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import JSONResponse, Response, StreamingResponse

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
    """An answer of `size` bytes (with Content-Length, or chunked) instead of the real one;
    with `gzip`, those bytes gzip-compressed, with the compressed length (a bomb)."""

    endpoint: str
    size: int
    chunked: bool = False
    gzip: bool = False


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
    # Or the whole text of every successful token response.
    token_body: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "latency": self.latency,
            "responses": [r.__dict__ for r in self.responses],
            "hang": sorted(self.hang),
            "large": [b.__dict__ for b in self.large],
            "headers": self.headers,
            "token_fields": self.token_fields,
            "token_body": self.token_body,
        }


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]


def large_body(large: LargeBody) -> Response:
    """`large.size` bytes of JSON-looking filler, streamed in 64 KiB pieces."""
    piece = b" " * 65536

    async def chunks() -> AsyncIterator[bytes]:
        left = large.size
        while left > 0:
            yield piece[: min(left, len(piece))]
            left -= len(piece)

    if large.gzip:
        # Level 9 deflates 64 MiB of spaces into about 64 KiB, sent with its (small) length.
        zipped = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        body = b"".join(zipped.compress(piece) for _ in range(large.size // len(piece)))
        body += zipped.flush()
        return Response(body, media_type="application/json", headers={"Content-Encoding": "gzip"})
    headers = {} if large.chunked else {"Content-Length": str(large.size)}
    return StreamingResponse(chunks(), media_type="application/json", headers=headers)


def oauth_error(error: str) -> JSONResponse:
    return JSONResponse({"error": error}, status_code=400, headers={"Cache-Control": "no-store"})


def api_error(code: int, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=401)
