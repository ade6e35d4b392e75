"""Auth and security events: each one is a log line and a metric, recorded in one call.

Arguments are app ids (configured ones only), modes, error codes and outcomes: closed sets that
are safe as metric labels and in logs.
"""

from __future__ import annotations

import logging
from typing import Any

from .metrics import Metrics

log = logging.getLogger("line_auth_bff")


def event(message: str, level: int = logging.INFO, **fields: Any) -> None:
    """One structured log line; fields must be safe to log."""
    log.log(level, message, extra={"fields": fields})


class Events:
    """Records auth and security events."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def login_started(self, app: str, mode: str) -> None:
        self.metrics.login_started.labels(app, mode).inc()
        event("login started", app=app, mode=mode)

    def login_completed(
        self,
        app: str,
        mode: str,
        *,
        subscriber: str | None = None,
        session_ref: str | None = None,
        client: str | None = None,
    ) -> None:
        self.metrics.login_completed.labels(app, mode).inc()
        event(
            "login completed",
            app=app,
            mode=mode,
            audit="login",
            outcome="completed",
            subscriber=subscriber,
            session=session_ref,
            client=client,
        )

    def login_failed(self, app: str, reason: str, *, client: str | None = None) -> None:
        self.metrics.login_failed.labels(app, reason).inc()
        event(
            "login failed",
            logging.WARNING,
            app=app,
            reason=reason,
            audit="login",
            outcome=reason,
            client=client,
        )

    def token_exchange(self, app: str, outcome: str, seconds: float) -> None:
        self.metrics.token_exchange.labels(app, outcome).observe(seconds)

    def refreshed(self, app: str, outcome: str) -> None:
        self.metrics.refreshes.labels(app, outcome).inc()
        level = logging.INFO if outcome == "ok" else logging.WARNING
        event("token refresh", level, app=app, outcome=outcome)

    def logout(
        self,
        app: str,
        via: str,
        *,
        subscriber: str | None = None,
        session_ref: str | None = None,
        client: str | None = None,
    ) -> None:
        self.metrics.logouts.labels(app).inc()
        event(
            "logout",
            app=app,
            via=via,
            audit="logout",
            outcome="ended",
            subscriber=subscriber,
            session=session_ref,
            client=client,
        )

    def revoked(
        self,
        *,
        by: str,
        revoked: int,
        app: str | None = None,
        subscriber: str | None = None,
        session_ref: str | None = None,
        client: str | None = None,
    ) -> None:
        """Sessions ended by an operator (`by` is the admin token's name) or by their user."""
        self.metrics.revocations.labels(app or "*").inc(revoked)
        event(
            "sessions revoked",
            audit="revocation",
            by=by,
            outcome=f"revoked {revoked}",
            app=app,
            subscriber=subscriber,
            session=session_ref,
            client=client,
        )

    def admin_call(
        self, *, by: str | None, method: str, route: str, status: int, client: str | None
    ) -> None:
        """Every call to the admin API, allowed or not (`by` is None without a valid token)."""
        event(
            "admin call",
            logging.INFO if status < 400 else logging.WARNING,
            audit="admin",
            by=by,
            method=method,
            route=route,
            outcome=str(status),
            client=client,
        )

    def rejected(self, app: str, reason: str) -> None:
        self.metrics.browser_rejections.labels(app, reason).inc()
        event("request refused", logging.WARNING, app=app, reason=reason)

    def rate_limited(self, kind: str) -> None:
        self.metrics.rate_limited.labels(kind).inc()
        event("rate limited", logging.WARNING, kind=kind)

    def error(self, error: str) -> None:
        """Every error response, by catalogue code; Redis outages also count as Redis errors."""
        self.metrics.errors.labels(error).inc()
        if error == "store_unavailable":
            self.metrics.redis_errors.inc()
