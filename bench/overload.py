"""Overload: what load shedding (`BFF_MAX_IN_FLIGHT`) does at 10x the concurrency that
saturates one BFF process.

    .venv/bin/python -m bench.overload     # about a minute; figures for bench/README.md

One BFF (`serve`, 1 worker, production settings) in front of the fast upstream stub and a
private Redis, loaded by `bench/load.py`'s closed-loop clients:

1. a sweep of 1, 2, 4, ... clients, until two more doublings add less than 5 %, finds the
   peak goodput and the concurrency that reached it (C);
2. at 10 x C, in alternating rounds (the second argument, 3): with no limit; with
   `BFF_MAX_IN_FLIGHT` = 2 x C (the factor is the first argument) and the default wait for a
   slot; and with a 10 ms wait, by clients that honour `Retry-After` and by clients that do not.

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
        # Stop once doubling the clients twice running adds less than 5 % over the best.
        best = max(load.goodput for _, load in runs[:-2]) if len(runs) > 2 else 0.0
        if best and max(runs[-1][1].goodput, runs[-2][1].goodput) < 1.05 * best:
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
    import statistics

    import uvloop

    from bench.__main__ import PY, ROOT, Bench, _login_once, pin
    from service.config import generate_key
    from service.store.embedded import EmbeddedRedis, free_port

    factor = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    redis = EmbeddedRedis().start()
    ports = {name: free_port() for name in ("stub", "sandbox", "open", "limited", "short")}
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
    serve = ["-m", "service", "serve", "--host", "127.0.0.1", "--port"]
    # The BFFs on CPU 0, everything else (this load generator, the stub, Redis, the sandbox)
    # on CPU 1: the generator's own work does not take the measured server's CPU.
    server_cpu, load_cpus = ({0}, {1}) if (os.cpu_count() or 1) >= 2 else (None, None)
    pin(os.getpid(), load_cpus)
    pin(redis.pid or 0, load_cpus)
    try:
        stub = bench.start("stub", ["-m", "bench.stub", str(ports["stub"])], ports["stub"])
        pin(stub.popen.pid, load_cpus)
        sandbox = ["-m", "service", "sandbox", "--port", str(ports["sandbox"])]
        pin(bench.start("sandbox", sandbox, ports["sandbox"]).popen.pid, load_cpus)
        bench.env = {**env, "BFF_MAX_IN_FLIGHT": "0"}
        opened = bench.start("open", [*serve, str(ports["open"])], ports["open"], cwd=ROOT)
        pin(opened.popen.pid, server_cpu)
        session = uvloop.run(_login_once(f"http://127.0.0.1:{ports['open']}"))
        headers = {
            "Cookie": f"__Host-Http-bff-bench={session}",
            "X-CSRF": "1",
            "X-Forwarded-Proto": "https",
        }
        paths = [("/api/bench/user-info", headers)]
        sat = uvloop.run(sweep("127.0.0.1", ports["open"], paths))
        ten, limit = 10 * sat.clients, factor * sat.clients
        for name, wait in (("limited", "100"), ("short", "10")):
            bench.env = {**env, "BFF_MAX_IN_FLIGHT": str(limit), "BFF_SHED_AFTER_MS": wait}
            limited = bench.start(name, [*serve, str(ports[name])], ports[name], cwd=ROOT)
            pin(limited.popen.pid, server_cpu)
        print(
            f"Python {sys.version.split()[0]} ({PY}); each BFF one process, 1 worker, on CPU 0;"
            " the load, the stub, the sandbox and Redis on CPU 1"
        )
        print(sat.describe())
        cases = {
            "no limit": ("open", True),
            f"BFF_MAX_IN_FLIGHT={limit}, wait 100 ms (default)": ("limited", True),
            f"BFF_MAX_IN_FLIGHT={limit}, wait 10 ms, clients honour Retry-After": ("short", True),
            f"BFF_MAX_IN_FLIGHT={limit}, wait 10 ms, clients ignore Retry-After": ("short", False),
        }
        runs: dict[str, list[Load]] = {label: [] for label in cases}
        for _ in range(rounds):  # alternating, so the machine's drift falls on every case
            for label, (target, honour) in cases.items():
                port = ports[target]
                load = uvloop.run(overload("127.0.0.1", port, paths, ten, honour=honour))
                runs[label].append(load)
        ok = lambda o: 200 <= o.status < 400  # noqa: E731
        for label, loads in runs.items():
            ratio = statistics.median(load.goodput / sat.peak for load in loads)
            p99 = statistics.median(load.percentile(0.99, ok) for load in loads) * 1000
            shed = sum(load.shed for load in loads)
            failed = sum(load.failed for load in loads)
            refused = [x.percentile(0.99, lambda o: o.status == 503) for x in loads if x.shed]
            p99_503 = f", their p99 {statistics.median(refused) * 1000:.1f} ms" if refused else ""
            print(
                f"{ten} clients, {label}: goodput/peak median {ratio:.2f} "
                f"({', '.join(f'{x.goodput / sat.peak:.2f}' for x in loads)}); "
                f"p99 median {p99:.1f} ms; 503 {shed}{p99_503}; failed {failed}"
            )
    finally:
        bench.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
