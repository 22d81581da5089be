"""The export route's decisions without a database: which formats are not ready (409),
which renderer each format gets, and the attachment's file name."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

import pytest

from services.gateway.routes.exports import EXPORT_TYPES, _not_ready, _render_text, attachment_name
from services.gateway.rttm import parse_rttm
from services.gateway.schemas import SessionDetail

SEGMENTS = [{"start": 0.0, "end": 2.0, "text": "Hello there.", "speaker": "SPEAKER_00", "role": "THERAPIST"},
            {"start": 2.5, "end": 4.0, "text": "Hi.", "speaker": "SPEAKER_01", "role": "CLIENT"}]
SPEAKERS = [{"label": "SPEAKER_00", "role": "THERAPIST"}, {"label": "SPEAKER_01", "role": "CLIENT"}]
TURNS = [{"start": 0.0, "end": 2.0, "speaker": "SPEAKER_00"}, {"start": 2.5, "end": 4.0, "speaker": "SPEAKER_01"}]


def detail(**fields) -> SessionDetail:
    return SessionDetail(id=uuid.uuid4(), therapist_id=uuid.uuid4(), created_at=datetime.now(timezone.utc),
                         status="processed", progress=100, duration_seconds=4.0, **fields)


def test_attachment_names():
    sid = uuid.uuid4()
    when = datetime(2026, 3, 2, 15, 0, tzinfo=timezone.utc)
    assert attachment_name(sid, "txt", "Jane Doe", when) == "Jane-Doe-2026-03-02-txt.txt"
    assert attachment_name(sid, "notes.json", "Jane Doe", when) == "Jane-Doe-2026-03-02-notes.json"
    assert attachment_name(sid, "soap", "Jane Doe", when) == "Jane-Doe-2026-03-02-soap.md"
    assert attachment_name(sid, "dap", "Zoë O'Brien / \"x\"\r\n", when) == "Zoe-O-Brien-x-2026-03-02-dap.md"
    assert attachment_name(sid, "docx", None, None) == f"session-{str(sid)[:8]}-undated-docx.docx"
    assert attachment_name(sid, "srt", "../..", when) == f"session-{str(sid)[:8]}-2026-03-02-srt.srt"
    assert attachment_name(sid, "birp", "Jane Doe", when) == "Jane-Doe-2026-03-02-birp.md"
    assert attachment_name(sid, "ehr", "Jane Doe", when) == "Jane-Doe-2026-03-02-ehr.txt"
    assert attachment_name(sid, "pdf", "Jane Doe", when) == "Jane-Doe-2026-03-02-pdf.pdf"


@pytest.mark.parametrize("fmt", sorted(EXPORT_TYPES))
def test_nothing_is_ready_for_a_fresh_session(fmt):
    assert _not_ready(fmt, detail()) is not None


def test_transcript_only_session():
    ready = detail(transcript_segments=SEGMENTS, speakers=SPEAKERS)
    assert [f for f in sorted(EXPORT_TYPES) if _not_ready(f, ready) is None] == ["docx", "json", "pdf", "srt", "txt", "vtt"]


def test_text_renderers_follow_the_format():
    ready = detail(transcript_segments=SEGMENTS, speakers=SPEAKERS, diarization={"turns": TURNS}, language="en")
    assert "THERAPIST" in _render_text("txt", ready) and "Hello there." in _render_text("txt", ready)
    assert json.loads(_render_text("json", ready))["session_id"] == str(ready.id)
    assert _render_text("srt", ready).startswith("1\n00:00:00,000 --> ")
    assert _render_text("vtt", ready).startswith("WEBVTT")
    turns = parse_rttm(_render_text("rttm", ready))[str(ready.id)]
    assert [(t.start, t.end, t.speaker) for t in turns] == [(0.0, 2.0, "SPEAKER_00"), (2.5, 4.0, "SPEAKER_01")]


def test_notes_renderers_follow_the_format():
    from shared.contracts.notes import ClinicalNotes

    notes = ClinicalNotes(key_topics=["sleep"], therapist_notes="Client reports poor sleep.").model_dump(mode="json")
    ready = detail(extracted_notes=notes, speakers=SPEAKERS, notes_engine={"backend": "offline"})
    assert [f for f in sorted(EXPORT_TYPES) if _not_ready(f, ready) is None] == [
        "birp", "dap", "docx", "ehr", "notes.json", "pdf", "soap"]
    assert json.loads(_render_text("notes.json", ready)) == notes
    soap, dap, birp = _render_text("soap", ready), _render_text("dap", ready), _render_text("birp", ready)
    assert "Subjective" in soap and "Data" in dap and "## I — Intervention" in birp and len({soap, dap, birp}) == 3
    ehr = _render_text("ehr", ready)
    assert "Client reports poor sleep." in ehr and "THERAPIST NOTE" in ehr and "**" not in ehr


def test_a_session_without_speech_exports_empty_but_valid_documents():
    silent = detail(transcript_segments=[], speakers=[], diarization={"turns": [], "speaker_count": 0}, language="en")
    ready = [f for f in sorted(EXPORT_TYPES) if _not_ready(f, silent) is None]
    assert ready == ["docx", "json", "pdf", "rttm", "srt", "txt", "vtt"]  # notes: 409 until notes exist
    assert _render_text("txt", silent) == "" and _render_text("srt", silent) == ""
    assert _render_text("vtt", silent).strip() == "WEBVTT"
    assert parse_rttm(_render_text("rttm", silent)) == {}
    document = json.loads(_render_text("json", silent))
    assert document["session_id"] == str(silent.id) and document["segments"] == []


def test_every_format_is_its_own_operation_with_its_content_type():
    from fastapi import FastAPI

    from services.gateway.routes import api_router

    app = FastAPI()
    app.include_router(api_router)
    paths = app.openapi()["paths"]
    for fmt, media_type in EXPORT_TYPES.items():
        operation = paths[f"/api/sessions/{{session_id}}/export/{fmt}"]["get"]
        assert operation["operationId"] == f"export_{fmt.replace('.', '_')}"
        assert list(operation["responses"]["200"]["content"]) == [media_type.split(";")[0]]
    body = paths["/api/sessions/upload"]["post"]["requestBody"]
    upload = body["content"]["multipart/form-data"]["schema"]
    assert "file" in upload["required"] and upload["properties"]["file"]["format"] == "binary"
