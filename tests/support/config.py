"""The test BFF's configuration: its session key, its apps, and settings built from them."""

from __future__ import annotations

from typing import Any

from service.config import Settings, generate_key
from tests.support.browser import ADMIN_TOKEN, BFF

KEYS = generate_key()
APPS: dict[str, dict[str, Any]] = {
    "web": {
        "client_id": "web-client",
        "client_secret": "web-secret-5f0c1e",
        "display_name": "Nettbutikken",
        "allowed_origins": ["https://app.bff.test"],
        "return_urls": ["https://app.bff.test/done", "https://app.bff.test/app/"],
    },
    "other": {
        "client_id": "other-client",
        "client_secret": "other-secret-9a7d2b",
        "allowed_origins": ["https://other.bff.test"],
        "return_urls": ["https://other.bff.test/"],
    },
    "mobile": {
        "client_id": "mobile-client",
        "client_secret": "mobile-secret-3c8e4f",
        "display_name": "Mobilappen",
        "allowed_origins": ["https://app.bff.test"],
        "return_urls": ["myapp://auth", "https://app.bff.test/mobile"],
        "native_redirect_uris": [
            "no.example.shop:/oauth2redirect",
            "http://127.0.0.1/oauth2redirect",
            "https://app.bff.test/mobile/oauth2redirect",
        ],
    },
}
SECRETS = [app["client_secret"] for app in APPS.values()]


def make_settings(redis_url: str, prefix: str, telenor_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "env": "production",
        "public_url": BFF,
        "network_auth_url": "http://bff.test",
        "redis_url": redis_url,
        "redis_key_prefix": prefix,
        "session_keys": KEYS,
        "telenor": {"base_url": telenor_url, "timeout_seconds": 1.5, "logout_timeout_seconds": 1},
        "apps": APPS,
        "sandbox": {"hang_seconds": 4},
        "admin": {"address": "127.0.0.1:9100", "tokens": f"ops:{ADMIN_TOKEN}"},
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]
