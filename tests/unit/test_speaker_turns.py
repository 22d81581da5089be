"""``speaker_turns``: the notes stage reads one speaker's consecutive ASR segments as one turn
(services/notes/grounding.py), and every quote cut from a turn stays verbatim transcript text."""

from __future__ import annotations

import pytest

from services.joiner.merge import full_text
from services.notes.grounding import segment_sentences, speaker_turns
from shared.contracts.events import MergedSegment, MergedWord


def _seg(speaker: str, start: float, text: str) -> MergedSegment:
    words, t = [], start
    for w in text.split():
        words.append(MergedWord(start=t, end=t + 0.3, word=" " + w, speaker=speaker))
        t += 0.4
    return MergedSegment(start=start, end=t, speaker=speaker, role="CLIENT" if speaker != "SPEAKER_00" else "THERAPIST",
                         text=text, words=words)


SEGMENTS = [
    _seg("SPEAKER_00", 0.0, "How did the week go?"),
    _seg("SPEAKER_01", 3.0, "He had been drinking since eleven, and he"),
    _seg("SPEAKER_01", 7.0, "insisted on driving us home."),
    _seg("SPEAKER_00", 10.0, "That sounds frightening."),
    _seg("SPEAKER_01", 12.0, "It was."),
]


def test_consecutive_segments_of_one_speaker_become_one_turn_and_no_more():
    turns = speaker_turns(SEGMENTS)
    assert [t.speaker for t in turns] == ["SPEAKER_00", "SPEAKER_01", "SPEAKER_00", "SPEAKER_01"]
    merged = turns[1]
    assert merged.text == "He had been drinking since eleven, and he insisted on driving us home."
    assert (merged.start, merged.end) == (SEGMENTS[1].start, SEGMENTS[2].end)
    assert len(merged.words) == len(SEGMENTS[1].words) + len(SEGMENTS[2].words)
    assert speaker_turns(turns) == turns  # idempotent: the detector and the extractor may both call it


def test_a_sentence_across_the_cut_keeps_word_times_and_is_verbatim_in_the_transcript_text():
    turns = speaker_turns(SEGMENTS)
    [sentence] = segment_sentences(turns, 1)
    assert sentence.start == SEGMENTS[1].words[0].start
    assert sentence.end == pytest.approx(SEGMENTS[2].words[-1].end)
    # The joiner's transcript text (what the API serves and the notes' quotes are checked in).
    assert sentence.text in full_text(SEGMENTS)


def test_a_long_monologue_is_cut_at_a_segment_boundary():
    long = [_seg("SPEAKER_01", 5.0 + 20.0 * i, "Another stretch of the same story.") for i in range(6)]
    turns = speaker_turns([_seg("SPEAKER_00", 0.0, "Go on."), *long], max_turn_s=45.0)
    assert len(turns) == 3 and all(t.end - t.start <= 45.0 for t in turns)
    assert " ".join(t.text for t in turns[1:]) == " ".join(s.text for s in long)


def test_one_speaker_means_no_turns_were_found_and_nothing_is_joined():
    one = [s.model_copy(update={"speaker": "SPEAKER_00", "role": None}) for s in SEGMENTS]
    assert speaker_turns(one) == one
