"""Progress entry point: wires the store and dependencies into the handlers; one
subscriber (one group join) over every pipeline topic."""

from __future__ import annotations

from shared.contracts.events import Topic, utcnow
from shared.runtime import ServiceRuntime, run_service
from shared.settings import Settings
from shared.topology import PROGRESS
from services.progress import handlers
from services.progress.handlers import ProgressDeps
from services.progress.store import PgProgressStore

PIPELINE_TOPICS = [
    Topic.AUDIO_UPLOADED, Topic.TRANSCRIPT_READY, Topic.TRANSCRIPT_FAILED, Topic.DIARIZATION_READY,
    Topic.DIARIZATION_FAILED, Topic.TRANSCRIPT_MERGED, Topic.NOTES_READY, Topic.NOTES_FAILED,
    Topic.SESSION_PROGRESS,
]
HANDLERS = {**{topic: handlers.on_pipeline_event for topic in PIPELINE_TOPICS},
            Topic.SESSION_DELETED: handlers.on_session_deleted}
CONSUMED = list(HANDLERS)


def build(settings: Settings) -> ServiceRuntime:
    runtime = ServiceRuntime.create(settings, "progress")
    runtime.metrics.declare_session_outcomes()
    deps = ProgressDeps(
        store=PgProgressStore(runtime.session_factory, runtime.name, runtime.relay),
        clock=utcnow,
        metrics=runtime.metrics,
        service=runtime.name,
        stage_deadline_s=settings.stage_deadline_s,
        stage_stall_s=settings.stage_stall_s,
        redrive_max=settings.redrive_max,
    )
    runtime.consume(PROGRESS, {topic: runtime.route(handler, deps) for topic, handler in HANDLERS.items()})
    runtime.every("progress-reconciler", handlers.reconcile_interval_s(settings.stage_deadline_s, settings.stage_stall_s),
                  lambda: handlers.reconcile(deps))
    return runtime


if __name__ == "__main__":
    run_service(build)
