"""Ops endpoints, the problem+json error model, the OpenAPI copy and the compose file."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from service.config import Settings
from tests.support.browser import APP_ORIGIN, BFF, scrape, walk_login
from tests.support.servers import until

ROOT = Path(__file__).resolve().parents[1]
CSRF = {"X-CSRF": "1"}


async def test_healthz_and_readyz_are_ok_with_redis_up(browser):
    """Both answer 200 while Redis answers."""
    assert (await browser.get(f"{BFF}/healthz")).json() == {"status": "ok"}
    ready = await browser.get(f"{BFF}/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"redis": "ok"}


async def test_readyz_is_503_problem_when_redis_is_down_and_healthz_stays_200(
    make_bff, private_redis
):
    """With the private Redis stopped: /readyz 503 problem+json naming redis; /healthz 200."""
    async with make_bff(redis_url=private_redis.url) as bff, bff.browser() as browser:
        private_redis.stop()
        ready = await browser.get(f"{BFF}/readyz")
        assert ready.status_code == 503
        assert ready.headers["content-type"] == "application/problem+json"
        assert "redis" in ready.json()["detail"]
        assert (await browser.get(f"{BFF}/healthz")).status_code == 200
        private_redis.start()
        assert (await browser.get(f"{BFF}/readyz")).status_code == 200


async def test_a_hanging_redis_gives_503s_within_its_timeout_and_sessions_survive(
    make_bff, private_redis
):
    """A Redis that stops answering but keeps its connections open (SIGSTOP) is the case only a
    timeout catches: a signed-in call, a login start and /readyz each answer 503 well within
    BFF_REDIS_TIMEOUT_SECONDS plus slack, and the same session works once Redis is back."""
    csrf = {"X-CSRF": "1"}
    async with (
        make_bff(redis_url=private_redis.url, redis_timeout_seconds=0.5) as bff,
        bff.browser() as browser,
    ):
        assert (await walk_login(browser)).final.status_code == 302
        assert (await browser.get(f"{BFF}/api/web/user-info", headers=csrf)).status_code == 200
        assert private_redis.pid is not None
        os.kill(private_redis.pid, signal.SIGSTOP)
        try:
            async with asyncio.timeout(10):  # a regression fails here instead of hanging
                started = time.monotonic()
                api = await browser.get(f"{BFF}/api/web/user-info", headers=csrf)
                took = time.monotonic() - started
                page = await browser.get(
                    f"{BFF}/auth/web/login", params={"return_to": f"{APP_ORIGIN}/done"}
                )
                ready = await browser.get(f"{BFF}/readyz")
        finally:
            os.kill(private_redis.pid, signal.SIGCONT)
        assert api.status_code == 503 and api.json()["type"].endswith(":store_unavailable")
        assert api.headers["retry-after"] == "2" and took < 2.5
        assert page.status_code == 503 and page.headers["content-type"].startswith("text/html")
        assert ready.status_code == 503
        assert (await browser.get(f"{BFF}/api/web/user-info", headers=csrf)).status_code == 200


async def test_unknown_api_route_is_404_problem(browser):
    """FastAPI's own 404 is problem+json."""
    r = await browser.get(f"{BFF}/api/web/nope")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert set(body) >= {"type", "title", "status"} and body["status"] == 404


async def test_wrong_method_is_405_problem(browser):
    """FastAPI's own 405 is problem+json."""
    r = await browser.delete(f"{BFF}/healthz")
    assert r.status_code == 405
    assert r.headers["content-type"] == "application/problem+json"


async def test_invalid_body_is_422_problem_without_echoing_input(browser):
    """Validation errors are problem+json and never echo what was sent."""
    r = await browser.post(f"{BFF}/api/web/auth/start", json={"mode": "sekrit-code-value"})
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    assert "return_to" in r.json()["detail"]
    assert "sekrit-code-value" not in r.text


