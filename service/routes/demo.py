"""The demo page (development only): a sign-up form filled from Mobile User Info."""

from __future__ import annotations

import secrets
from functools import cache
from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter
from jinja2 import Environment, FileSystemLoader, Template, select_autoescape
from starlette.responses import HTMLResponse

from .deps import ServicesDep

router = APIRouter(include_in_schema=False)


@cache
def _template() -> Template:
    """Loaded on first use, not at import."""
    return Environment(
        loader=FileSystemLoader(Path(__file__).parent.parent / "templates"),
        autoescape=select_autoescape(default=True),
    ).get_template("demo.html")


@router.get("/demo")
async def demo(services: ServicesDep) -> HTMLResponse:
    """The copy-paste example for front-end teams."""
    public = services.settings.public_url
    entry = services.settings.network_auth_url or public
    nonce = secrets.token_urlsafe(12)
    html = _template().render(
        nonce=nonce,
        public_url=public,
        network_login=f"{entry}/auth/demo/login?return_to={quote(public + '/demo', safe='')}",
    )
    csp = (
        # ('self' for the JS client the page imports: a module's imports carry no nonce.)
        f"default-src 'self'; script-src 'nonce-{nonce}' 'self'; style-src 'nonce-{nonce}'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    return HTMLResponse(html, headers={"Content-Security-Policy": csp, "Cache-Control": "no-store"})
