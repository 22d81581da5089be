"""RTTM writing/reading (services/gateway/rttm.py): a round trip keeps every turn."""

from __future__ import annotations

from shared.contracts.events import SpeakerTurn
from services.gateway.rttm import Turn, parse_rttm, to_rttm


def test_round_trip_keeps_turns_and_order():
    turns = [
        SpeakerTurn(start=3.2, end=5.0, speaker="SPEAKER_01"),
        SpeakerTurn(start=0.5, end=3.1, speaker="SPEAKER_00"),
        SpeakerTurn(start=5.25, end=9.875, speaker="SPEAKER_00"),
    ]
    text = to_rttm(turns, "session one")
    assert text.endswith("\n")
    parsed = parse_rttm(text)
    assert list(parsed) == ["session_one"]
    assert parsed["session_one"] == [
        Turn(0.5, 3.1, "SPEAKER_00"),
        Turn(3.2, 5.0, "SPEAKER_01"),
        Turn(5.25, 9.875, "SPEAKER_00"),
    ]


def test_multiple_uris_zero_length_and_comments():
    text = to_rttm([Turn(1.0, 1.0, "A"), Turn(1.0, 2.0, "A")], "x") + to_rttm([Turn(0.0, 1.5, "B C")], "y")
    parsed = parse_rttm("; comment line\n" + text + "SPKR-INFO y 1 <NA> <NA> <NA> unknown B <NA>\n")
    assert parsed == {"x": [Turn(1.0, 2.0, "A")], "y": [Turn(0.0, 1.5, "B_C")]}
    assert to_rttm([], "empty") == ""


def test_reference_files_parse():
    from pathlib import Path

    data = Path(__file__).resolve().parents[1] / "data"
    sample = parse_rttm((data / "pyannote_sample.rttm").read_text())["sample"]
    assert {t.speaker for t in sample} == {"speaker90", "speaker91"}
    again = parse_rttm(to_rttm(sample, "sample"))["sample"]
    assert [(round(a.start, 3), round(a.end, 3), a.speaker) for a in again] == [
        (round(b.start, 3), round(b.end, 3), b.speaker) for b in sample
    ]
    ami = parse_rttm((data / "ami_dev.rttm").read_text())
    assert set(ami) == {"dev00", "dev01"}
