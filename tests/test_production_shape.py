"""The production shape (`tests/support/rig.py`): nginx with real TLS, two replicas, Redis under
Sentinel with a replica, the sandbox as Telenor. Real Chromium over https, then failure drills
and overload under a bounded load (`bench/load.py`), loopback only, seconds each.

Run with `-s` to see the figures; every drill also prints them into the test output.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as sync_redis
from playwright.async_api import Browser, BrowserContext, Page, Request, async_playwright

from bench.load import Load, run
from bench.overload import overload, sweep
from tests.support.chromium import ARTIFACTS, CHROMIUM, FLAGS
from tests.support.rig import APP_HOST, BFF_HOST, ENTRY_HOST, TELENOR_HOST, Rig
from tests.support.servers import until

COOKIE = "__Host-Http-bff-web"
USER_INFO = "/api/web/user-info"
RIG_FLAGS = [*FLAGS, "--host-resolver-rules=MAP *.example.no 127.0.0.1"]
# Playwright turns Chromium's HTTPS-Upgrades off (its own default); a test that wants the
# browser as users get it drops that one default argument and keeps the rest.
PLAYWRIGHT_FEATURES_OFF = (
    "AvoidUnnecessaryBeforeUnloadCheckSync,DestroyProfileOnBrowserClose,HttpsUpgrades,"
    "HttpsFirstBalancedModeAutoEnable,LensOverlay,MediaRouter,PaintHolding,"
    "ThirdPartyStoragePartitioning,AvoidCorsURLLoaderRestartOnRedirect,TcpPortRandomizationWin,"
    "OptimizationHints,NetworkTimeServiceQuerying,AimEnabled,PreconnectToSearch,"
    "msForceBrowserSignIn,msEdgeUpdateLaunchServicesPreferredVersion"
)

# No skip: without nginx, certutil or Chromium (./scripts/test installs all three) the rig
# fails to start, and says which is missing.
MISSING = [name for name in ("nginx", "certutil", "chromium") if not shutil.which(name)]


_terminal: list[Any] = []


@pytest.fixture(scope="module", autouse=True)
def _report_to_the_terminal(pytestconfig: pytest.Config) -> None:
    plugins = pytestconfig.pluginmanager
    _terminal[:] = [plugins.getplugin("terminalreporter"), plugins.getplugin("capturemanager")]


def say(text: str) -> None:
    """Figures for the test output: written to pytest's terminal, past its output capture,
    so that every run (CI's included) shows them."""
    line = f"[production shape] {text}"
    if not _terminal or None in _terminal:
        print(line, flush=True)
        return
    reporter, capture = _terminal
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        reporter.write_line(line)


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    assert not MISSING, f"not installed: {', '.join(MISSING)} (./scripts/test installs them)"
    # One generator plays every user from one address: the per-session API limit would count
    # its thousands of calls per minute against a handful of sessions.
    shape = Rig(env_overrides={"BFF_RATE_LIMIT_API_PER_MINUTE": "1000000"}).start()
    say("up:\n" + shape.describe())
    yield shape
    shape.close()


class Loopback(httpx.AsyncBaseTransport):
    """httpx to the rig's hosts: connect to 127.0.0.1, keep the name for Host, SNI and the
    certificate check (the cookie jar sees the real URL)."""

    def __init__(self, ca: Path) -> None:
        self._inner = httpx.AsyncHTTPTransport(verify=ssl.create_default_context(cafile=ca))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        extensions = {**request.extensions, "sni_hostname": host}
        mapped = httpx.Request(
            request.method,
            request.url.copy_with(host="127.0.0.1"),
            headers=request.headers,
            stream=request.stream,
            extensions=extensions,
        )
        return await self._inner.handle_async_request(mapped)

    async def aclose(self) -> None:
        await self._inner.aclose()


def client(rig: Rig) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=Loopback(rig.ca), follow_redirects=False, timeout=10)


