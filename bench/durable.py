"""What durable logins cost: the callback (where the session is written) with
`BFF_REDIS_WAIT_REPLICAS=0` and `=1`, against a primary with one replica on loopback.

    .venv/bin/python -m bench.durable     # about half a minute; figures for bench/README.md

Two BFFs share the primary (and the sandbox, the stub); logins alternate between them one by
one, so the machine's drift falls on both alike. The figure is the callback's latency: what a
user waits for between Telenor's consent and the app.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time

import httpx
import redis as sync_redis

from bench.__main__ import ROOT, Bench, login_cycle
from service.config import generate_key
from service.store.embedded import EmbeddedRedis, free_port

LOGINS = 200  # per BFF


async def measure(urls: dict[str, str]) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in urls}
    async with httpx.AsyncClient(timeout=10) as client:
        for url in urls.values():  # warm-up
            await login_cycle(client, url)
        for i in range(LOGINS):
            for name, url in urls.items():
                await login_cycle(client, url, f"479000000{i % 4 + 1}", times[name])
    return times


def main() -> int:
    primary = EmbeddedRedis(None, "--repl-diskless-sync-delay", "0").start()
    replica = EmbeddedRedis(None, "--replicaof", "127.0.0.1", str(primary.port)).start()
    ports = {name: free_port() for name in ("stub", "sandbox", "wait0", "wait1")}
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BFF_")},
        "BFF_ENV": "production",
        "BFF_PUBLIC_URL": "https://bff.bench.local",
        "BFF_REDIS_URL": primary.url,
        "BFF_SESSION_KEYS": generate_key(),
        "BFF_TELENOR__BASE_URL": f"http://127.0.0.1:{ports['sandbox']}",
        "BFF_TELENOR__API_URL": f"http://127.0.0.1:{ports['stub']}",
        "BFF_TRUSTED_PROXIES": "127.0.0.1",
        "BFF_ADMIN__ADDRESS": "",
        "BFF_RATE_LIMIT_LOGIN_PER_MINUTE": "1000000000",
        "BFF_RATE_LIMIT_LOGIN_PER_BROWSER_PER_MINUTE": "1000000000",
        "BFF_APPS__BENCH__CLIENT_ID": "bench-client",
        "BFF_APPS__BENCH__CLIENT_SECRET": "bench-secret-not-for-production",
        "BFF_APPS__BENCH__ALLOWED_ORIGINS": '["https://app.bench.local"]',
        "BFF_APPS__BENCH__RETURN_URLS": '["https://app.bench.local/done"]',
    }
    bench = Bench(env, primary)
    try:
        link = sync_redis.Redis(port=replica.port)
        deadline = time.monotonic() + 10  # the first sync is streamed at once (no delay)
        while link.info("replication")["master_link_status"] != "up":
            if time.monotonic() > deadline:
                raise RuntimeError("the replica did not sync")
            time.sleep(0.02)
        link.close()
        bench.start("stub", ["-m", "bench.stub", str(ports["stub"])], ports["stub"])
        sandbox = ["-m", "service", "sandbox", "--port", str(ports["sandbox"])]
        bench.start("sandbox", sandbox, ports["sandbox"])
        serve = ["-m", "service", "serve", "--host", "127.0.0.1", "--port"]
        urls = {}
        for name, wait in (("wait0", "0"), ("wait1", "1")):
            bench.env = {**env, "BFF_REDIS_WAIT_REPLICAS": wait}
            urls[name] = bench.start(name, [*serve, str(ports[name])], ports[name], cwd=ROOT).url
        times = asyncio.run(measure(urls))
        med = {k: statistics.median(v) * 1000 for k, v in times.items()}
        p99 = {k: sorted(v)[int(len(v) * 0.99)] * 1000 for k, v in times.items()}
        print(f"{LOGINS} logins each, alternating; the callback's latency:")
        for name in urls:
            wait = name[-1]
            print(f"  WAIT_REPLICAS={wait}: median {med[name]:.2f} ms, p99 {p99[name]:.2f} ms")
        print(f"  cost of WAIT 1: {med['wait1'] - med['wait0']:+.2f} ms median")
    finally:
        bench.close()
        replica.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
