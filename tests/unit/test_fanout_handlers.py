"""The fan-out handlers on fakes: chunks sent once, assembled once in order whichever
replica finishes last, duplicate and late chunk deliveries change nothing, a re-driven
upload re-sends only the chunks not done, a chunk that keeps failing goes to the DLQ with
its cause and fails the session."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime, timezone

import pytest

from shared.contracts.events import (AudioRef, AudioUploaded, Engine, ProcessingOptions, TranscriptChunk, TranscriptFailed,
                                     TranscriptReady, TranscriptSegment, Word)
from services.transcriber.chunking import Chunk
from services.transcriber.fanout import FanoutDeps, fan_out, on_transcript_chunk
from services.transcriber.fanout_store import ChunkRow, Fanout, chunk_event
from services.transcriber.transcription import TranscriptionResult
from tests.unit.fakes_stages import StageEffects, envelope_of

CHUNKS = [Chunk(0, 0.0, 60.0, 0.0, 61.0), Chunk(1, 60.0, 120.0, 59.0, 121.0), Chunk(2, 120.0, 150.0, 119.0, 150.0)]


class FakeFanoutStore:
    """transcript_fanouts / transcript_chunks and the outbox, in memory (FanoutStore's contract)."""

    def __init__(self) -> None:
        self.fanouts: dict[uuid.UUID, Fanout] = {}
        self.enqueued: list = []
        self.job: dict[uuid.UUID, tuple[str, dict]] = {}

    async def start(self, sid, chunks, uris, language, duration_s, traceparent, notes_backend=None) -> bool:
        if sid in self.fanouts:
            return False
        rows = [ChunkRow(c.index, "pending", u, None, None, None) for c, u in zip(chunks, uris)]
        self.fanouts[sid] = Fanout(sid, "running", chunks, language, duration_s, traceparent,
                                   datetime.now(timezone.utc), rows, notes_backend)
        self.enqueued += [chunk_event(sid, c, len(chunks), u, language) for c, u in zip(chunks, uris)]
        return True

    async def resend_pending(self, sid):
        f = self.fanouts.get(sid)
        if f is None:
            return None
        pending = [r for r in f.rows if r.status != "done"] if f.status == "running" else []
        self.enqueued += [chunk_event(sid, f.chunks[r.index], len(f.chunks), r.audio_uri, f.language) for r in pending]
        return len(pending)

    async def chunk_wanted(self, sid, index) -> bool:
        f = self.fanouts.get(sid)
        return f is not None and f.status == "running" and f.rows[index].status != "done"

    async def chunk_done(self, sid, index, uri, worker, processing_s):
        f = self.fanouts.get(sid)
        if f is None or f.status != "running":
            return None
        if f.rows[index].status != "done":
            f.rows[index] = ChunkRow(index, "done", f.rows[index].audio_uri, uri, worker, processing_s)
        return replace(f, rows=list(f.rows))

    async def finish(self, sid, status, result, traceparent, detail, failed_index=None) -> bool:
        f = self.fanouts.get(sid)
        if f is None or f.status != "running":
            return False
        self.fanouts[sid] = replace(f, status=status)
        self.job[sid] = (status, detail)
        self.enqueued.append(result)
        return True


def seg(text: str, start: float, end: float) -> TranscriptSegment:
    return TranscriptSegment(start=start, end=end, text=text, words=[Word(start=start, end=end, word=f" {text}")])


# chunk-local results per chunk audio uri
RESULTS = {
    "pcm/0": [seg("alpha", 10.0, 10.5), seg("edge", 60.6, 60.9)],  # "edge" lies past chunk 0's cut: not its own
    "pcm/1": [seg("edge", 1.6, 1.9), seg("beta", 30.0, 30.5)],
    "pcm/2": [seg("gamma", 5.0, 5.5)],
}


async def run_inline(fn, *args):
    return fn(*args)


def make_deps(store: FakeFanoutStore, effects: StageEffects, blobs: dict, worker: str = "host-a:1",
              fail_uris: set[str] = frozenset()) -> FanoutDeps:
    def transcribe_chunk(uri, language):
        if uri in fail_uris:
            raise RuntimeError("model crashed")
        return TranscriptionResult(language="en", duration_s=60.0, segments=RESULTS[uri])

    def put_json(key, obj):
        blobs[key] = obj
        return key

    async def no_sleep(_s):
        effects.sleeps.append(_s)

    return FanoutDeps(run_blocking=run_inline, split=lambda uri, sid: (CHUNKS, ["pcm/0", "pcm/1", "pcm/2"]),
                      transcribe_chunk=transcribe_chunk, put_json=put_json, get_json=blobs.__getitem__,
                      delete_blob=lambda uri: blobs.pop(uri, None),
                      store=store, progress=effects.progress, dead_letter=effects.dead_letter, wake=effects.wake,
                      worker=worker, engine=Engine(backend="faster-whisper", model="tiny.en", device="cpu"),
                      inline_max_bytes=1_000_000, sleep=no_sleep)


def upload(sid) -> AudioUploaded:
    return AudioUploaded(session_id=sid, owner_id=uuid.uuid4(), audio=AudioRef(
        uri="file:///x/audio.wav", sha256="0" * 64, bytes=10, content_type="audio/wav", duration_s=150.0),
        options=ProcessingOptions(notes_backend="offline"))


async def fanned_out(store, effects, blobs) -> tuple[uuid.UUID, list[TranscriptChunk]]:
    sid = uuid.uuid4()
    await fan_out(upload(sid), lambda f, m="": None, make_deps(store, effects, blobs))
    return sid, [e for e in store.enqueued if isinstance(e, TranscriptChunk)]


async def test_chunks_from_two_replicas_assemble_once_in_order_with_offsets():
    store, effects, blobs = FakeFanoutStore(), StageEffects(), {}
    sid, work = await fanned_out(store, effects, blobs)
    assert [w.index for w in work] == [0, 1, 2] and work[1].audio_start == 59.0
    a, b = make_deps(store, effects, blobs, "host-a:1"), make_deps(store, effects, blobs, "host-b:2")
    for item, deps in ((work[2], a), (work[0], b), (work[1], a)):  # out of order, over two replicas
        await on_transcript_chunk(envelope_of(item), deps)
    ready = [e for e in store.enqueued if isinstance(e, TranscriptReady)]
    assert len(ready) == 1
    words = [(w.word.strip(), w.start) for s in ready[0].segments for w in s.words]
    assert words == [("alpha", 10.0), ("edge", 60.6), ("beta", 89.0), ("gamma", 124.0)]
    assert {c.worker for c in ready[0].chunks} == {"host-a:1", "host-b:2"}
    assert ready[0].duration_s == 150.0 and store.job[sid][0] == "done"
    assert ready[0].notes_backend == "offline"  # the upload's choice survives the fan-out
    assert blobs == {}  # the chunks' results (and audio) are dropped once transcript.ready is out
    fractions = [f for s, f, m in effects.ticks if m.startswith("transcribed ") and "chunks" in m]
    assert fractions == pytest.approx([0.33, 0.66, 0.99])


async def test_duplicate_and_late_chunk_deliveries_change_nothing():
    store, effects, blobs = FakeFanoutStore(), StageEffects(), {}
    sid, work = await fanned_out(store, effects, blobs)
    deps = make_deps(store, effects, blobs)
    await on_transcript_chunk(envelope_of(work[0]), deps)
    await on_transcript_chunk(envelope_of(work[0]), deps)  # duplicate while running
    for item in work[1:]:
        await on_transcript_chunk(envelope_of(item), deps)
    before = list(store.enqueued)
    await on_transcript_chunk(envelope_of(work[1]), deps)  # late, after assembly
    assert store.enqueued == before
    assert sum(isinstance(e, TranscriptReady) for e in store.enqueued) == 1


async def test_a_redriven_upload_resends_only_the_chunks_not_done():
    store, effects, blobs = FakeFanoutStore(), StageEffects(), {}
    sid, work = await fanned_out(store, effects, blobs)
    await on_transcript_chunk(envelope_of(work[1]), make_deps(store, effects, blobs))
    store.enqueued.clear()
    await fan_out(upload(sid), lambda f, m="": None, make_deps(store, effects, blobs))
    assert sorted(e.index for e in store.enqueued) == [0, 2]


async def test_a_chunk_that_keeps_failing_goes_to_the_dlq_and_fails_the_session():
    store, effects, blobs = FakeFanoutStore(), StageEffects(), {}
    sid, work = await fanned_out(store, effects, blobs)
    deps = make_deps(store, effects, blobs, fail_uris={"pcm/1"})
    await on_transcript_chunk(envelope_of(work[0]), deps)
    await on_transcript_chunk(envelope_of(work[1]), deps)
    assert len(effects.sleeps) == deps.retry_attempts - 1  # retried alone, with backoff
    assert len(effects.dead_letters) == 1 and "chunk 2 of 3" in effects.dead_letters[0][1]
    failed = [e for e in store.enqueued if isinstance(e, TranscriptFailed)]
    assert len(failed) == 1 and failed[0].error.code == "chunk_failed" and "RuntimeError" in failed[0].error.message
    await on_transcript_chunk(envelope_of(work[2]), deps)  # the rest no longer run, nothing is assembled
    assert not any(isinstance(e, TranscriptReady) for e in store.enqueued)
