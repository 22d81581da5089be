"""Progress entry point: one subscriber (one group join) over every pipeline topic."""

from __future__ import annotations

from shared.contracts.events import Topic
from shared.runtime import ServiceRuntime, run_service
from shared.settings import Settings
from services.progress.handlers import ProgressHandler

CONSUMED = [
    Topic.AUDIO_UPLOADED, Topic.TRANSCRIPT_READY, Topic.TRANSCRIPT_FAILED, Topic.DIARIZATION_READY,
    Topic.DIARIZATION_FAILED, Topic.TRANSCRIPT_MERGED, Topic.NOTES_READY, Topic.NOTES_FAILED,
    Topic.SESSION_PROGRESS, Topic.SESSION_DELETED,
]


def build(settings: Settings) -> ServiceRuntime:
    runtime = ServiceRuntime.create(settings, "progress")
    runtime.metrics.declare_session_outcomes()
    handler = ProgressHandler(runtime)

    runtime.consume({t.value: handler.on_event for t in CONSUMED}, group_id="progress")

    runtime.background("progress-reconciler", handler.run_reconciler)
    return runtime


if __name__ == "__main__":
    run_service(build)
