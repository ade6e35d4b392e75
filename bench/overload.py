"""Overload: what load shedding (`BFF_MAX_IN_FLIGHT`) does at 10x the concurrency that
saturates one BFF process.

    .venv/bin/python -m bench.overload     # about a minute; figures for bench/README.md

One BFF (`serve`, 1 worker, production settings) in front of the fast upstream stub and a
private Redis, loaded by `bench/load.py`'s closed-loop clients:

1. a sweep of 1, 2, 4, ... clients, until doubling them adds less than 5 %, finds the peak
   goodput and the concurrency that reached it (C);
2. at 10 x C: with shedding off, and with `BFF_MAX_IN_FLIGHT` = 2 x C (or the factor given as
   the first argument), by clients that honour
   `Retry-After` (as the JS client and the mobile guidance do) and by clients that do not.

`tests/test_production_shape.py` runs the same `sweep` and `overload` against a replica of the
production rig.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from bench.load import Load, run

Paths = Sequence[tuple[str, dict[str, str]]]


@dataclass
class Saturation:
    peak: float  # goodput, requests/s
    clients: int  # the concurrency that reached the peak
    p99: float  # seconds, of the answers at that concurrency
    sweep: list[tuple[int, Load]]

    def describe(self) -> str:
        steps = ", ".join(f"{c}: {load.goodput:.0f}/s" for c, load in self.sweep)
        return (
            f"sweep {steps}; peak {self.peak:.0f}/s, saturated at {self.clients} clients "
            f"(p99 {self.p99 * 1000:.1f} ms)"
        )


async def sweep(
    host: str, port: int, paths: Paths, seconds: float = 2.0, top: int = 64
) -> Saturation:
    runs: list[tuple[int, Load]] = []
    clients = 1
    while clients <= top:
        runs.append((clients, await run(host, port, paths, clients=clients, seconds=seconds)))
        # Stop once doubling the clients no longer adds 5 %.
        if len(runs) >= 3 and runs[-1][1].goodput < 1.05 * runs[-2][1].goodput:
            break
        clients *= 2
    best, load = max(runs, key=lambda run: run[1].goodput)
    ok = lambda o: 200 <= o.status < 400  # noqa: E731
    return Saturation(load.goodput, best, load.percentile(0.99, ok), runs)


async def overload(
    host: str, port: int, paths: Paths, clients: int, *, honour: bool, seconds: float = 4.0
) -> Load:
    return await run(
        host,
        port,
        paths,
        clients=clients,
        seconds=seconds,
        honour_retry_after=honour,
        request_timeout=5.0,
    )


def main() -> int:
    import uvloop

    from bench.__main__ import PY, ROOT, Bench, _login_once
    from service.config import generate_key
    from service.embedded import EmbeddedRedis, free_port

    redis = EmbeddedRedis().start()
    ports = {name: free_port() for name in ("stub", "sandbox", "bff")}
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BFF_")},
        "BFF_ENV": "production",
        "BFF_PUBLIC_URL": "https://bff.bench.local",
        "BFF_REDIS_URL": redis.url,
        "BFF_SESSION_KEYS": generate_key(),
        "BFF_TELENOR__BASE_URL": f"http://127.0.0.1:{ports['sandbox']}",
        "BFF_TELENOR__API_URL": f"http://127.0.0.1:{ports['stub']}",
        "BFF_TRUSTED_PROXIES": "127.0.0.1",
        "BFF_ADMIN__ADDRESS": "",
        "BFF_RATE_LIMIT_API_PER_MINUTE": "1000000000",
        "BFF_APPS__BENCH__CLIENT_ID": "bench-client",
        "BFF_APPS__BENCH__CLIENT_SECRET": "bench-secret-not-for-production",
        "BFF_APPS__BENCH__ALLOWED_ORIGINS": '["https://app.bench.local"]',
        "BFF_APPS__BENCH__RETURN_URLS": '["https://app.bench.local/done"]',
    }
    bench = Bench(env, redis)
    serve = ["-m", "service", "serve", "--host", "127.0.0.1", "--port", str(ports["bff"])]
    try:
        bench.start("stub", ["-m", "bench.stub", str(ports["stub"])], ports["stub"])
        sandbox = ["-m", "service", "sandbox", "--port", str(ports["sandbox"])]
        bench.start("sandbox", sandbox, ports["sandbox"])
        bff = bench.start("bff", serve, ports["bff"], cwd=ROOT)
        session = uvloop.run(_login_once(bff.url))
        headers = {
            "Cookie": f"__Host-Http-bff-bench={session}",
            "X-CSRF": "1",
            "X-Forwarded-Proto": "https",
        }
        paths = [("/api/bench/user-info", headers)]
        sat = uvloop.run(sweep("127.0.0.1", ports["bff"], paths))
        print(f"Python {sys.version.split()[0]} ({PY}); one BFF process, 1 worker")
        print(sat.describe())
        ten = 10 * sat.clients
        limit = int(sys.argv[1]) * sat.clients if len(sys.argv) > 1 else 2 * sat.clients
        rows = []
        for label, max_in_flight, honour in (
            ("no shedding", "0", True),
            (f"BFF_MAX_IN_FLIGHT={limit}, clients honour Retry-After", str(limit), True),
            (f"BFF_MAX_IN_FLIGHT={limit}, clients ignore Retry-After", str(limit), False),
        ):
            bench.stop(bff)
            bench.env = {**env, "BFF_MAX_IN_FLIGHT": max_in_flight}
            bff = bench.start("bff", serve, ports["bff"], cwd=ROOT)
            load = uvloop.run(overload("127.0.0.1", ports["bff"], paths, ten, honour=honour))
            rows.append((label, load))
        for label, load in rows:
            ratio = load.goodput / sat.peak
            print(f"{ten} clients, {label}: {load.summary()}; goodput/peak {ratio:.2f}")
    finally:
        bench.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
