"""The BFF against a hostile world: planted cookies, oversized input, Host-built redirects, odd
Telenor values, cross-site logouts, CGNAT and IPv6. Each test fails on the code before its fix.
"""

from __future__ import annotations

import asyncio
import json
import math
import select
import socket
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest
from redis.asyncio import Redis

from service.kit.crypto import digest
from service.sandbox.app import LargeBody
from tests.support.browser import APP_ORIGIN, BFF, BFF_HTTP, query, walk_login
from tests.support.metrics import sample
from tests.support.serve import admin_url, serve_env, start_serve, stop

pytestmark = pytest.mark.usefixtures("sandbox")
CSRF = {"X-CSRF": "1"}
CSRF_RAW = [(b"x-csrf", b"1")]
MiB = 1 << 20


# -- 1. Login CSRF through a planted binding cookie ------------------------------------------


async def attackers_callback(bff, network: bool) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """The attacker logs in to their own Telenor account in their own browser and stops at
    the callback: its URL (code and state) and the binding value their browser holds."""
    async with bff.browser() as attacker:
        start = f"{BFF_HTTP if network else BFF}/auth/web/login?return_to={APP_ORIGIN}/done"
        walk = await walk_login(
            attacker, start=start, network=network, msisdn="4790000004", follow_callback=False
        )
        binding = next(v for k, v in attacker.cookies.items() if k.endswith("bff-web-bind"))
    return walk.callback_url, binding


@pytest.mark.parametrize("network", [False, True], ids=["https-only", "network-entry"])
async def test_a_planted_binding_cookie_does_not_sign_the_victim_in(make_bff, sandbox, network):
    """The attacker plants their binding value under the plain cookie name (a sibling
    subdomain or an injected http response can set it; neither can set a `__Host-` cookie) and
    sends the victim to their callback URL: the wrong-browser page, no token request, no
    session."""
    overrides = {} if network else {"network_auth_url": None}
    async with make_bff(**overrides) as bff:
        callback, binding = await attackers_callback(bff, network)
        sandbox.requests.clear()
        async with bff.browser() as victim:
            victim.cookies.set("bff-web-bind", binding, domain="bff.test")
            page = await victim.get(callback)
            assert page.status_code == 400 and 'data-error="wrong_browser"' in page.text
            assert not any("bff-web=" in c for c in page.headers.get_list("set-cookie"))
            status = await victim.get(f"{BFF}/api/web/session", headers=CSRF)
            assert status.json()["authenticated"] is False
    assert sandbox.calls("/oauth/v2/token") == []


# Bytes a lenient parser strips from a cookie name (Python's str.strip: Unicode spaces) but a
# browser keeps: a cookie named "\xa0__Host-…" is not a `__Host-` cookie to the browser, so
# any site may set it, and Chromium stores and sends it.
NOT_SPACES = [b"\xa0", b"\x85", b"\x1c", b"\x1f"]


@pytest.mark.parametrize("byte", NOT_SPACES, ids=lambda b: f"{b[0]:02x}")
async def test_a_cookie_name_with_a_stray_space_byte_is_not_the_host_binding(
    make_bff, sandbox, byte
):
    """The planted-binding attack with a name only a lenient parser reads as `__Host-`."""
    async with make_bff(network_auth_url=None) as bff:
        callback, binding = await attackers_callback(bff, network=False)
        sandbox.requests.clear()
        async with bff.browser() as victim:
            cookie = byte + b"__Host-Http-bff-web-bind=" + binding.encode()
            page = await victim.get(callback, headers=[(b"cookie", cookie)])
            assert page.status_code == 400 and 'data-error="wrong_browser"' in page.text
    assert sandbox.calls("/oauth/v2/token") == []


@pytest.mark.parametrize("byte", NOT_SPACES, ids=lambda b: f"{b[0]:02x}")
async def test_a_cookie_name_with_a_stray_space_byte_is_not_the_session(bff, browser, byte):
    """The attacker's own session id planted under such a name signs nobody in."""
    await walk_login(browser)
    session_id = browser.cookies["__Host-Http-bff-web"].encode()
    async with bff.browser() as victim:
        planted = [(b"cookie", byte + b"__Host-Http-bff-web=" + session_id), (b"x-csrf", b"1")]
        r = await victim.get(f"{BFF}/api/web/user-info", headers=planted)
    assert r.status_code == 401


