"""Circuit breaker state machine and retry policy, with a fake clock and recorded sleeps."""

from __future__ import annotations

import asyncio

import pytest

from shared.resilience import (
    BreakerState,
    CircuitBreaker,
    CircuitOpenError,
    PermanentError,
    TransientError,
    retrying,
)


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


def _breaker(clock, **kw) -> CircuitBreaker:
    return CircuitBreaker("llm", failure_threshold=kw.pop("failure_threshold", 3), open_s=kw.pop("open_s", 60),
                          half_open_calls=kw.pop("half_open_calls", 2), clock=clock, **kw)


def test_errors_carry_code_and_safe_message():
    e = TransientError("rate_limited", "The notes service is busy; retrying.")
    assert e.code == "rate_limited" and e.kind == "transient" and "busy" in e.message
    p = PermanentError("invalid_llm_output")
    assert p.kind == "permanent" and p.message == "invalid llm output"
    assert isinstance(CircuitOpenError("x", 5), TransientError)


def test_opens_after_threshold_consecutive_failures():
    clock = FakeClock()
    b = _breaker(clock)
    b.record_failure()
    b.record_failure()
    b.record_success()  # resets the consecutive count
    b.record_failure()
    b.record_failure()
    assert b.state is BreakerState.closed
    b.record_failure()
    assert b.state is BreakerState.open
    assert not b.allow()
    assert b.seconds_until_half_open() == pytest.approx(60)
    clock.advance(45)
    assert b.seconds_until_half_open() == pytest.approx(15)


def test_half_open_limits_trials_and_closes_after_successes():
    clock = FakeClock()
    b = _breaker(clock)
    for _ in range(3):
        b.record_failure()
    clock.advance(60)
    assert b.state is BreakerState.half_open
    assert b.allow() and b.allow()
    assert not b.allow()  # only half_open_calls trials at once
    b.record_success()
    assert b.state is BreakerState.half_open
    b.record_success()
    assert b.state is BreakerState.closed
    assert b.allow()


def test_half_open_failure_reopens():
    clock = FakeClock()
    b = _breaker(clock)
    for _ in range(3):
        b.record_failure()
    clock.advance(61)
    assert b.allow()
    b.record_failure()
    assert b.state is BreakerState.open
    assert b.seconds_until_half_open() == pytest.approx(60)


async def test_call_and_context_manager_record_outcomes():
    clock = FakeClock()
    b = _breaker(clock)
    changes = []
    b.on_state_change(changes.append)
    calls = 0

    async def boom():
        nonlocal calls
        calls += 1
        raise TransientError("upstream_5xx")

    for _ in range(3):
        with pytest.raises(TransientError):
            await b.call(boom)
    with pytest.raises(CircuitOpenError) as info:
        await b.call(boom)
    assert calls == 3 and info.value.retry_after_s == pytest.approx(60)
    assert changes == [BreakerState.open]

    clock.advance(60)

    async def ok():
        return 42

    assert await b.call(ok) == 42
    async with b:
        pass
    assert b.state is BreakerState.closed
    assert changes == [BreakerState.open, BreakerState.half_open, BreakerState.closed]


async def test_permanent_errors_do_not_trip_the_breaker_by_default():
    b = _breaker(FakeClock())

    async def bad_request():
        raise PermanentError("bad_request")

    for _ in range(5):
        with pytest.raises(PermanentError):
            await b.call(bad_request)
    assert b.state is BreakerState.closed
    strict = _breaker(FakeClock(), count_permanent=True)
    for _ in range(3):
        with pytest.raises(PermanentError):
            async with strict:
                raise PermanentError("unauthorized")
    assert strict.state is BreakerState.open


async def test_cancellation_frees_half_open_slot():
    clock = FakeClock()
    b = _breaker(clock, half_open_calls=1)
    for _ in range(3):
        b.record_failure()
    clock.advance(60)

    async def hang():
        await asyncio.sleep(10)

    task = asyncio.create_task(b.call(hang))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert b.state is BreakerState.half_open and b.allow()


async def test_retrying_backs_off_exponentially_and_only_on_transient():
    sleeps: list[float] = []

    async def fake_sleep(s: float) -> None:
        sleeps.append(s)

    attempts = 0
    with pytest.raises(TransientError):
        async for attempt in retrying(attempts=5, initial_s=2, max_s=10, sleep=fake_sleep):
            with attempt:
                attempts += 1
                raise TransientError("timeout")
    assert attempts == 5
    assert sleeps == [2, 4, 8, 10]

    sleeps.clear()
    attempts = 0
    with pytest.raises(PermanentError):
        async for attempt in retrying(attempts=5, initial_s=2, max_s=10, sleep=fake_sleep):
            with attempt:
                attempts += 1
                raise PermanentError("unauthorized")
    assert attempts == 1 and sleeps == []

    attempts = 0
    with pytest.raises(CircuitOpenError):
        async for attempt in retrying(attempts=5, initial_s=2, max_s=10, sleep=fake_sleep):
            with attempt:
                attempts += 1
                raise CircuitOpenError("llm", 30)
    assert attempts == 1


async def test_retrying_returns_after_recovery():
    sleeps: list[float] = []

    async def fake_sleep(s: float) -> None:
        sleeps.append(s)

    n = 0
    async for attempt in retrying(attempts=3, initial_s=0.5, max_s=60, sleep=fake_sleep):
        with attempt:
            n += 1
            if n < 3:
                raise TransientError("rate_limited")
    assert n == 3 and sleeps == [0.5, 1.0]
