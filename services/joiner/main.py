"""Joiner entry point: wires the store and dependencies into the handlers; one
subscriber over both halves, their failures and the commands."""

from __future__ import annotations

from shared.contracts.events import Topic, utcnow
from shared.runtime import ServiceRuntime, run_service
from shared.settings import Settings
from shared.topology import JOINER
from services.joiner import handlers
from services.joiner.handlers import JoinDeps
from services.joiner.quality import QualityThresholds
from services.joiner.store import PgJoinStore

HANDLERS = {
    Topic.TRANSCRIPT_READY: handlers.on_transcript_ready,
    Topic.DIARIZATION_READY: handlers.on_diarization_ready,
    Topic.TRANSCRIPT_FAILED: handlers.on_transcript_failed,
    Topic.DIARIZATION_FAILED: handlers.on_diarization_failed,
    Topic.TRANSCRIPT_REMERGE: handlers.on_remerge,
    Topic.SESSION_DELETED: handlers.on_session_deleted,
}
CONSUMED = list(HANDLERS)


def quality_thresholds(settings: Settings) -> QualityThresholds:
    """The TB_QUALITY_* settings; the finer thresholds keep their calibrated defaults."""
    return QualityThresholds(
        silence_s=settings.quality_silence_s, wpm_fast=settings.quality_wpm_fast, wpm_slow=settings.quality_wpm_slow,
        repeat_min_ngram=settings.quality_repeat_min, low_conf_word_p=settings.quality_low_confidence_p,
        expected_language=settings.quality_expected_language, max_per_kind=settings.quality_max_per_kind)


def build(settings: Settings) -> ServiceRuntime:
    runtime = ServiceRuntime.create(settings, "joiner")
    deps = JoinDeps(
        store=PgJoinStore(runtime.session_factory, runtime.name, runtime.relay),
        blobs=runtime.blobs,
        run_blocking=runtime.run_blocking,
        clock=utcnow,
        metrics=runtime.metrics,
        service=runtime.name,
        deadline_s=settings.join_diarization_deadline_s,
        inline_payload_max_bytes=settings.inline_payload_max_bytes,
        quality=quality_thresholds(settings),
    )
    runtime.consume(JOINER, {topic: runtime.route(handler, deps) for topic, handler in HANDLERS.items()})
    runtime.every("joiner-deadlines", settings.join_scheduler_interval_s, lambda: handlers.check_deadlines(deps))
    return runtime


if __name__ == "__main__":
    run_service(build)
