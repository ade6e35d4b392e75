"""Configuration: validation rules with actionable messages, check-config, no secret printed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from service.app import ConfigError, create_app
from service.config import Settings, config_problems, generate_key
from service.config.checks import EXAMPLE_KEY

ROOT = Path(__file__).resolve().parents[1]
GOOD_APP = {
    "client_id": "c1",
    "client_secret": "s3cr3t-value-xyz",
    "allowed_origins": ["https://app.example.no"],
    "return_urls": ["https://app.example.no/done"],
}


def settings(**values: object) -> Settings:
    base: dict[str, object] = {
        "env": "production",
        "public_url": "https://bff.example.no",
        "session_keys": generate_key(),
        "apps": {"shop": GOOD_APP},
    }
    base.update(values)
    return Settings(_env_file=None, **base)  # type: ignore[call-arg]


def fatal(s: Settings) -> list[str]:
    return [p.message for p in config_problems(s) if p.fatal]


def test_good_production_config_has_no_fatal_problem():
    """The reference configuration passes."""
    assert fatal(settings()) == []


def test_app_id_pattern_is_enforced_with_the_pattern_in_the_message():
    """App ids must match ^[a-z][a-z0-9_]{0,31}$."""
    with pytest.raises(ValidationError, match=r"must match \^\[a-z\]"):
        settings(apps={"Shop-1": GOOD_APP})


def test_duplicate_client_ids_are_refused():
    """Two apps cannot share one Telenor client."""
    with pytest.raises(ValidationError, match="share client id"):
        settings(apps={"a": GOOD_APP, "b": GOOD_APP})


def test_return_url_outside_allowed_origins_is_fatal():
    """A return URL must sit on one of the app's origins."""
    app = {**GOOD_APP, "return_urls": ["https://evil.example.com/x"]}
    assert any("outside allowed_origins" in m for m in fatal(settings(apps={"shop": app})))


def test_custom_scheme_return_url_is_allowed_but_javascript_is_not():
    """Mobile custom schemes are fine; script schemes are fatal."""
    ok = {**GOOD_APP, "return_urls": ["myapp://auth"]}
    assert fatal(settings(apps={"shop": ok})) == []
    bad = {**GOOD_APP, "return_urls": ["javascript://alert(1)"]}
    assert any("no usable scheme" in m for m in fatal(settings(apps={"shop": bad})))


def test_http_public_url_is_fatal_in_production_only():
    """Production needs https; development relaxes it."""
    assert any("production needs https" in m for m in fatal(settings(public_url="http://b.no")))
    assert fatal(settings(public_url="http://localhost:8000", env="development")) == []


def test_session_keys_must_be_present_and_32_bytes():
    """Missing or short keys are fatal, with the fix in the message."""
    assert any("BFF_SESSION_KEYS is missing" in m for m in fatal(settings(session_keys=None)))
    assert any("exactly 32 bytes" in m for m in fatal(settings(session_keys="c2hvcnQ")))


def test_missing_client_secret_is_fatal():
    """An app without its secret cannot redeem codes."""
    app = {**GOOD_APP, "client_secret": ""}
    assert any("client secret is missing" in m for m in fatal(settings(apps={"shop": app})))


def test_cross_site_origin_warns_about_third_party_cookies():
    """Cookie mode needs the SPA on the BFF's site; another site only warns."""
    app = {
        **GOOD_APP,
        "allowed_origins": ["https://shop.other.com"],
        "return_urls": ["https://shop.other.com/"],
    }
    problems = config_problems(settings(apps={"shop": app}))
    assert any("third-party cookies" in p.message and not p.fatal for p in problems)


def test_create_app_refuses_fatal_config():
    """The service never starts with a fatal problem."""
    with pytest.raises(ConfigError, match="production needs https"):
        create_app(settings(public_url="http://bff.example.no"))


