"""The web page in headless Chromium (Debian's /usr/bin/chromium driven by Playwright for
Python; nothing is downloaded) against the whole running stack (pipeline fixture), at
1440x900 and 390x844.

One session is uploaded through the page (with a patient and a session date) and processed
once (module fixture); the tests then use it as a therapist would: the client chart (patients,
their sessions with date, duration, status and risk badge, search and sort), the session as
its own view (#/sessions/<id>, back to the list), the pinned player that follows the audio,
keyboard shortcuts on the one focusable transcript, corrections (speaker names and roles, a
line's text) and regenerated notes that use them, stalled and cancelled sessions, signed-out
and expired states, and axe-core on the sign-in, list and session views.
Screenshots: test-artifacts/web/*.png."""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest

from shared.db.engine import create_engine, create_session_factory
from shared.db.tables import session_status, sessions
from tests.browser import DESKTOP, PHONE, axe_violations, chromium, no_horizontal_scroll
from tests.conftest import ARTIFACTS, DATA
from tests.e2e.conftest import DEMO

SHOTS = ARTIFACTS / "web"
SIZES = pytest.mark.parametrize("size", [DESKTOP, PHONE], ids=["desktop", "phone"])
SESSION_DATE = "2026-03-02"
PATIENT = f"Chart Patient {uuid.uuid4().hex[:4]}"


class Browser:
    """New contexts wait up to 90 s by default: the machine is shared and often loaded."""

    def __init__(self, browser) -> None:
        self.browser = browser

    def new_context(self, **kw):
        context = self.browser.new_context(**kw)
        context.set_default_timeout(90000)
        return context


@pytest.fixture(scope="module")
def browser():
    SHOTS.mkdir(parents=True, exist_ok=True)
    with chromium() as b:
        yield Browser(b)


def sign_in(page, base_url: str) -> None:
    page.goto(base_url + "/")
    page.get_by_test_id("login-email").fill(DEMO[0])
    page.get_by_test_id("login-password").fill(DEMO[1])
    page.get_by_test_id("login-submit").click()
    page.get_by_test_id("home-view").wait_for(state="visible", timeout=90000)


def wait_played_from(page, start: float) -> None:
    """The player was sent to ``start`` (and may have played on a little since)."""
    page.wait_for_function("s => { const t = document.querySelector('[data-testid=player]').currentTime;"
                           " return t >= s - 0.3 && t <= s + 3; }", arg=start)


def shot(page, name: str, size: dict, full: bool = True) -> None:
    page.screenshot(path=str(SHOTS / f"{name}-{size['width']}.png"), full_page=full)


def assert_fits(page, where: str) -> None:
    width, inner = no_horizontal_scroll(page)
    assert width <= inner, f"{where}: the page is {width} px wide in a {inner} px window"


@pytest.fixture(scope="module")
def processed(pipeline, browser):
    """(session id, patient id): uploaded through the page with a patient and a date, processed."""
    api, _, _ = pipeline
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text))
    page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    try:
        sign_in(page, api.base_url)
        page.get_by_test_id("patient-name").fill(PATIENT)
        page.get_by_test_id("patient-create").click()
        page.wait_for_function("() => location.hash.startsWith('#/patients/')", timeout=90000)
        patient_id = page.evaluate("() => location.hash.split('/')[2]")
        assert page.get_by_test_id("upload-patient").evaluate("s => s.options[s.selectedIndex].text") == PATIENT
        assert page.get_by_test_id("upload-date").input_value() == datetime.now().date().isoformat(), "defaults to today"
        page.get_by_test_id("upload-date").fill(SESSION_DATE)
        page.get_by_test_id("upload-speakers").fill("2")
        page.get_by_test_id("upload-file").set_input_files(str(DATA / "pyannote_sample.wav"))
        page.wait_for_function("() => location.hash.startsWith('#/sessions/')", timeout=90000)
        session_id = page.get_by_test_id("session-view").get_attribute("data-session-id")
        assert page.evaluate("() => location.hash") == f"#/sessions/{session_id}"
        page.get_by_test_id("stage-bars").locator("[data-testid^=stage-]").first.wait_for(timeout=90000)
        page.wait_for_function(
            "() => ['processed','failed'].includes(document.getElementById('overall-bar').dataset.status)", timeout=400000)
        shot(page, "01-processed", DESKTOP)
        assert page.get_by_test_id("overall-progress").get_attribute("data-status") == "processed", \
            page.get_by_test_id("session-error").inner_text()
        detail = api.get(session_id)
        assert detail["session_date"].startswith(SESSION_DATE) and detail["patient_id"] == patient_id
        assert not [m for m in console if m.startswith("pageerror")], console
        yield session_id, patient_id
    finally:
        context.close()


