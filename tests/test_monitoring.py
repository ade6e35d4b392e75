"""deploy/monitoring/: the alert rules checked and unit-tested by promtool, then loaded into a
real Prometheus that scrapes a real `line-auth-bff serve` after real logins through the sandbox,
proxied calls, refusals and a Redis outage; every dashboard expression must return data there.

Needs `prometheus` and `promtool` (Debian's package prometheus; ./scripts/test installs it).
Loopback only; every process started here is stopped here.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml

from service.sandbox import Sandbox
from service.sandbox.app import ForcedResponse
from service.store.embedded import EmbeddedRedis, end_process, free_port
from tests.support.browser import ADMIN_TOKEN, BFF, walk_login
from tests.support.serve import admin_url, serve_env, wait_ready
from tests.support.servers import Clock

ROOT = Path(__file__).resolve().parents[1]
MONITORING = ROOT / "deploy" / "monitoring"
JOB = "line-auth-bff"
SELECT = f'job="{JOB}"'
USER_INFO = f"{BFF}/api/web/user-info"
CSRF = {"X-CSRF": "1"}
API_LIMIT = 8  # per session and minute, so that a session of the test reaches it
SHED = 4  # requests shed per round (BFF_MAX_IN_FLIGHT=1 while one call is slow at Telenor)
T = TypeVar("T")


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, (
        f"{name} is not installed: it comes with Debian's package prometheus "
        "(./scripts/test installs it; or: apt-get install prometheus)"
    )
    return path


def promtool(*args: str) -> str:
    done = subprocess.run(
        [tool("promtool"), *args],
        cwd=MONITORING,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"promtool {' '.join(args)} exited {done.returncode}:\n{output}"
    return output


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((MONITORING / "dashboard.json").read_text())
    return loaded


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])  # (a collapsed row holds its panels)


def dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title, expression) of every target of every panel."""
    return [
        (panel["title"], target["expr"])
        for panel in panels(dashboard())
        for target in panel.get("targets", [])
    ]


def concrete(expr: str) -> str:
    """A dashboard expression as Grafana would send it: app web, intervals of a minute."""
    expr = re.sub(r"\$\{app\}|\$app\b", "web", expr)
    expr = re.sub(r"\$\{?__(rate_interval|interval|range)\}?", "1m", expr)
    assert "$" not in expr, f"a dashboard variable the test does not know: {expr}"
    return expr


# -- the files, checked by promtool and read ------------------------------------------------


def test_promtool_checks_the_rules():
    output = promtool("check", "rules", "alerts.yml")
    assert f"SUCCESS: {len(alert_rules())} rules found" in output, output


def test_promtool_unit_tests_pass():
    promtool("test", "rules", "alerts.test.yml")


def test_every_alert_has_annotations_the_job_selector_and_both_kinds_of_unit_test():
    rules = alert_rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert SELECT in rule["expr"], f"{rule['alert']}: no {SELECT}"
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        assert len(rule["annotations"]["runbook"]) > 80, f"{rule['alert']}: runbook too short"
    cases = yaml.safe_load((MONITORING / "alerts.test.yml").read_text())
    fires: set[str] = set()
    quiet: set[str] = set()
    for test in cases["tests"]:
        for case in test["alert_rule_test"]:
            (fires if case.get("exp_alerts") else quiet).add(case["alertname"])
    assert fires >= set(names), f"no case where these fire: {set(names) - fires}"
    assert quiet >= set(names), f"no case where these stay quiet: {set(names) - quiet}"


def test_dashboard_has_its_variables_and_every_panel_uses_the_datasource_variable():
    board = dashboard()
    assert board["schemaVersion"] >= 39 and board["uid"] == JOB
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    app = variables["app"]
    assert app["query"] == f"label_values(bff_login_started_total{{{SELECT}}}, app)"
    assert app["datasource"]["uid"] == "${datasource}"
    ids = [panel["id"] for panel in panels(board)]
    assert len(ids) == len(set(ids))
    for panel in panels(board):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            assert SELECT in target["expr"], f"{panel['title']}: no {SELECT}"
    assert len(dashboard_exprs()) >= 20


# -- a real Prometheus scraping a real `serve` ----------------------------------------------