def test_apps_come_from_env_with_lists_as_json_or_commas(monkeypatch):
    """BFF_APPS__{ID}__… builds the apps mapping; list values take JSON or commas."""
    monkeypatch.setenv("BFF_APPS__SHOP__CLIENT_ID", "c9")
    monkeypatch.setenv("BFF_APPS__SHOP__CLIENT_SECRET", "x")
    monkeypatch.setenv("BFF_APPS__SHOP__ALLOWED_ORIGINS", '["https://a.example.no"]')
    monkeypatch.setenv("BFF_APPS__SHOP__RETURN_URLS", "https://a.example.no/,myapp://x")
    monkeypatch.setenv("BFF_TELENOR__TOKEN_URL", "https://t.example/token")
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.apps["shop"].allowed_origins == ["https://a.example.no"]
    assert s.apps["shop"].return_urls == ["https://a.example.no/", "myapp://x"]
    assert s.telenor.token == "https://t.example/token"
    assert s.telenor.authorize == "https://api.telenor.no/oauth/v2/authorize"


def test_apps_file_is_read_and_env_wins(tmp_path, monkeypatch):
    """BFF_APPS_FILE (TOML) supplies apps; an env value overrides the file's."""
    path = tmp_path / "apps.toml"
    path.write_text(
        '[apps.shop]\nclient_id = "from-file"\nclient_secret = "f"\n'
        'display_name = "Butikken"\nreturn_urls = ["https://a.example.no/"]\n'
    )
    monkeypatch.setenv("BFF_APPS_FILE", str(path))
    monkeypatch.setenv("BFF_APPS__SHOP__CLIENT_ID", "from-env")
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert s.apps["shop"].client_id == "from-env"
    assert s.apps["shop"].display_name == "Butikken"