# --- 6. signed out means signed out ---------------------------------------------------------------
@SIZES
def test_signed_out_renders_only_the_sign_in_form(pipeline, browser, size):
    api, _, _ = pipeline
    context = browser.new_context(viewport=size)
    page = context.new_page()
    try:
        page.goto(api.base_url + "/")
        page.get_by_test_id("login-form").wait_for()
        assert page.get_by_test_id("app-view").is_hidden()
        assert page.get_by_test_id("app-view").evaluate("n => n.inert && n.hidden")
        assert page.get_by_test_id("logout").is_hidden()
        for testid in ("patient-list", "upload-form", "session-list", "session-view"):
            assert page.get_by_test_id(testid).is_hidden(), testid
        reached = []
        for _ in range(10):  # Tab through the page: only the skip link and the sign-in form take focus
            page.keyboard.press("Tab")
            reached.append(page.evaluate("""() => { const a = document.activeElement;
                return a === document.body ? 'body' : a.closest('#login-view') ? 'login:' + (a.id || a.type)
                     : a.classList.contains('skip') ? 'skip' : 'OTHER:' + (a.id || a.tagName); }"""))
        assert not [r for r in reached if r.startswith("OTHER")], reached
        assert {"login:login-email", "login:login-password", "login:submit"} <= set(reached), reached
        assert_fits(page, "sign-in")
        shot(page, "00-sign-in", size)
    finally:
        context.close()


def test_expired_sign_in_returns_to_the_form_and_refresh_is_silent(pipeline, browser):
    api, _, _ = pipeline
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    try:
        sign_in(page, api.base_url)
        # an access token that no longer works, with a good refresh token: refreshed silently
        page.evaluate("() => sessionStorage.setItem('tb.token', 'expired.access.token')")
        page.reload()
        page.get_by_test_id("home-view").wait_for(state="visible", timeout=90000)
        assert page.get_by_test_id("flash").is_hidden()
        assert page.evaluate("() => sessionStorage.getItem('tb.token')") != "expired.access.token"
        # the sign-in ends (signed out elsewhere, or the refresh token expired): the next
        # request finds out, and the page returns to the form with a message
        token = page.evaluate("() => sessionStorage.getItem('tb.token')")
        assert api.client.post("/api/auth/logout", headers={"Authorization": f"Bearer {token}"}).status_code == 204
        page.get_by_test_id("session-search").fill("anything")
        page.get_by_test_id("login-form").wait_for(state="visible", timeout=90000)
        assert "expired" in page.get_by_test_id("flash").inner_text()
        assert page.get_by_test_id("app-view").is_hidden()
        assert page.evaluate("() => sessionStorage.getItem('tb.token')") is None
        shot(page, "00-expired", PHONE)
    finally:
        context.close()


