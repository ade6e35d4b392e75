"""Redis Cluster, Sentinel, and an outage in the middle of a burst."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import AsyncExitStack

import httpx
import pytest
import redis as sync_redis

from service.kit.crypto import digest
from service.store.embedded import EmbeddedRedis, free_port
from tests.support.browser import APP_ORIGIN, BFF, bearer_session, scrape, walk_login
from tests.support.metrics import sample
from tests.support.servers import LocalCluster, LocalSentinel

CSRF = {"X-CSRF": "1"}
pytestmark = pytest.mark.usefixtures("sandbox")


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    nodes = LocalCluster().start()
    yield nodes
    nodes.close()


@pytest.fixture(scope="module")
def sentinel() -> Iterator[LocalSentinel]:
    watched = LocalSentinel().start()
    yield watched
    watched.close()


async def full_flow(bff) -> None:
    """Cookie login → proxy → logout, and a native app's code → bearer → logout, on this BFF."""
    async with bff.browser() as browser:
        walk = await walk_login(browser)
        assert walk.final.status_code == 302
        assert (await browser.get(f"{BFF}/api/web/user-info", headers=CSRF)).status_code == 200
        assert (await browser.get(f"{BFF}/api/web/device-info", headers=CSRF)).status_code == 200
        assert (await browser.post(f"{BFF}/auth/web/logout", headers=CSRF)).status_code == 204
        after = await browser.get(f"{BFF}/api/web/user-info", headers=CSRF)
        assert after.status_code == 401
        token = await bearer_session(bff)
        bearer = {"Authorization": f"Bearer {token}"}
        assert (await browser.get(f"{BFF}/api/mobile/user-info", headers=bearer)).status_code == 200
        assert (await browser.post(f"{BFF}/auth/mobile/logout", headers=bearer)).status_code == 204
        ready = await browser.get(f"{BFF}/readyz")
        assert ready.status_code == 200


async def test_full_flow_on_a_real_redis_cluster(make_bff, cluster, prefix):
    """Three cluster-mode servers: every operation is single-key (or a cross-slot pipeline)."""
    async with make_bff(redis_url=cluster.url, redis_cluster=True) as bff:
        await full_flow(bff)
        for _ in range(12):  # leave sessions to find: each id hashes to its own slot
            async with bff.browser() as browser:
                await walk_login(browser)
                await browser.get(f"{BFF}/api/web/user-info", headers=CSRF)
    # The keys really are spread over the nodes (all on one of three: p = 3^-11).
    holders = 0
    for node in cluster.nodes:
        client = sync_redis.Redis(port=node.port)
        holders += any(True for _ in client.scan_iter(match=f"{prefix}*"))
        client.close()
    assert holders >= 2


async def test_on_a_cluster_concurrent_calls_go_one_by_one_and_one_node_down_fails_only_its_own(
    make_bff,
):
    """On Redis Cluster the session reads are not coalesced: a cluster pipeline would fail every
    command when one node is unreachable. With one node of three stopped, exactly the calls
    whose sessions live on it get 503; the others go on."""
    partial = LocalCluster(3, "--cluster-require-full-coverage", "no").start()
    try:
        async with (
            make_bff(redis_url=partial.url, redis_cluster=True) as bff,
            AsyncExitStack() as stack,
        ):
            # Sessions until some live on node 2 and some elsewhere (a third of ids hash there:
            # 40 logins without either would happen once in 10^7 runs).
            browsers, numbers, nodes = [], [], []
            while len(browsers) < 40 and not (2 in nodes and len(set(nodes)) > 1):
                browser = await stack.enter_async_context(bff.browser())
                msisdn = f"479000000{1 + len(browsers) % 4}"  # the sandbox has four
                walk = await walk_login(browser, msisdn=msisdn)
                assert walk.final is not None and walk.final.status_code == 302
                session = next(v for k, v in browser.cookies.items() if k.endswith("bff-web"))
                key = f"{bff.settings.redis_key_prefix}session:{{{digest(session)}}}"
                browsers.append(browser)
                numbers.append(msisdn)
                nodes.append(partial.node_of(key))
            assert 2 in nodes and len(set(nodes)) > 1

            async def calls() -> list[httpx.Response]:
                return await asyncio.gather(
                    *(b.get(f"{BFF}/api/web/user-info", headers=CSRF) for b in browsers)
                )

            text = await scrape(browsers[0])
            before = sample(text, "bff_redis_command_seconds_count", command="EVALSHA")
            answers = await calls()
            text = await scrape(browsers[0])
            after = sample(text, "bff_redis_command_seconds_count", command="EVALSHA")
            for answer, msisdn in zip(answers, numbers, strict=True):
                assert answer.status_code == 200 and answer.json()["mobileNumber"] == msisdn
            assert after - before == len(browsers)  # one round trip each: no cluster pipeline
            partial.nodes[2].stop()
            answers = await calls()
            assert [a.status_code for a in answers] == [503 if n == 2 else 200 for n in nodes]
    finally:
        partial.close()