def _cli(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BFF_")}
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        cwd=cwd,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_env_example_needs_only_its_key_and_secret_replaced(tmp_path):
    """`.env.example` copied to `.env` fails on exactly its two placeholders (the example
    session key, anyone's to read, and the client secret); with those replaced it passes."""
    example = (ROOT / ".env.example").read_text()
    (tmp_path / ".env").write_text(example)
    result = _cli(["check-config"], tmp_path, {"PYTHONPATH": str(ROOT)})
    fatal_lines = [line for line in result.stdout.splitlines() if line.startswith("FATAL")]
    assert result.returncode == 1
    assert len(fatal_lines) == 2, result.stdout
    assert any(
        line.startswith("FATAL BFF_SESSION_KEYS holds the example key") for line in fatal_lines
    )
    assert any(line.startswith("FATAL BFF_APPS__SHOP__CLIENT_SECRET") for line in fatal_lines)
    mine = example.replace(EXAMPLE_KEY, generate_key()).replace(
        "replace-with-the-secret-from-the-dashboard", "Glz2FV5XYOvAhFCE"
    )
    (tmp_path / ".env").write_text(mine)
    result = _cli(["check-config"], tmp_path, {"PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FATAL" not in result.stdout


def test_check_config_lists_each_problem_and_never_a_secret(tmp_path):
    """A broken config: one line per problem, non-zero exit, the secret nowhere."""
    secret = "very-secret-value-123"
    env = {
        "PYTHONPATH": str(ROOT),
        "BFF_ENV": "production",
        "BFF_PUBLIC_URL": "http://bff.example.no",
        "BFF_SESSION_KEYS": generate_key(),
        "BFF_APPS__SHOP__CLIENT_ID": "c1",
        "BFF_APPS__SHOP__CLIENT_SECRET": secret,
        "BFF_APPS__SHOP__ALLOWED_ORIGINS": '["https://app.example.no"]',
        "BFF_APPS__SHOP__RETURN_URLS": '["https://evil.example.com/"]',
        "BFF_APPS__OTHER__CLIENT_ID": "c2",
        "BFF_APPS__OTHER__RETURN_URLS": '["https://app.example.no/"]',
        "BFF_APPS__OTHER__CLIENT_SECRET": "",
    }
    result = _cli(["check-config"], tmp_path, env)
    out = result.stdout + result.stderr
    assert result.returncode == 1
    fatal_lines = [line for line in result.stdout.splitlines() if line.startswith("FATAL")]
    assert any("production needs https" in line for line in fatal_lines)
    assert any("outside allowed_origins" in line for line in fatal_lines)
    assert any("client secret is missing" in line for line in fatal_lines)
    assert secret not in out


@pytest.mark.parametrize(
    ("values", "app", "expected", "is_fatal"),
    [
        ({}, {"pkce": False}, "PKCE is off", False),
        ({}, {"allowed_origins": ["http://app.example.no"]}, "is http in production", True),
        ({}, {}, "BFF_TRUSTED_PROXIES is loopback only", False),
        ({"rate_limit_api_per_minute": 0}, {}, "rate limit is off", False),
    ],
    ids=["pkce-off", "http-origin", "no-trusted-proxies", "rate-limit-off"],
)
def test_security_posture_findings(values, app, expected, is_fatal):
    """check-config reports the posture: PKCE, http origins, proxies, rate limits."""
    problems = config_problems(settings(apps={"shop": {**GOOD_APP, **app}}, **values))
    assert [p.fatal for p in problems if expected in p.message] == [is_fatal]
    ok = settings(trusted_proxies=["10.0.0.0/8"])
    assert config_problems(ok) == []


GOOD_ENV = {
    "BFF_ENV": "production",
    "BFF_PUBLIC_URL": "https://bff.example.no",
    "BFF_APPS__SHOP__CLIENT_ID": "c1",
    "BFF_APPS__SHOP__CLIENT_SECRET": "s3cr3t-value-xyz",
    "BFF_APPS__SHOP__ALLOWED_ORIGINS": '["https://app.example.no"]',
    "BFF_APPS__SHOP__RETURN_URLS": '["https://app.example.no/done"]',
    "BFF_TRUSTED_PROXIES": "10.0.0.0/8",
}


def env_with(tmp_path: Path, **changes: str) -> dict[str, str]:
    return {"PYTHONPATH": str(ROOT), "BFF_SESSION_KEYS": generate_key(), **GOOD_ENV, **changes}


def test_the_good_environment_passes(tmp_path):
    result = _cli(["check-config"], tmp_path, env_with(tmp_path))
    assert result.returncode == 0 and result.stdout.startswith("ok:"), result.stdout


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("BFF_REDIS_TIMOUT_SECONDS", "BFF_REDIS_TIMEOUT_SECONDS"),
        ("BFF_APPS__SHOP__CLIENT_SECRT", "BFF_APPS__SHOP__CLIENT_SECRET"),
        ("BFF_TELENOR__TOKEN_ULR", "BFF_TELENOR__TOKEN_URL"),
        ("BFF_ADMIN__TOKEN", "BFF_ADMIN__TOKENS"),
        ("BFF_SESION_KEYS", "BFF_SESSION_KEYS"),
    ],
)
def test_an_unknown_setting_is_fatal_in_production_with_the_nearest_name(
    tmp_path, name, suggestion
):
    """From the environment: check-config and serve name it as written and suggest the
    nearest valid name; serve exits 2 with one line a problem and no traceback."""
    env = env_with(tmp_path, **{name: "1"})
    checked = _cli(["check-config"], tmp_path, env)
    expected = f"FATAL {name}: unknown setting (did you mean {suggestion}?)"
    assert checked.returncode == 1 and expected in checked.stdout.splitlines()
    served = _cli(["serve", "--port", "0"], tmp_path, env)
    assert served.returncode == 2
    assert expected in served.stderr.splitlines() and "Traceback" not in served.stderr


def test_an_unknown_setting_is_a_warning_in_development(tmp_path):
    env = env_with(tmp_path, BFF_ENV="development", BFF_REDIS_TIMOUT_SECONDS="2")
    result = _cli(["check-config"], tmp_path, env)
    assert result.returncode == 0
    assert (
        "WARN  BFF_REDIS_TIMOUT_SECONDS: unknown setting (did you mean BFF_REDIS_TIMEOUT_SECONDS?)"
        in result.stdout.splitlines()
    )


def test_unknown_names_in_dotenv_and_the_apps_file_are_found_too(tmp_path):
    (tmp_path / ".env").write_text("BFF_STATE_TTL_SECONDZ=60\n")
    apps = tmp_path / "apps.toml"
    apps.write_text('[apps.shop]\ndisplay_nam = "Butikken"\n[aps.x]\nclient_id = "y"\n')
    result = _cli(["check-config"], tmp_path, env_with(tmp_path, BFF_APPS_FILE=str(apps)))
    out = result.stdout.splitlines()
    assert result.returncode == 1
    assert (
        "FATAL BFF_STATE_TTL_SECONDZ: unknown setting (did you mean BFF_STATE_TTL_SECONDS?)" in out
    )
    assert any(
        "[apps.shop] display_nam: unknown setting (did you mean display_name?)" in line
        for line in out
    )
    assert any("[aps] is not a table the service reads" in line for line in out)


def test_one_run_reports_every_problem_each_named_by_its_variable(tmp_path):
    """Unknown names and invalid values together; values named by their env var."""
    env = env_with(
        tmp_path, BFF_STATE_TTL_SECONDS="5", BFF_LOG_LEVEL="loud", BFF_REDIS_TIMOUT_SECONDS="1"
    )
    result = _cli(["check-config"], tmp_path, env)
    fatal_lines = [line for line in result.stdout.splitlines() if line.startswith("FATAL")]
    assert result.returncode == 1 and len(fatal_lines) == 3, result.stdout
    assert any(line.startswith("FATAL BFF_STATE_TTL_SECONDS: ") for line in fatal_lines)
    assert any(line.startswith("FATAL BFF_LOG_LEVEL: ") for line in fatal_lines)
    assert not any("state_ttl_seconds" in line for line in fatal_lines)  # no pydantic paths


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"BFF_SESSION_KEYS": "q5pN2m1kOq9cS7iVx3yWb0tR8uE4aZ6dF1gH2jK3lM4"},
            "BFF_SESSION_KEYS holds the example key",
        ),
        (
            {"BFF_APPS__SHOP__CLIENT_SECRET": "replace-with-the-secret-from-the-dashboard"},
            "BFF_APPS__SHOP__CLIENT_SECRET is a placeholder",
        ),
        (
            {"BFF_TELENOR__TOKEN_URL": "http://telenor.example/oauth/v2/token"},
            "BFF_TELENOR__TOKEN_URL http://telenor.example/oauth/v2/token is plain http",
        ),
        (
            {"BFF_TELENOR__BASE_URL": "http://api.telenor.example"},
            "BFF_TELENOR__API_URL http://api.telenor.example is plain http",
        ),
        (
            {"BFF_ADMIN__ADDRESS": "0.0.0.0:9100"},
            "BFF_ADMIN__ADDRESS 0.0.0.0:9100 is not loopback and BFF_ADMIN__TOKENS is empty",
        ),
    ],
    ids=["example-key", "placeholder-secret", "http-token-url", "http-api-url", "open-admin"],
)
def test_production_refuses_what_would_leak_or_expose(tmp_path, changes, expected):
    """check-config exits 1 and serve 2, each with the line (serve on stderr, no traceback)."""
    env = env_with(tmp_path, **changes)
    checked = _cli(["check-config"], tmp_path, env)
    assert checked.returncode == 1
    assert any(line.startswith(f"FATAL {expected}") for line in checked.stdout.splitlines()), (
        checked.stdout
    )
    served = _cli(["serve", "--port", "0"], tmp_path, env)
    assert served.returncode == 2 and "Traceback" not in served.stderr
    assert any(line.startswith(f"FATAL {expected}") for line in served.stderr.splitlines())


@pytest.mark.parametrize(
    "changes",
    [
        {"BFF_TELENOR__BASE_URL": "http://127.0.0.1:8001"},
        {"BFF_TELENOR__BASE_URL": "http://localhost:8001"},
        {"BFF_TELENOR__AUTHORIZE_URL": "http://auth.telenor.example/oauth/v2/authorize"},
        {"BFF_ADMIN__ADDRESS": "0.0.0.0:9100", "BFF_ADMIN__TOKENS": "ops:long-random-token"},
    ],
    ids=["sandbox-ip", "sandbox-localhost", "http-authorize", "open-admin-with-tokens"],
)
def test_what_production_allows(tmp_path, changes):
    """The sandbox on loopback; an http authorize URL (it carries no secret, and network
    authentication may need it); an admin listener on all interfaces behind tokens."""
    result = _cli(["check-config"], tmp_path, env_with(tmp_path, **changes))
    assert result.returncode == 0, result.stdout
