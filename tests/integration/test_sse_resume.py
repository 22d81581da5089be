"""Live progress over SSE and WebSocket against uvicorn on a real port (with_broker=False).

The test plays the progress service: it appends status_history rows, upserts
session_status and rings the gateway's StatusHub, exactly what a session.status event
does in production. Asserted:

- disconnect mid-session, more updates arrive, reconnect with Last-Event-ID (header or
  ?last_event_id=): every seq exactly once, in order; `event: complete` ends the stream;
- heartbeats (`event: ping`, no id) flow while nothing happens;
- the WebSocket receives the same seq list and messages as SSE;
- a client connecting after completion gets the whole history ending in `complete` at
  once; one that already saw the final event gets 204 (EventSource stops reconnecting).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import pytest

from tests.integration.test_gateway_authz import LiveGateway, add_session, add_status, add_therapist, status_payload

STEPS = [("transcribing", 10), ("transcribing", 25), ("transcribing", 40), ("diarizing", 55), ("merging", 70),
         ("extracting_notes", 85), ("extracting_notes", 95), ("processed", 100)]


@pytest.fixture(scope="module")
def gw(settings):
    with LiveGateway(settings) as gateway:
        gateway.state.extra["heartbeat_s"] = 1
        gateway.therapist = gateway.call(add_therapist(gateway))
        yield gateway


def sse(gw: LiveGateway, session_id, token: str, *, headers: dict | None = None, params: dict | None = None,
        max_events: int | None = None, out: list | None = None, timeout: float = 30) -> list[tuple[str, str | None, dict]]:
    """Read the stream into [(event, id, data)] until it ends (or max_events non-ping events)."""
    events = out if out is not None else []
    count = 0
    with httpx.Client(base_url=gw.url, timeout=httpx.Timeout(timeout)) as client:
        with client.stream("GET", f"/api/sessions/{session_id}/status/stream", params={"token": token, **(params or {})},
                           headers=headers or {}) as response:
            assert response.status_code == 200, response.read()
            assert response.headers["content-type"].startswith("text/event-stream")
            event, ident, data = "message", None, []
            for line in response.iter_lines():
                if line == "":
                    if data:
                        events.append((event, ident, json.loads("\n".join(data))))
                        if event != "ping":
                            count += 1
                            if max_events is not None and count >= max_events:
                                return events
                    event, ident, data = "message", None, []
                elif line.startswith(":"):
                    continue
                else:
                    field, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if field == "event":
                        event = value
                    elif field == "id":
                        ident = value
                    elif field == "data":
                        data.append(value)
    return events


def push(gw: LiveGateway, session_id, seq: int) -> None:
    status, pct = STEPS[seq - 1]
    gw.call(add_status(gw, session_id, status_payload(session_id, seq, status, pct, eta_s=(100 - pct) / 10,
                                                       warnings=["diarization fell back"] if seq >= 4 else []),
                       owner_id=gw.therapist))
    gw.notify(session_id)


def wait_until(condition, failure: str, timeout_s: float = 30) -> None:
    """Poll ``condition`` (a sentinel another thread sets) instead of sleeping a fixed time."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, failure
        time.sleep(0.02)


def seqs(events) -> list[int]:
    return [data["seq"] for kind, _, data in events if kind != "ping"]


