"""Built-in diarizer: DER (collar 0.25 and 0, overlap scored) per reference file,
speaker-count accuracy, real-time factor and peak memory, on the reference excerpts and on
generated two-speaker sessions of 1, 10 and 30 minutes (--quick skips 30). Each input is
measured in a fresh child process (model load excluded from the RTF)."""

from __future__ import annotations

import time
from pathlib import Path

from bench.common import DATA, der, envelope, median, read_uem, run_child

NAME = "diarization"
SEED = 1
RTF_GOAL_10MIN = 0.05
PEAK_GOAL_MB = 1024
COLLARS = (0.25, 0.0)


def inputs(quick: bool) -> list[dict]:
    from services.gateway.rttm import parse_rttm
    from tests.audio_gen import generate_dialogue, long_session

    items = []
    sample = parse_rttm((DATA / "pyannote_sample.rttm").read_text())["sample"]
    items.append({"name": "pyannote_sample", "kind": "reference", "audio": DATA / "pyannote_sample.wav",
                  "ref": sample, "uem": None})
    ami = parse_rttm((DATA / "ami_dev.rttm").read_text())
    uems = read_uem(DATA / "ami_dev.uem")
    for uri in ("dev00", "dev01"):
        items.append({"name": f"ami_{uri}", "kind": "reference", "audio": DATA / f"ami_{uri}.wav",
                      "ref": ami[uri], "uem": uems.get(uri)})
    for minutes in (1, 10) if quick else (1, 10, 30):
        gen = generate_dialogue(long_session(minutes, 2, seed=SEED), seed=SEED)
        items.append({"name": f"generated_{minutes}min", "kind": "generated", "minutes": minutes,
                      "audio": gen.wav, "ref": gen.turns, "uem": None,
                      "script": f"long_session({minutes}, 2, seed={SEED})"})
    return items


def _ref_speakers(item) -> int:
    turns = item["ref"]
    uem = item["uem"]
    spk = set()
    for t in turns:
        start, end, s = (t.start, t.end, t.speaker) if hasattr(t, "speaker") else t
        if uem is None or any(start < seg.end and end > seg.start for seg in uem):
            spk.add(s)
    return len(spk)


def run(quick: bool) -> dict:
    started = time.time()
    from services.diarizer.diarization import DiarizerConfig

    cfg = DiarizerConfig()
    rows = []
    for item in inputs(quick):
        reps = 1 if (quick or item["kind"] == "generated") else 3
        r = run_child("diarize", {"audio": str(item["audio"]), "reps": reps}, timeout_s=7200)
        proc = median(r["processing_s"])
        ders = {f"collar_{c}": der(item["ref"], r["turns"], item["uem"], collar=c) for c in COLLARS}
        ref_n = _ref_speakers(item)
        row = {
            "input": item["name"], "kind": item["kind"], "audio": Path(item["audio"]).name,
            "script": item.get("script"), "uem": bool(item["uem"]),
            "audio_s": round(r["audio_s"], 2), "reps": reps,
            "processing_s": [round(x, 3) for x in r["processing_s"]],
            "processing_s_median": round(proc, 3),
            "rtf": round(proc / r["audio_s"], 4),
            "rtf_best": round(min(r["processing_s"]) / r["audio_s"], 4),
            "cpu_utilisation": round(median(r["cpu_s"]) / proc, 2) if proc else None,
            # CPU seconds of the process per audio second: less sensitive to other jobs on
            # the box than the wall-clock RTF (but counts both inference threads).
            "rtf_cpu": round(median(r["cpu_s"]) / r["audio_s"], 4),
            "der_collar_0.25": ders["collar_0.25"]["der"], "der_collar_0": ders["collar_0.0"]["der"],
            "der_detail": ders,
            "speakers_ref": ref_n, "speakers_hyp": r["speaker_count"],
            "speaker_count_correct": ref_n == r["speaker_count"],
            "peak_rss_mb": r["peak_rss_mb"], "rss_after_load_mb": r["rss_after_load_mb"],
            "model_load_s": round(r["load_s"], 2), "decode_s": round(r["decode_s"], 3),
            "diarizer_stats": r["stats"], "load": r["load"],
        }
        print(f"  [diarization] {row['input']}: {row['audio_s']:.0f}s rtf={row['rtf']:.4f} "
              f"DER@0.25={row['der_collar_0.25']:.3f} DER@0={row['der_collar_0']:.3f} "
              f"spk {row['speakers_hyp']}/{row['speakers_ref']} peak={row['peak_rss_mb']:.0f}MB "
              f"load={r['load']['loadavg_before'][0]}", flush=True)
        rows.append(row)

    gen = sorted((r for r in rows if r["kind"] == "generated"), key=lambda r: r["audio_s"])
    ten = next((r for r in gen if r["input"] == "generated_10min"), None)
    correct = [r["speaker_count_correct"] for r in rows]
    summary = {
        "speaker_count_accuracy": round(sum(correct) / len(correct), 3),
        "speaker_count_accuracy_reference": _acc([r for r in rows if r["kind"] == "reference"]),
        "speaker_count_accuracy_generated": _acc(gen),
        "mean_der_reference_collar_0.25": _mean([r["der_collar_0.25"] for r in rows if r["kind"] == "reference"]),
        "mean_der_reference_collar_0": _mean([r["der_collar_0"] for r in rows if r["kind"] == "reference"]),
        "rtf_falls_with_length": all(a["rtf"] >= b["rtf"] for a, b in zip(gen, gen[1:])),
        "rtf_10min": ten["rtf"] if ten else None,
        "rtf_10min_goal": RTF_GOAL_10MIN,
        "rtf_10min_meets_goal": (ten["rtf"] <= RTF_GOAL_10MIN) if ten else None,
        "max_peak_rss_mb": max(r["peak_rss_mb"] for r in rows),
        "peak_rss_goal_mb": PEAK_GOAL_MB,
        "peak_rss_meets_goal": all(r["peak_rss_mb"] <= PEAK_GOAL_MB for r in rows),
    }
    out = envelope(NAME, {
        "backend": "builtin (segmentation-3.0 + silero-vad + resemblyzer + AHC, speaker-change cuts; DiarizerConfig defaults, chosen by bench.diarization_quality)",
        "num_threads": cfg.num_threads, "num_speakers": None, "quick": quick,
        "der": "pyannote.metrics DiarizationErrorRate, skip_overlap=False, collars 0.25 and 0; AMI scored inside the UEM",
        "rtf": "diarize() wall seconds / audio seconds, model loaded, audio decoded (median of reps)",
        "peak_rss": "VmHWM of a fresh child process (imports + models + audio + inference; not ru_maxrss, which inherits the parent's peak at exec)",
        "generated": f"tests.audio_gen long_session(minutes, 2, seed={SEED}), espeak-ng voices",
    }, started)
    out["results"] = rows
    out["summary"] = summary
    return out


