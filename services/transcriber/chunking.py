"""Chunk planning and assembly for long recordings. Plain domain code: no Kafka, no DB.

``plan_chunks`` cuts a recording at its quietest pauses into chunks between ``min_s`` and
``max_s`` long (from a per-hop level profile, ``shared.audio.energy_profile``). Each chunk
*owns* the time ``[cut_start, cut_end)`` and is transcribed over that span widened by
``overlap_s`` on both sides, so a word that runs across a cut is heard whole by at least
one chunk. ``assemble`` shifts each chunk's word timestamps by its audio offset and keeps
a word only in the chunk that owns its midpoint: the overlap's duplicates drop out."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shared.contracts.events import TranscriptSegment, Word


@dataclass(frozen=True)
class ChunkPolicy:
    """How long recordings are cut (settings ``transcribe_chunk_*``)."""

    min_s: float = 30.0
    max_s: float = 120.0
    overlap_s: float = 1.0
    one_piece_max_s: float = 300.0  # at most this long: one piece, as before
    hop_s: float = 0.02

    def one_piece(self, duration_s: float) -> bool:
        return duration_s <= self.one_piece_max_s

    def plan(self, levels: np.ndarray) -> list["Chunk"]:
        return plan_chunks(levels, self.hop_s, self.min_s, self.max_s, self.overlap_s)


@dataclass(frozen=True)
class Chunk:
    index: int
    cut_start: float  # owned time, seconds from the recording's start
    cut_end: float
    audio_start: float  # transcribed time: the owned span plus the overlap
    audio_end: float

    @property
    def span(self) -> tuple[float, float]:
        return self.audio_start, self.audio_end


def _smoothed(levels: np.ndarray, width: int) -> np.ndarray:
    """Moving average, so a pause (not one quiet hop inside a word) is what scores low."""
    if width <= 1 or levels.size < width:
        return levels
    kernel = np.ones(width, dtype=np.float32) / width
    return np.convolve(levels, kernel, mode="same")


def find_cuts(levels: np.ndarray, hop_s: float, min_s: float, max_s: float, pause_s: float = 0.3) -> list[float]:
    """Cut times (seconds): each at the quietest point between ``min_s`` and ``max_s``
    after the previous cut, never leaving a last piece shorter than ``min_s``."""
    if max_s < 2 * min_s:
        raise ValueError("max_s must be at least twice min_s")
    total = levels.size * hop_s
    smooth = _smoothed(levels.astype(np.float32), max(1, int(round(pause_s / hop_s))))
    cuts, cursor = [], 0.0
    while total - cursor > max_s:
        lo = int(round((cursor + min_s) / hop_s))
        hi = int(round(min(cursor + max_s, total - min_s) / hop_s))
        window = smooth[lo:hi + 1]
        # The quietest hop; among equally quiet ones (digital silence) the latest, so chunks run long.
        best = lo + (window.size - 1 - int(np.argmin(window[::-1])))
        cursor = best * hop_s
        cuts.append(round(cursor, 3))
    return cuts


def plan_chunks(levels: np.ndarray, hop_s: float, min_s: float, max_s: float, overlap_s: float) -> list[Chunk]:
    """The chunks of a recording whose level profile is ``levels`` (one value per ``hop_s``)."""
    total = round(levels.size * hop_s, 3)
    edges = [0.0, *find_cuts(levels, hop_s, min_s, max_s), total]
    return [
        Chunk(index=i, cut_start=a, cut_end=b, audio_start=round(max(0.0, a - overlap_s), 3),
              audio_end=round(min(total, b + overlap_s), 3))
        for i, (a, b) in enumerate(zip(edges, edges[1:]))
    ]


def _owned(chunk: Chunk, t: float, last: bool) -> bool:
    return chunk.cut_start <= t < chunk.cut_end or (last and t >= chunk.cut_end)


def _shift(word: Word, offset: float) -> Word:
    return word.model_copy(update={"start": round(word.start + offset, 3), "end": round(word.end + offset, 3)})


def place_segments(chunk: Chunk, segments: list[TranscriptSegment], last: bool) -> list[TranscriptSegment]:
    """One chunk's segments (chunk-local times) on the recording's clock, cut to the words
    the chunk owns; a segment without word timings is kept when its midpoint is owned."""
    out = []
    for seg in segments:
        start, end = seg.start + chunk.audio_start, seg.end + chunk.audio_start
        if not seg.words:
            if _owned(chunk, (start + end) / 2, last):
                out.append(seg.model_copy(update={"start": round(start, 3), "end": round(end, 3)}))
            continue
        words = [w for w in (_shift(w, chunk.audio_start) for w in seg.words) if _owned(chunk, (w.start + w.end) / 2, last)]
        if words:
            text = "".join(w.word for w in words).strip()
            out.append(TranscriptSegment(start=words[0].start, end=words[-1].end, text=text, words=words))
    return out


def _same_word(a: Word, b: Word) -> bool:
    overlap = min(a.end, b.end) - max(a.start, b.start)
    shorter = max(1e-3, min(a.end - a.start, b.end - b.start))
    return a.word.strip().lower() == b.word.strip().lower() and overlap / shorter > 0.5


def _drop_seam_duplicate(prev: list[TranscriptSegment], seg: TranscriptSegment) -> TranscriptSegment | None:
    """Both chunks may keep a boundary word whose two timings straddle the cut: drop the
    second copy (same word, mostly the same time)."""
    if not prev or not prev[-1].words or not seg.words or not _same_word(prev[-1].words[-1], seg.words[0]):
        return seg
    words = seg.words[1:]
    if not words:
        return None
    return TranscriptSegment(start=words[0].start, end=words[-1].end, text="".join(w.word for w in words).strip(),
                             words=words)


def assemble(pieces: dict[int, list[TranscriptSegment]], chunks: list[Chunk]) -> list[TranscriptSegment]:
    """The whole transcript from every chunk's segments (keyed by chunk index, in any
    order; each chunk counted once however often it was delivered), on one clock, in order."""
    missing = [c.index for c in chunks if c.index not in pieces]
    if missing:
        raise ValueError(f"chunks missing: {missing}")
    out: list[TranscriptSegment] = []
    for chunk in sorted(chunks, key=lambda c: c.index):
        for seg in place_segments(chunk, pieces[chunk.index], last=chunk.index == len(chunks) - 1):
            kept = _drop_seam_duplicate(out, seg)
            if kept is not None:
                out.append(kept)
    return out