# --- 1. the client chart -----------------------------------------------------------------------------
@SIZES
def test_client_chart_patients_sessions_search_and_sort(pipeline, browser, processed, size):
    api, _, _ = pipeline
    session_id, patient_id = processed
    detail = api.get(session_id)
    context = browser.new_context(viewport=size)
    page = context.new_page()
    try:
        sign_in(page, api.base_url)
        page.get_by_test_id("patient-search").fill(PATIENT[-6:])
        patients = page.get_by_test_id("patient-item")
        assert patients.count() == 1 and patients.first.inner_text() == PATIENT
        patients.first.get_by_role("link").click()
        page.wait_for_function("id => location.hash === '#/patients/' + id", arg=patient_id)
        assert PATIENT in page.get_by_test_id("sessions-title").inner_text()
        row = page.locator(f"[data-testid=session-item][data-session-id='{session_id}']")
        row.wait_for(timeout=90000)
        assert page.get_by_test_id("session-item").count() == 1
        assert "2026" in row.get_by_test_id("session-date").inner_text() and "2" in row.get_by_test_id("session-date").inner_text()
        assert row.get_by_test_id("session-duration").inner_text().endswith(("s", "min"))
        assert row.get_by_test_id("session-status").get_attribute("data-status") == "processed"
        badge = row.get_by_test_id("risk-badge").get_attribute("data-severity")
        highest = max((f["severity"] for f in detail["risk_flags"]), key=["low", "moderate", "high"].index, default=None)
        assert badge == (highest or "none")
        assert_fits(page, "patient's sessions")
        shot(page, "02-chart", size)

        # search and sort over every session
        page.get_by_test_id("patient-all").click()
        page.get_by_test_id("session-search").fill(PATIENT)
        page.wait_for_function("() => document.querySelectorAll('[data-testid=session-item]').length === 1")
        page.get_by_test_id("session-search").fill("no-such-recording-xyz")
        page.wait_for_function("() => document.querySelectorAll('[data-testid=session-item]').length === 0")
        assert page.get_by_test_id("sessions-count").inner_text() == "No sessions"
        page.get_by_test_id("session-search").fill("")
        page.get_by_test_id("session-sort").select_option("duration:asc")
        page.get_by_test_id("session-item").first.wait_for()
        page.wait_for_timeout(500)
        durations = [d["duration_seconds"] for d in api.client.get(
            "/api/sessions", params={"sort": "duration", "order": "asc", "limit": 50}, headers=api.headers).json()["items"]]
        shown = page.get_by_test_id("session-item").evaluate_all("rows => rows.map(r => r.dataset.sessionId)")
        listed = [i["id"] for i in api.client.get("/api/sessions", params={"sort": "duration", "order": "asc", "limit": 50},
                                                  headers=api.headers).json()["items"]]
        assert shown == listed and durations == sorted(durations)
        assert_fits(page, "all sessions")
    finally:
        context.close()


def test_patient_add_rename_delete(pipeline, browser):
    api, _, _ = pipeline
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    page.on("dialog", lambda d: d.accept())
    try:
        sign_in(page, api.base_url)
        name = f"Temp {uuid.uuid4().hex[:6]}"
        page.get_by_test_id("patient-name").fill(name)
        page.get_by_test_id("patient-create").click()
        page.wait_for_function("() => location.hash.startsWith('#/patients/')")
        page.get_by_test_id("patient-rename").click()
        page.get_by_test_id("patient-edit-name").fill(name + " Renamed")
        page.get_by_test_id("patient-edit-save").click()
        page.get_by_test_id("patient-item").filter(has_text=name + " Renamed").wait_for()
        pid = page.evaluate("() => location.hash.split('/')[2]")
        assert api.client.get(f"/api/patients/{pid}", headers=api.headers).json()["display_name"] == name + " Renamed"
        page.get_by_test_id("patient-delete").click()
        page.wait_for_function("() => location.hash === '#/'")
        assert api.client.get(f"/api/patients/{pid}", headers=api.headers).status_code == 404
        assert page.get_by_test_id("patient-item").filter(has_text=name).count() == 0
    finally:
        context.close()


