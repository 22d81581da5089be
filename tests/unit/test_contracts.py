"""Every event round-trips through its wire form, and the published schemas are current."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

import pytest

from shared.contracts.events import (
    TOPIC_MODELS, AudioRef, AudioUploaded, DiarizationFailed, DiarizationReady, Engine, ErrorInfo, MergedSegment,
    MergedWord, NotesEngine, NotesFailed, NotesReady, NotesRegenerate, NotesSigned, SessionDeleted, SessionProgress,
    SessionStatus, SpeakerInfo, SpeakerTurn, Stage, StageState, Timing, Topic, TranscriptFailed, TranscriptMerged,
    TranscriptChunk, TranscriptReady, TranscriptRemerge, TranscriptSegment, Word, topic_of,
)
from shared.contracts.notes import ClinicalNotes, FlagSource, RiskCategory, RiskFlag, Severity
from devtools.docs import generate
from shared.envelope import SPECVERSION, build_headers, child_traceparent, decode, encode, trace_id_of

SID = uuid.uuid4()
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
TIMING = Timing(started_at=NOW, finished_at=NOW, processing_s=1.5, audio_s=10.0, rtf=0.15)
ERR = ErrorInfo(kind="permanent", code="undecodable_audio", message="not audio")
WORDS = [Word(start=0.0, end=0.4, word=" Hello", p=0.9)]

EXAMPLES = {
    Topic.AUDIO_UPLOADED: AudioUploaded(session_id=SID, owner_id=uuid.uuid4(), audio=AudioRef(
        uri="blob://sessions/x/audio.wav", sha256="ab" * 32, bytes=10, content_type="audio/wav", duration_s=1.0)),
    Topic.TRANSCRIPT_READY: TranscriptReady(session_id=SID, language="en", duration_s=10.0, engine=Engine(backend="faster-whisper"),
                                            timing=TIMING, segments=[TranscriptSegment(start=0, end=0.4, text="Hello", words=WORDS)]),
    Topic.TRANSCRIPT_FAILED: TranscriptFailed(session_id=SID, error=ERR),
    Topic.DIARIZATION_READY: DiarizationReady(session_id=SID, turns=[SpeakerTurn(start=0, end=1, speaker="SPEAKER_00")],
                                              speaker_count=1, engine=Engine(backend="builtin"), timing=TIMING),
    Topic.DIARIZATION_FAILED: DiarizationFailed(session_id=SID, error=ERR, attempts=2),
    Topic.TRANSCRIPT_MERGED: TranscriptMerged(
        session_id=SID, diarized=True, full_text="THERAPIST: Hello",
        segments=[MergedSegment(start=0, end=0.4, speaker="SPEAKER_00", role="THERAPIST", text="Hello",
                                words=[MergedWord(start=0, end=0.4, word=" Hello", speaker="SPEAKER_00")])],
        speakers=[SpeakerInfo(label="SPEAKER_00", role="THERAPIST", role_confidence=0.9, talk_time_s=0.4)]),
    Topic.NOTES_READY: NotesReady(session_id=SID, notes=ClinicalNotes(risk_flags=[RiskFlag(
        category=RiskCategory.hopelessness, severity=Severity.moderate, evidence="what's the point", start=1.0,
        source=FlagSource.lexicon)]), engine=NotesEngine(backend="offline")),
    Topic.NOTES_FAILED: NotesFailed(session_id=SID, error=ERR, transcript_version=1),
    Topic.SESSION_PROGRESS: SessionProgress(session_id=SID, stage=Stage.transcription, fraction=0.5, eta_s=3.0),
    Topic.SESSION_STATUS: SessionStatus(session_id=SID, seq=3, status="transcribing", percent=40,
                                        stages={"transcription": StageState(state="running", fraction=0.5)}),
    Topic.SESSION_DELETED: SessionDeleted(session_id=SID),
    Topic.NOTES_REGENERATE: NotesRegenerate(session_id=SID, backend="offline"),
    Topic.TRANSCRIPT_REMERGE: TranscriptRemerge(session_id=SID),
    Topic.NOTES_SIGNED: NotesSigned(session_id=SID, owner_id=SID, version=3, signed_by=SID,
                                    signed_at=datetime(2026, 11, 30, tzinfo=timezone.utc)),
    Topic.TRANSCRIPT_CHUNK: TranscriptChunk(session_id=SID, index=3, total=60, audio_uri="file:///b/sessions/x/c.pcm",
                                            audio_start=359.0, audio_end=481.0, language="en"),
}


def test_every_topic_has_an_example():
    assert set(EXAMPLES) == set(TOPIC_MODELS)


@pytest.mark.parametrize("topic", list(Topic), ids=lambda t: t.value)
def test_round_trip(topic):
    event = EXAMPLES[topic]
    assert topic_of(event) is topic
    wire = encode(event)
    assert json.loads(wire)["schema_version"] == 1
    again = decode(topic.value, wire)
    assert again == event
    assert type(again) is type(event)


@pytest.mark.parametrize("topic", list(Topic), ids=lambda t: t.value)
def test_cloudevents_headers(topic):
    headers = build_headers(EXAMPLES[topic], "tests", traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01")
    for key in ("ce_id", "ce_type", "ce_source", "ce_time", "ce_specversion", "traceparent", "content-type"):
        assert headers[key], key
    assert headers["ce_specversion"] == SPECVERSION
    assert headers["ce_type"].endswith(topic.value)
    assert trace_id_of(headers["traceparent"]) == "a" * 32  # same trace, new span
    datetime.fromisoformat(headers["ce_time"])


def test_traceparent_starts_a_trace_when_none():
    tp = child_traceparent(None)
    assert trace_id_of(tp) and len(tp.split("-")) == 4


def test_unknown_fields_are_ignored_for_forward_compatibility():
    payload = json.loads(encode(EXAMPLES[Topic.SESSION_DELETED]))
    payload["added_in_a_later_version"] = True
    assert decode("session.deleted", json.dumps(payload).encode()).session_id == SID


def test_published_schemas_are_current():
    stale = [str(p.name) for p, content in generate().items() if not p.exists() or p.read_text() != content]
    assert not stale, f"run `make docs`: stale {stale}"


def test_payloads_from_before_the_quality_fields_still_decode():
    """schema_version 1 gained optional fields (ASR confidences, quality_warnings): an
    older producer's payload, without them, decodes with their defaults."""
    ready = json.loads(encode(EXAMPLES[Topic.TRANSCRIPT_READY]))
    for key in ("language_probability", "requested_language"):
        ready.pop(key)
    for seg in ready["segments"]:
        for key in ("avg_logprob", "no_speech_prob", "compression_ratio"):
            seg.pop(key)
    old = decode(Topic.TRANSCRIPT_READY.value, json.dumps(ready).encode())
    assert old.language_probability is None and old.segments[0].avg_logprob is None
    merged = json.loads(encode(EXAMPLES[Topic.TRANSCRIPT_MERGED]))
    merged.pop("quality_warnings")
    assert decode(Topic.TRANSCRIPT_MERGED.value, json.dumps(merged).encode()).quality_warnings == []


def test_a_quality_warning_has_exactly_the_published_shape():
    from shared.contracts.events import QualityWarning

    w = QualityWarning(kind="long_silence", severity="info", start_s=1.0, end_s=41.0, message="No speech for 40 s")
    assert set(w.model_dump()) == {"kind", "severity", "start_s", "end_s", "message"}
    with pytest.raises(ValueError):
        QualityWarning(kind="x", severity="critical", message="m")