async def login(rig: Rig, msisdn: str = "4790000001") -> str:
    """A USSD login through the rig, by HTTP; returns the session cookie's value."""
    async with client(rig) as browser, httpx.AsyncClient() as phone:
        r = await browser.get(f"https://{BFF_HOST}/auth/web/login?return_to=https://{APP_HOST}/")
        assert r.status_code == 302, r.text
        r = await browser.get(r.headers["location"])  # Telenor's authorize page
        attempt = r.headers["location"].rsplit("/", 1)[-1]
        answered = await phone.post(
            f"http://127.0.0.1:{rig.sandbox_port}/sandbox/ussd/{attempt}",
            json={"answer": "1", "msisdn": msisdn},
        )
        assert answered.status_code == 200, answered.text
        consent = f"http://{TELENOR_HOST}/sandbox/consent/{attempt}"
        r = await browser.post(consent, data={"decision": "approve"})
        r = await browser.get(r.headers["location"])  # the BFF's callback
        assert r.status_code == 302 and r.headers["location"] == f"https://{APP_HOST}/", r.text
        return browser.cookies[COOKIE]


def proxied(cookies: list[str]) -> list[tuple[str, dict[str, str]]]:
    return [(USER_INFO, {"Cookie": f"{COOKIE}={c}", "X-CSRF": "1"}) for c in cookies]


def tls(rig: Rig) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=rig.ca)


async def through_nginx(rig: Rig, cookies: list[str], seconds: float, **kw: Any) -> Load:
    return await run(
        "127.0.0.1",
        443,
        proxied(cookies),
        server_name=BFF_HOST,
        tls=tls(rig),
        clients=kw.pop("clients", 8),
        seconds=seconds,
        mark_header="X-Replica",
        **kw,
    )


async def still_signed_in(rig: Rig, cookies: list[str]) -> int:
    """How many of these sessions answer 200 now (each asked twice, so both replicas see it)."""
    lost = 0
    async with client(rig) as browser:
        for value in cookies:
            for _ in range(2):
                r = await browser.get(
                    f"https://{BFF_HOST}{USER_INFO}",
                    headers={"Cookie": f"{COOKIE}={value}", "X-CSRF": "1"},
                )
                if r.status_code != 200:
                    lost += 1
                    break
    return lost


# -- real Chromium over real https --------------------------------------------------------


@pytest.fixture(scope="module")
def nssdb(rig: Rig, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home whose NSS database trusts the rig's CA: Chromium on Linux reads ~/.pki/nssdb."""
    home = tmp_path_factory.mktemp("chromium-home")
    db = home / ".pki" / "nssdb"
    db.mkdir(parents=True)
    subprocess.run(["certutil", "-d", f"sql:{db}", "-N", "--empty-password"], check=True)
    subprocess.run(
        ["certutil", "-d", f"sql:{db}", "-A", "-t", "C,,", "-n", "rig-ca", "-i", str(rig.ca)],
        check=True,
    )
    return home


async def chromium(nssdb: Path, upgrades: bool) -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        args = list(RIG_FLAGS)
        ignore: list[str] = []
        if upgrades:  # Chromium as shipped: HTTPS-Upgrades on
            ignore = [f"--disable-features={PLAYWRIGHT_FEATURES_OFF}"]
            kept = [f for f in PLAYWRIGHT_FEATURES_OFF.split(",") if not f.startswith("Https")]
            args.append("--disable-features=" + ",".join(kept))
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM,
            args=args,
            ignore_default_args=ignore,
            env={**os.environ, "HOME": str(nssdb)},
        )
        yield browser
        await browser.close()


async def on_mobile_data(context: BrowserContext, msisdn: str) -> None:
    """This browser is a phone on mobile data with this line: the rig's "mobile network" (its
    nginx, on plain http to Telenor only) tells Telenor the line from the `line` cookie."""
    await context.add_cookies(
        [{"name": "line", "value": msisdn, "domain": TELENOR_HOST, "path": "/"}]
    )


