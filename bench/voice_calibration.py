"""Calibrates the enrolled-voice threshold (issue 14 item 4, ADR 0010): cosine similarity
between an enrolment embedding (one espeak-ng voice reading the enrolment sentences) and
the per-speaker centroids the built-in diarizer computes on generated 3-speaker sessions
(different sentences), for the same voice and for different voices.

Tuned-on: the six palette voices of tests/audio_gen.py in rotated roles (sessions seeds
0-2). Held-out: espeak-ng voices that are not in the palette, in sessions seed 3-4, never
used to choose the threshold. Writes bench/results/voice_calibration.json.

    .venv/bin/python -m bench.voice_calibration
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from bench.common import envelope, write_json

PALETTE_SESSIONS = [  # (seed, voices of therapist, client, partner) as palette indices
    (0, (0, 1, 2)), (1, (3, 4, 5)), (2, (2, 5, 0)), (5, (1, 3, 4)),
]
HELD_OUT_VOICES = [("en-us+m5", 45, 150), ("en-gb+f2", 65, 160), ("en-gb-x-gbcwmd+m4", 30, 170),
                   ("en+f5", 80, 145), ("en-us+m2", 60, 175), ("en-gb-scotland+f3", 70, 155)]
HELD_OUT_SESSIONS = [(3, (0, 1, 2)), (4, (3, 4, 5))]
# tests/e2e/test_named_therapist.py's 3-speaker session (therapist, client, partner voices 2, 1, 3)
QUICK_SESSIONS = [(21, (2, 1, 3))]


def _true_speaker(turns, label, ref) -> str:
    """The reference speaker overlapping the diarized label's turns most."""
    acc: dict[str, float] = {}
    for t in turns:
        if t.speaker != label:
            continue
        for s, e, spk in ref:
            acc[spk] = acc.get(spk, 0.0) + max(0.0, min(e, t.end) - max(s, t.start))
    return max(acc, key=acc.get) if acc else "?"


def measure(diarizer, voices, sessions) -> tuple[list[float], list[float], list[dict]]:
    from services.diarizer.voices import similarities
    from tests.audio_gen import generate_dialogue, long_session
    from tests.voice_samples import enrolment_sample

    if not sessions:
        return [], [], []
    enrol = {v: diarizer.voice_embedding(enrolment_sample(v).load_audio()) for v in voices}
    same, diff, rows = [], [], []
    for seed, idx in sessions:
        script = long_session(1.5 if seed == 21 else 2.0, 3, seed=seed)
        vmap = {"therapist": voices[idx[0]], "client": voices[idx[1]], "partner": voices[idx[2]]}
        gen = generate_dialogue(script, voices=vmap, seed=seed)
        result = diarizer.diarize(gen.load_audio())
        truth = {label: vmap.get(_true_speaker(result.turns, label, gen.turns)) for label in result.centroids}
        for v, emb in enrol.items():
            for label, sim in similarities(result.centroids, emb).items():
                (same if truth[label] == v else diff).append(sim)
                rows.append({"seed": seed, "enrolled": v[0], "speaker_voice": truth[label] and truth[label][0],
                             "similarity": round(sim, 4)})
                print(json.dumps(rows[-1]), flush=True)  # partial results survive an interrupted run
    return same, diff, rows


def _summary(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    a = np.array(values)
    return {"n": len(a), "min": round(float(a.min()), 4), "p05": round(float(np.percentile(a, 5)), 4),
            "median": round(float(np.median(a)), 4), "p95": round(float(np.percentile(a, 95)), 4),
            "max": round(float(a.max()), 4)}


def main() -> None:
    from services.diarizer.diarization import BuiltinDiarizer
    from tests.audio_gen import VOICE_PALETTE

    started = time.time()
    diarizer = BuiltinDiarizer()
    diarizer.load()
    quick = "--quick" in sys.argv  # the e2e test's two sessions only (a loaded machine)
    same, diff, rows = measure(diarizer, VOICE_PALETTE, QUICK_SESSIONS if quick else PALETTE_SESSIONS)
    h_same, h_diff, h_rows = measure(diarizer, HELD_OUT_VOICES, [] if quick else HELD_OUT_SESSIONS)
    threshold = round((min(same) + max(diff)) / 2, 3)
    out = envelope("voice_calibration", {"palette_sessions": PALETTE_SESSIONS, "held_out_voices": HELD_OUT_VOICES,
                                          "held_out_sessions": HELD_OUT_SESSIONS}, started)
    out.update({
        "tuned_on": {"same_voice": _summary(same), "different_voice": _summary(diff)},
        "held_out": {"same_voice": _summary(h_same), "different_voice": _summary(h_diff)},
        "threshold_midpoint_tuned": threshold,
        "held_out_errors_at_threshold": {
            "missed_same": int(sum(s < threshold for s in h_same)), "false_different": int(sum(d >= threshold for d in h_diff))},
        "rows": rows + [{**r, "held_out": True} for r in h_rows],
    })
    path = write_json("voice_calibration", out)
    print(path)
    for k in ("tuned_on", "held_out"):
        print(k, out[k])
    print("threshold (midpoint of the tuned-on gap):", threshold, out["held_out_errors_at_threshold"])


if __name__ == "__main__":
    main()
