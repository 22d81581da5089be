"""Review and sign-off in the web page (services/gateway/web/review.js), in headless Chromium
against the whole running stack: a real recording is processed, then the therapist edits
the summary (version 2), confirms every risk flag, approves and signs (locked: the edit
form is gone and the API answers 409), adds an addendum, opens version 1 as it was, and
copies the notes for the EHR (plain text with the signature and the addendum, in the
clipboard and in a read-only text box). Screenshots: test-artifacts/web/review-*.png."""

from __future__ import annotations

from tests.conftest import DATA
from tests.e2e.conftest import DEMO
from tests.e2e.test_web_page import SHOTS, browser  # noqa: F401  (the Chromium fixture)

EDITED = "Reviewed summary: the client read a speech aloud; ok to file. okapiedit"
ADDENDUM = "Addendum after signing: client called, all well. narwhaladdendum"


def _processed_session(api) -> str:
    response = api.upload(DATA / "jfk.flac")
    assert response.status_code == 202, response.text
    sid = response.json()["id"]
    detail = api.wait(sid, lambda d: d["status"] in ("processed", "failed"), timeout_s=400)
    assert detail["status"] == "processed" and detail["extracted_notes"], (detail["status"], detail["notes_error"])
    return sid


def _version(review) -> int:
    return int(review.get_by_test_id("review-status").get_attribute("data-version"))


def test_edit_sign_addendum_versions_and_copy_for_ehr(pipeline, browser):  # noqa: F811
    api, _, _ = pipeline
    sid = _processed_session(api)
    context = browser.new_context(viewport={"width": 1366, "height": 1000})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=api.base_url)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(api.base_url + "/")
        page.get_by_test_id("login-email").fill(DEMO[0])
        page.get_by_test_id("login-password").fill(DEMO[1])
        page.get_by_test_id("login-submit").click()
        page.locator(f"[data-testid=session-item][data-session-id='{sid}']").get_by_test_id("session-link").click()
        review = page.get_by_test_id("notes-review")
        review.get_by_test_id("review-status").wait_for(timeout=30000)
        assert review.get_by_test_id("review-status").get_attribute("data-status") == "draft"
        assert _version(review) == 1
        page.screenshot(path=str(SHOTS / "review-1-draft.png"), full_page=True)

        # edit: every field is in the form; the summary changes -> version 2
        for field in ("topic_summary", "key_topics", "emotional_themes", "triggers", "follow_up_topics",
                      "unresolved_concerns", "session_mood", "mood_trajectory", "strategies", "action_items",
                      "significant_quotes", "therapist_notes", "patient_summary"):
            assert review.get_by_test_id(f"field-{field}").count() == 1, field
        review.get_by_test_id("review-edit").locator("summary").click()  # the form opens on demand
        original = review.get_by_test_id("field-topic_summary").input_value()
        review.get_by_test_id("field-topic_summary").fill(EDITED)
        review.get_by_test_id("review-save").click()
        page.wait_for_function("() => document.querySelector('[data-testid=review-status]').dataset.version === '2'",
                               timeout=15000)

        # every risk flag confirmed (each is a version), then approve and sign
        flags = review.locator("[data-testid=review-flag]").count()
        for expected in range(3, 3 + flags):
            review.locator("[data-testid=review-flag][data-review-status=unreviewed]").first \
                .get_by_test_id("flag-confirm").click()
            page.wait_for_function("v => document.querySelector('[data-testid=review-status]').dataset.version === v",
                                   arg=str(expected), timeout=15000)
        assert review.locator("[data-testid=review-flag][data-review-status=confirmed]").count() == flags
        signed_version = _version(review)
        assert review.get_by_test_id("review-sign").is_disabled()  # the attestation comes first
        review.get_by_test_id("sign-attest").check()
        review.get_by_test_id("review-sign").click()
        page.wait_for_function("() => document.querySelector('[data-testid=review-status]').dataset.status === 'signed'",
                               timeout=15000)
        assert "Signed by" in review.get_by_test_id("review-status").inner_text()
        assert review.get_by_test_id("review-form").count() == 0  # locked: no edit form
        locked = api.client.patch(f"/api/sessions/{sid}/notes", headers=api.headers,
                                  json={"base_version": signed_version, "notes": {"topic_summary": "x"}})
        assert locked.status_code == 409 and locked.json()["code"] == "signed"
        page.screenshot(path=str(SHOTS / "review-2-signed.png"), full_page=True)

        # addendum after signing
        review.get_by_test_id("addendum-text").fill(ADDENDUM)
        review.get_by_test_id("addendum-submit").click()
        review.get_by_test_id("addendum").first.wait_for(timeout=15000)
        assert ADDENDUM in review.get_by_test_id("addendum").first.inner_text()
        assert _version(review) == signed_version  # the signed version never changes

        # versions: all of them listed, version 1 shown as it was
        versions = review.get_by_test_id("review-version")
        assert versions.count() == signed_version
        review.locator("[data-testid=review-version][data-version='1']").get_by_test_id("version-view").click()
        review.get_by_test_id("version-notes").wait_for(timeout=15000)
        first = review.get_by_test_id("version-notes").inner_text()
        assert EDITED not in first and (not original or original.split()[0] in first)
        page.screenshot(path=str(SHOTS / "review-3-versions.png"), full_page=True)

        # copy for EHR: plain text with the edit, the signature and the addendum
        review.get_by_test_id("copy-ehr").click()
        page.wait_for_function("() => document.querySelector('[data-testid=ehr-text]').value.length > 0", timeout=15000)
        text = review.get_by_test_id("ehr-text").input_value()
        assert "okapiedit" in text and "Signed by" in text and "narwhaladdendum" in text and "**" not in text
        assert text.index("RISK FLAGS") < text.index("SUMMARY")
        assert page.evaluate("() => navigator.clipboard.readText()") == text
        page.screenshot(path=str(SHOTS / "review-4-ehr.png"), full_page=True)
        assert not errors, errors
    finally:
        page.screenshot(path=str(SHOTS / "review-99-last.png"), full_page=True)
        context.close()
