"""The demo, the sandbox and the error page in real headless Chromium.

`dev`-style servers on loopback ports (the demo app, the sandbox on the next port, a real Redis),
driven by Playwright through Debian's /usr/bin/chromium (no browser is downloaded). Each test
leaves a screenshot of its end state in artifacts/browser/.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis as sync_redis
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from service.app import create_app
from service.dev import dev_settings
from service.sandbox import Sandbox
from tests.support.chromium import ARTIFACTS, CHROMIUM, FLAGS, ROOT
from tests.support.dev import adjacent_ports
from tests.support.servers import ThreadedServer, until

if not Path(CHROMIUM).exists():  # scripts/test installs it; a bare `pytest` may not have it
    pytest.skip(
        "Chromium is not installed (./scripts/test installs Debian's chromium package)",
        allow_module_level=True,
    )


@dataclass
class Dev:
    url: str  # the BFF (and the demo page)
    sandbox_url: str
    sandbox: Sandbox


@pytest.fixture(scope="module")
def dev(redis_url: str) -> Iterator[Dev]:
    port = adjacent_ports(2)
    prefix = f"browser:{uuid.uuid4().hex[:8]}:"
    settings = dev_settings(port, redis_url).model_copy(update={"redis_key_prefix": prefix})
    sandbox = Sandbox(settings)
    upstream = ThreadedServer(sandbox.app, port=port + 1).start()
    bff = ThreadedServer(create_app(settings), port=port, lifespan="on").start()
    yield Dev(settings.public_url, f"http://localhost:{port + 1}", sandbox)
    bff.stop()
    upstream.stop()
    client = sync_redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(scope="module")
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield browser
        await browser.close()


@pytest.fixture
async def context(chromium: Browser) -> AsyncIterator[BrowserContext]:
    ctx = await chromium.new_context(locale="nb-NO")
    yield ctx
    await ctx.close()


async def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def visited(page: Page) -> list[str]:
    """Every URL the page's main frame navigates to, recorded from now on."""
    urls: list[str] = []
    page.on(
        "framenavigated", lambda frame: urls.append(frame.url) if frame is page.main_frame else None
    )
    return urls


async def to_consent_by_ussd(page: Page, dev: Dev, msisdn: str) -> list[str]:
    """Demo → Fill in → the USSD waiting page; a phone answers 1; the page moves on by itself."""
    urls = visited(page)
    await page.goto(f"{dev.url}/demo")
    await expect(page.locator("#status")).to_have_text("Ikke logget inn")
    await page.click("#fill")
    await expect(page.locator("#ussd-title")).to_be_visible()
    attempt = page.url.rsplit("/", 1)[1]
    async with httpx.AsyncClient() as phone:  # the simulated phone, not the browser
        answer = await phone.post(
            f"{dev.sandbox_url}/sandbox/ussd/{attempt}", json={"answer": "1", "msisdn": msisdn}
        )
        assert answer.json() == {"status": "identified"}
    # The waiting page polls (a script, no reload) and lands on the consent page without a click.
    await expect(page.locator("#approve")).to_be_visible(timeout=10_000)
    return urls


async def to_consent_by_network(page: Page, dev: Dev, msisdn: str) -> list[str]:
    """The operator's header on plain-http requests identifies the line, as a mobile network
    enriches its subscribers' http traffic (the BFF ignores it; the sandbox reads it)."""
    await page.set_extra_http_headers({"X-Sandbox-MSISDN": msisdn})
    urls = visited(page)
    await page.goto(f"{dev.url}/demo")
    await expect(page.locator("#status")).to_have_text("Ikke logget inn")
    await page.click("#network-link")  # the demo's plain-http entry
    await expect(page.locator("#approve")).to_be_visible()
    return urls


async def test_ussd_path_fills_the_form(context: BrowserContext, dev: Dev) -> None:
    page = await context.new_page()
    urls = await to_consent_by_ussd(page, dev, "4790000001")
    await page.click("#approve")
    form = page.locator("#signup")
    await expect(form.locator("input[name=name]")).to_have_value("Kari Nordmann")
    await expect(form.locator("input[name=phone]")).to_have_value("4790000001")
    await expect(form.locator("input[name=email]")).to_have_value("kari.nordmann@example.no")
    await expect(form.locator("input[name=birthDate]")).to_have_value("1985-03-14")
    await expect(page.locator("#status")).to_contain_text("Logget inn")
    await expect(page.locator("#device")).to_contain_text("iPhone 15")
    assert any("/sandbox/ussd/" in u for u in urls)
    assert page.url == f"{dev.url}/demo"  # no code or state left in the address bar
    await shot(page, "ussd-filled")


