"""Long sessions (issue 16): bounded memory on a 2-hour recording, one session fanned out
over transcriber replicas, and whether the chunked path transcribes as well as one piece.

Parts (each also runnable alone: ``python -m bench.fanout --part NAME``; every part
writes var/bench-cache/fanout_parts/NAME.json and ``--merge`` builds the result from them):

- ``memory``: the transcriber's windowed path and the diarizer on the 2-hour recording,
  each in a fresh child process (bench.worker): peak RSS, wall time, per-chunk times.
- ``stack_1x2`` / ``stack_2x1``: the whole stack (bench.load.RunningStack), the 2-hour
  recording uploaded through the gateway, with 1 transcriber x 2 threads, then 2
  transcriber replicas x 1 thread: end-to-end wall time, per-service peak RSS, which
  replica did each chunk and how long it took, compute per stage.
- ``wer``: generated espeak-ng dialogues (exact references), one piece vs chunked.
- the simulated speed-up for N replicas from the measured per-chunk times, the per-chunk
  overhead measured in the 2-replica run, and the broker latency (bench/results/broker_latency.json)."""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import httpx

from bench.common import RESULTS, envelope, run_child, wer, write_json
from bench.load import MemorySampler, RunningStack, _login, _upload, _wait_all
from bench.long_recording import CACHE, DIALOGUE_SEEDS, dialogue, long_recording

NAME = "fanout"
PARTS = CACHE / "fanout_parts"
LIMIT_MB = 1536


