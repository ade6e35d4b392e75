"""The JSON API proxy: data calls, CSRF/Origin, CORS, traversal, upstream failures, refresh."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from service.kit.crypto import digest
from service.sandbox.app import ForcedResponse
from tests.support.browser import APP_ORIGIN, BFF, walk_login

OTHER_ORIGIN = "https://other.bff.test"
FOREIGN = "https://evil.example"
CSRF = {"X-CSRF": "1"}


@pytest.fixture
async def signed_in(browser: httpx.AsyncClient, sandbox) -> httpx.AsyncClient:  # type: ignore[no-untyped-def]
    walk = await walk_login(browser, msisdn="4790000002")
    assert walk.final.status_code == 302
    sandbox.requests.clear()  # (the login asked Mobile User Info for its subscriber)
    return browser


async def test_fetch_calls_return_sandbox_data_and_forward_only_safe_headers(signed_in, sandbox):
    """Both shortcuts and the generic route; the sandbox sees the bearer, no cookie, no forgery."""
    forged = {
        **CSRF,
        "Origin": APP_ORIGIN,
        "X-Forwarded-For": "6.6.6.6",
        "X-Forwarded-Host": "evil",
        "Accept-Language": "nb",
        "X-Request-ID": "req-123",
    }
    user = await signed_in.get(f"{BFF}/api/web/user-info", headers=forged)
    device = await signed_in.get(f"{BFF}/api/web/device-info", headers=forged)
    generic = await signed_in.get(f"{BFF}/api/web/telenor/user-info/v1/users", headers=forged)
    assert user.status_code == 200 and user.json()["name"]["middleName"] == "Johan"
    assert device.json()["manufacturer"] == "Samsung"
    assert generic.json() == user.json()
    assert user.headers["access-control-allow-origin"] == APP_ORIGIN
    seen = sandbox.calls("/user-info/v1/users") + sandbox.calls("/mobile-device-info/v1/device")
    assert len(seen) == 3
    access = [t for t, v in sandbox.tokens.items() if v.kind == "access"][-1]
    for call in seen:
        assert call.headers["authorization"] == f"Bearer {access}"
        assert "cookie" not in call.headers
        assert not any(h.startswith("x-forwarded") for h in call.headers)
        assert call.headers["accept-language"] == "nb"
        assert call.headers["x-request-id"] == "req-123"
        assert "origin" not in call.headers and "x-csrf" not in call.headers


ROUTES = [
    ("GET", "/api/web/session"),
    ("GET", "/api/web/user-info"),
    ("GET", "/api/web/device-info"),
    ("GET", "/api/web/telenor/user-info/v1/users"),
    ("POST", "/api/web/auth/start"),
    ("POST", "/api/web/session/revoke-all"),
    ("POST", "/auth/web/logout"),
]
ORIGINS = {"none": None, "own": APP_ORIGIN, "other_app": OTHER_ORIGIN, "foreign": FOREIGN}


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize("csrf", [False, True])
@pytest.mark.parametrize("origin", list(ORIGINS))
async def test_csrf_and_origin_matrix(signed_in, sandbox, method, path, csrf, origin):
    """Cookie requests need X-CSRF: 1 and an allowed (or no) Origin; refusals call nobody."""
    headers = dict(CSRF) if csrf else {}
    if ORIGINS[origin]:
        headers["Origin"] = ORIGINS[origin]
    sandbox.requests.clear()
    body = {"return_to": f"{APP_ORIGIN}/done"} if path.endswith("start") else {}
    r = await signed_in.request(
        method, f"{BFF}{path}", headers=headers, json=body if method == "POST" else None
    )
    if origin in ("other_app", "foreign"):
        assert r.status_code == 403
        assert r.json()["type"].endswith("origin_not_allowed")
    elif not csrf:
        assert r.status_code == 401
        assert r.json()["type"].endswith("csrf_header_missing")
    else:
        assert r.status_code < 400, r.text
    if r.status_code in (401, 403):
        assert r.headers["content-type"] == "application/problem+json"
        assert list(sandbox.requests) == []


async def test_repeated_headers_cannot_split_the_guard_from_the_session_lookup(signed_in, sandbox):
    """The CSRF guard and the session lookup read the same (first) Authorization header: a
    bearer-looking second one does not waive X-CSRF for a cookie-authenticated call."""
    sandbox.requests.clear()
    r = await signed_in.get(
        f"{BFF}/api/web/user-info",
        headers=[("Authorization", "Basic eDp5"), ("Authorization", "Bearer not-a-session")],
    )
    assert r.status_code == 401 and r.json()["type"].endswith("csrf_header_missing")
    assert list(sandbox.requests) == []
    ok = await signed_in.get(
        f"{BFF}/api/web/user-info",
        headers=[*CSRF.items(), ("Authorization", "Basic eDp5"), ("Authorization", "Bearer x")],
    )
    assert ok.status_code == 200  # the first (Basic) one counts: the cookie signs this call in


async def test_an_opened_record_is_trusted_only_under_its_own_key_and_bytes(bff, redis):
    """Records opened once are remembered, by Redis key and exact ciphertext: a copy of a known
    record under another session's key, or a changed one, is still refused (the AES-GCM
    associated data is the key), and the original works again once restored."""

    def key(client: httpx.AsyncClient) -> str:
        session_id = client.cookies["__Host-Http-bff-web"]
        return f"{bff.settings.redis_key_prefix}session:{{{digest(session_id)}}}"

    async with bff.browser() as alice, bff.browser() as bob:
        for user in (alice, bob):
            assert (await walk_login(user)).final.status_code == 302
        assert (await alice.get(f"{BFF}/api/web/user-info", headers=CSRF)).status_code == 200
        alices = await redis.get(key(alice))
        original_bobs = await redis.get(key(bob))
        await redis.set(key(bob), alices)  # Alice's record, opened a moment ago, under Bob's key
        assert (await bob.get(f"{BFF}/api/web/user-info", headers=CSRF)).status_code == 401
        flipped = alices[:-1] + bytes([alices[-1] ^ 1])
        await redis.set(key(alice), flipped)
        assert (await alice.get(f"{BFF}/api/web/user-info", headers=CSRF)).status_code == 401
        await redis.set(key(alice), alices)
        await redis.set(key(bob), original_bobs)
        for user in (alice, bob):
            assert (await user.get(f"{BFF}/api/web/user-info", headers=CSRF)).status_code == 200


async def test_preflight_for_own_origin_is_answered_exactly(browser):
    """The app's origin gets its exact origin, credentials, X-CSRF allowed, Vary and a max age."""
    r = await browser.options(
        f"{BFF}/api/web/user-info",
        headers={
            "Origin": APP_ORIGIN,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "x-csrf",
        },
    )
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == APP_ORIGIN
    assert r.headers["access-control-allow-credentials"] == "true"
    assert "X-CSRF" in r.headers["access-control-allow-headers"]
    assert "Content-Type" in r.headers["access-control-allow-headers"]
    assert r.headers["vary"] == "Origin" and int(r.headers["access-control-max-age"]) > 0


