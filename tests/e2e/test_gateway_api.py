"""The gateway in the whole running stack (pipeline fixture: every service its own process,
real broker, real PostgreSQL).

- Two gateway processes on the real broker: a session uploaded through one, followed over
  SSE on BOTH: each sees every status seq (same list, strictly increasing, ending in
  `event: complete`).
- Delete: after DELETE, the audio blob, every row of the session in every service's
  tables (sessions, session_status, status_history, session_results, stage_jobs,
  join_state, inbox) and every export are gone.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from devtools.localbroker import free_port, wait_for_port
from tests.conftest import DATA

EXPORTS = ["txt", "json", "srt", "vtt", "rttm", "notes.json", "soap", "dap", "docx"]
TABLES = ["sessions:id", "session_status:session_id", "status_history:session_id", "session_results:session_id",
          "stage_jobs:session_id", "join_state:session_id", "inbox:session_id"]


def follow_sse(base_url: str, token: str, session_id: str, out: list, timeout_s: float = 300) -> None:
    """Append (event, id, data) until `complete` (or the timeout)."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        headers = {"Authorization": f"Bearer {token}"}
        if last:
            headers["Last-Event-ID"] = last
        try:
            with httpx.Client(base_url=base_url, timeout=httpx.Timeout(30, read=60)) as client:
                with client.stream("GET", f"/api/sessions/{session_id}/status/stream", headers=headers) as response:
                    if response.status_code == 204:
                        return
                    assert response.status_code == 200, response.read()
                    event, ident, data = "message", None, []
                    for line in response.iter_lines():
                        if line == "":
                            if data and event != "ping":
                                out.append((event, ident, json.loads("\n".join(data))))
                                last = ident
                                if event == "complete":
                                    return
                            event, ident, data = "message", None, []
                        elif line.startswith("event:"):
                            event = line[6:].strip()
                        elif line.startswith("id:"):
                            ident = line[3:].strip()
                        elif line.startswith("data:"):
                            data.append(line[5:].strip())
        except httpx.TransportError:
            time.sleep(0.5)


@pytest.fixture(scope="module")
def second_gateway(pipeline):
    _, stack, env = pipeline
    port = free_port()
    stack.start_service("gateway", instance="gateway-2", extra_env={"TB_GATEWAY_PORT": str(port)})
    wait_for_port("127.0.0.1", port, timeout_s=90)
    url = f"http://127.0.0.1:{port}"
    for _ in range(60):
        if httpx.get(f"{url}/readyz").status_code == 200:
            break
        time.sleep(0.5)
    yield url
    stack.stop_service("gateway-2")


def test_two_gateways_each_see_every_status(pipeline, second_gateway):
    api, _, _ = pipeline
    api.login()
    response = api.upload(DATA / "jfk.flac")
    assert response.status_code == 202, response.text
    session_id = response.json()["id"]
    streams: dict[str, list] = {api.base_url: [], second_gateway: []}
    threads = [threading.Thread(target=follow_sse, args=(url, api.token, session_id, out)) for url, out in streams.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(320)
    seq_lists = {url: [data["seq"] for _, _, data in events] for url, events in streams.items()}
    one, two = seq_lists.values()
    assert one, "no status on gateway 1"
    assert one == two, seq_lists
    assert one == sorted(set(one)), "repeated or out-of-order seq"
    for events in streams.values():
        assert events[-1][0] == "complete", events[-1]
        assert all(ident == str(data["seq"]) for _, ident, data in events)
    # seq is per-session monotonic from 1 with no gaps: nothing was lost on either replica
    assert one == list(range(one[0], one[0] + len(one)))
    final = streams[api.base_url][-1][2]
    assert final["status"] in ("processed", "failed")
    assert final["status"] == "processed", final.get("error")
    assert final["progress"] == 100


async def _rows(database_url: str, session_id: str) -> dict[str, int]:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            out = {}
            for spec in TABLES:
                table, column = spec.split(":")
                out[table] = (await conn.execute(text(f"SELECT count(*) FROM {table} WHERE {column} = :sid"),
                                                 {"sid": session_id})).scalar_one()
            return out
    finally:
        await engine.dispose()


def test_delete_removes_blob_rows_and_exports(pipeline):
    api, _, env = pipeline
    api.login()
    response = api.upload(DATA / "jfk.flac")
    assert response.status_code == 202, response.text
    session_id = response.json()["id"]
    detail = api.wait(session_id, lambda d: d["status"] in ("processed", "failed"), timeout_s=300)
    assert detail["status"] == "processed", detail.get("error")
    blob_dir = Path(env["TB_BLOB_DIR"]) / "sessions" / session_id
    assert blob_dir.exists()
    rows = asyncio.run(_rows(env["TB_DATABASE_URL"], session_id))
    assert rows["sessions"] == 1 and rows["session_status"] == 1 and rows["status_history"] > 0
    available = [fmt for fmt in EXPORTS
                 if api.client.get(f"/api/sessions/{session_id}/export/{fmt}", headers=api.headers).status_code == 200]
    assert "txt" in available and "srt" in available

    deleted = api.client.delete(f"/api/sessions/{session_id}", headers=api.headers)
    assert deleted.status_code == 204

    deadline = time.monotonic() + 20
    while True:
        rows = asyncio.run(_rows(env["TB_DATABASE_URL"], session_id))
        if not any(rows.values()) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert not any(rows.values()), f"rows left after delete: {rows}"
    assert not blob_dir.exists(), list(blob_dir.rglob("*"))
    assert api.client.get(f"/api/sessions/{session_id}", headers=api.headers).status_code == 404
    for fmt in EXPORTS:
        assert api.client.get(f"/api/sessions/{session_id}/export/{fmt}", headers=api.headers).status_code == 404, fmt
    assert api.client.get(f"/api/sessions/{session_id}/audio", headers=api.headers).status_code == 404
    listed = api.client.get("/api/sessions", headers=api.headers).json()["items"]
    assert session_id not in {s["id"] for s in listed}