async def test_the_demo_signs_in_through_the_js_client(context: BrowserContext, dev: Dev) -> None:
    """The demo imports the BFF's JS client from its fixed path, and every call it makes to
    the BFF goes through it: the cookie, `X-CSRF: 1`, and the problem it turns a 401 into."""
    page = await context.new_page()
    requests: list[tuple[str, dict[str, str]]] = []
    page.on("request", lambda r: requests.append((r.url, r.headers)))
    await to_consent_by_ussd(page, dev, "4790000001")
    await page.click("#approve")
    await expect(page.locator("#device")).to_contain_text("iPhone 15")
    assert f"{dev.url}/client/line-auth-bff.js" in [url for url, _ in requests]
    calls = {url: headers for url, headers in requests if "/api/demo/" in url}
    wanted = {f"{dev.url}/api/demo/{p}" for p in ("session", "user-info", "device-info")}
    assert set(calls) >= wanted
    assert all(headers.get("x-csrf") == "1" for headers in calls.values())
    # The client's typed errors, in the page itself: a 401 is a NotSignedIn with a login URL.
    await context.clear_cookies()
    outcome = await page.evaluate(
        """async () => {
            const { createClient, NotSignedIn } = await import("/client/line-auth-bff.js");
            const bff = createClient({ baseUrl: location.origin, app: "demo" });
            try { await bff.userInfo(); return "no error"; }
            catch (e) { return [e instanceof NotSignedIn, e.code, e.status, e.loginUrl]; }
        }"""
    )
    assert outcome[:3] == [True, "not_authenticated", 401]
    assert outcome[3].startswith(f"{dev.url}/auth/demo/login?return_to=")


async def test_network_path_needs_no_ussd_page(context: BrowserContext, dev: Dev) -> None:
    page = await context.new_page()
    urls = await to_consent_by_network(page, dev, "4790000002")
    await page.click("#approve")
    await expect(page.locator("input[name=name]")).to_have_value("Ola Johan Hansen")
    assert not any("/sandbox/ussd/" in u for u in urls)
    assert any("/sandbox/consent/" in u for u in urls)
    await shot(page, "network-filled")


@pytest.mark.parametrize(
    ("locale", "title", "other"),
    [
        ("nb-NO", "Du avslo forespørselen", "You declined the request"),
        ("en-GB", "You declined the request", "Du avslo forespørselen"),
    ],
    ids=["nb", "en"],
)
async def test_deny_shows_the_page_in_the_browser_language_and_leads_back(
    chromium: Browser, dev: Dev, locale: str, title: str, other: str
) -> None:
    ctx = await chromium.new_context(locale=locale)
    try:
        page = await ctx.new_page()
        await to_consent_by_network(page, dev, "4790000003")
        await page.click("#deny")
        await expect(page.locator("main[data-error=access_denied]")).to_be_visible()
        await expect(page.locator("h1")).to_have_text(title)
        await expect(page.get_by_text(other)).to_have_count(0)
        await expect(page.locator("main")).to_contain_text("Demo-appen")  # the app's name
        await shot(page, f"deny-{locale}")
        await page.click("#back")
        await expect(page.locator("#error")).to_be_visible()
        await expect(page.locator("#error")).to_contain_text("access_denied")
        await expect(page.locator("#status")).to_have_text("Ikke logget inn")
        await shot(page, f"deny-{locale}-back-in-app")
    finally:
        await ctx.close()


async def test_logout_ends_the_session_and_the_form_no_longer_fills(
    context: BrowserContext, dev: Dev
) -> None:
    page = await context.new_page()
    await to_consent_by_network(page, dev, "4790000004")
    await page.click("#approve")
    await expect(page.locator("input[name=name]")).to_have_value("Per Ødegård")
    await page.click("#logout")
    await expect(page.locator("#status")).to_have_text("Ikke logget inn")
    await expect(page.locator("input[name=name]")).to_have_value("")
    await expect(page.locator("#logout")).to_be_hidden()
    await page.reload()
    await expect(page.locator("#status")).to_have_text("Ikke logget inn")
    await expect(page.locator("input[name=name]")).to_have_value("")
    cookies = {c["name"] for c in await context.cookies()}
    assert "bff-demo" not in cookies
    await shot(page, "logged-out")


# -- accessibility: axe-core on every page ---------------------------------------------------

AXE = Path(os.environ.get("BFF_AXE_JS", ROOT / ".npm" / "node_modules" / "axe-core" / "axe.min.js"))


def axe_source() -> str:
    assert AXE.exists(), f"{AXE} is missing: ./scripts/test installs axe-core with npm"
    return AXE.read_text()


def keep(name: str, violations: list[dict[str, object]]) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"axe-{name}.json").write_text(json.dumps(violations, indent=2))


