"""Tracing: a real `serve` with the real OTLP/HTTP exporter, against a receiver of the test's
own on loopback that decodes what arrives with `opentelemetry-proto`."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from starlette.types import Receive, Scope, Send

from tests.support.browser import APP_ORIGIN, query, walk_login
from tests.support.config import SECRETS
from tests.support.serve import serve_env, start_serve, stop, wait_ready
from tests.support.servers import ThreadedServer

CSRF = {"X-CSRF": "1"}
INCOMING_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
INCOMING = f"00-{INCOMING_TRACE}-00f067aa0ba902b7-01"


class Receiver:
    """An OTLP/HTTP traces endpoint: keeps every body it is sent, answers 200."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        if scope["path"] == "/v1/traces":
            self.bodies.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def spans(self) -> list[Span]:
        found = []
        for body in self.bodies:
            for resource in ExportTraceServiceRequest.FromString(body).resource_spans:
                service = {a.key: a.value.string_value for a in resource.resource.attributes}
                for scoped in resource.scope_spans:
                    for span in scoped.spans:
                        found.append(Span.of(span, service["service.name"]))
        return found


@dataclass
class Span:
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]
    service: str

    @classmethod
    def of(cls, span: Any, service: str) -> Span:
        attributes = {}
        for kv in span.attributes:
            value = kv.value
            attributes[kv.key] = value.string_value or value.int_value
        return cls(
            span.name,
            span.trace_id.hex(),
            span.span_id.hex(),
            span.parent_span_id.hex(),
            attributes,
            service,
        )


def traced_env(base: dict[str, str], **otel: str) -> dict[str, str]:
    """`serve`'s environment with these OTEL_* variables; the batch exporter sends every
    100 ms, so a test waits for its spans that long."""
    return {**base, "OTEL_BSP_SCHEDULE_DELAY": "100", **otel}


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    sink = Receiver()
    server = ThreadedServer(sink).start()
    yield sink, server.url
    server.stop()


