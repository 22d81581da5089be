"""The diarizer's SQL for enrolled voices (table therapist_voices, ADR 0010): read the
session owner's embedding for matching, list pending samples, and fill in an embedding
(or a failure) for exactly the request that was read, clearing the sample."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from uuid import UUID

import numpy as np
from sqlalchemy import select, update

from shared.db.tables import therapist_voices, therapists
from services.diarizer.voices import Enrolment, embedding_from_bytes, embedding_to_bytes

PENDING = "pending"
ENROLLED = "enrolled"
FAILED = "failed"


@dataclass(frozen=True)
class PendingSample:
    therapist_id: UUID
    request_id: UUID
    pcm: bytes  # 16 kHz mono int16 little-endian

    def audio(self) -> np.ndarray:
        return np.frombuffer(self.pcm, dtype="<i2").astype(np.float32) / 32768.0


class VoiceStore:
    def __init__(self, session_factory) -> None:
        self._sessions = session_factory

    async def enrolment(self, therapist_id: UUID) -> Enrolment | None:
        """The therapist's enrolled embedding and name, or None (not enrolled, pending, failed)."""
        query = (select(therapist_voices.c.embedding, therapists.c.display_name)
                 .join(therapists, therapists.c.id == therapist_voices.c.therapist_id)
                 .where(therapist_voices.c.therapist_id == therapist_id, therapist_voices.c.status == ENROLLED))
        async with self._sessions() as db:
            row = (await db.execute(query)).first()
        if row is None or row.embedding is None:
            return None
        return Enrolment(therapist_id=therapist_id, display_name=row.display_name or None,
                         embedding=embedding_from_bytes(row.embedding))

    async def pending(self, limit: int = 4) -> list[PendingSample]:
        query = (select(therapist_voices.c.therapist_id, therapist_voices.c.request_id, therapist_voices.c.sample_pcm)
                 .where(therapist_voices.c.status == PENDING).order_by(therapist_voices.c.requested_at).limit(limit))
        async with self._sessions() as db:
            rows = (await db.execute(query)).all()
        return [PendingSample(r.therapist_id, r.request_id, r.sample_pcm or b"") for r in rows]

    async def finish(self, sample: PendingSample, embedding: np.ndarray | None, model: str | None,
                     error: str | None = None) -> bool:
        """Store the embedding (or the error) of this very request and drop its sample;
        False when the request was replaced or deleted meanwhile (nothing is written)."""
        values = {"status": FAILED if embedding is None else ENROLLED, "sample_pcm": None, "model": model,
                  "error": error, "embedding": None if embedding is None else embedding_to_bytes(embedding),
                  "enrolled_at": None if embedding is None else datetime.now(timezone.utc)}
        async with self._sessions() as db, db.begin():
            result = await db.execute(
                update(therapist_voices)
                .where(therapist_voices.c.therapist_id == sample.therapist_id,
                       therapist_voices.c.request_id == sample.request_id, therapist_voices.c.status == PENDING)
                .values(**values))
        return result.rowcount == 1