def _save(part: str, data: dict) -> dict:
    PARTS.mkdir(parents=True, exist_ok=True)
    data["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    (PARTS / f"{part}.json").write_text(json.dumps(data, indent=1))
    return data


def part_memory(hours: float, which: str, timeout_s: float = 7200) -> dict:
    """Peak RSS of one worker's job on the long recording, in a fresh child process:
    ``split`` (the fan-out splitter), ``diarizer`` (decode + diarize the whole file) or
    ``transcriber`` (the windowed path, every chunk in one process, 2 threads). The
    transcriber reports after each chunk, so a run stopped by ``timeout_s`` still says how
    far it got and the peak so far (``complete`` false)."""
    path, meta = long_recording(hours)
    task = {"split": "split_file", "diarizer": "diarize", "transcriber": "transcribe_file"}[which]
    progress = CACHE / f"progress_{which}.json"
    progress.unlink(missing_ok=True)
    out = {"recording": meta["made_of"], "hours": hours, "task": task}
    try:
        r = run_child(task, {"audio": str(path), "progress_path": str(progress)}, timeout_s=timeout_s)
        r.pop("text", None)
        out.update(r, complete=True)
    except Exception as exc:  # noqa: BLE001 - a stopped run still reports how far it got
        out.update(complete=False, stopped=type(exc).__name__,
                   partial=json.loads(progress.read_text()) if progress.exists() else None)
    peak = out.get("peak_rss_mb") or (out.get("partial") or {}).get("peak_rss_mb")
    print(f"  [fanout] memory {which}: peak {peak} MB, complete={out['complete']}", flush=True)
    return _save(f"memory_{which}", out)


def part_wer(seeds: tuple[int, ...]) -> dict:
    rows = []
    for seed in seeds:
        gen = dialogue(seed)
        row = {"recording": f"generated dialogue seed {seed}", "audio_s": round(gen.duration_s, 1)}
        for mode, params in (("one_piece", {"one_piece": True}), ("chunked", {})):
            r = run_child("transcribe_file", {"audio": str(gen.wav), **params})
            row[mode] = {"wer": round(wer(gen.reference_text, r["text"]), 4), "processing_s": round(r["processing_s"][0], 1),
                         "chunks": len(r["chunk_s"]) or 1, "peak_rss_mb": r["peak_rss_mb"]}
        row["wer_difference"] = round(row["chunked"]["wer"] - row["one_piece"]["wer"], 4)
        print(f"  [fanout] WER seed {seed}: one piece {row['one_piece']['wer']}, chunked {row['chunked']['wer']}", flush=True)
        rows.append(row)
    # Seeds not re-run this time keep their earlier row (``--part wer --seeds 102`` adds one).
    earlier = PARTS / "wer.json"
    if earlier.exists():
        fresh = {r["recording"] for r in rows}
        rows = [r for r in json.loads(earlier.read_text())["rows"] if r["recording"] not in fresh] + rows
    rows.sort(key=lambda r: r["recording"])
    diffs = [r["wer_difference"] for r in rows]
    return _save("wer", {"rows": rows, "reference": "the dialogue script (tests/audio_gen.py), exact",
                         "mean_wer_difference": round(sum(diffs) / len(diffs), 4),
                         "max_wer_difference": max(diffs)})


async def _chunk_rows(database_url: str) -> dict:
    from sqlalchemy import select

    from shared.db.engine import create_session_factory
    from shared.db.tables import stage_jobs, transcript_chunks, transcript_fanouts
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(database_url)
    try:
        async with create_session_factory(engine)() as db:
            chunks = (await db.execute(select(transcript_chunks).order_by(transcript_chunks.c.idx))).mappings().all()
            fan = (await db.execute(select(transcript_fanouts))).mappings().one_or_none()
            jobs = (await db.execute(select(stage_jobs))).mappings().all()
    finally:
        await engine.dispose()
    return {"chunks": [{"index": c["idx"], "worker": c["worker"], "processing_s": c["processing_s"],
                        "done_at": c["updated_at"].timestamp()} for c in chunks],
            "fanout": None if fan is None else {"created_at": fan["created_at"].timestamp(),
                                                "updated_at": fan["updated_at"].timestamp(), "total": fan["total"]},
            "jobs": {j["stage"]: {"detail": j["detail"], "updated_at": j["updated_at"].timestamp()} for j in jobs}}


def part_stack(label: str, replicas: int, threads: int, hours: float) -> dict:
    path, meta = long_recording(hours)
    env = {"TB_WHISPER_THREADS": str(threads), "TB_REPLICAS_TRANSCRIBER": str(replicas)}
    with tempfile.TemporaryDirectory(prefix="tb-bench-fanout-") as td:
        with RunningStack(Path(td), env=env, replicas={"transcriber": replicas}) as running, \
                MemorySampler(running) as mem:
            with httpx.Client(base_url=running.base_url, timeout=30) as client:
                headers = _login(client)
            t0 = time.monotonic()
            upload = _upload(running.base_url, headers, path)
            t_up = time.monotonic()
            _wait_all(running.base_url, dict(headers), [upload], t0 + 4 * 3600, t0)
            wall = time.monotonic() - t_up
            rows = asyncio.run(_chunk_rows(running.database_url))
            crashes = list(running.stack.crashes)
    chunks = rows["chunks"]
    workers = sorted({c["worker"] for c in chunks})
    out = {"label": label, "replicas": replicas, "threads_per_replica": threads, "hours": hours,
           "loadavg_1min_at_end": round(__import__("os").getloadavg()[0], 1),
           "final_status": upload.get("final_status"), "upload_s": upload["upload_s"],
           "wall_s_upload_to_processed": round(wall, 1), "peak_rss_mb": mem.peaks(),
           "chunks": [{**c, "worker": workers.index(c["worker"])} for c in chunks],
           "chunks_per_replica": {i: sum(c["worker"] == w for c in chunks) for i, w in enumerate(workers)},
           "transcription_compute_s": round(sum(c["processing_s"] or 0 for c in chunks), 1),
           "transcription_wall_s": None if rows["fanout"] is None else
           round(rows["fanout"]["updated_at"] - rows["fanout"]["created_at"], 1),
           "stage_detail": {k: v["detail"] for k, v in rows["jobs"].items()},
           "service_crashes": crashes, "rss_series_mb": mem.series}
    print(f"  [fanout] {label}: {out['final_status']} in {out['wall_s_upload_to_processed']} s; "
          f"chunks per replica {out['chunks_per_replica']}; peak RSS {out['peak_rss_mb']}", flush=True)
    return _save(label, out)


def simulate(chunk_s: list[float], overhead_s: float, split_s: float, assemble_s: float,
             replicas: list[int]) -> list[dict]:
    """Transcription wall time for N replicas (one core each): the splitter, then the chunks
    taken in order by whichever replica is free first, each costing its measured compute plus
    the per-chunk overhead, then the assembly."""
    out = []
    for n in replicas:
        free = [0.0] * n
        for c in chunk_s:
            i = free.index(min(free))
            free[i] += c + overhead_s
        wall = split_s + max(free) + assemble_s
        out.append({"replicas": n, "wall_s": round(wall, 1)})
    base = out[0]["wall_s"]
    for row in out:
        row["speedup"] = round(base / row["wall_s"], 2)
    return out


def _per_chunk_overhead(chunks: list[dict]) -> float:
    """Median time a replica spends per chunk besides transcribing it (taking the work item,
    reading the chunk's audio, storing the result, the database, the progress tick)."""
    gaps = []
    for w in {c["worker"] for c in chunks}:
        mine = sorted((c for c in chunks if c["worker"] == w), key=lambda c: c["done_at"])
        gaps += [b["done_at"] - a["done_at"] - b["processing_s"] for a, b in zip(mine, mine[1:])]
    gaps.sort()
    return round(max(0.0, gaps[len(gaps) // 2]), 3) if gaps else 0.0


def simulation(parts: dict) -> dict | None:
    """The transcription wall time of the 2-hour recording for N replicas: its real chunk
    plan (the splitter's, measured on it), each chunk costing its audio length times the
    compute per audio second measured on the 2-replica stack run (1 thread per replica),
    plus the per-chunk overhead measured there and the broker hop; then the assembly."""
    two, split = parts.get("stack_2x1"), parts.get("memory_split")
    if not two or not two.get("chunks") or not split or not split.get("complete"):
        return None
    chunks = two["chunks"]
    rate = two["transcription_compute_s"] / (two["hours"] * 3600)  # compute s per audio s, 1 thread
    chunk_s = [round(length * rate, 2) for length in split["chunk_lengths_s"]]
    overhead = _per_chunk_overhead(chunks)
    first_start = min(c["done_at"] - c["processing_s"] for c in chunks)
    assemble_s = round(max(0.0, two["transcription_wall_s"] - (max(c["done_at"] for c in chunks) - first_start)), 1)
    broker = json.loads((RESULTS / "broker_latency.json").read_text())["results"]
    broker_ms = broker.get("latency_ms", {}).get("p50") if isinstance(broker, dict) else None
    # The splitter's CPU seconds: what it takes on a core of its own (its wall time here was
    # mostly waiting for a core on a machine at load 40-70).
    split_s = split["cpu_s"][0]
    return {"inputs": {"recording_hours": split.get("hours"), "chunks": len(chunk_s),
                       "compute_s_per_audio_s_1_thread": round(rate, 4), "per_chunk_overhead_s": overhead,
                       "split_s": round(split_s, 1), "fan_out_and_assembly_s": assemble_s,
                       "broker_latency_p50_ms": broker_ms, "load_during_stack_run": "see stack_2x1.load"},
            "assumes": "one core per replica (1 thread each, as measured); any free replica takes the next chunk "
                       "(a shared queue: Kafka's static partition assignment can leave one replica more chunks, "
                       "as the measured run shows); the diarizer runs alongside on its own core",
            "curve": simulate(chunk_s, overhead + (broker_ms or 0) / 1000, split_s, assemble_s,
                              [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64])}


def merge(quick: bool, started: float) -> dict:
    parts = {p.stem: json.loads(p.read_text()) for p in sorted(PARTS.glob("*.json"))}
    out = envelope(NAME, {"quick": quick, "limit_mb": LIMIT_MB,
                          "parts": {k: v.get("measured_at") for k, v in parts.items()}}, started)
    sim = simulation(parts)
    out["results"] = {**parts, "simulated": sim}
    return out


def run(quick: bool) -> dict:
    started = time.time()
    hours = 0.34 if quick else 2.0
    for old in PARTS.glob("*.json"):  # a fresh run: no part of an earlier one is merged
        old.unlink()
    for which in ("split", "diarizer", "transcriber"):
        part_memory(hours, which)
    part_stack("stack_1x2", 1, 2, hours)
    part_stack("stack_2x1", 2, 1, hours)
    part_wer(DIALOGUE_SEEDS[:1] if quick else DIALOGUE_SEEDS)
    return merge(quick, started)


def plot(result: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    r = result["results"]
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.5))
    ax = axes[0]  # peak memory per service
    series = {}
    for which in ("split", "transcriber", "diarizer"):
        m = r.get(f"memory_{which}")
        if m:
            peak = m.get("peak_rss_mb") or (m.get("partial") or {}).get("peak_rss_mb")
            series[f"child: {which}{'' if m['complete'] else ' (partial run)'}"] = peak or 0
    # A re-run (``--part stack_2x1 --label stack_2x1_rerun``) after a memory change shows its
    # peaks beside the timed runs'.
    for label in ("stack_1x2", "stack_2x1", "stack_2x1_rerun"):
        for svc, mb in sorted(r.get(label, {}).get("peak_rss_mb", {}).items()):
            series[f"{label}: {svc}"] = mb
    ax.barh(list(series), list(series.values()), color="tab:blue")
    ax.axvline(LIMIT_MB, color="red", linestyle="--", label="1.5 GB target")
    ax.set_xlabel("peak RSS (MB)")
    stack_h = r.get("stack_2x1", r.get("stack_1x2", {})).get("hours")
    child_h = r.get("memory_split", r.get("memory_transcriber", {})).get("hours")
    ax.set_title(f"peak memory (child: {child_h} h recording; stack: {stack_h} h)")
    ax.tick_params(axis="y", labelsize=7)
    ax.legend(fontsize=7)
    ax = axes[1]  # wall vs compute
    labels, walls, tw, comp = [], [], [], []
    for label in ("stack_1x2", "stack_2x1"):
        s = r.get(label)
        if s:
            labels.append(f"{s['replicas']} x {s['threads_per_replica']} thr")
            walls.append(s["wall_s_upload_to_processed"])
            tw.append(s.get("transcription_wall_s") or 0)
            comp.append(s["transcription_compute_s"])
    x = range(len(labels))
    ax.bar([i - 0.25 for i in x], walls, 0.25, label="end to end (upload done -> processed)")
    ax.bar(list(x), tw, 0.25, label="transcription wall (fan-out -> assembled)")
    ax.bar([i + 0.25 for i in x], comp, 0.25, label="sum of chunk compute")
    ax.set_xticks(list(x), labels)
    ax.set_ylabel("seconds")
    ax.set_title(f"{stack_h} h session through the stack, 2 cores (shared: see load)")
    ax.legend(fontsize=7)
    ax = axes[2]  # simulated curve
    sim = r.get("simulated")
    if sim:
        ns = [c["replicas"] for c in sim["curve"]]
        ax.plot(ns, [c["speedup"] for c in sim["curve"]], "o-", label="simulated")
        ax.plot(ns, ns, ":", color="grey", label="ideal")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.set_xlabel("replicas (1 core each)")
        ax.set_ylabel("transcription speed-up")
        ax.set_title(f"simulated: {sim['inputs']['chunks']} chunks")
        ax.legend(fontsize=7)
    ax = axes[3]  # WER
    rows = r.get("wer", {}).get("rows", [])
    names = [row["recording"].replace("generated dialogue ", "") for row in rows]
    x = range(len(rows))
    ax.bar([i - 0.2 for i in x], [row["one_piece"]["wer"] for row in rows], 0.4, label="one piece")
    ax.bar([i + 0.2 for i in x], [row["chunked"]["wer"] for row in rows], 0.4, label="chunked")
    ax.set_xticks(list(x), names)
    ax.set_ylabel("WER")
    ax.set_title("WER, generated dialogues (exact references)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summary_rows(result: dict) -> list[list[str]]:
    r = result["results"]
    rows = []
    load = result["machine"]["load_average"]
    for which in ("split", "transcriber", "diarizer"):
        m = r.get(f"memory_{which}")
        if m:
            peak = m.get("peak_rss_mb") or (m.get("partial") or {}).get("peak_rss_mb")
            rows.append([NAME, f"{m['hours']} h recording, {which} in a child process",
                         f"peak {peak} MB{'' if m['complete'] else ' (stopped early: ' + str((m.get('partial') or {}).get('message')) + ')'}",
                         load])
    for label in ("stack_1x2", "stack_2x1"):
        s = r.get(label)
        if s:
            peak = max(s["peak_rss_mb"].values()) if s["peak_rss_mb"] else None
            rows.append([NAME, f"{s['hours']} h through the stack, {s['replicas']} transcriber x "
                         f"{s['threads_per_replica']} thread(s)",
                         f"{s['final_status']} in {s['wall_s_upload_to_processed']} s; chunks per replica "
                         f"{s['chunks_per_replica']}; highest service peak {peak} MB", load])
    if r.get("wer"):
        diffs = [row["wer_difference"] for row in r["wer"]["rows"]]
        rows.append([NAME, f"{len(diffs)} generated dialogues", f"WER chunked - one piece: {diffs}", load])
    if r.get("simulated"):
        curve = {c["replicas"]: c["speedup"] for c in r["simulated"]["curve"]}
        rows.append([NAME, "simulated N replicas", f"speed-up at 2/4/8/16: {curve.get(2)}/{curve.get(4)}/"
                     f"{curve.get(8)}/{curve.get(16)}", load])
    return rows


def main(argv: list[str] | None = None) -> int:
    import matplotlib

    matplotlib.use("Agg")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=["memory_split", "memory_diarizer", "memory_transcriber", "stack_1x2",
                                       "stack_2x1", "wer"])
    ap.add_argument("--timeout", type=float, default=7200)
    ap.add_argument("--seeds", default=",".join(str(s) for s in DIALOGUE_SEEDS))
    ap.add_argument("--merge", action="store_true", help="build bench/results/fanout.json from the saved parts")
    ap.add_argument("--hours", type=float, default=2.0)
    ap.add_argument("--label", help="save a stack part under another name (a re-run beside the timed one)")
    args = ap.parse_args(argv)
    started = time.time()
    if args.part and args.part.startswith("memory_"):
        part_memory(args.hours, args.part.removeprefix("memory_"), args.timeout)
    elif args.part in ("stack_1x2", "stack_2x1"):
        n = 1 if args.part == "stack_1x2" else 2
        part_stack(args.label or args.part, n, 2 // n, args.hours)
    elif args.part == "wer":
        part_wer(tuple(int(x) for x in args.seeds.split(",")))
    if args.merge or args.part is None:
        result = merge(False, started) if args.merge else run(False)
        write_json(NAME, result)
        plot(result, RESULTS / f"{NAME}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