class ToServed(httpx.AsyncBaseTransport):
    """`https://bff.test` is the `serve` on its loopback port behind a TLS proxy (which says
    so with X-Forwarded-Proto); the cookie jar still sees the public URL."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        # (A new request: the client files cookies under the original one's URL.)
        served = httpx.Request(
            request.method,
            request.url.copy_with(scheme="http", host="127.0.0.1", port=self._port),
            headers=[*request.headers.raw, (b"x-forwarded-proto", b"https")],
            stream=request.stream,
        )
        return await self._inner.handle_async_request(served)

    async def aclose(self) -> None:
        await self._inner.aclose()


async def until_spans(sink: Receiver, *names: str) -> list[Span]:
    """The exported spans once every name has arrived (the batch exporter sends every 100 ms
    here), within 15 s."""
    deadline = time.monotonic() + 15
    while True:
        spans = sink.spans()
        if all(any(s.name == n for s in spans) for n in names):
            return spans
        assert time.monotonic() < deadline, sorted({s.name for s in spans})
        await asyncio.sleep(0.05)


async def test_a_login_and_two_proxied_calls_are_traced_to_telenor_and_back(
    receiver, sandbox, sandbox_url, redis_url, prefix, tmp_path
):
    sink, otlp = receiver
    env = traced_env(
        serve_env(redis_url, prefix, sandbox_url, tmp_path),
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp,
        OTEL_SERVICE_NAME="bff-under-test",
    )
    proc, port = start_serve(env, tmp_path)
    secrets: list[str] = [*SECRETS]
    try:
        served = ToServed(port)
        mounts = {"https://bff.test": served, "http://bff.test": served}
        async with httpx.AsyncClient(mounts=mounts, timeout=10) as browser:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as probe:
                await wait_ready(probe, proc)
            walk = await walk_login(browser, return_to=f"{APP_ORIGIN}/done")
            assert walk.final is not None and walk.final.status_code == 302
            secrets += [query(walk.callback_url)["code"], query(walk.authorize_url)["state"]]
            secrets += [v for k, v in browser.cookies.items() if "bff-" in k]
            for _ in range(2):
                r = await browser.get("https://bff.test/api/web/user-info", headers=CSRF)
                assert r.status_code == 200
            # A path that names a subscriber (not on the allow-list): never in a span.
            listed = "https://bff.test/api/web/telenor/subscribers/4790000001/balance"
            assert (await browser.get(listed, headers=CSRF)).status_code == 404
            # A trusted proxy's traceparent is the parent of the request's span.
            joined = await browser.get(
                "https://bff.test/api/web/device-info", headers={**CSRF, "traceparent": INCOMING}
            )
            assert joined.status_code == 200
            spans = await until_spans(
                sink,
                "GET /auth/{app}/callback",
                "token exchange",
                "GET /api/{app}/user-info",
                "GET /api/{app}/device-info",
            )
    finally:
        output = stop(proc)
    secrets += list(sandbox.tokens)
    assert {s.service for s in spans} == {"bff-under-test"}
    by_id = {s.span_id: s for s in spans}

    # callback -> token exchange
    (callback,) = [s for s in spans if s.name == "GET /auth/{app}/callback"]
    assert callback.attributes["http.route"] == "/auth/{app}/callback"
    assert callback.attributes["http.response.status_code"] == 302
    assert callback.attributes["app"] == "web"
    exchange = [s for s in spans if s.name == "token exchange"]
    assert [by_id[s.parent_id] for s in exchange] == [callback]

    # proxied call -> Redis read + upstream call, twice
    proxied = [s for s in spans if s.name == "GET /api/{app}/user-info"]
    assert len(proxied) == 2 and len({s.trace_id for s in proxied}) == 2
    for call in proxied:
        children = sorted(s.name for s in spans if s.parent_id == call.span_id)
        assert children == ["GET telenor", "redis session read"], children
        assert call.attributes["http.response.status_code"] == 200

    # The same trace ids at Telenor (the sandbox's recorded traceparent) and in the access log.
    token_calls = sandbox.calls("/oauth/v2/token")
    assert token_calls[-1].headers["traceparent"].split("-")[1] == callback.trace_id
    upstream = [
        r.headers["traceparent"].split("-")[1] for r in sandbox.calls("/user-info/v1/users")
    ]
    assert {s.trace_id for s in proxied} <= set(upstream)
    access = [json.loads(line) for line in output.splitlines() if '"line_auth_bff.access"' in line]
    logged = {(a["route"], a.get("trace_id")) for a in access}
    assert ("/auth/{app}/callback", callback.trace_id) in logged
    assert all(("/api/{app}/user-info", s.trace_id) in logged for s in proxied)
    events = [json.loads(line) for line in output.splitlines() if '"login completed"' in line]
    assert events and events[0]["trace_id"] == callback.trace_id

    # The trusted proxy's trace is continued, and its span is the parent.
    (device,) = [s for s in spans if s.name == "GET /api/{app}/device-info"]
    assert device.trace_id == INCOMING_TRACE and device.parent_id == "00f067aa0ba902b7"

    # No secret in any exported byte.
    exported = b"".join(sink.bodies)
    assert len(secrets) >= 8
    for secret in secrets:
        assert secret.encode() not in exported, "a secret reached a span"
    assert b"4790000001" not in exported  # nor the MSISDN
    assert not any("url.path" in s.attributes for s in spans)  # (raw paths hold anything)


async def test_a_traceparent_from_an_untrusted_peer_starts_a_new_trace(
    receiver, sandbox, sandbox_url, redis_url, prefix, tmp_path
):
    sink, otlp = receiver
    env = traced_env(
        serve_env(redis_url, prefix, sandbox_url, tmp_path),
        BFF_TRUSTED_PROXIES="10.9.8.7",  # not the test's loopback address
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=f"{otlp}/v1/traces",
    )
    proc, port = start_serve(env, tmp_path)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            await wait_ready(client, proc)
            r = await client.get("/healthz", headers={"traceparent": INCOMING})
            assert r.status_code == 200
            assert (await client.request("PROPFIND", "/healthz")).status_code == 405
            # (an untrusted peer's X-Forwarded-Proto is not believed either: plain http)
            forwarded = {"X-Forwarded-Proto": "https"}
            refused = await client.get("/api/web/session", headers=forwarded)
            assert refused.status_code == 403
            spans = await until_spans(
                sink, "GET /healthz", "GET /api/{app}/session", "_OTHER /healthz"
            )
    finally:
        stop(proc)
    (health,) = [s for s in spans if s.name == "GET /healthz"]
    assert health.trace_id != INCOMING_TRACE and health.parent_id == ""
    assert health.service == "line-auth-bff"  # OTEL_SERVICE_NAME's default
    (failed,) = [s for s in spans if s.name == "GET /api/{app}/session"]
    assert failed.attributes["error.type"] == "https_required"
    assert failed.attributes["http.response.status_code"] == 403


async def test_tracing_is_off_without_an_endpoint_or_when_disabled(
    receiver, redis_url, prefix, sandbox_url, tmp_path
):
    """OTEL_SDK_DISABLED=true wins over an endpoint; nothing is exported."""
    sink, otlp = receiver
    env = traced_env(
        serve_env(redis_url, prefix, sandbox_url, tmp_path),
        OTEL_EXPORTER_OTLP_ENDPOINT=otlp,
        OTEL_SDK_DISABLED="true",
    )
    proc, port = start_serve(env, tmp_path)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            await wait_ready(client, proc)
            for _ in range(3):
                await client.get("/healthz")
    finally:
        output = stop(proc)  # a clean stop flushes whatever a tracer would have queued
    assert sink.bodies == []
    assert '"trace_id"' not in output
