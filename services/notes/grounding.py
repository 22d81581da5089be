"""Grounding: every quote, piece of evidence and timestamp in a set of notes must point
at real transcript text.

Why this exists: notes are clinical records. An LLM can paraphrase a "quote", invent one,
or attach the wrong time to it; even our own extractor must get the timestamps right.
This module holds the small text/timing helpers that the risk detector and the offline
extractor use to cut verbatim sentences out of segments (with times taken from the word
timings), and ``validate_notes_against_transcript`` which repairs or drops anything in a
``ClinicalNotes`` that does not match the transcript. It is pure and deterministic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from difflib import SequenceMatcher

from shared.contracts.events import MergedSegment
from shared.contracts.notes import ClinicalNotes, RiskFlag, SignificantQuote

_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+")
_TOKEN = re.compile(r"[a-z0-9']+")

#: A quote whose best match scores below this is treated as invented and dropped.
MIN_MATCH_RATIO = 0.8


def normalize(text: str) -> str:
    """Lower-case, unify apostrophes/quotes and collapse whitespace, for comparisons only."""
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')
    return re.sub(r"\s+", " ", text).strip().lower()


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(normalize(text))


@dataclass(frozen=True)
class Sentence:
    """A verbatim sentence of one segment: ``text == segment.text[char_start:char_end]``."""

    segment_index: int
    char_start: int
    char_end: int
    text: str
    start: float
    end: float


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Character spans of the sentences of ``text`` (stripped, never empty)."""
    spans: list[tuple[int, int]] = []
    pos = 0
    for m in _SENTENCE_END.finditer(text):
        spans.append((pos, m.start()))
        pos = m.end()
    spans.append((pos, len(text)))
    out = []
    for a, b in spans:
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if b > a:
            out.append((a, b))
    return out


