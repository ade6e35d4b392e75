"""The Telenor sandbox driven alone over HTTP, as Telenor's documented flow."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support.browser import query

CLIENT, SECRET = "web-client", "web-secret-5f0c1e"
CALLBACK = "https://bff.test/auth/web/callback"
DENIED = "error=access_denied&error_description=The+resource+owner+denied+the+request"


@pytest.fixture
async def http(sandbox, sandbox_url) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sandbox_url, timeout=10) as client:
        yield client


def basic(client: str = CLIENT, secret: str = SECRET) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client}:{secret}".encode()).decode()}


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


async def authorize(http: httpx.AsyncClient, network: bool = True, **params: str) -> str:
    """Location after /oauth/v2/authorize (consent page with network auth, else USSD)."""
    q = {"client_id": CLIENT, "state": "st-1", **params}
    headers = {"X-Sandbox-MSISDN": "4790000002"} if network else {}
    r = await http.get("/oauth/v2/authorize", params=q, headers=headers)
    assert r.status_code == 302, r.text
    return r.headers["location"]


async def approve(http: httpx.AsyncClient, consent: str, decision: str = "approve") -> str:
    r = await http.post(consent, data={"decision": decision})
    assert r.status_code == 302
    return r.headers["location"]


async def code_for(http: httpx.AsyncClient, **params: str) -> str:
    callback = await approve(http, await authorize(http, **params))
    return query(callback)["code"]


async def token(http: httpx.AsyncClient, code: str, **form: str) -> httpx.Response:
    return await http.post(
        "/oauth/v2/token",
        data={"grant_type": "authorization_code", "code": code, **form},
        headers=basic(),
    )


async def test_network_auth_consent_code_token_user_info(http):
    """http + operator header → consent → code → token → Ola's user info."""
    consent = await authorize(http)
    assert consent.startswith("/sandbox/consent/")
    page = await http.get(consent)
    assert "Nettbutikken" in page.text and "Mobile User Info" in page.text
    callback = await approve(http, consent)
    assert callback.startswith(CALLBACK + "?")
    assert query(callback)["state"] == "st-1"
    r = await token(http, query(callback)["code"])
    assert r.status_code == 200
    assert set(r.json()) == {"access_token", "expires_in"} and r.json()["expires_in"] == 3599
    info = await http.get(
        "/user-info/v1/users", headers={"Authorization": f"Bearer {r.json()['access_token']}"}
    )
    assert info.json()["name"] == {
        "givenName": "Ola",
        "middleName": "Johan",
        "familyName": "Hansen",
    }


async def test_without_operator_header_the_user_goes_to_ussd_and_accepts(http):
    """No header: the USSD page waits; answer 1 leads to consent for the chosen subscriber."""
    ussd = await authorize(http, network=False)
    assert ussd.startswith("/sandbox/ussd/")
    waiting = await http.get(ussd)
    assert waiting.status_code == 200 and 'http-equiv="refresh"' in waiting.text
    answered = await http.post(ussd, json={"answer": "1", "msisdn": "4790000003"})
    assert answered.json() == {"status": "identified"}
    after = await http.get(ussd)
    assert after.status_code == 303 and after.headers["location"].startswith("/sandbox/consent/")
    assert "4790000003" in (await http.get(after.headers["location"])).text


async def test_ussd_decline_calls_back_with_access_denied(http):
    """Answer 2 ends in the access_denied callback."""
    ussd = await authorize(http, network=False)
    await http.post(ussd, json={"answer": "2"})
    r = await http.get(ussd)
    assert r.status_code == 302 and DENIED in r.headers["location"]


async def test_ussd_timeout_calls_back_with_temporarily_unavailable(http, sandbox_clock):
    """No answer within the timeout: error=temporarily_unavailable."""
    ussd = await authorize(http, network=False)
    sandbox_clock.advance(121)
    r = await http.get(ussd)
    assert query(r.headers["location"])["error"] == "temporarily_unavailable"


async def test_consent_deny_sends_exactly_the_documented_error(http):
    """Deny → error=access_denied&error_description=The resource owner denied the request&state."""
    callback = await approve(http, await authorize(http), "deny")
    assert callback == f"{CALLBACK}?{DENIED}&state=st-1"


async def test_replayed_code_is_invalid_grant_and_revokes_its_token(http):
    """A second use of a code fails and kills the token the first use issued."""
    code = await code_for(http)
    first = (await token(http, code)).json()["access_token"]
    replay = await token(http, code)
    assert replay.status_code == 400 and replay.json() == {"error": "invalid_grant"}
    r = await http.get("/user-info/v1/users", headers={"Authorization": f"Bearer {first}"})
    assert r.status_code == 401 and r.json()["code"] == 40105


async def test_wrong_client_secret_is_401_invalid_client(http):
    """Basic auth with a wrong secret: 401 invalid_client with WWW-Authenticate."""
    code = await code_for(http)
    r = await http.post(
        "/oauth/v2/token",
        data={"grant_type": "authorization_code", "code": code},
        headers=basic(secret="wrong"),
    )
    assert r.status_code == 401 and r.json() == {"error": "invalid_client"}
    assert r.headers["www-authenticate"].startswith("Basic")


async def test_unregistered_redirect_uri_is_a_400_page_not_a_redirect(http):
    """A redirect_uri that is not registered never gets a redirect."""
    r = await http.get(
        "/oauth/v2/authorize",
        params={"client_id": CLIENT, "state": "s", "redirect_uri": "https://evil.test/cb"},
    )
    assert r.status_code == 400 and "location" not in r.headers
    assert r.headers["content-type"].startswith("text/html")


