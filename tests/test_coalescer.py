"""Session reads issued in one turn of the event loop share one pipelined round trip to Redis
(`service.redis.Coalescer`): each caller gets its own reply or error, a failure of the round
trip fails every caller, and a cancelled caller cancels only itself."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from service.store.redis import Coalescer, timed
from tests.support.browser import BFF, scrape, walk_login
from tests.support.metrics import sample

CSRF = {"X-CSRF": "1"}


def round_trips(client: Redis) -> list[str]:
    """The names `timed` reports, one per round trip this client makes."""
    seen: list[str] = []
    timed(client, lambda name, _seconds: seen.append(name))
    return seen


async def test_one_turns_commands_go_as_one_pipeline_each_with_its_own_reply(redis_url, prefix):
    client = Redis.from_url(redis_url)
    trips = round_trips(client)
    keys = [f"{prefix}k{i}" for i in range(6)]
    for i, key in enumerate(keys):
        await client.execute_command("SET", key, f"value-{i}")
    trips.clear()
    reads = Coalescer(client)
    replies = await asyncio.gather(*(reads.execute("GET", key) for key in keys))
    assert replies == [f"value-{i}".encode() for i in range(6)]
    assert trips == ["pipeline"]  # six reads, one round trip
    # Alone in its turn, a command goes as itself.
    assert await reads.execute("GET", keys[0]) == b"value-0"
    assert trips == ["pipeline", "GET"]
    await client.aclose()


async def test_a_commands_error_goes_to_its_caller_only(redis_url, prefix):
    client = Redis.from_url(redis_url)
    await client.rpush(f"{prefix}list", "x")
    await client.set(f"{prefix}plain", "ok")
    trips = round_trips(client)
    reads = Coalescer(client)
    results = await asyncio.gather(
        reads.execute("GET", f"{prefix}plain"),
        reads.execute("GET", f"{prefix}list"),  # WRONGTYPE
        reads.execute("GET", f"{prefix}missing"),
        return_exceptions=True,
    )
    assert results[0] == b"ok" and results[2] is None
    assert isinstance(results[1], ResponseError) and "WRONGTYPE" in str(results[1])
    # The leader's own error reaches the leader, and the others still get their replies.
    led = await asyncio.gather(
        reads.execute("GET", f"{prefix}list"),
        reads.execute("GET", f"{prefix}plain"),
        return_exceptions=True,
    )
    assert isinstance(led[0], ResponseError) and led[1] == b"ok"
    assert trips == ["pipeline", "pipeline"]  # each trio, each pair: one round trip
    await client.aclose()


async def test_a_failed_round_trip_fails_every_caller(private_redis):
    client = Redis.from_url(private_redis.url, socket_timeout=1, retry=Retry(NoBackoff(), 0))
    await client.ping()
    private_redis.stop()
    trips = round_trips(client)
    reads = Coalescer(client)
    results = await asyncio.gather(
        *(reads.execute("GET", f"k{i}") for i in range(4)), return_exceptions=True
    )
    assert all(isinstance(r, RedisConnectionError) for r in results), results
    assert trips == ["pipeline"]  # one failed round trip, four failed callers
    await client.aclose()


async def test_a_cancelled_caller_cancels_only_itself(redis_url, prefix):
    """Cancelled while the turn gathers (the first caller) or while the batch is on its way
    (any caller): the others get their replies, and nobody waits in vain."""
    client = Redis.from_url(redis_url)
    await client.set(f"{prefix}k", "v")
    reads = Coalescer(client)
    first, *others = (asyncio.ensure_future(reads.execute("GET", f"{prefix}k")) for _ in range(4))
    await asyncio.sleep(0)  # the first waits for the turn to end; the others have joined
    first.cancel()
    assert await asyncio.wait_for(asyncio.gather(*others), 5) == [b"v"] * 3
    assert first.cancelled()
    calls = [asyncio.ensure_future(reads.execute("GET", f"{prefix}k")) for _ in range(4)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # the batch has left: every caller waits for its reply
    calls[0].cancel()
    calls[2].cancel()
    assert await asyncio.wait_for(asyncio.gather(calls[1], calls[3]), 5) == [b"v"] * 2
    assert calls[0].cancelled() and calls[2].cancelled()
    # The next turn gathers anew.
    assert await reads.execute("GET", f"{prefix}k") == b"v"
    await client.aclose()


def round_trips_in(metrics: str) -> float:
    """The session reads' round trips: alone (EVALSHA) or batched (pipeline)."""
    name = "bff_redis_command_seconds_count"
    return sample(metrics, name, command="EVALSHA") + sample(metrics, name, command="pipeline")


@pytest.mark.usefixtures("sandbox")
async def test_concurrent_proxied_calls_share_round_trips_and_each_gets_its_own_data(bff, redis):
    """Three subscribers' browsers call at once: fewer session reads than calls reach Redis,
    every call is counted against its own session, and every answer is its own subscriber's."""
    numbers = ["4790000001", "4790000002", "4790000003"]
    async with AsyncExitStack() as stack:
        browsers = [await stack.enter_async_context(bff.browser()) for _ in numbers]
        for browser, msisdn in zip(browsers, numbers, strict=True):
            assert (await walk_login(browser, msisdn=msisdn)).final.status_code == 302
        text = await scrape(browsers[0])
        before = round_trips_in(text)
        calls = [(b, n) for b, n in zip(browsers, numbers, strict=True) for _ in range(4)]
        answers = await asyncio.gather(
            *(b.get(f"{BFF}/api/web/user-info", headers=CSRF) for b, _ in calls)
        )
        for answer, (_, msisdn) in zip(answers, calls, strict=True):
            assert answer.status_code == 200, answer.text
            assert answer.json()["mobileNumber"] == msisdn
        text = await scrape(browsers[0])
        trips = round_trips_in(text) - before
    assert 1 <= trips < len(calls)
    counters = [k async for k in redis.scan_iter(match=f"{bff.settings.redis_key_prefix}rl:api:*")]
    assert sorted([int(await redis.get(k)) for k in counters]) == [4, 4, 4]


@pytest.mark.usefixtures("sandbox")
async def test_a_batch_after_redis_forgot_the_script_still_answers_every_call(
    make_bff, private_redis
):
    """After a restart (or SCRIPT FLUSH) Redis knows no script: every read of the batch gets
    NOSCRIPT, and each falls back to EVAL on its own."""
    async with make_bff(redis_url=private_redis.url) as bff, bff.browser() as browser:
        assert (await walk_login(browser)).final.status_code == 302
        assert (await browser.get(f"{BFF}/api/web/user-info", headers=CSRF)).status_code == 200
        own = Redis.from_url(private_redis.url)
        await own.script_flush()
        await own.aclose()
        answers = await asyncio.gather(
            *(browser.get(f"{BFF}/api/web/user-info", headers=CSRF) for _ in range(5))
        )
    assert [a.status_code for a in answers] == [200] * 5
