"""Transcript quality checks (services/joiner/quality.py) on crafted transcripts: each
check fires on the failure it is for, with the right span, and stays quiet on normal
speech. Clean real recordings: tests/quality/test_transcript_quality.py."""

from __future__ import annotations

import re

from shared.contracts.events import MergedSegment, MergedWord, SpeakerTurn, TranscriptSegment, Word
from services.joiner.quality import QualityInput, QualityThresholds, check_transcript, clock

T = QualityThresholds()
SENTENCE = "i have been feeling a bit better this week and the breathing exercise helped me sleep".split()
SECRET = "zanzibar"  # a transcript word that must never appear in a message


def speech(start: float, n_words: int, wpm: float = 150.0, p: float = 0.9, vocab: list[str] | None = None,
           seg_words: int = 8, **seg_stats) -> list[TranscriptSegment]:
    """``n_words`` words from ``start`` at ``wpm``, in segments of ``seg_words`` words."""
    vocab = vocab or SENTENCE
    step = 60.0 / wpm
    words = [Word(start=round(start + i * step, 3), end=round(start + i * step + step * 0.8, 3),
                  word=" " + vocab[i % len(vocab)], p=p) for i in range(n_words)]
    stats = {"avg_logprob": -0.3, "no_speech_prob": 0.02, "compression_ratio": 1.4, **seg_stats}
    return [TranscriptSegment(start=chunk[0].start, end=chunk[-1].end, text="".join(w.word for w in chunk).strip(),
                              words=chunk, **stats)
            for chunk in (words[i:i + seg_words] for i in range(0, n_words, seg_words))]


def run(segments, duration=None, **kw):
    duration = duration if duration is not None else (segments[-1].end + 1.0 if segments else 10.0)
    return check_transcript(QualityInput(segments=segments, duration_s=duration, language="en", **kw), T)


def kinds(warnings) -> list[str]:
    return [w.kind for w in warnings]


def test_normal_speech_has_no_warnings():
    segments = speech(0.5, 150) + speech(62.0, 120, wpm=170)
    assert run(segments) == []


def test_every_warning_has_the_exact_shape():
    segments = speech(0.5, 40) + speech(80.0, 40, p=0.1)
    warnings = run(segments, requested_language="de")
    assert {"long_silence", "low_confidence", "language_mismatch"} <= set(kinds(warnings))
    for w in warnings:
        assert set(w.model_dump()) == {"kind", "severity", "start_s", "end_s", "message"}
        assert w.severity in ("info", "warning")


# --- repetition / hallucination loops ---------------------------------------------------------
def test_a_whisper_loop_is_a_repetition_warning_with_its_span():
    loop_words = "thank you for watching".split()
    segments = speech(0.5, 40) + speech(17.0, 4 * 10, vocab=loop_words, seg_words=4) + speech(35.0, 30)
    warnings = [w for w in run(segments) if w.kind == "repetition_loop"]
    assert len(warnings) == 1
    w = warnings[0]
    assert w.severity == "warning" and w.start_s == 17.0
    assert 32.0 < w.end_s < 34.0
    assert "repeated 10 times" in w.message


def test_a_short_natural_repetition_is_not_a_loop():
    segments = speech(0.5, 30) + speech(13.0, 3, vocab=["no"]) + speech(14.5, 30)
    assert "repetition_loop" not in kinds(run(segments))


def test_a_high_compression_ratio_segment_is_a_loop():
    segments = speech(0.5, 16) + speech(7.0, 8, compression_ratio=3.4) + speech(10.5, 16)
    warnings = [w for w in run(segments) if w.kind == "repetition_loop"]
    assert [(w.start_s, w.end_s) for w in warnings] == [(7.0, segments[2].end)]
    assert "compression ratio 3.4" in warnings[0].message


# --- silences and text in silence -----------------------------------------------------------------
def test_a_40_second_silence_is_reported_with_its_span():
    first = speech(0.5, 40)
    second = speech(first[-1].end + 40.0, 40)
    warnings = [w for w in run(first + second) if w.kind == "long_silence"]
    assert len(warnings) == 1
    assert warnings[0].severity == "info"
    assert warnings[0].start_s == first[-1].end and warnings[0].end_s == second[0].start
    assert "40 s" in warnings[0].message


def test_pauses_under_the_limit_are_not_silences():
    first = speech(0.5, 40)
    second = speech(first[-1].end + 20.0, 40)
    assert "long_silence" not in kinds(run(first + second))


def test_a_silent_ending_counts():
    segments = speech(0.5, 40)
    warnings = [w for w in run(segments, duration=segments[-1].end + 45.0) if w.kind == "long_silence"]
    assert [(w.start_s, w.end_s) for w in warnings] == [(segments[-1].end, round(segments[-1].end + 45.0, 2))]


def test_text_the_asr_itself_rates_as_non_speech_is_flagged():
    segments = speech(0.5, 16) + speech(10.0, 6, no_speech_prob=0.85, avg_logprob=-1.4) + speech(15.0, 16)
    warnings = [w for w in run(segments) if w.kind == "text_in_silence"]
    assert len(warnings) == 1 and warnings[0].start_s == 10.0


