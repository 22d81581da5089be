"""Progress streams cannot starve the gateway (issue 11, item 4), against uvicorn on a real
port (with_broker=False) and a real PostgreSQL with the default pool (5 + 5 connections).

- 15 open SSE streams hold no database connection while idle, and GET /api/sessions
  still answers while they are open (before: each stream pinned a pooled connection, the
  pool of 10 ran out and every other request waited 30 s for a 500);
- past the per-therapist cap (15 here) the next SSE stream gets 429 with a reason, the next
  WebSocket an error message and close 1013; a slot is free again once a stream ends;
- a DELETE ends the streams of that session (`event: deleted`); a deletion this replica
  did not see (another replica's) ends it at the next heartbeat's read;
- a finished session's streams end after `complete`.

No latency is asserted here: bench/stream_load.py measures it.
"""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
from sqlalchemy import delete

from shared.db.tables import sessions
from tests.integration.test_gateway_authz import LiveGateway, add_session, add_status, add_therapist, status_payload

CAP = 15


@pytest.fixture(scope="module")
def gw(settings):
    with LiveGateway(settings, stream_max_per_therapist=CAP) as gateway:
        gateway.state.extra["heartbeat_s"] = 120  # no heartbeat read during the test unless one asks
        gateway.therapist = gateway.call(add_therapist(gateway))
        yield gateway


def running_session(gw: LiveGateway):
    session_id = gw.call(add_session(gw, gw.therapist, finished=False))
    gw.call(add_status(gw, session_id, status_payload(session_id, 1, "transcribing", 10), owner_id=gw.therapist))
    return session_id


async def read_stream(client: httpx.AsyncClient, session_id, token: str, events: list) -> int:
    """Append (event, data) of one SSE stream to ``events`` until it ends; returns the status."""
    async with client.stream("GET", f"/api/sessions/{session_id}/status/stream",
                             headers={"Authorization": f"Bearer {token}"}) as response:
        if response.status_code != 200:
            await response.aread()
            events.append(("http", response.json()))
            return response.status_code
        event = "message"
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                event = line.partition(":")[2].strip()
            elif line.startswith("data:"):
                events.append((event, json.loads(line.partition(":")[2])))
            elif line == "":
                event = "message"
    return 200


