"""OAuth 2.0 for native apps (RFC 8252): a real OAuth client library plays the mobile app.

Authlib's `AsyncOAuth2Client` (a public client with S256 PKCE) discovers the app's
authorization server, sends its authorization request, and trades the code for the BFF
session token it then uses as a bearer; the browser part (the custom tab) is the scripted
browser of the other tests, through the real sandbox.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import authlib.deprecate  # (it installs an "always" filter for its own warnings)
import httpx
import pytest
from pydantic import ValidationError

from service.config import AppConfig
from service.kit.crypto import Cipher, new_token, pkce_challenge
from service.store.stores import CodeStore
from tests.support.browser import (
    BFF,
    NATIVE_REDIRECT,
    authorize_url,
    native_login,
    query,
    redeem,
    scrape,
    walk_login,
)

with warnings.catch_warnings():
    # Authlib 1.9 warns that its httpx backend will move to the httpx2 fork; these tests, and
    # the in-process BFF transport they share with every other test, are on httpx.
    warnings.simplefilter("ignore", authlib.deprecate.AuthlibDeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client

pytestmark = pytest.mark.usefixtures("sandbox")
ISSUER = f"{BFF}/oauth2/mobile"


def authlib_client(bff: Any, redirect_uri: str) -> AsyncOAuth2Client:
    """The mobile app's OAuth client: public (no secret), S256 PKCE."""
    transport = httpx.ASGITransport(app=bff.asgi, client=("127.0.0.1", 40001))
    return AsyncOAuth2Client(
        client_id="mobile",
        token_endpoint_auth_method="none",
        revocation_endpoint_auth_method="none",
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
        mounts={BFF: transport},
    )


@asynccontextmanager
async def loopback_app() -> AsyncIterator[tuple[str, list[str]]]:
    """A native app's loopback listener (RFC 8252 §7.3) on an ephemeral port: it records the
    request target of each redirect it receives and answers a short page."""
    received: list[str] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request_line = (await reader.readline()).decode()
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        received.append(request_line.split(" ")[1])
        body = b"You can return to the app."
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/oauth2redirect", received
    finally:
        server.close()
        await server.wait_closed()


async def discover(client: AsyncOAuth2Client) -> dict[str, Any]:
    url = f"{BFF}/.well-known/oauth-authorization-server/oauth2/mobile"
    r = await client.request("GET", url, withhold_token=True)
    assert r.status_code == 200
    meta: dict[str, Any] = r.json()
    assert meta["issuer"] == ISSUER
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["token_endpoint_auth_methods_supported"] == ["none"]
    assert "jwks_uri" not in meta  # no ID tokens, so no OpenID fields pretending otherwise
    return meta


async def sign_in_and_out(
    bff: Any, redirect_uri: str, *, network: bool, deliver: Any = None
) -> httpx.Response:
    """Discovery → authorize → the browser's walk → the redirect → token → user-info →
    revoke → 401. Returns the walk's first hop (the tests check where it went)."""
    async with authlib_client(bff, redirect_uri) as app:
        meta = await discover(app)
        verifier = new_token(48)
        url, state = app.create_authorization_url(
            meta["authorization_endpoint"], code_verifier=verifier
        )
        async with bff.browser() as tab:
            walk = await walk_login(tab, "mobile", start=url, network=network, msisdn="4790000002")
        assert walk.final is not None and walk.final.status_code == 302
        location = walk.final.headers["location"]
        assert location.startswith(redirect_uri + "?") and query(location)["state"] == state
        if deliver is not None:
            location = await deliver(location)
        token = await app.fetch_token(
            meta["token_endpoint"], authorization_response=location, code_verifier=verifier
        )
        assert token["token_type"] == "Bearer" and 3500 < token["expires_in"] <= 3600
        assert len(token["access_token"]) == 43  # a BFF session token, never Telenor's
        assert token["access_token"] not in bff.sandbox.tokens
        user = await app.get(f"{BFF}/api/mobile/user-info")  # Authlib adds the bearer
        assert user.status_code == 200 and user.json()["mobileNumber"] == "4790000002"
        revoked = await app.revoke_token(meta["revocation_endpoint"], token=token["access_token"])
        assert revoked.status_code == 200
        after = await app.get(f"{BFF}/api/mobile/user-info")
        assert after.status_code == 401
        return walk.hops[0]