async def test_full_flow_through_sentinel(make_bff, sentinel):
    async with make_bff(
        redis_sentinels=[sentinel.address], redis_sentinel_service=sentinel.service
    ) as bff:
        await full_flow(bff)
    client = sync_redis.Redis(port=sentinel.primary.port)
    assert client.dbsize() > 0  # the data went to the primary Sentinel named
    client.close()


@pytest.fixture
def sentinel_with_replica() -> Iterator[LocalSentinel]:
    deployment = LocalSentinel(replica=True).start()
    yield deployment
    deployment.close()


async def test_a_sentinel_failover_is_followed_without_a_failed_request(
    make_bff, sentinel_with_replica
):
    """After Sentinel promotes the replica, the BFF's open connections to the old primary get
    READONLY; redis-py drops them and the one configured retry reconnects through Sentinel. The
    session made before the failover works, a new login works, and no request fails."""
    sentinel = sentinel_with_replica
    deployment = {"redis_sentinels": [sentinel.address], "redis_sentinel_service": sentinel.service}
    async with make_bff(**deployment) as bff, bff.browser() as browser:
        assert (await walk_login(browser)).final.status_code == 302
        assert (await browser.get(f"{BFF}/api/web/user-info", headers=CSRF)).status_code == 200
        await asyncio.to_thread(sentinel.failover)
        after = await browser.get(f"{BFF}/api/web/user-info", headers=CSRF)
        assert after.status_code == 200, after.text  # the old session, on the new primary
        async with bff.browser() as newcomer:
            assert (await walk_login(newcomer)).final.status_code == 302
            device = await newcomer.get(f"{BFF}/api/web/device-info", headers=CSRF)
            assert device.status_code == 200
    assert sentinel.replica is not None
    promoted = sync_redis.Redis(port=sentinel.replica.port)
    assert promoted.info("replication")["role"] == "master" and promoted.dbsize() > 0
    promoted.close()


@pytest.fixture
def durable_redis() -> Iterator[EmbeddedRedis]:
    """A private Redis that keeps its data across a stop (AOF, fsync always)."""
    server = EmbeddedRedis(None, "--appendonly", "yes", "--appendfsync", "always").start()
    yield server
    server.close()