async def test_a_cookie_sent_twice_under_one_name_counts_as_none(bff, browser):
    """Which of two same-named cookies is ours cannot be known: neither counts."""
    await walk_login(browser)
    session_id = browser.cookies["__Host-Http-bff-web"]
    async with bff.browser() as other:
        twice = f"__Host-Http-bff-web={session_id}; __Host-Http-bff-web=forged".encode()
        r = await other.get(f"{BFF}/api/web/user-info", headers=[(b"cookie", twice), *CSRF_RAW])
        assert r.status_code == 401
        once = f"__Host-Http-bff-web={session_id}".encode()
        r = await other.get(f"{BFF}/api/web/user-info", headers=[(b"cookie", once), *CSRF_RAW])
        assert r.status_code == 200


@pytest.mark.parametrize("name", ["bff-web-bind", "__Host-Http-bff-web-bind"])
async def test_a_login_mints_a_fresh_binding_whatever_the_browser_sends(bff, redis: Redis, name):
    """A binding value the browser sends is never adopted: the state is bound to a value of
    the BFF's own making. A plain-name value (plantable) is not set again under `__Host-`."""
    planted = "A" * 43
    async with bff.browser() as victim:
        victim.cookies.set(name, planted, domain="bff.test")
        r = await victim.get(f"{BFF}/auth/web/login", params={"return_to": f"{APP_ORIGIN}/done"})
    assert r.status_code == 302
    state = query(r.headers["location"])["state"]
    record = json.loads(await redis.get(f"{bff.settings.redis_key_prefix}state:{state}"))
    assert record["binding"] != digest(planted)
    if not name.startswith("__Host-"):
        assert all(planted not in c for c in r.headers.get_list("set-cookie"))


async def test_the_network_entry_leaves_for_telenor_over_http_after_an_https_binding(bff):
    """The http entry sets no cookie (it could only be a plain one); an https hop sets the
    `__Host-` binding; the browser then leaves for Telenor from the plain-http origin."""
    async with bff.browser() as phone:
        entry = await phone.get(
            f"{BFF_HTTP}/auth/web/login", params={"return_to": f"{APP_ORIGIN}/done"}
        )
        assert entry.status_code == 302 and "set-cookie" not in entry.headers
        hop = await phone.get(entry.headers["location"])
        assert str(hop.url).startswith(f"{BFF}/auth/web/login?")
        binding = next(c for c in hop.headers.get_list("set-cookie") if "-bind=" in c)
        assert binding.startswith("__Host-Http-bff-web-bind=") and "Secure" in binding
        leave = await phone.get(hop.headers["location"])
        assert str(leave.url).startswith(f"{BFF_HTTP}/auth/web/network?")
        assert leave.headers["location"].startswith(bff.settings.telenor.authorize)
        assert "set-cookie" not in leave.headers
        again = await phone.get(f"{BFF_HTTP}/auth/web/network")  # no (or a used) state: a page
        assert again.status_code == 400 and 'data-error="login_expired"' in again.text


# -- 2. Nothing third-party on the BFF's origin ----------------------------------------------


@pytest.mark.parametrize("env", ["production", "development"])
async def test_no_page_on_the_bff_origin_loads_a_cdn_bundle(make_bff, env):
    """`/docs` and `/redoc` (FastAPI's pages load unpinned CDN bundles) are not served."""
    async with make_bff(env=env) as bff, bff.browser() as browser:
        for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
            r = await browser.get(f"{BFF}{path}")
            assert r.status_code == 404, path
            assert "cdn.jsdelivr.net" not in r.text and "<script" not in r.text
        assert (await browser.get(f"{BFF}/openapi.json")).status_code == 200


# -- 3. Unbounded input ----------------------------------------------------------------------


@pytest.fixture(params=["httptools", "h11"], scope="module")
def served(request, redis_url, sandbox_server, tmp_path_factory) -> Iterator[Served]:  # type: ignore[no-untyped-def]
    """`line-auth-bff serve` as a real process, with each HTTP implementation uvicorn has."""
    tmp = tmp_path_factory.mktemp(f"serve-{request.param}")
    env = serve_env(redis_url, "hardening:", sandbox_server[1], tmp)
    proc, port = start_serve(env, tmp, "--http", request.param)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            deadline = time.monotonic() + 30
            while not _ready(client):
                assert time.monotonic() < deadline and proc.poll() is None, "serve did not start"
                time.sleep(0.05)
        yield Served(port, admin_url(env))
    finally:
        stop(proc)