async def test_authlib_signs_in_by_ussd_to_a_private_use_scheme(bff):
    """USSD (no line header), back to `no.example.shop:/oauth2redirect`."""
    first = await sign_in_and_out(bff, NATIVE_REDIRECT, network=False)
    assert first.status_code == 302


async def test_authlib_signs_in_by_network_to_a_loopback_port(bff):
    """Network authentication (the plain-http entry's leg), back to a real loopback listener
    on a port that is not the registered one's (RFC 8252 §7.3: any port matches)."""
    async with loopback_app() as (redirect_uri, received):

        async def deliver(location: str) -> str:
            async with httpx.AsyncClient() as system_browser:
                page = await system_browser.get(location)
            assert page.status_code == 200
            return f"{redirect_uri.rsplit('/', 1)[0]}{received[-1]}"

        first = await sign_in_and_out(bff, redirect_uri, network=True, deliver=deliver)
    # The BFF sent the browser out through the plain-http entry, where the line is known.
    assert first.headers["location"].startswith("http://bff.test/auth/mobile/network?state=")
    assert len(received) == 1 and "code=" in received[0]


async def test_deny_redirects_access_denied_with_the_apps_state(bff):
    """The user declines at Telenor: the app hears `access_denied` with its own state."""
    verifier, state = new_token(48), "app-state-123"
    async with bff.browser() as tab:
        walk = await walk_login(
            tab, start=authorize_url("mobile", NATIVE_REDIRECT, verifier, state), decision="deny"
        )
    assert walk.final is not None and walk.final.status_code == 302
    location = walk.final.headers["location"]
    assert location.startswith(NATIVE_REDIRECT + "?")
    assert query(location) == {
        "error": "access_denied",
        "error_description": "access_denied",
        "state": state,
    }


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "no.example.shop:/evil",
        "no.example.shop:/oauth2redirect/../x",
        "http://127.0.0.1:8080/other",
        "http://localhost/oauth2redirect",
        "https://app.bff.test/mobile/oauth2redirect?x=1",
        "myapp://auth",  # a web return URL of the app, not a native redirect URI
        "",
    ],
)
async def test_unregistered_redirect_uri_shows_the_page_and_redirects_nowhere(
    browser, sandbox, redirect_uri
):
    url = authorize_url("mobile", redirect_uri, new_token(48), "s")
    r = await browser.get(url)
    assert r.status_code == 400 and "location" not in r.headers
    assert 'data-error="bad_redirect_uri"' in r.text
    assert list(sandbox.requests) == []


async def test_an_overlong_state_is_refused_and_not_sent_back(browser, sandbox, redis, bff):
    """The app's state is stored with the login: more than 512 characters is refused before
    anything is stored (and a redirect does not echo it)."""
    params = query(authorize_url("mobile", NATIVE_REDIRECT, new_token(48), "x" * 30_000))
    r = await browser.get(f"{BFF}/oauth2/mobile/authorize", params=params)
    assert r.status_code == 302
    back = query(r.headers["location"])
    assert back["error"] == "invalid_request" and "state" not in back
    assert list(sandbox.requests) == []
    prefix = bff.settings.redis_key_prefix
    assert [k async for k in redis.scan_iter(match=f"{prefix}state:*")] == []


async def test_the_browser_login_cannot_start_a_native_login(browser, sandbox):
    """`mode=native` is not a mode of the login page: only /oauth2/{app}/authorize starts one."""
    r = await browser.get(
        f"{BFF}/auth/mobile/login", params={"return_to": "myapp://auth", "mode": "native"}
    )
    assert r.status_code == 400 and "location" not in r.headers
    assert list(sandbox.requests) == []


