"""Live progress: server-sent events and a WebSocket, both read status_history from
PostgreSQL after the client's last seq; the StatusHub (woken by session.status on the
bus) only tells a stream when to look again (docs/adr/0003-streams-read-the-database.md)."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime, timezone
from uuid import UUID

from fastapi import APIRouter, HTTPException, Query, Request, Response, WebSocket
from sse_starlette.sse import EventSourceResponse
from starlette.background import BackgroundTask
from starlette.websockets import WebSocketDisconnect

from services.gateway import queries
from services.gateway.deps import DB, ERRORS, State, StreamReader, owned_session, websocket_therapist
from services.gateway.schemas import SEQ_MAX, ErrorBody, StatusMessage
from services.gateway.state import GatewayState
from services.gateway.statushub import StreamLimitReached, StreamSlot

TERMINAL = ("processed", "failed")
SEQ_PATTERN = re.compile(r"[0-9]{1,18}")  # ASCII digits only, and within a BIGINT
STREAM_RESPONSES = {
    200: {"description": "`event: progress` and `event: complete` (data: StatusMessage JSON, id: seq), "
                         "`event: ping` heartbeats, `event: deleted` when the session is deleted (the stream ends)",
          "content": {"text/event-stream": {"schema": {"type": "string"}}}},
    204: {"description": "The session is finished and the client has already seen its last update "
                         "(Last-Event-ID): nothing more will come"},
    **ERRORS,
    429: {"model": ErrorBody, "description": "Too many open progress streams (per account or on this server)"},
}

router = APIRouter(tags=["progress"])


def status_message(payload: dict) -> dict:
    """session.status payload -> seed 001's progress message."""
    return StatusMessage(
        session_id=payload["session_id"], seq=payload["seq"], status=payload["status"], progress=payload["percent"],
        message=payload.get("message", ""), estimated_time_remaining=payload.get("eta_s"), error=payload.get("error"),
        stages=payload.get("stages", {}), warnings=payload.get("warnings", []), updated_at=payload.get("updated_at"),
    ).model_dump(mode="json")


async def _read_after(state: GatewayState, session_id: UUID, after_seq: int):
    """(history after ``after_seq``, the current status row, whether the session still
    exists); the connection is held only for these reads, never while the stream waits."""
    async with state.session_factory() as db:
        return (await queries.history_after(db, session_id, after_seq), await queries.status_row(db, session_id),
                await queries.session_exists(db, session_id))


def _heartbeat_s(state: GatewayState) -> float:
    return state.extra.get("heartbeat_s", state.settings.stream_heartbeat_s)


async def follow_status(state: GatewayState, session_id: UUID, after_seq: int, heartbeat_s: float = 15.0):
    """Yield ('progress'|'complete'|'deleted'|'ping', message) from status_history,
    after_seq on: the DB is the source, the hub only wakes us up. Ends after `complete`
    or when the session is deleted; every heartbeat reads again, so a wake-up missed
    (another replica's DELETE while the bus was down) only delays the end."""
    wake = state.hub.subscribe(session_id)
    try:
        last = after_seq
        while True:
            wake.clear()
            payloads, current, exists = await _read_after(state, session_id, last)
            if not exists:
                yield "deleted", {"type": "deleted", "session_id": str(session_id)}
                return
            for payload in payloads:
                last = payload["seq"]
                kind = "complete" if payload["status"] in TERMINAL else "progress"
                yield kind, status_message(payload)
                if kind == "complete":
                    return
            if current is not None and current.status in TERMINAL and current.seq <= last:
                return
            try:
                await asyncio.wait_for(wake.wait(), timeout=heartbeat_s)
            except asyncio.TimeoutError:
                yield "ping", {"type": "ping", "timestamp": datetime.now(timezone.utc).isoformat()}
    finally:
        state.hub.unsubscribe(session_id, wake)


def _resume_point(request: Request, last_event_id: int | None) -> int:
    """?last_event_id= wins (clients that cannot set headers), else the Last-Event-ID header
    (only ids this stream sent: a sequence number; anything else is a 422)."""
    if last_event_id is not None:
        return last_event_id
    header = request.headers.get("last-event-id", "").strip()
    if not header:
        return 0
    if not SEQ_PATTERN.fullmatch(header):
        raise HTTPException(422, "Last-Event-ID must be a sequence number (an id this stream sent)")
    return int(header)


