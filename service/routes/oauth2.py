"""OAuth 2.0 for native apps (RFC 8252): discovery, authorize, token, revoke, per app.

Thin: each route hands its request to the app's authorization server (`auth/native.py`), which
owns the rules; an `OAuthError` renders itself (a redirect to the app, or RFC 6749 §5.2 JSON).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, BackgroundTasks
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..auth.native import FORM, read_form
from ..contract.models import OAuthErrorBody, TokenRequest, TokenResponse, TokenRevocation
from ..contract.security import PAGES, PUBLIC, problems
from ..kit.responses import no_store_json, redirect
from .deps import AppDep, RequestDep, ServicesDep

router = APIRouter(tags=["native apps (OAuth 2.0)"])
_OAUTH_ERROR = {
    "description": "An RFC 6749 §5.2 error",
    "content": {"application/json": {"schema": OAuthErrorBody.model_json_schema()}},
}


def _form_body(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI request body of a form endpoint, from its model."""
    schema = model.model_json_schema()
    return {"requestBody": {"required": True, "content": {FORM: {"schema": schema}}}}


@router.get(
    "/.well-known/oauth-authorization-server/oauth2/{app}",
    operation_id="getAuthorizationServerMetadata",
    responses=problems(404, 503),
    openapi_extra={"security": PUBLIC},
)
async def discovery(app: AppDep, services: ServicesDep) -> Response:
    """RFC 8414 metadata of the app's authorization server (issuer `/oauth2/{app}`)."""
    return JSONResponse(
        services.native.metadata(app.id), headers={"Cache-Control": "public, max-age=300"}
    )


@router.get(
    "/oauth2/{app}/authorize",
    status_code=302,
    response_class=Response,
    responses=PAGES,
    operation_id="authorizeNativeApp",
    openapi_extra={"security": PUBLIC},
)
async def authorize(
    app: AppDep,
    request: Request,
    req: RequestDep,
    services: ServicesDep,
    client_id: str = "",
    redirect_uri: str = "",
    response_type: str = "",
    state: str | None = None,
    code_challenge: str | None = None,
    code_challenge_method: str | None = None,
) -> Response:
    """The authorization request (RFC 6749 §4.1.1 with RFC 7636 S256): on to Telenor, and at
    the end a 302 to `redirect_uri` with `code` and the app's `state`, or with the error.
    With a wrong `client_id` or an unregistered `redirect_uri` it shows the error page and
    redirects nowhere."""
    # (The parameters are declared for the OpenAPI document; the server reads the query.)
    started = await services.native.authorize(req, app.id, request.query_params)
    response = redirect(started.authorization_url)
    services.cookies.set_binding(response, app.id, started.binding)
    return response


@router.post(
    "/oauth2/{app}/token",
    response_class=Response,
    operation_id="exchangeNativeCode",
    responses={
        200: {"model": TokenResponse, "description": "The app's access token (RFC 6749 §5.1)"},
        400: _OAUTH_ERROR,
        401: _OAUTH_ERROR,
        **problems(404, 503),
    },
    openapi_extra={"security": PUBLIC, **_form_body(TokenRequest)},
)
async def token(app: AppDep, request: Request, services: ServicesDep) -> Response:
    """The token request of a public client (RFC 6749 §4.1.3): code and verifier for a BFF
    session token. Errors are RFC 6749 §5.2 JSON, as OAuth libraries expect."""
    form = read_form(request.headers.get("content-type", ""), await request.body())
    return no_store_json(await services.native.token(app.id, form))


@router.post(
    "/oauth2/{app}/revoke",
    response_class=Response,
    operation_id="revokeNativeToken",
    responses={
        200: {"description": "Revoked, or was not valid (RFC 7009 §2.2)"},
        400: _OAUTH_ERROR,
        401: _OAUTH_ERROR,
        **problems(404, 503),
    },
    openapi_extra={"security": PUBLIC, **_form_body(TokenRevocation)},
)
async def revoke(
    app: AppDep,
    request: Request,
    req: RequestDep,
    services: ServicesDep,
    background: BackgroundTasks,
) -> Response:
    """RFC 7009 revocation: ends the session the token names (and, best-effort afterwards,
    the login at Telenor). An unknown or already ended token is not an error."""
    form = read_form(request.headers.get("content-type", ""), await request.body())
    ended = await services.native.revoke(app.id, form, req.client)
    response = Response(status_code=200, headers={"Cache-Control": "no-store"})
    if ended is not None:
        background.add_task(services.flow.telenor_logout, ended.access_token)
    response.background = background
    return response