def _acc(rows) -> float | None:
    return round(sum(r["speaker_count_correct"] for r in rows) / len(rows), 3) if rows else None


def _mean(xs) -> float | None:
    return round(sum(xs) / len(xs), 4) if xs else None


def plot(result: dict, path: Path) -> None:
    import matplotlib.pyplot as plt
    import numpy as np

    rows = result["results"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    # DER bars, both collars.
    ax = axes[0]
    x = np.arange(len(rows))
    w = 0.38
    a = ax.bar(x - w / 2, [r["der_collar_0.25"] for r in rows], w, label="collar 0.25 s")
    b = ax.bar(x + w / 2, [r["der_collar_0"] for r in rows], w, label="collar 0")
    for bars in (a, b):
        for bar in bars:
            h = bar.get_height()
            ax.annotate(f"{h:.2f}", (bar.get_x() + bar.get_width() / 2, h), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x, [f"{r['input']}\n{r['speakers_hyp']}/{r['speakers_ref']} spk" for r in rows], fontsize=7, rotation=20)
    ax.set_title("DER (hyp/ref speaker count under each bar)", fontsize=10)
    ax.legend(fontsize=8)
    # RTF vs length.
    ax = axes[1]
    for kind, marker in (("reference", "s"), ("generated", "o")):
        rs = sorted((r for r in rows if r["kind"] == kind), key=lambda r: r["audio_s"])
        if rs:
            ax.plot([r["audio_s"] / 60 for r in rs], [r["rtf"] for r in rs], marker=marker,
                    linestyle="-" if kind == "generated" else "none", label=kind)
            for r in rs:
                ax.annotate(f"{r['rtf']:.3f}", (r["audio_s"] / 60, r["rtf"]), fontsize=7,
                            textcoords="offset points", xytext=(3, 3))
    ax.axhline(RTF_GOAL_10MIN, color="red", linestyle="--", linewidth=0.8, label=f"goal {RTF_GOAL_10MIN} at 10 min")
    ax.set_xscale("log")
    ax.set_xlabel("audio length (min, log)")
    ax.set_ylabel("real-time factor")
    ax.set_title("RTF vs length (model load excluded)", fontsize=10)
    ax.legend(fontsize=8)
    # Peak memory.
    ax = axes[2]
    bars = ax.bar(range(len(rows)), [r["peak_rss_mb"] for r in rows], color="#55a868")
    for bar, r in zip(bars, rows):
        ax.annotate(f"{r['peak_rss_mb']:.0f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=7)
    ax.axhline(PEAK_GOAL_MB, color="red", linestyle="--", linewidth=0.8, label="goal 1 GB")
    ax.set_xticks(range(len(rows)), [r["input"] for r in rows], fontsize=7, rotation=20)
    ax.set_ylabel("MB")
    ax.set_title("peak RSS of a fresh child process", fontsize=10)
    ax.legend(fontsize=8)
    m = result["machine"]
    fig.suptitle(f"Built-in diarizer - {m['cpu_count']} CPUs, load {m['load_average'][0]} at end", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summary_rows(result: dict) -> list[list[str]]:
    out = []
    for r in result["results"]:
        out.append([f"diarization: {r['input']}", f"{r['audio_s']:.0f} s",
                    f"DER {r['der_collar_0.25']:.3f} (collar 0.25) / {r['der_collar_0']:.3f} (collar 0); "
                    f"speakers {r['speakers_hyp']}/{r['speakers_ref']}; RTF {r['rtf']:.4f} "
                    f"(CPU-s/audio-s {_rtf_cpu(r):.4f}); peak {r['peak_rss_mb']:.0f} MB",
                    f"{r['load']['loadavg_before'][0]}"])
    s = result["summary"]
    out.append(["diarization: summary", "",
                f"speaker-count accuracy {s['speaker_count_accuracy']:.2f}; "
                f"RTF at 10 min {s['rtf_10min']} (goal <= {s['rtf_10min_goal']}: "
                f"{'met' if s['rtf_10min_meets_goal'] else 'NOT met'}); RTF falls with length: "
                f"{'yes' if s['rtf_falls_with_length'] else 'no'}; max peak {s['max_peak_rss_mb']:.0f} MB "
                f"(goal <= 1024: {'met' if s['peak_rss_meets_goal'] else 'NOT met'})", ""])
    return out


def _rtf_cpu(r: dict) -> float:
    return r.get("rtf_cpu") or r["rtf"] * (r.get("cpu_utilisation") or 0)
