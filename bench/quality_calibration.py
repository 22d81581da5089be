"""False-warning rate of the transcript quality checks on clean recordings.

Runs the real offline stages (faster-whisper tiny.en, the built-in diarizer) and the
joiner's merge on each recording, then services/joiner/quality.py with the default
thresholds, and reports every warning and the statistics the thresholds sit against.
Tuned on: AMI train excerpts trn00-09 and the short espeak-ng dialogue. Held out: AMI
dev00/dev01, jfk.flac, pyannote_sample.wav, two generated 2-minute sessions (seeds 3, 4)
and two blind-set scripts (tests/data/blind_clinical 01, 16) voiced with
espeak-ng. "should_warn": jfk with 40 s of silence inserted, a French espeak-ng dialogue.

    .venv/bin/python -m bench.quality_calibration   # -> bench/results/quality_calibration.json
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path

from bench.common import DATA, envelope, write_json
from shared.audio import decode_audio
from shared.contracts.events import DiarizationReady, TranscriptReady
from services.joiner.join import build_merged
from services.joiner.quality import QualityInput, QualityThresholds, _runs, _segment_confidence, _words, check_transcript

NAME = "quality_calibration"
CACHE = Path("/tmp/tb-quality-calibration")


def recordings() -> list[tuple[str, str, Path]]:
    """(name, tuned|held_out, path)."""
    from tests.audio_gen import generate_dialogue, long_session, short_dialogue

    out = [(f"ami_trn{i:02d}", "tuned", DATA / "ami_train" / f"trn{i:02d}.wav") for i in range(10)]
    out.append(("espeak_short", "tuned", generate_dialogue(short_dialogue(), uri="short").wav))
    out += [("ami_dev00", "held_out", DATA / "ami_dev00.wav"), ("ami_dev01", "held_out", DATA / "ami_dev01.wav"),
            ("jfk", "held_out", DATA / "jfk.flac"), ("pyannote_sample", "held_out", DATA / "pyannote_sample.wav")]
    for seed in (3, 4):
        out.append((f"espeak_session_s{seed}", "held_out",
                    generate_dialogue(long_session(2.0, 2, seed=seed), seed=seed, uri=f"s{seed}").wav))
    for sid in ("01", "16"):  # written blind for issue 14: individual and couple, 3 min each
        script = json.loads((DATA / "blind_clinical" / f"session_{sid}.json").read_text())
        turns = [(line["speaker"], line["text"]) for line in script["lines"]]
        out.append((f"blind_session_{sid}", "held_out", generate_dialogue(turns, uri=f"blind{sid}").wav))
    return out + troubled()


FRENCH = [("a", "Bonjour, comment allez-vous depuis la dernière fois que nous nous sommes vus ?"),
          ("b", "Pas très bien, je dors mal et je pense beaucoup au travail le soir."),
          ("a", "Qu'est-ce qui vous empêche de dormir, à votre avis ?"),
          ("b", "Mon responsable me donne toujours plus de travail et je m'inquiète la nuit."),
          ("a", "Avez-vous essayé l'exercice de respiration dont nous avons parlé la semaine dernière ?"),
          ("b", "Oui, deux fois, et cela m'a un peu aidé, mais j'ai oublié les autres soirs.")]


def troubled() -> list[tuple[str, str, Path]]:
    """Recordings that should warn (split "should_warn"): sensitivity, not false alarms."""
    from tests.audio_gen import generate_dialogue, write_wav
    import numpy as np

    jfk = decode_audio(DATA / "jfk.flac")
    gap = CACHE / "jfk_gap40.wav"
    if not gap.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        quiet = np.random.default_rng(1).standard_normal(40 * 16000).astype(np.float32) * 1e-3
        write_wav(gap, np.concatenate([jfk, quiet, jfk]))
    french = generate_dialogue(FRENCH, voices={"a": ("fr", 40, 160), "b": ("fr+f3", 70, 150)}, uri="fr").wav
    return [("jfk_gap40", "should_warn", gap), ("espeak_french", "should_warn", french)]


def reference_speech(name: str, path: Path) -> list[tuple[float, float]] | None:
    """Where the reference says someone speaks (AMI RTTM, generated lines), to judge
    long_silence and text_in_silence warnings; None when there is no reference."""
    from services.gateway.rttm import parse_rttm

    if name.startswith("ami_"):
        rttm = DATA / ("ami_train/ami_train.rttm" if "trn" in name else "ami_dev.rttm")
        uri = name.removeprefix("ami_")
        return [(t.start, t.end) for t in parse_rttm(rttm.read_text()).get(uri, [])]
    if name.startswith(("espeak", "blind")) and path.with_suffix(".json").exists():
        return [(line["start"], line["end"]) for line in json.loads(path.with_suffix(".json").read_text())["lines"]]
    return None


def speech_inside(spans: list[tuple[float, float]] | None, start: float | None, end: float | None) -> float | None:
    if spans is None or start is None or end is None:
        return None
    return round(sum(max(0.0, min(e, end) - max(s, start)) for s, e in spans), 2)


def stages(name: str, path: Path, models: dict) -> tuple[dict, dict]:
    """transcript.ready- and diarization.ready-like payloads, cached by name."""
    cached = CACHE / f"{name}.json"
    if cached.exists():
        data = json.loads(cached.read_text())
        return data["transcript"], data["diarization"]
    audio = decode_audio(path)
    if not models:  # loaded on the first recording not in the cache
        from services.diarizer.diarization import BuiltinDiarizer, DiarizerConfig
        from services.transcriber.transcription import WhisperConfig, WhisperTranscriber

        models.update(asr=WhisperTranscriber(WhisperConfig()), dia=BuiltinDiarizer(DiarizerConfig(num_threads=2)))
        models["dia"].load()
    result = models["asr"].transcribe(audio)
    dia = models["dia"].diarize(audio)
    transcript = {"language": result.language, "language_probability": result.language_probability,
                  "duration_s": result.duration_s, "segments": [s.model_dump(mode="json") for s in result.segments]}
    diarization = {"turns": [t.model_dump(mode="json") if hasattr(t, "model_dump") else dict(t) for t in dia.turns]}
    CACHE.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps({"transcript": transcript, "diarization": diarization}))
    return transcript, diarization


def evaluate(transcript: dict, diarization: dict, t: QualityThresholds, requested: str | None = None) -> dict:
    sid = uuid.uuid4()
    now = "2026-01-01T00:00:00Z"
    timing = {"started_at": now, "finished_at": now, "processing_s": 0, "audio_s": 0, "rtf": 0}
    ready = TranscriptReady(session_id=sid, engine={"backend": "faster-whisper"}, timing=timing, **transcript)
    dia = DiarizationReady(session_id=sid, turns=diarization["turns"], speaker_count=2,
                           engine={"backend": "builtin"}, timing=timing)
    merged = build_merged(sid, ready, ready.segments, dia, 1, [])
    data = QualityInput(segments=ready.segments, merged=merged.segments, turns=dia.turns, duration_s=ready.duration_s,
                        language=ready.language, language_probability=ready.language_probability,
                        requested_language=requested)
    warnings = check_transcript(data, t)
    return {"warnings": [w.model_dump() for w in warnings], "stats": statistics_of(ready, merged, t)}


def statistics_of(ready: TranscriptReady, merged, t: QualityThresholds) -> dict:
    words = _words(ready.segments)
    gaps = [b.start - a.end for a, b in zip(words, words[1:])] + ([words[0].start] if words else [])
    rates = [len(r) * 60 / (r[-1].end - r[0].start) for r in _runs(_words(merged.segments), t.wpm_run_gap_s)
             if r[-1].end - r[0].start >= t.wpm_min_run_s]
    conf = [c for c in (_segment_confidence(s) for s in ready.segments) if c is not None]
    return {
        "words": len(words), "max_gap_s": round(max(gaps, default=0.0), 2),
        "wpm_runs": [round(r) for r in rates],
        "min_segment_mean_p": round(min(conf, default=1.0), 3),
        "min_avg_logprob": min((s.avg_logprob for s in ready.segments if s.avg_logprob is not None), default=None),
        "max_no_speech_prob": max((s.no_speech_prob for s in ready.segments if s.no_speech_prob is not None), default=None),
        "max_compression_ratio": max((s.compression_ratio for s in ready.segments if s.compression_ratio), default=None),
    }


def main() -> None:
    models: dict = {}
    t = QualityThresholds()
    started = time.time()
    rows = []
    cached_only = "--cached-only" in sys.argv  # re-score the cached stages only (no inference)
    for name, split, path in recordings():
        if cached_only and not (CACHE / f"{name}.json").exists():
            continue
        transcript, diarization = stages(name, path, models)
        row = {"recording": name, "split": split, "duration_s": round(transcript["duration_s"], 1),
               **evaluate(transcript, diarization, t)}
        if name == "espeak_french":  # as uploaded with language=fr
            row["warnings_with_fr_requested"] = evaluate(transcript, diarization, t, "fr")["warnings"]
        reference = reference_speech(name, path)
        for w in row["warnings"]:
            w["reference_speech_in_span_s"] = speech_inside(reference, w["start_s"], w["end_s"])
        rows.append(row)
        print(name, split, len(row["warnings"]), [w["kind"] for w in row["warnings"]], row["stats"], file=sys.stderr)
    summary = {}
    for split in ("tuned", "held_out", "should_warn"):
        part = [r for r in rows if r["split"] == split]
        minutes = sum(r["duration_s"] for r in part) / 60
        n = sum(len(r["warnings"]) for r in part)
        summary[split] = {"recordings": len(part), "minutes": round(minutes, 1), "warnings": n,
                          "recordings_with_warnings": sum(1 for r in part if r["warnings"]),
                          "warnings_per_hour": round(n / minutes * 60, 2) if minutes else None}
    write_json(NAME, {**envelope(NAME, {"thresholds": vars(t)}, started), "summary": summary, "recordings": rows})
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
