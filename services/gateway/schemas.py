"""Request and response models of the REST API (OpenAPI is generated from these)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from shared.contracts.events import QualityWarning

# Dates the API accepts. Outside them nothing is a real session, and near year 1 or 9999
# an offset moves the instant out of what Python and PostgreSQL can represent.
EARLIEST_DATE = datetime(1900, 1, 1, tzinfo=timezone.utc)
LATEST_DATE = datetime(2200, 1, 1, tzinfo=timezone.utc)
SEQ_MAX = 2**63 - 1  # status_history.seq is a BIGINT


def no_nul(value: str) -> str:
    """PostgreSQL text and JSON cannot hold NUL, and no name or filter needs one."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


def in_date_range(value: datetime) -> datetime:
    """A date between 1900 and 2200 (naive: taken as UTC); returned in UTC."""
    try:
        instant = value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)
    except (OverflowError, ValueError):
        raise ValueError("date out of range (1900-2200)") from None
    if not EARLIEST_DATE <= instant < LATEST_DATE:
        raise ValueError("date out of range (1900-2200)")
    return instant


SafeText = Annotated[str, AfterValidator(no_nul)]
BoundedDatetime = Annotated[datetime, AfterValidator(in_date_range)]


class ErrorBody(BaseModel):
    detail: str = Field(description="What was wrong, safe to show to a user")
    code: str | None = Field(None, description="Machine-readable error code")
    errors: list[dict[str, Any]] | None = Field(
        None, description="Request validation errors (422 only): loc, msg and type of each invalid field")
    model_config = ConfigDict(json_schema_extra={"example": {"detail": "the uploaded file is empty", "code": "empty_file"}})


class ReadyStatus(BaseModel):
    database: str = Field(description="ok or unavailable")
    broker: str = Field(description="ok, unavailable, or disabled (gateway started without a broker)")


class TokenResponse(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int


class RefreshRequest(BaseModel):
    refresh_token: SafeText


class TherapistCreate(BaseModel):
    email: SafeText = Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")
    password: SafeText = Field(min_length=8, max_length=256)
    display_name: SafeText = Field("", max_length=200)


class TherapistOut(BaseModel):
    id: UUID
    email: str
    display_name: str
    role: str = "therapist"


class PatientCreate(BaseModel):
    display_name: SafeText = Field(min_length=1, max_length=200)
    external_ref: SafeText | None = Field(None, max_length=200)


class PatientUpdate(BaseModel):
    display_name: SafeText | None = Field(None, min_length=1, max_length=200)
    external_ref: SafeText | None = Field(None, max_length=200, description="Empty string clears it")


class PatientOut(BaseModel):
    id: UUID
    display_name: str
    external_ref: str | None = None
    created_at: datetime


class UploadFields(BaseModel):
    """The upload's multipart fields besides `file`. The route reads them itself, after
    authenticating, so no body is read for an unauthenticated request."""

    patient_id: UUID | None = None
    session_date: BoundedDatetime | None = None
    num_speakers: int | None = Field(None, ge=1, le=20)
    min_speakers: int | None = Field(None, ge=1, le=20)
    max_speakers: int | None = Field(None, ge=1, le=20)
    language: str | None = Field(None, max_length=8, pattern=r"^[a-z]{2,3}$")
    notes_backend: Literal["offline", "llm"] | None = None


def upload_request_body() -> dict:
    """The upload's OpenAPI requestBody (multipart: `file` plus UploadFields)."""
    schema = UploadFields.model_json_schema()
    properties = {"file": {"type": "string", "format": "binary",
                           "description": "The recording (wav, mp3, m4a, flac, ogg, webm, mp4)"},
                  **schema["properties"]}
    return {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "title": "UploadForm", "properties": properties,
        "required": ["file"]}}}}  # required and binary: a generated client sends a file part


class UploadAccepted(BaseModel):
    id: UUID
    patient_id: UUID | None = None
    therapist_id: UUID
    session_date: datetime | None = None
    status: str
    audio_filename: str | None = None
    duration_s: float
    model_config = ConfigDict(json_schema_extra={"example": {
        "id": "123e4567-e89b-12d3-a456-426614174000", "patient_id": None,
        "therapist_id": "660e8400-e29b-41d4-a716-446655440000", "session_date": None,
        "status": "uploading", "audio_filename": "session.mp3", "duration_s": 3012.4}})


class StageOut(BaseModel):
    state: str
    fraction: float = 0.0
    message: str = ""
    eta_s: float | None = None
    error: dict[str, Any] | None = None


