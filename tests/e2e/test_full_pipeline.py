"""The whole pipeline through separate processes on the real broker and PostgreSQL:
a generated two-speaker session with known turns, uploaded over HTTP, followed until
notes arrive; word speaker accuracy, roles and notes are measured against the script."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.audio_gen import generate_dialogue, short_dialogue


def word_speaker_accuracy(segments: list[dict], lines) -> tuple[float, dict[str, str]]:
    """Fraction of transcript words whose speaker maps to the reference speaker of the
    line they fall in (hypothesis labels mapped to reference speakers by majority)."""
    pairs = []
    for seg in segments:
        for word in seg["words"]:
            mid = (word["start"] + word["end"]) / 2
            ref = next((ln.speaker for ln in lines if ln.start - 0.05 <= mid <= ln.end + 0.05), None)
            if ref is not None:
                pairs.append((word["speaker"], ref))
    votes: dict[str, Counter] = {}
    for hyp, ref in pairs:
        votes.setdefault(hyp, Counter())[ref] += 1
    mapping = {hyp: counter.most_common(1)[0][0] for hyp, counter in votes.items()}
    correct = sum(1 for hyp, ref in pairs if mapping[hyp] == ref)
    return correct / max(1, len(pairs)), mapping


@pytest.fixture(scope="module")
def dialogue(tmp_path_factory):
    return generate_dialogue(short_dialogue(), seed=7)


def test_generated_session_end_to_end(pipeline, dialogue):
    api, _, _ = pipeline
    response = api.upload(dialogue.wav)
    assert response.status_code == 202, response.text
    sid = response.json()["id"]
    detail = api.wait(sid, lambda d: d["status"] in ("processed", "failed"), timeout_s=300)
    assert detail["status"] == "processed", (detail["status"], detail["error"])
    assert detail["progress"] == 100
    assert detail["diarized"] is True and not detail["warnings"]

    accuracy, mapping = word_speaker_accuracy(detail["transcript_segments"], dialogue.lines)
    print(f"\nword speaker accuracy: {accuracy:.3f}  mapping: {mapping}")
    assert accuracy >= 0.95
    assert len({s["speaker"] for s in detail["transcript_segments"]}) == 2

    roles = {s["label"]: s["role"] for s in detail["speakers"]}
    therapist_label = next(label for label, ref in mapping.items() if ref == "therapist")
    assert roles[therapist_label] == "THERAPIST"
    assert detail["transcript_text"].count("THERAPIST:") >= 3

    notes = detail["extracted_notes"]
    assert notes is not None and detail["notes_engine"]["backend"] == "offline"
    assert notes["action_items"], "the therapist set homework (breathing exercise, diary)"
    text = " ".join(seg["text"] for seg in detail["transcript_segments"])
    for quote in notes["significant_quotes"]:
        assert quote["quote"] in text
    for stage in ("transcription", "diarization", "join", "notes"):
        assert detail["stages"][stage]["state"] == "done"


def test_no_transcript_text_in_any_service_log(pipeline, dialogue):
    """No PHI in logs: after the pipeline processed the dialogue, none of its sentences
    (as transcribed) appears in any service's log."""
    api, _, _ = pipeline
    from tests.helpers import ARTIFACTS

    sessions = api.client.get("/api/sessions", headers=api.headers).json()["items"]
    texts = []
    for item in sessions:
        detail = api.get(str(item["id"]))
        texts += [seg["text"] for seg in detail["transcript_segments"] or [] if len(seg["text"].split()) >= 4]
    assert texts, "the e2e sessions should have transcripts to look for"
    logs = {p.name: p.read_text(errors="replace") for p in (ARTIFACTS / "e2e").glob("*.log")}
    assert logs
    leaks = [(name, text) for text in texts for name, body in logs.items() if text in body]
    assert not leaks, f"transcript text found in logs: {[(n, t[:30]) for n, t in leaks[:3]]}"
