"""Streaming decode helpers: spans read in one pass equal slices of the whole decode, and
the level profile has one value per hop."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shared.audio import SAMPLE_RATE, decode_audio, energy_profile, read_spans

JFK = Path(__file__).parents[1] / "data" / "jfk.flac"


def test_spans_match_slices_of_the_full_decode_including_overlaps():
    whole = decode_audio(JFK)
    spans = [(0.0, 3.5), (2.5, 7.25), (7.0, 11.0), (10.0, 60.0)]  # overlapping; the last runs past the end
    got = list(read_spans(JFK, spans))
    assert len(got) == 4
    for (a, b), pcm in zip(spans, got):
        expected = whole[int(round(a * SAMPLE_RATE)):int(round(b * SAMPLE_RATE))]
        assert pcm.size == expected.size
        assert np.array_equal(pcm, expected)


def test_level_profile_has_one_value_per_hop_and_sees_speech_louder_than_the_quietest_part():
    whole = decode_audio(JFK)
    levels = energy_profile(JFK, hop_s=0.02)
    assert abs(levels.size - whole.size / (0.02 * SAMPLE_RATE)) <= 1
    assert levels.max() - levels.min() > 20  # dB between speech and the pauses


def test_decode_is_the_same_whether_the_header_tells_the_length_or_under_states_it(monkeypatch):
    """The decode buffer is sized from the header; a header that under-states the length
    makes it grow, and either way every sample arrives in order."""
    import shared.audio as audio

    whole = decode_audio(JFK)
    assert abs(whole.size / SAMPLE_RATE - 11.0) < 0.1
    monkeypatch.setattr(audio, "_expected_samples", lambda *a: SAMPLE_RATE // 10)  # claims 0.1 s
    grown = decode_audio(JFK)
    assert np.array_equal(grown, whole)
