"""Metrics, logs, request ids, redaction, rate limits, trusted proxies."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from service.app import client_secrets
from service.kit.crypto import new_token
from service.observe.logs.access import AccessLog
from service.observe.logs.formats import HumanFormatter, JsonFormatter
from service.observe.logs.handler import LineHandler
from service.observe.logs.redact import Redactor
from service.sandbox.app import ForcedResponse
from tests.support.browser import (
    APP_ORIGIN,
    BFF,
    native_login,
    query,
    redeem,
    scrape,
    walk_login,
)
from tests.support.config import APPS, SECRETS
from tests.support.metrics import lines, sample
from tests.support.servers import until

CSRF = {"X-CSRF": "1"}
pytestmark = pytest.mark.usefixtures("sandbox")


async def test_request_redis_build_and_process_metrics(bff, browser, sandbox):
    """Every request in the request histogram by route template, method and status class
    (labels render in name order)
    (unrouted ones as `unmatched`, unknown methods as `other`); Redis round trips by command;
    the build; the process."""
    walk = await walk_login(browser)
    assert walk.final.status_code == 302
    for _ in range(2):
        assert (await browser.get(f"{BFF}/api/web/user-info", headers=CSRF)).status_code == 200
    await browser.get(f"{BFF}/no/such/page")
    await browser.request("FROB", f"{BFF}/api/web/user-info", headers=CSRF)
    text = await scrape(browser)
    request = "bff_http_request_duration_seconds_count"
    assert sample(text, request, method="GET", route="/api/{app}/user-info", status="2xx") == 2
    assert sample(text, request, method="GET", route="/auth/{app}/callback", status="3xx") == 1
    assert sample(text, request, method="GET", route="unmatched", status="4xx") == 1
    assert sample(text, request, method="other", route="/api/{app}/user-info", status="4xx") == 1
    bucket = "bff_http_request_duration_seconds_bucket"
    assert (
        sample(text, bucket, le="+Inf", method="GET", route="/api/{app}/user-info", status="2xx")
        == 2
    )
    assert sample(text, "bff_redis_command_seconds_count", command="EVALSHA") >= 2
    assert sample(text, "bff_redis_command_seconds_count", command="pipeline") >= 1
    assert re.search(r'^bff_build_info\{version="[^"]+"\} 1\.0$', text, re.M)
    assert sample(text, "process_resident_memory_bytes") > 0


async def test_metrics_count_the_flow_by_app_reason_path_and_status(bff, browser, sandbox):
    """Logins started/completed/failed, token exchange, proxied calls, rejections, Redis errors."""
    await walk_login(browser)
    walk = await walk_login(browser, decision="deny")
    assert walk.final.status_code == 403
    replay = await browser.get(walk.callback_url)
    assert replay.status_code in (400, 403)
    ok = await browser.get(f"{BFF}/api/web/user-info", headers=CSRF)
    sandbox.faults.responses = [ForcedResponse("user-info", 500, 1)]
    failed = await browser.get(f"{BFF}/api/web/user-info", headers=CSRF)
    refused = await browser.get(f"{BFF}/api/web/user-info")  # no X-CSRF
    assert (ok.status_code, failed.status_code, refused.status_code) == (200, 502, 401)

    text = await scrape(browser)
    assert sample(text, "bff_login_started_total", app="web", mode="cookie") == 2
    assert sample(text, "bff_login_completed_total", app="web", mode="cookie") == 1
    assert sample(text, "bff_login_failed_total", app="web", reason="access_denied") >= 1
    assert sample(text, "bff_token_exchange_seconds_count", app="web", outcome="ok") == 1
    path = "user-info/v1/users"
    assert sample(text, "bff_proxy_requests_total", app="web", path=path, status="2xx") == 1
    assert sample(text, "bff_proxy_requests_total", app="web", path=path, status="5xx") == 1
    assert sample(text, "bff_proxy_upstream_seconds_count", app="web", path=path) == 2
    assert sample(text, "bff_browser_rejections_total", app="web", reason="csrf_header") == 1
    assert sample(text, "bff_errors_total", code="upstream_error") == 1
    assert "bff_redis_errors_total 0.0" in text
    assert "bff_rate_limited_total" in text


async def test_redis_errors_are_counted(make_bff, private_redis):
    async with make_bff(redis_url=private_redis.url) as bff, bff.browser() as browser:
        private_redis.stop()
        r = await browser.get(f"{BFF}/api/web/user-info", headers={"Authorization": "Bearer x"})
        assert r.status_code == 503
        text = await scrape(browser)
        assert sample(text, "bff_redis_errors_total") == 1


async def test_request_id_is_generated_accepted_or_replaced_and_sent_upstream(
    browser, sandbox, log_output
):
    """Valid ids are kept, absent or unsafe ones replaced; the id reaches Telenor and the log."""
    await walk_login(browser)
    sandbox.requests.clear()
    kept = await browser.get(
        f"{BFF}/api/web/user-info", headers={**CSRF, "X-Request-ID": "trace-42.a"}
    )
    assert kept.headers["x-request-id"] == "trace-42.a"
    assert sandbox.calls("/user-info/v1/users")[0].headers["x-request-id"] == "trace-42.a"
    made = await browser.get(f"{BFF}/healthz")
    assert re.fullmatch(r"[0-9a-f]{16}", made.headers["x-request-id"])
    for unsafe_id in ("a b\n{evil}", new_token(32)):  # bad characters; shaped like a secret
        unsafe = await browser.get(f"{BFF}/healthz", headers={"X-Request-ID": unsafe_id})
        assert re.fullmatch(r"[0-9a-f]{16}", unsafe.headers["x-request-id"])
    uuid = "0b8e6f1c-7a39-4c1e-9d5e-2f6a1b3c4d5e"
    assert (await browser.get(f"{BFF}/healthz", headers={"X-Request-ID": uuid})).headers[
        "x-request-id"
    ] == uuid
    records = lines(log_output())
    access = [r for r in records if r["logger"] == "line_auth_bff.access"]
    assert {"request_id": "trace-42.a", "status": 200, "route": "/api/{app}/user-info"}.items() <= (
        next(r for r in access if r.get("request_id") == "trace-42.a").items()
    )


async def test_one_access_line_per_request_with_the_route_template_not_the_raw_path(
    browser, log_output
):
    await browser.get(f"{BFF}/api/web/telenor/some/private/path", headers=CSRF)
    await browser.get(f"{BFF}/no/such/thing")
    # Refused by the CSRF guard before routing: the line still names the route.
    await browser.post(f"{BFF}/api/web/auth/start", headers={"Cookie": "__Host-Http-bff-web=x"})
    access = [r for r in lines(log_output()) if r["logger"] == "line_auth_bff.access"]
    assert [(r["method"], r["route"], r["status"]) for r in access] == [
        ("GET", "/api/{app}/telenor/{path:path}", 404),
        ("GET", None, 404),
        ("POST", "/api/{app}/auth/start", 401),
    ]
    assert all(isinstance(r["duration_ms"], float) and r["client"] for r in access)
    ours = [r for r in lines(log_output()) if str(r["logger"]).startswith("line_auth_bff")]
    assert ours and "private" not in json.dumps(ours)  # (the test's own httpx logs the URL)


async def test_auth_events_are_logged_with_their_reasons(browser, log_output):
    await walk_login(browser)
    await walk_login(browser, decision="deny")
    await browser.post(f"{BFF}/auth/web/logout", headers=CSRF)
    events = [
        (r["msg"], r.get("reason") or r.get("mode") or r.get("via"))
        for r in lines(log_output())
        if r["logger"] == "line_auth_bff"
    ]
    assert events == [
        ("login started", "cookie"),
        ("login completed", "cookie"),
        ("login started", "cookie"),
        ("login failed", "access_denied"),
        ("logout", "cookie"),
    ]


def test_redactor_scrubs_secrets_from_messages_and_tracebacks():
    """Even a traceback that carries tokens is scrubbed; ordinary words and ids survive."""
    token = new_token(32)
    redact = Redactor(["client-secret-literal"])
    try:
        raise ValueError(f"upstream said no to {token} with client-secret-literal")
    except ValueError:
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "GET /cb?code=abc123&state=%s", ("st",), None
        )
        record.exc_info = sys.exc_info()
    text = JsonFormatter().format(record)
    assert token not in text
    assert "code=[redacted]" in text and "state=[redacted]" in text
    samples = {
        "Authorization: Bearer abc.def-ghi": "Authorization: Bearer [redacted]",
        'cookie: __Host-Http-bff-web="v"; x=1': "cookie: [redacted]",
        '{"session_token": "s3cr3t"}': '{"session_token": "[redacted]"}',
        "request 0b8e6f1c-7a39-4c1e-9d5e-2f6a1b3c4d5e done": (
            "request 0b8e6f1c-7a39-4c1e-9d5e-2f6a1b3c4d5e done"
        ),
        "in asyncio_default_fixture_loop_scope": "in asyncio_default_fixture_loop_scope",
    }
    for raw, expected in samples.items():
        assert redact(raw) == expected
    assert redact("the client-secret-literal leaked") == "the [secret] leaked"


async def test_whole_flow_leaves_no_secret_in_any_log_line_or_metric(make_bff, sandbox, log_output):
    """Login, deny, proxy, a native app's code, logout and failures; then every secret is
    searched for."""
    secrets: list[str] = [*SECRETS]
    async with make_bff() as bff, bff.browser() as browser:
        walk = await walk_login(browser, network=True)
        secrets += [query(walk.callback_url)["code"], query(walk.authorize_url)["state"]]
        secrets += [v for k, v in browser.cookies.items() if "bff-" in k]
        assert (await browser.get(f"{BFF}/api/web/user-info", headers=CSRF)).status_code == 200
        denied = await walk_login(browser, decision="deny")
        secrets.append(query(denied.authorize_url)["state"])
        await browser.get(walk.callback_url)  # replayed code
        await browser.get(f"{BFF}/auth/web/callback?code=forged-code-value-1&state=forged")
        sandbox.faults.responses = [ForcedResponse("user-info", 401, 1)]
        await browser.get(f"{BFF}/api/web/user-info", headers=CSRF)  # ends the session
        # Native app: its code, verifier and state, and the bearer session token.
        mobile = await native_login(bff)
        secrets += [query(mobile.walk.callback_url)["code"], mobile.verifier, mobile.code]
        secrets += [mobile.state, *mobile.cookies.values()]
        token = (await redeem(browser, mobile)).json()["access_token"]
        secrets.append(token)
        bearer = {"Authorization": f"Bearer {token}"}
        await browser.get(f"{BFF}/api/mobile/device-info", headers=bearer)
        again = await redeem(browser, mobile)  # a replayed code (it also ends the session)
        assert again.status_code == 400
        await browser.post(f"{BFF}/auth/mobile/logout", headers=bearer)
        metrics = await scrape(browser)
    secrets += list(sandbox.tokens)
    logged = log_output()
    assert "login completed" in logged and "logout" in logged
    assert len(lines(logged)) > 30
    secrets = [s for s in secrets if s]
    assert len(secrets) >= 15
    for secret in secrets:
        assert secret not in logged, "a secret reached the log"
        assert secret not in metrics, "a secret reached /metrics"


async def test_login_rate_limit_is_per_client_ip_and_shared_by_two_instances(make_bff):
    """3 starts a minute per IP across both instances; the 4th: 429 page / problem + Retry-After."""
    async with (
        make_bff(rate_limit_login_per_minute=3) as one,
        make_bff(rate_limit_login_per_minute=3) as two,
    ):
        async with one.browser("198.51.100.7") as a, two.browser("198.51.100.7") as b:
            url = f"{BFF}/auth/web/login?return_to={APP_ORIGIN}/done"
            statuses = [(await c.get(url)).status_code for c in (a, b, a)]
            assert statuses == [302, 302, 302]
            page = await b.get(url)
            assert page.status_code == 429
            assert page.headers["content-type"].startswith("text/html")
            assert 0 < int(page.headers["retry-after"]) <= 60
            api = await a.post(
                f"{BFF}/api/web/auth/start", json={"return_to": f"{APP_ORIGIN}/done"}
            )
            assert api.status_code == 429
            assert api.headers["content-type"] == "application/problem+json"
            assert api.json()["type"].endswith("rate_limited") and api.headers["retry-after"]
        async with one.browser("198.51.100.8") as elsewhere:
            assert (await elsewhere.get(url)).status_code == 302
        one.clock.advance(60)  # the next window
        async with one.browser("198.51.100.7") as a:
            assert (await a.get(url)).status_code == 302
        async with one.browser() as ops:
            text = await scrape(ops)
        assert sample(text, "bff_rate_limited_total", kind="login") == 1


async def test_api_rate_limit_is_per_session_and_shared_by_two_instances(make_bff):
    async with (
        make_bff(rate_limit_api_per_minute=4) as one,
        make_bff(rate_limit_api_per_minute=4) as two,
        one.browser() as b1,
        two.browser() as b2,
    ):
        await walk_login(b1)
        b2.cookies.set("__Host-Http-bff-web", b1.cookies.get("__Host-Http-bff-web"), "bff.test")
        url = f"{BFF}/api/web/user-info"
        headers = {**CSRF, "Origin": APP_ORIGIN}
        codes = [(await b.get(url, headers=headers)).status_code for b in (b1, b2, b1, b2)]
        assert codes == [200] * 4
        limited = await b2.get(url, headers=headers)
        assert limited.status_code == 429
        assert limited.json()["type"].endswith(":rate_limited")
        assert 0 < int(limited.headers["retry-after"]) <= 60
        # The SPA can read it: CORS headers are on the 429 too.
        assert limited.headers["access-control-allow-origin"] == APP_ORIGIN
        async with one.browser() as fresh:  # another session has its own budget
            await walk_login(fresh, msisdn="4790000002")
            assert (await fresh.get(url, headers=CSRF)).status_code == 200


async def test_forged_forwarded_for_from_an_untrusted_peer_changes_nothing(make_bff, log_output):
    """XFF is believed from BFF_TRUSTED_PROXIES only: the rate-limit bucket and the log agree."""
    async with make_bff(rate_limit_login_per_minute=2) as bff:
        url = f"{BFF}/auth/web/login?return_to={APP_ORIGIN}/done"
        async with bff.browser("203.0.113.9") as untrusted:
            codes = [
                (await untrusted.get(url, headers={"X-Forwarded-For": f"10.0.0.{i}"})).status_code
                for i in range(3)
            ]
        assert codes == [302, 302, 429]
        async with bff.browser("127.0.0.1") as proxy:  # a trusted proxy: one bucket per client
            codes = [
                (await proxy.get(url, headers={"X-Forwarded-For": f"10.0.1.{i}"})).status_code
                for i in range(3)
            ]
        assert codes == [302, 302, 302]
    clients = [r["client"] for r in lines(log_output()) if r["logger"] == "line_auth_bff.access"]
    assert clients == ["203.0.113.9"] * 3 + ["10.0.1.0", "10.0.1.1", "10.0.1.2"]


async def test_forwarded_for_names_the_rightmost_address_that_is_not_a_trusted_proxy(
    make_bff, log_output
):
    """Behind two trusted hops (a CIDR range), an address the client forged in front of the
    chain is not believed: the client is the address the outer proxy saw. Every X-Forwarded-For
    header counts, in order."""
    trusted = ["127.0.0.1", "10.9.0.0/16"]
    async with make_bff(trusted_proxies=trusted) as bff, bff.browser("127.0.0.1") as proxy:
        for forged in (
            [("X-Forwarded-For", "6.6.6.6, 198.51.100.7"), ("X-Forwarded-For", "10.9.1.2")],
            [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "198.51.100.8, 10.9.1.2")],
        ):
            assert (await proxy.get(f"{BFF}/healthz", headers=forged)).status_code == 200
        one = {"X-Forwarded-For": "10.9.3.4"}  # only trusted hops: the first is the client
        assert (await proxy.get(f"{BFF}/healthz", headers=one)).status_code == 200
    clients = [r["client"] for r in lines(log_output()) if r["logger"] == "line_auth_bff.access"]
    assert clients == ["198.51.100.7", "198.51.100.8", "10.9.3.4"]


def test_the_redactor_knows_every_configured_client_secret(bff):
    redactor = Redactor(client_secrets(bff.settings))  # what `serve` and `dev` log through
    for secret in SECRETS:
        assert redactor(f"x {secret} y") == "x [secret] y"


async def test_an_unexpected_error_is_a_500_problem_with_its_request_id_and_a_redacted_traceback(
    make_bff, log_output
):
    """A bug answers 500 problem+json (no traceback, no secret); the log names the request."""
    token = new_token(32)
    async with make_bff() as bff:

        async def broken() -> None:
            raise RuntimeError(f"bug while holding {token}")

        bff.asgi.app.add_api_route("/api/web/broken", broken)  # a route with a bug in it
        async with bff.browser() as browser:
            r = await browser.get(f"{BFF}/api/web/broken", headers={"X-Request-ID": "bug-1"})
            metrics = await scrape(browser)
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"].endswith(":internal") and "Traceback" not in r.text
    assert token not in r.text and r.headers["x-request-id"] == "bug-1"
    records = lines(log_output())
    error = next(x for x in records if x["msg"] == "unexpected error")
    assert error["request_id"] == "bug-1" and "RuntimeError" in str(error["exc"])
    assert token not in log_output()
    access = [x for x in records if x["logger"] == "line_auth_bff.access"]
    assert (access[0]["route"], access[0]["status"]) == ("/api/web/broken", 500)
    assert sample(metrics, "bff_errors_total", code="internal") == 1


@contextmanager
def sole_handler(path: Path) -> Iterator[AccessLog]:
    """The service's own handler as the root logger's only one (as `serve` runs), on a file,
    and the access log writing into it. Entered in the test's body: pytest adds its capture
    handlers after the fixtures run."""
    with path.open("w") as out:
        handler = LineHandler(out)
        handler.setFormatter(JsonFormatter())
        root = logging.getLogger()
        saved, level = root.handlers[:], root.level
        root.handlers = [handler]
        root.setLevel(logging.INFO)
        try:
            yield AccessLog(handler)
        finally:
            root.handlers = saved
            root.setLevel(level)
            handler.close()


ACCESS = ("GET", "/api/{app}/user-info", 200, 3.25, "203.0.113.9", "trace-1", None)


async def test_access_lines_skip_the_record_machinery_and_are_flushed_in_batches(tmp_path):
    """With our handler the only one, access lines go straight into its buffer: none is
    written at once, the event loop flushes them shortly after, and any record flushes them
    with it (uvicorn logs as it stops, so a stopped server has written every line)."""
    written = (tmp_path / "stdout").read_text
    with sole_handler(tmp_path / "stdout") as access:
        access.write(ACCESS)
        access.write(ACCESS)
        assert written() == ""  # buffered: no write per request
        await until(lambda: written().count("\n") == 2)  # flushed by the loop, within 0.2 s
        access.write(ACCESS)
        logging.getLogger("line_auth_bff").info("Finished server process")
        assert written().count("\n") == 4  # the record took the pending access line with it
    first = json.loads(written().splitlines()[0])
    assert first == {
        "ts": first["ts"],
        "level": "info",
        "logger": "line_auth_bff.access",
        "msg": "GET /api/{app}/user-info 200",
        "request_id": "trace-1",
        "method": "GET",
        "route": "/api/{app}/user-info",
        "status": 200,
        "duration_ms": 3.25,
        "client": "203.0.113.9",
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", first["ts"])


def test_access_lines_are_records_when_other_handlers_listen(tmp_path):
    """A second handler (a test's, an embedding app's) sees access lines as records."""
    other = io.StringIO()
    with sole_handler(tmp_path / "stdout") as access:
        logging.getLogger().addHandler(logging.StreamHandler(other))
        access.write((*ACCESS[:5], None, None))
    assert other.getvalue() == "GET /api/{app}/user-info 200\n"
    line = json.loads((tmp_path / "stdout").read_text())
    assert line["status"] == 200 and "request_id" not in line


def test_access_line_formats_escape_what_they_print():
    """A client address from a trusted proxy's X-Forwarded-For is the one free-form value."""
    fields = ("GET", None, 404, 0.5, 'x"y\\z', None, None)
    line = json.loads(JsonFormatter.access_line(0.0, fields))
    assert (line["client"], line["route"], line["msg"]) == ('x"y\\z', None, "GET (unmatched) 404")
    human = HumanFormatter.access_line(0.0, fields)
    assert human.endswith('INFO  GET (unmatched) 404 duration_ms=0.5 client=x"y\\z')


