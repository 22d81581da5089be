"""The web page (headless Chromium via Playwright, /usr/bin/chromium) against a live
gateway with a seeded, processed session: the audio element, the download links and the
status stream use signed links (never the access token in a URL), and "Sign out" ends
the sign-in on the server, links included."""

from __future__ import annotations

import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from tests.integration.test_gateway_authz import (
    PASSWORD,
    LiveGateway,
    add_patient,
    add_session,
    add_status,
    add_therapist,
    status_payload,
)

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail("headless Chromium is missing: `apt-get install -y chromium` (make system-deps)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--mute-audio"])
        try:
            yield browser
        finally:
            browser.close()


def _token_in(url: str) -> str:
    return parse_qs(urlparse(url).query)["token"][0]


def test_page_uses_signed_links_and_signs_out_on_the_server(settings, browser):
    with LiveGateway(settings) as gw:
        email = f"web-{uuid.uuid4().hex[:8]}@example.test"
        therapist = gw.call(add_therapist(gw, email))
        patient = gw.call(add_patient(gw, therapist, "Web Patient"))
        session_id = gw.call(add_session(gw, therapist, patient))
        running = gw.call(add_session(gw, therapist, patient, finished=False, filename="running.wav"))
        gw.call(add_status(gw, running, status_payload(running, 1, "transcribing", 30), owner_id=therapist))
        stream_urls: list[str] = []
        page = browser.new_context().new_page()
        page.on("request", lambda r: stream_urls.append(r.url) if "/status/stream" in r.url else None)
        page.goto(gw.url + "/")
        page.get_by_test_id("login-email").fill(email)
        page.get_by_test_id("login-password").fill(PASSWORD)
        page.get_by_test_id("login-submit").click()
        page.get_by_test_id("session-item").first.wait_for(timeout=15000)
        access = page.evaluate("() => sessionStorage.getItem('tb.token')")

        page.get_by_test_id("session-item").filter(has_text="secret-a.wav").first.get_by_test_id("session-link").click()
        page.wait_for_function("() => (document.querySelector('[data-testid=player]').getAttribute('src') || '')"
                               ".includes('token=')", timeout=15000)
        page.wait_for_function("() => document.querySelector('[data-testid=player]').readyState >= 1", timeout=15000)
        audio_url = page.get_by_test_id("player").get_attribute("src")
        assert _token_in(audio_url) != access
        page.get_by_test_id("export-srt").wait_for(timeout=15000)
        href = page.get_by_test_id("export-srt").get_attribute("href")
        assert href.startswith(f"/api/sessions/{session_id}/export/srt?token=") and _token_in(href) != access
        assert httpx.get(gw.url + href).status_code == 200

        page.go_back()  # the session is its own view: back to the list
        page.get_by_test_id("home-view").wait_for(state="visible", timeout=15000)
        with page.expect_request(lambda r: "/status/stream" in r.url, timeout=15000):
            page.get_by_test_id("session-item").filter(has_text="running.wav").first.get_by_test_id("session-link").click()
        assert stream_urls and all(_token_in(u) != access for u in stream_urls)

        page.get_by_test_id("logout").click()
        page.get_by_test_id("login-form").wait_for(timeout=15000)
        with gw.client(access) as client:
            for _ in range(50):  # the page sends the logout after clearing its own state
                if client.get("/api/auth/me").status_code == 401:
                    break
                page.wait_for_timeout(100)
            assert client.get("/api/auth/me").status_code == 401
        assert httpx.get(gw.url + href).status_code == 401
