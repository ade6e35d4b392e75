"""OAuth 2.0 for native apps (RFC 8252): discovery, authorize, token, revoke, per app.

The authorization request runs the browser login (`flow.py`, mode `native`) and ends on the
app's redirect URI with a code; the token request trades the code and the PKCE verifier for a
BFF session token, the bearer the app then sends to `/api/{app}/…`. The rules are in
`native.py`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, BackgroundTasks
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..deps import RequestDep, Services, ServicesDep
from ..errors import BffError
from ..flow import LoginStart
from ..native import STATE, OAuthError, back_to_app, metadata, token_response
from ..responses import redirect
from ..security import PAGES, PUBLIC, problems

router = APIRouter(tags=["native apps (OAuth 2.0)"])
FORM = "application/x-www-form-urlencoded"
_OAUTH_ERROR = {
    "description": 'An RFC 6749 §5.2 error: `{"error": …, "error_description": …}`',
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {
                        "type": "string",
                        "enum": [
                            "invalid_request",
                            "invalid_client",
                            "invalid_grant",
                            "unsupported_grant_type",
                        ],
                    },
                    "error_description": {"type": "string"},
                },
            }
        }
    },
}


def _form_body(fields: dict[str, Any], required: list[str]) -> dict[str, Any]:
    schema = {"type": "object", "required": required, "properties": fields}
    return {"requestBody": {"required": True, "content": {FORM: {"schema": schema}}}}


def _string(description: str) -> dict[str, str]:
    return {"type": "string", "description": description}


@router.get(
    "/.well-known/oauth-authorization-server/oauth2/{app}",
    operation_id="getAuthorizationServerMetadata",
    responses=problems(404, 503),
    openapi_extra={"security": PUBLIC},
)
async def discovery(app: str, services: ServicesDep) -> Response:
    """RFC 8414 metadata of the app's authorization server (issuer `/oauth2/{app}`)."""
    services.flow.app(app)
    if not services.flow.redirect_uris[app]:
        raise BffError("not_found", "This app has no native redirect URIs.")
    return JSONResponse(
        metadata(services.settings, app), headers={"Cache-Control": "public, max-age=300"}
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
    app: str,
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
    flow = services.flow
    flow.app(app)
    if client_id != app:
        raise BffError("bad_client", "client_id must be the app id.", flow=flow.flow(app))
    target = flow.redirect_uris[app].match(redirect_uri)
    if target is None:
        raise BffError("bad_redirect_uri", flow=flow.flow(app))
    if response_type != "code":
        wrong = BffError("bad_request", "response_type must be code.")
        return back_to_app(
            services.responder.count, target, state, wrong, "unsupported_response_type"
        )
    if state is not None and not STATE.fullmatch(state):
        # Too long to keep (or not RFC 6749's characters): refused, and not sent back.
        return back_to_app(services.responder.count, target, None, BffError("bad_request"))
    try:
        if code_challenge_method != "S256":
            raise BffError("challenge_required")
        started = await flow.start(
            LoginStart.of(
                req,
                return_to=target,
                native=True,
                code_challenge=code_challenge,
                client_state=state,
                network=services.settings.network_auth_url is not None,
            )
        )
    except BffError as exc:
        return back_to_app(services.responder.count, target, state, exc)
    response = redirect(started.authorization_url)
    services.cookies.set_binding(response, app, started.binding)
    return response


@router.post(
    "/oauth2/{app}/token",
    response_class=Response,
    operation_id="exchangeNativeCode",
    responses={
        200: {
            "description": "The app's access token: a BFF session token (RFC 6749 §5.1)",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["access_token", "token_type", "expires_in"],
                        "properties": {
                            "access_token": _string("The BFF session token, for `Bearer`"),
                            "token_type": {"type": "string", "enum": ["Bearer"]},
                            "expires_in": {"type": "integer"},
                        },
                    }
                }
            },
        },
        400: _OAUTH_ERROR,
        401: _OAUTH_ERROR,
        **problems(404, 503),
    },
    openapi_extra={
        "security": PUBLIC,
        **_form_body(
            {
                "grant_type": {"type": "string", "enum": ["authorization_code"]},
                "code": _string("The code from the redirect"),
                "redirect_uri": _string("Exactly as in the authorization request"),
                "client_id": _string("The app id"),
                "code_verifier": _string("The PKCE verifier (RFC 7636)"),
            },
            ["grant_type", "code", "redirect_uri", "client_id", "code_verifier"],
        ),
    },
)
async def token(app: str, request: Request, services: ServicesDep) -> Response:
    """The token request of a public client (RFC 6749 §4.1.3): code and verifier for a BFF
    session token. Errors are RFC 6749 §5.2 JSON, as OAuth libraries expect."""
    services.flow.app(app)
    try:
        form = await _form(request)
        if form.get("client_id") != app:
            raise OAuthError("invalid_client", "client_id must be the app id.", 401)
        if form.get("grant_type") != "authorization_code":
            raise OAuthError("unsupported_grant_type", "Only authorization_code is supported.")
        missing = [f for f in ("code", "redirect_uri", "code_verifier") if not form.get(f)]
        if missing:
            raise OAuthError("invalid_request", f"Missing {', '.join(missing)}.")
        access, ttl = await services.auth.redeem_code(
            app, form["code"], form["code_verifier"], form["redirect_uri"]
        )
    except OAuthError as exc:
        return _refused(services, exc)
    return token_response({"access_token": access, "token_type": "Bearer", "expires_in": ttl})


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
    openapi_extra={
        "security": PUBLIC,
        **_form_body(
            {
                "token": _string("The access token (BFF session token) to end"),
                "token_type_hint": {"type": "string", "enum": ["access_token"]},
                "client_id": _string("The app id"),
            },
            ["token"],
        ),
    },
)
async def revoke(
    app: str,
    request: Request,
    req: RequestDep,
    services: ServicesDep,
    background: BackgroundTasks,
) -> Response:
    """RFC 7009 revocation: ends the session the token names (and, best-effort afterwards,
    the login at Telenor). An unknown or already ended token is not an error."""
    services.flow.app(app)
    try:
        form = await _form(request)
        if form.get("client_id", app) != app:
            raise OAuthError("invalid_client", "client_id must be the app id.", 401)
        if not form.get("token"):
            raise OAuthError("invalid_request", "Missing token.")
    except OAuthError as exc:
        return _refused(services, exc)
    ended = await services.auth.end_credential(app, form["token"], "bearer", req.client)
    response = Response(status_code=200, headers={"Cache-Control": "no-store"})
    if ended is not None:
        background.add_task(services.flow.telenor_logout, ended.access_token)
    response.background = background
    return response


def _refused(services: Services, error: OAuthError) -> Response:
    """An RFC 6749 §5.2 error, counted in `bff_errors_total` as `oauth_<error>`."""
    services.responder.count(f"oauth_{error.error}")
    return error.response()


async def _form(request: Request) -> dict[str, str]:
    """The form body: each field once (RFC 6749 §3.2: no repeated parameters)."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != FORM:
        raise OAuthError("invalid_request", f"The body must be {FORM}.")
    try:
        pairs = parse_qsl((await request.body()).decode(), keep_blank_values=True)
    except UnicodeDecodeError:
        raise OAuthError("invalid_request", "The body is not UTF-8.") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            raise OAuthError("invalid_request", f"{name} is given more than once.")
        form[name] = value
    return form