# --- 3 and 4. the session view, the player that follows -------------------------------------------------
@SIZES
def test_session_view_route_player_and_keyboard(pipeline, browser, processed, size):
    api, _, _ = pipeline
    session_id, patient_id = processed
    context = browser.new_context(viewport=size)
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text))
    try:
        sign_in(page, api.base_url)
        page.goto(f"{api.base_url}/#/patients/{patient_id}")
        page.locator(f"[data-testid=session-item][data-session-id='{session_id}'] [data-testid=session-link]").click()
        page.wait_for_function("id => location.hash === '#/sessions/' + id", arg=session_id)
        assert page.get_by_test_id("home-view").is_hidden(), "a session is its own view"
        lines = page.get_by_test_id("transcript-line")
        lines.first.wait_for(timeout=90000)
        count = lines.count()
        assert count >= 2
        assert_fits(page, "session view")
        # the transcript is one Tab stop: nothing inside it is in the Tab order
        region = page.get_by_test_id("transcript-region")
        assert region.get_attribute("tabindex") == "0" and region.get_attribute("role") == "region"
        assert region.evaluate("""r => [...r.querySelectorAll('a,button,input,textarea,select,[tabindex]')]
            .filter(n => n.tabIndex >= 0).length""") == 0
        if size is PHONE:
            width = page.get_by_test_id("transcript-text").first.evaluate("n => n.getBoundingClientRect().width")
            assert width >= 250, f"the transcript text column is {width} px wide"
        # keyboard: Down selects the first line and plays from it, Down again the next
        region.focus()
        page.keyboard.press("ArrowDown")
        first = float(lines.nth(0).get_attribute("data-start"))
        wait_played_from(page, first)
        page.keyboard.press("ArrowDown")
        second = float(lines.nth(1).get_attribute("data-start"))
        wait_played_from(page, second)
        assert "selected" in lines.nth(1).get_attribute("class")
        assert page.get_by_test_id("line-announcer").inner_text().startswith("Line 2 of")
        page.wait_for_function("() => !document.querySelector('[data-testid=player]').paused", timeout=90000)
        page.keyboard.press(" ")
        page.wait_for_function("() => document.querySelector('[data-testid=player]').paused", timeout=90000)
        page.keyboard.press(" ")
        page.wait_for_function("() => !document.querySelector('[data-testid=player]').paused", timeout=90000)
        before = page.get_by_test_id("player").evaluate("a => a.currentTime")
        page.keyboard.press("ArrowRight")
        assert page.get_by_test_id("player").evaluate("a => a.currentTime") >= before + 4
        # while playing, the current line is highlighted and kept in view; the player stays pinned
        last = lines.nth(count - 1)
        page.get_by_test_id("player").evaluate("(a, t) => { a.currentTime = t; a.play(); }", float(last.get_attribute("data-start")))
        page.wait_for_function("() => document.querySelector('[data-testid=transcript-line].current')", timeout=90000)
        current = page.locator("[data-testid=transcript-line].current")
        assert current.get_attribute("aria-current") == "true"
        visible = region.evaluate("""r => { const c = r.querySelector('.current').getBoundingClientRect();
            const b = r.getBoundingClientRect(); return c.top >= b.top - 1 && c.bottom <= b.bottom + 1; }""")
        assert visible, "the line being played is scrolled into view"
        page.evaluate("() => window.scrollTo(0, document.body.scrollHeight)")
        top, bottom, height, scrolled, position = page.get_by_test_id("player-bar").evaluate(
            "n => { const r = n.getBoundingClientRect(); return [r.top, r.bottom, innerHeight, scrollY, getComputedStyle(n).position]; }")
        assert position == "sticky" and 0 <= top and bottom <= height, (top, bottom, height)
        if scrolled > 400:
            assert top <= 2, f"the player scrolled away (top {top} after scrolling {scrolled} px)"
        if size is PHONE:
            assert scrolled > 400, "the phone layout is one long column"
        shot(page, "03-session-playing", size, full=False)
        # F: the next risk flag (if the notes found any)
        flags = page.get_by_test_id("risk-flag").count()
        if flags:
            page.get_by_test_id("player").evaluate("a => { a.pause(); a.currentTime = 0; }")
            region.focus()
            page.keyboard.press("f")
            starts = [float(x) for x in page.get_by_test_id("risk-quote").evaluate_all("b => b.map(x => x.dataset.start)")]
            wait_played_from(page, next((x for x in sorted(starts) if x > 0.5), min(starts)))
        # back returns to the list
        page.go_back()
        page.get_by_test_id("home-view").wait_for(state="visible")
        assert page.get_by_test_id("session-view").is_hidden()
        page.wait_for_function("() => document.querySelector('[data-testid=player]').paused")
        # privacy: no transcript text in the console
        words = [w for w in api.get(session_id)["transcript_text"].split() if len(w) > 5][:5]
        assert not [m for m in console if any(w in m for w in words)], "transcript text in the console"
    finally:
        context.close()


def test_quality_warnings_render_and_seek(pipeline, browser, processed):
    """The field another service adds: each warning seeks the player (the API's answer is
    extended in the browser, as that service will fill it)."""
    api, _, _ = pipeline
    session_id, _ = processed
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()

    def add_warnings(route):
        response = route.fetch()
        body = response.json()
        body["quality_warnings"] = [{"kind": "low_snr", "severity": "warning", "start_s": 3.5, "end_s": 6.0,
                                     "message": "Noisy audio here"},
                                    {"kind": "language", "severity": "info", "start_s": None, "end_s": None,
                                     "message": "Mixed language"}]
        route.fulfill(response=response, json=body)

    context.route(f"**/api/sessions/{session_id}", add_warnings)
    try:
        sign_in(page, api.base_url)
        page.goto(f"{api.base_url}/#/sessions/{session_id}")
        box = page.get_by_test_id("quality-warnings")
        box.wait_for(state="visible", timeout=90000)
        assert page.get_by_test_id("quality-warning").count() == 2
        assert page.get_by_test_id("quality-seek").count() == 1
        page.get_by_test_id("quality-seek").click()
        wait_played_from(page, 3.5)
        assert page.get_by_test_id("notes-review").count() == 1
    finally:
        context.close()


