"""The API the therapist's web page needs, against real PostgreSQL (a gateway under uvicorn,
no broker: what it enqueues is read back from the outbox): patient edits, the session list's
search, filters, sort and risk/duration columns, the stalled flag, retry and cancel,
segment corrections with the original kept, export file names, speaker roles beyond two."""

from __future__ import annotations

import base64
import json
import re
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select, update

from shared.contracts.events import AudioRef, AudioUploaded
from shared.db.tables import audit_log, outbox, session_status, sessions
from shared.outbox import enqueue
from shared.shredding import open_payload, session_key
from tests.integration.test_gateway_authz import (
    LiveGateway,
    add_patient,
    add_session,
    add_status,
    add_therapist,
    status_payload,
)


@pytest.fixture(scope="module")
def gw(settings):
    with LiveGateway(settings, stalled_after_s=600.0) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def world(gw):
    me = gw.call(add_therapist(gw))
    other = gw.call(add_therapist(gw))
    jane = gw.call(add_patient(gw, me, "Jane Doe"))
    zed = gw.call(add_patient(gw, me, "Zed 100% Real_name"))
    done = gw.call(add_session(gw, me, jane, filename="week-one.wav"))
    client = gw.client(gw.token(me))
    yield {"me": me, "other": other, "jane": jane, "zed": zed, "done": done, "client": client,
           "stranger": gw.client(gw.token(other))}
    client.close()


async def _set(gw, session_id, **values):
    async with gw.state.session_factory() as db, db.begin():
        await db.execute(update(sessions).where(sessions.c.id == session_id).values(**values))


async def _age_status(gw, session_id, seconds: float):
    async with gw.state.session_factory() as db, db.begin():
        await db.execute(update(session_status).where(session_status.c.session_id == session_id).values(
            updated_at=datetime.now(timezone.utc) - timedelta(seconds=seconds)))


async def _outbox(gw, session_id, topic: str) -> list:
    async with gw.state.session_factory() as db:
        rows = await db.execute(select(outbox.c.payload).where(outbox.c.key == str(session_id), outbox.c.topic == topic)
                                .order_by(outbox.c.id))
        return [r.payload for r in rows]


async def _upload_event(gw, session_id, owner):
    """The audio.uploaded an upload would have enqueued (what a transcription re-drive sends again)."""
    event = AudioUploaded(session_id=session_id, owner_id=owner, audio=AudioRef(
        uri="file:///x", sha256="0" * 64, bytes=10, content_type="audio/wav", duration_s=9.0, filename="x.wav"))
    async with gw.state.session_factory() as db, db.begin():
        await enqueue(db, event, "gateway")


def _running(session_id, seq=1):
    return status_payload(session_id, seq, "transcribing", 22, stages={
        "transcription": {"state": "running", "fraction": 0.3, "message": "", "eta_s": 15, "error": None},
        "diarization": {"state": "pending", "fraction": 0, "message": "", "eta_s": None, "error": None},
        "join": {"state": "pending", "fraction": 0, "message": "", "eta_s": None, "error": None},
        "notes": {"state": "pending", "fraction": 0, "message": "", "eta_s": None, "error": None}}, eta_s=15)


def _stalled_session(gw, world, filename="stuck.wav"):
    sid = gw.call(add_session(gw, world["me"], world["zed"], finished=False, filename=filename))
    gw.call(add_status(gw, sid, _running(sid), owner_id=world["me"]))
    gw.call(_age_status(gw, sid, 1200))
    return sid


# --- patients -------------------------------------------------------------------------------------
def test_patient_rename_and_reference(gw, world):
    client, pid = world["client"], world["jane"]
    r = client.patch(f"/api/patients/{pid}", json={"display_name": "Jane Q. Doe", "external_ref": "MRN-7"})
    assert r.status_code == 200, r.text
    assert r.json()["display_name"] == "Jane Q. Doe" and r.json()["external_ref"] == "MRN-7"
    assert client.patch(f"/api/patients/{pid}", json={"external_ref": ""}).json()["external_ref"] is None
    assert client.get(f"/api/patients/{pid}").json()["display_name"] == "Jane Q. Doe"
    assert client.patch(f"/api/patients/{pid}", json={"display_name": ""}).status_code == 422
    assert client.patch(f"/api/patients/{pid}", json={"display_name": None}).status_code == 422
    assert world["stranger"].patch(f"/api/patients/{pid}", json={"display_name": "x"}).status_code == 404
    client.patch(f"/api/patients/{pid}", json={"display_name": "Jane Doe"})


