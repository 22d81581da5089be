"""Review and sign-off of notes through the API, against real PostgreSQL (gateway under
uvicorn, with_broker=False): version 1 is the machine's, every edit and flag review makes
the next version (who, when, what changed), a stale base version gets 409, signing locks
the notes (edits and regeneration: 409 with a reason), addenda follow the signature, the
notes.signed event is in the outbox, exports (BIRP, EHR text, PDF via pdftotext) show the
current version, another therapist gets 404, and deleting the session leaves no version,
addendum or review row behind (docs/adr/0008-notes-review-and-sign-off.md)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from sqlalchemy import func, select, text

from shared.db.tables import note_addenda, note_reviews, note_versions, session_results
from tests.integration.test_gateway_authz import SECRET_TEXT, LiveGateway, add_patient, add_session, add_therapist

EDITED_SUMMARY = "Client described a hard week at work; slept poorly; ate breakfast with family. quetzalreview"
ADDENDUM = "Phoned the client the next day: safe, plan in place. marmosetaddendum"


@pytest.fixture(scope="module")
def gw(settings):
    with LiveGateway(settings) as gateway:
        gateway.owner = gateway.call(add_therapist(gateway))
        gateway.other = gateway.call(add_therapist(gateway))
        gateway.patient = gateway.call(add_patient(gateway, gateway.owner, "Review Patient"))
        yield gateway


def _client(gw, therapist):
    return gw.client(gw.token(therapist))


def _new_session(gw):
    return gw.call(add_session(gw, gw.owner, gw.patient))


def _count(gw, table, session_id) -> int:
    async def count():
        async with gw.state.session_factory() as db:
            return (await db.execute(select(func.count()).select_from(table).where(table.c.session_id == session_id))).scalar()

    return gw.call(count())


def test_machine_version_edit_flag_review_sign_lock_addendum(gw):
    sid = _new_session(gw)
    with _client(gw, gw.owner) as client:
        review = client.get(f"/api/sessions/{sid}/notes/review").json()
        assert review["current_version"] == 1 and review["status"] == "draft"
        assert [v["kind"] for v in review["versions"]] == ["machine"] and review["versions"][0]["author_id"] is None
        [flag] = review["notes"]["risk_flags"]
        assert flag["flag_id"] == "f1" and flag["review"]["status"] == "unreviewed"
        assert review["unreviewed_flags"] == ["f1"]

        # edit two fields: version 2, by the owner, listing exactly what changed
        edited = client.patch(f"/api/sessions/{sid}/notes", json={"base_version": 1, "notes": {
            "topic_summary": EDITED_SUMMARY, "action_items": [{"task": "Sleep diary", "category": "tracking"}],
            "key_topics": review["notes"]["key_topics"]}})
        assert edited.status_code == 200, edited.text
        body = edited.json()
        assert body["current_version"] == 2 and body["notes"]["topic_summary"] == EDITED_SUMMARY
        v2 = body["versions"][-1]
        assert v2["kind"] == "edit" and v2["author_id"] == str(gw.owner) and v2["base_version"] == 1
        assert [c["field"] for c in v2["changes"]] == ["topic_summary", "action_items"]  # key_topics unchanged

        # the same base again is stale: 409, nothing written
        stale = client.patch(f"/api/sessions/{sid}/notes", json={"base_version": 1, "notes": {"triggers": ["noise"]}})
        assert stale.status_code == 409 and stale.json()["code"] == "stale_version", stale.text
        assert "current version (2)" in stale.json()["detail"]

        # risk flags: no deleting through an edit; dismissing needs a reason; the flag stays, marked
        assert client.patch(f"/api/sessions/{sid}/notes", json={"base_version": 2, "notes": {"risk_flags": []}}).status_code == 422
        for bad in ({"topic_summary": None}, {"key_topics": ["a\u0000b"]}, {"diagnosis": "x"}):
            refused = client.patch(f"/api/sessions/{sid}/notes", json={"base_version": 2, "notes": bad})
            assert refused.status_code == 422 and refused.json()["detail"], (bad, refused.text)
        no_reason = client.post(f"/api/sessions/{sid}/notes/flags/f1/review",
                                json={"base_version": 2, "decision": "dismissed", "reason": "  "})
        assert no_reason.status_code == 422 and "reason" in no_reason.json()["detail"]
        assert client.post(f"/api/sessions/{sid}/notes/flags/f9/review",
                           json={"base_version": 2, "decision": "confirmed"}).status_code == 404
        # signing waits for every flag to be reviewed
        early = client.post(f"/api/sessions/{sid}/notes:sign", json={"base_version": 2})
        assert early.status_code == 409 and early.json()["code"] == "flags_unreviewed"
        dismissed = client.post(f"/api/sessions/{sid}/notes/flags/f1/review",
                                json={"base_version": 2, "decision": "dismissed", "reason": "figure of speech"})
        assert dismissed.status_code == 200, dismissed.text
        flag = dismissed.json()["notes"]["risk_flags"][0]
        assert flag["review"]["status"] == "dismissed" and flag["review"]["reason"] == "figure of speech"
        assert flag["review"]["by"] == str(gw.owner) and flag["review"]["at"] and flag["evidence"] == "I felt hopeless"
        # changed my mind: confirmed, as high
        confirmed = client.post(f"/api/sessions/{sid}/notes/flags/f1/review",
                                json={"base_version": 3, "decision": "confirmed", "severity": "high"}).json()
        assert confirmed["current_version"] == 4
        assert confirmed["notes"]["risk_flags"][0]["severity"] == "high"
        assert confirmed["notes"]["risk_flags"][0]["review"]["severity_before"] == "moderate"

        # approve and sign: locked
        signed = client.post(f"/api/sessions/{sid}/notes:sign", json={"base_version": 4})
        assert signed.status_code == 200, signed.text
        assert signed.json()["status"] == "signed" and signed.json()["signature"]["version"] == 4
        assert signed.json()["signature"]["signed_by"] == str(gw.owner)
        locked = client.patch(f"/api/sessions/{sid}/notes", json={"base_version": 4, "notes": {"triggers": ["noise"]}})
        assert locked.status_code == 409 and locked.json()["code"] == "signed" and "addendum" in locked.json()["detail"]
        assert client.post(f"/api/sessions/{sid}/notes/flags/f1/review",
                           json={"base_version": 4, "decision": "dismissed", "reason": "x"}).status_code == 409
        assert client.post(f"/api/sessions/{sid}/notes:sign", json={"base_version": 4}).status_code == 409
        regenerate = client.post(f"/api/sessions/{sid}/notes:regenerate", json={"discard_edits": True})
        assert regenerate.status_code == 409 and regenerate.json()["code"] == "signed"

        # addenda after signing, appended; the signed version never changes
        added = client.post(f"/api/sessions/{sid}/notes/addenda", json={"text": ADDENDUM})
        assert added.status_code == 201 and added.json()["author_id"] == str(gw.owner)
        after = client.get(f"/api/sessions/{sid}/notes/review").json()
        assert [a["text"] for a in after["addenda"]] == [ADDENDUM] and after["current_version"] == 4
        versions = client.get(f"/api/sessions/{sid}/notes/versions").json()
        assert [v["version"] for v in versions] == [1, 2, 3, 4]
        assert [v["kind"] for v in versions] == ["machine", "edit", "flag_review", "flag_review"]
        v1 = client.get(f"/api/sessions/{sid}/notes/versions/1").json()
        assert v1["notes"]["topic_summary"] == f"Talked about {SECRET_TEXT}." and v1["engine"] == {"backend": "offline"}
        assert client.get(f"/api/sessions/{sid}/notes/versions/9").status_code == 404
        # the session view shows the current (signed) version
        detail = client.get(f"/api/sessions/{sid}").json()
        assert detail["extracted_notes"]["topic_summary"] == EDITED_SUMMARY

    async def signed_event():
        async with gw.state.session_factory() as db:
            rows = (await db.execute(text("SELECT payload FROM outbox WHERE key = :k AND topic = 'notes.signed'"),
                                     {"k": str(sid)})).all()
            return [json.loads(r.payload) for r in rows]

    [event] = gw.call(signed_event())
    assert event["version"] == 4 and event["signed_by"] == str(gw.owner) and "sealed" not in event


def test_addendum_before_signing_is_refused(gw):
    sid = _new_session(gw)
    with _client(gw, gw.owner) as client:
        response = client.post(f"/api/sessions/{sid}/notes/addenda", json={"text": "too early"})
        assert response.status_code == 409 and response.json()["code"] == "not_signed"
        assert client.post(f"/api/sessions/{sid}/notes/addenda", json={"text": ""}).status_code == 422


def test_regeneration_keeps_human_work(gw):
    """Regenerating after a human edit is refused without discard_edits; with it, the new
    machine notes become the next version on top, the human's version stays in the history."""
    sid = _new_session(gw)
    with _client(gw, gw.owner) as client:
        assert client.post(f"/api/sessions/{sid}/notes:regenerate", json={}).status_code == 202  # machine version only
        client.patch(f"/api/sessions/{sid}/notes", json={"base_version": 1, "notes": {"topic_summary": EDITED_SUMMARY}})
        refused = client.post(f"/api/sessions/{sid}/notes:regenerate", json={})
        assert refused.status_code == 409 and refused.json()["code"] == "human_edits"

        # regenerated notes arrive without consent: not applied, reported as pending
        gw.call(_set_machine_summary(gw, sid, "Regenerated summary one."))
        review = client.get(f"/api/sessions/{sid}/notes/review").json()
        assert review["current_version"] == 2 and review["machine_update_pending"] is True
        assert review["notes"]["topic_summary"] == EDITED_SUMMARY

        assert client.post(f"/api/sessions/{sid}/notes:regenerate", json={"discard_edits": True}).status_code == 202
        gw.call(_set_machine_summary(gw, sid, "Regenerated summary two."))
        review = client.get(f"/api/sessions/{sid}/notes/review").json()
        assert review["current_version"] == 3 and review["notes"]["topic_summary"] == "Regenerated summary two."
        assert review["versions"][-1]["kind"] == "machine" and review["machine_update_pending"] is False
        v2 = client.get(f"/api/sessions/{sid}/notes/versions/2").json()
        assert v2["notes"]["topic_summary"] == EDITED_SUMMARY  # the human's work is kept