# --- 2. corrections in place, regenerated notes ------------------------------------------------------------
@SIZES
def test_rename_speakers_set_roles_edit_a_line(pipeline, browser, processed, size):
    api, _, _ = pipeline
    session_id, _ = processed
    context = browser.new_context(viewport=size)
    page = context.new_page()
    try:
        sign_in(page, api.base_url)
        page.goto(f"{api.base_url}/#/sessions/{session_id}")
        page.get_by_test_id("transcript-line").first.wait_for(timeout=90000)
        page.get_by_test_id("speakers-editor").locator("summary").click()
        rows = page.get_by_test_id("speaker-row")
        assert rows.count() >= 1
        suffix = "A" if size is DESKTOP else "B"
        names = {0: f"Dr Rivera {suffix}", 1: f"Sam {suffix}"}
        for i in range(rows.count()):
            rows.nth(i).get_by_test_id("speaker-name").fill(names.get(i, f"Guest {i}"))
            rows.nth(i).get_by_test_id("speaker-role").select_option(["THERAPIST", "CLIENT", "OTHER"][min(i, 2)])
        page.get_by_test_id("speakers-save").click()
        page.get_by_test_id("speakers-status").filter(has_text="Saved").wait_for(timeout=90000)
        page.get_by_test_id("transcript-speaker").filter(has_text=names[0]).first.wait_for()
        speakers = {s["label"]: s for s in api.get(session_id)["speakers"]}
        assert speakers[rows.nth(0).get_attribute("data-label")]["display_name"] == names[0]
        assert speakers[rows.nth(0).get_attribute("data-label")]["role"] == "THERAPIST"

        # correct the text of a line, by keyboard: select it, E, type, Ctrl+Enter
        page.get_by_test_id("transcript-region").focus()
        page.keyboard.press("ArrowDown")
        page.keyboard.press("e")
        editor = page.get_by_test_id("edit-text")
        editor.wait_for()
        corrected = f"Corrected line {suffix} by the therapist."
        editor.fill(corrected)
        page.keyboard.press("Control+Enter")
        first = page.get_by_test_id("transcript-line").first
        first.filter(has_text=corrected).wait_for(timeout=90000)
        assert first.get_attribute("data-edited") == "true"
        segment = api.get(session_id)["transcript_segments"][0]
        assert segment["text"] == corrected and segment["original_text"] != corrected
        assert_fits(page, "corrections")
        shot(page, "04-corrected", size)
    finally:
        context.close()


def test_regenerate_notes_uses_names_and_roles(pipeline, browser, processed):
    api, _, _ = pipeline
    session_id, _ = processed
    api.client.patch(f"/api/sessions/{session_id}/speakers", headers=api.headers, json={
        "names": {s["label"]: n for s, n in zip(api.get(session_id)["speakers"], ["Dr Rivera", "Sam"])},
        "roles": {s["label"]: r for s, r in zip(api.get(session_id)["speakers"], ["THERAPIST", "CLIENT"])}})
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    try:
        sign_in(page, api.base_url)
        page.goto(f"{api.base_url}/#/sessions/{session_id}")
        page.get_by_test_id("notes").get_by_test_id("risk-flags").wait_for(timeout=90000)
        page.get_by_test_id("regenerate").click()
        page.wait_for_function(
            "() => document.querySelector('[data-testid=regenerate-status]').dataset.done !== undefined", timeout=300000)
        assert page.get_by_test_id("regenerate-status").inner_text() == "Notes regenerated."
        notes = api.get(session_id)["extracted_notes"]
        assert "not identified" not in (notes.get("therapist_notes") or "")
        assert "not identified" not in page.get_by_test_id("notes").inner_text()
        shot(page, "05-regenerated", DESKTOP)
    finally:
        context.close()


