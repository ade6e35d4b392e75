"""The browser login flow through the real BFF, the real sandbox and a real Redis."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from redis.asyncio import Redis

from service.kit.crypto import digest
from tests.support.browser import APP_ORIGIN, BFF, BFF_HTTP, cookie_header, query, walk_login
from tests.support.config import SECRETS

pytestmark = pytest.mark.usefixtures("sandbox")


async def test_happy_path_asserts_every_hop(bff, browser, redis: Redis, sandbox):
    """Authorize params, state in Redis with TTL, Basic token request, sealed session, cookie."""
    r = await browser.get(f"{BFF}/auth/web/login", params={"return_to": f"{APP_ORIGIN}/done"})
    assert r.status_code == 302
    params = query(r.headers["location"])
    assert r.headers["location"].startswith(f"{bff.settings.telenor.authorize}?")
    assert params["client_id"] == "web-client" and params["response_type"] == "code"
    assert params["redirect_uri"] == f"{BFF}/auth/web/callback"
    assert params["code_challenge_method"] == "S256" and len(params["code_challenge"]) == 43
    assert len(params["state"]) >= 22  # ≥ 128 bits, URL-safe
    key = f"{bff.settings.redis_key_prefix}state:{params['state']}"
    record = json.loads(await redis.get(key))
    assert record["app"] == "web" and record["return_to"] == f"{APP_ORIGIN}/done"
    assert 590 <= await redis.ttl(key) <= 600
    binding = cookie_header(r, "-bind")
    assert binding.startswith("__Host-Http-bff-web-bind=")
    assert "HttpOnly" in binding and "Secure" in binding and "SameSite=lax" in binding
    assert "Domain" not in binding and "Path=/" in binding

    walk = await walk_login(browser, start=r.headers["location"])
    assert await redis.get(key) is None  # consumed
    token_calls = sandbox.calls("/oauth/v2/token")
    assert len(token_calls) == 1
    assert token_calls[0].headers["authorization"].startswith("Basic ")
    final = walk.final
    assert final.status_code == 302 and final.headers["location"] == f"{APP_ORIGIN}/done"
    session = cookie_header(final, "bff-web=")
    assert session.startswith("__Host-Http-bff-web=")
    for attr in ("HttpOnly", "Secure", "Path=/", "SameSite=strict"):
        assert attr in session
    assert "Domain" not in session
    session_id = session.split(";")[0].split("=", 1)[1]
    stored = await redis.get(f"{bff.settings.redis_key_prefix}session:{{{digest(session_id)}}}")
    access = [t for t, v in sandbox.tokens.items() if v.kind == "access"][-1]
    assert stored is not None and access.encode() not in stored
    assert session_id.encode() not in stored
    status = await browser.get(f"{BFF}/api/web/session", headers={"X-CSRF": "1"})
    assert status.json()["authenticated"] is True
    assert 3500 < status.json()["expires_in"] <= 3599


async def test_no_secret_leaks_into_responses_or_logs(bff, browser, sandbox, caplog):
    """Token, code, client secret and session id appear only where they belong."""
    caplog.set_level(logging.DEBUG)
    walk = await walk_login(browser)
    session_id = browser.cookies.get("__Host-Http-bff-web")
    code = query(walk.callback_url)["code"]
    tokens = list(sandbox.tokens)
    data = await browser.get(f"{BFF}/api/web/user-info", headers={"X-CSRF": "1"})
    assert data.status_code == 200
    secrets = [*SECRETS, code, session_id, *tokens]
    bff_responses = [h for h in walk.hops if h.url.host == "bff.test"] + [data]
    for response in bff_responses:
        headers = "\n".join(
            f"{k}: {v}" for k, v in response.headers.multi_items() if k != "set-cookie"
        )
        for secret in secrets:
            assert secret not in response.text
            assert secret not in headers
            location = response.headers.get("location", "")
            assert secret not in location
    cookies = "\n".join(walk.final.headers.get_list("set-cookie"))
    assert code not in cookies and all(t not in cookies for t in tokens)

    # The scripted browser is httpx (over httpcore) and logs the URLs it visits, the callback's
    # code included; those lines are the test's own. The BFF's upstream calls go through aiohttp,
    # so they never log under httpcore, and its httpx lines name only Telenor's paths.
    def browser_line(r: logging.LogRecord) -> bool:
        message = r.getMessage()
        return r.name.startswith("httpcore") or (
            r.name == "httpx" and ("bff.test" in message or "/sandbox/" in message)
        )

    service_lines = [r.getMessage() for r in caplog.records if not browser_line(r)]
    assert any("/oauth/v2/token" in line for line in service_lines)  # the BFF's calls are seen
    for secret in secrets:
        assert [line for line in service_lines if secret in line] == []


@pytest.mark.parametrize("lang", ["nb", "en"])
async def test_access_denied_shows_the_page_with_a_way_back(browser, lang):
    """Deny → 403 page in the chosen language, 'Back to the app' carries ?error=access_denied."""
    browser.headers["Accept-Language"] = "en-GB,en;q=0.9" if lang == "en" else "nb-NO"
    walk = await walk_login(browser, decision="deny")
    page = walk.final
    assert page.status_code == 403
    assert page.headers["content-type"].startswith("text/html")
    title = "You declined the request" if lang == "en" else "Du avslo forespørselen"
    assert title in page.text and "Nettbutikken" in page.text
    assert f'href="{APP_ORIGIN}/done?error=access_denied"' in page.text
    assert "/auth/web/login?" in page.text  # try again
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "http://" not in page.text.replace("http://www.w3.org", "")
    assert browser.cookies.get("__Host-Http-bff-web") is None


async def test_try_again_after_a_lost_state_starts_a_login(browser):
    """A callback whose state is gone cannot say where the login came from: "Try again" goes
    to the app's first return URL (not to a bad_return_to page)."""
    page = await browser.get(f"{BFF}/auth/web/callback?code=c&state=gone")
    assert 'data-error="login_expired"' in page.text
    retry = page.text.split('id="retry" href="')[1].split('"')[0].replace("&amp;", "&")
    again = await browser.get(f"{BFF}{retry}")
    assert again.status_code == 302 and query(again.headers["location"])["state"]


