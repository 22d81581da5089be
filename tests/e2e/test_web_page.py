"""The web page in headless Chromium (Debian's /usr/bin/chromium driven by Playwright for
Python; nothing is downloaded) against the whole running stack (pipeline fixture).

Sign in as the demo therapist, add a patient, upload a real two-speaker recording, watch
the live progress reach 100 %, see the speaker-labelled transcript and the notes (risk
flags first), click a transcript line and check the <audio> player seeked to that line's
start and the line is highlighted; click a quote and check it seeks too. Nothing of the
transcript is written to the browser console. Screenshots: test-artifacts/web/*.png.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ARTIFACTS, DATA
from tests.e2e.conftest import DEMO

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = ARTIFACTS / "web"


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail("headless Chromium is missing: install the Debian packages with "
                    "`apt-get install -y chromium chromium-driver` (make system-deps)")
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-background-networking", "--disable-extensions", "--disable-sync", "--no-first-run",
            "--mute-audio", "--autoplay-policy=no-user-gesture-required"])
        try:
            yield browser
        finally:
            browser.close()


def test_sign_in_upload_progress_transcript_notes_and_seek(pipeline, browser):
    api, _, _ = pipeline
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda msg: console.append(msg.text))
    page.on("pageerror", lambda exc: console.append(f"pageerror: {exc}"))
    try:
        page.goto(api.base_url + "/")
        page.get_by_test_id("login-email").fill(DEMO[0])
        page.get_by_test_id("login-password").fill(DEMO[1])
        page.screenshot(path=str(SHOTS / "01-sign-in.png"))
        page.get_by_test_id("login-submit").click()
        page.get_by_test_id("session-list").wait_for(state="visible", timeout=15000)
        assert page.get_by_test_id("whoami").inner_text()

        page.get_by_test_id("patient-name").fill("Web Test Patient")
        page.get_by_test_id("patient-create").click()
        page.get_by_test_id("patient-item").filter(has_text="Web Test Patient").first.wait_for(timeout=10000)
        assert page.get_by_test_id("upload-patient").evaluate("s => s.options[s.selectedIndex].text") == "Web Test Patient"

        page.get_by_test_id("upload-speakers").fill("2")
        page.get_by_test_id("upload-file").set_input_files(str(DATA / "pyannote_sample.wav"))
        page.get_by_test_id("session-view").wait_for(state="visible", timeout=30000)
        session_id = page.get_by_test_id("session-view").get_attribute("data-session-id")
        assert session_id
        page.get_by_test_id("stage-bars").locator("[data-testid^=stage-]").first.wait_for(timeout=60000)
        page.screenshot(path=str(SHOTS / "02-progress.png"), full_page=True)

        bar = page.get_by_test_id("overall-progress")
        page.wait_for_function(
            "() => ['processed','failed'].includes(document.getElementById('overall-bar').dataset.status)",
            timeout=300000)
        page.screenshot(path=str(SHOTS / "03-finished.png"), full_page=True)
        assert bar.get_attribute("data-status") == "processed", page.get_by_test_id("session-error").inner_text()
        assert bar.get_attribute("aria-valuenow") == "100"
        assert page.get_by_test_id("overall-progress-text").inner_text() == "100 %"

        # speaker-labelled transcript
        lines = page.get_by_test_id("transcript-line")
        lines.first.wait_for(timeout=30000)
        count = lines.count()
        assert count >= 2
        speakers = {lines.nth(i).get_attribute("data-speaker") for i in range(count)}
        labels = {lines.nth(i).get_by_test_id("transcript-speaker").inner_text() for i in range(count)}
        assert all(labels), labels
        assert all(l in ("THERAPIST", "CLIENT") or l.startswith("SPEAKER_") or l == "Unknown" for l in labels), labels
        diarized = api.get(session_id)["diarized"]
        if diarized:
            assert len(speakers) >= 2, speakers
            assert page.get_by_test_id("speaker-chip").count() >= 2

        # notes, risk flags first
        notes = page.get_by_test_id("notes")
        notes.get_by_test_id("risk-flags").wait_for(timeout=30000)
        first_section = notes.locator(":scope > *").first
        assert first_section.get_attribute("data-testid") == "risk-flags"
        assert "Mood:" in page.get_by_test_id("notes-mood").inner_text()
        high = notes.locator("[data-testid=risk-flag][data-severity=high]")
        if high.count():
            assert "high" in high.first.get_attribute("class")

        # click a line: the player seeks to its start and the line is highlighted
        target = lines.nth(min(2, count - 1))
        start = float(target.get_attribute("data-start"))
        assert start > 0
        target.click()
        page.wait_for_function(
            "s => Math.abs(document.querySelector('[data-testid=player]').currentTime - s) < 0.5", arg=start,
            timeout=15000)
        page.wait_for_function("() => !!document.querySelector('[data-testid=transcript-line].current')", timeout=10000)
        player_time = page.get_by_test_id("player").evaluate("a => a.currentTime")  # before the screenshot: it plays on
        page.screenshot(path=str(SHOTS / "04-seek.png"), full_page=True)
        assert abs(player_time - start) < 1.0

        # quotes seek too
        quotes = page.locator("[data-testid=quote], [data-testid=risk-quote]")
        if quotes.count():
            page.get_by_test_id("player").evaluate("a => { a.pause(); a.currentTime = 0; }")
            q_start = float(quotes.first.get_attribute("data-start"))
            quotes.first.click()
            page.wait_for_function(
                "s => Math.abs(document.querySelector('[data-testid=player]').currentTime - s) < 0.5",
                arg=q_start, timeout=15000)

        # export links carry the token and work
        href = page.get_by_test_id("export-srt").get_attribute("href")
        assert href.startswith(f"/api/sessions/{session_id}/export/srt?token=")
        srt = page.request.get(api.base_url + href)
        assert srt.status == 200 and "-->" in srt.text()

        # privacy: no transcript text in the console
        words = [w for w in lines.first.locator(".text").inner_text().split() if len(w) > 4][:3]
        for message in console:
            assert not any(w in message for w in words), "transcript text in the console"
        assert not [m for m in console if m.startswith("pageerror")], console
    finally:
        page.screenshot(path=str(SHOTS / "99-last.png"), full_page=True)
        context.close()
