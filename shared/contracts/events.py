"""Event contracts: one pydantic model per topic, the payload (value) of each Kafka record.

Every payload carries ``schema_version``; the CloudEvents attributes travel as headers
(see shared/envelope.py). Additive changes keep the version; breaking ones bump it.
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from shared.contracts.notes import ClinicalNotes

SCHEMA_VERSION = 1


class Topic(str, Enum):
    AUDIO_UPLOADED = "audio.uploaded"
    TRANSCRIPT_READY = "transcript.ready"
    TRANSCRIPT_FAILED = "transcript.failed"
    DIARIZATION_READY = "diarization.ready"
    DIARIZATION_FAILED = "diarization.failed"
    TRANSCRIPT_MERGED = "transcript.merged"
    NOTES_READY = "notes.ready"
    NOTES_FAILED = "notes.failed"
    SESSION_PROGRESS = "session.progress"
    SESSION_STATUS = "session.status"
    SESSION_DELETED = "session.deleted"
    # Commands (imperative topics): re-run a stage on demand.
    NOTES_REGENERATE = "notes.regenerate"
    TRANSCRIPT_REMERGE = "transcript.remerge"

    @property
    def dlq(self) -> str:
        return f"{self.value}.dlq"


class Stage(str, Enum):
    upload = "upload"
    transcription = "transcription"
    diarization = "diarization"
    join = "join"
    notes = "notes"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Event(BaseModel):
    model_config = ConfigDict(extra="ignore")
    schema_version: int = SCHEMA_VERSION
    session_id: UUID


# --- audio.uploaded --------------------------------------------------------------------
class AudioRef(BaseModel):
    uri: str = Field(description="Blob-store URI of the original upload")
    sha256: str
    bytes: int
    content_type: str
    duration_s: float
    filename: str | None = None


class ProcessingOptions(BaseModel):
    language: str | None = None
    num_speakers: int | None = Field(None, ge=1, le=20)
    min_speakers: int | None = Field(None, ge=1, le=20)
    max_speakers: int | None = Field(None, ge=1, le=20)
    notes_backend: str | None = Field(None, description="offline or llm; unset: the service default")


class AudioUploaded(Event):
    owner_id: UUID
    patient_id: UUID | None = None
    audio: AudioRef
    options: ProcessingOptions = Field(default_factory=ProcessingOptions)
    uploaded_at: datetime = Field(default_factory=utcnow)


# --- shared pieces -----------------------------------------------------------------------
class Engine(BaseModel):
    backend: str
    model: str | None = None
    device: str | None = None


class Timing(BaseModel):
    started_at: datetime
    finished_at: datetime
    processing_s: float
    audio_s: float
    rtf: float = Field(description="processing seconds / audio seconds")


class ErrorInfo(BaseModel):
    kind: Literal["transient", "permanent"]
    code: str
    message: str = Field(description="Safe to show to a user; never a stack trace or PHI")


# --- transcript.ready ------------------------------------------------------------------
class Word(BaseModel):
    start: float
    end: float
    word: str
    p: float | None = None


class TranscriptSegment(BaseModel):
    start: float
    end: float
    text: str
    words: list[Word] = Field(default_factory=list)


class TranscriptReady(Event):
    language: str
    duration_s: float
    segments: list[TranscriptSegment] | None = Field(
        None, description="Inline segments; None when they are in segments_ref"
    )
    segments_ref: str | None = Field(None, description="Blob URI of a JSON list of segments (large sessions)")
    engine: Engine
    timing: Timing
    notes_backend: str | None = Field(None, description="The upload's requested notes backend, carried to transcript.merged")


class StageFailed(Event):
    error: ErrorInfo
    attempts: int = 1


class TranscriptFailed(StageFailed):
    pass


class DiarizationFailed(StageFailed):
    pass


class NotesFailed(StageFailed):
    transcript_version: int | None = None


# --- diarization.ready -----------------------------------------------------------------
class SpeakerTurn(BaseModel):
    start: float
    end: float
    speaker: str


class DiarizationReady(Event):
    turns: list[SpeakerTurn]
    speaker_count: int
    engine: Engine
    timing: Timing


# --- transcript.merged -----------------------------------------------------------------
class MergedWord(Word):
    speaker: str


class MergedSegment(BaseModel):
    start: float
    end: float
    speaker: str = Field(description="Raw diarization label (SPEAKER_00...) or Unknown")
    role: str | None = Field(None, description="THERAPIST, CLIENT or None when not inferred")
    text: str
    words: list[MergedWord] = Field(default_factory=list)


class SpeakerInfo(BaseModel):
    label: str
    role: str | None = None
    role_confidence: float | None = None
    talk_time_s: float = 0.0
    display_name: str | None = None


class TranscriptMerged(Event):
    version: int = Field(1, description="Increments on every re-merge of the same session")
    language: str | None = None
    duration_s: float | None = None
    segments: list[MergedSegment] | None = None
    segments_ref: str | None = None
    speakers: list[SpeakerInfo] = Field(default_factory=list)
    diarized: bool
    full_text: str | None = Field(None, description='"THERAPIST: ..." lines; None when in segments_ref')
    warnings: list[str] = Field(default_factory=list)
    notes_backend: str | None = Field(None, description="offline or llm as requested on upload; unset: the notes service default")


# --- notes.ready -----------------------------------------------------------------------
class NotesEngine(Engine):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    calls: int = 0


class NotesReady(Event):
    transcript_version: int = 1
    notes: ClinicalNotes
    engine: NotesEngine
    timing: Timing | None = None


# --- session.progress / session.status ----------------------------------------------------
class SessionProgress(Event):
    stage: Stage
    fraction: float = Field(ge=0.0, le=1.0)
    message: str = ""
    eta_s: float | None = None


SessionStatusName = Literal[
    "uploading",
    "preprocessing",
    "transcribing",
    "diarizing",
    "merging",
    "extracting_notes",
    "processed",
    "failed",
]


class StageState(BaseModel):
    state: Literal["pending", "running", "done", "failed", "skipped"] = "pending"
    fraction: float = 0.0
    message: str = ""
    eta_s: float | None = None
    error: ErrorInfo | None = None


class SessionStatus(Event):
    seq: int = Field(description="Per-session monotonic sequence: the SSE id")
    status: SessionStatusName
    percent: int = Field(ge=0, le=100)
    message: str = ""
    eta_s: float | None = None
    error: str | None = None
    stages: dict[str, StageState] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    updated_at: datetime = Field(default_factory=utcnow)


# --- lifecycle and commands --------------------------------------------------------------
class SessionDeleted(Event):
    owner_id: UUID | None = None


class NotesRegenerate(Event):
    backend: str | None = Field(None, description="offline or llm; unset: the service default")
    requested_by: UUID | None = None


class TranscriptRemerge(Event):
    requested_by: UUID | None = None


TOPIC_MODELS: dict[Topic, type[Event]] = {
    Topic.AUDIO_UPLOADED: AudioUploaded,
    Topic.TRANSCRIPT_READY: TranscriptReady,
    Topic.TRANSCRIPT_FAILED: TranscriptFailed,
    Topic.DIARIZATION_READY: DiarizationReady,
    Topic.DIARIZATION_FAILED: DiarizationFailed,
    Topic.TRANSCRIPT_MERGED: TranscriptMerged,
    Topic.NOTES_READY: NotesReady,
    Topic.NOTES_FAILED: NotesFailed,
    Topic.SESSION_PROGRESS: SessionProgress,
    Topic.SESSION_STATUS: SessionStatus,
    Topic.SESSION_DELETED: SessionDeleted,
    Topic.NOTES_REGENERATE: NotesRegenerate,
    Topic.TRANSCRIPT_REMERGE: TranscriptRemerge,
}

MODEL_TOPICS: dict[type[Event], Topic] = {m: t for t, m in TOPIC_MODELS.items()}


def topic_of(event: Event) -> Topic:
    return MODEL_TOPICS[type(event)]


def all_topics(with_dlq: bool = True) -> list[str]:
    names = [t.value for t in Topic]
    if with_dlq:
        names += [t.dlq for t in Topic]
    return names