class Served(NamedTuple):
    port: int
    admin: str  # the admin listener's URL


def _ready(client: httpx.Client) -> bool:
    try:
        return client.get("/readyz").status_code == 200
    except httpx.TransportError:
        return False


def exchange(port: int, head: bytes, rest: Iterable[bytes] = ()) -> tuple[bytes, int]:
    """Send `head`, then the pieces of `rest` until the server answers (or closes); returns
    the response (status line and headers, then the body it announced) and the bytes sent."""
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            sock.sendall(head)
            sent += len(head)
            for piece in rest:
                if select.select([sock], [], [], 0)[0]:
                    break  # an answer (or the close) is there: stop sending
                sock.sendall(piece)
                sent += len(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed the connection on us: its answer is in our buffer
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
            head_part, _, body = data.partition(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":", 1)[1])
                    for line in head_part.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                0,
            )
            while len(body) < length:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                body += chunk
        except ConnectionResetError:
            head_part, body = data.partition(b"\r\n\r\n")[::2]
    return head_part + b"\r\n\r\n" + body, sent


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def filler(total: int, piece: int = 65536) -> Iterator[bytes]:
    for _ in range(total // piece):
        yield b"a" * piece


def test_a_huge_request_header_is_refused_with_431_before_it_is_read(served):
    """A 32 MiB header: 431 problem+json once the cap is passed, not after the whole header."""
    head = b"GET /healthz HTTP/1.1\r\nHost: bff.test\r\nX-Padding: "
    response, sent = exchange(served.port, head, [*filler(32 * MiB), b"\r\n\r\n"])
    assert status_of(response) == 431, response[:200]
    assert b"application/problem+json" in response and b"header_too_large" in response
    assert sent < 4 * MiB  # the server stopped reading near its 32 KiB cap


def test_the_431_is_counted_like_every_error_response(served):
    """Answered by the HTTP protocol, before the app: still in bff_errors_total."""

    def count() -> float:
        text = httpx.get(f"{served.admin}/metrics").text
        return sample(text, "bff_errors_total", code="header_too_large")

    before = count()
    head = b"GET /healthz HTTP/1.1\r\nHost: bff.test\r\nX-Padding: "
    response, _ = exchange(served.port, head, [*filler(1 * MiB), b"\r\n\r\n"])
    assert status_of(response) == 431
    assert count() == before + 1


def test_blank_lines_before_the_request_line_do_not_get_past_the_header_cap(served):
    """Parsers skip blank lines before a request line; the cap must not take their CRLFs for
    the end of the head (httptools then read an 8 MiB header)."""
    head = b"\r\n\r\nGET /healthz HTTP/1.1\r\nHost: bff.test\r\nX-Padding: "
    response, sent = exchange(served.port, head, [*filler(8 * MiB), b"\r\n\r\n"])
    assert status_of(response) in (400, 431), response[:200]  # (h11 refuses blank lines: 400)
    assert sent < 4 * MiB


def test_ordinary_headers_under_the_cap_are_served(served):
    """A 24 KiB cookie header (several apps' sessions, trackers) is still fine."""
    head = (
        b"GET /healthz HTTP/1.1\r\nHost: bff.test\r\nCookie: x="
        + b"a" * (24 * 1024)
        + b"\r\nConnection: close\r\n\r\n"
    )
    response, _ = exchange(served.port, head)
    assert status_of(response) == 200


START = b"POST /api/web/auth/start HTTP/1.1\r\nHost: bff.test\r\nX-Forwarded-Proto: https\r\n"


def test_an_announced_huge_body_is_refused_with_413_without_reading_it(served):
    """Content-Length: 20 MiB to a two-field endpoint: 413 at once, before a byte is sent."""
    head = START + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (20 * MiB)
    response, sent = exchange(served.port, head)
    assert status_of(response) == 413 and b"body_too_large" in response
    assert sent == len(head)


def test_a_chunked_huge_body_is_refused_with_413_once_past_the_cap(served):
    """A chunked body never announces its size: the BFF stops reading past the cap."""
    head = START + b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunks = (b"10000\r\n" + piece + b"\r\n" for piece in filler(20 * MiB))
    response, sent = exchange(served.port, head, chunks)
    assert status_of(response) == 413 and b"body_too_large" in response
    assert sent < 4 * MiB


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_huge_upstream_body_is_a_502_not_relayed(browser, sandbox, chunked):
    """Telenor answering 64 MiB: 502 upstream_error, nothing of it passed on."""
    await walk_login(browser)
    sandbox.faults.large = [LargeBody("user-info", 64 * MiB, chunked)]
    r = await browser.get(f"{BFF}/api/web/user-info", headers=CSRF)
    assert r.status_code == 502 and r.json()["type"].endswith(":upstream_error")
    assert len(r.content) < 1000


async def test_a_compressed_upstream_body_is_capped_as_it_inflates(browser, sandbox):
    """A gzip answer of a few hundred KiB that inflates to 64 MiB: 502, not relayed."""
    await walk_login(browser)
    sandbox.faults.large = [LargeBody("user-info", 64 * MiB, gzip=True)]
    r = await browser.get(f"{BFF}/api/web/user-info", headers=CSRF)
    assert r.status_code == 502 and r.json()["type"].endswith(":upstream_error")


def test_every_size_and_rate_limit_is_in_env_example():
    from service.config import Settings

    example = (Path(__file__).resolve().parents[1] / ".env.example").read_text()
    limits = [f for f in Settings.model_fields if f.startswith(("max_", "rate_limit_"))]
    assert len(limits) == 9  # the eight of the hardening work, and BFF_MAX_IN_FLIGHT
    for field in limits:
        assert f"\nBFF_{field.upper()}=" in example, field


# -- 4. Logout CSRF --------------------------------------------------------------------------


CROSS_SITE = {
    "Origin": "https://evil.example",
    "Sec-Fetch-Site": "cross-site",
    "Content-Type": "application/x-www-form-urlencoded",
}


async def test_a_cross_site_logout_without_a_cookie_is_refused(browser):
    """A cross-site form POST: 403, and no Set-Cookie that clears anything."""
    r = await browser.post(f"{BFF}/auth/web/logout", headers=CROSS_SITE, content=b"x=1")
    assert r.status_code == 403 and r.json()["type"].endswith(":origin_not_allowed")
    assert "set-cookie" not in r.headers


async def test_a_cross_site_logout_without_an_origin_is_refused_by_sec_fetch_site(browser):
    headers = {k: v for k, v in CROSS_SITE.items() if k != "Origin"}
    r = await browser.post(f"{BFF}/auth/web/logout", headers=headers, content=b"x=1")
    assert r.status_code == 403 and "set-cookie" not in r.headers


async def test_a_cross_site_logout_leaves_the_session_alive(browser):
    await walk_login(browser)
    r = await browser.post(f"{BFF}/auth/web/logout", headers={**CROSS_SITE, **CSRF})
    assert r.status_code == 403
    status = await browser.get(f"{BFF}/api/web/session", headers=CSRF)
    assert status.json()["authenticated"] is True


# -- 5. Redirects built from the request -----------------------------------------------------


async def test_a_trailing_slash_is_not_redirected_to_the_host_header(browser):
    """Starlette would redirect `/callback/` to `https://{Host}/callback`, code and state
    included; here it is simply not a route."""
    r = await browser.get(
        f"{BFF}/auth/web/callback/?code=c0de&state=st4te", headers={"Host": "evil.example"}
    )
    assert r.status_code == 404
    assert "location" not in r.headers


@pytest.mark.parametrize("target", [b"*@evil.example/x", b"//evil.example/x", b"/\\evil.example/x"])
def test_the_https_redirect_never_leaves_the_public_origin(served, target):
    """Over plain http the BFF redirects to its public origin, never to a host the request
    target names."""
    head = b"GET " + target + b" HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
    response, _ = exchange(served.port, head)
    location = next(
        (line for line in response.split(b"\r\n") if line.lower().startswith(b"location:")), b""
    )
    assert b"evil.example" not in location, response[:300]
    if location:
        assert location.split(b":", 1)[1].strip().startswith(b"https://bff.test/")
        assert not location.split(b":", 1)[1].strip().startswith(b"https://bff.test//")


# -- 6. Personal data is not cacheable -------------------------------------------------------


async def test_proxied_personal_data_is_no_store_whatever_telenor_says(browser, sandbox):
    await walk_login(browser)
    sandbox.faults.headers = {"user-info": {"Cache-Control": "public, max-age=3600"}}
    r = await browser.get(f"{BFF}/api/web/user-info", headers=CSRF)
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store"


# -- 7. Telenor's values are checked when they arrive ----------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"expires_in": math.inf},
        {"expires_in": math.nan},
        {"expires_in": -5},
        {"expires_in": 10**12},
        {"expires_in": "soon"},
        {"expires_in": True},
        {"access_token": "abc\r\nX-Injected: 1"},
        {"access_token": "two words"},
        {"access_token": "ø" * 10},
        {"access_token": "a" * 5000},
        {"access_token": 12345},
        {"refresh_token": "bad\ntoken"},
    ],
    ids=lambda f: json.dumps(f, allow_nan=True)[:40],
)
async def test_odd_token_responses_are_token_rejected_never_a_500(browser, sandbox, fields):
    sandbox.faults.token_fields = fields
    walk = await walk_login(browser)
    assert walk.final is not None
    assert walk.final.status_code == 502, walk.final.text[:200]
    assert 'data-error="token_rejected"' in walk.final.text
    status = await browser.get(f"{BFF}/api/web/session", headers=CSRF)
    assert status.json()["authenticated"] is False