async def test_malformed_json_is_a_problem_not_a_500(browser):
    """A body that is not JSON gets 422 problem+json."""
    r = await browser.post(
        f"{BFF}/api/web/auth/start",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(("args", "file"), [([], "openapi.json"), (["--admin"], "admin.json")])
def test_committed_openapi_matches_the_live_spec(args, file):
    """openapi/openapi.json (and admin.json) is what `python -m service openapi` prints."""
    live = subprocess.run(
        [sys.executable, "-m", "service", "openapi", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    committed = (ROOT / "openapi" / file).read_text()
    assert json.loads(live) == json.loads(committed), (
        f"regenerate: python -m service openapi {args}"
    )


def test_the_architecture_doc_names_every_module_and_nothing_outside_the_repository():
    """docs/architecture.md has a line for every module of service/; README, docs and code
    refer only to what the repository holds."""
    doc = (ROOT / "docs" / "architecture.md").read_text()
    for path in sorted((ROOT / "service").rglob("*.py")):
        module = path.relative_to(ROOT / "service").as_posix()
        assert f"| `{module}` |" in doc, module
    texts = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "service").rglob("*.py")]
    for text in texts:
        for outside in ("../shared", "DESIGN §", "DESIGN.md"):
            assert outside not in text.read_text(), f"{text} refers to {outside}"


def test_compose_file_matches_the_settings_the_service_reads():
    """docker-compose.yml: redis + bff, healthchecks, ports, and only real BFF_ settings."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"redis", "bff", "sandbox"} <= set(services)
    bff = services["bff"]
    assert "/readyz" in " ".join(bff["healthcheck"]["test"])
    assert any(str(p).endswith(":8000") for p in bff["ports"])
    assert services["redis"]["healthcheck"]
    assert bff["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["sandbox"]["profiles"] == ["sandbox"]
    known = {f"BFF_{name.upper()}" for name in Settings.model_fields}
    for service in ("bff", "sandbox"):
        for key, value in services[service].get("environment", {}).items():
            top = key.split("__")[0]
            assert top in known, f"{service} sets {key}, which the service does not read"
            # Only a default: what the operator sets in .env wins.
            assert str(value).startswith(f"${{{key}:-"), f"{service} overrides {key}"
    assert bff["environment"]["BFF_REDIS_URL"].startswith("${BFF_REDIS_URL:-redis://redis:")
    assert "BFF_TRUSTED_PROXIES" not in bff["environment"]
    # Redis keeps its data across a restart: append-only, on a volume.
    redis = services["redis"]
    assert "--appendonly" in redis["command"]
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    assert any(str(v).endswith(":/data") for v in redis["volumes"])


async def test_demo_page_is_served_only_in_development(make_bff, browser):
    """Production has no /demo; the dev configuration serves it with a nonce CSP."""
    assert (await browser.get(f"{BFF}/demo")).status_code == 404
    from service.dev import dev_settings

    dev = dev_settings(8000, None)
    apps = {"demo": dev.apps["demo"].model_dump()}
    async with make_bff(env="development", apps=apps) as bff, bff.browser() as b:
        page = await b.get(f"{BFF}/demo")
    assert page.status_code == 200 and "Fyll ut med Telenor" in page.text
    assert "script-src 'nonce-" in page.headers["content-security-policy"]


async def test_redis_outage_gives_503_page_and_problem_then_recovers(make_bff, private_redis):
    """Redis down: login page 503, API 503 problem with Retry-After, never a 500; then back."""
    from tests.support.browser import APP_ORIGIN, walk_login

    async with make_bff(redis_url=private_redis.url) as bff, bff.browser() as browser:
        await walk_login(browser)
        private_redis.stop()
        page = await browser.get(
            f"{BFF}/auth/web/login", params={"return_to": f"{APP_ORIGIN}/done"}
        )
        assert page.status_code == 503 and 'data-error="store_unavailable"' in page.text
        api = await browser.get(f"{BFF}/api/web/user-info", headers={"X-CSRF": "1"})
        assert api.status_code == 503
        assert api.headers["content-type"] == "application/problem+json"
        assert int(api.headers["retry-after"]) > 0
        private_redis.start()
        again = await browser.get(f"{BFF}/api/web/session", headers={"X-CSRF": "1"})
        assert again.status_code == 200 and again.json()["authenticated"] is False


async def test_readyz_and_the_log_name_why_redis_fails(make_bff, private_redis, log_output):
    """A stopped server and a hanging one are told apart: refused, timeout."""
    async with (
        make_bff(redis_url=private_redis.url, redis_timeout_seconds=0.5) as bff,
        bff.browser() as browser,
    ):
        private_redis.stop()
        refused = (await browser.get(f"{BFF}/readyz")).json()["detail"]
        private_redis.start()
        assert private_redis.pid is not None
        os.kill(private_redis.pid, signal.SIGSTOP)
        try:
            hanging = (await browser.get(f"{BFF}/readyz")).json()["detail"]
        finally:
            os.kill(private_redis.pid, signal.SIGCONT)
    assert refused == "Not answering: redis (connection refused)."
    assert hanging == "Not answering: redis (timeout)."
    probes = [json.loads(x) for x in log_output().splitlines() if '"not ready"' in x]
    assert [p["failed"] for p in probes] == [
        ["redis (connection refused)"],
        ["redis (timeout)"],
    ]


async def test_a_wrong_password_is_not_a_stopped_server(make_bff):
    from service.store.embedded import EmbeddedRedis

    guarded = EmbeddedRedis(None, "--requirepass", "the-right-one").start()
    try:
        wrong = guarded.url.replace("redis://", "redis://:the-wrong-one@")
        async with make_bff(redis_url=wrong) as bff, bff.browser() as browser:
            ready = await browser.get(f"{BFF}/readyz")
            login = await browser.get(f"{BFF}/auth/web/login?return_to={APP_ORIGIN}/done")
    finally:
        guarded.close()
    assert ready.json()["detail"] == "Not answering: redis (authentication failed)."
    assert login.status_code == 503 and 'data-error="store_unavailable"' in login.text


async def test_a_replica_is_named_read_only(make_bff, log_output):
    """Pointed at a replica (a failover the client missed), writes fail as read-only."""
    from tests.support.servers import LocalSentinel

    pair = LocalSentinel(replica=True).start()
    try:
        assert pair.replica is not None
        async with make_bff(redis_url=pair.replica.url) as bff, bff.browser() as browser:
            login = await browser.get(f"{BFF}/auth/web/login?return_to={APP_ORIGIN}/done")
    finally:
        pair.close()
    assert login.status_code == 503
    causes = [json.loads(x).get("cause") for x in log_output().splitlines() if "redis failed" in x]
    assert causes == ["read-only (a replica)"]


async def test_beyond_max_in_flight_requests_are_shed_at_once_and_probes_are_not(make_bff, sandbox):
    """With BFF_MAX_IN_FLIGHT=1 and one proxied call held by a hanging Telenor: the next API
    call and a page are refused at once with 503 `overloaded` and Retry-After, counted in
    bff_errors_total; the probes and the admin listener still answer; once the held call is
    done, calls are served again."""
    async with make_bff(max_in_flight=1) as bff, bff.browser() as browser:
        await walk_login(browser)
        sandbox.faults.hang = {"user-info"}
        before = len(sandbox.calls("/user-info/v1/users"))  # the login's subscriber lookup
        held = asyncio.create_task(browser.get(f"{BFF}/api/web/user-info", headers=CSRF))
        await until(lambda: len(sandbox.calls("/user-info/v1/users")) > before)
        shed = await browser.get(f"{BFF}/api/web/device-info", headers=CSRF)
        assert shed.status_code == 503, shed.text
        assert shed.headers["retry-after"] == "1"
        assert shed.headers["content-type"] == "application/problem+json"
        assert shed.json()["type"].endswith(":overloaded")
        page = await browser.get(f"{BFF}/auth/web/login?return_to={APP_ORIGIN}/done")
        assert page.status_code == 503 and page.headers["content-type"].startswith("text/html")
        assert (await browser.get(f"{BFF}/healthz")).status_code == 200
        assert (await browser.get(f"{BFF}/readyz")).status_code == 200
        # The scrape goes to the admin listener, which is never shed.
        assert 'bff_errors_total{code="overloaded"} 2.0' in await scrape(browser)
        sandbox.faults.hang = set()
        assert (await held).status_code == 504  # Telenor's hang outlasted the BFF's timeout
        again = await browser.get(f"{BFF}/api/web/device-info", headers=CSRF)
        assert again.status_code == 200


REDOCLY = ROOT / ".npm" / "node_modules" / ".bin" / "redocly"


def test_the_openapi_document_passes_redocly_lint_with_the_recommended_rules():
    """`redocly lint` (recommended rules, the CLI from npm that scripts/test installs): 0 errors."""
    assert REDOCLY.exists(), f"{REDOCLY} is missing: ./scripts/test installs it with npm"
    run = subprocess.run(
        [str(REDOCLY), "lint", "openapi/openapi.json", "--format=summary"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "REDOCLY_TELEMETRY": "off", "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true"},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert not [line for line in run.stdout.splitlines() if line.startswith("error")]


def test_the_openapi_document_names_operations_types_errors_and_says_who_may_call():
    """What a generated client needs: a named operation each, every error a Problem on
    application/problem+json, and the security each operation needs (none, or the session:
    cookie + X-CSRF, or bearer)."""
    doc = json.loads((ROOT / "openapi" / "openapi.json").read_text())
    assert set(doc["components"]["securitySchemes"]) == {"sessionCookie", "csrfHeader", "bearer"}
    assert doc["servers"]
    ids = []
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            ids.append(operation["operationId"])
            assert "_" not in operation["operationId"], (method, path)
            assert "security" in operation, (method, path)
            for status, response in operation["responses"].items():
                content = response.get("content", {})
                if status[0] in "45" and "error" in str(content.get("application/json")):
                    # The token and revocation endpoints answer OAuth's own errors, which
                    # RFC 6749 §5.2 puts on application/json; their other errors are Problems.
                    assert path.startswith("/oauth2/") and status in ("400", "401"), path
                elif status[0] in "45":
                    assert "application/json" not in content, (path, status)
    assert len(ids) == len(set(ids))
    ops = {(m, p): o for p, v in doc["paths"].items() for m, o in v.items()}
    signed_in = [{"sessionCookie": [], "csrfHeader": []}, {"bearer": []}]
    assert ops[("get", "/api/{app}/user-info")]["security"] == signed_in
    assert ops[("post", "/api/{app}/session/revoke-all")]["security"] == signed_in
    assert ops[("post", "/api/{app}/auth/start")]["security"] == []
    problem = ops[("get", "/api/{app}/user-info")]["responses"]["401"]["content"]
    assert problem["application/problem+json"]["schema"] == {"$ref": "#/components/schemas/Problem"}


def test_dev_starts_again_at_once_after_a_stop_while_its_connections_linger():
    """After Ctrl-C the last run's connections linger in TIME-WAIT for a minute. `dev` binds
    with SO_REUSEADDR, so its own check must not call the port busy then; a port somebody
    listens on is busy."""
    from service.dev import free_to_bind

    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    assert not free_to_bind("127.0.0.1", port)  # listened on
    accepted.close()  # the server's end closes first: it lingers in TIME-WAIT
    client.close()
    server.close()
    lingering = subprocess.run(["ss", "-Htan", f"sport = :{port}"], capture_output=True, text=True)
    assert "TIME-WAIT" in lingering.stdout
    assert free_to_bind("127.0.0.1", port)