# --- the session list -------------------------------------------------------------------------------
def test_list_items_carry_patient_duration_and_highest_risk(gw, world):
    items = world["client"].get("/api/sessions").json()["items"]
    done = next(i for i in items if i["id"] == str(world["done"]))
    assert done["patient_name"] == "Jane Doe"
    assert done["duration_seconds"] == 9.0
    assert done["max_risk_severity"] == "moderate" and done["risk_flag_count"] == 1
    assert done["status"] == "processed" and done["stalled"] is False


def test_list_search_filter_and_sort(gw, world):
    client, me = world["client"], world["me"]
    short = gw.call(add_session(gw, me, world["zed"], filename="short.wav"))
    gw.call(_set(gw, short, duration_s=3.0, session_date=datetime(2025, 1, 5, tzinfo=timezone.utc)))
    long = gw.call(add_session(gw, me, world["zed"], filename="long.wav"))
    gw.call(_set(gw, long, duration_s=3000.0, session_date=datetime(2025, 6, 5, tzinfo=timezone.utc)))

    by_name = client.get("/api/sessions", params={"q": "100%"}).json()["items"]
    assert {i["id"] for i in by_name} >= {str(short), str(long)}
    assert all(i["patient_name"] == "Zed 100% Real_name" for i in by_name)  # % is literal, not a wildcard
    assert [i["id"] for i in client.get("/api/sessions", params={"q": "week-ONE"}).json()["items"]] == [str(world["done"])]
    assert client.get("/api/sessions", params={"q": "_"}).json()["items"]  # "_" is literal too: Real_name
    assert client.get("/api/sessions", params={"q": "no such thing"}).json()["items"] == []

    zed = {"patient_id": str(world["zed"]), "status": "processed"}
    asc = client.get("/api/sessions", params={**zed, "sort": "duration", "order": "asc"}).json()["items"]
    assert [i["duration_seconds"] for i in asc] == sorted(i["duration_seconds"] for i in asc)
    assert asc[0]["id"] == str(short) and asc[-1]["id"] == str(long)
    by_date = client.get("/api/sessions", params={**zed, "sort": "date", "order": "asc"}).json()["items"]
    assert [i["id"] for i in by_date][:2] == [str(short), str(long)]

    # a non-default sort pages by offset, and the pages add up without repeats
    first = client.get("/api/sessions", params={**zed, "sort": "duration", "limit": 1}).json()
    assert first["items"][0]["id"] == str(long) and first["next_cursor"]
    second = client.get("/api/sessions", params={**zed, "sort": "duration", "limit": 1,
                                                 "cursor": first["next_cursor"]}).json()
    assert second["items"][0]["id"] != str(long)
    assert client.get("/api/sessions", params={"sort": "nonsense"}).status_code == 422
    bad = base64.urlsafe_b64encode(b"offset|x").decode()
    assert client.get("/api/sessions", params={"cursor": bad}).status_code == 422
    assert world["stranger"].get("/api/sessions", params={"q": "Zed"}).json()["items"] == []


# --- stalled, retry, cancel ---------------------------------------------------------------------------
def test_stalled_flag_in_detail_and_list(gw, world):
    client = world["client"]
    sid = _stalled_session(gw, world)
    detail = client.get(f"/api/sessions/{sid}").json()
    assert detail["stalled"] is True and detail["stalled_for_s"] >= 1100
    assert detail["estimated_time_remaining"] is None, "no 'about 15 s left' for a stuck session"
    assert detail["message"].startswith("Stalled")
    listed = next(i for i in client.get("/api/sessions").json()["items"] if i["id"] == str(sid))
    assert listed["stalled"] is True
    gw.call(_age_status(gw, sid, 30))
    assert client.get(f"/api/sessions/{sid}").json()["stalled"] is False
    assert client.get(f"/api/sessions/{world['done']}").json()["stalled"] is False


def test_retry_redrives_the_unfinished_stage(gw, world):
    client = world["client"]
    sid = _stalled_session(gw, world)
    gw.call(_upload_event(gw, sid, world["me"]))
    r = client.post(f"/api/sessions/{sid}:retry")
    assert r.status_code == 202, r.text
    assert r.json()["stage"] == "transcription" and r.json()["resent"] == 1
    sent = gw.call(_outbox(gw, sid, "audio.uploaded"))
    assert len(sent) == 2 and sent[0] == sent[1], "the same event again (consumers deduplicate it)"
    assert world["stranger"].post(f"/api/sessions/{sid}:retry").status_code == 404