async def test_redis_stopping_mid_burst_gives_only_503s_and_sessions_survive(
    make_bff, durable_redis
):
    """Logins and API calls in flight while Redis stops: 2xx/3xx or 503 (+ Retry-After), never
    a 500; after Redis is back the same sessions work again."""
    async with make_bff(redis_url=durable_redis.url) as bff, AsyncExitStack() as stack:
        browsers = [await stack.enter_async_context(bff.browser()) for _ in range(3)]
        for i, b in enumerate(browsers):
            await walk_login(b, msisdn=f"479000000{i + 1}")
        responses: list[httpx.Response] = []
        stopped_at: list[int] = []

        async def traffic(b: httpx.AsyncClient, n: int) -> None:
            for i in range(n):
                if i % 3 == 0:
                    url = f"{BFF}/auth/web/login?return_to={APP_ORIGIN}/done"
                    responses.append(await b.get(url))
                else:
                    responses.append(await b.get(f"{BFF}/api/web/user-info", headers=CSRF))
                if len(responses) >= 40 and not stopped_at:
                    stopped_at.append(-1)
                    await asyncio.to_thread(durable_redis.stop)
                    stopped_at[0] = len(responses)

        await asyncio.gather(*(traffic(b, 40) for b in browsers))
        statuses = [r.status_code for r in responses]
        assert 500 not in statuses and set(statuses) <= {200, 302, 503}
        assert set(statuses[:38]) <= {200, 302}  # while Redis was up
        # Once Redis is gone, everything is 503 (the few calls already past Redis may finish).
        after = statuses[stopped_at[0] + len(browsers) :]
        assert len(after) >= 20 and set(after) == {503}
        for r in responses:
            if r.status_code != 503:
                continue
            assert r.headers["retry-after"] == "2"
            if r.request.url.path.startswith("/api/"):
                assert r.headers["content-type"] == "application/problem+json"
                assert r.json()["type"].endswith(":store_unavailable")
            else:
                assert r.headers["content-type"].startswith("text/html")
        durable_redis.start()
        for b in browsers:
            again = await b.get(f"{BFF}/api/web/user-info", headers=CSRF)
            assert again.status_code == 200, again.text


async def test_durable_logins_wait_for_a_replica_and_say_when_none_acknowledged(
    make_bff, sentinel_with_replica, log_output, prefix
):
    """BFF_REDIS_WAIT_REPLICAS=1: the new session is on the replica when the callback answers
    (WAIT in the write's round trip). With the replica gone, the login still finishes, and the
    write that no replica acknowledged is counted and logged."""
    sentinel = sentinel_with_replica
    assert sentinel.replica is not None
    deployment = {
        "redis_sentinels": [sentinel.address],
        "redis_sentinel_service": sentinel.service,
        "redis_wait_replicas": 1,
        "redis_wait_timeout_ms": 200,
    }
    replica = sync_redis.Redis(port=sentinel.replica.port)
    async with make_bff(**deployment) as bff:
        async with bff.browser() as browser:
            assert (await walk_login(browser)).final.status_code == 302
            assert any(True for _ in replica.scan_iter(match=f"{prefix}session:*"))
            assert "bff_redis_unreplicated_writes_total 0.0" in await scrape(browser)
        replica.close()
        sentinel.replica.stop()
        async with bff.browser() as browser:
            assert (await walk_login(browser)).final.status_code == 302
            assert (await browser.get(f"{BFF}/api/web/user-info", headers=CSRF)).status_code == 200
            assert "bff_redis_unreplicated_writes_total 1.0" in await scrape(browser)
    assert "session write not replicated in time" in log_output()


async def test_an_unreachable_cluster_is_a_503_everywhere_never_a_500(make_bff):
    """redis-py's cluster errors (no node reachable, a slot no node serves) are not RedisErrors:
    they are still Redis failures, answered 503 with Retry-After."""
    nowhere = f"redis://127.0.0.1:{free_port()}"
    async with make_bff(redis_url=nowhere, redis_cluster=True) as bff, bff.browser() as browser:
        cookie = {"Cookie": "__Host-Http-bff-web=" + "a" * 43, **CSRF}
        answers = [
            await browser.get(f"{BFF}/api/web/user-info", headers=cookie),
            await browser.get(f"{BFF}/api/web/session", headers=cookie),
            await browser.post(
                f"{BFF}/api/web/auth/start", json={"return_to": f"{APP_ORIGIN}/done"}
            ),
            await browser.get(f"{BFF}/auth/web/login?return_to={APP_ORIGIN}/done"),
            await browser.get(f"{BFF}/readyz"),
        ]
    assert [a.status_code for a in answers] == [503] * 5, [a.text for a in answers]
    assert all(a.headers.get("retry-after") for a in answers[:4])
