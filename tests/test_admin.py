"""Sessions under the operator's control: the admin listener, the session index, revocation by
reference, subscriber and app, "sign out everywhere", the CLI, and the audit lines. The
revocation tests run on one Redis and on a local Redis Cluster, with two BFF instances."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from tests.support.browser import (
    ADMIN,
    ADMIN_TOKEN,
    APP_ORIGIN,
    BFF,
    bearer_session,
    walk_login,
)
from tests.support.config import KEYS
from tests.support.metrics import lines
from tests.support.servers import LocalCluster, until

pytestmark = pytest.mark.usefixtures("sandbox")
CSRF = {"X-CSRF": "1"}
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
KARI = "4790000001"
OLA = "4790000002"


@pytest.fixture(scope="module")
def local_cluster() -> Iterator[LocalCluster]:
    nodes = LocalCluster().start()
    yield nodes
    nodes.close()


@pytest.fixture(params=["redis", "cluster"])
def deployment(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The settings of one Redis, or of the local Redis Cluster."""
    if request.param == "redis":
        return {}
    cluster: LocalCluster = request.getfixturevalue("local_cluster")
    return {"redis_url": cluster.url, "redis_cluster": True}


@asynccontextmanager
async def admin(bff: Any, token: str | None = ADMIN_TOKEN) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the BFF's admin listener."""
    async with bff.browser() as client:
        if token is not None:
            client.headers["Authorization"] = f"Bearer {token}"
        yield client


async def cookie_session(bff: Any, app: str = "mobile", msisdn: str = KARI) -> str:
    """A browser's login to `app`; its session cookie."""
    async with bff.browser() as browser:
        return_to = f"{APP_ORIGIN}/mobile" if app == "mobile" else f"{APP_ORIGIN}/done"
        walk = await walk_login(browser, app, return_to=return_to, msisdn=msisdn)
        assert walk.final is not None and walk.final.status_code == 302
        return str(browser.cookies[f"__Host-Http-bff-{app}"])


async def calls(bff: Any, app: str, credential: tuple[str, str]) -> int:
    """The status of one proxied call with a cookie or a bearer credential."""
    kind, secret = credential
    async with bff.browser() as client:
        if kind == "cookie":
            headers = {**CSRF, "Cookie": f"__Host-Http-bff-{app}={secret}"}
        else:
            headers = {"Authorization": f"Bearer {secret}"}
        return (await client.get(f"{BFF}/api/{app}/user-info", headers=headers)).status_code


async def test_public_metrics_is_404_in_production_and_the_admin_listener_serves_it(make_bff):
    async with make_bff() as bff, bff.browser() as client:
        assert (await client.get(f"{BFF}/metrics")).status_code == 404
        served = await client.get(f"{ADMIN}/metrics")
        assert served.status_code == 200 and "bff_login_started_total" in served.text
        for probe in ("/healthz", "/readyz"):  # load balancers probe the public port
            assert (await client.get(f"{BFF}{probe}")).status_code == 200
            assert (await client.get(f"{ADMIN}{probe}")).status_code == 200
        assert (await client.get(f"{BFF}/admin/sessions", headers=AUTH)).status_code == 404
        assert (await client.get(f"{ADMIN}/api/web/session")).status_code == 404
    async with make_bff(env="development") as dev, dev.browser() as client:
        assert (await client.get(f"{BFF}/metrics")).status_code == 200  # dev keeps it


@pytest.mark.parametrize("token", [None, "not-the-token", ADMIN_TOKEN + "x"])
async def test_admin_calls_without_a_valid_token_are_401_and_change_nothing(
    make_bff, deployment, token, log_output
):
    async with make_bff(**deployment) as bff:
        cookie = await cookie_session(bff)
        async with admin(bff, token) as client:
            listed = await client.get(f"{ADMIN}/admin/sessions")
            revoked = await client.post(f"{ADMIN}/admin/revocations", json={"app": "mobile"})
        assert (listed.status_code, revoked.status_code) == (401, 401)
        assert revoked.headers["www-authenticate"] == 'Bearer realm="admin"'
        assert revoked.headers["content-type"] == "application/problem+json"
        assert await calls(bff, "mobile", ("cookie", cookie)) == 200
    audit = [r for r in lines(log_output()) if r.get("audit") == "admin"]
    assert [(r["by"], r["outcome"]) for r in audit] == [(None, "401"), (None, "401")]
    assert token is None or token not in log_output()


