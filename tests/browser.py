"""Headless Chromium for the page tests: Debian's /usr/bin/chromium driven by Playwright
for Python (nothing downloaded), and axe-core from tools/axe (npm ci)."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
AXE = ROOT / "tools" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
SIZES = {"desktop": DESKTOP, "phone": PHONE}


@contextmanager
def chromium():
    if not CHROMIUM.exists():
        pytest.fail("headless Chromium is missing: install the Debian packages with "
                    "`apt-get install -y chromium chromium-driver` (make system-deps)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-background-networking", "--disable-extensions", "--disable-sync", "--no-first-run",
            "--mute-audio", "--autoplay-policy=no-user-gesture-required"])
        try:
            yield browser
        finally:
            browser.close()


def offline(context, base_url: str) -> list[str]:
    """Abort every request that does not go to ``base_url``; returns the aborted URLs."""
    blocked: list[str] = []

    def handle(route):
        if route.request.url.startswith(base_url):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    context.route("**/*", handle)
    return blocked


def axe_violations(page, *, impacts=("serious", "critical")) -> list[dict]:
    """axe-core's violations of the given impacts on the page as it is now (the page's
    context must be created with bypass_csp=True: axe is injected as a script)."""
    if not AXE.exists():
        pytest.fail("axe-core is missing: run `npm ci --prefix tools/axe` (make test does)")
    if not page.evaluate("() => !!window.axe"):
        page.add_script_tag(path=str(AXE))
    result = page.evaluate("""async () => {
        const r = await axe.run(document, { resultTypes: ['violations'] });
        return r.violations.map(v => ({ id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.slice(0, 5).map(n => n.target.join(' ')) }));
    }""")
    return [v for v in result if v["impact"] in impacts]


def no_horizontal_scroll(page) -> tuple[int, int]:
    """(scrollWidth, innerWidth) of the page."""
    return tuple(page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]"))
