"""A scripted browser: one cookie jar across the BFF (in-process ASGI) and the sandbox (HTTP)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from service.kit.crypto import new_token, pkce_challenge

BFF = "https://bff.test"
BFF_HTTP = "http://bff.test"
ADMIN = "http://bff.test:9100"  # the admin listener (BFF_ADMIN__ADDRESS's port)
ADMIN_TOKEN = "admin-token-7c1d9e04b2"
APP_ORIGIN = "https://app.bff.test"


class WithState:
    """Feeds the lifespan state into each request, as uvicorn does."""

    def __init__(self, app: ASGIApp, state: dict[str, Any]) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["state"] = dict(self.state)
        await self.app(scope, receive, send)


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[ASGIApp]:
    """The app with its lifespan entered (clients created) and closed afterwards."""
    async with app.router.lifespan_context(app) as state:
        yield WithState(app, dict(state or {}))


def new_browser(asgi: ASGIApp, client_ip: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=asgi, client=(client_ip, 40000))
    return httpx.AsyncClient(
        mounts={"https://bff.test": transport, "http://bff.test": transport},
        follow_redirects=False,
        timeout=30,
    )


async def scrape(client: httpx.AsyncClient) -> str:
    """The Prometheus text, from the admin listener."""
    response = await client.get(f"{ADMIN}/metrics")
    assert response.status_code == 200, response.text
    return response.text


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


@dataclass
class Walk:
    """Every hop of one login, for tests to assert on."""

    authorize_url: str = ""
    callback_url: str = ""
    final: httpx.Response | None = None
    hops: list[httpx.Response] = field(default_factory=list)


async def walk_login(
    browser: httpx.AsyncClient,
    app: str = "web",
    *,
    return_to: str = f"{APP_ORIGIN}/done",
    mode: str | None = None,
    challenge: str | None = None,
    msisdn: str = "4790000001",
    network: bool = False,
    decision: str = "approve",
    ussd_answer: str = "1",
    start: str | None = None,
    callback_browser: httpx.AsyncClient | None = None,
    follow_callback: bool = True,
    bff: str = BFF,
) -> Walk:
    """Drive login → Telenor sandbox (network or USSD) → consent → callback, as a browser would."""
    walk = Walk()
    params: dict[str, str] = {"return_to": return_to}
    if mode:
        params["mode"] = mode
    if challenge:
        params.update(code_challenge=challenge, code_challenge_method="S256")
    if start is None:
        start = f"{bff}/auth/{app}/login?{urlencode(params)}"
    # The BFF's own hops (the network entry's https detour) until the browser leaves for Telenor.
    while urlsplit(start).hostname == "bff.test" or start.startswith(f"{bff}/"):
        r = await browser.get(start)
        walk.hops.append(r)
        assert r.status_code == 302, r.text
        start = str(r.url.join(r.headers["location"]))
    walk.authorize_url = start
    headers = {"X-Sandbox-MSISDN": msisdn} if network else {}
    r = await browser.get(walk.authorize_url, headers=headers)
    walk.hops.append(r)
    assert r.status_code == 302, r.text
    location = str(r.url.join(r.headers["location"]))
    if "/sandbox/ussd/" in location:
        page = await browser.get(location)
        assert page.status_code == 200
        answer = await browser.post(location, json={"answer": ussd_answer, "msisdn": msisdn})
        assert answer.status_code == 200, answer.text
        r = await browser.get(location)
        walk.hops.append(r)
        location = str(r.url.join(r.headers["location"]))
    if "/sandbox/consent/" in location:
        consent = await browser.get(location)
        assert consent.status_code == 200
        r = await browser.post(location, data={"decision": decision})
        walk.hops.append(r)
        location = r.headers["location"]
    walk.callback_url = location
    if not follow_callback:
        return walk
    final = await (callback_browser or browser).get(location)
    walk.hops.append(final)
    walk.final = final
    return walk


def cookie_header(response: httpx.Response, name_part: str) -> str:
    """The Set-Cookie header whose cookie name contains `name_part`."""
    for value in response.headers.get_list("set-cookie"):
        if re.match(rf"[^=]*{re.escape(name_part)}[^=]*=", value):
            return value
    raise AssertionError(f"no Set-Cookie with {name_part!r}: {response.headers}")


NATIVE_REDIRECT = "no.example.shop:/oauth2redirect"


@dataclass
class NativeLogin:
    """A native app's finished authorization request, walked in a throwaway browser tab (its
    cookies die with it): the code on the app's redirect URI, and what the app kept."""

    walk: Walk
    code: str
    verifier: str  # the app's PKCE verifier
    state: str  # the app's state
    redirect_uri: str
    cookies: dict[str, str]  # what the browser held at the end


def authorize_url(app: str, redirect_uri: str, verifier: str, state: str) -> str:
    params = {
        "response_type": "code",
        "client_id": app,
        "redirect_uri": redirect_uri,
        "state": state,
        "code_challenge": pkce_challenge(verifier),
        "code_challenge_method": "S256",
    }
    return f"{BFF}/oauth2/{app}/authorize?{urlencode(params)}"


async def native_login(
    bff: Any, app: str = "mobile", redirect_uri: str = NATIVE_REDIRECT, **walk: Any
) -> NativeLogin:
    """The native app's login (RFC 8252): authorize in a browser, back on its redirect URI."""
    verifier, state = new_token(48), new_token(12)
    async with bff.browser() as tab:
        done = await walk_login(
            tab, app, start=authorize_url(app, redirect_uri, verifier, state), **walk
        )
        cookies = dict(tab.cookies.items())
    assert done.final is not None
    location = done.final.headers["location"]
    assert done.final.status_code == 302 and location.startswith(redirect_uri + "?"), location
    # The native flow never sets a session cookie: the session exists once the code is redeemed.
    assert not any(f"bff-{app}=" in c for c in done.final.headers.get_list("set-cookie"))
    back = query(location)
    assert back["state"] == state
    return NativeLogin(done, back["code"], verifier, state, redirect_uri, cookies)


async def redeem(
    client: httpx.AsyncClient, login: NativeLogin, app: str = "mobile", **change: str
) -> httpx.Response:
    """The native app's token request for its code (`change` alters fields)."""
    form = {
        "grant_type": "authorization_code",
        "code": login.code,
        "redirect_uri": login.redirect_uri,
        "client_id": app,
        "code_verifier": login.verifier,
        **change,
    }
    return await client.post(f"{BFF}/oauth2/{app}/token", data=form)


async def bearer_session(bff: Any, app: str = "mobile") -> str:
    """A redeemed code: the opaque session token a native app sends as a bearer."""
    login = await native_login(bff, app)
    async with bff.browser() as client:
        redeemed = await redeem(client, login, app)
    assert redeemed.status_code == 200, redeemed.text
    token: str = redeemed.json()["access_token"]
    return token