def navigations(page: Page) -> list[str]:
    """Every URL the page's main frame requests, redirect hops included."""
    seen: list[str] = []

    def note(request: Request) -> None:
        if request.is_navigation_request() and request.frame == page.main_frame:
            seen.append(request.url)

    page.on("request", note)
    return seen


async def answer_ussd(page: Page, rig: Rig, msisdn: str) -> None:
    """The phone answers the USSD prompt (the sandbox's API stands in for the handset)."""
    attempt = page.url.rsplit("/", 1)[-1].split("?")[0]
    async with httpx.AsyncClient() as phone:
        r = await phone.post(
            f"http://127.0.0.1:{rig.sandbox_port}/sandbox/ussd/{attempt}",
            json={"answer": "1", "msisdn": msisdn},
        )
        assert r.status_code == 200, r.text


async def sign_in(page: Page, rig: Rig, link: str, msisdn: str) -> list[str]:
    """From the app's page, one of its sign-in links to consent and back; the URLs visited."""
    seen = navigations(page)
    await page.goto(f"https://{APP_HOST}/")
    await page.click(link)
    await page.wait_for_url(lambda url: "/sandbox/" in url)
    if "/sandbox/ussd/" in page.url:
        await answer_ussd(page, rig, msisdn)
        await page.wait_for_url(lambda url: "/sandbox/consent/" in url, timeout=15_000)
    await page.click("button[value=approve]")
    await page.wait_for_url(f"https://{APP_HOST}/")
    await page.wait_for_function("document.getElementById('out').textContent !== '-'")
    return seen


async def test_chromium_signs_in_over_real_https_with_production_cookies(rig: Rig, nssdb: Path):
    """USSD and network logins through nginx; the SPA then reads Mobile User Info with the
    production cookies, read back from the browser's jar; the requests went to both replicas."""
    async for browser in chromium(nssdb, upgrades=False):
        for flow, link, msisdn in (
            ("USSD", "#login", "4790000001"),
            ("network", "#network", "4790000002"),
        ):
            context = await browser.new_context()
            if flow == "network":
                await on_mobile_data(context, msisdn)
            page = await context.new_page()
            seen = await sign_in(page, rig, link, msisdn)
            out = await page.text_content("#out") or ""
            assert out.startswith("200 ") and msisdn[2:] in out.replace(" ", ""), out
            identified = "USSD page" if any("/sandbox/ussd/" in u for u in seen) else "network"
            assert identified == ("USSD page" if flow == "USSD" else "network"), seen
            if flow == "network":  # the plain-http legs really were http
                assert any(u.startswith(f"http://{ENTRY_HOST}/auth/web/") for u in seen), seen
                assert any(u.startswith(f"http://{TELENOR_HOST}/") for u in seen), seen
            cookies = {c["name"]: c for c in await context.cookies(f"https://{BFF_HOST}/")}
            session = cookies[COOKIE]
            assert session["secure"] and session["httpOnly"] and session["sameSite"] == "Strict"
            assert session["path"] == "/" and session["domain"] == BFF_HOST  # host-only
            say(
                f"Chromium {flow} login: identified by {identified}; Mobile User Info in the "
                f"SPA: {out[:60]}...; cookie {COOKIE}: Secure={session['secure']} "
                f"HttpOnly={session['httpOnly']} SameSite={session['sameSite']} "
                f"Path={session['path']} host-only on {session['domain']}"
            )
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / f"production-shape-{flow.lower()}.png"))
            await context.close()
    spread = rig.distribution()
    say(f"replica distribution (nginx's upstream per request): {spread}")
    assert len(spread) == 2 and min(spread.values()) > 0


