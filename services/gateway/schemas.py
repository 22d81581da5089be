"""Request and response models of the REST API (OpenAPI is generated from these)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

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
    roles: dict[Annotated[SafeText, Field(max_length=100)], str | None] = Field(
        default_factory=dict, description="label -> THERAPIST, CLIENT, CLIENT 1, CLIENT 2, ... or null")
    swap_roles: bool = Field(False, description="Swap THERAPIST and CLIENT")


class RegenerateRequest(BaseModel):
    backend: str | None = Field(None, pattern="^(offline|llm)$")


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
