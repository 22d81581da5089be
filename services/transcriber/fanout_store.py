"""The transcriber's fan-out state in PostgreSQL (the only SQL of the fan-out): one
``transcript_fanouts`` row per long recording with its chunk plan, one ``transcript_chunks``
row per chunk. Every decision that two replicas could race on (the last chunk done, a
chunk failing, a duplicate delivery) is taken under the fan-out row's lock, and the
resulting event goes through the outbox in the same transaction (shared.outbox), so the
assembly is emitted once whichever replica finishes last, and a redelivery changes nothing."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert

from shared.contracts.events import Event, TranscriptChunk
from shared.db.tables import transcript_chunks, transcript_fanouts
from shared.jobs import finish_job
from shared.outbox import enqueue
from services.transcriber.chunking import Chunk


@dataclass(frozen=True)
class ChunkRow:
    index: int
    status: str
    audio_uri: str
    result_uri: str | None
    worker: str | None
    processing_s: float | None


@dataclass(frozen=True)
class Fanout:
    session_id: UUID
    status: str
    chunks: list[Chunk]
    language: str | None
    duration_s: float
    traceparent: str | None
    started_at: object
    rows: list[ChunkRow]
    notes_backend: str | None = None

    @property
    def done(self) -> int:
        return sum(r.status == "done" for r in self.rows)


def chunk_event(session_id: UUID, chunk: Chunk, total: int, audio_uri: str, language: str | None) -> TranscriptChunk:
    return TranscriptChunk(session_id=session_id, index=chunk.index, total=total, audio_uri=audio_uri,
                           audio_start=chunk.audio_start, audio_end=chunk.audio_end, language=language)


def _plan_json(chunks: list[Chunk]) -> list[dict]:
    return [{"index": c.index, "cut_start": c.cut_start, "cut_end": c.cut_end, "audio_start": c.audio_start,
             "audio_end": c.audio_end} for c in chunks]


class FanoutStore:
    def __init__(self, session_factory, consumer: str, stage: str = "transcription") -> None:
        self._sessions, self.consumer, self.stage = session_factory, consumer, stage

    async def _enqueue_chunk(self, db, fanout_row, chunk: Chunk, audio_uri: str) -> None:
        event = chunk_event(fanout_row["session_id"], chunk, fanout_row["total"], audio_uri, fanout_row["language"])
        await enqueue(db, event, self.consumer, traceparent=fanout_row["traceparent"],
                      partition_key=f"{event.session_id}:{chunk.index}")

    async def start(self, session_id: UUID, chunks: list[Chunk], audio_uris: list[str], language: str | None,
                    duration_s: float, traceparent: str | None, notes_backend: str | None = None) -> bool:
        """Record the plan and enqueue one work item per chunk; False when the session was
        already fanned out (nothing changes)."""
        row = {"session_id": session_id, "status": "running", "total": len(chunks), "plan": _plan_json(chunks),
               "language": language, "duration_s": duration_s, "traceparent": traceparent,
               "notes_backend": notes_backend}
        async with self._sessions() as db, db.begin():
            inserted = (await db.execute(insert(transcript_fanouts).values(**row).on_conflict_do_nothing()
                                         .returning(transcript_fanouts.c.session_id))).scalar_one_or_none()
            if inserted is None:
                return False
            await db.execute(insert(transcript_chunks), [
                {"session_id": session_id, "idx": c.index, "status": "pending", "audio_uri": uri}
                for c, uri in zip(chunks, audio_uris)])
            for chunk, uri in zip(chunks, audio_uris):
                await self._enqueue_chunk(db, row, chunk, uri)
        return True

    async def resend_pending(self, session_id: UUID) -> int | None:
        """A re-driven upload of a fanned-out session: enqueue again only the chunks not yet
        done (a lost or failed work item is retried alone). None: not fanned out."""
        async with self._sessions() as db, db.begin():
            fanout = await self._load(db, session_id, lock=True)
            if fanout is None:
                return None
            if fanout.status != "running":
                return 0
            row = {"session_id": session_id, "total": len(fanout.chunks), "language": fanout.language,
                   "traceparent": fanout.traceparent}
            pending = [r for r in fanout.rows if r.status != "done"]
            for r in pending:
                await self._enqueue_chunk(db, row, fanout.chunks[r.index], r.audio_uri)
        return len(pending)

    async def _load(self, db, session_id: UUID, lock: bool = False) -> Fanout | None:
        query = select(transcript_fanouts).where(transcript_fanouts.c.session_id == session_id)
        head = (await db.execute(query.with_for_update() if lock else query)).mappings().one_or_none()
        if head is None:
            return None
        rows = (await db.execute(select(transcript_chunks).where(transcript_chunks.c.session_id == session_id)
                                 .order_by(transcript_chunks.c.idx))).mappings().all()
        return Fanout(session_id=session_id, status=head["status"], language=head["language"],
                      chunks=[Chunk(**c) for c in head["plan"]], duration_s=head["duration_s"],
                      traceparent=head["traceparent"], started_at=head["created_at"],
                      notes_backend=head["notes_backend"],
                      rows=[ChunkRow(r["idx"], r["status"], r["audio_uri"], r["result_uri"], r["worker"],
                                     r["processing_s"]) for r in rows])

    async def chunk_wanted(self, session_id: UUID, index: int) -> bool:
        """Whether a delivered work item still needs doing (False: done already, or the
        fan-out is over or gone, e.g. the session was deleted)."""
        async with self._sessions() as db, db.begin():
            status = (await db.execute(
                select(transcript_fanouts.c.status, transcript_chunks.c.status.label("chunk"))
                .join(transcript_chunks, transcript_chunks.c.session_id == transcript_fanouts.c.session_id)
                .where(transcript_fanouts.c.session_id == session_id, transcript_chunks.c.idx == index)
            )).one_or_none()
            if status is None or status.status != "running" or status.chunk == "done":
                return False
            await db.execute(update(transcript_chunks).where(transcript_chunks.c.session_id == session_id,
                                                             transcript_chunks.c.idx == index)
                             .values(attempts=transcript_chunks.c.attempts + 1, updated_at=func.now()))
        return True

    async def chunk_done(self, session_id: UUID, index: int, result_uri: str, worker: str,
                         processing_s: float) -> Fanout | None:
        """Record a chunk's result; the fan-out (with every row) when no chunk is left, so
        the caller assembles. Returned again on a redelivery while the assembly is not
        committed yet (a replica that died mid-assembly is replaced by the next delivery)."""
        async with self._sessions() as db, db.begin():
            fanout = await self._load(db, session_id, lock=True)
            if fanout is None or fanout.status != "running":
                return None
            await db.execute(update(transcript_chunks)
                             .where(transcript_chunks.c.session_id == session_id, transcript_chunks.c.idx == index,
                                    transcript_chunks.c.status != "done")
                             .values(status="done", result_uri=result_uri, worker=worker,
                                     processing_s=round(processing_s, 3), updated_at=func.now()))
            fanout = await self._load(db, session_id)
        return fanout

    async def finish(self, session_id: UUID, status: str, result: Event, traceparent: str | None,
                     detail: dict, failed_index: int | None = None) -> bool:
        """End the fan-out (done with transcript.ready, or failed with transcript.failed)
        and the stage job, once: False when another replica ended it first."""
        async with self._sessions() as db, db.begin():
            head = (await db.execute(select(transcript_fanouts.c.status).where(
                transcript_fanouts.c.session_id == session_id).with_for_update())).scalar_one_or_none()
            if head != "running":
                return False
            await db.execute(update(transcript_fanouts).where(transcript_fanouts.c.session_id == session_id)
                             .values(status=status, updated_at=func.now()))
            if failed_index is not None:
                await db.execute(update(transcript_chunks).where(transcript_chunks.c.session_id == session_id,
                                                                 transcript_chunks.c.idx == failed_index)
                                 .values(status="failed", updated_at=func.now()))
            await finish_job(db, self.stage, session_id, status, detail)
            await enqueue(db, result, self.consumer, traceparent=traceparent)
        return True


async def forget_transcription(runtime, session_id: UUID) -> None:
    """session.deleted: the stage job and any fan-out state, through the one shared forget
    (the chunks' blobs go with the session's blob prefix and its key)."""
    from shared.jobs import forget_session

    await forget_session(runtime, session_id, "transcription", (transcript_chunks, transcript_fanouts))