async def test_replayed_callback_is_login_expired_without_token_request(browser, sandbox):
    """The same callback twice: the second is 'expired or used' and never reaches Telenor."""
    walk = await walk_login(browser)
    before = len(sandbox.calls("/oauth/v2/token"))
    again = await browser.get(walk.callback_url)
    assert again.status_code == 400 and 'data-error="login_expired"' in again.text
    assert len(sandbox.calls("/oauth/v2/token")) == before


async def test_a_reloaded_callback_does_not_tell_a_signed_in_user_they_are_signed_out(browser):
    """Reloading the callback of a login that succeeded shows 'expired or used'; its words on
    what that means must hold for a browser that is signed in (it still is)."""
    walk = await walk_login(browser)
    for lang, still, wrong in (
        ("nb", "er du fortsatt logget inn", "ikke logget inn"),
        ("en", "you still are", "not signed in"),
    ):
        again = await browser.get(walk.callback_url, headers={"Accept-Language": lang})
        assert 'data-error="login_expired"' in again.text
        assert still in again.text and wrong not in again.text
    session = await browser.get(f"{BFF}/api/web/session", headers={"X-CSRF": "1"})
    assert session.json()["authenticated"] is True


async def test_expired_state_is_refused_without_token_request(bff, browser, sandbox):
    """A state older than the TTL is refused even if Redis still has it."""
    r = await browser.get(f"{BFF}/auth/web/login", params={"return_to": f"{APP_ORIGIN}/done"})
    bff.clock.advance(601)
    walk = await walk_login(browser, start=r.headers["location"])
    assert 'data-error="login_expired"' in walk.final.text
    assert sandbox.calls("/oauth/v2/token") == []


