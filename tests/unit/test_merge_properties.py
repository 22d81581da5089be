"""Properties of the Stage 3 merge (services/joiner/merge.py).

Random transcripts (monotonic word times, random segmentation, some segments without word
timings) against random, possibly overlapping, turn sets. The merge may only *label and
split* the transcript, never edit it, and its choices must match a brute-force oracle.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from services.joiner.merge import UNKNOWN, full_text, merge_transcript, speaker_stats
from shared.contracts.events import MergedSegment, SpeakerTurn, TranscriptSegment, Word

TOL = 0.5
SPEAKERS = ["SPEAKER_00", "SPEAKER_01", "SPEAKER_02"]

# Times on a 10 ms grid, like faster-whisper's word timestamps.
_step = st.integers(min_value=0, max_value=150).map(lambda n: n / 100)
_token = st.text(alphabet="abcdefghij,.?'", min_size=1, max_size=6)


@st.composite
def transcripts(draw) -> list[TranscriptSegment]:
    # Each word: (gap before it, duration (may be 0: Whisper emits zero-length words), text, p).
    raw = draw(st.lists(st.tuples(_step, _step, _token, st.none() | st.just(0.5)), max_size=40))
    t = draw(_step)
    words: list[Word] = []
    for gap, dur, tok, p in raw:
        t += gap
        words.append(Word(start=round(t, 2), end=round(t + dur, 2), word=" " + tok, p=p))
        t += dur
    n = len(words)
    cuts = draw(st.sets(st.integers(min_value=1, max_value=max(1, n - 1)), max_size=6)) if n > 1 else set()
    bounds = [0, *sorted(c for c in cuts if 0 < c < n), n]
    # Per segment: padding around its words, and whether it keeps its word timings (~20 % not).
    shapes = draw(st.lists(st.tuples(_step, st.integers(0, 4)), min_size=len(bounds), max_size=len(bounds)))
    segs: list[TranscriptSegment] = []
    for (a, b), (pad, timed) in zip(zip(bounds, bounds[1:]), shapes):
        ws = words[a:b]
        if not ws:
            continue
        segs.append(
            TranscriptSegment(
                start=round(max(0.0, ws[0].start - pad / 3), 3),
                end=round(ws[-1].end + pad / 3, 3),
                text="".join(w.word for w in ws).strip(),
                words=ws if timed else [],
            )
        )
    return segs


@st.composite
def turn_sets(draw, allow_empty: bool = True) -> list[SpeakerTurn]:
    n = draw(st.integers(min_value=0 if allow_empty else 1, max_value=12))
    turns = []
    for _ in range(n):
        start = draw(st.integers(min_value=0, max_value=4000)) / 100
        dur = draw(st.integers(min_value=0, max_value=800)) / 100
        turns.append(SpeakerTurn(start=start, end=start + dur, speaker=draw(st.sampled_from(SPEAKERS))))
    return turns


def _flat_words(segs) -> list[tuple[float, float, str, float | None]]:
    return [(w.start, w.end, w.word, w.p) for s in segs for w in s.words]


def _union(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[list[float]] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def _oracle_overlap(turns, speaker: str, s: float, e: float) -> float:
    spans = _union([(t.start, t.end) for t in turns if t.speaker == speaker])
    return sum(max(0.0, min(e, te) - max(s, ts)) for ts, te in spans)


def _oracle_gap(turns, speaker: str, s: float, e: float) -> float:
    return min((max(0.0, t.start - e, s - t.end) for t in turns if t.speaker == speaker), default=float("inf"))


# --- properties --------------------------------------------------------------------------
@settings(max_examples=150, deadline=None)
@given(transcripts(), turn_sets())
def test_words_text_order_and_times_preserved(segs, turns):
    out = merge_transcript(segs, turns, TOL)
    assert _flat_words(out) == _flat_words(segs)  # each word exactly once, in order, same times


@settings(max_examples=150, deadline=None)
@given(transcripts(), turn_sets())
def test_segments_single_speaker_and_text_is_joined_words(segs, turns):
    out = merge_transcript(segs, turns, TOL)
    for seg in out:
        assert all(w.speaker == seg.speaker for w in seg.words)
        assert seg.role is None
        if seg.words:
            assert seg.text == "".join(w.word for w in seg.words).strip()


@settings(max_examples=150, deadline=None)
@given(transcripts(), turn_sets())
def test_splits_only_at_speaker_changes_and_times_follow_words(segs, turns):
    out = merge_transcript(segs, turns, TOL)
    i = 0
    for src in segs:
        if not src.words:
            o = out[i]
            assert (o.start, o.end, o.text, o.words) == (src.start, src.end, src.text, [])
            i += 1
            continue
        pieces, n = [], 0
        while n < len(src.words):
            pieces.append(out[i])
            n += len(out[i].words)
            i += 1
        assert n == len(src.words)
        if len(pieces) == 1:  # untouched: original bounds and text
            assert (pieces[0].start, pieces[0].end, pieces[0].text) == (src.start, src.end, src.text)
        else:
            for a, b in zip(pieces, pieces[1:]):
                assert a.speaker != b.speaker
            for p in pieces:
                assert (p.start, p.end) == (p.words[0].start, p.words[-1].end)
    assert i == len(out)


@settings(max_examples=150, deadline=None)
@given(transcripts(), turn_sets())
def test_idempotent(segs, turns):
    once = merge_transcript(segs, turns, TOL)
    assert merge_transcript(once, turns, TOL) == once


@settings(max_examples=100, deadline=None)
@given(transcripts(), st.sampled_from([None, []]))
def test_no_turns_means_all_unknown(segs, turns):
    out = merge_transcript(segs, turns, TOL)
    assert len(out) == len(segs)
    for o, s in zip(out, segs):
        assert o.speaker == UNKNOWN
        assert all(w.speaker == UNKNOWN for w in o.words)
        assert (o.start, o.end, o.text) == (s.start, s.end, s.text)


@settings(max_examples=150, deadline=None)
@given(transcripts(), turn_sets(allow_empty=False))
def test_with_turns_every_word_gets_a_real_speaker(segs, turns):
    labels = {t.speaker for t in turns}
    for seg in merge_transcript(segs, turns, TOL):
        assert seg.speaker in labels


@settings(max_examples=150, deadline=None)
@given(transcripts(), turn_sets(allow_empty=False))
def test_word_choice_matches_brute_force_oracle(segs, turns):
    """Max (per-speaker) overlap wins; with no overlap, a turn within tolerance at minimal gap."""
    labels = sorted({t.speaker for t in turns})
    for seg in merge_transcript(segs, turns, TOL):
        for w in seg.words:
            ov = {sp: _oracle_overlap(turns, sp, w.start, w.end) for sp in labels}
            best = max(ov.values())
            if best > 0:
                assert abs(ov[w.speaker] - best) < 1e-9
                continue
            gap = {sp: _oracle_gap(turns, sp, w.start, w.end) for sp in labels}
            if min(gap.values()) <= TOL:
                assert abs(gap[w.speaker] - min(gap.values())) < 1e-9


@settings(max_examples=100, deadline=None)
@given(transcripts(), turn_sets(), st.randoms(use_true_random=False))
def test_word_labels_do_not_depend_on_segmentation(segs, turns, rnd):
    """Resegmenting the same timed words must not change any word's speaker."""
    timed = [s for s in segs if s.words]
    words = [w for s in timed for w in s.words]
    if not words:
        return
    one = [TranscriptSegment(start=words[0].start, end=words[-1].end, text="", words=words)]
    cut = rnd.randint(1, len(words))
    two = [
        TranscriptSegment(start=0, end=0, text="", words=words[:cut]),
        TranscriptSegment(start=0, end=0, text="", words=words[cut:]),
    ]
    a = [w.speaker for s in merge_transcript(timed, turns, TOL) for w in s.words]
    b = [w.speaker for s in merge_transcript(one, turns, TOL) for w in s.words]
    c = [w.speaker for s in merge_transcript([x for x in two if x.words], turns, TOL) for w in s.words]
    assert a == b == c


