"""`line-auth-bff serve` as a real process: JSON logs on stdout, graceful shutdown on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time

import httpx

from tests.support.browser import walk_login
from tests.support.serve import admin_url, refuses, serve_env, start_serve, stop, wait_ready
from tests.support.servers import until


async def test_sigterm_finishes_in_flight_requests_refuses_new_ones_and_exits_cleanly(
    browser, sandbox, sandbox_url, redis_url, prefix, tmp_path
):
    await walk_login(browser)
    cookie = browser.cookies.get("__Host-Http-bff-web")
    proc, port = start_serve(serve_env(redis_url, prefix, sandbox_url, tmp_path), tmp_path)
    try:
        headers = {
            "X-Forwarded-Proto": "https",
            "X-CSRF": "1",
            "Cookie": f"__Host-Http-bff-web={cookie}",
        }
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as client:
            await wait_ready(client, proc)
            sandbox.faults.latency = {"user-info": 1.5}
            before = len(sandbox.calls("/user-info/v1/users"))  # the login's subscriber lookup
            slow = asyncio.create_task(client.get("/api/web/user-info"))
            await until(lambda: len(sandbox.calls("/user-info/v1/users")) > before)  # at Telenor
            proc.send_signal(signal.SIGTERM)
            while not refuses(port):  # new connections are refused while it drains
                assert not slow.done(), "the listener stayed open for the whole request"
                await asyncio.sleep(0.01)
            response = await slow
        assert response.status_code == 200 and response.json()["mobileNumber"] == "4790000001"
        # uvicorn re-raises the signal once shut down, so supervisors see "terminated by TERM".
        assert proc.wait(timeout=20) in (0, -signal.SIGTERM)
    finally:
        output = stop(proc)
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    access = [r for r in records if r.get("logger") == "line_auth_bff.access"]
    assert {"route": "/api/{app}/user-info", "status": 200}.items() <= access[-1].items()
    assert cookie not in output
    messages = [r["msg"] for r in records]
    assert "Waiting for application shutdown." in messages  # the lifespan closed the clients
    assert "Application shutdown complete." in messages


async def test_metrics_are_summed_over_two_workers(sandbox_url, redis_url, prefix, tmp_path):
    """With --workers 2 each scrape sees every worker's counts, whichever worker answers."""
    env = serve_env(redis_url, prefix, sandbox_url, tmp_path)
    proc, port = start_serve(env, tmp_path, "--workers", "2")
    try:
        base = f"http://127.0.0.1:{port}"
        headers = {"X-Forwarded-Proto": "https"}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=10) as client:
            await wait_ready(client, proc)
            for _ in range(30):  # new connections: the kernel spreads them over the workers
                async with httpx.AsyncClient(base_url=base, headers=headers) as one:
                    r = await one.get("/auth/web/login?return_to=https://app.bff.test/done")
                    assert r.status_code == 302
            assert (await client.get("/metrics")).status_code == 404  # public: not in production
            for _ in range(10):
                async with httpx.AsyncClient(base_url=admin_url(env)) as one:
                    text = (await one.get("/metrics")).text
                    assert 'bff_login_started_total{app="web",mode="cookie"} 30.0' in text
            # Process metrics of each worker (prometheus-client's own see only the renderer).
            workers = set(re.findall(r'^process_cpu_seconds_total\{pid="(\d+)"\}', text, re.M))
            assert len(workers) == 2 and str(proc.pid) not in workers
            assert re.search(r'^bff_build_info\{version="[^"]+"\} 1\.0$', text, re.M)
            # The request histogram: within a second every worker's share is in the files.
            route = 'method="GET",route="/auth/{app}/login",status="3xx"'
            deadline = time.monotonic() + 5
            while f"bff_http_request_duration_seconds_count{{{route}}} 30.0" not in text:
                assert time.monotonic() < deadline, text
                await asyncio.sleep(0.2)  # (polls the flush the workers do every second)
                async with httpx.AsyncClient(base_url=admin_url(env)) as one:
                    text = (await one.get("/metrics")).text
    finally:
        stop(proc)
