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
    # Facts for other systems (no service of this project consumes them).
    NOTES_SIGNED = "notes.signed"
    # Work items: one chunk of a long recording for any transcriber replica.
    TRANSCRIPT_CHUNK = "transcript.chunk"

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
    # The ASR's own confidence for the segment (faster-whisper; None from other backends).
    # Added in schema_version 1 as optional fields: older payloads still validate.
    avg_logprob: float | None = Field(None, description="Mean token log-probability of the segment")
    no_speech_prob: float | None = Field(None, description="Probability the segment is not speech")
    compression_ratio: float | None = Field(None, description="gzip compression ratio of the text (repetition)")


class ChunkRun(BaseModel):
    """Who transcribed one chunk of a fanned-out recording, and how long it took."""

    index: int
    start: float = Field(description="The chunk's owned span on the recording's clock (s)")
    end: float
    worker: str = Field(description="The transcriber replica (host:pid)")
    processing_s: float


class TranscriptReady(Event):
    language: str
    duration_s: float
    segments: list[TranscriptSegment] | None = Field(
        None, description="Inline segments; None when they are in segments_ref"
    )
    segments_ref: str | None = Field(None, description="Blob URI of a JSON list of segments (large sessions)")
    engine: Engine
    timing: Timing
    language_probability: float | None = Field(None, description="The ASR's confidence in `language` (1.0 when forced)")
    requested_language: str | None = Field(None, description="The language asked for on upload (None: detect)")
    chunks: list[ChunkRun] | None = Field(
        None, description="A long recording transcribed in chunks: each chunk's replica and time; None: one piece")
    notes_backend: str | None = Field(None, description="The upload's requested notes backend, carried to transcript.merged")


class TranscriptChunk(Event):
    """transcript.chunk: one chunk of a long recording to transcribe (a work item)."""

    index: int
    total: int
    audio_uri: str = Field(description="Sealed blob of the chunk's 16 kHz mono 16-bit PCM")
    audio_start: float = Field(description="Where the chunk's audio starts on the recording's clock (s)")
    audio_end: float
    language: str | None = None


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


class VoiceMatch(BaseModel):
    """The session's speaker whose voice matches the owner's enrolled voice (ADR 0010)."""

    speaker: str = Field(description="Diarization label of the matched speaker")
    therapist_id: UUID
    display_name: str | None = Field(None, description="The therapist's name, for the speaker list")
    similarity: float = Field(description="Cosine similarity of the speaker's centroid to the enrolment")
    confidence: float = Field(ge=0.5, le=1.0, description="How sure the match is (threshold and scale: ADR 0010)")
    similarities: dict[str, float] = Field(default_factory=dict, description="Every speaker's similarity")


class DiarizationReady(Event):
    turns: list[SpeakerTurn]
    speaker_count: int
    engine: Engine
    timing: Timing
    # Added in issue 14 (additive, schema_version stays 1; older consumers ignore it).
    therapist_match: VoiceMatch | None = Field(
        None, description="Set when the session owner has an enrolled voice and one speaker matches it")


# --- transcript.merged -----------------------------------------------------------------
class MergedWord(Word):
    speaker: str


class MergedSegment(BaseModel):
    start: float
    end: float
    speaker: str = Field(description="Raw diarization label (SPEAKER_00...) or Unknown")
    role: str | None = Field(
        None, description="THERAPIST, CLIENT (two speakers), CLIENT 1, CLIENT 2, ... (more), or None when not inferred")
    text: str
    words: list[MergedWord] = Field(default_factory=list)


class SpeakerInfo(BaseModel):
    label: str
    role: str | None = None
    role_confidence: float | None = None
    talk_time_s: float = 0.0
    display_name: str | None = None


class QualityWarning(BaseModel):
    """A transcript quality check's finding, with the span to review (no transcript text)."""

    kind: str = Field(description="words_per_minute, repetition_loop, long_silence, language_mismatch, low_confidence, text_in_silence")
    severity: Literal["info", "warning"]
    start_s: float | None = Field(None, description="Start of the span to review (None: the whole session)")
    end_s: float | None = None
    message: str = Field(description="Ids, times and numbers only: safe to log")


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
    quality_warnings: list[QualityWarning] = Field(
        default_factory=list, description="Transcript quality checks (services/joiner/quality.py)")
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
    speaker_names: dict[str, str] = Field(default_factory=dict, description="The therapist's names: label -> name")
    speaker_roles: dict[str, str | None] = Field(
        default_factory=dict, description="The therapist's roles: label -> THERAPIST, CLIENT, another role or null")
    swap_roles: bool = Field(False, description="THERAPIST and CLIENT swapped by the therapist")
    segment_texts: dict[str, str] = Field(
        default_factory=dict, description="Corrected segment texts: segment index (as a string) -> text")


class TranscriptRemerge(Event):
    requested_by: UUID | None = None


class NotesSigned(Event):
    """A therapist signed the session's notes (ids only: fetch the notes with the API).
    Signed notes never change again; addenda may follow."""

    owner_id: UUID
    patient_id: UUID | None = None
    version: int = Field(description="The signed version of the notes")
    signed_by: UUID
    signed_at: datetime


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
    Topic.NOTES_SIGNED: NotesSigned,
    Topic.TRANSCRIPT_CHUNK: TranscriptChunk,
}

MODEL_TOPICS: dict[type[Event], Topic] = {m: t for t, m in TOPIC_MODELS.items()}


def topic_of(event: Event) -> Topic:
    return MODEL_TOPICS[type(event)]


def all_topics(with_dlq: bool = True) -> list[str]:
    names = [t.value for t in Topic]
    if with_dlq:
        names += [t.dlq for t in Topic]
    return names