async def _set_machine_summary(gw, session_id, summary: str) -> None:
    """What the progress service does when regenerated notes arrive."""
    async with gw.state.session_factory() as db, db.begin():
        notes = (await db.execute(select(session_results.c.notes).where(session_results.c.session_id == session_id))).scalar()
        await db.execute(session_results.update().where(session_results.c.session_id == session_id)
                         .values(notes={**notes, "topic_summary": summary}))


def test_another_therapist_gets_404_everywhere(gw):
    sid = _new_session(gw)
    with _client(gw, gw.other) as client:
        calls = [("GET", "notes/review", None), ("GET", "notes/versions", None), ("GET", "notes/versions/1", None),
                 ("PATCH", "notes", {"base_version": 1, "notes": {"triggers": ["x"]}}),
                 ("POST", "notes/flags/f1/review", {"base_version": 1, "decision": "confirmed"}),
                 ("POST", "notes:sign", {"base_version": 1}), ("POST", "notes/addenda", {"text": "x"}),
                 ("GET", "export/ehr", None), ("GET", "export/pdf", None), ("GET", "export/birp", None)]
        for method, path, body in calls:
            response = client.request(method, f"/api/sessions/{sid}/{path}", json=body)
            assert response.status_code == 404, (method, path, response.status_code)
            assert SECRET_TEXT not in response.text
    assert _count(gw, note_versions, sid) == 0  # nothing the stranger did made a version