async def test_wrong_client_id_shows_the_page(browser):
    url = authorize_url("mobile", NATIVE_REDIRECT, new_token(48), "s").replace(
        "client_id=mobile", "client_id=web"
    )
    r = await browser.get(url)
    assert r.status_code == 400 and "location" not in r.headers
    assert 'data-error="bad_client"' in r.text
    assert 'id="retry"' not in r.text and "Tilbake til appen" not in r.text  # sent nowhere


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge": "short"}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
    ],
)
async def test_bad_authorization_request_redirects_the_error(browser, sandbox, change, error):
    """With a registered redirect URI, the other errors go back to the app, with its state."""
    params = query(authorize_url("mobile", NATIVE_REDIRECT, new_token(48), "st8"))
    r = await browser.get(f"{BFF}/oauth2/mobile/authorize", params={**params, **change})
    assert r.status_code == 302
    location = r.headers["location"]
    assert location.startswith(NATIVE_REDIRECT + "?")
    assert query(location)["error"] == error and query(location)["state"] == "st8"
    assert list(sandbox.requests) == []


async def test_wrong_verifier_is_invalid_grant_and_burns_the_code(bff):
    login = await native_login(bff)
    async with bff.browser() as app:
        wrong = await redeem(app, login, code_verifier=new_token(48))
        right = await redeem(app, login)
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    assert wrong.headers["content-type"] == "application/json"
    assert wrong.headers["cache-control"] == "no-store"
    assert right.status_code == 400 and right.json()["error"] == "invalid_grant"


async def test_reused_code_is_refused_and_ends_the_session_it_produced(bff):
    """RFC 6749 §4.1.2: a second use of a code revokes what the first use got."""
    login = await native_login(bff)
    async with bff.browser() as app:
        first = await redeem(app, login)
        assert first.status_code == 200
        bearer = {"Authorization": f"Bearer {first.json()['access_token']}"}
        assert (await app.get(f"{BFF}/api/mobile/user-info", headers=bearer)).status_code == 200
        again = await redeem(app, login)
        assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
        after = await app.get(f"{BFF}/api/mobile/user-info", headers=bearer)
        assert after.status_code == 401
        metrics = await scrape(app)
    assert 'bff_errors_total{code="oauth_invalid_grant"} 1.0' in metrics


async def test_a_reuse_before_the_first_session_exists_still_ends_it(bff, redis):
    """The race of two token requests for one code, step by step on the real store: the
    first swaps the code for its marker; a second use comes before the first's session is
    created; a third comes later. The first redemption sees the flag, and no use overwrites
    which session the code got."""
    login = await native_login(bff)
    settings = bff.settings
    store = CodeStore(
        redis, prefix=settings.redis_key_prefix, cipher=Cipher(settings.keys()), ttl=60
    )
    first = await store.redeem(login.code, "first-session-key")
    assert first.code is not None and first.reused is None
    assert not await store.was_reused(login.code)
    second = await store.redeem(login.code, "second-session-key")
    third = await store.redeem(login.code, "third-session-key")
    assert second.reused == third.reused == "first-session-key"
    assert second.code is None and third.code is None
    assert await store.was_reused(login.code)


async def test_code_of_another_app_is_refused_and_burned(bff):
    login = await native_login(bff)
    async with bff.browser() as app:
        other = await redeem(app, login, app="web")
        mine = await redeem(app, login)
    assert other.status_code == 400 and other.json()["error"] == "invalid_grant"
    assert mine.status_code == 400


@pytest.mark.parametrize(
    ("change", "status", "error"),
    [
        ({"redirect_uri": "no.example.shop:/elsewhere"}, 400, "invalid_grant"),
        ({"client_id": "web"}, 401, "invalid_client"),
        ({"grant_type": "refresh_token"}, 400, "unsupported_grant_type"),
        ({"code_verifier": ""}, 400, "invalid_request"),
    ],
)
async def test_token_request_errors(bff, change, status, error):
    login = await native_login(bff)
    async with bff.browser() as app:
        r = await redeem(app, login, **change)
    assert r.status_code == status and r.json()["error"] == error


