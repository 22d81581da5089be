"""Notes entry point: wires settings, broker, DB, the LLM circuit breaker and the notes
backends, then consumes transcript.merged, notes.regenerate and session.deleted on one
subscriber (consumer group ``notes``)."""

from __future__ import annotations

import asyncio

from faststream.kafka import KafkaMessage

from shared.contracts.events import Topic
from shared.logging import get_logger
from shared.resilience import BreakerState
from shared.runtime import ServiceRuntime
from shared.settings import Settings
from services.notes.handlers import NotesHandler
from services.notes.service import NotesGenerator, breaker_from

log = get_logger(__name__)


def build(settings: Settings) -> ServiceRuntime:
    runtime = ServiceRuntime.create(settings, "notes")
    breaker = breaker_from(settings, "llm")  # one per process: every session shares the endpoint's health
    gauge = runtime.metrics.breaker_state.labels(breaker.name)
    gauge.set(0)

    def on_breaker(state: BreakerState) -> None:
        gauge.set(1 if state is BreakerState.open else 0)
        log.warning("llm_breaker_state", state=state.value)

    breaker.on_state_change(on_breaker)
    generator = NotesGenerator.from_settings(settings, runtime.run_blocking, breaker)
    handler = NotesHandler(runtime, generator, breaker)
    log.info("notes_backend_configured", default_backend=generator.default_backend,
             model=settings.llm_model if generator.llm else None)

    routes = {
        Topic.TRANSCRIPT_MERGED.value: handler.on_transcript_merged,
        Topic.NOTES_REGENERATE.value: handler.on_regenerate,
        Topic.SESSION_DELETED.value: handler.on_session_deleted,
    }

    @runtime.subscriber(*routes, group_id="notes")
    async def on_message(msg: KafkaMessage) -> None:
        await runtime.dispatch(msg, routes)

    return runtime


async def main() -> None:
    await build(Settings()).run_until_signalled()


if __name__ == "__main__":
    asyncio.run(main())
