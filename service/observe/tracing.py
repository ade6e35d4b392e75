"""Tracing with OpenTelemetry, configured only by the standard `OTEL_*` variables.

On when `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set and
`OTEL_SDK_DISABLED` is not `true`; spans go out as OTLP over HTTP/protobuf, named by
`OTEL_SERVICE_NAME` (default `line-auth-bff`) and sampled as `OTEL_TRACES_SAMPLER`/`_ARG` say
(the SDK reads those itself). Off, nothing calls OpenTelemetry: each caller tests `on`.

Every request is a server span (the edge's), named by its route template; the work inside it
is child spans: the token exchange, the session's Redis read, the upstream call, a refresh.
A W3C `traceparent` goes to Telenor on the token, API and logout calls, and an incoming one
is honoured only from a trusted proxy. Attributes are closed-set values (methods, route
templates, statuses, app ids, problem codes): never a token, code, state, session id, secret
or MSISDN, and never a URL's query.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

DEFAULT_SERVICE = "line-auth-bff"
PROPAGATOR = TraceContextTextMapPropagator()
_ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


def wanted(env: Mapping[str, str]) -> bool:
    disabled = env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
    return not disabled and any(env.get(name) for name in _ENDPOINTS)


class Tracing:
    """The app's tracer, or nothing. Its provider is the app's own (no global is set)."""

    def __init__(self, env: Mapping[str, str] | None = None, version: str = "") -> None:
        env = os.environ if env is None else env
        self.on = wanted(env)
        self._provider: Any = None
        self._tracer: Any = None
        if not self.on:
            return
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        resource = Resource.create(
            {
                "service.name": env.get("OTEL_SERVICE_NAME") or DEFAULT_SERVICE,
                "service.version": version,
            }
        )
        self._provider = TracerProvider(resource=resource)
        self._provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        self._tracer = self._provider.get_tracer("line_auth_bff")

    def shutdown(self) -> None:
        """Export what is left (the app's lifespan ends)."""
        if self._provider is not None:
            self._provider.shutdown()

    @contextmanager
    def server(self, method: str, scheme: str, parent: Context | None) -> Iterator[Span]:
        """The span of one request; `parent` is the trusted proxy's `traceparent`, if any.
        No `url.path`: a raw path may hold anything (an MSISDN, a token); the edge names the
        span by its route template instead."""
        with self._tracer.start_as_current_span(
            method,
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.scheme": scheme},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            yield span

    def start(self, name: str, **attributes: str | int) -> Span:
        """A client span inside the current one, started; the caller ends it."""
        span: Span = self._tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)
        return span

    @contextmanager
    def child(self, name: str, **attributes: str | int) -> Iterator[Span]:
        """A span inside the current one (a no-op span when tracing is off)."""
        if self._tracer is None:
            yield trace.INVALID_SPAN
            return
        with self._tracer.start_as_current_span(
            name,
            kind=SpanKind.CLIENT,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,  # (an exception's text is not a closed set)
        ) as span:
            yield span


NO_TRACE = Tracing({})  # for a caller without a tracer: its `child` is a no-op
REDIS_READ = {"db.system.name": "redis", "db.operation.name": "EVALSHA"}


def inject(headers: dict[str, str], span: Span | None = None) -> dict[str, str]:
    """`headers` plus the `traceparent` of `span` (or of the current span), when one is being
    recorded."""
    context = trace.set_span_in_context(span) if span is not None else None
    if (span or trace.get_current_span()).get_span_context().is_valid:
        PROPAGATOR.inject(headers, context=context)
    return headers


def parent_of(headers: list[tuple[bytes, bytes]]) -> Context | None:
    """The context a request's `traceparent` names, or None."""
    # (Not `tracestate`: vendor data a client could have set, which would travel to Telenor.)
    carrier = {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in headers
        if name == b"traceparent"
    }
    return PROPAGATOR.extract(carrier) if carrier else None


def current_trace_id() -> str | None:
    """The current trace's id (32 hex digits) for a log line, or None."""
    context = trace.get_current_span().get_span_context()
    return f"{context.trace_id:032x}" if context.is_valid else None


def mark(**attributes: str | int) -> None:
    """Set attributes on the current span (the request's, or a child's)."""
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attributes(attributes)
