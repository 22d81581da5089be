"""Notes entry point: wires settings, broker, DB, the LLM circuit breaker and the notes
backends, then consumes transcript.merged, notes.regenerate and session.deleted on one
subscriber (consumer group ``notes``)."""

from __future__ import annotations

from functools import partial

from shared.contracts.events import Topic
from shared.logging import get_logger
from shared.resilience import BreakerState
from shared.runtime import ServiceRuntime, run_service
from shared.settings import Settings
from shared.topology import NOTES
from services.notes import handlers
from services.notes.intervention_classifier import InterventionClassifier
from services.notes.risk import RiskDetector
from services.notes.service import NotesGenerator, breaker_from

log = get_logger(__name__)


def build_risk_detector(settings: Settings) -> RiskDetector:
    """The safety net, loaded once at start-up (not on the first session): the lexicon,
    plus the semantic layer unless disabled or its bundled model cannot load."""
    if not settings.risk_semantic:
        return RiskDetector(semantic=None)
    try:
        from services.notes.risk_semantic import SemanticRiskModel

        model = SemanticRiskModel()
    except Exception as exc:  # never lose the lexicon because the model is missing
        log.warning("risk_semantic_unavailable", error=type(exc).__name__)
        return RiskDetector(semantic=None)
    log.info("risk_semantic_loaded", load_s=round(model.load_seconds, 1), prototypes_s=round(model.prototype_seconds, 1))
    classifier = None
    if settings.risk_classifier:
        try:
            from services.notes.risk_classifier import RiskClassifier

            # the same MiniLM: only the weights file is added
            classifier = RiskClassifier(model.encoder, threshold=settings.risk_classifier_threshold)
        except Exception as exc:  # the rules and prototypes stay on without it
            log.warning("risk_classifier_unavailable", error=type(exc).__name__)
    return RiskDetector(semantic=model, classifier=classifier)


def build_intervention_classifier(settings: Settings, detector: RiskDetector) -> InterventionClassifier | None:
    """The offline notes' supervised intervention layer, on the safety net's MiniLM (no
    second model in memory); None when disabled or the semantic layer is off."""
    if not settings.notes_intervention_classifier or detector.semantic is None:
        return None
    try:
        return InterventionClassifier(detector.semantic.encoder)
    except Exception as exc:  # the patterns stay on without it
        log.warning("intervention_classifier_unavailable", error=type(exc).__name__)
        return None


def build(settings: Settings) -> ServiceRuntime:
    runtime = ServiceRuntime.create(settings, "notes")
    runtime.metrics.declare_stage("notes", llm=True)
    breaker = breaker_from(settings, "llm")  # one per process: every session shares the endpoint's health
    gauge = runtime.metrics.breaker_state.labels(breaker.name)
    gauge.set(0)

    def on_breaker(state: BreakerState) -> None:
        gauge.set(1 if state is BreakerState.open else 0)
        log.warning("llm_breaker_state", state=state.value)

    breaker.on_state_change(on_breaker)
    detector = build_risk_detector(settings)
    generator = NotesGenerator.from_settings(settings, runtime.run_blocking, breaker, detector,
                                             build_intervention_classifier(settings, detector))
    deps = handlers.NotesDeps.on_runtime(runtime, generator, breaker)
    runtime.on_stop(generator.aclose)
    log.info("notes_backend_configured", default_backend=generator.default_backend,
             model=settings.llm_model if generator.llm else None)

    runtime.consume(NOTES,
        {
            Topic.TRANSCRIPT_MERGED: partial(handlers.on_transcript_merged, deps=deps),
            Topic.NOTES_REGENERATE: partial(handlers.on_regenerate, deps=deps),
            Topic.SESSION_DELETED: partial(handlers.on_session_deleted, deps=deps),
        },
    )
    return runtime


if __name__ == "__main__":
    run_service(build)
