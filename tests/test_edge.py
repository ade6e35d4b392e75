"""One reading of each request, one way out for errors: every layer agrees on the credential,
and every error response, whichever layer sends it, is counted in `bff_errors_total`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
import pytest

from service.auth.cookies import Cookies
from service.edge.classify import Classifier
from service.kit.errors import CATALOG
from service.observe.logs.redact import Redactor
from tests.support.browser import APP_ORIGIN, BFF, BFF_HTTP, bearer_session, scrape, walk_login
from tests.support.config import make_settings
from tests.support.metrics import sample

pytestmark = pytest.mark.usefixtures("sandbox")
CSRF = {"X-CSRF": "1"}
Request = Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]


def errors_of(metrics: str, code: str) -> float:
    return sample(metrics, "bff_errors_total", code=code)


# Each refusal, from each layer that refuses: the edge's plain-http rule, CORS/CSRF, the body
# limit, the proxy, the routes, FastAPI's own 404/405/422, and the pages.
ERRORS: dict[str, Request] = {
    "https_required": lambda b: b.get(f"{BFF_HTTP}/api/web/session"),
    "bad_request": lambda b: b.get("http://bff.test//evil.example/x"),
    "csrf_header_missing": lambda b: b.get(f"{BFF}/api/web/user-info"),
    "origin_not_allowed": lambda b: b.options(
        f"{BFF}/api/web/user-info",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    ),
    "body_too_large": lambda b: b.post(
        f"{BFF}/api/web/auth/start", content=b"{" + b" " * 20_000 + b"}", headers=CSRF
    ),
    "path_not_allowed": lambda b: b.get(f"{BFF}/api/web/telenor/oauth/v2/token", headers=CSRF),
    "not_authenticated": lambda b: b.get(f"{BFF}/api/other/user-info"),
    "method_not_allowed": lambda b: b.post(f"{BFF}/api/web/user-info", headers=CSRF),
    "not_found": lambda b: b.get(f"{BFF}/api/web/nope", headers=CSRF),
    "invalid_request": lambda b: b.post(f"{BFF}/api/web/auth/start", json={}, headers=CSRF),
    "unknown_app": lambda b: b.get(f"{BFF}/auth/nosuch/login?return_to=x"),
    "bad_return_to": lambda b: b.get(f"{BFF}/auth/web/login?return_to=https://evil.example/"),
    "login_expired": lambda b: b.get(f"{BFF}/auth/web/callback?code=c&state=gone"),
}


@pytest.mark.parametrize("code", list(ERRORS))
async def test_every_error_response_is_counted_once_by_its_code(bff, browser, code):
    await walk_login(browser)  # a cookie session: the CSRF refusal needs one
    before = await scrape(browser)
    r = await ERRORS[code](browser)
    after = await scrape(browser)
    assert r.status_code == CATALOG[code][0], r.text[:300]
    assert errors_of(after, code) - errors_of(before, code) == 1
    if r.headers["content-type"].startswith("application/problem+json"):
        assert r.json()["type"].endswith(f":{code}")
    else:
        assert f'data-error="{code}"' in r.text


async def test_a_429_and_a_503_are_counted_too(make_bff, private_redis):
    """The rate limit's refusal and a Redis outage's, on the API and on the login page."""
    async with (
        make_bff(redis_url=private_redis.url, rate_limit_login_per_minute=1) as bff,
        bff.browser() as browser,
    ):
        login = f"{BFF}/auth/web/login?return_to={APP_ORIGIN}/done"
        assert (await browser.get(login)).status_code == 302
        assert (await browser.get(login)).status_code == 429
        private_redis.stop()
        assert (await browser.get(login)).status_code == 503
        api = await browser.get(f"{BFF}/api/web/user-info", headers={"Authorization": "Bearer x"})
        assert api.status_code == 503
        ready = await browser.get(f"{BFF}/readyz")
        assert ready.status_code == 503
        metrics = await scrape(browser)
    assert errors_of(metrics, "rate_limited") == 1
    assert errors_of(metrics, "store_unavailable") == 2
    assert errors_of(metrics, "not_ready") == 1


async def test_two_cookie_headers_are_one_cookie_jar_to_every_layer(bff, browser):
    """HTTP/2 may split the Cookie header: the CSRF guard, the session lookup and the logout
    all find the session in the second one."""
    await walk_login(browser)
    session_id = browser.cookies["__Host-Http-bff-web"]
    split = [(b"cookie", b"theme=dark"), (b"cookie", f"__Host-Http-bff-web={session_id}".encode())]
    async with bff.browser() as other:  # an empty jar: only the headers given here
        refused = await other.get(f"{BFF}/api/web/user-info", headers=split)
        assert refused.status_code == 401
        assert refused.json()["type"].endswith(":csrf_header_missing")
        with_csrf = [*split, (b"x-csrf", b"1")]
        assert (await other.get(f"{BFF}/api/web/user-info", headers=with_csrf)).status_code == 200
        status = await other.get(f"{BFF}/api/web/session", headers=with_csrf)
        assert status.json()["authenticated"] is True
        assert (await other.post(f"{BFF}/auth/web/logout", headers=with_csrf)).status_code == 204
    after = await browser.get(f"{BFF}/api/web/session", headers=CSRF)
    assert after.json()["authenticated"] is False


async def test_a_bearer_and_a_cookie_at_once_are_the_bearer_to_every_layer(bff, browser):
    """The bearer token counts, for the CSRF guard (no X-CSRF needed), the session lookup
    (the bearer's subscriber) and the logout (the bearer's session ends, the cookie's not)."""
    cookie_login = await walk_login(
        browser, "mobile", return_to=f"{APP_ORIGIN}/mobile", msisdn="4790000002"
    )
    assert cookie_login.final is not None and cookie_login.final.status_code == 302
    token = await bearer_session(bff)  # subscriber 4790000001
    both = {"Authorization": f"Bearer {token}"}
    user = await browser.get(f"{BFF}/api/mobile/user-info", headers=both)
    assert user.status_code == 200 and user.json()["mobileNumber"] == "4790000001"
    assert (await browser.post(f"{BFF}/auth/mobile/logout", headers=both)).status_code == 204
    gone = await browser.get(f"{BFF}/api/mobile/user-info", headers=both)
    assert gone.status_code == 401
    cookie = await browser.get(f"{BFF}/api/mobile/user-info", headers=CSRF)
    assert cookie.status_code == 200 and cookie.json()["mobileNumber"] == "4790000002"


async def test_a_slot_freed_goes_to_the_request_waiting_for_it_and_a_wait_ends_in_time():
    """The in-flight limit's queue (real asyncio, nothing replaced): at the limit, a waiter
    is handed the next slot freed, without the count ever passing the limit; with no slot
    freed within the wait, it is refused and holds nothing."""
    from service.edge.limits import Admission

    admission = Admission(1, wait_seconds=30)
    admission.in_flight += 1  # the one request in flight
    waiting = asyncio.create_task(admission.wait())
    await asyncio.sleep(0)  # let it queue
    assert not waiting.done() and admission.in_flight == 1
    admission.leave()  # the request in flight ends: its slot passes on
    assert await waiting is True and admission.in_flight == 1
    admission.leave()
    assert admission.in_flight == 0

    brief = Admission(1, wait_seconds=0.01)
    brief.in_flight += 1
    assert await brief.wait() is False  # nobody left in time
    assert brief.in_flight == 1
    brief.leave()
    assert brief.in_flight == 0 and not brief._waiters


@pytest.mark.parametrize(
    ("method", "path", "peer", "headers", "expected"),
    [
        ("GET", "/healthz", "10.0.0.1", {}, {}),
        ("GET", "/healthz", "127.0.0.1", {}, {"trusted_peer"}),
        ("GET", "/api/web/session", "10.0.0.1", {"x-csrf": "1"}, {"guarded", "csrf"}),
        (
            "GET",
            "/api/web/session",
            "10.0.0.1",
            {"sec-fetch-site": "cross-site"},
            {"guarded", "cross_site"},
        ),
        (
            "OPTIONS",
            "/api/web/session",
            "10.0.0.1",
            {"access-control-request-method": "GET"},
            {"guarded", "preflight"},
        ),
        (
            "POST",
            "/api/web/auth/start",
            "10.0.0.1",
            {"transfer-encoding": "chunked"},
            {"guarded", "chunked"},
        ),
    ],
)
def test_every_boolean_fact_of_the_request_scope_reads_back_by_name(
    method, path, peer, headers, expected
):
    """The scope is built by position (bench/README.md: keywords cost the hot path); each
    boolean fact, read by its name, is the one its header or peer set, so two swapped in the
    build fail here."""
    settings = make_settings("redis://127.0.0.1:1/0", "unused:", "http://unused")
    classify = Classifier(settings, Cookies(settings), Redactor())
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "scheme": "https",
        "client": (peer, 40000),
        "server": ("127.0.0.1", 443),
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
    }
    req = classify(scope)
    booleans = ("trusted_peer", "guarded", "csrf", "cross_site", "preflight", "chunked")
    assert {name for name in booleans if getattr(req, name)} == set(expected)
    assert (req.method, req.path, req.client, req.scheme) == (method, path, peer, "https")