def test_exports_show_the_current_version_review_and_addenda(gw):
    sid = _new_session(gw)
    with _client(gw, gw.owner) as client:
        client.patch(f"/api/sessions/{sid}/notes", json={"base_version": 1, "notes": {"topic_summary": EDITED_SUMMARY}})
        client.post(f"/api/sessions/{sid}/notes/flags/f1/review",
                    json={"base_version": 2, "decision": "dismissed", "reason": "figure of speech"})
        client.post(f"/api/sessions/{sid}/notes:sign", json={"base_version": 3})
        client.post(f"/api/sessions/{sid}/notes/addenda", json={"text": ADDENDUM})

        birp = client.get(f"/api/sessions/{sid}/export/birp")
        assert birp.status_code == 200 and birp.headers["content-type"].startswith("text/markdown")
        for heading in ("(BIRP)", "## B — Behavior", "## I — Intervention", "## R — Response", "## P — Plan"):
            assert heading in birp.text
        assert birp.text.index("## Risk flags") < birp.text.index("Dismissed by the clinician") < birp.text.index("## B — Behavior")
        assert "quetzalreview" in birp.text and "marmosetaddendum" in birp.text and "version 3" in birp.text

        ehr = client.get(f"/api/sessions/{sid}/export/ehr")
        assert ehr.status_code == 200 and ehr.headers["content-type"].startswith("text/plain")
        assert ehr.headers["content-disposition"].endswith('-ehr.txt"')  # <patient>-<date>-ehr.txt
        plain = ehr.text
        assert not any(mark in plain for mark in ("**", "## ", "_(", "\\")), "markdown in the EHR text"
        assert plain.index("RISK FLAGS") < plain.index("SUMMARY") < plain.index("ADDENDA")
        assert "Dismissed by" in plain and "figure of speech" in plain and "I felt hopeless" in plain
        assert "Signed by Test Therapist" in plain and "(version 3)" in plain and "marmosetaddendum" in plain
        assert "quetzalreview" in plain

        pdf = client.get(f"/api/sessions/{sid}/export/pdf")
        assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
        assert pdf.content.startswith(b"%PDF-")
        text_of_pdf = pdftotext(pdf.content)
        assert text_of_pdf.index("RISK FLAGS") < text_of_pdf.index("Clinical notes") < text_of_pdf.index("Transcript")
        assert "I felt hopeless" in text_of_pdf and "quetzalreview" in text_of_pdf
        assert "Signed by Test Therapist" in text_of_pdf and "version 3" in text_of_pdf and "marmosetaddendum" in text_of_pdf
        assert "How was your week?" in text_of_pdf  # the transcript, last

        soap = client.get(f"/api/sessions/{sid}/export/soap").text
        assert "quetzalreview" in soap and "## Review and signature" in soap


