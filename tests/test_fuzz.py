"""Schemathesis over openapi/openapi.json against the running BFF, with and without a session.

The checks: no 5xx, and every status, content type, header and body is one the spec declares.
Examples are bounded so CI stays fast; the seed is fixed so a failure reproduces.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.app import create_app
from tests.support.browser import BFF, bearer_session, walk_login
from tests.support.servers import ThreadedServer

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "openapi" / "openapi.json"
CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "response_headers_conformance",
    )
)
EXAMPLES = 25


@pytest.fixture
def served(bff) -> Iterator[str]:
    """The same BFF configuration served by uvicorn on a loopback port (sessions shared)."""
    server = ThreadedServer(create_app(bff.settings), lifespan="on").start()
    yield server.url
    server.stop()


def fuzz(url: str, tmp_path: Path, app: str | None, *headers: str) -> str:
    """Run schemathesis; the report of a failing run becomes the assertion message."""
    config = tmp_path / f"schemathesis-{app}.toml"
    config.write_text(f'[parameters]\n"path.app" = "{app}"\n' if app else "")
    args = [
        str(Path(sys.executable).parent / "schemathesis"),
        "--config-file",
        str(config),
        "run",
        str(SPEC),
        "--url",
        url,
        "--checks",
        CHECKS,
        "--max-examples",
        str(EXAMPLES),
        "--seed",
        "20261127",
        "--workers",
        "1",
        "--header",
        "X-Forwarded-Proto: https",  # from loopback, a trusted proxy: the request is https
    ]
    for header in headers:
        args += ["--header", header]
    if app:  # keep the session alive for the other operations
        args += ["--exclude-path-regex", "logout"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    generated = re.search(r"(\d+) generated, (\d+) passed", done.stdout)
    assert generated and int(generated.group(1)) >= 100, done.stdout[-2000:]
    assert generated.group(1) == generated.group(2)
    return done.stdout


def test_fuzz_without_a_session(served, tmp_path):
    fuzz(served, tmp_path, None)


async def test_fuzz_with_a_cookie_session(served, browser, tmp_path):
    await walk_login(browser)
    cookie = browser.cookies.get("__Host-Http-bff-web")
    assert (await browser.get(f"{BFF}/api/web/session", headers={"X-CSRF": "1"})).json()[
        "authenticated"
    ]
    fuzz(served, tmp_path, "web", f"Cookie: __Host-Http-bff-web={cookie}", "X-CSRF: 1")


async def test_fuzz_with_a_bearer_session(served, bff, tmp_path):
    token = await bearer_session(bff)
    fuzz(served, tmp_path, "mobile", f"Authorization: Bearer {token}")
