"""Resilience helpers shared by every service: error kinds, a circuit breaker, retries.

Why: the seeds retried everything (or nothing), slept with ``time.sleep`` in async code and
lost the difference between "try again later" and "this will never work". Here:

- ``TransientError`` / ``PermanentError`` carry a machine ``code`` and a ``message`` that
  is safe to show a user (never a stack trace or PHI). Only transient errors are retried.
- ``CircuitBreaker`` stops calling a dependency that keeps failing, so a consumer can
  pause instead of burning retries and failing sessions. It is an ordinary object created
  per dependency by the service's wiring (no module-level singleton) and takes an
  injectable clock so tests never sleep.
- ``retrying`` builds a tenacity ``AsyncRetrying`` with exponential backoff from plain
  config values.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    retry_if_not_exception_type,
    stop_after_attempt,
    wait_exponential,
)

T = TypeVar("T")


class ServiceError(Exception):
    """Base of classified errors: ``code`` for machines, ``message`` for people."""

    kind = "permanent"

    def __init__(self, code: str, message: str | None = None, *, retry_after_s: float | None = None):
        self.code = code
        self.message = message or code.replace("_", " ")
        self.retry_after_s = retry_after_s
        super().__init__(f"{code}: {self.message}")


class TransientError(ServiceError):
    """Worth retrying later: rate limits, 5xx, timeouts, network trouble."""

    kind = "transient"


class PermanentError(ServiceError):
    """Will fail the same way again: bad request, auth, invalid input or output."""

    kind = "permanent"


class CircuitOpenError(TransientError):
    """Raised instead of calling a dependency whose breaker is open.

    Transient (the dependency may recover), but callers should pause rather than retry
    immediately: ``retry_after_s`` says when the breaker will let a trial call through.
    """

    def __init__(self, name: str, retry_after_s: float):
        super().__init__("circuit_open", f"{name} is temporarily unavailable", retry_after_s=retry_after_s)
        self.name = name


class BreakerState(str, Enum):
    closed = "closed"
    open = "open"
    half_open = "half_open"


class CircuitBreaker:
    """Consecutive-failure circuit breaker for one dependency.

    closed: calls pass; ``failure_threshold`` consecutive failures open it.
    open: calls are refused with CircuitOpenError for ``open_s`` seconds.
    half_open: up to ``half_open_calls`` trial calls pass at once; that many successes
    close it, any failure re-opens it for another ``open_s``.

    Only infrastructure failures should be recorded as failures: a PermanentError caused
    by bad input says nothing about the dependency's health, so ``call`` records those as
    successes of the dependency (it answered) unless ``count_permanent`` is set.
    """

    def __init__(self, name: str, failure_threshold: int = 5, open_s: float = 120.0,
                 half_open_calls: int = 2, clock: Callable[[], float] = time.monotonic,
                 count_permanent: bool = False):
        if failure_threshold < 1 or half_open_calls < 1:
            raise ValueError("failure_threshold and half_open_calls must be >= 1")
        self.name = name
        self.failure_threshold = failure_threshold
        self.open_s = open_s
        self.half_open_calls = half_open_calls
        self.count_permanent = count_permanent
        self._clock = clock
        self._state = BreakerState.closed
        self._failures = 0
        self._opened_at = 0.0
        self._trials_in_flight = 0
        self._trial_successes = 0
        self._listeners: list[Callable[[BreakerState], None]] = []

    # --- state -------------------------------------------------------------------------
    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.open and self._clock() - self._opened_at >= self.open_s:
            self._transition(BreakerState.half_open)
        return self._state

    def seconds_until_half_open(self) -> float:
        if self.state is not BreakerState.open:
            return 0.0
        return max(0.0, self.open_s - (self._clock() - self._opened_at))

    def on_state_change(self, listener: Callable[[BreakerState], None]) -> None:
        """Register a callback (e.g. pause/resume a consumer, update a metric)."""
        self._listeners.append(listener)

    def _transition(self, new: BreakerState) -> None:
        if new is self._state:
            return
        self._state = new
        if new is BreakerState.open:
            self._opened_at = self._clock()
        if new is BreakerState.half_open:
            self._trials_in_flight = 0
            self._trial_successes = 0
        if new is BreakerState.closed:
            self._failures = 0
        for listener in self._listeners:
            listener(new)

    # --- protocol ----------------------------------------------------------------------
    def allow(self) -> bool:
        """May a call go through now? In half-open this reserves one trial slot."""
        state = self.state
        if state is BreakerState.closed:
            return True
        if state is BreakerState.half_open and self._trials_in_flight < self.half_open_calls:
            self._trials_in_flight += 1
            return True
        return False

    def would_allow(self) -> bool:
        """Like ``allow()`` but reserves nothing: for callers that decide up front
        (e.g. refuse a whole multi-call job, or pause a consumer) before calling."""
        state = self.state
        return state is BreakerState.closed or (
            state is BreakerState.half_open and self._trials_in_flight < self.half_open_calls
        )

    def check(self) -> None:
        """``allow()`` or raise CircuitOpenError."""
        if not self.allow():
            raise CircuitOpenError(self.name, self.seconds_until_half_open() or self.open_s)

    def record_success(self) -> None:
        if self._state is BreakerState.half_open:
            self._trials_in_flight = max(0, self._trials_in_flight - 1)
            self._trial_successes += 1
            if self._trial_successes >= self.half_open_calls:
                self._transition(BreakerState.closed)
        else:
            self._failures = 0

    def record_failure(self) -> None:
        if self._state is BreakerState.half_open:
            self._transition(BreakerState.open)
            return
        if self._state is BreakerState.open:
            return
        self._failures += 1
        if self._failures >= self.failure_threshold:
            self._transition(BreakerState.open)

    def _record_exception(self, exc: BaseException) -> None:
        if isinstance(exc, asyncio.CancelledError):
            # Cancellation says nothing about the dependency: free the trial slot only.
            if self._state is BreakerState.half_open:
                self._trials_in_flight = max(0, self._trials_in_flight - 1)
            return
        if isinstance(exc, PermanentError) and not self.count_permanent:
            self.record_success()
        else:
            self.record_failure()

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn()`` through the breaker, recording its outcome."""
        self.check()
        try:
            result = await fn()
        except BaseException as exc:
            self._record_exception(exc)
            raise
        self.record_success()
        return result

    async def __aenter__(self) -> CircuitBreaker:
        self.check()
        return self

    async def __aexit__(self, exc_type, exc, tb) -> bool:
        if exc is None:
            self.record_success()
        else:
            self._record_exception(exc)
        return False

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, state={self.state.value}, failures={self._failures})"


def retrying(attempts: int = 3, initial_s: float = 2.0, max_s: float = 60.0,
             retry_on: tuple[type[BaseException], ...] = (TransientError,),
             sleep: Callable[[float], Awaitable[None]] | None = None) -> AsyncRetrying:
    """A tenacity AsyncRetrying: ``attempts`` tries, waits initial_s, 2x, 4x... capped at max_s.

    CircuitOpenError is never retried (waiting minutes inside one call is the consumer's
    job, not the retry loop's). The last exception is re-raised as itself, not wrapped.
    """
    kwargs = {}
    if sleep is not None:
        kwargs["sleep"] = sleep
    return AsyncRetrying(
        stop=stop_after_attempt(max(1, attempts)),
        wait=wait_exponential(multiplier=initial_s, exp_base=2, min=initial_s, max=max_s),
        retry=retry_if_exception_type(retry_on) & retry_if_not_exception_type(CircuitOpenError),
        reraise=True,
        **kwargs,
    )