def test_words_where_voice_detection_heard_nothing_are_flagged():
    segments = speech(0.5, 16) + speech(20.0, 6) + speech(40.0, 16)
    turns = [SpeakerTurn(start=0.3, end=segments[1].end + 0.3, speaker="SPEAKER_00"),
             SpeakerTurn(start=39.8, end=segments[-1].end + 0.3, speaker="SPEAKER_00")]
    warnings = [w for w in run(segments, turns=turns) if w.kind == "text_in_silence"]
    assert [(w.start_s, w.end_s) for w in warnings] == [(20.0, segments[2].end)]
    assert "6 words" in warnings[0].message


# --- speech rate -------------------------------------------------------------------------------------
def merged(segments, speaker):
    return [MergedSegment(start=s.start, end=s.end, speaker=speaker, text=s.text,
                          words=[MergedWord(**w.model_dump(), speaker=speaker) for w in s.words]) for s in segments]


def test_a_too_fast_span_is_reported_for_its_speaker():
    normal, fast = speech(0.5, 40), speech(20.0, 80, wpm=450)
    warnings = [w for w in run(normal + fast, merged=merged(normal, "SPEAKER_00") + merged(fast, "SPEAKER_01"))
                if w.kind == "words_per_minute"]
    assert len(warnings) == 1
    assert warnings[0].start_s == 20.0 and "SPEAKER_01" in warnings[0].message and "above" in warnings[0].message


def test_a_too_slow_span_is_reported():
    normal, slow = speech(0.5, 40), speech(20.0, 12, wpm=30)
    warnings = [w for w in run(normal + slow) if w.kind == "words_per_minute"]
    assert len(warnings) == 1 and warnings[0].start_s == 20.0 and "below" in warnings[0].message


def test_short_bursts_are_not_rated():
    segments = speech(0.5, 40) + speech(20.0, 20, wpm=450)  # 2.7 s: too short to judge
    assert "words_per_minute" not in kinds(run(segments))


# --- language -----------------------------------------------------------------------------------------
def test_a_language_mismatch_with_the_request_is_a_warning():
    warnings = [w for w in run(speech(0.5, 30), requested_language="fr") if w.kind == "language_mismatch"]
    assert len(warnings) == 1
    assert warnings[0].severity == "warning" and warnings[0].start_s is None
    assert "'en'" in warnings[0].message and "'fr'" in warnings[0].message


def test_the_same_language_in_another_spelling_is_no_mismatch():
    assert "language_mismatch" not in kinds(run(speech(0.5, 30), requested_language="EN-us"))


def test_the_expected_language_setting_applies_when_none_was_requested():
    t = QualityThresholds(expected_language="de")
    warnings = check_transcript(QualityInput(segments=speech(0.5, 30), language="en", duration_s=15.0), t)
    assert kinds(warnings) == ["language_mismatch"] and "expected" in warnings[0].message


def test_an_uncertain_detection_is_info():
    warnings = run(speech(0.5, 30), language_probability=0.3)
    assert [(w.kind, w.severity) for w in warnings] == [("language_mismatch", "info")]


# --- low confidence -------------------------------------------------------------------------------------
def test_a_low_confidence_span_is_reported_with_its_span():
    low = speech(12.0, 24, p=0.2)
    segments = speech(0.5, 25) + low + speech(25.0, 25)
    warnings = [w for w in run(segments) if w.kind == "low_confidence"]
    assert [(w.start_s, w.end_s) for w in warnings] == [(12.0, low[-1].end)]
    assert "0.20" in warnings[0].message


def test_one_unsure_word_is_not_a_low_confidence_span():
    segments = speech(0.5, 25)
    segments[1].words[3].p = 0.05
    assert "low_confidence" not in kinds(run(segments))


def test_a_low_logprob_alone_counts():
    segments = speech(0.5, 16) + speech(7.0, 16, avg_logprob=-1.6) + speech(14.0, 16)
    assert "low_confidence" in kinds(run(segments))


# --- messages, caps, order ------------------------------------------------------------------------------
def test_messages_carry_no_transcript_text():
    loop = speech(0.5, 60, vocab=[SECRET, "is", "here"], p=0.1, compression_ratio=3.0, no_speech_prob=0.9,
                  avg_logprob=-1.5)
    warnings = run(loop + speech(120.0, 40, vocab=[SECRET], wpm=600), requested_language="fr", language_probability=0.2)
    assert len(set(kinds(warnings))) >= 5
    for w in warnings:
        assert SECRET not in w.message.lower() and " is here" not in w.message
        assert not re.search(r"[\"“]", w.message)  # no quotes of speech


def test_each_kind_is_capped():
    segments = []
    for k in range(15):  # 15 silences of 35 s
        segments += speech(k * 45.0, 20, wpm=150)
    warnings = [w for w in run(segments, duration=15 * 45.0) if w.kind == "long_silence"]
    assert len(warnings) == T.max_per_kind


def test_warnings_are_in_time_order_with_session_wide_first():
    segments = speech(0.5, 40) + speech(60.0, 24, p=0.2) + speech(80.0, 20)
    warnings = run(segments, requested_language="fr")
    assert warnings[0].start_s is None
    starts = [w.start_s for w in warnings[1:]]
    assert starts == sorted(starts)


def test_clock_format():
    assert clock(0) == "00:00" and clock(75.9) == "01:15" and clock(3725) == "1:02:05"


def test_no_words_at_all_is_one_silence():
    warnings = run([], duration=90.0)
    assert [(w.kind, w.start_s, w.end_s) for w in warnings] == [("long_silence", 0.0, 90.0)]