async def test_two_logins_of_one_subscriber_are_listed_and_revoked_on_both_instances(
    make_bff, deployment, redis: Redis
):
    """A cookie session made on one instance and a bearer session made on the other, each
    used on both (so both have opened the records): listed together; revoked by subscriber,
    each is 401 on both instances on the very next call."""
    async with make_bff(**deployment) as one, make_bff(**deployment) as two:
        cookie = ("cookie", await cookie_session(one))
        bearer = ("bearer", await bearer_session(two))
        for bff in (one, two):
            for credential in (cookie, bearer):
                assert await calls(bff, "mobile", credential) == 200
        async with admin(one) as client:
            listed = (
                await client.get(f"{ADMIN}/admin/sessions", params={"subscriber": KARI})
            ).json()
        sessions = listed["sessions"]
        assert sorted(s["via"] for s in sessions) == ["bearer", "cookie"]
        assert {s["app"] for s in sessions} == {"mobile"} and listed["truncated"] is False
        for s in sessions:
            assert set(s) == {"ref", "app", "via", "created_at", "expires_at"}
            assert s["ref"] not in (cookie[1], bearer[1]) and len(s["ref"]) >= 16
        async with admin(two) as client:
            r = await client.post(
                f"{ADMIN}/admin/revocations", json={"subscriber": "+47 900 00 001"}
            )
        assert r.json() == {"revoked": 2}
        for bff in (one, two):
            for credential in (cookie, bearer):
                assert await calls(bff, "mobile", credential) == 401, (bff, credential[0])
        async with admin(one) as client:
            after = await client.get(f"{ADMIN}/admin/sessions", params={"subscriber": KARI})
        assert after.json()["sessions"] == []


async def test_revoking_an_app_leaves_the_other_apps_sessions_alone(make_bff, deployment):
    async with make_bff(**deployment) as one, make_bff(**deployment) as two:
        web = ("cookie", await cookie_session(one, "web"))
        mobile = ("cookie", await cookie_session(two, "mobile", OLA))
        async with admin(one) as client:
            r = await client.post(f"{ADMIN}/admin/revocations", json={"app": "mobile"})
        assert r.json() == {"revoked": 1}
        assert await calls(two, "mobile", mobile) == 401
        assert await calls(one, "web", web) == 200 and await calls(two, "web", web) == 200


async def test_one_session_is_revoked_by_its_reference(make_bff, deployment):
    async with make_bff(**deployment) as bff:
        first = ("cookie", await cookie_session(bff))
        second = ("cookie", await cookie_session(bff))
        async with admin(bff) as client:
            sessions = (
                await client.get(f"{ADMIN}/admin/sessions", params={"app": "mobile"})
            ).json()
            refs = [s["ref"] for s in sessions["sessions"]]
            assert len(refs) == 2
            assert (await client.delete(f"{ADMIN}/admin/sessions/{refs[0]}")).status_code == 204
            again = await client.delete(f"{ADMIN}/admin/sessions/{refs[0]}")
            assert again.status_code == 404
        statuses = sorted([await calls(bff, "mobile", first), await calls(bff, "mobile", second)])
        assert statuses == [200, 401]  # the older one (listed first) is gone


async def test_sign_out_on_all_devices_ends_the_subscribers_sessions_in_that_app(make_bff):
    """POST /api/{app}/session/revoke-all: every session of the caller's subscriber in this
    app (another browser's, a phone's), not another subscriber's or another app's. A cookie
    caller needs X-CSRF."""
    async with make_bff() as bff:
        mine = [("cookie", await cookie_session(bff)), ("bearer", await bearer_session(bff))]
        someone_else = ("cookie", await cookie_session(bff, msisdn=OLA))
        other_app = ("cookie", await cookie_session(bff, "web"))
        async with bff.browser() as browser:
            browser.cookies.set("__Host-Http-bff-mobile", mine[0][1], domain="bff.test")
            refused = await browser.post(f"{BFF}/api/mobile/session/revoke-all")
            assert refused.status_code == 401  # no X-CSRF
            r = await browser.post(f"{BFF}/api/mobile/session/revoke-all", headers=CSRF)
        assert r.status_code == 200 and r.json() == {"revoked": 2}
        assert [await calls(bff, "mobile", c) for c in mine] == [401, 401]
        assert await calls(bff, "mobile", someone_else) == 200
        assert await calls(bff, "web", other_app) == 200


