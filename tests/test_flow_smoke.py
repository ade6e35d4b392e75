"""Smoke: one login through the real BFF, sandbox and Redis."""

from tests.support.browser import walk_login


async def test_login_reaches_return_to(bff, browser):
    """A USSD login ends on return_to with a session cookie."""
    walk = await walk_login(browser)
    assert walk.final.status_code == 302, walk.final.text
    assert walk.final.headers["location"] == "https://app.bff.test/done"