async def test_state_of_another_app_is_refused(browser, sandbox):
    """A state issued for app 'other' presented at web's callback."""
    r = await browser.get(
        f"{BFF}/auth/other/login", params={"return_to": "https://other.bff.test/"}
    )
    walk = await walk_login(browser, start=r.headers["location"], follow_callback=False)
    foreign = walk.callback_url.replace("/auth/other/", "/auth/web/")
    page = await browser.get(foreign)
    assert page.status_code == 400 and 'data-error="wrong_app"' in page.text
    assert sandbox.calls("/oauth/v2/token") == []


@pytest.mark.parametrize("binding", ["missing", "different"])
async def test_callback_in_another_browser_is_refused(bff, browser, sandbox, binding):
    """The login-binding cookie must be the one the login started with."""
    async with bff.browser() as other:
        if binding == "different":
            await other.get(f"{BFF}/auth/web/login", params={"return_to": f"{APP_ORIGIN}/done"})
        walk = await walk_login(browser, callback_browser=other)
    assert walk.final.status_code == 400 and 'data-error="wrong_browser"' in walk.final.text
    assert sandbox.calls("/oauth/v2/token") == []


OPEN_REDIRECTS = [
    "//evil.test/done",
    "/\\evil.test",
    "https://evil.test/done",
    "https://app.bff.test@evil.test/",
    "https://app.bff.test.evil.test/",
    "https://evil-app.bff.test/",
    "javascript:alert(1)",
    "data:text/html,hi",
    "https://app.bff.test\t.evil.test/",
    "https://app.bff.test/app/%2e%2e/x",
    "https://app.bff.test/app/../done",
    "http://app.bff.test/app/",
    "https://app.bff.test:8443/app/",
    "https://app.bff.test/app\n/x",
    "https://app.bff.test%2fevil.test/app/",
    "HTTPS://evil.test/",
    "https://app.bff.test/other",
    "",
    "myapp://auth",
]


@pytest.mark.parametrize("target", OPEN_REDIRECTS)
async def test_open_redirect_vectors_are_a_400_page_never_a_redirect(browser, target):
    """Every return_to trick is refused with the page and no Location."""
    r = await browser.get(f"{BFF}/auth/web/login", params={"return_to": target})
    assert r.status_code == 400, target
    assert "location" not in r.headers
    assert 'data-error="bad_return_to"' in r.text


async def test_prefix_return_urls_allow_paths_below_them(browser):
    """An entry ending in '/' admits deeper paths with a query on the same origin."""
    r = await browser.get(
        f"{BFF}/auth/web/login", params={"return_to": f"{APP_ORIGIN}/app/orders/7?tab=1"}
    )
    assert r.status_code == 302


@pytest.mark.parametrize("lang", ["nb", "en"])
@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("unknown_app", 404),
        ("bad_return_to", 400),
        ("login_expired", 400),
        ("telenor_error", 400),
        ("bad_callback", 400),
    ],
)
async def test_error_pages_in_both_languages(browser, case, status, lang):
    """Each error case renders its page, in nb and en (?lang= wins)."""
    url = {
        "unknown_app": f"{BFF}/auth/nosuch/login?return_to=x",
        "bad_return_to": f"{BFF}/auth/web/login?return_to=https://evil.test/",
        "login_expired": f"{BFF}/auth/web/callback?code=abc&state=unknown",
        "telenor_error": f"{BFF}/auth/web/callback?error=server_error&state=unknown",
        "bad_callback": None,
    }[case]
    if url is None:
        r = await browser.get(f"{BFF}/auth/web/login", params={"return_to": f"{APP_ORIGIN}/done"})
        url = f"{BFF}/auth/web/callback?state={query(r.headers['location'])['state']}"
    r = await browser.get(f"{url}&lang={lang}")
    assert r.status_code == status
    assert f'data-error="{case}"' in r.text and f'<html lang="{lang}">' in r.text
    marker = {"nb": ("Feilkode", "Error code"), "en": ("Error code", "Feilkode")}[lang]
    assert marker[0] in r.text and marker[1] not in r.text


