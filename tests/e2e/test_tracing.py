"""One trace per session: every service of the running stack exports its spans over
OTLP/HTTP to a small receiver (tests/otlp_receiver.py); one real recording is uploaded
with a caller's traceparent and processed. The session's spans must form one trace that
keeps the caller's trace id, is rooted at the upload request and has no orphans."""

from __future__ import annotations

import os
import time

from tests.conftest import DATA

SERVICES = {f"therapybridge-{s}" for s in ("gateway", "transcriber", "diarizer", "joiner", "notes", "progress")}
STAGE_SPANS = {"transcription", "diarization", "merge", "notes generation"}
SERVER = 2  # SpanKind.SERVER in OTLP


def _session_spans(spans, sid: str):
    """Spans that name the session: our work and handler spans (tb.session_id) and
    FastStream's publish/consume spans (the record key is the session id)."""
    return [s for s in spans if sid in (s.attributes.get("tb.session_id"), s.attributes.get("messaging.kafka.message.key"))]


def _problems(spans, sid: str, trace_id: str, caller_span: str) -> list[str]:
    trace = [s for s in spans if s.trace_id == trace_id]
    ids = {s.span_id for s in trace}
    problems = [f"no spans from {svc}" for svc in sorted(SERVICES - {s.service for s in trace})]
    problems += [f"no {name} span" for name in sorted(STAGE_SPANS - {s.name for s in trace})]
    problems += [f"orphan {s.service}: {s.name}" for s in trace
                 if s.parent_span_id and s.parent_span_id not in ids and s.parent_span_id != caller_span]
    problems += [f"{s.service}: {s.name} in another trace" for s in _session_spans(spans, sid) if s.trace_id != trace_id]
    return problems


def test_one_trace_per_session_rooted_at_the_upload(pipeline, otlp):
    api, _, _ = pipeline
    trace_id, caller_span = os.urandom(16).hex(), os.urandom(8).hex()
    with open(DATA / "jfk.flac", "rb") as fh:
        response = api.client.post("/api/sessions/upload", files={"file": ("jfk.flac", fh, "audio/flac")},
                                   headers={**api.headers, "traceparent": f"00-{trace_id}-{caller_span}-01"})
    assert response.status_code == 202, response.text
    sid = response.json()["id"]
    # Finished with its diarization: a diarizer slower than the joiner's deadline arrives
    # after the session is processed, and its spans belong to the trace all the same.
    detail = api.wait(sid, lambda d: d["status"] == "failed" or (d["status"] == "processed" and d["diarization"]),
                      timeout_s=420)
    assert detail["status"] == "processed" and detail["diarization"] is not None, detail["status"]

    deadline = time.monotonic() + 120  # spans arrive in batches, after the work they describe
    while (problems := _problems(otlp.spans(), sid, trace_id, caller_span)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not problems, problems

    trace = [s for s in otlp.spans() if s.trace_id == trace_id]
    roots = [s for s in trace if s.parent_span_id not in {t.span_id for t in trace}]
    assert len(roots) == 1, [(s.service, s.name) for s in roots]
    (root,) = roots
    assert root.parent_span_id == caller_span  # the caller's traceparent is honoured
    assert root.service == "therapybridge-gateway" and root.kind == SERVER
    assert root.name == "POST /api/sessions/upload"
    publishes = [s for s in trace if s.name.endswith(" publish")]
    assert {s.attributes.get("messaging.destination.name") for s in publishes} >= {
        "audio.uploaded", "transcript.ready", "diarization.ready", "transcript.merged", "notes.ready",
        "session.status"}
    print(f"\n{len(trace)} spans in the session's trace from {len({s.service for s in trace})} services")