def pdftotext(pdf: bytes) -> str:
    binary = shutil.which("pdftotext")
    assert binary, "pdftotext is missing: install poppler-utils (make system-deps)"
    done = subprocess.run([binary, "-layout", "-", "-"], input=pdf, capture_output=True, timeout=60, check=True)
    return done.stdout.decode()


def test_deleting_the_session_deletes_its_versions_and_addenda(gw):
    sid = _new_session(gw)
    with _client(gw, gw.owner) as client:
        client.patch(f"/api/sessions/{sid}/notes", json={"base_version": 1, "notes": {"topic_summary": EDITED_SUMMARY}})
        client.post(f"/api/sessions/{sid}/notes/flags/f1/review", json={"base_version": 2, "decision": "confirmed"})
        client.post(f"/api/sessions/{sid}/notes:sign", json={"base_version": 3})
        client.post(f"/api/sessions/{sid}/notes/addenda", json={"text": ADDENDUM})
        assert _count(gw, note_versions, sid) == 3 and _count(gw, note_addenda, sid) == 1
        assert client.delete(f"/api/sessions/{sid}").status_code == 204
    assert [_count(gw, t, sid) for t in (note_versions, note_addenda, note_reviews)] == [0, 0, 0]


def test_concurrent_edits_on_one_base_make_one_version(gw):
    """Two edits made on the same version at once: one wins, the other gets 409 (row lock)."""
    import concurrent.futures

    sid = _new_session(gw)
    with _client(gw, gw.owner) as client:
        client.get(f"/api/sessions/{sid}/notes/review")

        def edit(i: int) -> int:
            with _client(gw, gw.owner) as c:
                return c.patch(f"/api/sessions/{sid}/notes",
                               json={"base_version": 1, "notes": {"triggers": [f"trigger {i}"]}}).status_code

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            codes = sorted(pool.map(edit, range(4)))
    assert codes == [200, 409, 409, 409]
    assert _count(gw, note_versions, sid) == 2
