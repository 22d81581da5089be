"""What a re-drive sends again, shared by the progress reconciler (automatic, for stranded
sessions) and the gateway's POST /api/sessions/{id}:retry (a therapist's request for a
stalled one): for each stage, the topics of its results and the topics that start it.
A re-drive publishes again, from the outbox, whichever of these the session sent last:
a result that never reached its readers, or else the events that start the stage.
Idempotent consumers (inbox, stage_jobs, notes runs) make a second delivery harmless."""

from __future__ import annotations

from typing import Any

from shared.contracts.events import Topic

STAGE_ORDER = ("transcription", "diarization", "join", "notes")

REDRIVE_TOPICS: dict[str, tuple[tuple[Topic, ...], tuple[Topic, ...]]] = {
    "transcription": ((Topic.TRANSCRIPT_READY, Topic.TRANSCRIPT_FAILED), (Topic.AUDIO_UPLOADED,)),
    "diarization": ((Topic.DIARIZATION_READY, Topic.DIARIZATION_FAILED), (Topic.AUDIO_UPLOADED,)),
    "join": ((Topic.TRANSCRIPT_MERGED,), (Topic.TRANSCRIPT_READY, Topic.DIARIZATION_READY, Topic.DIARIZATION_FAILED)),
    "notes": ((Topic.NOTES_READY, Topic.NOTES_FAILED), (Topic.TRANSCRIPT_MERGED,)),
}


def topics_of(stage: str) -> list[str]:
    results, inputs = REDRIVE_TOPICS[stage]
    return [t.value for t in results + inputs]


def events_to_resend(stage: str, latest: dict[str, int]) -> list[int]:
    """Outbox ids to publish again for ``stage``, given the session's latest outbox id per
    topic: its newest result if that is newer than every input, else every input."""
    results, inputs = REDRIVE_TOPICS[stage]
    newest_input = max((latest[t.value] for t in inputs if t.value in latest), default=0)
    newest_result = max((latest[t.value] for t in results if t.value in latest), default=0)
    if newest_result > newest_input:
        return [newest_result]
    return sorted(latest[t.value] for t in inputs if t.value in latest)


def unfinished_stage(stages: dict[str, Any]) -> str | None:
    """The first stage (pipeline order) still pending or running, from a status's
    ``stages`` (StageState objects or their JSON)."""
    for name in STAGE_ORDER:
        stage = stages.get(name)
        state = stage.get("state") if isinstance(stage, dict) else getattr(stage, "state", None)
        if state in ("pending", "running", None):
            return name
    return None