async def serious_violations(page: Page, name: str) -> list[dict[str, object]]:
    """axe-core's serious and critical violations on the page as it is now; the full result
    and a screenshot go to artifacts/browser/."""
    await page.add_script_tag(content=axe_source())
    violations: list[dict[str, object]] = await page.evaluate(
        """async () => (await axe.run(document)).violations.map(v => ({
            id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.html)}))"""
    )
    keep(name, violations)
    await shot(page, f"axe-{name}")
    return [v for v in violations if v["impact"] in ("serious", "critical")]


async def test_every_page_has_no_serious_or_critical_accessibility_violation(
    chromium: Browser, dev: Dev
) -> None:
    """The demo signed out and in, the USSD waiting page, the consent page, and the error page
    in Norwegian and English: 0 serious or critical axe-core violations on each."""
    found: dict[str, list[dict[str, object]]] = {}
    ctx = await chromium.new_context(locale="nb-NO", bypass_csp=True)  # to inject axe
    try:
        page = await ctx.new_page()
        await page.goto(f"{dev.url}/demo")
        await expect(page.locator("#status")).to_have_text("Ikke logget inn")
        found["demo-signed-out"] = await serious_violations(page, "demo-signed-out")
        await page.click("#fill")
        await expect(page.locator("#ussd-title")).to_be_visible()
        found["ussd-waiting"] = await serious_violations(page, "ussd-waiting")
        attempt = page.url.rsplit("/", 1)[1]
        async with httpx.AsyncClient() as phone:
            await phone.post(
                f"{dev.sandbox_url}/sandbox/ussd/{attempt}",
                json={"answer": "1", "msisdn": "4790000001"},
            )
        await expect(page.locator("#approve")).to_be_visible(timeout=10_000)
        found["consent"] = await serious_violations(page, "consent")
        await page.click("#approve")
        await expect(page.locator("#status")).to_contain_text("Logget inn")
        found["demo-signed-in"] = await serious_violations(page, "demo-signed-in")
    finally:
        await ctx.close()
    for locale in ("nb-NO", "en-GB"):
        ctx = await chromium.new_context(locale=locale, bypass_csp=True)
        try:
            page = await ctx.new_page()
            await page.goto(f"{dev.url}/auth/demo/callback")  # no state: login_expired
            await expect(page.locator("main[data-error=login_expired]")).to_be_visible()
            found[f"error-{locale[:2]}"] = await serious_violations(page, f"error-{locale[:2]}")
        finally:
            await ctx.close()
    assert set(found) == {
        "demo-signed-out",
        "ussd-waiting",
        "consent",
        "demo-signed-in",
        "error-nb",
        "error-en",
    }
    assert found == {page: [] for page in found}, found


async def test_the_ussd_page_polls_without_reloading_and_keeps_the_choice(
    context: BrowserContext, dev: Dev
) -> None:
    """While it waits, the page asks the sandbox for the outcome (no reload: the simulated
    phone's choice and the focus stay), in a live region that then says what happened."""
    page = await context.new_page()
    await page.goto(f"{dev.url}/demo")
    await page.click("#fill")
    await expect(page.locator("#ussd-title")).to_be_visible()
    attempt = page.url.rsplit("/", 1)[1]
    status_path = f"/sandbox/ussd/{attempt}/status"
    loads = visited(page)
    await page.select_option("select[name=msisdn]", "4790000003")
    await page.focus("select[name=msisdn]")
    await until(lambda: len(dev.sandbox.calls(status_path)) >= 2)  # it polled twice
    assert loads == []  # and never reloaded
    await expect(page.locator("select[name=msisdn]")).to_have_value("4790000003")
    await expect(page.locator("select[name=msisdn]")).to_be_focused()
    live = page.locator("#ussd-status")
    await expect(live).to_have_attribute("aria-live", "polite")
    await expect(live).to_have_attribute("role", "status")
    await page.click("#ussd-accept")  # the simulated phone answers 1 (a form post)
    await expect(page.locator("#approve")).to_be_visible(timeout=10_000)


async def test_the_demo_fits_a_360_px_screen_and_speaks_in_words(
    chromium: Browser, dev: Dev
) -> None:
    """At 360 px nothing runs off the side; the session's end and a login's error code are
    said in words (the code stays beside them, for developers)."""
    ctx = await chromium.new_context(locale="nb-NO", viewport={"width": 360, "height": 740})
    try:
        page = await ctx.new_page()
        await to_consent_by_network(page, dev, "4790000002")
        await page.click("#approve")
        status = page.locator("#status")
        await expect(status).to_have_text(
            re.compile(r"Logget inn \(utløper om \d+ (time|timer|minutt|minutter)\)")
        )
        wide = await page.evaluate("document.documentElement.scrollWidth")
        assert wide <= 360, wide
        await shot(page, "demo-360-signed-in")
        await page.goto(f"{dev.url}/demo?error=access_denied")
        await expect(page.locator("#error")).to_have_text(
            "Innlogging avbrutt: du avslo (access_denied)"
        )
    finally:
        await ctx.close()