async def test_https_upgrades_degrade_network_authentication_to_ussd(rig: Rig, nssdb: Path):
    """Chromium as shipped upgrades plain-http navigations to https where a host serves https.
    The entry on its own http-only host stays http (the upgrade fails and falls back); the
    entry on the BFF's own host becomes https, and `/auth/{app}/network` answers there too.
    Telenor's host serves https, so its authorize page is upgraded and the line cannot be
    identified: both logins end by USSD, and neither breaks."""
    cases = (
        ("a separate http-only host", f"http://{ENTRY_HOST}", "4790000003"),
        ("the BFF's own host", f"http://{BFF_HOST}", "4790000004"),
    )
    async for browser in chromium(nssdb, upgrades=True):
        for name, entry, msisdn in cases:
            context = await browser.new_context()
            await on_mobile_data(context, msisdn)
            page = await context.new_page()
            seen = navigations(page)
            mark = len(rig.served())
            await page.goto(f"{entry}/auth/web/login?return_to=https://{APP_HOST}/")
            await page.wait_for_url(lambda url: "/sandbox/" in url)
            assert "/sandbox/ussd/" in page.url, seen  # not identified by the network
            await answer_ussd(page, rig, msisdn)
            await page.wait_for_url(lambda url: "/sandbox/consent/" in url, timeout=15_000)
            await page.click("button[value=approve]")
            await page.wait_for_url(f"https://{APP_HOST}/")
            await page.wait_for_function("document.getElementById('out').textContent !== '-'")
            assert (await page.text_content("#out") or "").startswith("200 ")
            # What the servers saw (nginx's log), not what the browser tried first.
            hops = [
                f"{scheme}://{host}{path}"
                for scheme, host, _, path, _, _ in rig.served()[mark:]
                if path.startswith(("/auth/", "/oauth/"))
            ]
            if entry.endswith(ENTRY_HOST):  # the upgrade failed (no TLS there): http it is
                assert hops[:3] == [
                    f"http://{ENTRY_HOST}/auth/web/login",
                    f"https://{BFF_HOST}/auth/web/login",
                    f"http://{ENTRY_HOST}/auth/web/network",
                ], hops
            else:  # upgraded: the https login, which goes to Telenor directly
                assert hops[0] == f"https://{BFF_HOST}/auth/web/login", hops
            assert f"https://{TELENOR_HOST}/oauth/v2/authorize" in hops, hops
            assert f"http://{TELENOR_HOST}/oauth/v2/authorize" not in hops, hops
            say(f"HTTPS-Upgrades, entry on {name}: {' -> '.join(hops)}; identified by USSD")
            await context.close()


async def unreplicated(rig: Rig) -> float:
    """Session writes no replica acknowledged in time, over every replica's /metrics."""
    total = 0.0
    async with httpx.AsyncClient() as ops:
        for replica in rig.replicas:
            text = (await ops.get(f"http://127.0.0.1:{replica.admin_port}/metrics")).text
            for line in text.splitlines():
                if line.startswith("bff_redis_unreplicated_writes_total "):
                    total += float(line.split()[1])
    return total


# -- failure drills under load ------------------------------------------------------------


@pytest.fixture(scope="module")
async def sessions(rig: Rig) -> list[str]:
    return [await login(rig, f"479000000{i % 4 + 1}") for i in range(12)]


def answered_by(rig: Rig, load: Load) -> dict[str, int]:
    """Answers per replica (the last upstream nginx tried), and how many nginx retried."""
    names = {r.upstream: r.name for r in rig.replicas}
    counts: dict[str, int] = {}
    for mark, n in load.marks().items():
        tried = mark.split(", ")
        last = names.get(tried[-1], tried[-1])
        counts[last] = counts.get(last, 0) + n
        if len(tried) > 1:
            counts["retried by nginx"] = counts.get("retried by nginx", 0) + n
    return dict(sorted(counts.items()))


def report(rig: Rig, name: str, load: Load, lost: int | None = None) -> None:
    tail = "" if lost is None else f"; sessions lost {lost}"
    say(f"{name}: {load.summary()}; answered by {answered_by(rig, load)}{tail}")