@pytest.mark.parametrize("origin", [FOREIGN, OTHER_ORIGIN, "null"])
async def test_preflight_for_other_origins_gets_no_cors_headers(browser, origin):
    """Another app's origin or a foreign one: refused, nothing to read, never '*'."""
    r = await browser.options(
        f"{BFF}/api/web/user-info",
        headers={"Origin": origin, "Access-Control-Request-Method": "GET"},
    )
    assert r.status_code == 403
    assert "access-control-allow-origin" not in r.headers


async def test_error_responses_carry_cors_headers_for_allowed_origins(browser):
    """A 401 to the SPA is readable: CORS headers on errors too."""
    r = await browser.get(f"{BFF}/api/web/user-info", headers={"Origin": APP_ORIGIN, **CSRF})
    assert r.status_code == 401
    assert r.headers["access-control-allow-origin"] == APP_ORIGIN
    assert r.headers["content-type"] == "application/problem+json"


async def test_a_cookie_session_of_one_app_does_not_authenticate_another(signed_in, sandbox):
    """web's cookie on other's routes: not signed in."""
    r = await signed_in.get(f"{BFF}/api/other/user-info", headers=CSRF)
    assert r.status_code == 401 and r.json()["type"].endswith("not_authenticated")


async def test_a_web_session_cookie_renamed_for_another_app_is_refused(signed_in):
    """Even a session id moved into another app's cookie name is bound to its own app."""
    session_id = signed_in.cookies.get("__Host-Http-bff-web")
    signed_in.cookies.set("__Host-Http-bff-other", session_id, domain="bff.test")
    r = await signed_in.get(f"{BFF}/api/other/user-info", headers=CSRF)
    assert r.status_code == 401


TRAVERSALS = [
    "user-info/v1/../../admin",
    "user-info/v1/..%2f..%2fadmin",
    "%2e%2e/admin",
    "user-info/v1/users%252f..",
    "//evil.example/user-info/v1/users",
    "@evil.example/x",
    "user-info\\v1\\users",
    "user-info/v1/users/",
    "user-info/v1/users/%2e%2e/users",
    "oauth/v2/token",
    "user-info/v1/users%00",
    "USER-INFO/v1/users",
]


@pytest.mark.parametrize("path", TRAVERSALS)
async def test_traversal_and_unlisted_paths_never_reach_upstream(signed_in, sandbox, path):
    """Anything but an exact allow-listed path: 4xx and no upstream call."""
    sandbox.requests.clear()
    r = await signed_in.get(f"{BFF}/api/web/telenor/{path}", headers=CSRF)
    assert 400 <= r.status_code < 500
    assert r.headers["content-type"] == "application/problem+json"
    assert list(sandbox.requests) == []


async def test_methods_other_than_get_are_405_without_upstream_call(signed_in, sandbox):
    """POST to a proxied path: 405 problem, no upstream call."""
    sandbox.requests.clear()
    r = await signed_in.post(f"{BFF}/api/web/telenor/user-info/v1/users", headers=CSRF)
    assert r.status_code == 405 and r.headers["content-type"] == "application/problem+json"
    assert list(sandbox.requests) == []


