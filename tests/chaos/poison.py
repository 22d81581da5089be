"""Records no handler can take, sent the way a broken producer would: each must reach
``<topic>.dlq`` through the runtime's normal dispatch, once per consuming service."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime, timezone

from shared.contracts.events import DiarizationFailed, Engine, ErrorInfo, Timing, TranscriptReady
from shared.envelope import build_headers, encode
from shared.topology import consumers_of
from shared.contracts.events import Topic


def _consumers(topic: str) -> list[str]:
    return sorted(s.name for s in consumers_of(Topic(topic)))


async def inject(bootstrap: str) -> list[dict]:
    """Send the records; returns what the DLQ must then hold: key, topic, services."""
    from tests.integration.test_faults import send_raw

    expected = []
    malformed_key, oversized_key = str(uuid.uuid4()), str(uuid.uuid4())
    await send_raw(bootstrap, "transcript.merged", b"\x00{not json", {"ce_id": f"chaos-{malformed_key}"}, key=malformed_key)
    expected.append({"key": malformed_key, "topic": "transcript.merged", "services": _consumers("transcript.merged"),
                     "what": "malformed"})
    big = json.dumps({"session_id": "not-a-uuid", "padding": "x" * (3 * 2**20)}).encode()  # 3 MB, invalid
    await send_raw(bootstrap, "audio.uploaded", big, {"ce_id": f"chaos-{oversized_key}"}, key=oversized_key)
    expected.append({"key": oversized_key, "topic": "audio.uploaded", "services": _consumers("audio.uploaded"),
                     "what": "oversized"})
    expected.append(await _keeps_failing(bootstrap, send_raw))
    return expected


async def _keeps_failing(bootstrap: str, send_raw) -> dict:
    """A valid pair whose transcript points at a blob that does not exist: the joiner's
    merge fails on every attempt, so the runtime dead-letters it after its retries."""
    sid = uuid.uuid4()
    now = datetime.now(timezone.utc)
    timing = Timing(started_at=now, finished_at=now, processing_s=1.0, audio_s=6.0, rtf=0.1)
    transcript = TranscriptReady(session_id=sid, language="en", duration_s=6.0, engine=Engine(backend="chaos"),
                                 timing=timing, segments=None, segments_ref="file:///nonexistent/chaos/segments.json")
    failed = DiarizationFailed(session_id=sid, error=ErrorInfo(kind="permanent", code="chaos", message="injected"))
    for event in (transcript, failed):
        headers = build_headers(event, "chaos", event_id=str(uuid.uuid4()))
        topic = "transcript.ready" if event is transcript else "diarization.failed"
        await send_raw(bootstrap, topic, encode(event), headers, key=str(sid))
    return {"key": str(sid), "topic": None, "services": ["joiner"], "what": "handler keeps failing"}


def check_dlq(bootstrap: str, expected: list[dict]) -> dict:
    from services.gateway.dlq import dlq_topics, read_dlq

    async def read():
        return await read_dlq(bootstrap, await dlq_topics(bootstrap))

    records = asyncio.run(read())
    found, missing, rows = 0, 0, []
    for item in expected:
        services = {r.headers.get("dlq_service") for r in records if (r.key or b"").decode() == item["key"]
                    and (item["topic"] is None or r.topic == f"{item['topic']}.dlq")}
        hit = set(item["services"]) <= services
        found += int(hit)
        missing += int(not hit)
        rows.append({"what": item["what"], "services_expected": item["services"], "services_found": sorted(services - {None})})
    return {"expected": len(expected), "found": found, "missing": missing, "records": rows}
