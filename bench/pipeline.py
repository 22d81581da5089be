"""End to end, parallel versus sequential: transcribe + diarize one ~5-minute generated
two-speaker session

- sequentially in one process (transcribe, then diarize),
- concurrently on two threads of one process,
- concurrently in two processes (how the services run: one transcriber, one diarizer,
  each loads its model first, then both start on a common signal).

Models are loaded before the clock starts in every mode (services load once at start-up).
Speed-up = sequential wall / parallel wall. Each stage is configured with its default
2 threads, so the parallel modes run 4 compute threads on the 2 cores.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import ROOT, LoadSampler, child_env, envelope, run_child

NAME = "pipeline"
SESSION_MINUTES = 5
SEED = 1


def _session():
    from tests.audio_gen import generate_dialogue, long_session

    return generate_dialogue(long_session(SESSION_MINUTES, 2, seed=SEED), seed=SEED)


def _two_processes(audio: str) -> dict:
    """Two fresh stage processes; both load, report READY, then get GO at the same time."""
    with tempfile.TemporaryDirectory(prefix="tb-bench-pipe-") as td:
        procs, outs = [], []
        for stage in ("transcribe", "diarize"):
            out = Path(td) / f"{stage}.json"
            outs.append(out)
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "bench.worker", "stage_wait", json.dumps({"audio": audio, "stage": stage}), str(out)],
                cwd=ROOT, env=child_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            ))
        try:
            for p in procs:
                line = p.stdout.readline()
                if "READY" not in line:
                    raise RuntimeError(f"stage process did not start: {line!r}")
            with LoadSampler() as load:
                t0 = time.monotonic()
                for p in procs:
                    p.stdin.write("GO\n")
                    p.stdin.flush()
                for p in procs:
                    if p.wait(timeout=3600) != 0:
                        raise RuntimeError("stage process failed")
                parent_wall = time.monotonic() - t0
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        res = {o.stem: json.loads(o.read_text()) for o in outs}
    start = min(r["start"] for r in res.values())
    end = max(r["end"] for r in res.values())
    return {
        "mode": "processes", "audio_s": res["transcribe"]["audio_s"], "wall_s": end - start,
        "parent_observed_wall_s": parent_wall,
        "transcribe_s": res["transcribe"]["end"] - res["transcribe"]["start"],
        "diarize_s": res["diarize"]["end"] - res["diarize"]["start"],
        "start_skew_s": abs(res["transcribe"]["start"] - res["diarize"]["start"]),
        "cpu_s": res["transcribe"]["cpu_s"] + res["diarize"]["cpu_s"],
        "peak_rss_mb": {"transcriber": res["transcribe"]["peak_rss_mb"], "diarizer": res["diarize"]["peak_rss_mb"]},
        "speaker_count": res["diarize"]["speaker_count"], "words": res["transcribe"]["words"],
        "load": load.summary(),
    }


def run(quick: bool) -> dict:
    started = time.time()
    gen = _session()
    audio = str(gen.wav)
    modes = []
    for label, fn in (
        ("sequential", lambda: run_child("pipeline_seq", {"audio": audio}, timeout_s=7200)),
        ("threads", lambda: run_child("pipeline_threads", {"audio": audio}, timeout_s=7200)),
        ("processes", lambda: _two_processes(audio)),
    ):
        r = fn()
        r = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}
        r["rtf_end_to_end"] = round(r["wall_s"] / r["audio_s"], 4)
        r["cpu_utilisation"] = round(r["cpu_s"] / r["wall_s"], 2) if r["wall_s"] else None
        print(f"  [pipeline] {label}: wall={r['wall_s']:.1f}s (transcribe {r['transcribe_s']:.1f}s, "
              f"diarize {r['diarize_s']:.1f}s) rtf={r['rtf_end_to_end']:.3f} load={r['load']['loadavg_before'][0]}",
              flush=True)
        modes.append(r)
    seq = modes[0]["wall_s"]
    summary = {
        "sequential_wall_s": seq,
        "threads_wall_s": modes[1]["wall_s"],
        "processes_wall_s": modes[2]["wall_s"],
        "speedup_threads": round(seq / modes[1]["wall_s"], 3),
        "speedup_processes": round(seq / modes[2]["wall_s"], 3),
        "ideal_speedup": round(seq / max(modes[0]["transcribe_s"], modes[0]["diarize_s"]), 3),
    }
    print(f"  [pipeline] speed-up threads x{summary['speedup_threads']}, processes x{summary['speedup_processes']} "
          f"(ideal with free cores x{summary['ideal_speedup']})", flush=True)
    out = envelope(NAME, {
        "session": f"long_session({SESSION_MINUTES}, 2, seed={SEED})", "audio": Path(audio).name,
        "audio_s": round(gen.duration_s, 2), "quick": quick,
        "stages": "WhisperTranscriber(WhisperConfig()) + BuiltinDiarizer(DiarizerConfig()), 2 threads each",
        "wall": "first stage start to last stage end, models loaded and audio decoded beforehand",
        "ideal_speedup": "sequential wall / longest single stage (what unlimited cores would give)",
    }, started)
    out["results"] = modes
    out["summary"] = summary
    return out


def plot(result: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    modes = result["results"]
    fig, ax = plt.subplots(figsize=(9, 3.8))
    for i, m in enumerate(modes):
        if m["mode"] == "sequential":
            ax.barh(i, m["transcribe_s"], color="#4c72b0", label="transcribe")
            ax.barh(i, m["diarize_s"], left=m["transcribe_s"], color="#dd8452", label="diarize")
        else:
            ax.barh(i + 0.18, m["transcribe_s"], height=0.35, color="#4c72b0")
            ax.barh(i - 0.18, m["diarize_s"], height=0.35, color="#dd8452")
        ax.annotate(f"wall {m['wall_s']:.1f} s", (m["wall_s"], i), xytext=(4, -3), textcoords="offset points", fontsize=9)
    ax.set_yticks(range(len(modes)), [m["mode"] for m in modes])
    ax.set_xlabel("seconds")
    s = result["summary"]
    ax.set_title(f"{result['parameters']['audio_s']:.0f} s session: speed-up threads x{s['speedup_threads']:.2f}, "
                 f"processes x{s['speedup_processes']:.2f} (load {result['machine']['load_average'][0]}, "
                 f"{result['machine']['cpu_count']} CPUs)", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_xlim(0, max(m["wall_s"] for m in modes) * 1.25)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summary_rows(result: dict) -> list[list[str]]:
    rows = [[f"pipeline: {m['mode']}", f"{m['audio_s']:.0f} s",
             f"wall {m['wall_s']:.1f} s (transcribe {m['transcribe_s']:.1f} s, diarize {m['diarize_s']:.1f} s); "
             f"end-to-end RTF {m['rtf_end_to_end']:.3f}", f"{m['load']['loadavg_before'][0]}"] for m in result["results"]]
    s = result["summary"]
    rows.append(["pipeline: speed-up", "", f"threads x{s['speedup_threads']:.2f}; processes x{s['speedup_processes']:.2f}; "
                 f"ideal x{s['ideal_speedup']:.2f}", ""])
    return rows