async def test_unknown_client_is_a_400_page(http):
    """An unknown client_id gets the error page."""
    r = await http.get("/oauth/v2/authorize", params={"client_id": "nobody", "state": "s"})
    assert r.status_code == 400 and "location" not in r.headers


async def test_pkce_mismatch_is_invalid_grant_and_match_works(http):
    """A code bound to a challenge needs the right verifier."""
    verifier = "v" * 50
    code = await code_for(http, code_challenge=s256(verifier), code_challenge_method="S256")
    bad = await token(http, code, code_verifier="w" * 50)
    assert bad.json() == {"error": "invalid_grant"}
    code = await code_for(http, code_challenge=s256(verifier), code_challenge_method="S256")
    assert (await token(http, code, code_verifier=verifier)).status_code == 200


async def test_redirect_uri_must_be_repeated_at_the_token_endpoint(http):
    """When authorize had redirect_uri, the token request must carry the same one."""
    code = await code_for(http, redirect_uri=CALLBACK)
    assert (await token(http, code)).json() == {"error": "invalid_grant"}


async def test_expired_code_is_invalid_grant(http, sandbox_clock):
    """Codes live 60 s."""
    code = await code_for(http)
    sandbox_clock.advance(61)
    assert (await token(http, code)).json() == {"error": "invalid_grant"}


async def test_expired_token_is_40106_and_missing_is_40102(http, sandbox_clock):
    """The gateway's codes for an expired and a missing token."""
    access = (await token(http, await code_for(http))).json()["access_token"]
    assert (await http.get("/mobile-device-info/v1/device")).json()["code"] == 40102
    sandbox_clock.advance(3600)
    r = await http.get(
        "/mobile-device-info/v1/device", headers={"Authorization": f"Bearer {access}"}
    )
    assert r.status_code == 401 and r.json()["code"] == 40106


async def test_device_info_omits_unknown_capabilities(http):
    """Subscriber 3's LTE-Advanced support is unknown, so it is absent."""
    r = await http.get(
        "/oauth/v2/authorize",
        params={"client_id": CLIENT, "state": "s"},
        headers={"X-Sandbox-MSISDN": "4790000003"},
    )
    code = query(await approve(http, r.headers["location"]))["code"]
    access = (await token(http, code)).json()["access_token"]
    device = await http.get(
        "/mobile-device-info/v1/device", headers={"Authorization": f"Bearer {access}"}
    )
    assert device.json()["capabilities"] == {"hdVoice": False, "lte": True}


async def test_logout_answers_ok_and_kills_the_token(http):
    """GET /oauth/v2/logout → 200 OK!; the token is dead afterwards."""
    access = (await token(http, await code_for(http))).json()["access_token"]
    auth = {"Authorization": f"Bearer {access}"}
    r = await http.get("/oauth/v2/logout", headers=auth)
    assert r.status_code == 200 and r.text == "OK!"
    assert (await http.get("/user-info/v1/users", headers=auth)).json()["code"] == 40105


async def test_refresh_switch_adds_refresh_token_and_grant(http, sandbox):
    """With refresh on: refresh_token/token_type appear and the refresh grant works once."""
    sandbox.refresh_tokens = True
    body = (await token(http, await code_for(http))).json()
    assert body["token_type"] == "Bearer" and body["refresh_token"]
    form = {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}
    fresh = await http.post("/oauth/v2/token", data=form, headers=basic())
    assert fresh.status_code == 200 and fresh.json()["access_token"] != body["access_token"]
    again = await http.post("/oauth/v2/token", data=form, headers=basic())
    assert again.json() == {"error": "invalid_grant"}


@pytest.mark.parametrize(("status", "code"), [(500, 50001), (503, 50301), (429, 42901)])
async def test_forced_responses_for_the_next_n_requests(http, status, code):
    """A fault for the next request only; the one after is normal again."""
    r = await http.put(
        "/sandbox/faults",
        json={"responses": [{"endpoint": "user-info", "status": status, "count": 1}]},
    )
    assert r.status_code == 200
    first = await http.get("/user-info/v1/users")
    assert first.status_code == status and first.json()["code"] == code
    if status == 429:
        assert first.headers["retry-after"] == "7"
    assert (await http.get("/user-info/v1/users")).json()["code"] == 40102


async def test_fraction_fault_with_one_always_fires(http):
    """fraction=1.0 fires on every request."""
    await http.put(
        "/sandbox/faults", json={"responses": [{"endpoint": "*", "status": 503, "fraction": 1.0}]}
    )
    assert (await http.get("/user-info/v1/users")).status_code == 503
    assert (await http.get("/mobile-device-info/v1/device")).status_code == 503


async def test_latency_and_hanging_token_endpoint(http):
    """Added latency delays an answer; a hanging token endpoint outlasts a client's timeout."""
    await http.put("/sandbox/faults", json={"latency": {"user-info": 0.2}, "hang": ["token"]})
    r = await http.get("/user-info/v1/users")
    assert r.elapsed.total_seconds() >= 0.2
    with pytest.raises(httpx.ReadTimeout):
        await http.post("/oauth/v2/token", data={}, timeout=0.3)


async def test_unknown_fault_endpoint_is_refused(http):
    """Fault descriptions are validated."""
    r = await http.put("/sandbox/faults", json={"hang": ["nowhere"]})
    assert r.status_code == 400
