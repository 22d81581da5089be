"""ASR-shaped copies of the labelled blind sets: what the risk layer reads in production.

Why: the supervised risk layer (services/notes/risk_classifier.py) was trained on script
lines, but through the system it reads the transcriber's segments: fragments of a line
("Two weeks.", "in front of me."), split where whisper splits, with whisper's errors. On
the held-out set that doubled the false flags (docs/risk-blind3.md, round 5). This builds,
per labelled session, what the system would hand the detector: the session is voiced with
one espeak-ng voice per speaker (tests/audio_gen.py), transcribed by the shipped
transcriber (bundled tiny.en, word timings, windows past 5 minutes as the service cuts them), each word given to the scripted line being
spoken at its midpoint (the generator knows every line's audio span, so no diarizer is
needed), and each whisper segment split where the line changes, as the joiner splits at
speaker changes. Every fragment inherits its line's labels (episode lines and distractor
lines are remapped to fragment indices), which is also how the system-level scorer maps a
flag to a line.

Output: bench/data/asr_shaped/<set>.json, sessions in ``bench.risk_blind.load_blind``'s form
(lines carry ``line``: the script line index, and ``start``/``end``: audio times), so the
text-level scorer and the classifier trainer read them unchanged.

Run: nice -n 19 .venv/bin/python -m bench.asr_shaped SET [SET ...]   (set = tests/data/<set>)
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from bench.risk_blind import load_blind

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "data" / "asr_shaped"


def _line_at(lines, t: float) -> int:
    """The scripted line being spoken at ``t`` (else the nearest one in time)."""
    best, dist = 0, float("inf")
    for i, ln in enumerate(lines):
        d = 0.0 if ln.start <= t <= ln.end else min(abs(t - ln.start), abs(t - ln.end))
        if d < dist:
            best, dist = i, d
    return best


def fragments(segments, ref_lines) -> list[dict]:
    """Whisper segments split where the scripted line changes: [{line, start, end, text}]."""
    out: list[dict] = []
    for seg in segments:
        run: list = []
        run_line = None
        for w in seg.words:
            li = _line_at(ref_lines, (w.start + w.end) / 2)
            if run and li != run_line:
                out.append(_fragment(run_line, run))
                run = []
            run.append(w)
            run_line = li
        if run:
            out.append(_fragment(run_line, run))
    return [f for f in out if f["text"]]


def _fragment(line: int, words) -> dict:
    return {"line": line, "start": words[0].start, "end": words[-1].end, "text": "".join(w.word for w in words).strip()}


def shape(session: dict, frags: list[dict]) -> dict:
    """The session in load_blind's form with fragments as its lines and labels remapped."""
    src = session["lines"]
    lines = [{"speaker": src[f["line"]]["speaker"], "role": src[f["line"]]["role"], "text": f["text"],
              "line": f["line"], "start": f["start"], "end": f["end"]} for f in frags]
    of_line: dict[int, list[int]] = {}
    for k, f in enumerate(frags):
        of_line.setdefault(f["line"], []).append(k)
    episodes = [{**e, "lines": sorted(k for i in e["lines"] for k in of_line.get(i, []))} for e in session["episodes"]]
    distractors = [{**d, "line": k} for d in session.get("distractors", []) for k in of_line.get(d["line"], [])]
    return {**session, "lines": lines, "episodes": episodes, "distractors": distractors,
            "script_lines": len(src)}


def build(set_name: str, transcriber) -> dict:
    from services.transcriber.chunking import ChunkPolicy
    from tests.audio_gen import generate_dialogue

    folder = ROOT / "tests" / "data" / set_name
    raw = {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("session_*.json"))}
    out = []
    for seed, session in enumerate(load_blind(folder)):
        gen = generate_dialogue([(ln["speaker"], ln["text"]) for ln in raw[session["id"]]["lines"]], seed=seed,
                                uri=session["id"])
        result = transcriber.transcribe_file(gen.wav, ChunkPolicy())  # as the service: windows past 5 min
        out.append(shape(session, fragments(result.segments, gen.lines)))
        print(f"[asr-shaped] {set_name} {session['id']}: {len(session['lines'])} lines -> "
              f"{len(out[-1]['lines'])} fragments ({gen.duration_s:.0f} s audio, {result.processing_s:.0f} s)", flush=True)
    return {"set": set_name, "transcriber": transcriber.model_name, "sessions": out}


def load(set_name: str) -> list[dict]:
    return json.loads((OUT / f"{set_name}.json").read_text())["sessions"]


def main(sets: list[str]) -> None:
    from services.transcriber.transcription import WhisperConfig, WhisperTranscriber

    transcriber = WhisperTranscriber(WhisperConfig())
    OUT.mkdir(parents=True, exist_ok=True)
    for name in sets:
        t0 = time.monotonic()
        data = build(name, transcriber)
        data["build_s"] = round(time.monotonic() - t0, 1)
        (OUT / f"{name}.json").write_text(json.dumps(data, indent=1) + "\n")
        print(f"[asr-shaped] wrote {name} in {data['build_s']} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