@pytest.mark.parametrize("body", ["[" * 200_000, '{"access_token": "x", "expires_in": "١٢٣٤"}'])
async def test_a_token_response_that_breaks_the_parser_is_token_rejected(browser, sandbox, body):
    """Nesting deep enough to exhaust Python's recursion, or digits that are not ASCII."""
    sandbox.faults.token_body = body
    walk = await walk_login(browser)
    assert walk.final is not None and walk.final.status_code == 502
    assert 'data-error="token_rejected"' in walk.final.text


@pytest.mark.parametrize("value", ["1234", 1234.0, " 1234 "])
async def test_a_numeric_string_lifetime_is_honoured(browser, sandbox, value):
    """`"1234"` (as some clients decode Telenor's answer) means 1234 s, not a default hour."""
    sandbox.faults.token_fields = {"expires_in": value}
    walk = await walk_login(browser)
    assert walk.final is not None and walk.final.status_code == 302
    status = (await browser.get(f"{BFF}/api/web/session", headers=CSRF)).json()
    assert status["authenticated"] is True and 1200 < status["expires_in"] <= 1234


# -- 8. Login limits that let CGNAT in and keep floods out -----------------------------------

CGNAT = "100.64.17.3"  # RFC 6598 shared address space: one IPv4 address, many phones
LOGIN = f"{BFF}/auth/web/login?return_to={APP_ORIGIN}/done"