# --- examples ----------------------------------------------------------------------------
def _w(s: float, e: float, text: str) -> Word:
    return Word(start=s, end=e, word=text)


def _seg(*words: Word) -> TranscriptSegment:
    return TranscriptSegment(
        start=words[0].start, end=words[-1].end, text="".join(w.word for w in words).strip(), words=list(words)
    )


A, B = "SPEAKER_00", "SPEAKER_01"


def test_word_in_gap_takes_nearest_turn_within_tolerance():
    turns = [SpeakerTurn(start=0, end=2, speaker=A), SpeakerTurn(start=3, end=5, speaker=B)]
    # " so" sits in the gap, 0.2 s before B's turn and 0.6 s after A's: nearest is B.
    seg = _seg(_w(1.0, 1.8, " Well,"), _w(2.6, 2.8, " so"), _w(3.2, 3.6, " yes."))
    out = merge_transcript([seg], turns, tolerance_s=0.5)
    assert [(s.speaker, s.text) for s in out] == [(A, "Well,"), (B, "so yes.")]


def test_word_far_from_all_turns_takes_previous_then_next_neighbour():
    turns = [SpeakerTurn(start=0, end=2, speaker=A), SpeakerTurn(start=10, end=12, speaker=B)]
    seg = _seg(_w(1.0, 1.5, " I"), _w(5.0, 5.5, " think"), _w(10.5, 11.0, " okay."))
    out = merge_transcript([seg], turns, tolerance_s=0.5)
    assert [w.speaker for s in out for w in s.words] == [A, A, B]
    # Nothing before it: the far word takes the next word's speaker.
    seg2 = _seg(_w(5.0, 5.5, " Um,"), _w(10.5, 11.0, " okay."))
    out2 = merge_transcript([seg2], turns, tolerance_s=0.5)
    assert [w.speaker for s in out2 for w in s.words] == [B, B]
    assert len(out2) == 1 and out2[0].text == seg2.text


