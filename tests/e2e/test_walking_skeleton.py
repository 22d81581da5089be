"""Upload a real recording over HTTP to separate service processes on the real broker
and PostgreSQL, and read back the transcript."""

from __future__ import annotations

import re

import jiwer

from tests.conftest import DATA

JFK = "And so, my fellow Americans, ask not what your country can do for you, ask what you can do for your country."


def normalise(text: str) -> str:
    return re.sub(r"[^a-z' ]+", " ", text.lower()).split().__str__()


def wer(reference: str, hypothesis: str) -> float:
    clean = lambda t: " ".join(re.sub(r"[^a-z' ]+", " ", t.lower()).split())  # noqa: E731
    return jiwer.wer(clean(reference), clean(hypothesis))


def test_upload_transcribes_real_speech(pipeline):
    api, _, _ = pipeline
    response = api.upload(DATA / "jfk.flac")
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "uploading" and body["duration_s"] > 10
    detail = api.wait(body["id"], lambda d: d["transcript_text"] or d["status"] == "failed")
    assert detail["status"] != "failed", detail["error"]
    text = " ".join(seg["text"] for seg in detail["transcript_segments"])
    score = wer(JFK, text)
    print(f"\nWER jfk: {score:.3f}")
    assert score <= 0.15
    words = [w for seg in detail["transcript_segments"] for w in seg["words"]]
    assert words and all(w["end"] >= w["start"] for w in words)
    assert detail["metrics"]["transcription"]["rtf"] > 0