class SessionSummary(BaseModel):
    id: UUID
    patient_id: UUID | None = None
    session_date: datetime | None = None
    created_at: datetime
    status: str
    progress: int
    audio_filename: str | None = None
    duration_seconds: float
    patient_name: str | None = None
    max_risk_severity: Literal["high", "moderate", "low"] | None = Field(
        None, description="The highest severity among the session's risk flags (None: no flags or no notes yet)")
    risk_flag_count: int = 0
    stalled: bool = Field(False, description="Unfinished with no progress for TB_STALLED_AFTER_S")
    last_progress_at: datetime | None = None
    cancel_reason: str | None = None
    quality_warning_count: int = Field(0, description="How many transcript quality warnings the session has")


class SessionList(BaseModel):
    items: list[SessionSummary]
    next_cursor: str | None = Field(None, description="Pass as ?cursor= for the next page")


class SessionDetail(BaseModel):
    id: UUID
    patient_id: UUID | None = None
    therapist_id: UUID
    session_date: datetime | None = None
    created_at: datetime
    status: str
    progress: int
    message: str = ""
    estimated_time_remaining: float | None = None
    error: str | None = None
    warnings: list[str] = Field(default_factory=list)
    stages: dict[str, StageOut] = Field(default_factory=dict)
    audio_filename: str | None = None
    duration_seconds: float
    language: str | None = None
    diarized: bool | None = None
    speakers: list[dict[str, Any]] = Field(default_factory=list)
    transcript_text: str | None = None
    transcript_segments: list[dict[str, Any]] | None = None
    diarization: dict[str, Any] | None = None
    extracted_notes: dict[str, Any] | None = None
    notes_engine: dict[str, Any] | None = None
    notes_error: dict[str, Any] | None = None
    risk_flags: list[dict[str, Any]] = Field(default_factory=list)
    therapist_summary: str | None = None
    patient_summary: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    processed_at: datetime | None = None
    stalled: bool = Field(False, description="Unfinished with no progress for TB_STALLED_AFTER_S: offer retry or cancel")
    stalled_for_s: float | None = Field(None, description="Seconds since the last progress, when stalled")
    last_progress_at: datetime | None = None
    cancelled_at: datetime | None = None
    cancel_reason: str | None = None
    edited_segments: int = Field(0, description="How many segments' text the therapist corrected")
    exports: list[str] = Field(default_factory=list, description="The export formats ready now (GET .../export/{fmt})")
    quality_warnings: list[QualityWarning] = Field(
        default_factory=list, description="Transcript quality checks: spans to review against the audio")


class StatusMessage(BaseModel):
    """What SSE `data:` and WebSocket messages carry (seed 001's progress message)."""

    session_id: UUID
    seq: int
    status: str
    progress: int
    message: str = ""
    estimated_time_remaining: float | None = None
    error: str | None = None
    stages: dict[str, StageOut] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    updated_at: datetime | None = None


class SpeakerPatch(BaseModel):
    names: dict[Annotated[SafeText, Field(max_length=100)], SafeText] = Field(
        default_factory=dict, description="label -> display name")
    roles: dict[Annotated[SafeText, Field(max_length=100)],
                Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9 _-]{0,39}$")] | None] = Field(
        default_factory=dict, description="label -> THERAPIST, CLIENT, CLIENT 1, CLIENT 2, ..., another role (e.g. PARENT, INTERPRETER) or null")
    swap_roles: bool = Field(False, description="Swap THERAPIST and CLIENT")


class SegmentEdit(BaseModel):
    text: SafeText = Field(min_length=1, max_length=10000, description="The corrected text of the segment")


class CancelRequest(BaseModel):
    reason: SafeText = Field("Cancelled by the therapist", min_length=1, max_length=500)


class RetryAccepted(BaseModel):
    id: UUID
    status: str
    stage: str = Field(description="The stage re-driven (or notes, regenerated)")
    resent: int = Field(0, description="Events sent again")


class RegenerateRequest(BaseModel):
    backend: str | None = Field(None, pattern="^(offline|llm)$")
    discard_edits: bool = Field(False, description="Regenerate even though a therapist edited the notes (their "
                                                   "versions stay in the history); signed notes are never regenerated")


class Accepted(BaseModel):
    id: UUID
    status: str


class LogoutResponse(BaseModel):
    revoked: bool = True


class PasswordChange(BaseModel):
    current_password: str = Field(min_length=1, max_length=256)
    new_password: str = Field(min_length=12, max_length=256)


class PasswordReset(BaseModel):
    new_password: str = Field(min_length=12, max_length=256)


class LinkRequest(BaseModel):
    purpose: Literal["audio", "export", "stream"] = Field(
        description="audio: GET .../audio; export: GET .../export/{fmt}; stream: the SSE stream and the WebSocket")


class LinkToken(BaseModel):
    token: str = Field(description="Pass as ?token= on the routes of this session and purpose only")
    purpose: str
    expires_in: int


