"""The audio-stage flow (shared.stage) and the transcriber's and diarizer's work functions,
on in-memory fakes: no database, no broker, no model."""

from __future__ import annotations

import numpy as np
import pytest

from shared.audio import SAMPLE_RATE, AudioDecodeError
from shared.contracts.events import (
    DiarizationFailed,
    Engine,
    SpeakerTurn,
    Stage,
    TranscriptFailed,
    TranscriptReady,
    TranscriptSegment,
    SessionDeleted,
)
from shared.resilience import PermanentError, TransientError
from shared.stage import StageDeps, on_audio_uploaded, on_session_deleted, pending_timing
from shared.telemetry import ServiceMetrics
from services.diarizer.diarization import DiarizationError
from services.diarizer.handlers import DiarizationDeps, diarize_upload
from services.transcriber.handlers import TranscriptionDeps, transcribe_upload
from services.transcriber.transcription import TranscriptionResult
from tests.unit.fakes_stages import FakeStageJobs, StageEffects, counter, envelope_of, upload_event


def ready_for(event) -> TranscriptReady:
    return TranscriptReady(session_id=event.session_id, language="en", duration_s=11.0,
                           segments=[TranscriptSegment(start=0.0, end=1.0, text="hello")],
                           engine=Engine(backend="fake"), timing=pending_timing())


class Work:
    """A stage's process(): scripted outcomes, one per call (an exception or the result)."""

    def __init__(self, *outcomes) -> None:
        self.outcomes, self.calls = list(outcomes), 0

    async def __call__(self, event, progress):
        self.calls += 1
        progress(0.5, "working")
        outcome = self.outcomes.pop(0) if self.outcomes else "ok"
        if isinstance(outcome, BaseException):
            raise outcome
        if callable(outcome):
            outcome()
        return ready_for(event), 11.0


def deps_for(work: Work, jobs: FakeStageJobs | None = None, attempts: int = 3):
    effects, jobs = StageEffects(), jobs or FakeStageJobs()
    deps = StageDeps(consumer="transcriber", stage=Stage.transcription, failed_event=TranscriptFailed, process=work,
                     jobs=jobs, progress=effects.progress, dead_letter=effects.dead_letter, forget=effects.forget,
                     wake=effects.wake, metrics=ServiceMetrics("transcriber"), retry_attempts=attempts,
                     sleep=effects.sleep)
    return deps, jobs, effects


async def test_first_delivery_publishes_the_result_with_its_timing():
    work = Work()
    deps, jobs, effects = deps_for(work)
    event = upload_event()
    envelope = envelope_of(event)
    await on_audio_uploaded(envelope, deps)
    [ready] = jobs.enqueued
    assert isinstance(ready, TranscriptReady) and ready.session_id == event.session_id
    assert ready.timing.audio_s == 11.0 and ready.timing.processing_s >= 0
    assert jobs.status[event.session_id] == "done" and jobs.detail[event.session_id] == {"rtf": ready.timing.rtf}
    assert envelope.event_id in jobs.inbox and effects.wakes == 1 and work.calls == 1
    assert [t[1] for t in effects.ticks] == [0.0, 0.5]
    assert counter(deps.metrics.audio_seconds, "transcription") == 11.0


async def test_duplicate_audio_uploaded_is_ignored_without_running_the_model():
    work = Work()
    deps, jobs, effects = deps_for(work)
    event = upload_event()
    await on_audio_uploaded(envelope_of(event), deps)
    await on_audio_uploaded(envelope_of(event), deps)  # a duplicate publish with a new id
    assert work.calls == 1 and len(jobs.enqueued) == 1 and jobs.attempts[event.session_id] == 1
    assert counter(deps.metrics.duplicates, "transcriber") == 1


async def test_redelivery_after_a_failure_is_ignored():
    deps, jobs, effects = deps_for(Work(PermanentError("backend_unavailable", "no backend")))
    event = upload_event()
    await on_audio_uploaded(envelope_of(event), deps)
    await on_audio_uploaded(envelope_of(event), deps)
    assert len(jobs.enqueued) == 1 and isinstance(jobs.enqueued[0], TranscriptFailed)


async def test_job_finished_by_another_delivery_meanwhile_publishes_nothing():
    jobs = FakeStageJobs()
    event = upload_event()

    def other_delivery_finishes() -> None:
        jobs.status[event.session_id] = "done"

    deps, _, effects = deps_for(Work(other_delivery_finishes), jobs)
    await on_audio_uploaded(envelope_of(event), deps)
    assert jobs.enqueued == [] and effects.wakes == 0
    assert deps.metrics.stage_seconds.labels("transcription")._sum.get() == 0


@pytest.mark.parametrize("error, code", [
    (AudioDecodeError("The file is not audio we can decode."), "undecodable_audio"),
    (FileNotFoundError("/blobs/x"), "audio_missing"),
])
async def test_undecodable_or_missing_audio_fails_permanently_with_one_dlq_record(error, code):
    work = Work(error)
    deps, jobs, effects = deps_for(work)
    event = upload_event()
    await on_audio_uploaded(envelope_of(event), deps)
    [failed] = jobs.enqueued
    assert isinstance(failed, TranscriptFailed) and failed.attempts == 1
    assert failed.error.kind == "permanent" and failed.error.code == code
    assert "/blobs" not in failed.error.message  # the reason shown is ours, never the exception text
    assert effects.dead_letters == [("audio.uploaded", failed.error.message)]
    assert work.calls == 1 and effects.sleeps == []  # never retried
    assert jobs.status[event.session_id] == "failed"
    assert counter(deps.metrics.failures, "transcription", "permanent") == 1