async def test_a_thousand_browsers_behind_one_ipv4_address_all_start_logins(bff):
    """Default limits: 1,000 different browsers behind one carrier NAT address, in a minute."""

    async def one() -> int:
        async with bff.browser(CGNAT) as phone:
            return (await phone.get(LOGIN)).status_code

    codes: list[int] = []
    for _ in range(100):  # ten at a time: the test's clients share the BFF's event loop
        codes += await asyncio.gather(*(one() for _ in range(10)))
    assert codes.count(302) == 1000, {c: codes.count(c) for c in set(codes)}


async def test_one_browser_hammering_login_is_stopped(bff):
    """A browser keeps its binding cookie: past its own limit it gets 429, while another
    browser behind the same address goes on. (Its first start, before it has the cookie,
    counts against its address only.)"""
    limit = bff.settings.rate_limit_login_per_browser_per_minute
    async with bff.browser(CGNAT) as hammer:
        codes = [(await hammer.get(LOGIN)).status_code for _ in range(limit + 2)]
        assert codes == [302] * (limit + 1) + [429]
        assert int((await hammer.get(LOGIN)).headers["retry-after"]) > 0
    async with bff.browser(CGNAT) as neighbour:
        assert (await neighbour.get(LOGIN)).status_code == 302


async def test_a_script_without_cookies_is_stopped_by_the_per_address_flood_guard(make_bff):
    async with make_bff(rate_limit_login_per_minute=30) as bff, bff.browser(CGNAT) as script:
        codes = []
        for _ in range(31):
            script.cookies.clear()
            codes.append((await script.get(LOGIN)).status_code)
        assert codes == [302] * 30 + [429]
        async with bff.browser("100.64.17.4") as elsewhere:
            assert (await elsewhere.get(LOGIN)).status_code == 302


