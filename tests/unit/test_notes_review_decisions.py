"""The review decisions (services/gateway/notes_review.py) and the review-aware renderers
(BIRP, the EHR text, the PDF), without a database."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from datetime import datetime, timezone

import pytest

from shared.contracts.notes import ClinicalNotes
from services.gateway.notes_pdf import pdf_text, to_pdf
from services.gateway.notes_render import ReviewInfo, SessionMeta, render_birp, render_dap, render_soap
from services.gateway.notes_review import (
    FlagNotFound,
    ReviewConflict,
    ReviewInvalid,
    ReviewState,
    apply_edit,
    apply_flag_review,
    check_addendum,
    check_editable,
    check_regenerate,
    check_signable,
    digest,
    machine_supersedes,
    machine_version,
)
from services.gateway.notes_text import render_ehr

WHO, AT = uuid.uuid4(), datetime(2026, 11, 30, 21, 0, tzinfo=timezone.utc)
MACHINE = ClinicalNotes.model_validate({
    "topic_summary": "Work stress.", "key_topics": ["work"],
    "risk_flags": [
        {"category": "hopelessness", "severity": "moderate", "evidence": "what's the point", "start": 40.0, "source": "lexicon"},
        {"category": "self_harm", "severity": "high", "evidence": "I cut myself", "start": 30.0, "source": "both",
         "high_priority": True}],
}).model_dump(mode="json")


def test_the_machine_version_gives_every_flag_an_id_and_an_open_review():
    notes = machine_version(MACHINE)
    assert [f["flag_id"] for f in notes["risk_flags"]] == ["f1", "f2"]
    assert {f["review"]["status"] for f in notes["risk_flags"]} == {"unreviewed"}
    assert ClinicalNotes.model_validate(notes)  # still valid notes


def test_an_edit_records_exactly_the_fields_that_changed():
    current = machine_version(MACHINE)
    notes, changes = apply_edit(current, {"topic_summary": "Edited.", "key_topics": ["work"], "triggers": ["noise"]})
    assert changes == [{"field": "topic_summary"}, {"field": "triggers"}]
    assert notes["topic_summary"] == "Edited." and notes["risk_flags"] == current["risk_flags"]
    with pytest.raises(ReviewInvalid, match="changes nothing"):
        apply_edit(current, {"key_topics": ["work"]})
    with pytest.raises(ReviewInvalid, match="risk flags"):
        apply_edit(current, {"risk_flags": []})  # no flag can be edited away
    with pytest.raises(ReviewInvalid, match="unknown"):
        apply_edit(current, {"diagnosis": "x"})
    with pytest.raises(ReviewInvalid, match="topic_summary"):
        apply_edit(current, {"topic_summary": None})  # a clear 422, not a server error


def test_a_dismissed_flag_stays_with_who_when_and_why():
    current = machine_version(MACHINE)
    with pytest.raises(ReviewInvalid, match="reason"):
        apply_flag_review(current, "f1", "dismissed", "   ", None, WHO, "Dr A", AT)
    notes, changes = apply_flag_review(current, "f1", "dismissed", "an idiom", None, WHO, "Dr A", AT)
    flag = notes["risk_flags"][0]
    assert len(notes["risk_flags"]) == 2 and flag["evidence"] == "what's the point"
    assert flag["review"] == {"status": "dismissed", "reason": "an idiom", "by": str(WHO), "by_name": "Dr A",
                              "at": AT.isoformat()}
    assert changes == [{"field": "risk_flags", "flag_id": "f1", "detail": "dismissed"}]
    with pytest.raises(FlagNotFound):
        apply_flag_review(current, "f7", "confirmed", "", None, WHO, "Dr A", AT)


def test_confirming_with_another_severity_keeps_the_old_one():
    notes, changes = apply_flag_review(machine_version(MACHINE), "f1", "confirmed", "", "high", WHO, "Dr A", AT)
    flag = notes["risk_flags"][0]
    assert flag["severity"] == "high" and flag["high_priority"] is True and flag["review"]["severity_before"] == "moderate"
    assert changes[0]["detail"] == "confirmed, severity moderate -> high"


def test_stale_and_signed_edits_are_conflicts():
    check_editable(ReviewState(current_version=3), 3)
    with pytest.raises(ReviewConflict) as stale:
        check_editable(ReviewState(current_version=3), 2)
    assert stale.value.code == "stale_version"
    signed = ReviewState(current_version=3, signed_version=3, signed_by_name="Dr A", signed_at=AT)
    with pytest.raises(ReviewConflict) as locked:
        check_editable(signed, 3)
    assert locked.value.code == "signed" and "addendum" in locked.value.detail


def test_signing_waits_for_every_flag():
    notes = machine_version(MACHINE)
    with pytest.raises(ReviewConflict) as pending:
        check_signable(ReviewState(current_version=1), 1, notes)
    assert pending.value.code == "flags_unreviewed" and "f1, f2" in pending.value.detail
    for flag_id in ("f1", "f2"):
        notes, _ = apply_flag_review(notes, flag_id, "confirmed", "", None, WHO, "Dr A", AT)
    check_signable(ReviewState(current_version=3), 3, notes)


def test_regenerated_notes_never_silently_replace_human_work():
    new, old = digest({"a": 2}), digest({"a": 1})
    assert machine_supersedes(ReviewState(current_version=1), "machine", old, new)
    assert not machine_supersedes(ReviewState(current_version=1), "machine", new, new)  # nothing new
    assert not machine_supersedes(ReviewState(current_version=2), "edit", old, new)  # a human's version on top
    assert machine_supersedes(ReviewState(current_version=2, accept_machine_after=2), "edit", old, new)
    assert not machine_supersedes(ReviewState(current_version=3, accept_machine_after=2), "edit", old, new)
    assert not machine_supersedes(ReviewState(current_version=1, signed_version=1), "machine", old, new)
    assert check_regenerate(ReviewState(current_version=1), "machine", False) is False
    assert check_regenerate(ReviewState(current_version=2), "edit", True) is True
    with pytest.raises(ReviewConflict, match="discard_edits"):
        check_regenerate(ReviewState(current_version=2), "edit", False)
    with pytest.raises(ReviewConflict, match="signed"):
        check_regenerate(ReviewState(current_version=2, signed_version=2), "edit", True)


def test_addenda_only_after_signing():
    with pytest.raises(ReviewConflict, match="signed"):
        check_addendum(ReviewState(current_version=2), "text")
    assert check_addendum(ReviewState(current_version=2, signed_version=2), "  later note \n") == "later note"
    with pytest.raises(ReviewInvalid):
        check_addendum(ReviewState(current_version=2, signed_version=2), " ")


# --- renderers --------------------------------------------------------------------------------
def _reviewed():
    notes = machine_version(MACHINE)
    notes, _ = apply_flag_review(notes, "f1", "dismissed", "figure of speech", None, WHO, "Dr A", AT)
    notes, _ = apply_flag_review(notes, "f2", "confirmed", "", None, WHO, "Dr A", AT)
    review = ReviewInfo(version=3, status="signed", kind="flag_review", signed_by="Dr A", signed_at=AT,
                        addenda=[{"at": AT, "author": "Dr A", "text": "Called the next day."}])
    meta = SessionMeta(duration_s=60.0, review=review, flag_reviews=[f["review"] for f in notes["risk_flags"]])
    return ClinicalNotes.model_validate(notes), meta


def test_markdown_notes_show_dismissed_flags_apart_and_the_signature():
    notes, meta = _reviewed()
    for render in (render_soap, render_dap, render_birp):
        text = render(notes, meta)
        assert "1 flag(s), 1 high priority" in text  # the dismissed one is not counted as active
        assert text.index("I cut myself") < text.index("Dismissed by the clinician") < text.index("what's the point")
        assert "Dismissed by Dr A on 2026-11-30 21:00: figure of speech" in text
        assert "Signed by Dr A on 2026-11-30 21:00 UTC (version 3)" in text and "Called the next day." in text
    assert "## Review and signature" not in render_soap(notes, SessionMeta())  # unchanged without review facts


def test_the_ehr_text_is_plain():
    notes, meta = _reviewed()
    text = render_ehr(notes, meta)
    assert text.startswith("SESSION NOTES\n")
    assert text.index("RISK FLAGS") < text.index("HIGH PRIORITY - self harm") < text.index("SUMMARY")
    assert "Dismissed by Dr A" in text and "ADDENDA (after signing)" in text and "Called the next day." in text
    assert not any(mark in text for mark in ("**", "##", "_(", "\\", "<", ">"))
    control = ClinicalNotes(therapist_notes="line one\x07\nline *two*")
    assert "line one\nline *two*" in render_ehr(control)  # control characters gone, text kept as written


def test_pdf_text_is_drawable_and_escaped():
    assert pdf_text("a < b & c") == "a &lt; b &amp; c"
    assert pdf_text("café “quoted” – ok") == "café “quoted” – ok"  # Windows-1252 covers these
    assert pdf_text("Ωx 漢") == "?x ?" and pdf_text("ﬁne") == "fine"  # transliterated where Unicode allows


def test_the_pdf_puts_risk_flags_first_and_the_transcript_last():
    binary = shutil.which("pdftotext")
    assert binary, "pdftotext is missing: install poppler-utils (make system-deps)"
    notes, meta = _reviewed()
    pdf = to_pdf(notes, meta, [{"start": 1.0, "end": 2.0, "text": "Hello transcript line", "speaker": "SPEAKER_00",
                                "role": "THERAPIST"}], [{"label": "SPEAKER_00", "role": "THERAPIST"}])
    text = subprocess.run([binary, "-", "-"], input=pdf, capture_output=True, check=True, timeout=60).stdout.decode()
    assert text.index("RISK FLAGS") < text.index("I cut myself") < text.index("Clinical notes") < text.index("Transcript")
    assert text.index("Work stress.") < text.index("Hello transcript line")
    assert "Signed by Dr A" in text and "version 3" in text and "Called the next day." in text