async def test_the_access_line_is_written_when_the_response_is_complete(
    browser, sandbox, log_output
):
    """A logout answers 204 and then calls Telenor's logout in the background (here it hangs
    until its 1 s timeout): the access line's duration stops at the response."""
    await walk_login(browser)
    sandbox.faults.hang = {"logout"}
    assert (await browser.post(f"{BFF}/auth/web/logout", headers=CSRF)).status_code == 204
    access = [
        x
        for x in lines(log_output())
        if x["logger"] == "line_auth_bff.access" and x["route"] == "/auth/{app}/logout"
    ]
    assert len(access) == 1 and access[0]["status"] == 204
    assert access[0]["duration_ms"] < 900  # the background call alone took 1000


# The sandbox's `other` client, its SPA moved to a site of its own.
SPA = {**APPS["other"], "allowed_origins": ["https://spa.example.org"]}
SPA["return_urls"] = ["https://spa.example.org/"]


def _warnings(log: str, message: str) -> list[dict[str, object]]:
    return [r for r in lines(log) if r["msg"] == message]


async def test_a_cookie_login_back_to_another_site_warns_once_naming_both_sites(
    make_bff, log_output
):
    """The login completes, then the page's calls carry no cookie (third-party cookies are
    blocked) and /session says signed out forever: the log says why, once, not per login."""

    async with make_bff(apps={**APPS, "other": SPA}) as bff, bff.browser() as browser:
        await walk_login(browser, return_to=f"{APP_ORIGIN}/done")  # same site: no warning
        assert _warnings(log_output(), "cookie login returned to another site") == []
        for _ in range(2):
            walk = await walk_login(browser, "other", return_to="https://spa.example.org/")
            assert walk.final is not None and walk.final.status_code == 302
    [warning] = _warnings(log_output(), "cookie login returned to another site")
    assert warning["app"] == "other" and warning["level"] == "warning"
    assert warning["bff_site"] == "https://bff.test"
    assert warning["page_site"] == "https://example.org"
    assert "README: Integrating a single-page app" in str(warning["hint"])


async def test_a_cors_refusal_names_the_origin_and_the_app_once(browser, log_output):
    """A call from an origin not on the app's list is answered without CORS headers (the page
    sees a bare TypeError), and a preflight from it refused: each is logged with the origin and
    the app, once per origin, however often the page retries."""
    evil = "https://evil.example"
    for _ in range(3):
        answer = await browser.get(f"{BFF}/api/web/session", headers={"Origin": evil})
        assert "access-control-allow-origin" not in answer.headers
        preflight = await browser.options(
            f"{BFF}/api/web/user-info",
            headers={"Origin": evil, "Access-Control-Request-Method": "GET"},
        )
        assert preflight.status_code == 403
    refused = _warnings(log_output(), "request refused")
    assert [(r["app"], r["reason"], r["origin"]) for r in refused] == [
        ("web", "cors_origin", evil),
        ("web", "preflight_origin", evil),
    ]
    assert all("BFF_APPS__WEB__ALLOWED_ORIGINS" in str(r["hint"]) for r in refused), [
        r["hint"] for r in refused
    ]