async def until(condition, failure: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, failure
        await asyncio.sleep(0.05)


def checked_out(gw: LiveGateway) -> int:
    async def count() -> int:
        return gw.state.engine.pool.checkedout()
    return gw.call(count())


async def ws_refused(gw: LiveGateway, session_id, token: str) -> tuple[dict, int | None]:
    import websockets

    url = gw.url.replace("http://", "ws://") + f"/api/sessions/ws/{session_id}"
    async with websockets.connect(url, open_timeout=10, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        message = json.loads(await asyncio.wait_for(ws.recv(), 15))
        try:
            await asyncio.wait_for(ws.recv(), 15)
        except websockets.exceptions.ConnectionClosed:
            pass
        return message, ws.close_code


def test_open_streams_hold_no_connection_are_capped_and_end(gw):
    deleted, finished = running_session(gw), running_session(gw)
    token = gw.token(gw.therapist)

    async def scenario() -> None:
        limits = httpx.Limits(max_connections=40, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=gw.url, timeout=httpx.Timeout(60), limits=limits) as client:
            targets = [deleted] * 5 + [finished] * (CAP - 5)
            streams = [[] for _ in targets]
            tasks = [asyncio.create_task(read_stream(client, sid, token, out)) for sid, out in zip(targets, streams)]
            await until(lambda: all(out for out in streams), "not every stream got its first update")
            assert all(out[0][0] == "progress" for out in streams), [out[:1] for out in streams]
            assert gw.state.hub.open_streams == CAP

            # Idle streams hold nothing: the pool is free, other requests answer.
            assert checked_out(gw) == 0
            listing = await client.get("/api/sessions", headers={"Authorization": f"Bearer {token}"})
            assert listing.status_code == 200
            assert {str(deleted), str(finished)} <= {item["id"] for item in listing.json()["items"]}

            # One more is refused, with a reason, on both transports.
            extra: list = []
            assert await read_stream(client, finished, token, extra) == 429
            assert "limit 15" in extra[0][1]["detail"]
            message, code = await ws_refused(gw, finished, token)
            assert message["code"] == "too_many_streams" and code == 1013

            # DELETE ends that session's streams, and frees their slots.
            gone = await client.delete(f"/api/sessions/{deleted}", headers={"Authorization": f"Bearer {token}"})
            assert gone.status_code == 204
            await asyncio.wait_for(asyncio.gather(*tasks[:5]), 30)
            assert all(out[-1][0] == "deleted" for out in streams[:5]), [out[-1] for out in streams[:5]]
            await until(lambda: gw.state.hub.open_streams == CAP - 5, "deleted streams kept their slots")

            # A finished session's streams end after `complete`.
            gw.call(add_status(gw, finished, status_payload(finished, 2, "processed", 100), owner_id=gw.therapist))
            gw.notify(finished)
            await asyncio.wait_for(asyncio.gather(*tasks[5:]), 30)
            assert all(out[-1][0] == "complete" for out in streams[5:])
            await until(lambda: gw.state.hub.open_streams == 0, "finished streams kept their slots")

    asyncio.run(scenario())


def test_a_deletion_seen_elsewhere_ends_the_stream_at_the_next_heartbeat(gw):
    """Another replica deleted the session and this one missed the wake-up: the stream's
    heartbeat reads again and ends it."""
    session_id = running_session(gw)
    token = gw.token(gw.therapist)

    async def remove_row() -> None:
        async with gw.state.session_factory() as db, db.begin():
            await db.execute(delete(sessions).where(sessions.c.id == session_id))

    async def scenario() -> list:
        events: list = []
        async with httpx.AsyncClient(base_url=gw.url, timeout=httpx.Timeout(60)) as client:
            task = asyncio.create_task(read_stream(client, session_id, token, events))
            await until(lambda: bool(events), "no first update")
            gw.call(remove_row())  # no hub.notify: nothing tells this replica
            await asyncio.wait_for(task, 30)
        return events

    gw.state.extra["heartbeat_s"] = 1
    try:
        events = asyncio.run(scenario())
    finally:
        gw.state.extra["heartbeat_s"] = 120
    assert events[0][0] == "progress"
    assert events[-1] == ("deleted", {"type": "deleted", "session_id": str(session_id)})


def test_a_websocket_on_a_deleted_session_gets_deleted_and_a_clean_close(gw):
    import websockets

    session_id = running_session(gw)
    token = gw.token(gw.therapist)

    async def scenario() -> tuple[list, int | None]:
        url = gw.url.replace("http://", "ws://") + f"/api/sessions/ws/{session_id}"
        messages = []
        async with websockets.connect(url, open_timeout=10, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
            messages.append(json.loads(await asyncio.wait_for(ws.recv(), 15)))
            async with httpx.AsyncClient(base_url=gw.url, timeout=30) as client:
                gone = await client.delete(f"/api/sessions/{session_id}", headers={"Authorization": f"Bearer {token}"})
                assert gone.status_code == 204
            try:
                while True:
                    messages.append(json.loads(await asyncio.wait_for(ws.recv(), 15)))
            except websockets.exceptions.ConnectionClosedOK:
                pass
            return messages, ws.close_code

    messages, code = asyncio.run(scenario())
    assert messages[0]["seq"] == 1
    assert messages[-1] == {"type": "deleted", "session_id": str(session_id)}
    assert code == 1000
    assert gw.state.hub.open_streams == 0


def test_another_replicas_delete_wakes_streams_through_the_bus(settings):
    """Two gateways on the bus: a DELETE on one ends a stream open on the other at once
    (session.deleted wakes it; its heartbeat is far away)."""
    from tests.helpers import publish
    from shared.contracts.events import SessionDeleted

    with BrokerGateway(settings) as gw:
        gw.state.extra["heartbeat_s"] = 600
        gw.therapist = gw.call(add_therapist(gw))
        session_id = running_session(gw)
        token = gw.token(gw.therapist)

        async def remove_row() -> None:  # what the other replica's DELETE did to the database
            async with gw.state.session_factory() as db, db.begin():
                await db.execute(delete(sessions).where(sessions.c.id == session_id))

        async def scenario() -> list:
            events: list = []
            async with httpx.AsyncClient(base_url=gw.url, timeout=httpx.Timeout(60)) as client:
                task = asyncio.create_task(read_stream(client, session_id, token, events))
                await until(lambda: bool(events), "no first update")
                gw.call(remove_row())
                await publish(settings.kafka_bootstrap_servers, SessionDeleted(session_id=session_id),
                              source="gateway")
                await asyncio.wait_for(task, 60)
            return events

        events = asyncio.run(scenario())
    assert events[-1] == ("deleted", {"type": "deleted", "session_id": str(session_id)})


class BrokerGateway(LiveGateway):
    """A LiveGateway with the bus (its status/deleted wake-ups), like a production replica."""

    def __init__(self, settings, **overrides) -> None:
        import uvicorn

        from services.gateway.main import create_app

        super().__init__(settings, **overrides)
        self.app = create_app(self.settings, with_broker=True)
        self.state = self.app.state.gateway
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    timeout_graceful_shutdown=1, lifespan="on"))
