"""Prometheus metrics: the one place they are defined and rendered (`GET /metrics`).

Every label value comes from a closed set: a configured app id, an allow-listed upstream path, an
error code from `errors.CATALOG`, a status class. Never a user id, a raw path or a secret.

With several uvicorn workers `serve` sets `PROMETHEUS_MULTIPROC_DIR` before the workers start, so
each worker writes its samples to that directory and `/metrics` sums them (prometheus-client's
multiprocess mode); in one process the app's own registry is rendered.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    values,
)
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The `_created` twin of every series only doubles the page.
disable_created_metrics()  # type: ignore[no-untyped-call]
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def status_class(status: int) -> str:
    return f"{status // 100}xx"


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
        # Children by label values, so the proxied call skips `labels()` (a lock and a lookup
        # each). The keys are configured apps, allow-listed paths and status classes.
        self._proxied: dict[tuple[str, str, str], Any] = {}
        self._upstream: dict[tuple[str, str], Any] = {}

    def count_proxied(self, app: str, path: str, outcome: str) -> None:
        child = self._proxied.get((app, path, outcome))
        if child is None:
            child = self._proxied[(app, path, outcome)] = self.proxied.labels(app, path, outcome)
        child.inc()

    def observe_upstream(self, app: str, path: str, seconds: float) -> None:
        child = self._upstream.get((app, path))
        if child is None:
            child = self._upstream[(app, path)] = self.proxy_latency.labels(app, path)
        child.observe(seconds)

    def render(self) -> bytes:
        directory = os.environ.get(MULTIPROC_ENV)
        # Multiprocess values are chosen when prometheus-client is first imported; a directory
        # set later (or for one worker) changes nothing, and this process's registry is the truth.
        if directory and values.ValueClass is not values.MutexValue:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)
