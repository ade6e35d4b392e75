"""Handoff mode for mobile apps: webview login → one-time code → bearer session token."""

from __future__ import annotations

import httpx
import pytest

from service.crypto import new_token, pkce_challenge
from tests.support.browser import BFF, bearer_session, walk_login, webview_login

pytestmark = pytest.mark.usefixtures("sandbox")


def handoff_start(return_to: str = "myapp://auth", method: str = "S256") -> dict[str, str]:
    """Login parameters of a handoff-mode start with a fresh challenge."""
    return {
        "return_to": return_to,
        "mode": "handoff",
        "code_challenge": pkce_challenge(new_token()),
        "code_challenge_method": method,
    }


async def exchange(client: httpx.AsyncClient, code: str, verifier: str, app: str = "mobile"):
    return await client.post(
        f"{BFF}/api/{app}/session/handoff", json={"handoff_code": code, "code_verifier": verifier}
    )


async def test_mobile_app_without_shared_cookies_logs_in_calls_and_logs_out(bff, sandbox):
    """Webview login → handoff code → bearer token → user-info and device-info → logout."""
    login = await webview_login(bff)
    code, verifier = login.handoff, login.verifier
    assert len(code) >= 22
    async with bff.browser() as app_http:  # the app's own HTTP stack: no cookies shared
        r = await exchange(app_http, code, verifier)
        assert r.status_code == 200
        body = r.json()
        assert body["token_type"] == "Bearer" and len(body["session_token"]) >= 43
        assert 3500 < body["expires_in"] <= 3599
        auth = {"Authorization": f"Bearer {body['session_token']}"}
        user = await app_http.get(f"{BFF}/api/mobile/user-info", headers=auth)
        device = await app_http.get(f"{BFF}/api/mobile/device-info", headers=auth)
        assert user.status_code == 200 and user.json()["mobileNumber"] == "4790000001"
        assert device.json()["model"] == "iPhone 15"
        assert (await app_http.get(f"{BFF}/api/mobile/session", headers=auth)).json()[
            "authenticated"
        ]
        assert (await app_http.post(f"{BFF}/auth/mobile/logout", headers=auth)).status_code == 204
        after = await app_http.get(f"{BFF}/api/mobile/user-info", headers=auth)
        assert after.status_code == 401
        assert len(app_http.cookies) == 0


async def test_replayed_handoff_code_is_refused(bff):
    """A handoff code works once."""
    login = await webview_login(bff)
    code, verifier = login.handoff, login.verifier
    async with bff.browser() as app_http:
        assert (await exchange(app_http, code, verifier)).status_code == 200
        again = await exchange(app_http, code, verifier)
    assert again.status_code == 400 and again.json()["type"].endswith("handoff_invalid")


async def test_wrong_verifier_burns_the_code(bff):
    """A wrong verifier fails, and the right one afterwards fails too."""
    login = await webview_login(bff)
    code, verifier = login.handoff, login.verifier
    async with bff.browser() as app_http:
        wrong = await exchange(app_http, code, new_token(48))
        right = await exchange(app_http, code, verifier)
    assert wrong.status_code == 400 and right.status_code == 400


async def test_expired_handoff_code_is_refused(bff, redis):
    """After the handoff TTL the code is gone (Redis expiry, made to happen now)."""
    login = await webview_login(bff)
    code, verifier = login.handoff, login.verifier
    keys = [k async for k in redis.scan_iter(match=f"{bff.settings.redis_key_prefix}handoff:*")]
    assert len(keys) == 1 and 0 < await redis.ttl(keys[0]) <= 60
    await redis.delete(keys[0])  # what Redis does when the TTL runs out
    async with bff.browser() as app_http:
        r = await exchange(app_http, code, verifier)
    assert r.status_code == 400


async def test_code_of_another_app_is_refused_and_burned(bff):
    """A mobile-app code redeemed on web's endpoint fails, and is then gone."""
    login = await webview_login(bff)
    code, verifier = login.handoff, login.verifier
    async with bff.browser() as app_http:
        assert (await exchange(app_http, code, verifier, app="web")).status_code == 400
        assert (await exchange(app_http, code, verifier)).status_code == 400


@pytest.mark.parametrize("challenge", [None, "short", "a" * 43 + "!"])
async def test_handoff_mode_requires_an_s256_challenge(browser, challenge):
    """No (or a malformed) challenge: the error page, no redirect to Telenor."""
    params = {"return_to": "myapp://auth", "mode": "handoff"}
    if challenge:
        params.update(code_challenge=challenge, code_challenge_method="S256")
    r = await browser.get(f"{BFF}/auth/mobile/login", params=params)
    assert r.status_code == 400 and 'data-error="challenge_required"' in r.text


async def test_plain_challenge_method_is_refused(browser):
    """Only S256."""
    r = await browser.get(
        f"{BFF}/auth/mobile/login",
        params=handoff_start(method="plain"),
    )
    assert r.status_code == 400


@pytest.mark.parametrize(
    "target", ["otherapp://auth", "myapp://auth/../x", "myapp://evil", "myapp:auth"]
)
async def test_unlisted_return_scheme_is_refused(browser, target):
    """Custom schemes must be listed exactly."""
    r = await browser.get(
        f"{BFF}/auth/mobile/login",
        params=handoff_start(target),
    )
    assert r.status_code == 400 and 'data-error="bad_return_to"' in r.text


async def test_deny_in_handoff_mode_shows_the_page_with_a_way_back_to_the_app(bff):
    """The user in the webview sees the page; 'Back to the app' is myapp://auth?error=…"""
    async with bff.browser() as webview:
        walk = await walk_login(
            webview,
            "mobile",
            return_to="myapp://auth",
            mode="handoff",
            challenge=pkce_challenge(new_token()),
            decision="deny",
        )
    assert walk.final.status_code == 403
    assert 'href="myapp://auth?error=access_denied"' in walk.final.text


async def test_start_via_json_api_in_handoff_mode(bff):
    """POST /api/mobile/auth/start gives the authorize URL for the app to open."""
    async with bff.browser() as webview:
        r = await webview.post(
            f"{BFF}/api/mobile/auth/start",
            json=handoff_start(),
        )
        assert r.status_code == 200
        assert r.json()["authorization_url"].startswith(bff.settings.telenor.authorize)
        assert r.json()["expires_at"].endswith("Z")


async def test_bearer_of_one_app_is_refused_on_another(bff):
    """mobile's bearer token on web's routes: 401."""
    token = await bearer_session(bff)
    async with bff.browser() as app_http:
        r = await app_http.get(
            f"{BFF}/api/web/user-info", headers={"Authorization": f"Bearer {token}"}
        )
    assert r.status_code == 401


async def test_cookie_and_bearer_sessions_of_one_app_coexist(bff):
    """The same app: a browser's cookie session and a phone's bearer session both work."""
    async with bff.browser() as browser:
        await walk_login(browser, "mobile", return_to="https://app.bff.test/mobile")
        token = await bearer_session(bff)
        async with bff.browser() as app_http:
            bearer = await app_http.get(
                f"{BFF}/api/mobile/user-info", headers={"Authorization": f"Bearer {token}"}
            )
        cookie = await browser.get(f"{BFF}/api/mobile/user-info", headers={"X-CSRF": "1"})
    assert bearer.status_code == 200 and cookie.status_code == 200
