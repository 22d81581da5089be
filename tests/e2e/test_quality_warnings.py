"""Transcript quality warnings through the whole running pipeline, the API and the page.

A real recording (jfk.flac, 11 s) with 40 s of near-silence inserted after it and the same
speech again: the session must come out with a long_silence warning whose span is that
gap, counted in the session list; the web page lists it in data-testid="quality-warnings"
and its button seeks the player to the span's start. The clean recording alone gets no
warning.
"""

from __future__ import annotations

import numpy as np
import pytest

from shared.audio import SAMPLE_RATE, decode_audio
from tests.audio_gen import write_wav
from tests.conftest import DATA
from tests.e2e.conftest import DEMO
from tests.e2e.test_web_page import SHOTS, browser  # noqa: F401  (the Chromium fixture)

GAP_S = 40.0


def _processed(detail: dict) -> bool:
    return detail["status"] in ("processed", "failed")


@pytest.fixture(scope="module")
def silence_session(pipeline, tmp_path_factory):
    api, _, _ = pipeline
    speech = decode_audio(DATA / "jfk.flac")
    noise = np.random.default_rng(0).standard_normal(int(GAP_S * SAMPLE_RATE)).astype(np.float32) * 1e-3
    path = tmp_path_factory.mktemp("quality") / "jfk-with-gap.wav"
    write_wav(path, np.concatenate([speech, noise, speech]))
    response = api.upload(path, num_speakers="1")
    assert response.status_code == 202, response.text
    session_id = response.json()["id"]
    detail = api.wait(session_id, _processed, timeout_s=400)
    assert detail["status"] == "processed", detail.get("error")
    return session_id, detail, len(speech) / SAMPLE_RATE


def test_an_inserted_silence_is_a_long_silence_warning_with_its_span(pipeline, silence_session):
    api, _, _ = pipeline
    session_id, detail, speech_s = silence_session
    silences = [w for w in detail["quality_warnings"] if w["kind"] == "long_silence"]
    assert len(silences) == 1, detail["quality_warnings"]
    w = silences[0]
    assert set(w) == {"kind", "severity", "start_s", "end_s", "message"}
    assert w["severity"] == "info"
    # The gap runs from the last word of the first copy to the first word of the second.
    assert speech_s - 2.5 <= w["start_s"] <= speech_s + 0.5, w
    assert speech_s + GAP_S - 0.5 <= w["end_s"] <= speech_s + GAP_S + 2.5, w
    assert "fellow" not in w["message"].lower() and "country" not in w["message"].lower()
    items = api.client.get("/api/sessions?limit=50", headers=api.headers).json()["items"]
    [item] = [i for i in items if i["id"] == session_id]
    assert item["quality_warning_count"] == len(detail["quality_warnings"]) >= 1


def test_the_clean_recording_alone_has_no_quality_warnings(pipeline):
    api, _, _ = pipeline
    response = api.upload(DATA / "jfk.flac", num_speakers="1")
    assert response.status_code == 202, response.text
    detail = api.wait(response.json()["id"], _processed, timeout_s=400)
    assert detail["status"] == "processed", detail.get("error")
    assert detail["quality_warnings"] == []


def test_the_page_lists_the_warning_and_its_button_seeks(pipeline, browser, silence_session):  # noqa: F811
    api, _, _ = pipeline
    session_id, detail, _ = silence_session
    [warning] = [w for w in detail["quality_warnings"] if w["kind"] == "long_silence"]
    page = browser.new_context(viewport={"width": 1366, "height": 900}).new_page()
    try:
        page.goto(api.base_url + "/")
        page.get_by_test_id("login-email").fill(DEMO[0])
        page.get_by_test_id("login-password").fill(DEMO[1])
        page.get_by_test_id("login-submit").click()
        item = page.locator(f"[data-testid=session-item][data-session-id='{session_id}']")
        item.wait_for(timeout=15000)
        assert "to review" in item.inner_text()
        item.get_by_test_id("session-link").click()
        shown = page.get_by_test_id("quality-warnings").locator("[data-testid=quality-warning][data-kind=long_silence]")
        shown.wait_for(timeout=30000)
        assert shown.get_attribute("data-severity") == "info"
        button = shown.get_by_test_id("quality-seek")
        assert float(button.get_attribute("data-start")) == warning["start_s"]
        button.click()
        page.wait_for_function(
            "s => Math.abs(document.querySelector('[data-testid=player]').currentTime - s) < 0.5",
            arg=warning["start_s"], timeout=15000)
        page.screenshot(path=str(SHOTS / "quality-warnings.png"), full_page=True)
    finally:
        page.close()