class ServedBff(httpx.AsyncBaseTransport):
    """https://bff.test to the served BFF on a loopback port, as a TLS-terminating proxy in
    front forwards it (X-Forwarded-Proto from a trusted address; the Host stays bff.test)."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        headers = request.headers.copy()
        headers["X-Forwarded-Proto"] = "https"
        forwarded = httpx.Request(
            request.method,
            request.url.copy_with(scheme="http", host="127.0.0.1", port=self._port),
            headers=headers,
            stream=request.stream,
            extensions=request.extensions,
        )
        return await self._inner.handle_async_request(forwarded)

    async def aclose(self) -> None:
        await self._inner.aclose()


def browser(port: int) -> httpx.AsyncClient:
    """A browser (one cookie jar) for the served BFF and the sandbox."""
    return httpx.AsyncClient(
        base_url=BFF,
        mounts={BFF: ServedBff(port)},
        follow_redirects=False,
        timeout=30,
    )


def start_serve(env: dict[str, str], directory: Path) -> tuple[subprocess.Popen[bytes], int]:
    """`line-auth-bff serve`, its log in a file (a pipe nobody reads would fill)."""
    port = free_port()
    command = [sys.executable, "-m", "service", "serve", "--host", "127.0.0.1"]
    with (directory / "serve.log").open("wb") as log:
        proc = subprocess.Popen(
            [*command, "--port", str(port)],
            env=env,
            cwd=directory,  # no .env here
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return proc, port


def start_prometheus(directory: Path, target: str) -> tuple[subprocess.Popen[bytes], str]:
    """Prometheus scraping `target` every second as job line-auth-bff, with alerts.yml."""
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(MONITORING / "alerts.yml")],
        "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": [target]}]}],
    }
    (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    with (directory / "prometheus.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                tool("prometheus"),
                f"--config.file={directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            cwd=directory,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return proc, f"http://127.0.0.1:{port}"


def tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return f"({path.name}: none)"
    return f"-- {path.name}:\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


async def eventually(check: Callable[[], Awaitable[T]], what: str, seconds: float = 15.0) -> T:
    """Poll until `check` returns something truthy (bounded), and return it."""
    deadline = time.monotonic() + seconds
    while True:
        found = await check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def query(prom: httpx.AsyncClient, expr: str) -> list[dict[str, Any]]:
    response = await prom.get("/api/v1/query", params={"query": expr})
    assert response.status_code == 200, f"{expr}: {response.text}"
    body = response.json()
    assert body["status"] == "success", f"{expr}: {body}"
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


async def scalar(prom: httpx.AsyncClient, expr: str) -> float | None:
    """The value of a query with at most one series (None: no series)."""
    result = await query(prom, expr)
    assert len(result) <= 1, f"{expr}: {result}"
    return float(result[0]["value"][1]) if result else None


async def scraped(prom: httpx.AsyncClient, expr: str, want: float) -> None:
    """Wait until Prometheus has scraped `expr` at `want`."""

    async def there() -> bool:
        return await scalar(prom, expr) == want

    await eventually(there, f"{expr} == {want} in Prometheus")


@dataclass
class Stack:
    prom: httpx.AsyncClient
    target: str  # the BFF's admin listener: its `instance` label


async def one_round(port: int, sandbox: Sandbox, admin: str) -> None:
    """Three logins (approved, denied, approved), proxied calls, every kind of refusal the
    dashboard shows, a logout and an admin revocation."""
    sandbox.refresh_tokens = True
    sandbox.token_lifetime = 30  # inside the refresh skew: its first call refreshes
    async with browser(port) as a:
        walk = await walk_login(a)
        assert walk.final is not None and walk.final.status_code == 302, walk.final
        sandbox.token_lifetime = 3599
        statuses = [(await a.get(USER_INFO, headers=CSRF)).status_code for _ in range(2)]
        sandbox.faults.responses = [ForcedResponse("user-info", 500, 1)]
        statuses.append((await a.get(USER_INFO, headers=CSRF)).status_code)
        statuses.append((await a.get(USER_INFO)).status_code)  # no X-CSRF
        sandbox.faults.latency = {"user-info": 1.0}  # holds the one slot while others wait
        crowd = await asyncio.gather(*(a.get(USER_INFO, headers=CSRF) for _ in range(SHED + 1)))
        sandbox.faults.latency = {}
        statuses += sorted(r.status_code for r in crowd)
        assert statuses == [200, 200, 502, 401, 200, *[503] * SHED], statuses
        assert (await a.post(f"{BFF}/auth/web/logout", headers=CSRF)).status_code == 204
    async with browser(port) as b:
        denied = await walk_login(b, decision="deny")
        assert denied.final is not None and denied.final.status_code == 403
    async with browser(port) as c, httpx.AsyncClient(base_url=admin) as ops:
        await walk_login(c, msisdn="4790000002")
        for _ in range(3 * API_LIMIT):  # (a minute may begin on the way)
            status = (await c.get(USER_INFO, headers=CSRF)).status_code
            if status == 429:
                break
            assert status == 200
        else:
            pytest.fail("the API rate limit never answered 429")
        revoked = await ops.post(
            "/admin/revocations",
            json={"app": "web", "subscriber": "4790000002"},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        assert revoked.json() == {"revoked": 1}, revoked.text


async def redis_down(port: int) -> None:
    """With Redis stopped: /readyz 503 (not_ready) and an API call 503 (store_unavailable)."""
    async with browser(port) as client:
        assert (await client.get("/readyz")).status_code == 503
        r = await client.get(USER_INFO, headers={"Authorization": "Bearer not-a-session"})
        assert r.status_code == 503 and r.json()["type"].endswith("store_unavailable"), r.text


@pytest.fixture(scope="module")
async def stack(
    sandbox_server: tuple[Sandbox, str],
    sandbox_clock: Clock,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Stack]:
    """Redis, `serve` and Prometheus scraping it; two rounds of traffic, each scraped before
    the next (so rates have two points), then a Redis outage, scraped twice."""
    sandbox, sandbox_url = sandbox_server
    sandbox.reset()
    sandbox_clock.offset = 0
    directory = tmp_path_factory.mktemp("monitoring")
    redis = EmbeddedRedis().start()
    env = {
        **serve_env(redis.url, "monitoring:", sandbox_url, directory),
        "BFF_RATE_LIMIT_API_PER_MINUTE": str(API_LIMIT),
        "BFF_MAX_IN_FLIGHT": "1",
        "BFF_SHED_AFTER_MS": "200",
    }
    target = env["BFF_ADMIN__ADDRESS"]
    serve = prometheus = None
    try:
        serve, port = start_serve(env, directory)
        async with browser(port) as client:
            await wait_ready(client, serve)
        prometheus, prom_url = start_prometheus(directory, target)
        async with httpx.AsyncClient(base_url=prom_url, timeout=10) as prom:

            async def ready() -> bool:
                assert prometheus is not None and prometheus.poll() is None, "prometheus exited"
                try:
                    return (await prom.get("/-/ready")).status_code == 200
                except httpx.TransportError:
                    return False

            async def target_up() -> bool:
                targets = (await prom.get("/api/v1/targets")).json()["data"]["activeTargets"]
                return [(t["labels"]["job"], t["scrapeUrl"], t["health"]) for t in targets] == [
                    (JOB, f"http://{target}/metrics", "up")
                ]

            await eventually(ready, "Prometheus to be ready", 30)
            await eventually(target_up, "Prometheus to scrape the BFF")
            admin = admin_url(env)
            completed = f'sum(bff_login_completed_total{{{SELECT}, app="web"}})'
            await one_round(port, sandbox, admin)
            await scraped(prom, completed, 2)
            await one_round(port, sandbox, admin)
            await scraped(prom, completed, 4)
            redis.stop()
            await redis_down(port)
            await scraped(prom, f'bff_errors_total{{{SELECT}, code="not_ready"}}', 1)
            await redis_down(port)
            await scraped(prom, f"bff_redis_errors_total{{{SELECT}}}", 2)
            yield Stack(prom, target)
    except BaseException:
        print(tail(directory / "serve.log"), tail(directory / "prometheus.log"), sep="\n")
        raise
    finally:
        end_process(prometheus, 10)
        end_process(serve, 20)
        redis.close()
        sandbox.reset()


async def test_prometheus_scrapes_what_the_served_bff_counted(stack: Stack):
    prom = stack.prom
    web = f'{SELECT}, app="web"'
    path = 'path="user-info/v1/users"'
    expected = {
        f"up{{{SELECT}}}": 1,
        f'bff_login_started_total{{{web}, mode="cookie"}}': 6,
        f'bff_login_completed_total{{{web}, mode="cookie"}}': 4,
        f'bff_login_failed_total{{{web}, reason="access_denied"}}': 2,
        f'bff_token_exchange_seconds_count{{{web}, outcome="ok"}}': 4,
        f'bff_token_refresh_total{{{web}, outcome="ok"}}': 2,
        f'bff_proxy_requests_total{{{web}, {path}, status="5xx"}}': 2,
        f'bff_browser_rejections_total{{{web}, reason="csrf_header"}}': 2,
        f"bff_logout_total{{{web}}}": 2,
        f"bff_sessions_revoked_total{{{web}}}": 2,
        f'bff_rate_limited_total{{{SELECT}, kind="api"}}': 2,
        f'bff_errors_total{{{SELECT}, code="overloaded"}}': 2 * SHED,
        f'bff_errors_total{{{SELECT}, code="upstream_error"}}': 2,
        f'bff_errors_total{{{SELECT}, code="not_ready"}}': 2,
        f'bff_errors_total{{{SELECT}, code="store_unavailable"}}': 2,
        f"bff_redis_errors_total{{{SELECT}}}": 2,
        f"bff_redis_unreplicated_writes_total{{{SELECT}}}": 0,
    }
    got = {expr: await scalar(prom, expr) for expr in expected}
    assert got == expected
    for result in await query(prom, f"bff_build_info{{{SELECT}}}"):
        assert result["metric"]["version"] and float(result["value"][1]) == 1
        assert result["metric"]["instance"] == stack.target
    # Every successful proxied call is in the request histogram under its route template.
    proxied = await scalar(prom, f'bff_proxy_requests_total{{{web}, {path}, status="2xx"}}')
    route = 'route="/api/{app}/user-info", method="GET", status="2xx"'
    answered = await scalar(prom, f"bff_http_request_duration_seconds_count{{{SELECT}, {route}}}")
    assert proxied is not None and proxied >= 2 * (3 + API_LIMIT) and answered == proxied
    upstream = await scalar(prom, f"bff_proxy_upstream_seconds_count{{{web}, {path}}}")
    assert upstream is not None and upstream >= proxied
    assert (await scalar(prom, f"process_resident_memory_bytes{{{SELECT}}}") or 0) > 0
    # The dashboard's `app` variable: label_values(bff_login_started_total{job=...}, app).
    values = await prom.get(
        "/api/v1/label/app/values", params={"match[]": f"bff_login_started_total{{{SELECT}}}"}
    )
    assert values.json()["data"] == ["web"]


async def test_every_dashboard_expression_returns_data(stack: Stack):
    """Each expression, as Grafana sends it (app web, 1m intervals), answers at least one
    series with a number (a rate needs two scrapes, a quantile some traffic: polled)."""
    exprs = [(title, concrete(expr)) for title, expr in dashboard_exprs()]
    last: dict[str, list[dict[str, Any]]] = {}

    async def answered(expr: str) -> bool:
        result = last[expr] = await query(stack.prom, expr)
        return any(not math.isnan(float(r["value"][1])) for r in result)

    pending = list(exprs)
    deadline = time.monotonic() + 15
    while pending and time.monotonic() < deadline:
        pending = [(title, expr) for title, expr in pending if not await answered(expr)]
        if pending:
            await asyncio.sleep(0.5)
    assert not pending, "\n".join(f"{title}: {expr} -> {last[expr]}" for title, expr in pending)


async def test_every_bff_series_has_a_panel(stack: Stack):
    """Every bff_* family Prometheus scraped appears in some dashboard expression."""
    names = (await stack.prom.get("/api/v1/label/__name__/values")).json()["data"]
    families = {re.sub(r"_(bucket|sum|count)$", "", n) for n in names if n.startswith("bff_")}
    text = " ".join(expr for _, expr in dashboard_exprs())
    assert len(families) >= 15, families
    assert {f for f in families if not re.search(rf"\b{f}(_bucket|_count)?\b", text)} == set()


async def test_the_alert_rules_evaluate_on_the_real_series(stack: Stack):
    """Prometheus loaded alerts.yml and evaluates every rule without error; the alerts whose
    conditions the test caused (the Redis outage, the load shedding) are pending for the
    BFF's instance: their selectors match what it exports."""
    names = {rule["alert"] for rule in alert_rules()}

    async def evaluated() -> list[dict[str, Any]]:
        groups = (await stack.prom.get("/api/v1/rules")).json()["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        done = all(not rule["lastEvaluation"].startswith("0001") for rule in rules)
        return rules if done else []

    rules = await eventually(evaluated, "every rule to be evaluated")
    assert {rule["name"] for rule in rules} == names
    assert [(r["name"], r["lastError"]) for r in rules if r["health"] != "ok"] == []

    async def active() -> dict[str, str]:
        alerts = (await stack.prom.get("/api/v1/alerts")).json()["data"]["alerts"]
        found = {a["labels"]["alertname"]: a["labels"].get("instance", "") for a in alerts}
        return found if {"BffNotReady", "BffLoadShedding"} <= set(found) else {}

    found = await eventually(active, "BffNotReady and BffLoadShedding to be pending")
    assert found["BffNotReady"] == found["BffLoadShedding"] == stack.target
    assert "BffTargetDown" not in found and "BffTargetsMissing" not in found
