"""GET /api/sessions latency while progress streams are open (issue 11, item 4).

A gateway under uvicorn on a real port (with_broker=False, the default database pool of
5 + 5) on a fresh PostgreSQL database; one therapist with a few sessions. Measured:
sequential GET /api/sessions, first with no stream open, then with 15 SSE streams open
on running sessions (idle: waiting for a wake-up). Before the streams stopped holding a
connection, 10 streams exhausted the pool and every other request waited 30 s for a 500.

``python -m bench.run --only stream_load`` -> bench/results/stream_load.json, .png
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from pathlib import Path

import httpx

from bench.common import LoadSampler, envelope, percentile

NAME = "stream_load"
STREAMS = 15


def _stats(xs: list[float]) -> dict:
    return {"n": len(xs), "p50": round(percentile(xs, 0.5), 2), "p90": round(percentile(xs, 0.9), 2),
            "p99": round(percentile(xs, 0.99), 2), "max": round(max(xs), 2), "mean": round(statistics.fmean(xs), 2)}


async def _hold_stream(client: httpx.AsyncClient, session_id, token: str, opened: asyncio.Event) -> None:
    async with client.stream("GET", f"/api/sessions/{session_id}/status/stream",
                             headers={"Authorization": f"Bearer {token}"}) as response:
        assert response.status_code == 200, response.status_code
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                opened.set()


async def _latencies(client: httpx.AsyncClient, token: str, requests: int) -> list[float]:
    out = []
    for _ in range(requests):
        started = time.perf_counter()
        response = await client.get("/api/sessions", headers={"Authorization": f"Bearer {token}"})
        out.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.status_code
    return out


async def _measure(gw, sessions: list, token: str, requests: int) -> dict:
    limits = httpx.Limits(max_connections=STREAMS + 5)
    async with httpx.AsyncClient(base_url=gw.url, timeout=httpx.Timeout(60), limits=limits) as client:
        await _latencies(client, token, 5)  # warm-up
        idle = await _latencies(client, token, requests)
        opened = [asyncio.Event() for _ in range(STREAMS)]
        holders = [asyncio.create_task(_hold_stream(client, sessions[i % len(sessions)], token, opened[i]))
                   for i in range(STREAMS)]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in opened)), 120)
        with_streams = await _latencies(client, token, requests)
        open_streams = gw.state.hub.open_streams
        for task in holders:
            task.cancel()
        await asyncio.gather(*holders, return_exceptions=True)
    return {"no_streams_ms": _stats(idle), f"with_{STREAMS}_streams_ms": _stats(with_streams),
            "open_streams_during": open_streams, "with_streams_ms_all": [round(x, 2) for x in with_streams]}


def _gateway_run(database_url: str, blob_dir: Path, requests: int) -> dict:
    import secrets

    from shared.settings import Settings
    from tests.integration.test_gateway_authz import LiveGateway, add_session, add_status, add_therapist, status_payload

    settings = Settings(database_url=database_url, blob_dir=blob_dir, log_format="console", log_level="WARNING",
                        jwt_secret=secrets.token_urlsafe(48), stream_max_per_therapist=STREAMS)
    with LiveGateway(settings) as gw:
        gw.state.extra["heartbeat_s"] = 600  # idle streams: no heartbeat read during the measurement
        therapist = gw.call(add_therapist(gw))
        sessions = []
        for _ in range(5):
            sid = gw.call(add_session(gw, therapist, finished=False))
            gw.call(add_status(gw, sid, status_payload(sid, 1, "transcribing", 10), owner_id=therapist))
            sessions.append(sid)
        return asyncio.run(_measure(gw, sessions, gw.token(therapist), requests))


def run(quick: bool) -> dict:
    import tempfile

    from shared.db.bootstrap import drop_database, prepare_database

    started = time.time()
    requests = 100 if quick else 400
    base = (os.environ.get("TB_DATABASE_URL") or os.environ.get("DATABASE_URL")
            or "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres").rsplit("/", 1)[0]
    database_url = f"{base}/tb_bench_streams_{uuid.uuid4().hex[:8]}"
    asyncio.run(prepare_database(database_url))
    try:
        with tempfile.TemporaryDirectory(prefix="tb-bench-streams-") as td, LoadSampler() as load:
            measured = _gateway_run(database_url, Path(td), requests)
    finally:
        asyncio.run(drop_database(database_url))
    print(f"  [streams] GET /api/sessions p99: {measured['no_streams_ms']['p99']} ms with no stream, "
          f"{measured[f'with_{STREAMS}_streams_ms']['p99']} ms with {STREAMS} open", flush=True)
    out = envelope(NAME, {"streams": STREAMS, "requests": requests, "quick": quick, "db_pool": "5 + 5 (default)",
                          "client": "httpx, sequential requests, same process as the gateway (another thread)"},
                   started)
    out["results"] = {**measured, "load": load.summary()}
    return out


def plot(result: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    r = result["results"]
    qs = ["p50", "p90", "p99", "max"]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    width = 0.38
    for i, key in enumerate(["no_streams_ms", f"with_{STREAMS}_streams_ms"]):
        ax.bar([x + (i - 0.5) * width for x in range(len(qs))], [r[key][q] for q in qs], width, label=key)
    ax.set_xticks(range(len(qs)), qs)
    ax.set_ylabel("ms")
    ax.set_title(f"GET /api/sessions with {STREAMS} open SSE streams", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summary_rows(result: dict) -> list[list[str]]:
    r = result["results"]
    streams = r[f"with_{STREAMS}_streams_ms"]
    return [[f"GET /api/sessions with {STREAMS} open SSE streams", f"{streams['n']} sequential requests",
             f"p50 {streams['p50']} ms; p99 {streams['p99']} ms (no streams: p99 {r['no_streams_ms']['p99']} ms)",
             f"{r['load']['loadavg_before'][0]}"]]