def test_resume_with_last_event_id_loses_and_repeats_nothing(gw):
    session_id = gw.call(add_session(gw, gw.therapist, finished=False))
    token = gw.link(gw.therapist, session_id, "stream")  # a signed link: ?token= takes no access token
    for seq in (1, 2, 3):
        push(gw, session_id, seq)
    first = sse(gw, session_id, token, max_events=2)  # disconnect mid-session after two events
    assert seqs(first) == [1, 2]
    assert [(k, i) for k, i, _ in first] == [("progress", "1"), ("progress", "2")]
    push(gw, session_id, 4)  # arrives while disconnected

    second: list = []
    reader = threading.Thread(target=sse, args=(gw, session_id, token),
                              kwargs={"headers": {"Last-Event-ID": "2"}, "out": second})
    reader.start()
    # Idle: heartbeats must flow. Wait for the first ping itself, not a guessed duration.
    wait_until(lambda: any(kind == "ping" for kind, _, _ in second), "no heartbeat while idle")
    for seq in range(5, len(STEPS) + 1):
        push(gw, session_id, seq)
        time.sleep(0.2)
    reader.join(30)
    assert not reader.is_alive(), "the stream did not end after `complete`"

    assert seqs(first) + seqs(second) == list(range(1, len(STEPS) + 1))
    pings = [e for e in second if e[0] == "ping"]
    assert pings and all(ident is None for _, ident, _ in pings)
    real = [e for e in second if e[0] != "ping"]
    assert [k for k, _, _ in real] == ["progress"] * (len(real) - 1) + ["complete"]
    assert all(ident == str(data["seq"]) for _, ident, data in real)
    final = real[-1][2]
    assert final["status"] == "processed" and final["progress"] == 100 and final["session_id"] == str(session_id)
    assert {"status", "progress", "message", "estimated_time_remaining", "error", "stages", "warnings"} <= set(final)
    assert final["warnings"] == ["diarization fell back"]

    # resume through the query parameter too (for clients that cannot set headers)
    tail = sse(gw, session_id, token, params={"last_event_id": 6})
    assert seqs(tail) == [7, 8] and tail[-1][0] == "complete"


def test_after_completion_the_final_state_comes_at_once(gw):
    session_id = gw.call(add_session(gw, gw.therapist, finished=True))  # seq 1..3, processed
    token = gw.link(gw.therapist, session_id, "stream")  # a signed link: ?token= takes no access token
    started = time.monotonic()
    events = sse(gw, session_id, token, timeout=5)
    assert time.monotonic() - started < 4.5  # under the 5 s read timeout: no waiting for a wake-up
    assert seqs(events) == [1, 2, 3] and events[-1][0] == "complete"
    # A client that already saw `complete` (EventSource auto-reconnect) is told to stop: 204.
    with httpx.Client(base_url=gw.url, timeout=5) as client:
        again = client.get(f"/api/sessions/{session_id}/status/stream", params={"token": token},
                           headers={"Last-Event-ID": "3"})
    assert again.status_code == 204


async def _ws_read(url: str, messages: list | None = None) -> tuple[list[dict], int | None]:
    import websockets

    messages = messages if messages is not None else []
    async with websockets.connect(url, open_timeout=10) as ws:
        try:
            while True:
                messages.append(json.loads(await asyncio.wait_for(ws.recv(), 30)))
        except websockets.exceptions.ConnectionClosedOK:
            pass
        return messages, ws.close_code


def test_websocket_gets_the_same_sequence_as_sse(gw):
    session_id = gw.call(add_session(gw, gw.therapist, finished=False))
    token = gw.link(gw.therapist, session_id, "stream")  # a signed link: ?token= takes no access token
    push(gw, session_id, 1)
    sse_events: list = []
    ws_result: dict = {}
    ws_url = gw.url.replace("http://", "ws://") + f"/api/sessions/ws/{session_id}?token={token}"

    ws_messages_live: list = []

    def ws_reader():
        ws_result["messages"], ws_result["code"] = asyncio.run(_ws_read(ws_url, ws_messages_live))

    threads = [threading.Thread(target=sse, args=(gw, session_id, token), kwargs={"out": sse_events}),
               threading.Thread(target=ws_reader)]
    for t in threads:
        t.start()
    # Both clients are connected once each has the first update: push the rest after that.
    wait_until(lambda: seqs(sse_events)[:1] == [1] and any(m.get("seq") == 1 for m in ws_messages_live),
               "a client did not receive the first update")
    for seq in range(2, len(STEPS) + 1):
        push(gw, session_id, seq)
        time.sleep(0.15)
    for t in threads:
        t.join(30)
        assert not t.is_alive()

    ws_messages = [m for m in ws_result["messages"] if m.get("type") != "ping"]
    assert seqs(sse_events) == list(range(1, len(STEPS) + 1))
    assert [m["seq"] for m in ws_messages] == seqs(sse_events)
    assert ws_messages == [data for kind, _, data in sse_events if kind != "ping"]
    assert ws_result["code"] == 1000
    # resume on the WebSocket too
    later, _ = asyncio.run(_ws_read(ws_url + "&last_seq=5"))
    assert [m["seq"] for m in later if m.get("type") != "ping"] == [6, 7, 8]
