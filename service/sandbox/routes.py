"""The sandbox's HTTP routes: Telenor's OAuth endpoints, the USSD and consent pages, the data
APIs and the fault-injection knobs. The state they act on is `state.py`'s.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response

from .model import (
    DENIED,
    ENDPOINTS,
    Attempt,
    Faults,
    ForcedResponse,
    Grant,
    LargeBody,
    oauth_error,
)
from .state import SandboxState
from .subscribers import SUBSCRIBERS

router = APIRouter()


def _sandbox(request: Request) -> SandboxState:
    sandbox: SandboxState = request.app.state.sandbox  # set by `app.Sandbox`
    return sandbox


@router.get("/oauth/v2/authorize")
async def authorize(request: Request) -> Response:
    sandbox = _sandbox(request)
    if (fault := await sandbox.fault("authorize")) is not None:
        return fault
    q = request.query_params
    client = sandbox.clients.get(q.get("client_id", ""))
    if client is None:
        return sandbox.page(request, "error.html", 400, reason="unknown_client")
    redirect_uri = q.get("redirect_uri")
    if redirect_uri is not None and redirect_uri not in client.callbacks:
        return sandbox.page(request, "error.html", 400, reason="redirect_uri")
    if not client.callbacks:
        return sandbox.page(request, "error.html", 400, reason="redirect_uri")
    if q.get("response_type", "code") != "code":
        return sandbox.page(request, "error.html", 400, reason="response_type")
    challenge = q.get("code_challenge")
    if challenge and q.get("code_challenge_method", "plain") != "S256":
        return sandbox.page(request, "error.html", 400, reason="pkce")
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


@router.get("/sandbox/ussd/{attempt_id}")
async def ussd_page(attempt_id: str, request: Request) -> Response:
    sandbox = _sandbox(request)
    attempt = sandbox.attempts.get(attempt_id)
    if attempt is None or attempt.status == "done":
        return sandbox.page(request, "error.html", 404, reason="attempt")
    if attempt.status == "identified":
        return RedirectResponse(f"/sandbox/consent/{attempt.id}", status_code=303)
    if attempt.status == "declined":
        return sandbox.answer(attempt, error="access_denied", error_description=DENIED)
    if sandbox.clock() - attempt.created_at > sandbox.settings.ussd_timeout_seconds:
        return sandbox.answer(
            attempt,
            error="temporarily_unavailable",
            error_description="The user did not answer the USSD message in time",
        )
    return sandbox.page(request, "ussd.html", attempt=attempt, subscribers=SUBSCRIBERS.values())


@router.get("/sandbox/ussd/{attempt_id}/status")
async def ussd_status(attempt_id: str, request: Request) -> JSONResponse:
    """What the waiting page polls: pending, identified, declined or expired."""
    sandbox = _sandbox(request)
    attempt = sandbox.attempts.get(attempt_id)
    if attempt is None or attempt.status == "done":
        return JSONResponse({"status": "expired"})
    if attempt.status == "pending" and (
        sandbox.clock() - attempt.created_at > sandbox.settings.ussd_timeout_seconds
    ):
        return JSONResponse({"status": "expired"})
    return JSONResponse({"status": attempt.status}, headers={"Cache-Control": "no-store"})


@router.post("/sandbox/ussd/{attempt_id}")
async def ussd_answer(attempt_id: str, request: Request) -> Response:
    sandbox = _sandbox(request)
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


@router.get("/sandbox/consent/{attempt_id}")
async def consent_page(attempt_id: str, request: Request) -> Response:
    sandbox = _sandbox(request)
    attempt = sandbox.awaiting_consent(attempt_id)
    if attempt is None or attempt.msisdn is None:
        return sandbox.page(request, "error.html", 404, reason="attempt")
    return sandbox.page(
        request, "consent.html", attempt=attempt, subscriber=SUBSCRIBERS[attempt.msisdn]
    )


@router.post("/sandbox/consent/{attempt_id}")
async def consent(attempt_id: str, request: Request) -> Response:
    sandbox = _sandbox(request)
    attempt = sandbox.awaiting_consent(attempt_id)
    if attempt is None or attempt.msisdn is None:
        return sandbox.page(request, "error.html", 404, reason="attempt")
    decision = (await request.form()).get("decision")
    if decision == "deny":
        return sandbox.answer(attempt, error="access_denied", error_description=DENIED)
    if decision != "approve":
        return sandbox.page(request, "error.html", 400, reason="decision")
    code = secrets.token_urlsafe(24)
    sandbox.grants[code] = Grant(
        attempt.client.client_id,
        attempt.sent_redirect_uri,
        attempt.challenge,
        attempt.msisdn,
        sandbox.clock(),
    )
    return sandbox.answer(attempt, code=code)


@router.post("/oauth/v2/token")
async def token(request: Request) -> Response:
    sandbox = _sandbox(request)
    if (fault := await sandbox.fault("token")) is not None:
        return fault
    client = sandbox.client_auth(request)
    if client is None:
        return JSONResponse(
            {"error": "invalid_client"},
            status_code=401,
            headers={"WWW-Authenticate": 'Basic realm="telenor"'},
        )
    form = await request.form()
    grant_type = form.get("grant_type")
    if grant_type == "refresh_token" and sandbox.refresh_tokens:
        return sandbox.refresh(client, str(form.get("refresh_token", "")))
    if grant_type != "authorization_code":
        return oauth_error("unsupported_grant_type")
    code = str(form.get("code", ""))
    grant = sandbox.grants.get(code)
    if grant is None or grant.client_id != client.client_id:
        return oauth_error("invalid_grant")
    if grant.used:
        # RFC 6749 §4.1.2: a replayed code revokes what it issued.
        for value in grant.tokens:
            sandbox.tokens[value].revoked = True
        return oauth_error("invalid_grant")
    grant.used = True
    if sandbox.clock() - grant.created_at > sandbox.settings.code_ttl_seconds:
        return oauth_error("invalid_grant")
    if grant.redirect_uri is not None and form.get("redirect_uri") != grant.redirect_uri:
        return oauth_error("invalid_grant")
    if grant.challenge is not None:
        verifier = str(form.get("code_verifier", ""))
        digest = hashlib.sha256(verifier.encode()).digest()
        computed = base64.urlsafe_b64encode(digest).decode().rstrip("=")
        if not verifier or not hmac.compare_digest(computed, grant.challenge):
            return oauth_error("invalid_grant")
    access = sandbox.issue(client.client_id, grant.msisdn)
    grant.tokens.append(access)
    body: dict[str, Any] = {"access_token": access, "expires_in": sandbox.token_lifetime}
    if sandbox.refresh_tokens:
        refresh = sandbox.issue(client.client_id, grant.msisdn, "refresh")
        grant.tokens.append(refresh)
        body.update(refresh_token=refresh, token_type="Bearer")  # noqa: S106  (a type name)
    return sandbox.token_body(body)


@router.get("/user-info/v1/users")
async def user_info(request: Request) -> Response:
    return await _subscriber_data(request, "user-info")


@router.get("/mobile-device-info/v1/device")
async def device_info(request: Request) -> Response:
    return await _subscriber_data(request, "device-info")


async def _subscriber_data(request: Request, endpoint: str) -> Response:
    """A data API's answer for the bearer's subscriber (or the injected fault)."""
    sandbox = _sandbox(request)
    if (fault := await sandbox.fault(endpoint)) is not None:
        return fault
    token = sandbox.bearer(request)
    if isinstance(token, JSONResponse):
        return token
    subscriber = SUBSCRIBERS[token.msisdn]
    data = subscriber.user if endpoint == "user-info" else subscriber.device
    return JSONResponse(data, headers=sandbox.faults.headers.get(endpoint))


@router.get("/oauth/v2/logout")
async def logout(request: Request) -> Response:
    sandbox = _sandbox(request)
    if (fault := await sandbox.fault("logout")) is not None:
        return fault
    token = sandbox.bearer(request)
    if isinstance(token, JSONResponse):
        return token
    token.revoked = True
    return PlainTextResponse("OK!")


@router.get("/sandbox/faults")
async def get_faults(request: Request) -> JSONResponse:
    sandbox = _sandbox(request)
    return JSONResponse(sandbox.faults.as_json())


@router.put("/sandbox/faults")
async def set_faults(request: Request) -> JSONResponse:
    """Replace the fault set: {latency: {endpoint: s}, responses: [...], hang: [...]}."""
    sandbox = _sandbox(request)
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
                LargeBody(
                    str(b["endpoint"]),
                    int(b["size"]),
                    bool(b.get("chunked")),
                    bool(b.get("gzip")),
                )
                for b in body.get("large", [])
            ],
            headers={
                str(e): {str(k): str(v) for k, v in h.items()}
                for e, h in body.get("headers", {}).items()
            },
            token_fields=dict(body.get("token_fields", {})),
            token_body=str(body["token_body"]) if body.get("token_body") is not None else None,
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


@router.delete("/sandbox/faults")
async def clear_faults(request: Request) -> JSONResponse:
    sandbox = _sandbox(request)
    sandbox.faults = Faults()
    return JSONResponse(sandbox.faults.as_json())


@router.get("/sandbox/subscribers")
async def subscribers() -> JSONResponse:
    return JSONResponse([s.user for s in SUBSCRIBERS.values()])


@router.get("/")
async def index(request: Request) -> Response:
    sandbox = _sandbox(request)
    return sandbox.page(request, "index.html", subscribers=SUBSCRIBERS.values())
