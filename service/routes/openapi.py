"""The OpenAPI document: FastAPI's, of the routes it serves, plus the proxied routes.

The proxied GETs are answered at the edge, not by FastAPI routes, so their operations are
built here from their one declaration (`proxy_routes.PROXIED_ROUTES`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from starlette.routing import BaseRoute

from ..contract.models import Problem
from ..contract.proxied import PROXIED_ROUTES, ProxiedRoute
from ..contract.security import SECURITY_SCHEMES, SIGNED_IN

ADMIN_LISTENER = frozenset({"/metrics"})
SERVERS = [{"url": "/", "description": "The BFF itself, at its BFF_PUBLIC_URL"}]
# What a proxied call can answer besides 200: the problems of `kit/errors.CATALOG` it can meet.
PROXIED_PROBLEMS = {
    "401": "Not signed in, the session has ended, or X-CSRF is missing with a cookie",
    "403": "An Origin that is not the app's",
    "404": "An unknown app, or a path not on the app's allow-list",
    "429": "Too many calls in this session, or Telenor is rate limiting the app",
    "502": "Telenor answered with an error, or could not be reached",
    "503": "The session store is unavailable",
    "504": "Telenor did not answer in time",
}


def openapi_document(app: FastAPI, routes: Sequence[BaseRoute]) -> dict[str, Any]:
    """The document `/openapi.json` serves (built once), of `routes` (the public routers')."""
    if app.openapi_schema is None:
        spec = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            # /metrics is the admin listener's (in production): in the admin document.
            routes=[r for r in routes if getattr(r, "path", "") not in ADMIN_LISTENER],
        )
        spec["servers"] = SERVERS
        components = spec.setdefault("components", {})
        components["securitySchemes"] = SECURITY_SCHEMES
        schemas = components.setdefault("schemas", {})
        for route in PROXIED_ROUTES:
            spec["paths"][route.openapi_path] = {"get": _operation(route, schemas)}
        _problems_as_problem_json(spec)
        app.openapi_schema = spec
    return app.openapi_schema


_PROBLEM_SCHEMAS = [
    {"$ref": "#/components/schemas/Problem"},
    {"$ref": "#/components/schemas/HTTPValidationError"},  # (FastAPI's 422: ours is a Problem)
]


def _problems_as_problem_json(spec: dict[str, Any]) -> None:
    """FastAPI files a response model under the route's media type (application/json); the
    API answers every error as application/problem+json, and only that, so the schema goes
    there (a generated client then types its errors)."""
    for operations in spec["paths"].values():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                schema = content.get("application/json", {}).get("schema")
                if status[0] in "45" and schema in _PROBLEM_SCHEMAS:
                    del content["application/json"]  # (OAuth's own errors stay JSON)
                    content["application/problem+json"] = {"schema": schema}


def admin_document(app: FastAPI, routes: Sequence[BaseRoute]) -> dict[str, Any]:
    """The admin API's own document, of `routes` (the ops and admin routers'): the admin
    listener serves it at /admin/openapi.json."""
    return get_openapi(
        title="Line Auth BFF admin API",
        version=app.version,
        description=(
            "On the admin listener (BFF_ADMIN__ADDRESS) only. Every call needs "
            "`Authorization: Bearer <token>` with a token of BFF_ADMIN__TOKENS."
        ),
        routes=routes,
    )


def _operation(route: ProxiedRoute, schemas: dict[str, Any]) -> dict[str, Any]:
    parameters = [_path_parameter("app", "A configured app id")]
    if route.upstream is None:
        parameters.append(_path_parameter("path", "A Telenor API path on the app's allow-list"))
    body = _ref(route.model, schemas) if route.model else {"type": "object"}
    responses: dict[str, Any] = {
        "200": {
            "description": "Telenor's answer, passed through",
            "content": {"application/json": {"schema": body}},
        }
    }
    problem = _ref(Problem, schemas)
    for status, description in PROXIED_PROBLEMS.items():
        responses[status] = {
            "description": description,
            "content": {"application/problem+json": {"schema": problem}},
        }
    return {
        "tags": ["api"],
        "operationId": route.operation_id,
        "security": SIGNED_IN,
        "summary": route.summary,
        "parameters": parameters,
        "responses": responses,
    }


def _path_parameter(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


def _ref(model: type[BaseModel], schemas: dict[str, Any]) -> dict[str, str]:
    """A reference to `model`'s schema, which (with the models it uses) joins the components."""
    document = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, schema in document.pop("$defs", {}).items():
        schemas.setdefault(name, schema)
    schemas.setdefault(model.__name__, document)
    return {"$ref": f"#/components/schemas/{model.__name__}"}
