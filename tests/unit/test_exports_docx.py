"""DOCX export (services/gateway/exports.to_docx): notes first, risk flags before the
transcript with high severity marked, every transcript line with its speaker's name."""

from __future__ import annotations

import io
from datetime import datetime, timezone

import docx
from docx.enum.text import WD_COLOR_INDEX

from services.gateway.exports import to_docx

T, C = "SPEAKER_00", "SPEAKER_01"

SEGMENTS = [
    {"start": 0.0, "end": 2.5, "speaker": T, "role": "THERAPIST", "text": "How have you been this week?", "words": []},
    {"start": 3.0, "end": 8.0, "speaker": C, "role": "CLIENT", "text": "Honestly, I felt hopeless most days.", "words": []},
    {"start": 9.0, "end": 11.0, "speaker": T, "role": "THERAPIST", "text": "Thank you for telling me.", "words": []},
    {"start": 65.0, "end": 70.0, "speaker": "Unknown", "text": "Okay.\x0b", "words": []},  # control char is dropped
    {"start": 71.0, "end": 72.0, "speaker": C, "text": "   ", "words": []},  # empty: skipped
]
SPEAKERS = [
    {"label": T, "role": "THERAPIST", "display_name": "Dr. Rivera"},
    {"label": C, "role": "CLIENT", "display_name": None},
]
NOTES = {
    "key_topics": ["work stress", "sleep"],
    "topic_summary": "Discussed a hard week.",
    "emotional_themes": ["hopelessness"],
    "action_items": [{"task": "Keep a sleep diary", "category": "tracking"}],
    "session_mood": "low",
    "mood_trajectory": "stable",
    "risk_flags": [
        {"category": "substance_use", "severity": "low", "evidence": "a glass of wine", "start": 20.0,
         "speaker": C, "source": "llm"},
        {"category": "hopelessness", "severity": "high", "evidence": "I felt hopeless most days", "start": 3.0,
         "speaker": C, "role": "CLIENT", "source": "both", "high_priority": True},
    ],
    "therapist_notes": "Monitor mood.",
}
META = {"session_id": "1234", "session_date": datetime(2025, 3, 4, 10, 30, tzinfo=timezone.utc),
        "duration_s": 72.0, "language": "en", "engine": "offline"}


def _open(data: bytes) -> docx.document.Document:
    assert data[:2] == b"PK"  # a zip container
    return docx.Document(io.BytesIO(data))


def _texts(document) -> list[str]:
    return [p.text for p in document.paragraphs]


def _index(texts: list[str], needle: str) -> int:
    return next(i for i, t in enumerate(texts) if needle in t)


def test_headings_in_order():
    document = _open(to_docx(NOTES, SEGMENTS, SPEAKERS, META))
    headings = [p.text for p in document.paragraphs if p.style.name.startswith(("Heading", "Title"))]
    assert headings[0] == "Session notes and transcript"
    assert headings.index("Clinical notes") < headings.index("Transcript")
    risk = next(i for i, h in enumerate(headings) if h.startswith("Risk flags"))
    assert headings.index("Clinical notes") < risk < headings.index("Transcript")
    assert risk == headings.index("Clinical notes") + 1  # first thing in the notes
    for section in ("Summary", "Mood", "Key topics", "Emotional themes", "Action items", "Therapist notes"):
        assert section in headings
    texts = _texts(document)
    assert "Session: 1234" in texts and "Date: 2025-03-04 10:30" in texts and "Duration: 00:01:12" in texts


def test_risk_flags_before_transcript_and_high_marked():
    document = _open(to_docx(NOTES, SEGMENTS, SPEAKERS, META))
    texts = _texts(document)
    transcript = texts.index("Transcript")
    high = _index(texts, "I felt hopeless most days\u201d")
    low = _index(texts, "a glass of wine")
    assert high < low < transcript  # high severity first, all before the transcript
    assert texts[high].startswith("HIGH PRIORITY hopelessness")
    assert "HIGH PRIORITY" not in texts[low]
    marker = document.paragraphs[high].runs[0]
    assert marker.text.strip() == "HIGH PRIORITY" and marker.bold
    assert marker.font.highlight_color == WD_COLOR_INDEX.YELLOW
    assert "(2 flag(s), 1 high priority)" in texts[_index(texts, "Risk flags")]


def test_every_transcript_line_with_speaker_name():
    texts = _texts(_open(to_docx(NOTES, SEGMENTS, SPEAKERS, META)))
    body = texts[texts.index("Transcript") + 1:]
    assert body == [
        "[00:00:00] Dr. Rivera: How have you been this week?",
        "[00:00:03] CLIENT: Honestly, I felt hopeless most days.",
        "[00:00:09] Dr. Rivera: Thank you for telling me.",
        "[00:01:05] Unknown: Okay.",
    ]


def test_empty_notes():
    for notes in (None, {}):
        texts = _texts(_open(to_docx(notes, SEGMENTS, SPEAKERS, {})))
        assert texts.index("No notes for this session yet.") < texts.index("Transcript")
        assert not any(t.startswith("Risk flags") for t in texts)
        assert "[00:00:09] Dr. Rivera: Thank you for telling me." in texts


def test_notes_without_flags_or_transcript():
    texts = _texts(_open(to_docx({"topic_summary": "Short."}, [], [], {"session_id": "x"})))
    assert _index(texts, "Risk flags") < texts.index("Transcript")
    assert "No risk flags were raised. (Absence of flags is not a risk assessment.)" in texts
    assert texts[-1] == "No transcript for this session yet."