def test_segment_without_words_uses_majority_rule():
    turns = [SpeakerTurn(start=0, end=4, speaker=A), SpeakerTurn(start=4, end=10, speaker=B)]
    seg = TranscriptSegment(start=2, end=10, text="Mostly the second speaker.")
    (out,) = merge_transcript([seg], turns)
    assert (out.speaker, out.text, out.start, out.end) == (B, seg.text, 2, 10)


def test_segment_without_words_falls_back_to_max_overlap_then_nearest():
    # Three speakers, none over 50 %: the largest overlap (B, 4 s of 10) wins.
    turns = [
        SpeakerTurn(start=0, end=3, speaker=A),
        SpeakerTurn(start=3, end=7, speaker=B),
        SpeakerTurn(start=7, end=10, speaker="SPEAKER_02"),
    ]
    (out,) = merge_transcript([TranscriptSegment(start=0, end=10, text="x")], turns)
    assert out.speaker == B
    # No overlap at all, 0.3 s from A's turn: nearest within tolerance.
    (out,) = merge_transcript([TranscriptSegment(start=10.3, end=11, text="y")], [turns[0], turns[2]])
    assert out.speaker == "SPEAKER_02"


def test_majority_counts_a_speakers_turns_together():
    # A speaks 0-3 and 5-8 (6 s of 8) around B's 2 s: A holds the majority.
    turns = [
        SpeakerTurn(start=0, end=3, speaker=A),
        SpeakerTurn(start=3, end=5, speaker=B),
        SpeakerTurn(start=5, end=8, speaker=A),
    ]
    (out,) = merge_transcript([TranscriptSegment(start=0, end=8, text="z")], turns)
    assert out.speaker == A


def test_diarization_missing_gives_unknown_and_keeps_segments():
    segs = [_seg(_w(0, 1, " Hello"), _w(1, 2, " there.")), TranscriptSegment(start=2, end=3, text="Hi.")]
    out = merge_transcript(segs, None)
    assert [(s.speaker, s.text) for s in out] == [(UNKNOWN, "Hello there."), (UNKNOWN, "Hi.")]


def test_full_text_joins_consecutive_speaker_segments_and_uses_roles():
    merged = [
        MergedSegment(start=0, end=1, speaker=A, text="Hello."),
        MergedSegment(start=1, end=2, speaker=A, text="How are you?"),
        MergedSegment(start=2, end=3, speaker=B, text="Fine."),
        MergedSegment(start=3, end=4, speaker=UNKNOWN, text="(noise)"),
    ]
    assert full_text(merged, {A: "THERAPIST", B: None}) == (
        "THERAPIST: Hello. How are you?\nSPEAKER_01: Fine.\nUnknown: (noise)"
    )
    assert speaker_stats(merged) == {A: 2.0, B: 1.0, UNKNOWN: 1.0}
