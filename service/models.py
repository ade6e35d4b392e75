"""Request and response models of the JSON API (what the OpenAPI spec shows)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .errors import CATALOG, PROBLEM_TYPE


class StartRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    return_to: str = Field(max_length=2048)
    mode: Literal["cookie"] = Field(
        default="cookie",
        description="How the login ends: `cookie`, the session cookie (the only mode; native "
        "apps use OAuth at `/oauth2/{app}/authorize`)",
    )


class StartResponse(BaseModel):
    authorization_url: str
    expires_at: str = Field(description="ISO 8601 UTC time the login must finish by")


class SessionStatus(BaseModel):
    authenticated: bool
    expires_at: str | None = None
    expires_in: int | None = None
    login_url: str | None = None


class RevokeAllResponse(BaseModel):
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

    model_config = ConfigDict(extra="allow")

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

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    manufacturer: str | None = None
    tac: str | None = None
    capabilities: Capabilities | None = None
