"""Prometheus metrics: the one place they are defined and rendered (`GET /metrics`).

Every label value comes from a closed set: a configured app id, an allow-listed upstream path, an
error code from `kit/errors.CATALOG`, a status class. Never a user id, a raw path or a secret.

With several uvicorn workers `serve` sets `PROMETHEUS_MULTIPROC_DIR` before the workers start, so
each worker writes its samples to that directory and `/metrics` sums them (prometheus-client's
multiprocess mode); in one process the app's own registry is rendered.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from collections.abc import Callable, Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
    values,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The `_created` twin of every series only doubles the page.
disable_created_metrics()  # type: ignore[no-untyped-call]
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
REDIS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


def status_class(status: int) -> str:
    return f"{status // 100}xx"


def build_version() -> str:
    try:
        return version("line-auth-bff")
    except PackageNotFoundError:  # (running from a source tree that is not installed)
        return "unknown"


class _Count:
    """A counter series' increments since the last flush."""

    __slots__ = ("child", "n")

    def __init__(self, child: Any) -> None:
        self.child = child
        self.n = 0

    def flush(self) -> None:
        if self.n:
            n, self.n = self.n, 0
            self.child.inc(n)


class _Observations:
    """A histogram series' observations since the last flush, already in its buckets."""

    __slots__ = ("bounds", "buckets", "child", "total")

    def __init__(self, child: Any) -> None:
        self.child = child
        self.bounds = tuple(child._upper_bounds)
        self.buckets = [0] * len(self.bounds)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.buckets[bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    def flush(self) -> None:
        # What `Histogram.observe` does per sample, once per bucket (its value objects are
        # prometheus-client's, multiprocess files included).
        buckets, self.buckets = self.buckets, [0] * len(self.bounds)
        for index, n in enumerate(buckets):
            if n:
                self.child._buckets[index].inc(n)
        if any(buckets):
            total, self.total = self.total, 0.0
            self.child._sum.inc(total)


class Deferred:
    """Hot-path samples, kept in plain numbers per series and added to their Prometheus
    series by `flush`: by the app's flusher every second, and before every render. A sample
    then costs a bisect and two additions instead of a locked increment or two."""

    def __init__(self) -> None:
        self._series: list[_Count | _Observations] = []

    def counter(self, child: Any) -> _Count:
        series = _Count(child)
        self._series.append(series)
        return series

    def histogram(self, child: Any) -> _Observations:
        series = _Observations(child)
        self._series.append(series)
        return series

    def flush(self) -> None:
        for series in self._series:
            series.flush()


class WorkerProcesses(Collector):
    """`process_*` for every worker of a multiprocess `serve`, each labelled by its `pid`
    (prometheus-client's own process collector sees only the process that renders). The
    workers are the pids of the sample files in the shared directory that are alive."""

    def __init__(self, directory: str) -> None:
        self._directory = Path(directory)

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        pids = {_pid(p.name) for p in self._directory.glob("*.db")}
        for pid in sorted(p for p in pids if p is not None):
            if not Path(f"/proc/{pid}").exists():
                continue
            for family in ProcessCollector(pid=_fixed(pid), registry=None).collect():
                merged = families.setdefault(
                    family.name, Metric(family.name, family.documentation, family.type)
                )
                for sample in family.samples:
                    merged.add_sample(sample.name, {"pid": str(pid)}, sample.value)
        yield from families.values()


def _fixed(pid: int) -> Callable[[], int]:
    return lambda: pid


def _pid(name: str) -> int | None:
    tail = name.rsplit("_", 1)[-1].removesuffix(".db")
    return int(tail) if tail.isdigit() else None


class Metrics:
    """The service's counters and histograms, registered in a registry of this app's own."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.login_started = Counter(
            "bff_login_started", "Logins started", ["app", "mode"], registry=r
        )
        self.login_completed = Counter(
            "bff_login_completed", "Logins completed with a session", ["app", "mode"], registry=r
        )
        self.login_failed = Counter(
            "bff_login_failed",
            "Logins that ended without a session, by reason (an error code)",
            ["app", "reason"],
            registry=r,
        )
        self.token_exchange = Histogram(
            "bff_token_exchange_seconds",
            "Time spent at Telenor's token endpoint, by outcome (ok, rejected, unavailable)",
            ["app", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.refreshes = Counter(
            "bff_token_refresh", "Access-token refreshes by outcome", ["app", "outcome"], registry=r
        )
        self.logouts = Counter("bff_logout", "Sessions ended by logout", ["app"], registry=r)
        self.revocations = Counter(
            "bff_sessions_revoked",
            "Sessions ended by revocation (admin API, CLI, or a user's sign-out everywhere)",
            ["app"],
            registry=r,
        )
        self.proxied = Counter(
            "bff_proxy_requests",
            "Proxied Telenor API calls by upstream path and status class (or timeout/unreachable)",
            ["app", "path", "status"],
            registry=r,
        )
        self.proxy_latency = Histogram(
            "bff_proxy_upstream_seconds",
            "Upstream latency of proxied Telenor API calls",
            ["app", "path"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.browser_rejections = Counter(
            "bff_browser_rejections",
            "Requests refused by CORS/CSRF rules (preflight_origin, origin, csrf_header)",
            ["app", "reason"],
            registry=r,
        )
        self.rate_limited = Counter(
            "bff_rate_limited", "Requests refused by a rate limit", ["kind"], registry=r
        )
        self.redis_errors = Counter(
            "bff_redis_errors", "Requests that failed because Redis did not answer", registry=r
        )
        self.unreplicated_writes = Counter(
            "bff_redis_unreplicated_writes",
            "New sessions fewer replicas acknowledged in time than BFF_REDIS_WAIT_REPLICAS asks",
            registry=r,
        )
        self.errors = Counter("bff_errors", "Error responses by error code", ["code"], registry=r)
        self.http_requests = Histogram(
            "bff_http_request_duration_seconds",
            "HTTP requests by route template (`unmatched`: no route), method and status class, "
            "and how long their answer took",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.redis_commands = Histogram(
            "bff_redis_command_seconds",
            "Redis round trips by command (a pipeline is `pipeline`), errors included",
            ["command"],
            buckets=REDIS_BUCKETS,
            registry=r,
        )
        self.build_info = Gauge(
            "bff_build_info",
            "Always 1; `version` is the running build's",
            ["version"],
            multiprocess_mode="max",
            registry=r,
        )
        self.build_info.labels(build_version()).set(1)
        if os.environ.get(MULTIPROC_ENV) is None:
            ProcessCollector(registry=r)  # (one process: prometheus-client's own)
        self.deferred = Deferred()
        # Pending series by label values, so the hot path skips `labels()` (a lock and a
        # lookup each). The keys come from closed sets: configured apps, allow-listed paths,
        # route templates, methods, statuses, the commands our code sends.
        self._proxied_by: dict[tuple[str, str, str], _Count] = {}
        self._upstream_by: dict[tuple[str, str], _Observations] = {}
        # An upstream status's pair: its path's latency series and its status class's count.
        self._answers_by: dict[tuple[str, str, int], tuple[_Observations, _Count]] = {}
        self._requests_by: dict[tuple[str | None, str, int], _Observations] = {}
        self._redis_by: dict[str, _Observations] = {}

    def count_proxied(self, app: str, path: str, outcome: str) -> None:
        series = self._proxied_by.get((app, path, outcome))
        if series is None:
            child = self.proxied.labels(app, path, outcome)
            series = self._proxied_by[(app, path, outcome)] = self.deferred.counter(child)
        series.n += 1

    def observe_upstream(self, app: str, path: str, status: int, seconds: float) -> None:
        """An answer from Telenor: its latency, and its count by status class."""
        pair = self._answers_by.get((app, path, status))
        if pair is None:
            latency = self._upstream_by.get((app, path))
            if latency is None:
                child = self.proxy_latency.labels(app, path)
                latency = self._upstream_by[(app, path)] = self.deferred.histogram(child)
            counted = self.deferred.counter(self.proxied.labels(app, path, status_class(status)))
            pair = self._answers_by[(app, path, status)] = latency, counted
        pair[0].observe(seconds)
        pair[1].n += 1

    def observe_request(self, route: str | None, method: str, status: int, seconds: float) -> None:
        # (A method outside the known ones is "other" before it is a key: clients choose it.)
        key = (route, method if method in METHODS else "other", status)
        series = self._requests_by.get(key)
        if series is None:
            child = self.http_requests.labels(route or "unmatched", key[1], status_class(status))
            series = self._requests_by[key] = self.deferred.histogram(child)
        series.observe(seconds)

    def observe_redis(self, command: str, seconds: float) -> None:
        series = self._redis_by.get(command)
        if series is None:
            child = self.redis_commands.labels(command)
            series = self._redis_by[command] = self.deferred.histogram(child)
        series.observe(seconds)

    def render(self) -> bytes:
        self.deferred.flush()
        directory = os.environ.get(MULTIPROC_ENV)
        # Multiprocess values are chosen when prometheus-client is first imported; a directory
        # set later (or for one worker) changes nothing, and this process's registry is the truth.
        if directory and values.ValueClass is not values.MutexValue:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
            registry.register(WorkerProcesses(directory))
            return generate_latest(registry)
        return generate_latest(self.registry)