async def test_rolling_restart_fails_no_request(rig: Rig, sessions: list[str]):
    """SIGTERM each replica in turn under load, start it again, wait for it to be ready."""
    done = asyncio.Event()

    async def restarts() -> None:
        for replica in rig.replicas:
            await asyncio.to_thread(rig.stop_replica, replica)
            await asyncio.to_thread(rig.start_replica, replica)
            # As an orchestrator does: the next one goes once this one takes traffic again
            # (nginx retries a server it marked failed only after `fail_timeout`).
            served = rig.distribution().get(replica.name, 0)
            await until(lambda r=replica, n=served: rig.distribution().get(r.name, 0) > n, 10)
        done.set()

    restarting = asyncio.create_task(restarts())
    load = await through_nginx(rig, sessions, 60, until=done.is_set)
    await restarting
    lost = await still_signed_in(rig, sessions)
    report(rig, "rolling restart (SIGTERM each replica)", load, lost)
    assert load.sent > 200 and load.failed == 0 and load.shed == 0 and lost == 0
    assert {r.name for r in rig.replicas} <= set(answered_by(rig, load))


async def test_a_killed_replica_costs_no_idempotent_get(rig: Rig, sessions: list[str]):
    """SIGKILL one replica under load: nginx retries the GETs it had on the other one."""
    victim = rig.replicas[0]
    before = sum(rig.distribution().values())
    loading = asyncio.create_task(through_nginx(rig, sessions, 3))
    await until(lambda: sum(rig.distribution().values()) > before + 100, 5)  # under load
    await asyncio.to_thread(rig.stop_replica, victim, signal.SIGKILL)
    load = await loading
    lost = await still_signed_in(rig, sessions)  # on the remaining replica alone
    report(rig, "replica lost (SIGKILL)", load, lost)
    assert load.failed == 0 and load.shed == 0 and lost == 0
    await asyncio.to_thread(rig.start_replica, victim)


def acknowledged(rig: Rig) -> bool:
    """The node Sentinel names as primary gets a replica's acknowledgement within 100 ms."""
    assert rig.redis is not None
    try:
        primary = sync_redis.Redis(port=rig.redis.primary_now())
        try:
            return int(primary.wait(1, 100)) == 1
        finally:
            primary.close()
    except sync_redis.RedisError:  # mid-switch: a replica, or not up yet
        return False


async def test_sessions_survive_a_redis_restart_with_persistence(rig: Rig, sessions: list[str]):
    """Stop both Redis nodes (AOF) and start them again: the sessions are there."""
    assert rig.redis is not None and rig.redis.replica is not None
    before, _ = rig.redis.by_role()
    nodes = (rig.redis.replica, rig.redis.primary)
    for node in nodes:
        await asyncio.to_thread(node.stop)
    async with client(rig) as browser:
        down = await browser.get(f"https://{BFF_HOST}/readyz")
    for node in reversed(nodes):
        await asyncio.to_thread(node.start)
    # Healthy again: Sentinel no longer flags the primary as down (until then the BFF answers
    # 503: redis-py asks Sentinel, which names no primary), and whichever node it names now
    # (it may have promoted the other) has a replica acknowledging its writes.
    sentinel = sync_redis.Redis(port=rig.redis.port, decode_responses=True)
    await until(lambda: sentinel.sentinel_master(rig.redis.service)["flags"] == "master", 15)
    sentinel.close()
    await until(lambda: acknowledged(rig), 30)  # (a replica resyncing after a restart)
    lost = await still_signed_in(rig, sessions)
    after, _ = rig.redis.by_role()
    same = "the same node" if after is before else "the other node (Sentinel promoted it)"
    say(
        f"Redis restart with persistence: /readyz while down {down.status_code}; "
        f"primary afterwards: {same}; sessions lost {lost}"
    )
    assert down.status_code == 503 and lost == 0


