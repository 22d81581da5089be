"""Chunk planning (silence cuts, min/max chunk, overlap offsets) and assembly (ordering,
timestamp offsets, boundary-word de-duplication, duplicate delivery) on synthetic data."""

from __future__ import annotations

import numpy as np
import pytest

from shared.contracts.events import TranscriptSegment, Word
from services.transcriber.chunking import Chunk, assemble, find_cuts, plan_chunks

HOP = 0.02


def speech_with_pauses(total_s: float, pauses_at: list[float], pause_s: float = 0.6) -> np.ndarray:
    """-20 dB speech everywhere except -80 dB pauses centred on ``pauses_at``."""
    levels = np.full(int(round(total_s / HOP)), -20.0, dtype=np.float32)
    for t in pauses_at:
        a, b = int(round((t - pause_s / 2) / HOP)), int(round((t + pause_s / 2) / HOP))
        levels[a:b] = -80.0
    return levels


def test_short_recording_is_one_chunk_covering_everything():
    chunks = plan_chunks(speech_with_pauses(50, [20]), HOP, min_s=30, max_s=120, overlap_s=1.0)
    assert chunks == [Chunk(0, 0.0, 50.0, 0.0, 50.0)]


def test_cuts_land_in_pauses_between_min_and_max():
    levels = speech_with_pauses(300, [10, 70, 95, 150, 250])
    cuts = find_cuts(levels, HOP, min_s=30, max_s=100)
    # 10 s is too early (< min 30); the first cut is a pause within [30, 100] ...
    assert all(any(abs(c - p) <= 0.3 for p in (70, 95, 150, 250)) for c in cuts), cuts
    edges = [0.0, *cuts, 300.0]
    lengths = np.diff(edges)
    assert lengths.min() >= 30 and lengths.max() <= 100, lengths


def test_no_pause_still_cuts_at_most_max_and_keeps_last_piece_long_enough():
    levels = np.full(int(250 / HOP), -20.0, dtype=np.float32)
    edges = [0.0, *find_cuts(levels, HOP, min_s=30, max_s=100), 250.0]
    lengths = np.diff(edges)
    assert lengths.max() <= 100 + HOP and lengths.min() >= 30 - HOP, lengths


def test_max_must_allow_two_minimum_chunks():
    with pytest.raises(ValueError):
        find_cuts(np.zeros(1000, dtype=np.float32), HOP, min_s=60, max_s=100)


def test_chunks_own_contiguous_time_and_overlap_their_neighbours():
    chunks = plan_chunks(speech_with_pauses(400, [90, 180, 300]), HOP, min_s=30, max_s=120, overlap_s=1.5)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert chunks[0].cut_start == 0.0 and chunks[-1].cut_end == 400.0
    for a, b in zip(chunks, chunks[1:]):
        assert a.cut_end == b.cut_start
        assert a.audio_end == pytest.approx(a.cut_end + 1.5) and b.audio_start == pytest.approx(b.cut_start - 1.5)
    assert chunks[0].audio_start == 0.0 and chunks[-1].audio_end == 400.0


def seg(*words: tuple[str, float, float]) -> TranscriptSegment:
    ws = [Word(start=a, end=b, word=f" {w}", p=0.9) for w, a, b in words]
    return TranscriptSegment(start=ws[0].start, end=ws[-1].end, text=" ".join(w for w, _, _ in words), words=ws)


CHUNKS = [Chunk(0, 0.0, 60.0, 0.0, 61.0), Chunk(1, 60.0, 120.0, 59.0, 120.0)]


def test_assembly_offsets_orders_and_dedups_the_overlap():
    pieces = {  # delivered out of order; local times
        1: [seg(("world", 1.5, 1.9), ("again", 2.2, 2.6)), seg(("bye", 50.0, 50.4))],
        0: [seg(("hello", 10.0, 10.4)), seg(("big", 59.0, 59.5), ("world", 60.5, 60.9))],
    }
    out = assemble(pieces, CHUNKS)
    words = [(w.word.strip(), w.start) for s in out for w in s.words]
    # chunk 0's "world" (60.5-60.9) lies past its cut (60): chunk 1 owns it, once
    assert words == [("hello", 10.0), ("big", 59.0), ("world", 60.5), ("again", 61.2), ("bye", 109.0)]
    starts = [s.start for s in out]
    assert starts == sorted(starts)
    assert [s.text for s in out] == ["hello", "big", "world again", "bye"]


def test_a_word_heard_by_both_chunks_either_side_of_the_cut_appears_once():
    pieces = {0: [seg(("across", 59.85, 60.1))],  # midpoint 59.975: chunk 0 owns it
              1: [seg(("across", 0.98, 1.12)), seg(("next", 5.0, 5.3))]}  # global 59.98-60.12, midpoint 60.05
    out = assemble(pieces, CHUNKS)
    assert [w.word.strip() for s in out for w in s.words] == ["across", "next"]


def test_assembly_is_idempotent_and_refuses_missing_chunks():
    pieces = {0: [seg(("hello", 10.0, 10.4))], 1: [seg(("bye", 50.0, 50.4))]}
    out = assemble(pieces, CHUNKS)
    assert [(w.word.strip(), w.start) for s in out for w in s.words] == [("hello", 10.0), ("bye", 109.0)]
    assert assemble(pieces, CHUNKS) == out  # nothing was shifted in place: assembling again gives the same
    with pytest.raises(ValueError, match=r"\[1\]"):
        assemble({0: pieces[0]}, CHUNKS)


def test_segment_without_words_is_kept_by_its_midpoint_owner():
    no_words = TranscriptSegment(start=0.0, end=0.8, text="mm", words=[])  # chunk 1 local: 59.0-59.8, owned by 0
    out = assemble({0: [], 1: [no_words, seg(("ok", 3.0, 3.2))]}, CHUNKS)
    assert [s.text for s in out] == ["ok"]
