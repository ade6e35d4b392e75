"""What each listener serves: the public port, and the admin port (`BFF_ADMIN__ADDRESS`).

The admin listener serves `/metrics`, the health probes and the admin API, and nothing else.
The public listener never serves the admin API, and in production not `/metrics` either
(development keeps it there); the health probes stay on both, because load balancers probe
the public port.
"""

from __future__ import annotations

from ..config import Settings
from ..contract.scope import RequestScope
from ..kit.errors import BffError

ADMIN_ONLY = "/admin/"
PROBES = frozenset({"/healthz", "/readyz"})
METRICS = "/metrics"


class Listeners:
    """Refuses a request that came to the wrong listener (404: it is not there)."""

    def __init__(self, settings: Settings) -> None:
        self._public_metrics = not settings.is_production

    def check(self, req: RequestScope) -> None:
        path = req.path
        if req.listener == "admin":
            if path in PROBES or path == METRICS or path.startswith(ADMIN_ONLY):
                return
        elif not path.startswith(ADMIN_ONLY) and (path != METRICS or self._public_metrics):
            return
        raise BffError("not_found")
