"""The proxied routes, declared once as data: the fast dispatch (`edge/classify.Classifier`), the
access log's route template and the OpenAPI document (`routes/openapi.py`) all derive from them.

They are answered at the edge, in front of FastAPI's routing: for these GETs, routing and
dependency resolution cost as much as everything else the call does.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from pydantic import BaseModel

from .models import DeviceInfo, UserInfo


@dataclass(frozen=True)
class ProxiedRoute:
    """One proxied GET under `/api/{app}/`."""

    name: str  # the path segment after the app id
    upstream: str | None  # the Telenor path it reaches; None: the rest of the path names it
    operation_id: str
    summary: str
    model: type[BaseModel] | None  # what a 200 carries, for the OpenAPI document

    @functools.cached_property
    def template(self) -> str:
        """The route template, as the access log names the route (worked out once)."""
        return f"/api/{{app}}/{self.name}" + ("" if self.upstream else "/{path:path}")

    @property
    def openapi_path(self) -> str:
        return self.template.replace(":path", "")


PROXIED_ROUTES = (
    ProxiedRoute(
        "user-info",
        "user-info/v1/users",
        "getUserInfo",
        "The signed-in user's Mobile User Info",
        UserInfo,
    ),
    ProxiedRoute(
        "device-info",
        "mobile-device-info/v1/device",
        "getDeviceInfo",
        "The signed-in user's Mobile Device Info",
        DeviceInfo,
    ),
    ProxiedRoute(
        "telenor",
        None,
        "callTelenor",
        "Any GET on the app's upstream_paths allow-list, proxied with the session's token",
        None,
    ),
)
