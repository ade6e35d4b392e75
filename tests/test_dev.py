"""`line-auth-bff dev` for an app of your own: `--apps-file`, the environment, `--env-file`,
`--public-url`; every mistake one line and exit 2, never a traceback. Each test runs the real
command."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.browser import query, walk_login
from tests.support.dev import dev_env, refused, start_dev

MINE = """\
[apps.mine]
allowed_origins = ["http://localhost:9000"]
return_urls = ["http://localhost:9000/"]
native_redirect_uris = ["com.example.mine:/oauth2redirect"]
"""


def _no_traceback(output: str) -> None:
    assert "Traceback" not in output and "pydantic" not in output.lower(), output


def test_a_typo_in_the_apps_file_is_one_line_naming_the_nearest_valid_name(tmp_path: Path):
    (tmp_path / "apps.toml").write_text(MINE.replace("native_redirect_uris", "native_redirect_uri"))
    done = refused(tmp_path, "--apps-file", "apps.toml")
    assert done.returncode == 2
    fatal = [line for line in done.stderr.splitlines() if line.startswith("FATAL")]
    assert fatal == [
        "FATAL BFF_APPS_FILE apps.toml: [apps.mine] native_redirect_uri: unknown setting "
        "(did you mean native_redirect_uris?)"
    ]
    _no_traceback(done.stdout + done.stderr)


def test_a_typo_in_the_environment_is_fatal_in_dev(tmp_path: Path):
    """Development mode promised warnings for unknown names; `dev` never showed them. It is
    where a configuration is first written, so a typo stops it, in one line."""
    done = refused(tmp_path, env=dev_env(BFF_APPS__DEMO__RETURN_URL="http://localhost:9000/"))
    assert done.returncode == 2
    assert (
        "FATAL BFF_APPS__DEMO__RETURN_URL: unknown setting (did you mean "
        "BFF_APPS__DEMO__RETURN_URLS?)" in done.stderr.splitlines()
    )
    _no_traceback(done.stdout + done.stderr)


def test_a_bad_value_is_one_line_naming_the_setting(tmp_path: Path):
    (tmp_path / "apps.toml").write_text(
        MINE.replace('"http://localhost:9000"]', '"localhost:9000/x"]', 1)
    )
    done = refused(tmp_path, "--apps-file", "apps.toml")
    assert done.returncode == 2
    fatal = [line for line in done.stderr.splitlines() if line.startswith("FATAL")]
    assert len(fatal) == 1 and fatal[0].startswith("FATAL BFF_APPS__MINE__ALLOWED_ORIGINS:"), fatal
    _no_traceback(done.stdout + done.stderr)


async def test_an_app_of_your_own_signs_in_beside_demo(tmp_path: Path):
    """The apps file's app needs no client id or secret in dev (the sandbox registers one); its
    origin and return URL work; the demo app is still there; check-config's warnings print."""
    (tmp_path / "apps.toml").write_text(MINE)
    dev = start_dev(tmp_path, "--apps-file", "apps.toml")
    try:
        assert "app mine" in dev.output and "app demo" in dev.output
        async with httpx.AsyncClient(timeout=30) as browser:
            walk = await walk_login(
                browser, "mine", return_to="http://localhost:9000/", bff=dev.url
            )
            assert walk.final is not None and walk.final.status_code == 302
            assert walk.final.headers["location"] == "http://localhost:9000/"
            status = await browser.get(
                f"{dev.url}/api/mine/session",
                headers={"Origin": "http://localhost:9000", "X-CSRF": "1"},
            )
            assert status.json()["authenticated"] is True
            assert status.headers["access-control-allow-origin"] == "http://localhost:9000"
            demo = await browser.get(f"{dev.url}/demo")
            assert demo.status_code == 200
    finally:
        output = dev.stop()
    _no_traceback(output)


async def test_the_environment_changes_one_field_of_the_demo_app(tmp_path: Path):
    """`BFF_APPS__DEMO__ALLOWED_ORIGINS` alone used to crash dev (the demo app rebuilt from the
    environment lacked its client id): now dev's defaults lie beneath the environment."""
    env = dev_env(BFF_APPS__DEMO__ALLOWED_ORIGINS="http://localhost:9000")
    dev = start_dev(tmp_path, env=env)
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            allowed = await client.options(
                f"{dev.url}/api/demo/session",
                headers={
                    "Origin": "http://localhost:9000",
                    "Access-Control-Request-Method": "GET",
                },
            )
        assert allowed.headers.get("access-control-allow-origin") == "http://localhost:9000"
        assert "client demo-client" in dev.output
    finally:
        _no_traceback(dev.stop())


def test_dev_reads_no_dot_env_unless_told(tmp_path: Path):
    """A `.env` in the working directory (a production one, copied from .env.example) is not
    merged silently: dev says it is not reading it; `--env-file` reads it and says so."""
    (tmp_path / ".env").write_text("BFF_APPS__DEMO__DISPLAY_NAME=Fra env-fila\n")
    dev = start_dev(tmp_path)
    try:
        assert "dev is not reading ./.env (pass --env-file .env to use it)" in dev.output
    finally:
        dev.stop()
    (tmp_path / "typo.env").write_text("BFF_APPS__DEMO__DISPLAYNAME=x\n")
    done = refused(tmp_path, "--env-file", "typo.env")
    assert done.returncode == 2 and "dev is reading settings from typo.env" in done.stdout
    assert "FATAL BFF_APPS__DEMO__DISPLAYNAME: unknown setting" in done.stderr
    missing = refused(tmp_path, "--env-file", "nowhere.env")
    assert missing.returncode == 2
    assert missing.stderr.strip() == "FATAL --env-file nowhere.env: no such file"


@pytest.mark.parametrize("how", ["flag", "environment"])
async def test_the_public_url_is_what_a_phone_or_an_emulator_is_sent_to(tmp_path: Path, how: str):
    """An Android emulator reaches the host's loopback as 10.0.2.2: the issuer, the callback
    and the sandbox's authorize page say that host, while dev itself listens where it did."""
    public = "http://10.0.2.2:8000"  # as given: the emulator's 8000 may map to any port here
    args: tuple[str, ...] = ("--public-url", public) if how == "flag" else ()
    env = dev_env(**({} if how == "flag" else {"BFF_PUBLIC_URL": public}))
    dev = start_dev(tmp_path, *args, env=env)
    try:
        async with httpx.AsyncClient(base_url=dev.url, timeout=30) as client:
            meta = await client.get("/.well-known/oauth-authorization-server/oauth2/demo")
            assert meta.json()["issuer"] == f"{public}/oauth2/demo"
            login = await client.get(
                "/auth/demo/login", params={"return_to": "http://10.0.2.2:8000/demo"}
            )
        assert login.status_code == 302, login.text
        authorize = urlsplit(login.headers["location"])
        assert authorize.hostname == "10.0.2.2" and authorize.port == dev.port + 1
        assert query(login.headers["location"])["redirect_uri"] == (
            "http://10.0.2.2:8000/auth/demo/callback"
        )
    finally:
        _no_traceback(dev.stop())