def _open_slot(state: GatewayState, therapist_id: UUID) -> StreamSlot:
    try:
        return state.hub.open_stream(therapist_id)
    except StreamLimitReached as exc:
        raise HTTPException(429, exc.reason, headers={"Retry-After": "30"}) from None


async def _sse_events(state: GatewayState, session_id: UUID, after: int, slot: StreamSlot):
    try:
        async for kind, message in follow_status(state, session_id, after, _heartbeat_s(state)):
            if kind in ("ping", "deleted"):
                yield {"event": kind, "data": json.dumps(message)}
            else:
                yield {"event": kind, "id": str(message["seq"]), "data": json.dumps(message)}
    finally:
        slot.release()


@router.get("/api/sessions/{session_id}/status/stream", response_class=Response, responses=STREAM_RESPONSES,
            summary="Server-sent events: `event: progress` / `event: complete`, id = seq; resume with Last-Event-ID")
async def status_stream(session_id: UUID, request: Request, therapist_id: StreamReader, state: State, db: DB,
                        last_event_id: int | None = Query(None, alias="last_event_id", ge=0, le=SEQ_MAX)):
    await owned_session(session_id, therapist_id, db)
    after = _resume_point(request, last_event_id)
    current = await queries.status_row(db, session_id)
    # The request's session would otherwise stay open (idle in transaction) until the
    # stream ends: the stream reads with short sessions of its own.
    await db.close()
    if current is not None and current.status in TERMINAL and after >= current.seq:
        # The client already saw `complete` (an EventSource reconnecting after the stream
        # ended): 204 tells it to stop reconnecting instead of looping on empty streams.
        return Response(status_code=204)
    slot = _open_slot(state, therapist_id)
    return EventSourceResponse(_sse_events(state, session_id, after, slot), ping=None,
                               headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
                               background=BackgroundTask(slot.release))


async def _websocket_owner(websocket: WebSocket, state: GatewayState, session_id: UUID) -> UUID | None:
    """The therapist if the token (a stream link, or a bearer header) is valid and owns the session; else close with 1008."""
    therapist_id = await websocket_therapist(websocket, state, session_id)
    if therapist_id is None:
        await websocket.close(code=1008, reason="not authenticated")
        return None
    async with state.session_factory() as db:
        owned = await queries.owned_session(db, session_id, therapist_id)
    if owned is None:
        await websocket.close(code=1008, reason="session not found")
        return None
    return therapist_id


async def _refuse(websocket: WebSocket, code: int, error: str, detail: str) -> None:
    """An error message the client can read, then the close (a close reason alone is
    easy to lose in browser APIs)."""
    await websocket.send_json({"type": "error", "code": error, "detail": detail})
    await websocket.close(code=code, reason=error)


async def _websocket_slot(websocket: WebSocket, state: GatewayState, therapist_id: UUID) -> tuple[int, StreamSlot] | None:
    """(resume seq, stream slot) for an accepted socket, or None after refusing it."""
    raw = websocket.query_params.get("last_seq", "") or "0"
    if not SEQ_PATTERN.fullmatch(raw):
        await _refuse(websocket, 1008, "invalid_last_seq", "last_seq must be a sequence number")
        return None
    try:
        return int(raw), state.hub.open_stream(therapist_id)
    except StreamLimitReached as exc:
        await _refuse(websocket, 1013, "too_many_streams", exc.reason)  # 1013: try again later
        return None


async def websocket_status(websocket: WebSocket, session_id: UUID) -> None:
    """The same messages as the SSE stream, resumable with ?last_seq=."""
    state: GatewayState = websocket.app.state.gateway
    therapist_id = await _websocket_owner(websocket, state, session_id)
    if therapist_id is None:
        return
    await websocket.accept()
    opened = await _websocket_slot(websocket, state, therapist_id)
    if opened is None:
        return
    after, slot = opened
    try:
        async for _kind, message in follow_status(state, session_id, after, _heartbeat_s(state)):
            await websocket.send_json(message)
        await websocket.close(code=1000)
    except (WebSocketDisconnect, RuntimeError):
        return
    finally:
        slot.release()


router.add_api_websocket_route("/api/sessions/ws/{session_id}", websocket_status)
