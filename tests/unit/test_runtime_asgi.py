"""ServiceRuntime.running(): what the gateway's ASGI lifespan wraps. Without a broker
(with_broker=False) the runtime never needs one: no bootstrap servers, no relay, and the
start/stop sequence (background tasks, close hooks) still runs. No database or broker
is reachable here: nothing may connect."""

from __future__ import annotations

import asyncio

from shared.runtime import ServiceRuntime
from shared.settings import Settings


def test_running_without_broker_starts_background_work_and_runs_close_hooks(tmp_path):
    settings = Settings(kafka_bootstrap_servers=None, blob_dir=str(tmp_path), metrics_port=0)
    runtime = ServiceRuntime.create(settings, "asgi-test", with_db=False, with_broker=False)
    assert runtime.broker is None and runtime.relay is None and not runtime.broker_enabled
    started, closed = asyncio.Event(), []

    async def background() -> None:
        started.set()
        await asyncio.Event().wait()  # runs until the runtime cancels it on stop

    async def close() -> None:
        closed.append("closed")

    runtime.background("bg", background)
    runtime.on_stop(close)

    async def serve() -> list:
        async with runtime.running() as running:
            assert running is runtime
            await asyncio.wait_for(started.wait(), 10)  # a hang is a failure, not a slow pass
            assert closed == []
        return [task for task in runtime._tasks if not task.done()]

    assert asyncio.run(serve()) == []
    assert closed == ["closed"]