async def test_ipv6_addresses_share_a_bucket_per_64(make_bff):
    """Eight addresses of one /64 are one subscriber's prefix: one bucket."""
    async with make_bff(rate_limit_login_per_minute=5) as bff:
        codes = []
        for i in range(8):
            async with bff.browser(f"2001:db8:1:2::{i + 1:x}") as phone:
                codes.append((await phone.get(LOGIN)).status_code)
        assert codes == [302] * 5 + [429] * 3
        async with bff.browser("2001:db8:1:3::1") as other_prefix:
            assert (await other_prefix.get(LOGIN)).status_code == 302


async def test_the_ipv6_prefix_length_is_a_setting(make_bff):
    async with make_bff(rate_limit_login_per_minute=2, rate_limit_ipv6_prefix=128) as bff:
        for i in range(4):
            async with bff.browser(f"2001:db8:1:2::{i + 1:x}") as phone:
                assert (await phone.get(LOGIN)).status_code == 302


async def test_state_flooding_is_capped_per_app(make_bff, redis: Redis):
    """From many addresses at once: past the app's ceiling, 503 with Retry-After, and the
    number of live states in Redis stays at the ceiling."""
    async with make_bff(rate_limit_login_per_app_per_minute=25) as bff:
        codes = []
        for i in range(40):
            async with bff.browser(f"198.51.100.{i + 1}") as bot:
                r = await bot.get(LOGIN)
                codes.append(r.status_code)
        assert codes == [302] * 25 + [503] * 15
        assert 'data-error="busy"' in r.text and int(r.headers["retry-after"]) > 0
        assert "Mange logger inn akkurat nå" in r.text
        async with bff.browser("198.51.100.200") as api:
            refused = await api.post(
                f"{BFF}/api/web/auth/start", json={"return_to": f"{APP_ORIGIN}/done"}
            )
        assert refused.status_code == 503 and refused.json()["type"].endswith(":busy")
        prefix = bff.settings.redis_key_prefix
        states = [k async for k in redis.scan_iter(match=f"{prefix}state:*")]
        assert len(states) == 25
        async with bff.browser("198.51.100.201") as other_app:  # another app has its own
            r = await other_app.get(f"{BFF}/auth/other/login?return_to=https://other.bff.test/")
            assert r.status_code == 302


async def test_one_hammering_client_cannot_use_up_the_app_ceiling(make_bff):
    """Starts the client's own limits refuse do not count towards the app's ceiling: others
    still get in."""
    async with make_bff(
        rate_limit_login_per_minute=10, rate_limit_login_per_app_per_minute=25
    ) as bff:
        async with bff.browser(CGNAT) as hammer:
            codes = [(await hammer.get(LOGIN)).status_code for _ in range(60)]
        assert codes == [302] * 10 + [429] * 50
        async with bff.browser("198.51.100.77") as someone:
            assert (await someone.get(LOGIN)).status_code == 302


async def test_a_hybrid_app_with_origin_null_can_start_a_login(browser):
    """Only a logout is refused cross-site without a cookie: a WebView page (`Origin: null`)
    may still start a login through the API."""
    r = await browser.post(
        f"{BFF}/api/mobile/auth/start",
        json={"return_to": "https://app.bff.test/mobile"},
        headers={"Origin": "null"},
    )
    assert r.status_code == 200


# -- 9. Bearer 401s say why ------------------------------------------------------------------


async def test_a_bearer_401_carries_www_authenticate_invalid_token(browser):
    r = await browser.get(
        f"{BFF}/api/mobile/user-info", headers={"Authorization": "Bearer not-a-session"}
    )
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer error="invalid_token"'


async def test_a_401_without_credentials_carries_a_bare_bearer_challenge(browser):
    r = await browser.get(f"{BFF}/api/mobile/user-info")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"


async def test_a_callback_from_another_browser_cannot_end_the_login(bff, browser, sandbox):
    """Someone who learnt the state (it crosses the plain-http hop) sends its callback, with
    Telenor's error or a code, from another browser: the wrong-browser page, and the login is
    left for the browser that started it, which still finishes."""
    walk = await walk_login(browser, follow_callback=False)
    state = query(walk.callback_url)["state"]
    async with bff.browser() as stranger:
        for forged in (f"error=access_denied&state={state}", f"code=forged&state={state}"):
            page = await stranger.get(f"{BFF}/auth/web/callback?{forged}")
            assert page.status_code == 400 and 'data-error="wrong_browser"' in page.text
    assert sandbox.calls("/oauth/v2/token") == []
    done = await browser.get(walk.callback_url)
    assert done.status_code == 302 and done.headers["location"] == f"{APP_ORIGIN}/done"
