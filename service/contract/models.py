"""Request and response models of the JSON API (what the OpenAPI spec shows)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..kit.errors import CATALOG, PROBLEM_TYPE


def _example(*examples: dict[str, Any]) -> ConfigDict:
    """Schema examples (the OpenAPI document's; a generated client's docs show them)."""
    return ConfigDict(json_schema_extra={"examples": list(examples)})


class StartRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"return_to": "https://shop.example.no/"}]}
    )

    return_to: str = Field(max_length=2048)
    mode: Literal["cookie"] = Field(
        default="cookie",
        description="How the login ends: `cookie`, the session cookie (the only mode; native "
        "apps use OAuth at `/oauth2/{app}/authorize`)",
    )


class StartResponse(BaseModel):
    model_config = _example(
        {
            "authorization_url": "https://api.telenor.no/oauth/v2/authorize?client_id=…",
            "expires_at": "2026-12-02T14:10:00Z",
        }
    )

    authorization_url: str
    expires_at: str = Field(description="ISO 8601 UTC time the login must finish by")


class SessionStatus(BaseModel):
    model_config = _example(
        {"authenticated": True, "expires_at": "2026-12-02T22:00:00Z", "expires_in": 28740},
        {
            "authenticated": False,
            "login_url": "https://bff.example.no/auth/shop/login?return_to=https%3A%2F%2Fshop.example.no%2F",
        },
    )

    authenticated: bool
    expires_at: str | None = None
    expires_in: int | None = None
    login_url: str | None = None


class RevokeAllResponse(BaseModel):
    model_config = _example({"revoked": 3})

    revoked: int = Field(description="How many of the subscriber's sessions in this app ended")


class AdminSession(BaseModel):
    """A live session as the admin API lists it: never its id or its Redis key."""

    ref: str = Field(description="Opaque reference, for DELETE /admin/sessions/{ref}")
    app: str
    via: Literal["cookie", "bearer"]
    created_at: str = Field(description="ISO 8601 UTC")
    expires_at: str = Field(description="ISO 8601 UTC: when it ends unless revoked")


class AdminSessions(BaseModel):
    sessions: list[AdminSession]
    truncated: bool = Field(description="More sessions matched than `limit`")


class RevocationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    app: str | None = Field(default=None, description="An app id: its sessions")
    subscriber: str | None = Field(
        default=None, max_length=32, description="An MSISDN as Mobile User Info reports it"
    )


class RevocationResult(BaseModel):
    revoked: int


class Problem(BaseModel):
    """RFC 9457 problem details."""

    model_config = _example(
        {
            "type": PROBLEM_TYPE + "not_authenticated",
            "title": "Not signed in",
            "status": 401,
        },
        {
            "type": PROBLEM_TYPE + "rate_limited",
            "title": "Too many requests",
            "status": 429,
            "detail": "Try again in 20 s.",
        },
    )

    # One URN per catalogue code, as an enum: a generated client can switch on it.
    type: str = Field(json_schema_extra={"enum": [PROBLEM_TYPE + code for code in CATALOG]})
    title: str
    status: int
    detail: str | None = None


class Name(BaseModel):
    model_config = ConfigDict(extra="allow")

    givenName: str | None = None
    middleName: str | None = None
    familyName: str | None = None


class Address(BaseModel):
    model_config = ConfigDict(extra="allow")

    streetName: str | None = None
    houseNumber: str | None = None
    houseLetter: str | None = None
    postalCode: str | None = None
    postalPlace: str | None = None
    countryCode: str | None = None


class UserInfo(BaseModel):
    """Telenor Mobile User Info (`GET /user-info/v1/users`); unknown fields are passed through."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "mobileNumber": "4790000001",
                    "name": {"givenName": "Kari", "familyName": "Nordmann"},
                    "address": {
                        "streetName": "Storgata",
                        "houseNumber": "1",
                        "postalCode": "0155",
                        "postalPlace": "Oslo",
                        "countryCode": "NO",
                    },
                    "birthDate": "1985-03-14",
                    "emailAddress": "kari.nordmann@example.no",
                }
            ]
        },
    )

    mobileNumber: str | None = None
    name: Name | None = None
    address: Address | None = None
    birthDate: str | None = Field(default=None, description="ISO 8601 date")
    emailAddress: str | None = None


class Capabilities(BaseModel):
    model_config = ConfigDict(extra="allow")

    hdVoice: bool | None = None
    lte: bool | None = None
    lteAdvanced: bool | None = None


class DeviceInfo(BaseModel):
    """Telenor Mobile Device Info (`GET /mobile-device-info/v1/device`)."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [
                {
                    "model": "iPhone 15",
                    "manufacturer": "Apple",
                    "tac": "35332011",
                    "capabilities": {"hdVoice": True, "lte": True, "lteAdvanced": True},
                }
            ]
        },
    )

    model: str | None = None
    manufacturer: str | None = None
    tac: str | None = None
    capabilities: Capabilities | None = None


# -- OAuth 2.0 for native apps: the token and revocation endpoints' forms and answers --------


class TokenRequest(BaseModel):
    """A public client's token request (RFC 6749 §4.1.3 with RFC 7636), sent as a form."""

    model_config = ConfigDict(extra="ignore")  # (RFC 6749 §3.2: unknown parameters are ignored)

    grant_type: Literal["authorization_code"]
    code: str = Field(min_length=1, description="The code from the redirect")
    redirect_uri: str = Field(min_length=1, description="Exactly as in the authorization request")
    client_id: str = Field(description="The app id")
    code_verifier: str = Field(min_length=1, description="The PKCE verifier (RFC 7636)")


class TokenRevocation(BaseModel):
    """An RFC 7009 revocation request, sent as a form."""

    model_config = ConfigDict(extra="ignore")

    token: str = Field(min_length=1, description="The access token (BFF session token) to end")
    token_type_hint: str | None = Field(default=None, json_schema_extra={"enum": ["access_token"]})
    client_id: str | None = Field(default=None, description="The app id")


class TokenResponse(BaseModel):
    """RFC 6749 §5.1: the app's access token, a BFF session token."""

    access_token: str = Field(description="The BFF session token, for `Bearer`")
    token_type: Literal["Bearer"]
    expires_in: int


class OAuthErrorBody(BaseModel):
    """An RFC 6749 §5.2 error of the token or revocation endpoint."""

    error: Literal["invalid_request", "invalid_client", "invalid_grant", "unsupported_grant_type"]
    error_description: str | None = None
