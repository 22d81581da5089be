"""The schema, as SQLAlchemy Core tables. Alembic migrations (migrations/) own the DDL;
these definitions are what the code queries. Each table has exactly one writer service,
named in its comment; the gateway also reads the progress service's read model."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

metadata = MetaData()

# --- every service: transactional outbox and consumer inbox (idempotency) -------------
outbox = Table(
    "outbox",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("topic", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("payload", Text, nullable=False),
    Column("headers", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("published_at", DateTime(timezone=True)),
    Index("ix_outbox_published_at", "published_at"),  # pruning sent rows
    Index("ix_outbox_key", "key"),  # a deleted session's unsent rows
    Index("ix_outbox_key_topic", "key", "topic", "id"),  # re-drives look a session's events up
)

inbox = Table(
    "inbox",
    metadata,
    Column("consumer", Text, nullable=False),
    Column("event_id", Text, nullable=False),
    Column("session_id", UUID(as_uuid=True)),
    Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("consumer", "event_id"),
)

# Ids (nothing else) of deleted sessions, per consumer: a late or redelivered event of a
# deleted session is dropped instead of recreating rows. Written by each consumer itself.
tombstones = Table(
    "tombstones",
    metadata,
    Column("consumer", Text, nullable=False),
    Column("session_id", UUID(as_uuid=True), nullable=False),
    Column("deleted_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("consumer", "session_id"),
)

# Crypto-shredding (shared/shredding.py): one AES-256 data key per session, created with the
# upload and deleted with the session, which makes every encrypted copy of its events and
# blobs unreadable. Written by the gateway only; every service reads it.
session_keys = Table(
    "session_keys",
    metadata,
    Column("session_id", UUID(as_uuid=True), primary_key=True),
    Column("data_key", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# --- gateway ---------------------------------------------------------------------------
therapists = Table(
    "therapists",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("email", Text, nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("display_name", Text, nullable=False, server_default=""),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("role", Text, nullable=False, server_default="therapist"),  # therapist or admin
    Column("active", Boolean, nullable=False, server_default="true"),  # false: cannot sign in or refresh
)

# One row per sign-in: every token pair issued by a login or its refreshes carries the
# family id. Revoking the family (logout, refresh-token reuse, deactivation, password
# change) ends its refresh tokens and, because each request checks it, its access tokens.
token_families = Table(
    "token_families",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("therapist_id", UUID(as_uuid=True), ForeignKey("therapists.id", ondelete="CASCADE"), nullable=False,
           index=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("revoked_at", DateTime(timezone=True)),
    Column("revoked_reason", Text),
)

# Refresh tokens, stored as a SHA-256 of the token (never the token): used_at is set when
# one is exchanged, so presenting it again is detected as reuse.
refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("token_hash", Text, primary_key=True),
    Column("family_id", UUID(as_uuid=True), ForeignKey("token_families.id", ondelete="CASCADE"), nullable=False,
           index=True),
    Column("issued_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True)),
)

patients = Table(
    "patients",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("therapist_id", UUID(as_uuid=True), ForeignKey("therapists.id", ondelete="CASCADE"), nullable=False),
    Column("display_name", Text, nullable=False),
    Column("external_ref", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("therapist_id", UUID(as_uuid=True), ForeignKey("therapists.id", ondelete="CASCADE"), nullable=False),
    Column("patient_id", UUID(as_uuid=True), ForeignKey("patients.id", ondelete="SET NULL")),
    Column("session_date", DateTime(timezone=True)),
    Column("audio_uri", Text, nullable=False),
    Column("audio_filename", Text),
    Column("audio_bytes", BigInteger, nullable=False),
    Column("audio_sha256", Text, nullable=False),
    Column("content_type", Text, nullable=False),
    Column("duration_s", Float, nullable=False),
    Column("options", JSONB, nullable=False, server_default="{}"),
    Column("speaker_names", JSONB, nullable=False, server_default="{}"),
    Column("role_overrides", JSONB, nullable=False, server_default="{}"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # Corrections typed by the therapist: {segment index: {"text", "original", "edited_at"}}.
    Column("segment_edits", JSONB, nullable=False, server_default="{}"),
    # Cancelled by the therapist: shown as status "cancelled"; later stage results do not change that.
    Column("cancelled_at", DateTime(timezone=True)),
    Column("cancel_reason", Text),
)

# A therapist's enrolled voice (ADR 0010). The gateway creates the row (status pending,
# with the decoded 16 kHz int16 sample) and deletes it; the diarizer, which owns the
# embedding model, fills in the embedding (float32 bytes) and clears the sample in one
# UPDATE of the request it read (status enrolled or failed). No audio is kept once done.
therapist_voices = Table(
    "therapist_voices",
    metadata,
    Column("therapist_id", UUID(as_uuid=True), ForeignKey("therapists.id", ondelete="CASCADE"), primary_key=True),
    Column("request_id", UUID(as_uuid=True), nullable=False),
    Column("status", Text, nullable=False),  # pending, enrolled or failed
    Column("sample_pcm", LargeBinary),  # only while pending
    Column("sample_s", Float, nullable=False),
    Column("embedding", LargeBinary),
    Column("model", Text),
    Column("error", Text),
    Column("requested_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("enrolled_at", DateTime(timezone=True)),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("therapist_id", UUID(as_uuid=True)),
    Column("session_id", UUID(as_uuid=True)),
    Column("action", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("target_id", UUID(as_uuid=True)),  # what a non-session action was about (an account, a patient)
)

# --- transcriber, diarizer, notes: one row per (stage, session) of work ----------------
stage_jobs = Table(
    "stage_jobs",
    metadata,
    Column("stage", Text, nullable=False),
    Column("session_id", UUID(as_uuid=True), nullable=False),
    Column("status", Text, nullable=False),  # running, done, failed
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("detail", JSONB, nullable=False, server_default="{}"),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("stage", "session_id"),
)

# --- transcriber: a long recording fanned out in chunks (services/transcriber/fanout_store.py)
transcript_fanouts = Table(
    "transcript_fanouts",
    metadata,
    Column("session_id", UUID(as_uuid=True), primary_key=True),
    Column("status", Text, nullable=False),  # running, done, failed
    Column("total", Integer, nullable=False),
    Column("plan", JSONB, nullable=False),  # the chunks: index, cut and audio bounds (no PHI)
    Column("language", Text),
    Column("notes_backend", Text),  # the upload's notes_backend, carried to transcript.ready
    Column("duration_s", Float, nullable=False),
    Column("traceparent", Text),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
transcript_chunks = Table(
    "transcript_chunks",
    metadata,
    Column("session_id", UUID(as_uuid=True), ForeignKey("transcript_fanouts.session_id", ondelete="CASCADE"),
           nullable=False),
    Column("idx", Integer, nullable=False),
    Column("status", Text, nullable=False),  # pending, done, failed
    Column("audio_uri", Text, nullable=False),  # sealed blob: the chunk's PCM
    Column("result_uri", Text),  # sealed blob: the chunk's segments (chunk-local times)
    Column("worker", Text),  # the replica that transcribed it (host:pid)
    Column("processing_s", Float),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("session_id", "idx"),
)

# --- joiner ------------------------------------------------------------------------------
join_state = Table(
    "join_state",
    metadata,
    Column("session_id", UUID(as_uuid=True), primary_key=True),
    Column("transcript", JSONB),
    Column("diarization", JSONB),
    Column("transcript_error", JSONB),
    Column("diarization_error", JSONB),
    Column("transcript_at", DateTime(timezone=True)),
    Column("deadline_at", DateTime(timezone=True)),
    Column("merged_version", Integer, nullable=False, server_default="0"),
    Column("merged_at", DateTime(timezone=True)),
    Column("degraded", Boolean, nullable=False, server_default="false"),
    Column("late_diarization", Boolean, nullable=False, server_default="false"),
    Column("traceparent", Text),
)

# --- progress: the session read model -------------------------------------------------------
session_status = Table(
    "session_status",
    metadata,
    Column("session_id", UUID(as_uuid=True), primary_key=True),
    Column("owner_id", UUID(as_uuid=True)),
    Column("status", Text, nullable=False),
    Column("percent", Integer, nullable=False, server_default="0"),
    Column("seq", BigInteger, nullable=False, server_default="0"),
    Column("message", Text, nullable=False, server_default=""),
    Column("eta_s", Float),
    Column("error", Text),
    Column("stages", JSONB, nullable=False, server_default="{}"),
    Column("warnings", JSONB, nullable=False, server_default="[]"),
    Column("audio_s", Float),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("finished_at", DateTime(timezone=True)),
    # The reconciler's re-drives: {stage: count}, and when it last re-drove (not progress).
    Column("redrives", JSONB, nullable=False, server_default="{}"),
    Column("redriven_at", DateTime(timezone=True)),
)

status_history = Table(
    "status_history",
    metadata,
    Column("session_id", UUID(as_uuid=True), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("payload", JSONB, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("session_id", "seq"),
)

session_results = Table(
    "session_results",
    metadata,
    Column("session_id", UUID(as_uuid=True), primary_key=True),
    Column("transcript", JSONB),
    Column("diarization", JSONB),
    Column("merged", JSONB),
    Column("merged_version", Integer),
    Column("notes", JSONB),
    Column("notes_engine", JSONB),
    Column("notes_error", JSONB),
    Column("metrics", JSONB, nullable=False, server_default="{}"),
    # The latest merge's transcript quality checks (no transcript text: not sealed).
    Column("quality_warnings", JSONB),
)

# --- notes: one row per notes run (idempotency claim + result) and the last input ----------
notes_runs = Table(
    "notes_runs",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("session_id", UUID(as_uuid=True), nullable=False),
    Column("transcript_version", Integer, nullable=False),
    # "auto" for transcript.merged; the command's event id for notes.regenerate
    Column("request_key", Text, nullable=False),
    Column("backend", Text, nullable=False),  # offline or llm
    Column("status", Text, nullable=False),  # running, done, failed
    Column("attempts", Integer, nullable=False, server_default="1"),  # fencing token for retakes
    Column("worker", Text),  # host:pid of the process that holds the run
    Column("notes", JSONB),
    Column("engine", JSONB),
    Column("error", JSONB),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("session_id", "transcript_version", "request_key", name="uq_notes_runs_request"),
)

notes_inputs = Table(
    "notes_inputs",
    metadata,
    Column("session_id", UUID(as_uuid=True), primary_key=True),
    Column("transcript_version", Integer, nullable=False),
    Column("merged", JSONB, nullable=False),  # the last transcript.merged payload (segments may be a blob ref)
    Column("traceparent", Text),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# --- gateway: review and sign-off of clinical notes (docs/adr/0008-notes-review-and-sign-off.md) --
# Every row hangs off its session (ON DELETE CASCADE): a session's deletion removes its note
# versions and addenda in the same transaction. Written by the gateway only.
note_reviews = Table(
    "note_reviews",
    metadata,
    Column("session_id", UUID(as_uuid=True), ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True),
    Column("current_version", Integer, nullable=False),
    Column("signed_version", Integer),
    Column("signed_by", UUID(as_uuid=True)),
    Column("signed_by_name", Text),
    Column("signed_at", DateTime(timezone=True)),
    # Regenerated machine notes replace human edits only when the regeneration was asked for
    # with discard_edits while this version was current.
    Column("accept_machine_after", Integer),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

note_versions = Table(
    "note_versions",
    metadata,
    Column("session_id", UUID(as_uuid=True), ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("kind", Text, nullable=False),  # machine, edit or flag_review
    Column("notes", JSONB, nullable=False),
    Column("author_id", UUID(as_uuid=True)),  # None: the machine
    Column("author_name", Text),
    Column("base_version", Integer),
    Column("changes", JSONB, nullable=False, server_default="[]"),  # [{"field", "detail"}], no note text
    Column("source_digest", Text),  # machine versions: sha256 of the notes they were made from
    Column("engine", JSONB),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("session_id", "version"),
)

note_addenda = Table(
    "note_addenda",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("session_id", UUID(as_uuid=True), ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False),
    Column("text", Text, nullable=False),
    Column("author_id", UUID(as_uuid=True), nullable=False),
    Column("author_name", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_note_addenda_session", "session_id", "id"),
)