async def test_a_refresh_in_flight_does_not_bring_a_revoked_session_back(make_bff, sandbox):
    """The refresh re-seals the record only if it is still there (SET XX)."""
    sandbox.refresh_tokens = True
    sandbox.token_lifetime = 30  # inside the refresh skew: the next call refreshes
    async with make_bff() as bff:
        cookie = ("cookie", await cookie_session(bff))
        sandbox.token_lifetime = 3599
        sandbox.faults.latency = {"token": 1.0}
        sandbox.requests.clear()
        call = asyncio.create_task(calls(bff, "mobile", cookie))
        await until(lambda: bool(sandbox.calls("/oauth/v2/token")))  # the refresh is on its way
        async with admin(bff) as client:
            r = await client.post(f"{ADMIN}/admin/revocations", json={"subscriber": KARI})
        assert r.json() == {"revoked": 1}
        await call
        sandbox.faults.latency = {}
        assert await calls(bff, "mobile", cookie) == 401


async def test_no_raw_msisdn_in_redis_keys_values_or_log_lines(make_bff, redis, prefix, log_output):
    """The subscriber is a keyed hash everywhere the BFF writes it; audit lines carry it."""
    async with make_bff() as bff:
        await cookie_session(bff)
        await bearer_session(bff)
        keys = [k async for k in redis.scan_iter(match=f"{prefix}*")]
        assert any(b"idx:sub:" in k for k in keys)
        await check_no_msisdn(redis, keys)
        async with admin(bff) as client:
            await client.get(f"{ADMIN}/admin/sessions", params={"subscriber": KARI})
            await client.post(f"{ADMIN}/admin/revocations", json={"subscriber": KARI})
    # (the test's own httpx logs the URLs it asks for, ?subscriber= included)
    ours = [
        r for r in lines(log_output()) if not str(r["logger"]).startswith(("httpx", "httpcore"))
    ]
    assert KARI not in json.dumps(ours)
    audit = [r for r in ours if r.get("audit")]
    kinds = [r["audit"] for r in audit]
    assert kinds.count("login") == 2 and "revocation" in kinds and "admin" in kinds
    login = next(r for r in audit if r["audit"] == "login")
    assert set(login) >= {"app", "subscriber", "session", "client", "request_id", "outcome"}
    assert login["subscriber"] and login["session"] and login["outcome"] == "completed"
    revocation = next(r for r in audit if r["audit"] == "revocation")
    assert revocation["by"] == "ops" and revocation["subscriber"] == login["subscriber"]


async def check_no_msisdn(redis: Redis, keys: list[bytes]) -> None:
    for key in keys:
        assert KARI.encode() not in key
        kind = await redis.type(key)
        if kind == b"string":
            values = [await redis.get(key)]
        elif kind == b"zset":
            values = [m for m, _ in await redis.zrange(key, 0, -1, withscores=True)]
        else:
            values = []
        for value in values:
            assert KARI.encode() not in (value or b""), key


def cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("BFF_")}, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_sessions_list_and_revoke_from_the_command_line(
    make_bff, redis_url, prefix, tmp_path
):
    async with make_bff() as bff:
        cookie = ("cookie", await cookie_session(bff))
        env = {
            "BFF_ENV": "production",
            "BFF_PUBLIC_URL": BFF,
            "BFF_REDIS_URL": redis_url,
            "BFF_REDIS_KEY_PREFIX": prefix,
            "BFF_SESSION_KEYS": KEYS,
            "BFF_APPS__MOBILE__CLIENT_ID": "mobile-client",
            "BFF_APPS__MOBILE__CLIENT_SECRET": "mobile-secret-3c8e4f",
            "BFF_APPS__MOBILE__ALLOWED_ORIGINS": f'["{APP_ORIGIN}"]',
            "BFF_APPS__MOBILE__RETURN_URLS": f'["{APP_ORIGIN}/mobile"]',
            "BFF_TRUSTED_PROXIES": "10.0.0.0/8",
        }
        listed = cli(["sessions", "list", "--subscriber", KARI], env)
        assert listed.returncode == 0, listed.stderr
        rows = [json.loads(line) for line in listed.stdout.splitlines()]
        assert [r["app"] for r in rows] == ["mobile"] and cookie[1] not in listed.stdout
        revoked = cli(["sessions", "revoke", "--ref", rows[0]["ref"]], env)
        assert revoked.returncode == 0 and json.loads(revoked.stdout) == {"revoked": 1}
        assert await calls(bff, "mobile", cookie) == 401
        nothing = cli(["sessions", "revoke"], env)
        assert nothing.returncode == 2 and nothing.stderr.startswith("FATAL")
        assert "Traceback" not in nothing.stderr