# --- 5. honest state: stalled, cancelled, failed ---------------------------------------------------------------
def _seed_stalled(settings, owner_id: str, filename: str) -> str:
    """A session stuck in transcription for 20 minutes, as a lost event leaves one."""
    sid = uuid.uuid4()

    async def seed():
        engine = create_engine(settings)
        try:
            async with create_session_factory(engine)() as db, db.begin():
                await db.execute(sessions.insert().values(
                    id=sid, therapist_id=uuid.UUID(owner_id), audio_uri="file:///missing", audio_filename=filename,
                    audio_bytes=10, audio_sha256="0" * 64, content_type="audio/wav", duration_s=1800.0, options={}))
                stage = {"state": "running", "fraction": 0.3, "message": "", "eta_s": 15, "error": None}
                pending = {"state": "pending", "fraction": 0, "message": "", "eta_s": None, "error": None}
                await db.execute(session_status.insert().values(
                    session_id=sid, owner_id=uuid.UUID(owner_id), status="transcribing", percent=22, seq=1,
                    message="Transcribing", eta_s=15, stages={"transcription": stage, "diarization": pending,
                                                               "join": pending, "notes": pending},
                    updated_at=datetime.now(timezone.utc) - timedelta(minutes=20)))
        finally:
            await engine.dispose()

    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API runs a loop in this thread
        pool.submit(asyncio.run, seed()).result()
    return str(sid)


@SIZES
def test_stalled_session_says_so_and_cancel_works(pipeline, browser, settings, size):
    api, _, _ = pipeline
    me = api.client.get("/api/auth/me", headers=api.headers).json()["id"]
    sid = _seed_stalled(settings, me, f"stuck-{size['width']}.wav")
    context = browser.new_context(viewport=size)
    page = context.new_page()
    page.on("dialog", lambda d: d.accept())
    try:
        sign_in(page, api.base_url)
        row = page.locator(f"[data-testid=session-item][data-session-id='{sid}']")
        row.wait_for(timeout=90000)
        assert row.get_by_test_id("session-status").get_attribute("data-status") == "stalled"
        row.get_by_test_id("session-link").click()
        stalled = page.get_by_test_id("stalled")
        stalled.wait_for(state="visible", timeout=90000)
        assert "No progress for 20 min" in stalled.inner_text()
        assert "left" not in page.get_by_test_id("status-line").inner_text(), "no time estimate for a stuck session"
        assert page.get_by_test_id("no-exports").is_visible(), "no export buttons before anything exists"
        assert page.locator("[data-testid^=export-]").count() == 0
        assert_fits(page, "stalled session")
        shot(page, "06-stalled", size)
        # Retry: nothing of this session is left to send again, and the page says so
        page.get_by_test_id("retry").click()
        page.get_by_test_id("session-error").filter(has_text="Retry not possible").wait_for(timeout=90000)
        # Cancel: the session says cancelled, and stays so
        page.get_by_test_id("cancel").click()
        page.get_by_test_id("session-error").filter(has_text="Cancelled").wait_for(timeout=90000)
        assert page.get_by_test_id("overall-progress").get_attribute("data-status") == "cancelled"
        assert page.get_by_test_id("stalled").is_hidden()
        assert page.get_by_test_id("retry").is_visible()
        assert api.get(sid)["status"] == "cancelled"
        shot(page, "07-cancelled", size)
    finally:
        context.close()


# --- 9. accessibility ------------------------------------------------------------------------------------------
@SIZES
def test_axe_finds_no_serious_or_critical_violations(pipeline, browser, processed, size):
    api, _, _ = pipeline
    session_id, patient_id = processed
    context = browser.new_context(viewport=size, bypass_csp=True)  # axe is injected as a script
    page = context.new_page()
    try:
        page.goto(api.base_url + "/")
        page.get_by_test_id("login-form").wait_for()
        found = {"sign-in": axe_violations(page)}
        sign_in(page, api.base_url)
        page.goto(f"{api.base_url}/#/patients/{patient_id}")
        page.get_by_test_id("session-item").first.wait_for(timeout=90000)
        found["list"] = axe_violations(page)
        page.goto(f"{api.base_url}/#/sessions/{session_id}")
        page.get_by_test_id("transcript-line").first.wait_for(timeout=90000)
        page.get_by_test_id("notes").get_by_test_id("risk-flags").wait_for(timeout=90000)
        page.get_by_test_id("speakers-editor").locator("summary").click()
        found["session"] = axe_violations(page)
        assert not any(found.values()), found
    finally:
        context.close()
