"""Stage 3: merge a transcript with diarization turns into speaker-labelled segments.

Plain domain code (no Kafka, DB or asyncio) so it can be property-tested in isolation.

Why word level: a Whisper segment often spans a speaker change ("Okay. So how was your
week?" / "Fine."), and the seed's segment-level rule (first turn overlapping > 50 % of the
segment) labels the whole segment with one speaker. Word timings let us label each word
and split the segment where the speaker changes. The seed's rule survives as the fallback
for segments that carry no word timings.

Invariants (checked by tests/unit/test_merge_properties.py):

* every input word appears exactly once in the output, in order, with identical text and
  times (the transcript itself is never edited, only labelled and split);
* no output segment mixes speakers;
* a split segment's text is ``"".join(w.word for w in words).strip()`` (faster-whisper
  words carry their leading space) and its start/end are its first/last word's times;
  a segment that needs no split keeps its original start, end and text;
* merging the merged output again with the same turns gives the same result;
* no turns (diarization failed, missing or timed out) -> every segment is "Unknown".
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from shared.contracts.events import MergedSegment, MergedWord, SpeakerTurn, TranscriptSegment

UNKNOWN = "Unknown"

__all__ = ["UNKNOWN", "merge_transcript", "full_text", "speaker_stats"]


class _WordLike(Protocol):
    start: float
    end: float
    word: str
    p: float | None


class _SegmentLike(Protocol):
    """TranscriptSegment or MergedSegment: both can be (re-)merged."""

    start: float
    end: float
    text: str
    words: Sequence[_WordLike]


@dataclass(frozen=True, slots=True)
class _Interval:
    start: float
    end: float
    speaker: str


class _TurnIndex:
    """Turns sorted by start, with a running maximum of their ends.

    The running maximum lets a lookup walk backwards from the first turn that starts after
    the query and stop as soon as no earlier turn can reach the query, so a session of
    N words and M turns costs about O(N log M) rather than O(N * M).
    """

    def __init__(self, turns: Iterable[SpeakerTurn]) -> None:
        self.turns = _normalise(turns)
        self.starts = [t.start for t in self.turns]
        self.max_end: list[float] = []
        running = float("-inf")
        for t in self.turns:
            running = max(running, t.end)
            self.max_end.append(running)

    def __bool__(self) -> bool:
        return bool(self.turns)

    def overlaps(self, start: float, end: float) -> dict[str, float]:
        """Total overlap (seconds) per speaker with [start, end], in order of turn start."""
        out: dict[str, float] = {}
        hi = bisect_left(self.starts, end)  # turns[hi:] start at or after `end`
        hits: list[tuple[int, str, float]] = []
        j = hi - 1
        while j >= 0 and self.max_end[j] > start:
            t = self.turns[j]
            ov = min(end, t.end) - max(start, t.start)
            if ov > 0:
                hits.append((j, t.speaker, ov))
            j -= 1
        for _, speaker, ov in sorted(hits):
            out[speaker] = out.get(speaker, 0.0) + ov
        return out

    def nearest(self, start: float, end: float) -> tuple[str, float] | None:
        """The turn closest to [start, end] as (speaker, gap seconds); gap 0 if touching/inside."""
        if not self.turns:
            return None
        best: tuple[float, int, str] | None = None
        hi = bisect_left(self.starts, end)
        if hi < len(self.turns):  # first turn starting at/after the interval's end
            t = self.turns[hi]
            best = (max(0.0, t.start - end), hi, t.speaker)
        # Turns starting before `end`: containing/touching (gap 0) or ending before `start`.
        j = hi - 1
        floor = None if best is None else start - best[0]
        while j >= 0 and (floor is None or self.max_end[j] >= floor):
            t = self.turns[j]
            gap = max(0.0, start - t.end, t.start - end)
            cand = (gap, j, t.speaker)
            if best is None or cand < best:
                best = cand
                floor = start - gap
            j -= 1
        assert best is not None
        return best[2], best[0]


def _normalise(turns: Iterable[SpeakerTurn]) -> list[_Interval]:
    """Sort turns and fuse overlapping/touching turns of the *same* speaker.

    Fusing makes per-speaker overlap sums exact (no double counting) and keeps lookups
    short. Turns of different speakers may still overlap (overlapped speech).
    Inverted turns (end < start) are repaired by swapping rather than dropped.
    """
    per_speaker: dict[str, list[tuple[float, float]]] = {}
    for t in turns:
        s, e = (t.start, t.end) if t.end >= t.start else (t.end, t.start)
        per_speaker.setdefault(str(t.speaker), []).append((s, e))
    out: list[_Interval] = []
    for speaker, spans in per_speaker.items():
        spans.sort()
        cur_s, cur_e = spans[0]
        for s, e in spans[1:]:
            if s <= cur_e:
                cur_e = max(cur_e, e)
            else:
                out.append(_Interval(cur_s, cur_e, speaker))
                cur_s, cur_e = s, e
        out.append(_Interval(cur_s, cur_e, speaker))
    out.sort(key=lambda t: (t.start, t.end, t.speaker))
    return out


def _best(overlaps: Mapping[str, float]) -> tuple[str, float] | None:
    """Speaker with the largest overlap; ties go to the speaker whose turn came first."""
    best: tuple[str, float] | None = None
    for speaker, ov in overlaps.items():  # insertion order == turn order
        if ov > 0 and (best is None or ov > best[1]):
            best = (speaker, ov)
    return best


def _word_speaker(index: _TurnIndex, start: float, end: float, tolerance_s: float) -> str | None:
    """Max-overlap speaker, else the nearest turn within tolerance, else None (neighbour fill)."""
    best = _best(index.overlaps(start, end))
    if best is not None:
        return best[0]
    near = index.nearest(start, end)
    if near is not None and near[1] <= tolerance_s:
        return near[0]
    return None


def _segment_speaker(index: _TurnIndex, start: float, end: float, tolerance_s: float) -> str | None:
    """Seed 001's rule for segments without word timings.

    A speaker covering more than half of the segment wins (the seed's majority rule; summing
    a speaker's turns so a short pause inside one speaker's speech doesn't lose the
    majority); otherwise the largest overlap; otherwise the nearest turn within tolerance;
    otherwise None, resolved from the neighbours like an unplaced word.
    """
    overlaps = index.overlaps(start, end)
    duration = end - start
    for speaker, ov in overlaps.items():
        if duration > 0 and ov > 0.5 * duration:
            return speaker
    best = _best(overlaps)
    if best is not None:
        return best[0]
    near = index.nearest(start, end)
    if near is not None and near[1] <= tolerance_s:
        return near[0]
    return None


def _fill_from_neighbours(labels: list[str | None], units: list[tuple[float, float]], index: _TurnIndex) -> list[str]:
    """Resolve unplaced units (words or wordless segments) from their neighbours.

    Previous unit's speaker first (people finish their sentences), else the next one's.
    If nothing at all could be placed (every unit far from every turn) each unit takes its
    nearest turn regardless of distance: the diarization did run, so "Unknown" would be
    less truthful than its closest guess.
    """
    out: list[str | None] = list(labels)
    prev: str | None = None
    for i, lab in enumerate(out):
        if lab is None:
            out[i] = prev
        else:
            prev = lab
    nxt: str | None = None
    for i in range(len(out) - 1, -1, -1):
        if labels[i] is not None:
            nxt = labels[i]
        if out[i] is None:
            out[i] = nxt
    final: list[str] = []
    for lab, (s, e) in zip(out, units):
        if lab is None:
            near = index.nearest(s, e)
            lab = near[0] if near is not None else UNKNOWN
        final.append(lab)
    return final


def _merged_word(w: _WordLike, speaker: str) -> MergedWord:
    return MergedWord(start=w.start, end=w.end, word=w.word, p=getattr(w, "p", None), speaker=speaker)


def _join_words(words: Sequence[_WordLike]) -> str:
    return "".join(w.word for w in words).strip()


def merge_transcript(
    segments: Sequence[TranscriptSegment | _SegmentLike],
    turns: Sequence[SpeakerTurn] | None,
    tolerance_s: float = 0.5,
) -> list[MergedSegment]:
    """Label every word (or word-less segment) with a diarization speaker and split at changes.

    ``turns`` None or empty means diarization is unavailable: every segment is "Unknown"
    and nothing is split. ``tolerance_s`` is how far (seconds) a word lying in a gap between
    turns may be from a turn and still take its speaker; words further away take their
    neighbouring word's speaker instead, since a pause in one person's speech is far more
    common than a one-word interjection that diarization missed.

    Accepts MergedSegment too, so re-merging after a re-diarization is the same call.
    Roles are not set here (see roles.py); output ``role`` is always None.
    """
    segs = list(segments)
    index = _TurnIndex(turns or [])
    if not index:
        return [
            MergedSegment(start=s.start, end=s.end, speaker=UNKNOWN, role=None, text=s.text,
                          words=[_merged_word(w, UNKNOWN) for w in s.words])
            for s in segs
        ]
    resolved = _label_units(segs, index, tolerance_s)
    out: list[MergedSegment] = []
    k = 0
    for s in segs:
        if not s.words:
            out.append(MergedSegment(start=s.start, end=s.end, speaker=resolved[k], role=None, text=s.text))
            k += 1
            continue
        out.extend(_split_at_speaker_changes(s, resolved[k : k + len(s.words)]))
        k += len(s.words)
    return out


def _label_units(segs: list, index: _TurnIndex, tolerance_s: float) -> list[str]:
    """A speaker for every "unit": each word of a timed segment, or the whole segment when
    it has no word timings. One flat sequence, so neighbour filling works across segment
    boundaries."""
    units: list[tuple[float, float]] = []
    labels: list[str | None] = []
    for s in segs:
        if s.words:
            for w in s.words:
                units.append((w.start, w.end))
                labels.append(_word_speaker(index, w.start, w.end, tolerance_s))
        else:
            units.append((s.start, s.end))
            labels.append(_segment_speaker(index, s.start, s.end, tolerance_s))
    return _fill_from_neighbours(labels, units, index)


def _split_at_speaker_changes(segment, speakers: list[str]) -> list[MergedSegment]:
    """One segment per run of words with the same speaker; an unsplit segment keeps its
    own timing and text."""
    runs: list[tuple[str, list[_WordLike]]] = []
    for w, sp in zip(segment.words, speakers):
        if runs and runs[-1][0] == sp:
            runs[-1][1].append(w)
        else:
            runs.append((sp, [w]))
    if len(runs) == 1:
        sp = runs[0][0]
        return [MergedSegment(start=segment.start, end=segment.end, speaker=sp, role=None, text=segment.text,
                              words=[_merged_word(w, sp) for w in segment.words])]
    return [
        MergedSegment(start=ws[0].start, end=ws[-1].end, speaker=sp, role=None, text=_join_words(ws),
                      words=[_merged_word(w, sp) for w in ws])
        for sp, ws in runs
    ]


def full_text(
    merged: Sequence[MergedSegment],
    role_of: Mapping[str, str | None] | None = None,
    separator: str = "\n",
) -> str:
    """Readable "THERAPIST: ..." transcript for the notes stage and the API.

    Consecutive segments of the same speaker become one line, so the notes model sees
    turns rather than Whisper's arbitrary ~30 s chunks. A speaker is shown by its role
    when one was inferred, else by its raw label (SPEAKER_00, Unknown).
    """
    role_of = role_of or {}
    lines: list[tuple[str, list[str]]] = []
    for seg in merged:
        text = seg.text.strip()
        if not text:
            continue
        if lines and lines[-1][0] == seg.speaker:
            lines[-1][1].append(text)
        else:
            lines.append((seg.speaker, [text]))
    return separator.join(f"{role_of.get(label) or label}: {' '.join(parts)}" for label, parts in lines)


def speaker_stats(merged: Sequence[MergedSegment]) -> dict[str, float]:
    """Talk time (seconds) per speaker label, in order of first appearance.

    Uses segment spans; after the merge a split segment spans exactly its words, so a
    speaker is not credited with the other speaker's part of a Whisper segment.
    """
    out: dict[str, float] = {}
    for seg in merged:
        out[seg.speaker] = out.get(seg.speaker, 0.0) + max(0.0, seg.end - seg.start)
    return {k: round(v, 3) for k, v in out.items()}