def word_char_spans(segment: MergedSegment) -> list[tuple[int, int, float, float]] | None:
    """Locate each timed word in the segment text: (char_start, char_end, t_start, t_end).

    Returns None when the words cannot be aligned to the text (e.g. the text was edited
    after transcription); callers then fall back to segment times rather than guess.
    """
    if not segment.words:
        return None
    low = normalize_keep_len(segment.text)
    out: list[tuple[int, int, float, float]] = []
    cursor = 0
    misses = 0
    for w in segment.words:
        token = normalize_keep_len(w.word).strip()
        if not token:
            continue
        idx = low.find(token, cursor)
        if idx < 0 or idx - cursor > 40:
            # try without punctuation (Whisper words often carry trailing punctuation)
            bare = token.strip(".,!?;:\"'()-")
            idx = low.find(bare, cursor) if bare else -1
            if idx < 0 or idx - cursor > 40:
                misses += 1
                continue
            token = bare
        out.append((idx, idx + len(token), w.start, w.end))
        cursor = idx + len(token)
    if not out or misses > max(2, len(segment.words) // 5):
        return None
    return out


def normalize_keep_len(text: str) -> str:
    """Lower-case with apostrophes unified, keeping every character position unchanged."""
    return text.replace("\u2019", "'").replace("\u2018", "'").lower()


def span_times(segment: MergedSegment, char_start: int, char_end: int,
               spans: list[tuple[int, int, float, float]] | None = None) -> tuple[float, float]:
    """Start/end time of a character span of the segment text, from word timings."""
    if spans is None:
        spans = word_char_spans(segment)
    if spans:
        inside = [s for s in spans if s[1] > char_start and s[0] < char_end]
        if inside:
            return round(inside[0][2], 3), round(inside[-1][3], 3)
    return round(segment.start, 3), round(segment.end, 3)


def segment_sentences(segments: list[MergedSegment], index: int) -> list[Sentence]:
    seg = segments[index]
    spans = word_char_spans(seg)
    out = []
    for a, b in split_sentences(seg.text):
        t0, t1 = span_times(seg, a, b, spans)
        out.append(Sentence(index, a, b, seg.text[a:b], t0, t1))
    return out


def all_sentences(segments: list[MergedSegment]) -> list[Sentence]:
    out: list[Sentence] = []
    for i in range(len(segments)):
        out.extend(segment_sentences(segments, i))
    return out


# --- validation --------------------------------------------------------------------------


@dataclass(frozen=True)
class Match:
    segment_index: int
    text: str
    start: float
    end: float
    score: float


def find_in_transcript(quote: str, segments: list[MergedSegment], near: float | None = None,
                       sentences: list[Sentence] | None = None) -> Match | None:
    """Find where a quote really is in the transcript.

    Exact (normalised) substring of a segment first: the verbatim text is returned with
    times from its words. Otherwise the most similar sentence (difflib ratio over tokens,
    tie-broken by closeness to ``near``); below MIN_MATCH_RATIO there is no match.
    """
    q = normalize(quote).strip(" \"'.,")
    if not q:
        return None
    exact: list[Match] = []
    for i, seg in enumerate(segments):
        low = normalize_keep_len(seg.text)
        # Whitespace differences are common in model output; search token-flexibly.
        pattern = r"\s+".join(re.escape(p) for p in q.split(" "))
        for m in re.finditer(pattern, low):
            t0, t1 = span_times(seg, m.start(), m.end())
            exact.append(Match(i, seg.text[m.start():m.end()], t0, t1, 1.0))
    if exact:
        if near is not None:
            exact.sort(key=lambda m: abs(m.start - near))
        return exact[0]
    if sentences is None:
        sentences = all_sentences(segments)
    q_tokens = tokens(q)
    if not q_tokens:
        return None
    best: tuple[float, float, Sentence] | None = None
    for s in sentences:
        s_tokens = tokens(s.text)
        if not s_tokens:
            continue
        score = SequenceMatcher(None, q_tokens, s_tokens, autojunk=False).ratio()
        dist = abs(s.start - near) if near is not None else 0.0
        key = (score, -dist)
        if best is None or key > (best[0], best[1]):
            best = (score, -dist, s)
    if best is None or best[0] < MIN_MATCH_RATIO:
        return None
    s = best[2]
    return Match(s.segment_index, s.text, s.start, s.end, best[0])


def validate_notes_against_transcript(notes: ClinicalNotes, segments: list[MergedSegment]) -> ClinicalNotes:
    """Return a copy of ``notes`` whose quotes and risk evidence are verbatim transcript text.

    Quotes: repaired to the matching transcript text and times (and speaker/role from
    the segment), or dropped when nothing in the transcript is close enough. Risk flags:
    evidence and times are repaired the same way, but a flag whose evidence cannot be found
    is KEPT (a possible risk is never silently discarded) with its evidence marked
    unverified and its time clamped into the session.
    """
    sentences = all_sentences(segments)
    quotes: list[SignificantQuote] = []
    kept: list[Match] = []
    for q in notes.significant_quotes:
        m = find_in_transcript(q.quote, segments, near=q.start, sentences=sentences)
        if m is None:
            continue
        # Two quotes pointing at overlapping text of one segment are the same quote.
        if any(k.segment_index == m.segment_index and k.start < m.end and m.start < k.end for k in kept):
            continue
        kept.append(m)
        seg = segments[m.segment_index]
        quotes.append(q.model_copy(update={
            "quote": m.text, "start": m.start, "end": m.end, "speaker": seg.speaker, "role": seg.role,
        }))
    flags: list[RiskFlag] = []
    t_max = max((s.end for s in segments), default=0.0)
    for f in notes.risk_flags:
        m = find_in_transcript(f.evidence, segments, near=f.start, sentences=sentences)
        if m is not None:
            seg = segments[m.segment_index]
            flags.append(f.model_copy(update={
                "evidence": m.text, "start": m.start, "end": m.end,
                "speaker": seg.speaker, "role": seg.role,
            }))
        else:
            start = min(max(f.start, 0.0), t_max)
            note = "evidence not found verbatim in transcript; verify manually"
            rationale = f"{f.rationale} ({note})" if f.rationale else note
            flags.append(f.model_copy(update={"start": start, "end": None, "rationale": rationale}))
    return notes.model_copy(update={"significant_quotes": quotes, "risk_flags": flags,
                                    "action_items": _grounded_items(notes.action_items, segments, sentences),
                                    "strategies": _grounded_items(notes.strategies, segments, sentences)})


def _grounded_items(items: list, segments: list[MergedSegment], sentences: list[Sentence]) -> list:
    """Action items / interventions whose evidence quote is verbatim transcript text: a quote
    that is close is repaired (text and times); an item whose quote is not in the transcript
    is dropped as invented. An item given without any quote is kept, with no evidence."""
    out = []
    for item in items:
        if not item.evidence:
            out.append(item.model_copy(update={"start": None, "end": None}))
            continue
        m = find_in_transcript(item.evidence, segments, near=item.start, sentences=sentences)
        if m is not None:
            out.append(item.model_copy(update={"evidence": m.text, "start": m.start, "end": m.end}))
    return out
