"""Transcriber: real-time factor, WER and peak memory on jfk.flac and ~5 minutes of
generated two-speaker speech. Each input is measured in a fresh child process."""

from __future__ import annotations

import time
from pathlib import Path

from bench.common import DATA, JFK_TEXT, envelope, median, run_child, wer

NAME = "transcription"
SESSION_MINUTES = 5
SEED = 1


def inputs() -> list[dict]:
    from tests.audio_gen import generate_dialogue, long_session

    gen = generate_dialogue(long_session(SESSION_MINUTES, 2, seed=SEED), seed=SEED)
    return [
        {"name": "jfk", "audio": str(DATA / "jfk.flac"), "reference": JFK_TEXT, "kind": "real"},
        {"name": f"generated_{SESSION_MINUTES}min_2spk", "audio": str(gen.wav), "reference": gen.reference_text,
         "kind": "generated", "script": f"long_session({SESSION_MINUTES}, 2, seed={SEED})"},
    ]


def run(quick: bool) -> dict:
    started = time.time()
    reps = {"jfk": 1 if quick else 5}
    from services.transcriber.transcription import WhisperConfig

    cfg = WhisperConfig()
    rows = []
    for item in inputs():
        n = reps.get(item["name"], 1)
        r = run_child("transcribe", {"audio": item["audio"], "reps": n})
        proc = median(r["processing_s"])
        row = {
            "input": item["name"], "kind": item["kind"], "audio": Path(item["audio"]).name,
            "script": item.get("script"),
            "audio_s": round(r["audio_s"], 2), "reps": n,
            "processing_s": [round(x, 3) for x in r["processing_s"]],
            "processing_s_median": round(proc, 3),
            "rtf": round(proc / r["audio_s"], 4),
            "rtf_best": round(min(r["processing_s"]) / r["audio_s"], 4),
            "cpu_utilisation": round(median(r["cpu_s"]) / proc, 2) if proc else None,
            # CPU seconds of the process per audio second: less sensitive to other jobs on
            # the box than the wall-clock RTF (but counts both inference threads).
            "rtf_cpu": round(median(r["cpu_s"]) / r["audio_s"], 4),
            "wer": round(wer(item["reference"], r["text"]), 4),
            "reference_words": len(item["reference"].split()),
            "peak_rss_mb": r["peak_rss_mb"], "rss_after_load_mb": r["rss_after_load_mb"],
            "model_load_s": round(r["load_s"], 2), "decode_s": round(r["decode_s"], 3),
            "segments": r["segments"], "hypothesis_head": r["text"][:200],
            "load": r["load"],
        }
        print(f"  [transcription] {row['input']}: {row['audio_s']:.0f}s audio, rtf={row['rtf']:.3f} "
              f"wer={row['wer']:.3f} peak={row['peak_rss_mb']:.0f}MB load={r['load']['loadavg_before'][0]}", flush=True)
        rows.append(row)
    out = envelope(NAME, {
        "model": cfg.model, "compute_type": cfg.compute_type, "threads": cfg.threads,
        "beam_size": cfg.beam_size, "vad_filter": cfg.vad_filter, "quick": quick,
        "rtf": "transcribe() wall seconds / audio seconds, model loaded, audio decoded (median of reps)",
        "wer": "jiwer, lowercase, punctuation stripped",
        "peak_rss": "VmHWM of a fresh child process (imports + model + audio + inference; not ru_maxrss, which inherits the parent's peak at exec)",
    }, started)
    out["results"] = rows
    return out


def plot(result: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    rows = result["results"]
    fig, axes = plt.subplots(1, 3, figsize=(12, 4))
    labels = [f"{r['input']}\n({r['audio_s']:.0f} s)" for r in rows]
    for ax, key, title, fmt in (
        (axes[0], "rtf", "real-time factor (lower is faster)", "{:.3f}"),
        (axes[1], "wer", "WER", "{:.3f}"),
        (axes[2], "peak_rss_mb", "peak RSS of child (MB)", "{:.0f}"),
    ):
        vals = [r[key] for r in rows]
        bars = ax.bar(labels, vals, color=["#4c72b0", "#dd8452"][: len(vals)])
        for b, v in zip(bars, vals):
            ax.annotate(fmt.format(v), (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=9)
        ax.set_title(title, fontsize=10)
        ax.tick_params(axis="x", labelsize=8)
    m = result["machine"]
    fig.suptitle(f"Transcriber ({result['parameters']['model']}, {result['parameters']['compute_type']}, "
                 f"{result['parameters']['threads']} threads) - {m['cpu_count']} CPUs, load {m['load_average'][0]}",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summary_rows(result: dict) -> list[list[str]]:
    out = []
    for r in result["results"]:
        out.append([f"transcription: {r['input']}", f"{r['audio_s']:.0f} s",
                    f"RTF {r['rtf']:.3f} (CPU-s/audio-s {_rtf_cpu(r):.3f}); WER {r['wer']:.3f}; "
                    f"peak {r['peak_rss_mb']:.0f} MB",
                    f"{r['load']['loadavg_before'][0]}"])
    return out


def _rtf_cpu(r: dict) -> float:
    return r.get("rtf_cpu") or r["rtf"] * (r.get("cpu_utilisation") or 0)