async def test_permanent_error_fails_without_retry_or_dlq():
    work = Work(PermanentError("backend_unavailable", "pyannote is not installed"))
    deps, jobs, effects = deps_for(work)
    await on_audio_uploaded(envelope_of(upload_event()), deps)
    [failed] = jobs.enqueued
    assert (failed.error.kind, failed.error.code, failed.error.message) == (
        "permanent", "backend_unavailable", "pyannote is not installed")
    assert work.calls == 1 and effects.dead_letters == []


async def test_transient_errors_are_retried_with_backoff_then_succeed():
    work = Work(TransientError("busy", "busy"), TransientError("busy", "busy"))
    deps, jobs, effects = deps_for(work, attempts=3)
    await on_audio_uploaded(envelope_of(upload_event()), deps)
    assert work.calls == 3 and len(effects.sleeps) == 2 and effects.sleeps[1] > effects.sleeps[0]
    [ready] = jobs.enqueued
    assert isinstance(ready, TranscriptReady)


async def test_transient_errors_after_the_last_attempt_fail_the_stage():
    work = Work(*[TransientError("busy", "Still busy.")] * 3)
    deps, jobs, effects = deps_for(work, attempts=3)
    event = upload_event()
    jobs.attempts[event.session_id] = 1  # an earlier delivery crashed mid-run
    await on_audio_uploaded(envelope_of(event), deps)
    [failed] = jobs.enqueued
    assert (failed.error.kind, failed.error.code, failed.attempts) == ("transient", "busy", 2)
    assert work.calls == 3 and effects.dead_letters == []


async def test_session_deleted_forgets_the_session():
    deps, _, effects = deps_for(Work())
    event = SessionDeleted(session_id=upload_event().session_id)
    await on_session_deleted(envelope_of(event), deps)
    assert effects.forgotten == [event.session_id]


# --- the stages' work functions ---------------------------------------------------------------
class Blocking:
    """run_blocking that records what it was given (the blocking calls must all go through it)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def __call__(self, fn, *args):
        self.calls.append(getattr(fn, "__name__", repr(fn)))
        return fn(*args)


def _audio(uri: str) -> np.ndarray:
    return np.zeros(SAMPLE_RATE * 2, dtype=np.float32)


def _transcribe(uri, language, progress) -> TranscriptionResult:
    text = "word " * 50
    return TranscriptionResult(language="en", duration_s=2.0, model_name="tiny.en",
                               segments=[TranscriptSegment(start=0.0, end=2.0, text=text)])


@pytest.mark.parametrize("inline_max, inline", [(1_000_000, True), (100, False)])
async def test_transcribe_upload_runs_off_loop_and_moves_big_transcripts_to_the_blob_store(inline_max, inline):
    stored: dict[str, list] = {}

    def store_segments(key: str, segments: list) -> str:
        stored[key] = segments
        return f"file:///blobs/{key}"

    blocking = Blocking()
    deps = TranscriptionDeps(run_blocking=blocking, transcribe_file=_transcribe,
                             store_segments=store_segments, device="cpu", inline_max_bytes=inline_max)
    event = upload_event()
    ready, audio_s = await transcribe_upload(event, lambda f, m="": None, deps)
    assert audio_s == 2.0 and ready.engine.model == "tiny.en" and ready.engine.device == "cpu"
    assert blocking.calls[:1] == ["_transcribe"]
    if inline:
        assert ready.segments and ready.segments_ref is None and stored == {}
    else:
        key = f"sessions/{event.session_id}/transcript.json"
        assert ready.segments is None and ready.segments_ref == f"file:///blobs/{key}"
        assert stored[key][0]["text"].startswith("word")


class _Result:
    turns = [SpeakerTurn(start=0.0, end=2.0, speaker="SPEAKER_00")]
    speaker_count = 1


def _diarize_ok(audio, num, lo, hi, progress):
    return _Result()


def _diarize_raises(error):
    def diarize(audio, num, lo, hi, progress):
        raise error
    return diarize


def diarization_deps(diarize, reason=None) -> DiarizationDeps:
    return DiarizationDeps(run_blocking=Blocking(), load_audio=_audio, diarize=diarize,
                           engine=Engine(backend="builtin"), unavailable_reason=reason)


async def test_diarize_upload_returns_turns():
    ready, audio_s = await diarize_upload(upload_event(), lambda f, m="": None, diarization_deps(_diarize_ok))
    assert ready.speaker_count == 1 and ready.turns[0].speaker == "SPEAKER_00" and audio_s == 2.0


@pytest.mark.parametrize("diarize, reason, error_type, code", [
    (_diarize_raises(DiarizationError("no speech found")), None, PermanentError, "diarization_error"),
    (_diarize_raises(MemoryError()), None, TransientError, "diarization_resources"),
    (None, "pyannote.audio is not installed: pip install it", PermanentError, "backend_unavailable"),
])
async def test_diarize_upload_maps_failures(diarize, reason, error_type, code):
    with pytest.raises(error_type) as raised:
        await diarize_upload(upload_event(), lambda f, m="": None, diarization_deps(diarize, reason))
    assert raised.value.code == code


async def test_diarization_failure_becomes_diarization_failed():
    work = Work(PermanentError("diarization_error", "Speaker identification failed."))
    deps, jobs, _ = deps_for(work)
    deps.stage, deps.failed_event = Stage.diarization, DiarizationFailed
    await on_audio_uploaded(envelope_of(upload_event()), deps)
    [failed] = jobs.enqueued
    assert isinstance(failed, DiarizationFailed) and failed.error.code == "diarization_error"
