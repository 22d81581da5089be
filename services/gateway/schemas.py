"""Request and response models of the REST API (OpenAPI is generated from these)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field


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
    refresh_token: str


class TherapistCreate(BaseModel):
    email: str = Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")
    password: str = Field(min_length=8, max_length=256)
    display_name: str = Field("", max_length=200)


class TherapistOut(BaseModel):
    id: UUID
    email: str
    display_name: str
    role: str = "therapist"


class PatientCreate(BaseModel):
    display_name: str = Field(min_length=1, max_length=200)
    external_ref: str | None = Field(None, max_length=200)


class PatientOut(BaseModel):
    id: UUID
    display_name: str
    external_ref: str | None = None
    created_at: datetime


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
    names: dict[str, str] = Field(default_factory=dict, description="label -> display name")
    roles: dict[str, str | None] = Field(default_factory=dict, description="label -> THERAPIST, CLIENT or null")
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
