"""Live progress: server-sent events and a WebSocket, both read status_history from
PostgreSQL after the client's last seq; the StatusHub (woken by session.status on the
bus) only tells a stream when to look again (docs/adr/0003-streams-read-the-database.md)."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone
from uuid import UUID

from fastapi import APIRouter, Query, Request, Response, WebSocket
from sse_starlette.sse import EventSourceResponse
from starlette.websockets import WebSocketDisconnect

from services.gateway import queries
from services.gateway.deps import DB, ERRORS, State, StreamReader, owned_session, websocket_therapist
from services.gateway.schemas import StatusMessage
from services.gateway.state import GatewayState

TERMINAL = ("processed", "failed")
STREAM_RESPONSES = {
    200: {"description": "`event: progress` and `event: complete` (data: StatusMessage JSON, id: seq), "
                         "`event: ping` heartbeats",
          "content": {"text/event-stream": {"schema": {"type": "string"}}}},
    204: {"description": "The session is finished and the client has already seen its last update "
                         "(Last-Event-ID): nothing more will come"},
    **ERRORS,
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
    """History after ``after_seq`` and the current status row; the connection is held only
    for these two reads, never while the stream waits."""
    async with state.session_factory() as db:
        return await queries.history_after(db, session_id, after_seq), await queries.status_row(db, session_id)


async def follow_status(state: GatewayState, session_id: UUID, after_seq: int, heartbeat_s: float = 15.0):
    """Yield ('progress'|'complete'|'ping', message) from status_history, after_seq on:
    the DB is the source, the hub only wakes us up."""
    wake = state.hub.subscribe(session_id)
    try:
        last = after_seq
        while True:
            wake.clear()
            payloads, current = await _read_after(state, session_id, last)
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
    """?last_event_id= wins (clients that cannot set headers), else the Last-Event-ID header."""
    if last_event_id is not None:
        return last_event_id
    header = request.headers.get("last-event-id")
    return int(header) if header and header.isdigit() else 0


async def _sse_events(state: GatewayState, session_id: UUID, after: int):
    async for kind, message in follow_status(state, session_id, after, state.extra.get("heartbeat_s", 15.0)):
        if kind == "ping":
            yield {"event": "ping", "data": json.dumps(message)}
        else:
            yield {"event": kind, "id": str(message["seq"]), "data": json.dumps(message)}


@router.get("/api/sessions/{session_id}/status/stream", response_class=Response, responses=STREAM_RESPONSES,
            summary="Server-sent events: `event: progress` / `event: complete`, id = seq; resume with Last-Event-ID")
async def status_stream(session_id: UUID, request: Request, therapist_id: StreamReader, state: State, db: DB,
                        last_event_id: int | None = Query(None, alias="last_event_id")):
    await owned_session(session_id, therapist_id, db)
    after = _resume_point(request, last_event_id)
    current = await queries.status_row(db, session_id)
    if current is not None and current.status in TERMINAL and after >= current.seq:
        # The client already saw `complete` (an EventSource reconnecting after the stream
        # ended): 204 tells it to stop reconnecting instead of looping on empty streams.
        return Response(status_code=204)
    return EventSourceResponse(_sse_events(state, session_id, after), ping=None,
                               headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


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


async def websocket_status(websocket: WebSocket, session_id: UUID) -> None:
    """The same messages as the SSE stream, resumable with ?last_seq=."""
    state: GatewayState = websocket.app.state.gateway
    if await _websocket_owner(websocket, state, session_id) is None:
        return
    await websocket.accept()
    after = int(websocket.query_params.get("last_seq", "0") or 0)
    try:
        async for _kind, message in follow_status(state, session_id, after, state.extra.get("heartbeat_s", 15.0)):
            await websocket.send_json(message)
        await websocket.close(code=1000)
    except (WebSocketDisconnect, RuntimeError):
        return


router.add_api_websocket_route("/api/sessions/ws/{session_id}", websocket_status)
