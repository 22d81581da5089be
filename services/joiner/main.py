"""Joiner entry point: one subscriber over both halves, their failures and the commands."""

from __future__ import annotations

import asyncio

from faststream.kafka import KafkaMessage

from shared.contracts.events import Topic
from shared.runtime import ServiceRuntime
from shared.settings import Settings
from services.joiner.handlers import JoinHandler

CONSUMED = [Topic.TRANSCRIPT_READY, Topic.DIARIZATION_READY, Topic.TRANSCRIPT_FAILED, Topic.DIARIZATION_FAILED,
            Topic.TRANSCRIPT_REMERGE, Topic.SESSION_DELETED]


def build(settings: Settings) -> ServiceRuntime:
    runtime = ServiceRuntime.create(settings, "joiner")
    handler = JoinHandler(runtime)

    @runtime.subscriber(*[t.value for t in CONSUMED], group_id="joiner")
    async def on_message(msg: KafkaMessage) -> None:
        await runtime.dispatch(msg, handler.on_event)

    runtime.background("joiner-deadlines", handler.run_deadline_scheduler)
    return runtime


async def main() -> None:
    await build(Settings()).run_until_signalled()


if __name__ == "__main__":
    asyncio.run(main())