async def test_token_request_must_be_a_form(browser):
    r = await browser.post(f"{BFF}/oauth2/mobile/token", json={"grant_type": "x"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"


async def test_expired_code_is_refused(bff, redis):
    login = await native_login(bff)
    keys = [k async for k in redis.scan_iter(match=f"{bff.settings.redis_key_prefix}code:*")]
    assert len(keys) == 1 and 0 < await redis.ttl(keys[0]) <= 60
    await redis.delete(keys[0])  # what Redis does when the TTL runs out
    async with bff.browser() as app:
        r = await redeem(app, login)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


async def test_revoking_an_unknown_token_is_200_and_changes_nothing(bff):
    login = await native_login(bff)
    async with bff.browser() as app:
        token = (await redeem(app, login)).json()["access_token"]
        r = await app.post(f"{BFF}/oauth2/mobile/revoke", data={"token": new_token(32)})
        assert r.status_code == 200
        bearer = {"Authorization": f"Bearer {token}"}
        assert (await app.get(f"{BFF}/api/mobile/user-info", headers=bearer)).status_code == 200
        # Another app's revocation endpoint cannot end this app's session either.
        await app.post(f"{BFF}/oauth2/web/revoke", data={"token": token, "client_id": "web"})
        assert (await app.get(f"{BFF}/api/mobile/user-info", headers=bearer)).status_code == 200


async def test_native_login_sets_no_session_cookie_and_needs_the_browser_binding(bff):
    """The callback of a native login still needs the browser that started it (RFC 9700 §4.7)."""
    verifier = new_token(48)
    async with bff.browser() as tab, bff.browser() as other:
        walk = await walk_login(
            tab,
            start=authorize_url("mobile", NATIVE_REDIRECT, verifier, "s1"),
            callback_browser=other,
        )
    # The other browser gets the page, and no redirect: it learns nothing of the app's state.
    assert walk.final is not None and walk.final.status_code == 400
    assert 'data-error="wrong_browser"' in walk.final.text and "location" not in walk.final.headers
    assert "s1" not in walk.final.text


async def test_discovery_of_an_app_without_native_redirects_is_404(browser):
    r = await browser.get(f"{BFF}/.well-known/oauth-authorization-server/oauth2/web")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"


async def test_handoff_mode_is_gone_and_says_where_to_go(browser):
    params = {"return_to": "myapp://auth", "mode": "handoff", "code_challenge": "x" * 43}
    r = await browser.get(f"{BFF}/auth/mobile/login", params=params)
    assert r.status_code == 400 and "location" not in r.headers
    started = await browser.post(
        f"{BFF}/api/mobile/auth/start", json={"return_to": "myapp://auth", "mode": "handoff"}
    )
    assert started.status_code == 422


@pytest.mark.parametrize(
    "uri",
    [
        "http://localhost/cb",  # RFC 8252 §8.3: loopback by IP literal, not by name
        "http://10.0.0.1/cb",
        "myapp:/cb",  # a private-use scheme must be a reversed domain name
        "https://app.example/cb#x",
        "no.example.shop:/cb with space",
    ],
)
def test_native_redirect_uri_rules(uri):
    with pytest.raises(ValidationError, match="native redirect URI"):
        AppConfig(client_id="c", client_secret="s", native_redirect_uris=[uri])


def test_allowed_native_redirect_uris():
    uris = ["no.example.shop:/oauth2redirect", "https://shop.example.no/app", "http://[::1]/cb"]
    assert AppConfig(client_id="c", client_secret="s", native_redirect_uris=uris)


def test_challenge_helper_matches_rfc7636_appendix_b():
    assert (
        pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
        == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    )