def test_retry_refuses_what_cannot_be_retried(gw, world):
    client = world["client"]
    assert client.post(f"/api/sessions/{world['done']}:retry").status_code == 409
    failed = gw.call(add_session(gw, world["me"], finished=False, filename="bad.wav"))
    gw.call(add_status(gw, failed, status_payload(failed, 1, "failed", 10, error="Transcription failed: no speech", stages={
        "transcription": {"state": "failed", "fraction": 1, "message": "", "eta_s": None, "error": None}}),
        owner_id=world["me"]))
    r = client.post(f"/api/sessions/{failed}:retry")
    assert r.status_code == 409 and "Transcription failed" in r.json()["detail"]
    nothing = _stalled_session(gw, world, "no-events.wav")  # no outbox rows to send again
    r = client.post(f"/api/sessions/{nothing}:retry")
    assert r.status_code == 409 and "upload" in r.json()["detail"]


def test_retry_failed_notes_regenerates_with_the_corrections(gw, world):
    client = world["client"]
    sid = gw.call(add_session(gw, world["me"], world["jane"], filename="notes-failed.wav"))
    client.patch(f"/api/sessions/{sid}/speakers", json={"names": {"SPEAKER_01": "Sam"}, "roles": {"SPEAKER_01": "client"}})
    gw.call(add_status(gw, sid, status_payload(sid, 4, "processed", 100, stages={
        "transcription": {"state": "done", "fraction": 1, "message": "", "eta_s": None, "error": None},
        "notes": {"state": "failed", "fraction": 1, "message": "", "eta_s": None, "error": None}}),
        owner_id=world["me"]))
    r = client.post(f"/api/sessions/{sid}:retry")
    assert r.status_code == 202, r.text
    assert r.json()["stage"] == "notes"
    sealed = gw.call(_outbox(gw, sid, "notes.regenerate"))
    assert len(sealed) == 1 and "Sam" not in sealed[0], "names travel sealed"

    async def key():
        async with gw.state.session_factory() as db:
            return await session_key(db, sid)

    command = json.loads(open_payload(gw.call(key()), "notes.regenerate", sealed[0].encode()))
    assert command["speaker_names"] == {"SPEAKER_01": "Sam"} and command["speaker_roles"] == {"SPEAKER_01": "CLIENT"}


