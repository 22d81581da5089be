"""Progress entry point: one subscriber (one group join) over every pipeline topic."""

from __future__ import annotations

import asyncio

from faststream.kafka import KafkaMessage

from shared.contracts.events import Topic
from shared.runtime import ServiceRuntime
from shared.settings import Settings
from services.progress.handlers import ProgressHandler

CONSUMED = [
    Topic.AUDIO_UPLOADED, Topic.TRANSCRIPT_READY, Topic.TRANSCRIPT_FAILED, Topic.DIARIZATION_READY,
    Topic.DIARIZATION_FAILED, Topic.TRANSCRIPT_MERGED, Topic.NOTES_READY, Topic.NOTES_FAILED,
    Topic.SESSION_PROGRESS, Topic.SESSION_DELETED,
]


def build(settings: Settings) -> ServiceRuntime:
    runtime = ServiceRuntime.create(settings, "progress")
    handler = ProgressHandler(runtime)

    @runtime.subscriber(*[t.value for t in CONSUMED], group_id="progress")
    async def on_message(msg: KafkaMessage) -> None:
        await runtime.dispatch(msg, handler.on_event)

    runtime.background("progress-reconciler", handler.run_reconciler)
    return runtime


async def main() -> None:
    await build(Settings()).run_until_signalled()


if __name__ == "__main__":
    asyncio.run(main())