class AccountCreate(BaseModel):
    email: str = Field(min_length=3, max_length=254, pattern=r"^[^@\s\x00]+@[^@\s\x00]+$")
    password: str = Field(min_length=12, max_length=256)
    display_name: str = Field("", max_length=200, pattern=r"^[^\x00]*$")
    role: Literal["therapist", "admin"] = "therapist"


class AccountOut(BaseModel):
    id: UUID
    email: str
    display_name: str
    role: str
    active: bool
    created_at: datetime


# --- review and sign-off of notes (docs/adr/0008-notes-review-and-sign-off.md) ---------------
import math  # noqa: E402  (one block, easy to merge)

from pydantic import create_model, model_validator  # noqa: E402

from shared.contracts.notes import ClinicalNotes  # noqa: E402

VERSION_MAX = 2**31 - 1  # note_versions.version is an INTEGER


def _clean(value: Any, where: str = "notes") -> None:
    """Refuse what PostgreSQL's JSONB cannot hold (NUL) and non-finite numbers, anywhere."""
    if isinstance(value, str) and "\x00" in value:
        raise ValueError(f"{where}: must not contain NUL characters")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}: numbers must be finite")
    if isinstance(value, dict):
        for key, item in value.items():
            _clean(key, where)
            _clean(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _clean(item, f"{where}[{index}]")


NotesFields = create_model(  # every notes field but the risk flags, each optional: an edit names what it changes
    "NotesFields",
    __config__=ConfigDict(extra="allow", json_schema_extra={"description": (
        "Fields of ClinicalNotes to change (omitted ones stay). risk_flags are not edited here: "
        "confirm or dismiss each flag with POST .../notes/flags/{flag_id}/review.")}),
    **{name: (field.annotation | None, None) for name, field in ClinicalNotes.model_fields.items()
       if name != "risk_flags"},
)


class NotesEditRequest(BaseModel):
    base_version: int = Field(ge=1, le=VERSION_MAX, description="The version the edit was made on (optimistic concurrency)")
    notes: NotesFields  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _no_nul(self) -> "NotesEditRequest":
        _clean(self.notes.model_dump(exclude_unset=True))
        return self


class FlagReviewRequest(BaseModel):
    base_version: int = Field(ge=1, le=VERSION_MAX)
    decision: Literal["confirmed", "dismissed"]
    reason: SafeText = Field("", max_length=2000, description="Why (required to dismiss)")
    severity: Literal["low", "moderate", "high"] | None = Field(None, description="Confirm with another severity")


class SignRequest(BaseModel):
    base_version: int = Field(ge=1, le=VERSION_MAX, description="The version read and signed")


class AddendumRequest(BaseModel):
    text: SafeText = Field(min_length=1, max_length=20000)


class NoteSignature(BaseModel):
    version: int
    signed_by: UUID
    signed_by_name: str
    signed_at: datetime


class NoteVersionSummary(BaseModel):
    version: int
    kind: str = Field(description="machine (generated), edit (fields changed) or flag_review")
    author_id: UUID | None = Field(None, description="None for machine versions")
    author_name: str | None = None
    base_version: int | None = None
    changes: list[dict[str, Any]] = Field(default_factory=list, description="[{field, flag_id?, detail?}]")
    created_at: datetime


class NoteVersionOut(NoteVersionSummary):
    notes: dict[str, Any]
    engine: dict[str, Any] | None = None


class AddendumOut(BaseModel):
    id: int
    text: str
    author_id: UUID
    author_name: str
    created_at: datetime


class NotesReview(BaseModel):
    session_id: UUID
    status: Literal["draft", "signed"]
    current_version: int
    notes: dict[str, Any] = Field(description="The current version (the signed one once signed)")
    signature: NoteSignature | None = None
    versions: list[NoteVersionSummary]
    addenda: list[AddendumOut] = Field(default_factory=list)
    unreviewed_flags: list[str] = Field(default_factory=list, description="Flag ids to confirm or dismiss before signing")
    machine_update_pending: bool = Field(
        False, description="Regenerated notes arrived but were not applied (signed, or edited since the regeneration)")


# --- enrolled voice (routes/voice.py, ADR 0010) -------------------------------------------------
class VoiceEnrolment(BaseModel):
    enrolled: bool = Field(description="True once the embedding is stored and used in new sessions")
    status: Literal["none", "pending", "enrolled", "failed"] = Field(
        description="none: no enrolment; pending: the sample is being embedded; failed: see error")
    sample_s: float | None = Field(None, description="Length of the enrolled sample")
    requested_at: datetime | None = None
    enrolled_at: datetime | None = None
    model: str | None = Field(None, description="Embedding model (the diarizer's)")
    error: str | None = None
