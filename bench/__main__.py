"""`python -m bench`: the proxied call against its ceiling, scaling, login cycles, Redis cost, RSS.

Everything runs on loopback in this one run: a private Redis, a raw-ASGI upstream stub, the
sandbox (for logins), the BFF with 1 and 2 workers, and the ceiling app. Load comes from wrk with
20 connections; targets are measured alternately (A B C A B C …) so the machine's drift cancels,
and ratios are taken between runs of the same round. Prints Markdown; also writes
bench/results/latest.md (and py-spy profiles next to it with --profile).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import redis as sync_redis

from service.config import generate_key
from service.kit.crypto import digest
from service.store.embedded import EmbeddedRedis, free_port

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PY = sys.executable
PUBLIC = "https://bff.bench.local"
APP_ORIGIN = "https://app.bench.local"
COOKIE = "__Host-Http-bff-bench"
CONNECTIONS = 20


@dataclass
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    cpu_us: float = 0.0  # CPU time the server process spent per request (less noisy than rps)


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Bench:
    env: dict[str, str]
    redis: EmbeddedRedis
    procs: list[Proc] = field(default_factory=list)

    def start(
        self,
        name: str,
        args: list[str],
        port: int,
        cwd: Path = ROOT,
        wrapper: tuple[str, ...] = (),
        wait: float = 30,
    ) -> Proc:
        """Start `python *args` (under `wrapper`, e.g. valgrind) and wait until it listens."""
        popen = subprocess.Popen(
            [*wrapper, PY, *args],
            env=self.env,
            cwd=cwd,  # `python -m service` imports the `service` package found there
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        proc = Proc(name, popen, port)
        self.procs.append(proc)
        deadline = time.monotonic() + wait
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if popen.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not start") from None
                time.sleep(0.05)
        return proc

    def stop(self, proc: Proc) -> None:
        if proc.popen.poll() is None:
            os.killpg(proc.popen.pid, signal.SIGTERM)
            try:
                proc.popen.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.popen.pid, signal.SIGKILL)
                proc.popen.wait()
        self.procs.remove(proc)

    def close(self) -> None:
        for proc in list(self.procs):
            self.stop(proc)
        self.redis.close()


LOAD_CPUS: set[int] | None = None  # with --pin: where wrk, the stub and Redis run


def pin(pid: int, cpus: set[int] | None) -> None:
    """Keep a process (and the threads it starts) on these CPUs."""
    if cpus is not None:
        os.sched_setaffinity(pid, cpus)


def wrk(url: str, seconds: float, headers: dict[str, str]) -> Run:
    args = ["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds:g}s", "--latency", "--timeout", "5s"]
    if LOAD_CPUS is not None:
        args = ["taskset", "-c", ",".join(map(str, sorted(LOAD_CPUS))), *args]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = int(bad.group(1)) if bad else 0
    socket_errors = re.search(r"Socket errors: .*?timeout (\d+)", out)
    errors += int(socket_errors.group(1)) if socket_errors else 0

    def pct(p: str) -> float:
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        assert m, out
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    return Run(rps, pct("50"), pct("99"), total, errors)


async def session_memory(redis_url: str, sessions: int = 10_000) -> tuple[float, float]:
    """Redis bytes per session: sealed records alone, then records with their index entries
    (the service's own SessionStore), each on an empty database."""
    from redis.asyncio import Redis

    from service.kit.crypto import Cipher, new_token
    from service.store.session_index import SubscriberHash
    from service.store.stores import SessionStore

    client = Redis.from_url(redis_url, db=3)
    cipher = Cipher([os.urandom(32)])
    hashes = SubscriberHash([os.urandom(32)])
    store = SessionStore(client, prefix="m:", cipher=cipher, max_seconds=28800, clock=time.time)
    measured = []
    try:
        for indexed in (False, True):
            await client.flushdb()
            before = int((await client.info("memory"))["used_memory"])
            for i in range(sessions):
                session = store.new("bench", new_token(32), 3599, None, hashes(f"47{i // 2:08d}"))
                if indexed:
                    await store.create(session)
                else:
                    key = store.key(new_token(32))
                    await client.set(key, store.seal(session, key), ex=3599)
            after = int((await client.info("memory"))["used_memory"])
            measured.append((after - before) / sessions)
        await client.flushdb()
    finally:
        await client.aclose()
    return measured[0], measured[1]


def set_cookies(response: httpx.Response) -> dict[str, str]:
    jar = {}
    for header in response.headers.get_list("set-cookie"):
        name, _, rest = header.partition("=")
        jar[name] = rest.split(";", 1)[0]
    return jar


async def login_cycle(
    client: httpx.AsyncClient,
    bff: str,
    msisdn: str = "4790000001",
    callback_times: list[float] | None = None,
) -> str:
    """start → sandbox (network auth) → consent → callback; returns the session id (and adds
    the callback's duration, where the session is written, to `callback_times`)."""
    https = {"X-Forwarded-Proto": "https"}
    r = await client.get(
        f"{bff}/auth/bench/login", params={"return_to": f"{APP_ORIGIN}/done"}, headers=https
    )
    assert r.status_code == 302, r.text
    binding = set_cookies(r)
    r = await client.get(r.headers["location"], headers={"X-Sandbox-MSISDN": msisdn})
    consent = str(r.url.join(r.headers["location"]))
    r = await client.post(consent, data={"decision": "approve"})
    callback = urlsplit(r.headers["location"])
    cookie = "; ".join(f"{k}={v}" for k, v in binding.items())
    began = time.perf_counter()
    r = await client.get(
        f"{bff}{callback.path}?{callback.query}", headers={**https, "Cookie": cookie}
    )
    if callback_times is not None:
        callback_times.append(time.perf_counter() - began)
    assert r.status_code == 302, r.text
    return set_cookies(r)[COOKIE]


def redis_counters(client: sync_redis.Redis) -> tuple[Counter[str], int]:
    """Commands by name (INFO commandstats) and replies written (≈ round trips)."""
    stats = client.info("commandstats")
    commands: Counter[str] = Counter(
        {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}
    )
    writes = int(client.info("stats")["total_writes_processed"])
    return commands, writes


def per_request(
    client: sync_redis.Redis, before: tuple[Counter[str], int], n: int
) -> tuple[dict[str, float], float]:
    after = redis_counters(client)
    commands = after[0] - before[0]
    commands.pop("info", None)
    # Our own INFO calls are two round trips (one before, one after); take them out.
    trips = (after[1] - before[1] - 2) / n
    return {k: round(v / n, 2) for k, v in sorted(commands.items())}, round(trips, 2)


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(pid: int, url: str, seconds: float, headers: dict[str, str]) -> Run:
    before = cpu_seconds(pid)
    run = wrk(url, seconds, headers)
    run.cpu_us = (cpu_seconds(pid) - before) / max(run.requests, 1) * 1e6
    return run


def child_pids(pid: int) -> list[int]:
    """The processes `pid` started (uvicorn's workers), from /proc."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for c in children]


def machine_cpu() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs since boot, from /proc/stat."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return sum(ticks) - idle, sum(ticks)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def login_rate(bff: str, seconds: float, concurrency: int = 10) -> tuple[float, int]:
    done = 0
    deadline = time.monotonic() + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal done
        while time.monotonic() < deadline:
            await login_cycle(client, bff)
            done += 1

    started = time.monotonic()
    async with httpx.AsyncClient(timeout=10) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return done / (time.monotonic() - started), done


def profile(pid: int, seconds: int, out: Path, target: str, headers: dict[str, str]) -> list[str]:
    """py-spy while wrk loads the target; the top functions by own samples."""
    spy = shutil.which("py-spy") or str(Path(PY).parent / "py-spy")
    raw = out.with_suffix(".folded")
    command = [spy, "record", "-p", str(pid), "-d", str(seconds), "-r", "500"]
    rec = subprocess.Popen(
        [*command, "-f", "raw", "-o", str(raw)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    wrk(target, seconds - 1, headers)
    rec.wait(60)
    own: Counter[str] = Counter()
    by_package: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        total += int(count)
        own[re.sub(r" \(.*?/site-packages/", " (", frames[-1])] += int(count)
        by_package[_package(frames[-1])] += int(count)
    top = [f"{100 * n / total:5.1f}%  {name}" for name, n in own.most_common(15)]
    top.append("")
    top += [f"{100 * n / total:5.1f}%  [{name}]" for name, n in by_package.most_common(12)]
    out.write_text("\n".join(top) + "\n")
    return top


def _package(frame: str) -> str:
    """`redis`, `aiohttp`, `service/proxy.py`, `asyncio`, … for a py-spy frame."""
    path = frame[frame.rfind("(") + 1 :].rsplit(":", 1)[0]
    top = path.split("/", 1)[0]
    return path if top == "service" else top.removesuffix(".py")


def table(rows: list[tuple[str, ...]]) -> str:
    head, *body = rows
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--seconds", type=float, default=5, help="length of each wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--profile", action="store_true", help="py-spy the BFF's hot path")
    parser.add_argument(
        "--quick", action="store_true", help="only the alternating proxied-call comparison"
    )
    parser.add_argument(
        "--callgrind",
        action="store_true",
        help="also count instructions per proxied call under valgrind (repeatable, slow)",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="with --quick: the measured servers on CPU 0, wrk, the stub and Redis on CPU 1 "
        "(steadier ratios on a 2-CPU machine)",
    )
    parser.add_argument(
        "--baseline",
        metavar="GIT_REF",
        help="also run the BFF as of this commit, alternating with today's (same-run before/after)",
    )
    parser.add_argument(
        "--bff-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an extra BFF_ setting for the BFF processes (experiments: BFF_LOG_LEVEL=warning)",
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("wrk is not installed: bench/run installs it (apt-get install wrk)", file=sys.stderr)
        return 2
    RESULTS.mkdir(parents=True, exist_ok=True)
    global LOAD_CPUS
    server_cpus = None
    if args.pin:
        if not args.quick or (os.cpu_count() or 1) < 2:
            print("--pin needs --quick and two CPUs", file=sys.stderr)
            return 2
        server_cpus, LOAD_CPUS = {0}, {1}

    redis = EmbeddedRedis().start()
    pin(redis.pid or 0, LOAD_CPUS)
    names = ("stub", "sandbox", "bff1", "bff1q", "bff2", "ceiling", "baseline")
    ports = {name: free_port() for name in names}
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BFF_")},
        "BFF_ENV": "production",
        "BFF_PUBLIC_URL": PUBLIC,
        "BFF_REDIS_URL": redis.url,
        "BFF_SESSION_KEYS": generate_key(),
        "BFF_TELENOR__BASE_URL": f"http://127.0.0.1:{ports['sandbox']}",
        "BFF_TELENOR__API_URL": f"http://127.0.0.1:{ports['stub']}",
        "BFF_TRUSTED_PROXIES": "127.0.0.1",
        "BFF_ADMIN__ADDRESS": "",  # (several BFFs run at once: no admin listener to share)
        # Counted (the cost is measured) but never reached.
        "BFF_RATE_LIMIT_API_PER_MINUTE": "1000000000",
        "BFF_RATE_LIMIT_LOGIN_PER_MINUTE": "1000000000",
        "BFF_RATE_LIMIT_LOGIN_PER_BROWSER_PER_MINUTE": "1000000000",
        "BFF_RATE_LIMIT_LOGIN_PER_APP_PER_MINUTE": "1000000000",
        "BFF_APPS__BENCH__CLIENT_ID": "bench-client",
        "BFF_APPS__BENCH__CLIENT_SECRET": "bench-secret-not-for-production",
        "BFF_APPS__BENCH__ALLOWED_ORIGINS": f'["{APP_ORIGIN}"]',
        "BFF_APPS__BENCH__RETURN_URLS": f'["{APP_ORIGIN}/done"]',
    }
    env.update(item.split("=", 1) for item in args.bff_env)  # type: ignore[misc]
    bench = Bench(env, redis)
    report: list[str] = []
    cleanup: list[Path] = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        report.append(text)

    try:
        stub = bench.start("stub", ["-m", "bench.stub", str(ports["stub"])], ports["stub"])
        pin(stub.popen.pid, LOAD_CPUS)
        bench.start(
            "sandbox",
            ["-m", "service", "sandbox", "--port", str(ports["sandbox"])],
            ports["sandbox"],
        )
        serve = ["-m", "service", "serve", "--host", "127.0.0.1"]
        bff1 = bench.start("bff1", [*serve, "--port", str(ports["bff1"])], ports["bff1"])
        # The same BFF without its per-request access line: what logging costs.
        bench.env = {**env, "BFF_LOG_LEVEL": "warning"}
        quiet = bench.start("bff1q", [*serve, "--port", str(ports["bff1q"])], ports["bff1q"])
        bench.env = env
        baseline = None
        if args.baseline:
            # That commit's `service` package, run with this venv's dependencies.
            old = Path(tempfile.mkdtemp(prefix="bench-baseline-"))
            cleanup.append(old)
            archive = subprocess.run(
                ["git", "archive", args.baseline, "service"],
                cwd=ROOT,
                capture_output=True,
                check=True,
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
            baseline = bench.start(
                "baseline", [*serve, "--port", str(ports["baseline"])], ports["baseline"], cwd=old
            )
        session = asyncio.run(_login_once(bff1.url))
        key = "bff:session:" + digest(session)
        ceiling = bench.start(
            "ceiling",
            [
                "-m",
                "bench.ceiling",
                str(ports["ceiling"]),
                redis.url,
                f"{stub.url}/user-info/v1/users",
                key,
            ],
            ports["ceiling"],
        )
        headers = {
            "Cookie": f"{COOKIE}={session}",
            "X-CSRF": "1",
            "X-Forwarded-Proto": "https",
        }
        proxied = "/api/bench/user-info"
        say(f"# Line Auth BFF benchmark — {time.strftime('%Y-%m-%d %H:%M')}")
        say()
        say(
            f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
            f"{platform.python_version()}, {_redis_version(redis)}; wrk -t2 -c{CONNECTIONS}, "
            f"{args.seconds:g} s per run, {args.rounds} alternating rounds."
        )
        say()

        # RSS: a fresh worker, then after >= 10 000 and >= 100 000 proxied requests.
        pid = bff1.popen.pid
        rss = {"start": rss_mb(pid)}
        served = 0
        goals = (10_000, 100_000) if not args.quick else (0, 0)
        while served < goals[0]:
            served += wrk(bff1.url + proxied, 2, headers).requests
        rss["10k"], at_10k = rss_mb(pid), served
        while served < goals[1]:
            served += wrk(bff1.url + proxied, 5, headers).requests
        rss["100k"], at_100k = rss_mb(pid), served

        # Throughput and latency, alternating.
        targets = {
            "ceiling (raw ASGI)": (ceiling.popen.pid, ceiling.url + "/"),
            "BFF, 1 worker": (pid, bff1.url + proxied),
            "BFF, 1 worker, no access log": (quiet.popen.pid, quiet.url + proxied),
            "upstream direct": (stub.popen.pid, stub.url + "/user-info/v1/users"),
        }
        sent = {name: headers for name in targets}
        if baseline is not None:
            targets[f"BFF at {args.baseline}"] = (baseline.popen.pid, baseline.url + proxied)
            # A session of its own making: its code may not read today's records.
            old_session = asyncio.run(_login_once(baseline.url))
            sent[f"BFF at {args.baseline}"] = {**headers, "Cookie": f"{COOKIE}={old_session}"}
        runs: dict[str, list[Run]] = {name: [] for name in targets}
        for target_pid, _ in targets.values():
            if target_pid != stub.popen.pid:
                pin(target_pid, server_cpus)
        for name, (_, url) in targets.items():
            wrk(url, 1, sent[name])  # warm-up
        for _ in range(args.rounds):
            for name, (target_pid, url) in targets.items():
                runs[name].append(measured(target_pid, url, args.seconds, sent[name]))

        if args.callgrind:
            commands = {
                "ceiling (raw ASGI)": (
                    ["-m", "bench.ceiling"],
                    [redis.url, f"{stub.url}/user-info/v1/users", key],
                    ROOT,
                ),
                "BFF, 1 worker": ([*serve, "--port"], [], ROOT),
            }
            if baseline is not None:
                commands[f"BFF at {args.baseline}"] = ([*serve, "--port"], [], old)
            instructions = {
                name: callgrind_per_request(
                    bench, name, command, after, cwd, proxied, sent.get(name, headers)
                )
                for name, (command, after, cwd) in commands.items()
            }
            _callgrind_report(say, instructions, args.baseline)
        if args.quick:
            if args.rounds:
                _quick_report(say, runs, args.baseline)
            if args.profile:
                stamp = time.strftime("%Y%m%d-%H%M%S")
                for name, (target_pid, url) in list(targets.items())[:3]:
                    slug = {ceiling.popen.pid: "ceiling", pid: "proxied"}.get(target_pid, "quiet")
                    say(f"## py-spy: {name}")
                    for line in profile(
                        target_pid, 8, RESULTS / f"profile-{slug}-{stamp}.txt", url, headers
                    ):
                        say(line)
            return 0
        bff2 = bench.start(
            "bff2", [*serve, "--port", str(ports["bff2"]), "--workers", "2"], ports["bff2"]
        )
        wrk(bff2.url + proxied, 1, headers)
        scale: dict[str, list[Run]] = {"BFF, 1 worker": [], "BFF, 2 workers": []}
        busy: list[float] = []
        shares: dict[str, list[float]] = {"wrk": [], "upstream stub": [], "Redis": []}
        helpers = {"upstream stub": stub.popen.pid, "Redis": redis.pid or 0}
        workers = child_pids(bff2.popen.pid)
        for _ in range(args.rounds):
            scale["BFF, 1 worker"].append(measured(pid, bff1.url + proxied, args.seconds, headers))
            machine, children = machine_cpu(), resource.getrusage(resource.RUSAGE_CHILDREN)
            before = {name: cpu_seconds(p) for name, p in helpers.items()}
            worker_cpu = sum(cpu_seconds(w) for w in workers)
            two = wrk(bff2.url + proxied, args.seconds, headers)
            worker_cpu = sum(cpu_seconds(w) for w in workers) - worker_cpu
            two.cpu_us = worker_cpu / max(two.requests, 1) * 1e6
            scale["BFF, 2 workers"].append(two)
            used, total = (a - b for a, b in zip(machine_cpu(), machine, strict=True))
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            seconds_used = used / os.sysconf("SC_CLK_TCK")
            busy.append(used / total)
            shares["wrk"].append(
                ((after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime))
                / seconds_used
            )
            for name, p in helpers.items():
                shares[name].append((cpu_seconds(p) - before[name]) / seconds_used)
        bench.stop(bff2)

        def med(values: list[Run], attr: str) -> float:
            return statistics.median(getattr(r, attr) for r in values)

        rows: list[tuple[str, ...]] = [
            ("target", "req/s", "p50 ms", "p99 ms", "server CPU us/req", "errors")
        ]
        for name, values in runs.items():
            rows.append(
                (
                    name,
                    f"{med(values, 'rps'):,.0f}",
                    f"{med(values, 'p50_ms'):.2f}",
                    f"{med(values, 'p99_ms'):.2f}",
                    f"{med(values, 'cpu_us'):.0f}",
                    str(sum(r.errors for r in values)),
                )
            )
        say("## Proxied call (`GET /api/bench/user-info`, cookie + X-CSRF)")
        say()
        say(table(rows))
        say()
        ratios = [
            (b.rps / c.rps, b.p99_ms / c.p99_ms, b.rps / u.rps)
            for c, b, u in zip(
                runs["ceiling (raw ASGI)"],
                runs["BFF, 1 worker"],
                runs["upstream direct"],
                strict=True,
            )
        ]
        cpu_ratio = med(runs["BFF, 1 worker"], "cpu_us") / med(runs["ceiling (raw ASGI)"], "cpu_us")
        say(
            "Per round (same round, alternated): BFF/ceiling throughput "
            + ", ".join(f"{r[0]:.2f}" for r in ratios)
            + f" → median **{statistics.median(r[0] for r in ratios):.2f}x** (target ≥ 0.85); "
            "BFF/ceiling p99 "
            + ", ".join(f"{r[1]:.2f}" for r in ratios)
            + f" → median **{statistics.median(r[1] for r in ratios):.2f}x** (target ≤ 1.5); "
            "BFF/upstream-direct throughput median "
            f"**{statistics.median(r[2] for r in ratios):.2f}x**. Server CPU per request, "
            f"BFF/ceiling: **{cpu_ratio:.2f}x** (target ≤ 1.15)."
        )
        say()
        scaling = [
            two.rps / one.rps
            for one, two in zip(scale["BFF, 1 worker"], scale["BFF, 2 workers"], strict=True)
        ]
        helped = sum(statistics.median(v) for v in shares.values())
        say("## Workers")
        say()
        say(
            table(
                [
                    ("target", "req/s", "p99 ms"),
                    *(
                        (name, f"{med(v, 'rps'):,.0f}", f"{med(v, 'p99_ms'):.2f}")
                        for name, v in scale.items()
                    ),
                ]
            )
        )
        say()
        say(
            "2 workers / 1 worker: "
            + ", ".join(f"{s:.2f}" for s in scaling)
            + f" → median **{statistics.median(scaling):.2f}x** (target ≥ 1.7 when the load "
            f"generator is not the bottleneck). During the 2-worker runs the machine's "
            f"{os.cpu_count()} CPUs were {100 * statistics.median(busy):.0f} % busy; of the CPU "
            "time used, "
            + ", ".join(
                f"{name} took {100 * statistics.median(v):.0f} %" for name, v in shares.items()
            )
            + f", leaving the two workers about {100 * (1 - helped):.0f} % of "
            f"{os.cpu_count()} CPUs: the machine is saturated, so this is a lower bound."
        )
        say()
        # What two whole CPUs would give: each worker's throughput per CPU-second it used.
        per_cpu = [
            2 * one.cpu_us / two.cpu_us
            for one, two in zip(scale["BFF, 1 worker"], scale["BFF, 2 workers"], strict=True)
        ]
        say(
            f"CPU per request: 1 worker {med(scale['BFF, 1 worker'], 'cpu_us'):.0f} us, "
            f"2 workers {med(scale['BFF, 2 workers'], 'cpu_us'):.0f} us (both workers' CPU "
            "over their requests). With a whole CPU each, 2 workers would serve "
            + ", ".join(f"{x:.2f}" for x in per_cpu)
            + f" → median **{statistics.median(per_cpu):.2f}x** one worker's throughput "
            "(2 x the ratio of CPU per request: a projection from measured CPU, not a "
            "measured throughput)."
        )
        say()

        # Redis cost per request kind.
        client = sync_redis.Redis.from_url(redis.url)
        # What one call waits for: calls one at a time. Then what 20 connections at once
        # cost Redis: the session reads of one event-loop turn share one pipeline.
        before = redis_counters(client)
        n_alone = asyncio.run(_one_at_a_time(bff1.url + proxied, headers, 200))
        cmd_proxy, trips_proxy = per_request(client, before, n_alone)
        before = redis_counters(client)
        n_proxied = wrk(bff1.url + proxied, 2, headers).requests
        cmd_loaded, trips_loaded = per_request(client, before, n_proxied)
        n = 200
        before = redis_counters(client)
        asyncio.run(_starts(bff1.url, n))
        cmd_start, trips_start = per_request(client, before, n)
        before = redis_counters(client)
        asyncio.run(_cycles(bff1.url, n))
        cmd_cycle, trips_cycle = per_request(client, before, n)
        cmd_callback = {
            k: round(cmd_cycle.get(k, 0) - cmd_start.get(k, 0), 2)
            for k in cmd_cycle
            if cmd_cycle.get(k, 0) - cmd_start.get(k, 0) > 0
        }
        client.close()
        say("## Redis per request (INFO commandstats and total_writes_processed deltas)")
        say()
        say(
            table(
                [
                    ("request", "commands", "round trips", "target"),
                    ("proxied call", _fmt(cmd_proxy), f"{trips_proxy:.2f}", "1"),
                    (
                        f"proxied call, {CONNECTIONS} connections (wrk)",
                        _fmt(cmd_loaded),
                        f"{trips_loaded:.2f}",
                        "≤ 1",
                    ),
                    ("login start", _fmt(cmd_start), f"{trips_start:.2f}", "≤ 2"),
                    (
                        "callback",
                        _fmt(cmd_callback),
                        f"{trips_cycle - trips_start:.2f}",
                        "≤ 3",
                    ),
                ]
            )
        )
        say()
        bench.env = {**env, "BFF_APPS__BENCH__SUBSCRIBER_INDEX": "false"}
        port = free_port()
        plain = bench.start("noindex", [*serve, "--port", str(port)], port)
        bench.env = env
        rates: dict[str, list[float]] = {"with": [], "without": []}
        for _ in range(args.rounds):  # alternated: the Mobile User Info call's cost per login
            rates["with"].append(asyncio.run(login_rate(bff1.url, args.seconds))[0])
            rates["without"].append(asyncio.run(login_rate(plain.url, args.seconds))[0])
        bench.stop(plain)
        rate = statistics.median(rates["with"])
        without = statistics.median(rates["without"])
        say(
            f"## Login cycles\n\n**{rate:.0f} full logins/s** (median of {args.rounds}, 10 "
            "concurrent: start → sandbox network auth → consent → callback, with the Mobile User "
            "Info call that learns the subscriber → session; the sandbox is a FastAPI app in the "
            "same run and takes its share of the CPUs). Without the subscriber lookup "
            f"(`BFF_APPS__BENCH__SUBSCRIBER_INDEX=false`): {without:.0f}/s, so the lookup costs "
            f"**{(1 - rate / without) * 100:.0f} %** of login throughput."
        )
        say()
        per_session = asyncio.run(session_memory(redis.url))
        say(
            "## Redis memory per session (10,000 sessions of 5,000 subscribers)\n\n"
            f"Records alone (the store before the index): **{per_session[0]:,.0f} bytes**; "
            f"with the index (app and subscriber sorted sets, reference key): "
            f"**{per_session[1]:,.0f} bytes** ({per_session[1] / per_session[0]:.2f}x)."
        )
        say()
        say("## Memory (BFF, 1 worker)")
        say()
        growth = rss["100k"] / rss["10k"]
        say(
            f"RSS {rss['start']:.1f} MB at start, {rss['10k']:.1f} MB after {at_10k:,} "
            f"proxied requests, {rss['100k']:.1f} MB after {at_100k:,}: "
            f"**{growth:.3f}x** (target ≤ 1.10)."
        )
        say()
        if args.profile:
            stamp = time.strftime("%Y%m%d-%H%M")
            top = profile(
                pid,
                10,
                RESULTS / f"profile-proxied-{stamp}.txt",
                bff1.url + proxied,
                headers,
            )
            say("## Profile of the proxied call (py-spy, own samples, top 15)")
            say()
            say("```\n" + "\n".join(top) + "\n```")
            say()
    finally:
        bench.close()
        for directory in cleanup:
            shutil.rmtree(directory, ignore_errors=True)
    (RESULTS / "latest.md").write_text("\n".join(report) + "\n")
    return 0


CALLGRIND_REQUESTS = 3000


def callgrind_per_request(
    bench: Bench,
    name: str,
    command: list[str],
    after: list[str],
    cwd: Path,
    path: str,
    headers: dict[str, str],
) -> float:
    """Machine instructions per proxied call of one server run under callgrind, counted over
    `CALLGRIND_REQUESTS` calls after a warm-up (the same binary, inputs and environment give
    the same count, whatever else the machine is doing)."""
    port = free_port()
    out = Path(tempfile.mkdtemp(prefix="bench-callgrind-")) / "callgrind.out"
    args = [*command, str(port), *after] if after else [*command, str(port)]
    grind = ("valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}")
    proc = bench.start(name, args, port, cwd, wrapper=grind, wait=180)
    popen = proc.popen
    deadline = time.monotonic() + 180
    url = f"http://127.0.0.1:{port}{path if 'BFF' in name else '/'}"
    with httpx.Client(headers=headers, timeout=60) as client:
        while True:
            try:
                if client.get(url).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start under valgrind")
            time.sleep(0.5)
        for _ in range(200):  # warm-up: caches, the opened-record map, connections
            client.get(url)
        subprocess.run(
            ["callgrind_control", "-i", "on", str(popen.pid)], check=True, capture_output=True
        )
        for _ in range(CALLGRIND_REQUESTS):
            assert client.get(url).status_code == 200
        for command in ("-i", "off"), ("-d",):  # stop counting, then write the counts out
            subprocess.run(
                ["callgrind_control", *command, str(popen.pid)], check=True, capture_output=True
            )
    bench.stop(proc)
    total = 0
    for dump in out.parent.glob("callgrind.out*"):  # a dump holds what came since the last
        for line in dump.read_text(errors="replace").splitlines():
            if line.startswith("totals:"):
                total += int(line.split()[1])
    shutil.rmtree(out.parent, ignore_errors=True)
    return total / CALLGRIND_REQUESTS


def _callgrind_report(say, instructions: dict[str, float], baseline: str | None) -> None:  # type: ignore[no-untyped-def]
    say(f"## Instructions per proxied call (callgrind, {CALLGRIND_REQUESTS} calls each)")
    say()
    for name, count in instructions.items():
        say(f"- {name}: {count:,.0f}")
    bff, ceiling = instructions["BFF, 1 worker"], instructions["ceiling (raw ASGI)"]
    say(f"- BFF/ceiling: **{bff / ceiling:.3f}x**")
    if baseline:
        say(f"- BFF/BFF at {baseline}: **{bff / instructions[f'BFF at {baseline}']:.3f}x**")
    say()


def _quick_report(say, runs: dict[str, list[Run]], baseline: str | None) -> None:  # type: ignore[no-untyped-def]
    for name, values in runs.items():
        say(
            f"{name}: "
            + ", ".join(
                f"{r.rps:,.0f} req/s p99 {r.p99_ms:.1f} ms {r.cpu_us:.0f} us CPU" for r in values
            )
        )
    ceiling, bff = runs["ceiling (raw ASGI)"], runs["BFF, 1 worker"]
    say(
        "BFF/ceiling throughput "
        + ", ".join(f"{b.rps / c.rps:.2f}" for c, b in zip(ceiling, bff, strict=True))
        + "; CPU per request "
        + ", ".join(f"{b.cpu_us / c.cpu_us:.2f}" for c, b in zip(ceiling, bff, strict=True))
    )
    if baseline:
        pairs = list(zip(runs[f"BFF at {baseline}"], bff, strict=True))
        rps = [b.rps / o.rps for o, b in pairs]
        cpu = [b.cpu_us / o.cpu_us for o, b in pairs]
        say(
            f"BFF/BFF at {baseline}: throughput {', '.join(f'{r:.2f}' for r in rps)}"
            f" (median {statistics.median(rps):.2f}); CPU per request"
            f" {', '.join(f'{c:.2f}' for c in cpu)} (median {statistics.median(cpu):.2f})"
        )


def _fmt(commands: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in commands.items()) or "-"


def _redis_version(redis: EmbeddedRedis) -> str:
    client = sync_redis.Redis.from_url(redis.url)
    info = client.info("server")
    client.close()
    return f"Redis {info.get('redis_version')}"


async def _login_once(bff: str) -> str:
    async with httpx.AsyncClient(timeout=10) as client:
        return await login_cycle(client, bff)


async def _one_at_a_time(url: str, headers: dict[str, str], n: int) -> int:
    async with httpx.AsyncClient(timeout=10, headers=headers) as client:
        for _ in range(n):
            assert (await client.get(url)).status_code == 200
    return n


async def _starts(bff: str, n: int) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        for _ in range(n):
            r = await client.get(
                f"{bff}/auth/bench/login",
                params={"return_to": f"{APP_ORIGIN}/done"},
                headers={"X-Forwarded-Proto": "https"},
            )
            assert r.status_code == 302


async def _cycles(bff: str, n: int) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        for _ in range(n):
            await login_cycle(client, bff)


if __name__ == "__main__":
    sys.exit(main())