def test_cancel_sticks_until_retry(gw, world):
    client = world["client"]
    sid = _stalled_session(gw, world, "to-cancel.wav")
    gw.call(_upload_event(gw, sid, world["me"]))
    r = client.post(f"/api/sessions/{sid}:cancel", json={"reason": "Wrong recording"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled" and r.json()["error"] == "Wrong recording" and not r.json()["stalled"]
    # a stage finishing later does not overwrite it
    gw.call(add_status(gw, sid, status_payload(sid, 2, "processed", 100), owner_id=world["me"]))
    assert client.get(f"/api/sessions/{sid}").json()["status"] == "cancelled"
    cancelled = client.get("/api/sessions", params={"status": "cancelled"}).json()["items"]
    assert [i["id"] for i in cancelled] == [str(sid)] and cancelled[0]["cancel_reason"] == "Wrong recording"
    assert str(sid) not in {i["id"] for i in client.get("/api/sessions", params={"status": "processed"}).json()["items"]}
    assert client.post(f"/api/sessions/{world['done']}:cancel").status_code == 409
    assert world["stranger"].post(f"/api/sessions/{sid}:cancel").status_code == 404
    assert client.post(f"/api/sessions/{sid}:cancel", json={"reason": ""}).status_code == 422


# --- corrections ----------------------------------------------------------------------------------------
def test_segment_edit_keeps_the_original_and_is_audited(gw, world):
    client = world["client"]
    sid = gw.call(add_session(gw, world["me"], world["jane"], filename="edit.wav"))
    original = client.get(f"/api/sessions/{sid}").json()["transcript_segments"][1]["text"]
    r = client.patch(f"/api/sessions/{sid}/segments/1", json={"text": "It was hard, I felt hopeless."})
    assert r.status_code == 200, r.text
    seg = r.json()["transcript_segments"][1]
    assert seg["text"] == "It was hard, I felt hopeless." and seg["edited"] is True and seg["original_text"] == original
    assert r.json()["edited_segments"] == 1
    again = client.patch(f"/api/sessions/{sid}/segments/1", json={"text": "Second try."}).json()["transcript_segments"][1]
    assert again["original_text"] == original, "the recognised text survives repeated edits"
    txt = client.get(f"/api/sessions/{sid}/export/txt")
    assert "Second try." in txt.text and original not in txt.text

    async def actions():
        async with gw.state.session_factory() as db:
            return [r.action for r in await db.execute(
                select(audit_log.c.action).where(audit_log.c.session_id == sid, audit_log.c.action.like("segment.edit%")))]

    assert gw.call(actions()) == ["segment.edit:1", "segment.edit:1"]
    reverted = client.patch(f"/api/sessions/{sid}/segments/1", json={"text": original}).json()
    assert reverted["transcript_segments"][1]["text"] == original and reverted["edited_segments"] == 0
    assert client.patch(f"/api/sessions/{sid}/segments/99", json={"text": "x"}).status_code == 404
    assert client.patch(f"/api/sessions/{sid}/segments/0", json={"text": ""}).status_code == 422
    assert world["stranger"].patch(f"/api/sessions/{sid}/segments/0", json={"text": "x"}).status_code == 404


def test_speakers_take_names_and_any_role(gw, world):
    client = world["client"]
    sid = gw.call(add_session(gw, world["me"], world["jane"], filename="roles.wav"))
    r = client.patch(f"/api/sessions/{sid}/speakers", json={
        "names": {"SPEAKER_00": "Dr Rivera", "SPEAKER_01": "Sam", "SPEAKER_02": "Mum"},
        "roles": {"SPEAKER_00": "THERAPIST", "SPEAKER_01": "CLIENT", "SPEAKER_02": "parent"}})
    assert r.status_code == 200, r.text
    speakers = {s["label"]: s for s in r.json()["speakers"]}
    assert speakers["SPEAKER_00"]["display_name"] == "Dr Rivera" and speakers["SPEAKER_01"]["role"] == "CLIENT"
    assert "Dr Rivera: How was your week?" in r.json()["transcript_text"]
    assert "soap" in r.json()["exports"], "an answer the page renders as is lists the exports too"
    assert client.patch(f"/api/sessions/{sid}/speakers", json={"roles": {"SPEAKER_00": "<b>"}}).status_code == 422
    assert client.post(f"/api/sessions/{sid}/notes:regenerate", json={}).status_code == 202


# --- exports --------------------------------------------------------------------------------------------
def test_exports_are_named_patient_date_format(gw, world):
    client = world["client"]
    gw.call(_set(gw, world["done"], session_date=datetime(2026, 3, 2, 15, tzinfo=timezone.utc)))
    names = {}
    for fmt in ("soap", "txt", "notes.json", "docx"):
        r = client.get(f"/api/sessions/{world['done']}/export/{fmt}")
        assert r.status_code == 200, (fmt, r.text)
        names[fmt] = re.fullmatch(r'attachment; filename="([A-Za-z0-9._-]+)"', r.headers["content-disposition"]).group(1)
    assert names == {"soap": "Jane-Doe-2026-03-02-soap.md", "txt": "Jane-Doe-2026-03-02-txt.txt",
                     "notes.json": "Jane-Doe-2026-03-02-notes.json", "docx": "Jane-Doe-2026-03-02-docx.docx"}
    detail = client.get(f"/api/sessions/{world['done']}").json()
    assert set(detail["exports"]) == {"txt", "json", "srt", "vtt", "rttm", "notes.json", "soap", "dap", "birp", "ehr",
                                      "docx", "pdf"}
    assert detail["quality_warnings"] == []
    pending = gw.call(add_session(gw, world["me"], finished=False, filename="pending.wav"))
    assert client.get(f"/api/sessions/{pending}").json()["exports"] == [], "no buttons for exports that do not exist"


def test_docs_pages_load_local_assets_only(gw):
    with gw.client() as client:
        for path in ("/docs", "/redoc"):
            page = client.get(path)
            assert page.status_code == 200 and "script-src" not in page.headers["content-security-policy"]
            sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
            assert sources and all(s.startswith("/") for s in sources), sources
            for src in sources:
                assert client.get(src).status_code == 200, src
