"""Notes orchestration, independent of the bus and the database: choose a backend
(offline or an OpenAI-compatible LLM) and produce (ClinicalNotes, NotesEngine).

The offline extractor is CPU-bound and runs on the service's worker pool (never on the
event loop); the LLM backend is async. Failures surface as the shared resilience classes:
CircuitOpenError (the LLM breaker is open: the consumer pauses), TransientError (retries
exhausted) and PermanentError (will fail the same way again).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from services.notes.intervention_classifier import InterventionClassifier
from services.notes.risk import RiskDetector
from services.notes.llm import LLMConfig, LLMNotesBackend
from services.notes.offline import build_offline_notes
from shared.contracts.events import MergedSegment, NotesEngine, SpeakerInfo
from shared.contracts.notes import ClinicalNotes
from shared.resilience import CircuitBreaker, PermanentError
from shared.settings import Settings

OFFLINE = "offline"
LLM = "llm"
BACKENDS = (OFFLINE, LLM)

RunBlocking = Callable[..., Awaitable[Any]]


def llm_config_from(settings: Settings) -> LLMConfig:
    return LLMConfig(
        base_url=settings.llm_base_url,
        api_key=settings.llm_api_key,
        model=settings.llm_model,
        timeout_s=settings.llm_timeout_s,
        max_tokens=settings.llm_max_tokens,
        context_tokens=settings.llm_context_tokens,
        price_in_per_1k=settings.llm_price_in_per_1k,
        price_out_per_1k=settings.llm_price_out_per_1k,
        retry_attempts=settings.llm_retry_attempts,
        retry_initial_s=settings.llm_retry_initial_s,
        retry_max_s=settings.llm_retry_max_s,
    )


def breaker_from(settings: Settings, name: str = "llm") -> CircuitBreaker:
    return CircuitBreaker(
        name,
        failure_threshold=settings.breaker_failure_threshold,
        open_s=settings.breaker_open_s,
        half_open_calls=settings.breaker_half_open_calls,
    )


class NotesGenerator:
    """One per process: owns the LLM backend (and through it the breaker) when configured."""

    def __init__(self, run_blocking: RunBlocking, llm: LLMNotesBackend | None, detector: RiskDetector | None = None,
                 interventions: InterventionClassifier | None = None) -> None:
        self._run_blocking = run_blocking
        self.llm = llm
        self.detector = detector
        self.interventions = interventions

    @classmethod
    def from_settings(cls, settings: Settings, run_blocking: RunBlocking, breaker: CircuitBreaker,
                      detector: RiskDetector | None = None,
                      interventions: InterventionClassifier | None = None) -> "NotesGenerator":
        llm = (LLMNotesBackend(llm_config_from(settings), breaker, detector=detector)
               if settings.llm_base_url else None)
        return cls(run_blocking, llm, detector, interventions)

    @property
    def default_backend(self) -> str:
        return LLM if self.llm is not None else OFFLINE

    def choose(self, requested: str | None) -> str:
        """The backend a run uses. Unset: the default (llm when an endpoint is configured).
        "offline" never calls the LLM. "llm" without an endpoint is a permanent error with a
        clear message (notes.failed: the therapist sees it and can regenerate offline), never
        a silent substitution; an unknown name is a permanent error too."""
        if not requested:
            return self.default_backend
        name = requested.strip().lower()
        if name not in BACKENDS:
            raise PermanentError("unknown_notes_backend", "Unknown notes backend requested (use offline or llm).")
        if name == LLM and self.llm is None:
            raise PermanentError("llm_not_configured", "LLM notes were requested but no LLM endpoint is configured "
                                 "on this server; regenerate the notes with the offline backend.")
        return name

    async def generate(self, backend: str, segments: list[MergedSegment],
                       speakers: list[SpeakerInfo]) -> tuple[ClinicalNotes, NotesEngine]:
        if backend == LLM:
            assert self.llm is not None
            return await self.llm.generate(segments, speakers)
        notes = await self._run_blocking(build_offline_notes, segments, speakers, self.detector, self.interventions)
        return notes, NotesEngine(backend=OFFLINE, model="extractive-lexicon", device="cpu")

    async def aclose(self) -> None:
        if self.llm is not None:
            await self.llm.aclose()
