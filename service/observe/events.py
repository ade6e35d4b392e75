"""Auth and security events: each one is a log line and a metric, recorded in one call.

Arguments are app ids (configured ones only), modes, error codes and outcomes: closed sets that
are safe as metric labels and in logs.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from .metrics import Metrics

log = logging.getLogger("line_auth_bff")
LOG_EVERY = 10.0  # seconds between two lines of one kind, from one `NowAndThen`


def event(message: str, level: int = logging.INFO, **fields: Any) -> None:
    """One structured log line; fields must be safe to log."""
    log.log(level, message, extra={"fields": fields})


class NowAndThen:
    """Log lines of one kind (`key`) at most once every `LOG_EVERY` seconds: what a client can
    cause on every request must not flood the log. Keys are bounded (a client may vary them)."""

    MAX_KEYS = 1024

    def __init__(self) -> None:
        self._last: dict[str, float] = {}

    def __call__(self, key: str, message: str, level: int, **fields: Any) -> None:
        now = time.monotonic()
        if now - self._last.get(key, -LOG_EVERY) < LOG_EVERY:
            return
        if len(self._last) >= self.MAX_KEYS:
            self._last.clear()
        self._last[key] = now
        event(message, level, **fields)


class Events:
    """Records auth and security events."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._now_and_then = NowAndThen()

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

    def rejected(self, app: str, reason: str, origin: str | None = None) -> None:
        """A browser request the CORS and CSRF rules refused, or answered without CORS headers
        (`cors_origin`: the page's script cannot read it); logged once every `LOG_EVERY` s per
        app, reason and origin, with what to change."""
        self.metrics.browser_rejections.labels(app, reason).inc()
        fields: dict[str, Any] = {"app": app, "reason": reason}
        if origin is not None:
            fields["origin"] = origin[:100]
            fields["hint"] = (
                f"{origin[:100]} is not in BFF_APPS__{app.upper()}__ALLOWED_ORIGINS; the browser "
                "hides this answer from the page (a TypeError in fetch)"
            )
        self._now_and_then(
            f"rejected:{app}:{reason}:{origin}", "request refused", logging.WARNING, **fields
        )

    def cross_site_login(self, app: str, bff_site: str, page_site: str) -> None:
        """A cookie login finished to a page on another site than the BFF: the browser will
        not send the session cookie with the page's calls (third-party cookies)."""
        self._now_and_then(
            f"cross-site:{app}:{page_site}",
            "cookie login returned to another site",
            logging.WARNING,
            app=app,
            bff_site=bff_site,
            page_site=page_site,
            hint=(
                "the page's calls will carry no session cookie and /session will say signed "
                "out; serve the page and the BFF on one site (README: Integrating a "
                "single-page app, same-site)"
            ),
        )

    def rate_limited(self, kind: str) -> None:
        self.metrics.rate_limited.labels(kind).inc()
        event("rate limited", logging.WARNING, kind=kind)

    def error(self, error: str) -> None:
        """Every error response, by catalogue code; Redis outages also count as Redis errors."""
        self.metrics.errors.labels(error).inc()
        if error == "store_unavailable":
            self.metrics.redis_errors.inc()