async def test_two_parallel_logins_in_one_browser_both_complete(browser):
    """Two tabs: both states share the binding cookie; both callbacks succeed."""
    first = await browser.get(f"{BFF}/auth/web/login", params={"return_to": f"{APP_ORIGIN}/done"})
    second = await browser.get(f"{BFF}/auth/web/login", params={"return_to": f"{APP_ORIGIN}/app/x"})
    walks = [
        await walk_login(browser, start=first.headers["location"]),
        await walk_login(browser, start=second.headers["location"]),
    ]
    assert [w.final.headers["location"] for w in walks] == [
        f"{APP_ORIGIN}/done",
        f"{APP_ORIGIN}/app/x",
    ]


async def test_a_new_login_replaces_the_session_id(browser, bff, redis):
    """Every login issues a new session id (no fixation)."""
    await walk_login(browser)
    first = browser.cookies.get("__Host-Http-bff-web")
    await walk_login(browser)
    second = browser.cookies.get("__Host-Http-bff-web")
    assert first and second and first != second


@pytest.mark.parametrize("fault", ["500", "hang"])
async def test_token_endpoint_fault_then_try_again_works(browser, sandbox, fault):
    """Token endpoint 500 or hang → 'Telenor is not answering'; Try again works afterwards."""
    sandbox.faults.hang = {"token"} if fault == "hang" else set()
    if fault == "500":
        from service.sandbox.app import ForcedResponse

        sandbox.faults.responses = [ForcedResponse("token", 500, 1)]
    walk = await walk_login(browser)
    page = walk.final
    assert page.status_code in (502, 504)
    assert 'data-error="telenor_unavailable"' in page.text
    sandbox.reset()
    retry = page.text.split('id="retry" href="')[1].split('"')[0].replace("&amp;", "&")
    again = await browser.get(f"{BFF}{retry}")
    walk = await walk_login(browser, start=again.headers["location"])
    assert walk.final.status_code == 302
    assert walk.final.headers["location"] == f"{APP_ORIGIN}/done"


async def test_logout_removes_the_record_and_the_cookie_stops_working(browser, bff, redis, sandbox):
    """POST /auth/web/logout → 204; Redis record gone; Telenor logout called; cookie dead."""
    await walk_login(browser)
    session_id = browser.cookies.get("__Host-Http-bff-web")
    key = f"{bff.settings.redis_key_prefix}session:{{{digest(session_id)}}}"
    assert await redis.exists(key)
    r = await browser.post(f"{BFF}/auth/web/logout", headers={"X-CSRF": "1"})
    assert r.status_code == 204
    assert not await redis.exists(key)
    assert len(sandbox.calls("/oauth/v2/logout")) == 1
    # Even a client that ignores the clearing Set-Cookie is signed out.
    browser.cookies.set("__Host-Http-bff-web", session_id, domain="bff.test")
    status = await browser.get(f"{BFF}/api/web/session", headers={"X-CSRF": "1"})
    assert status.json()["authenticated"] is False
    data = await browser.get(f"{BFF}/api/web/user-info", headers={"X-CSRF": "1"})
    assert data.status_code == 401


async def test_logout_survives_a_hanging_telenor_logout(browser, sandbox):
    """Telenor's logout hanging does not block ours."""
    await walk_login(browser)
    sandbox.faults.hang = {"logout"}
    r = await asyncio.wait_for(
        browser.post(f"{BFF}/auth/web/logout", headers={"X-CSRF": "1"}), timeout=3
    )
    assert r.status_code == 204