async def test_losing_the_redis_primary_gives_only_503s_and_loses_no_session(
    rig: Rig, sessions: list[str]
):
    """SIGKILL the primary under load. Until Sentinel promotes the replica: 503 with
    Retry-After only (no 500, no hung request). Then service comes back with no restart, and
    every session that had finished logging in is still there (its write was WAITed for)."""
    assert rig.redis is not None and rig.redis.replica is not None
    before = await unreplicated(rig)
    fresh = await login(rig, "4790000004")  # finished just before the kill
    assert await unreplicated(rig) == before  # its write reached the replica in time
    say(f"Redis primary lost: session writes no replica acknowledged in time so far: {before:g}")
    everyone = [*sessions, fresh]
    primary, replica = rig.redis.by_role()
    old = primary.port
    recovered: list[float] = []

    def back() -> bool:
        if rig.redis is None or rig.redis.primary_now() == old:
            return False
        recovered.append(time.monotonic()) if not recovered else None
        return time.monotonic() - recovered[0] > 2  # two seconds of traffic after it

    killed_at = time.monotonic()
    assert primary._proc is not None
    primary._proc.kill()
    load = await through_nginx(rig, everyone, 30, request_timeout=5, until=back)
    assert rig.redis.primary_now() != old, "Sentinel did not promote the replica"
    lost = await still_signed_in(rig, everyone)
    statuses = load.statuses()
    report(
        rig,
        f"Redis primary lost (SIGKILL; Sentinel named the replica after "
        f"{recovered[0] - killed_at:.1f} s)",
        load,
        lost,
    )
    say(f"  statuses {dict(statuses)}")
    assert set(statuses) <= {200, 503}, statuses  # no 500, no timeout (0)
    assert all(o.retry_after for o in load.outcomes if o.status == 503)
    assert load.outcomes[-1].status == 200 and lost == 0
    promoted = sync_redis.Redis(port=replica.port)
    assert promoted.info("replication")["role"] == "master"
    promoted.close()


# -- overload -----------------------------------------------------------------------------


async def test_overload_at_ten_times_saturation_is_shed_quickly(rig: Rig, sessions: list[str]):
    """One replica, loaded directly: find the concurrency C that saturates it, restart it with
    BFF_MAX_IN_FLIGHT = 2 x C and a 10 ms wait for a slot (short, so that the queue
    overflows), and load it with 10 x C clients that honour Retry-After. Nothing fails or
    times out, and every refusal is a 503 with Retry-After. The goodput, p99 and the 503s'
    latency are printed, not asserted: here the load generator shares two CPUs with the
    replica, the sandbox and Redis, and its own event loop's lag is in every latency it
    measures (bench/README.md, "Overload", has the figures and what they do not show)."""
    replica = rig.replicas[0]
    headers = {"X-Forwarded-Proto": "https"}  # as nginx sends it (this client is loopback)
    paths = [(p, {**h, **headers}) for p, h in proxied(sessions)]
    sat = await sweep("127.0.0.1", replica.port, paths, top=32)
    say(f"overload, one replica: {sat.describe()}")
    ten, limit = 10 * sat.clients, 2 * sat.clients
    unlimited = await overload("127.0.0.1", replica.port, paths, ten, honour=True)
    await asyncio.to_thread(rig.stop_replica, replica)
    shedding = {"BFF_MAX_IN_FLIGHT": str(limit), "BFF_SHED_AFTER_MS": "10"}
    await asyncio.to_thread(rig.start_replica, replica, **shedding)
    try:
        shed = await overload("127.0.0.1", replica.port, paths, ten, honour=True)
    finally:
        await asyncio.to_thread(rig.stop_replica, replica)
        await asyncio.to_thread(rig.start_replica, replica)
    for name, load in (("no limit", unlimited), (f"BFF_MAX_IN_FLIGHT={limit}", shed)):
        say(
            f"overload, {ten} clients (10 x {sat.clients}), {name}: {load.summary()}; "
            f"goodput/peak {load.goodput / sat.peak:.2f}"
        )
    assert shed.failed == 0 and shed.shed > 0  # no 500, no timeout; some were shed
    assert all(o.retry_after for o in shed.outcomes if o.status == 503)
    assert shed.ok > 0 and unlimited.failed == 0