@pytest.mark.parametrize(
    ("fault", "status", "kind"),
    [
        (500, 502, "upstream_error"),
        (503, 502, "upstream_error"),
        (429, 429, "upstream_rate_limited"),
        ("hang", 504, "upstream_timeout"),
    ],
)
async def test_upstream_failures_map_to_problems_with_cors(signed_in, sandbox, fault, status, kind):
    """5xx → 502, 429 → 429 + Retry-After, timeout → 504; problem+json the SPA can read."""
    if fault == "hang":
        sandbox.faults.hang = {"user-info"}
    else:
        sandbox.faults.responses = [ForcedResponse("user-info", int(fault), 1)]
    r = await signed_in.get(f"{BFF}/api/web/user-info", headers={**CSRF, "Origin": APP_ORIGIN})
    assert r.status_code == status
    assert r.json()["type"].endswith(kind)
    assert r.headers["access-control-allow-origin"] == APP_ORIGIN
    if status == 429:
        assert r.headers["retry-after"] == "7"


async def test_upstream_unreachable_is_502(make_bff, sandbox):
    """Connection refused → 502 upstream_unreachable."""
    from service.store.embedded import free_port

    async with make_bff() as bff, bff.browser() as browser:
        await walk_login(browser)
    dead = f"http://127.0.0.1:{free_port()}"
    async with (
        make_bff(
            telenor={"base_url": sandbox_base(bff), "api_url": dead, "timeout_seconds": 1.5}
        ) as bff2,
        bff2.browser() as b2,
    ):
        await walk_login(b2)
        r = await b2.get(f"{BFF}/api/web/user-info", headers=CSRF)
    assert r.status_code == 502 and r.json()["type"].endswith("upstream_unreachable")


def sandbox_base(bff) -> str:  # type: ignore[no-untyped-def]
    return bff.settings.telenor.base_url


async def test_upstream_401_ends_the_session(signed_in, sandbox):
    """A token Telenor rejects (40105) ends the session: 401 session_expired, then not signed in."""
    for token in sandbox.tokens.values():
        token.revoked = True
    r = await signed_in.get(f"{BFF}/api/web/user-info", headers=CSRF)
    assert r.status_code == 401 and r.json()["type"].endswith("session_expired")
    status = await signed_in.get(f"{BFF}/api/web/session", headers=CSRF)
    assert status.json()["authenticated"] is False


async def test_twenty_concurrent_calls_refresh_exactly_once(browser, bff, sandbox):
    """A session near expiry: 20 parallel calls, one refresh request, all succeed."""
    sandbox.refresh_tokens = True
    sandbox.token_lifetime = 30  # inside the 60 s refresh skew
    await walk_login(browser)
    sandbox.token_lifetime = 3599
    sandbox.requests.clear()
    results = await asyncio.gather(
        *(browser.get(f"{BFF}/api/web/user-info", headers=CSRF) for _ in range(20))
    )
    assert [r.status_code for r in results] == [200] * 20
    refreshes = sandbox.calls("/oauth/v2/token")
    assert len(refreshes) == 1
    assert len(sandbox.calls("/user-info/v1/users")) == 20


async def test_refresh_across_two_instances_happens_once(make_bff, sandbox):
    """Two BFF instances on one Redis share the refresh lock."""
    sandbox.refresh_tokens = True
    sandbox.token_lifetime = 30
    async with make_bff() as one, make_bff() as two, one.browser() as b1:
        await walk_login(b1)
        sandbox.token_lifetime = 3599
        sandbox.requests.clear()
        cookie = b1.cookies.get("__Host-Http-bff-web")
        async with two.browser() as b2:
            b2.cookies.set("__Host-Http-bff-web", cookie, domain="bff.test")
            results = await asyncio.gather(
                *(b.get(f"{BFF}/api/web/user-info", headers=CSRF) for b in [b1, b2] * 5)
            )
    assert [r.status_code for r in results] == [200] * 10, [r.text for r in results]
    assert len(sandbox.calls("/oauth/v2/token")) == 1


async def test_failed_refresh_ends_the_session(browser, sandbox):
    """Telenor refusing the refresh token: 401 and the session is gone."""
    sandbox.refresh_tokens = True
    sandbox.token_lifetime = 30
    await walk_login(browser)
    for token in sandbox.tokens.values():
        if token.kind == "refresh":
            token.revoked = True
    r = await browser.get(f"{BFF}/api/web/user-info", headers=CSRF)
    assert r.status_code == 401 and r.json()["type"].endswith("session_expired")


async def test_without_refresh_token_the_session_ends_at_expiry(browser, bff, sandbox):
    """No refresh token: after the token's lifetime the session is simply over."""
    await walk_login(browser)
    bff.clock.advance(3600)
    r = await browser.get(f"{BFF}/api/web/session", headers=CSRF)
    assert r.json()["authenticated"] is False
    assert r.json()["login_url"].startswith(f"{BFF}/auth/web/login?return_to=")