@pytest.mark.parametrize("refresh", [False, True])
async def test_tokens_with_and_without_refresh_token_both_work(browser, sandbox, refresh):
    """Telenor may or may not send refresh_token/token_type."""
    sandbox.refresh_tokens = refresh
    walk = await walk_login(browser)
    assert walk.final.status_code == 302
    r = await browser.get(f"{BFF}/api/web/user-info", headers={"X-CSRF": "1"})
    assert r.status_code == 200 and r.json()["mobileNumber"] == "4790000001"


async def test_network_auth_entry_over_http_completes_by_network_authentication(browser, sandbox):
    """Login on the http entry: via the https hop (which binds the browser) and back to http,
    Telenor identifies the line without USSD, and the https callback signs the browser in."""
    start = f"{BFF_HTTP}/auth/web/login?return_to={APP_ORIGIN}/done"
    walk = await walk_login(browser, start=start, network=True)
    assert walk.final is not None and walk.final.status_code == 302
    assert walk.final.headers["location"] == f"{APP_ORIGIN}/done"
    assert all("/sandbox/ussd/" not in str(h.headers.get("location", "")) for h in walk.hops)
    assert browser.cookies.get("__Host-Http-bff-web")


async def test_other_routes_over_http_redirect_or_refuse(browser):
    """Over http: pages redirect to https; API routes are 403 problem+json."""
    page = await browser.get(f"{BFF_HTTP}/auth/web/callback?code=x&state=y")
    assert page.status_code == 308 and page.headers["location"].startswith("https://bff.test/")
    api = await browser.get(f"{BFF_HTTP}/api/web/session")
    assert api.status_code == 403 and api.headers["content-type"] == "application/problem+json"


async def test_code_refused_by_token_endpoint_shows_token_rejected(browser, sandbox, sandbox_clock):
    """A code Telenor no longer accepts (expired, invalid_grant): the 'did not accept' page."""
    walk = await walk_login(browser, follow_callback=False)
    sandbox_clock.advance(61)
    page = await browser.get(walk.callback_url)
    assert page.status_code == 502 and 'data-error="token_rejected"' in page.text
    assert len(sandbox.calls("/oauth/v2/token")) == 1


async def test_a_callback_error_page_switches_language_without_its_code_or_state(browser):
    """The callback's page offers the other language through `/auth/{app}/error`: the same
    error, the same way back, and never the callback's code or state in the link."""
    walk = await walk_login(browser, decision="deny")
    page = walk.final
    assert page.status_code == 403 and '<html lang="nb">' in page.text
    switch = page.text.split('<nav><a href="')[1].split('"')[0].replace("&amp;", "&")
    assert switch.startswith("/auth/web/error?code=access_denied&lang=en")
    callback = query(walk.callback_url)
    assert callback["state"] not in switch and callback.get("code", "-") not in switch
    english = await browser.get(f"{BFF}{switch}")
    assert english.status_code == 403 and '<html lang="en">' in english.text
    assert 'data-error="access_denied"' in english.text and "You declined" in english.text
    assert f'href="{APP_ORIGIN}/done?error=access_denied"' in english.text
    back = english.text.split('<nav><a href="')[1].split('"')[0].replace("&amp;", "&")
    assert "lang=nb" in back and "code=access_denied" in back


async def test_the_error_page_route_takes_only_known_codes_and_allowed_return_urls(browser):
    r = await browser.get(
        f"{BFF}/auth/web/error", params={"code": "<script>", "return_to": "https://evil.test/"}
    )
    assert r.status_code == 400 and 'data-error="bad_request"' in r.text
    assert "evil.test" not in r.text and "<script>" not in r.text


async def test_the_error_page_route_of_an_unknown_app_is_its_page(browser):
    r = await browser.get(f"{BFF}/auth/nosuch/error", params={"code": "access_denied"})
    assert r.status_code == 404 and 'data-error="unknown_app"' in r.text
