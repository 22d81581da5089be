"""Transcript quality checks: spans a clinician should review before trusting the text.

Plain domain code (no Kafka, HTTP or SQL): takes the ASR segments (word timings and
probabilities, Whisper's segment statistics), the speaker-labelled segments and the
diarizer's speech turns, and returns QualityWarning objects. Messages carry only ids,
times and numbers, never transcript text, because warnings are stored unsealed and may
be logged. Thresholds live in QualityThresholds (settings TB_QUALITY_*); their defaults
were calibrated on real and generated recordings (docs/adr/0014-transcript-quality-checks.md).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from shared.clock import clock
from shared.contracts.events import MergedSegment, QualityWarning, SpeakerTurn, TranscriptSegment
from services.joiner.merge import _TurnIndex

_TOKEN = re.compile(r"[^\w']+")


@dataclass(frozen=True)
class QualityThresholds:
    wpm_fast: float = 320.0  # words per minute above which a run is "too fast"
    wpm_slow: float = 50.0  # ... below which it is "too slow" (words dropped or stretched)
    wpm_min_run_s: float = 8.0  # runs shorter than this are not rated
    wpm_run_gap_s: float = 3.0  # a pause this long splits a speaker's run
    repeat_min_unigram: int = 6  # one word said this many times in a row
    repeat_min_ngram: int = 4  # a 2..repeat_max_n word phrase this many times in a row
    repeat_max_n: int = 8
    repeat_min_lines: int = 3  # the same segment text (>= 2 words) this many times in a row
    # Whisper retries a decode above 2.4, but genuine rhetorical repetition survives that at 2.5
    # (jfk.flac's "ask not what your country..." in about half of the runs); real loops go far
    # higher and are also caught by the n-gram rules, so the warning starts at 3.0.
    compression_ratio_max: float = 3.0
    silence_s: float = 30.0  # no words for this long
    no_speech_prob_min: float = 0.6  # Whisper's own no-speech rule: this and a low logprob...
    no_speech_logprob_max: float = -1.0
    unvoiced_min_words: int = 4  # words where the diarizer's VAD found no speech
    unvoiced_tolerance_s: float = 1.0
    low_conf_word_p: float = 0.4  # a segment whose mean word probability is below this...
    low_conf_logprob: float = -1.2  # ... or whose avg_logprob is below this
    low_conf_min_span_s: float = 4.0  # ... over at least this long (adjacent segments merged)
    low_conf_merge_gap_s: float = 2.0
    language_min_probability: float = 0.5
    expected_language: str | None = None  # when the upload asked for none
    max_per_kind: int = 10


@dataclass(frozen=True)
class _TimedWord:
    start: float
    end: float
    token: str
    speaker: str | None = None




def _span(start: float, end: float) -> str:
    return f"{clock(start)}-{clock(end)}"


def _warning(kind: str, severity: str, start: float | None, end: float | None, message: str) -> QualityWarning:
    return QualityWarning(kind=kind, severity=severity, message=message,
                          start_s=None if start is None else round(start, 2), end_s=None if end is None else round(end, 2))


def _words(segments: Sequence[TranscriptSegment | MergedSegment]) -> list[_TimedWord]:
    out: list[_TimedWord] = []
    for seg in segments:
        speaker = getattr(seg, "speaker", None)
        for w in seg.words:
            token = _TOKEN.sub("", w.word.lower())
            if token:
                out.append(_TimedWord(w.start, w.end, token, getattr(w, "speaker", None) or speaker))
    return sorted(out, key=lambda w: w.start)


# --- words per minute ----------------------------------------------------------------------
def _runs(words: list[_TimedWord], gap_s: float) -> list[list[_TimedWord]]:
    runs: list[list[_TimedWord]] = []
    for w in words:
        if runs and runs[-1][-1].speaker == w.speaker and w.start - runs[-1][-1].end < gap_s:
            runs[-1].append(w)
        else:
            runs.append([w])
    return runs


def check_speech_rate(words: list[_TimedWord], t: QualityThresholds) -> list[QualityWarning]:
    out: list[QualityWarning] = []
    for run in _runs(words, t.wpm_run_gap_s):
        start, end = run[0].start, run[-1].end
        if end - start < t.wpm_min_run_s:
            continue
        wpm = len(run) * 60.0 / (end - start)
        who = f" ({run[0].speaker})" if run[0].speaker else ""
        if wpm > t.wpm_fast:
            out.append(_warning("words_per_minute", "warning", start, end,
                                f"Speech rate {wpm:.0f} words/min{who} at {_span(start, end)} is above {t.wpm_fast:.0f}: "
                                "words may be invented or merged; check against the audio."))
        elif wpm < t.wpm_slow:
            out.append(_warning("words_per_minute", "warning", start, end,
                                f"Speech rate {wpm:.0f} words/min{who} at {_span(start, end)} is below {t.wpm_slow:.0f}: "
                                "words may be missing; check against the audio."))
    return out


# --- repetition / hallucination loops --------------------------------------------------------
def _repeats(tokens: list[str], i: int, n: int) -> int:
    gram, k = tokens[i:i + n], 1
    while tokens[i + k * n:i + (k + 1) * n] == gram:
        k += 1
    return k


def _loop_at(tokens: list[str], i: int, t: QualityThresholds) -> tuple[int, int] | None:
    """(n, repeats) of the shortest phrase starting at ``i`` that loops, or None."""
    for n in range(1, t.repeat_max_n + 1):
        k = _repeats(tokens, i, n)
        if k >= (t.repeat_min_unigram if n == 1 else t.repeat_min_ngram):
            return n, k
    return None


def _ngram_loops(words: list[_TimedWord], t: QualityThresholds) -> list[tuple[float, float, str]]:
    tokens, spans, i = [w.token for w in words], [], 0
    while i < len(tokens):
        found = _loop_at(tokens, i, t)
        if found is None:
            i += 1
            continue
        n, k = found
        last = words[i + n * k - 1]
        spans.append((words[i].start, last.end, f"a {n}-word phrase repeated {k} times"))
        i += n * k
    return spans


def _line_loops(segments: Sequence[TranscriptSegment], t: QualityThresholds) -> list[tuple[float, float, str]]:
    spans, i = [], 0
    norm = [" ".join(_TOKEN.sub(" ", s.text.lower()).split()) for s in segments]
    while i < len(segments):
        j = i + 1
        while j < len(segments) and norm[j] == norm[i]:
            j += 1
        if j - i >= t.repeat_min_lines and len(norm[i].split()) >= 2:
            spans.append((segments[i].start, segments[j - 1].end, f"the same line repeated {j - i} times"))
        i = j
    return spans


def check_repetition(segments: Sequence[TranscriptSegment], words: list[_TimedWord],
                     t: QualityThresholds) -> list[QualityWarning]:
    spans = _ngram_loops(words, t) + _line_loops(segments, t)
    spans += [(s.start, s.end, f"compression ratio {s.compression_ratio:.1f} (above {t.compression_ratio_max:.1f})")
              for s in segments if s.compression_ratio is not None and s.compression_ratio > t.compression_ratio_max]
    out: list[QualityWarning] = []
    for start, end, what in _merge_spans(spans, 0.0):
        out.append(_warning("repetition_loop", "warning", start, end,
                            f"Repetition at {_span(start, end)}: {what}; a typical speech-recognition loop, "
                            "check against the audio."))
    return out


def _merge_spans(spans: list[tuple[float, float, str]], gap_s: float) -> list[tuple[float, float, str]]:
    merged: list[tuple[float, float, str]] = []
    for start, end, what in sorted(spans):
        if merged and start - merged[-1][1] <= gap_s:
            prev = merged[-1]
            merged[-1] = (prev[0], max(prev[1], end), prev[2] if what in prev[2] else f"{prev[2]}; {what}")
        else:
            merged.append((start, end, what))
    return merged


# --- silences and text where there is no speech ------------------------------------------------
def check_silences(words: list[_TimedWord], duration_s: float | None, t: QualityThresholds) -> list[QualityWarning]:
    gaps, last_end = [], 0.0
    for w in words:
        gaps.append((last_end, w.start))
        last_end = max(last_end, w.end)
    gaps.append((last_end, max(duration_s or 0.0, last_end)))
    return [_warning("long_silence", "info", start, end,
                     f"No speech transcribed for {end - start:.0f} s at {_span(start, end)} "
                     f"(limit {t.silence_s:.0f} s): a pause, or speech the recognizer missed.")
            for start, end in gaps if end - start >= t.silence_s]


def _unvoiced_runs(words: list[_TimedWord], turns: Sequence[SpeakerTurn], tol: float) -> list[list[_TimedWord]]:
    runs: list[list[_TimedWord]] = []
    previous_outside = False
    voiced = _TurnIndex(turns)  # bisect over the turns: a 2-hour session is not words x turns
    for w in words:
        outside = not voiced.overlaps(w.start - tol, w.end + tol)
        if outside:
            if previous_outside:
                runs[-1].append(w)
            else:
                runs.append([w])
        previous_outside = outside
    return runs


def check_text_in_silence(segments: Sequence[TranscriptSegment], words: list[_TimedWord],
                          turns: Sequence[SpeakerTurn] | None, t: QualityThresholds) -> list[QualityWarning]:
    spans = [(s.start, s.end, f"the recognizer rated it {s.no_speech_prob:.2f} likely not speech")
             for s in segments
             if s.no_speech_prob is not None and s.avg_logprob is not None
             and s.no_speech_prob >= t.no_speech_prob_min and s.avg_logprob <= t.no_speech_logprob_max]
    if turns:
        spans += [(run[0].start, run[-1].end, f"{len(run)} words where voice detection found no speech")
                  for run in _unvoiced_runs(words, turns, t.unvoiced_tolerance_s) if len(run) >= t.unvoiced_min_words]
    return [_warning("text_in_silence", "warning", start, end,
                     f"Text at {_span(start, end)} where there may be no speech: {what}; possibly invented.")
            for start, end, what in _merge_spans(spans, 0.0)]


# --- low ASR confidence --------------------------------------------------------------------------
def _segment_confidence(seg: TranscriptSegment) -> float | None:
    probs = [w.p for w in seg.words if w.p is not None]
    return sum(probs) / len(probs) if probs else None


def check_low_confidence(segments: Sequence[TranscriptSegment], t: QualityThresholds) -> list[QualityWarning]:
    spans = []
    for seg in segments:
        mean_p = _segment_confidence(seg)
        low_p = mean_p is not None and mean_p < t.low_conf_word_p
        low_lp = seg.avg_logprob is not None and seg.avg_logprob < t.low_conf_logprob
        if low_p or low_lp:
            detail = f"mean word probability {mean_p:.2f}" if mean_p is not None else f"log-probability {seg.avg_logprob:.2f}"
            spans.append((seg.start, seg.end, detail))
    out = []
    for start, end, what in _merge_spans(spans, t.low_conf_merge_gap_s):
        if end - start >= t.low_conf_min_span_s:
            out.append(_warning("low_confidence", "warning", start, end,
                                f"Low recognition confidence at {_span(start, end)} ({what}): check against the audio."))
    return out


# --- language ----------------------------------------------------------------------------------
def _lang(code: str | None) -> str | None:
    return code.strip().lower().split("-")[0].split("_")[0] if code and code.strip() else None


def check_language(language: str | None, probability: float | None, requested: str | None,
                   t: QualityThresholds) -> list[QualityWarning]:
    expected = _lang(requested) or _lang(t.expected_language)
    got = _lang(language)
    if expected and got and expected != got:
        source = "requested" if _lang(requested) else "expected"
        return [_warning("language_mismatch", "warning", None, None,
                         f"The transcript's language is '{got}' but '{expected}' was {source}: "
                         "the recognizer may not support that language; the text may be unreliable.")]
    if not requested and probability is not None and probability < t.language_min_probability:
        return [_warning("language_mismatch", "info", None, None,
                         f"Language '{got}' detected with probability {probability:.2f} only "
                         f"(below {t.language_min_probability:.2f}): set the language on upload if it is wrong.")]
    return []


# --- all checks ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class QualityInput:
    segments: Sequence[TranscriptSegment]  # the ASR's segments
    merged: Sequence[MergedSegment] | None = None  # speaker-labelled segments (per-speaker rates)
    turns: Sequence[SpeakerTurn] | None = None  # the diarizer's speech turns (its VAD)
    duration_s: float | None = None
    language: str | None = None
    language_probability: float | None = None
    requested_language: str | None = None


def check_transcript(data: QualityInput, t: QualityThresholds = QualityThresholds()) -> list[QualityWarning]:
    """Every check, at most ``t.max_per_kind`` warnings of each kind, ordered by time."""
    words = _words(data.segments)
    speaker_words = _words(data.merged) if data.merged else words
    found = [
        check_language(data.language, data.language_probability, data.requested_language, t),
        check_repetition(data.segments, words, t),
        check_text_in_silence(data.segments, words, data.turns, t),
        check_low_confidence(data.segments, t),
        check_speech_rate(speaker_words, t),
        check_silences(words, data.duration_s, t),
    ]
    kept = [w for kind in found for w in kind[:t.max_per_kind]]
    return sorted(kept, key=lambda w: (w.start_s is not None, w.start_s or 0.0))
