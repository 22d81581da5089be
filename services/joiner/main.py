"""Joiner entry point: one subscriber over both halves, their failures and the commands."""

from __future__ import annotations

from shared.contracts.events import Topic
from shared.runtime import ServiceRuntime, run_service
from shared.settings import Settings
from shared.topology import JOINER
from services.joiner.handlers import JoinHandler

CONSUMED = [Topic.TRANSCRIPT_READY, Topic.DIARIZATION_READY, Topic.TRANSCRIPT_FAILED, Topic.DIARIZATION_FAILED,
            Topic.TRANSCRIPT_REMERGE, Topic.SESSION_DELETED]


def build(settings: Settings) -> ServiceRuntime:
    runtime = ServiceRuntime.create(settings, "joiner")
    handler = JoinHandler(runtime)

    runtime.consume(JOINER, {t: handler.on_event for t in CONSUMED})

    runtime.background("joiner-deadlines", handler.run_deadline_scheduler)
    return runtime


if __name__ == "__main__":
    run_service(build)
