"""/docs and /redoc in headless Chromium with the page's CSP on and every request that
leaves the gateway aborted (a clinic without internet): the operations render from the
assets the fastapi-offline package ships."""

from __future__ import annotations

import pytest

from tests.browser import DESKTOP, PHONE, chromium, offline
from tests.conftest import ARTIFACTS
from tests.integration.test_gateway_authz import LiveGateway

SHOTS = ARTIFACTS / "web"


@pytest.fixture(scope="module")
def gw(settings):
    with LiveGateway(settings) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def browser():
    SHOTS.mkdir(parents=True, exist_ok=True)
    with chromium() as b:
        yield b


@pytest.mark.parametrize("size", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_swagger_ui_renders_offline_under_the_csp(gw, browser, size):
    context = browser.new_context(viewport=size)
    blocked = offline(context, gw.url)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
    try:
        response = page.goto(gw.url + "/docs", wait_until="commit", timeout=120000)
        assert "default-src 'self'" in response.headers["content-security-policy"]
        page.locator(".opblock").first.wait_for(timeout=120000)
        operations = page.locator(".opblock").count()
        assert operations >= 30, operations
        assert page.locator(".opblock-summary-path", has_text="/api/sessions/upload").count() == 1
        page.screenshot(path=str(SHOTS / f"docs-swagger-{size['width']}.png"))
        assert not [p for p in problems if "Content Security Policy" in p or p.startswith("pageerror")], problems
        assert blocked == [], blocked
    finally:
        context.close()


def test_redoc_renders_offline_under_the_csp(gw, browser):
    context = browser.new_context(viewport=DESKTOP)
    blocked = offline(context, gw.url)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(gw.url + "/redoc", wait_until="commit", timeout=120000)
        page.locator("h2", has_text="Readiness: database and broker reachable").wait_for(timeout=120000)
        assert page.locator("h2").count() >= 30, "the operations render (ReDoc titles each with an h2)"
        page.screenshot(path=str(SHOTS / "docs-redoc-1440.png"))
        assert not errors, errors
        assert blocked == [], blocked
    finally:
        context.close()
