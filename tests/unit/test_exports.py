"""Gateway exports (services/gateway/exports.py): formats a player or tool can parse."""

from __future__ import annotations

import json
import re
import uuid

import pytest

from services.gateway.exports import fmt_srt_time, fmt_vtt_time, to_json, to_rttm, to_srt, to_txt, to_vtt
from shared.contracts.events import MergedSegment, MergedWord, SpeakerInfo, SpeakerTurn
from services.gateway.rttm import parse_rttm

T, C = "SPEAKER_00", "SPEAKER_01"


def _words(start: float, text: str, speaker: str, step: float = 0.4) -> list[MergedWord]:
    out, t = [], start
    for tok in text.split():
        out.append(MergedWord(start=round(t, 3), end=round(t + step * 0.8, 3), word=" " + tok, speaker=speaker))
        t += step
    return out


LONG = (
    "I've been feeling really anxious at work and I keep replaying every meeting in my head "
    "over and over again until I can't sleep, and then the next day I'm exhausted and it starts all over"
)

SEGMENTS = [
    MergedSegment(start=0.0, end=2.5, speaker=T, role="THERAPIST", text="How have you been?", words=_words(0.0, "How have you been?", T)),
    MergedSegment(start=3.0, end=3.0 + 0.4 * len(LONG.split()), speaker=C, role="CLIENT", text=LONG, words=_words(3.0, LONG, C)),
    MergedSegment(start=62.0, end=75.5, speaker=C, text=LONG),  # long, no word timings
    MergedSegment(start=3725.25, end=3727.0, speaker="Unknown", text="Okay."),
]
SPEAKERS = [
    SpeakerInfo(label=T, role="THERAPIST", role_confidence=0.9, talk_time_s=2.5, display_name="Dr. Rivera"),
    SpeakerInfo(label=C, role="CLIENT", role_confidence=0.9, talk_time_s=30.0),
    SpeakerInfo(label="Unknown"),
]

SRT_TIME = r"\d{2}:\d{2}:\d{2},\d{3}"
VTT_TIME = r"\d{2}:\d{2}:\d{2}\.\d{3}"


def _secs(ts: str) -> float:
    h, m, s = ts.replace(",", ".").split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def _parse_srt(text: str) -> list[tuple[int, float, float, str]]:
    assert text.endswith("\n") and not text.startswith("\n")
    cues = []
    for block in text.strip("\n").split("\n\n"):
        lines = block.split("\n")
        assert re.fullmatch(r"\d+", lines[0]), block
        m = re.fullmatch(rf"({SRT_TIME}) --> ({SRT_TIME})", lines[1])
        assert m, block
        assert len(lines) >= 3 and all(lines[2:]), block
        cues.append((int(lines[0]), _secs(m[1]), _secs(m[2]), "\n".join(lines[2:])))
    return cues


def _parse_vtt(text: str) -> list[tuple[str, float, float, str, str]]:
    blocks = text.strip("\n").split("\n\n")
    assert blocks[0] == "WEBVTT"
    cues = []
    for block in blocks[1:]:
        lines = block.split("\n")
        m = re.fullmatch(rf"({VTT_TIME}) --> ({VTT_TIME})", lines[1])
        assert m, block
        v = re.fullmatch(r"<v ([^>]+)>(.*)</v>", lines[2])
        assert v, block
        assert "-->" not in lines[2]
        cues.append((lines[0], _secs(m[1]), _secs(m[2]), v[1], v[2]))
    return cues


def test_time_formats():
    assert fmt_srt_time(1) == "00:00:01,000"
    assert fmt_vtt_time(1) == "00:00:01.000"
    assert fmt_srt_time(3725.2504) == "01:02:05,250"
    assert fmt_vtt_time(59.9996) == "00:01:00.000"
    assert fmt_srt_time(-0.2) == "00:00:00,000"


@pytest.mark.parametrize("as_dicts", [False, True])
def test_srt_is_parseable_numbered_monotonic_and_labelled(as_dicts):
    segs = [s.model_dump() for s in SEGMENTS] if as_dicts else SEGMENTS
    speakers = [s.model_dump() for s in SPEAKERS] if as_dicts else SPEAKERS
    cues = _parse_srt(to_srt(segs, speakers))
    assert [c[0] for c in cues] == list(range(1, len(cues) + 1))
    assert all(start <= end for _, start, end, _ in cues)
    assert all(a[1] <= b[1] for a, b in zip(cues, cues[1:]))
    assert cues[0][3] == "Dr. Rivera: How have you been?"  # display_name wins over role
    assert all(re.match(r"(Dr\. Rivera|CLIENT|Unknown): ", c[3]) for c in cues)
    assert cues[-1][3] == "Unknown: Okay." and cues[-1][1] == 3725.25


def test_long_segments_split_into_short_cues_at_word_boundaries():
    cues = _parse_srt(to_srt(SEGMENTS, SPEAKERS))
    client = [c for c in cues if c[3].startswith("CLIENT: ")]
    assert len(client) > 2
    for _, start, end, text in client:
        body = text.removeprefix("CLIENT: ")
        assert len(body) <= 84
        assert end - start <= 7.0 + 1e-6
    # Both long segments (timed and untimed) are rebuilt word for word from their cues.
    timed = [c for c in client if c[1] < 60]
    untimed = [c for c in client if c[1] >= 60]
    for group in (timed, untimed):
        assert " ".join(c[3].removeprefix("CLIENT: ") for c in group) == LONG
    assert untimed[0][1] == 62.0 and untimed[-1][2] == 75.5
    # Timed cues start on word times.
    word_starts = {w.start for w in SEGMENTS[1].words}
    assert all(c[1] in word_starts for c in timed)


def test_vtt_is_parseable_with_voice_tags():
    text = to_vtt(SEGMENTS, SPEAKERS)
    assert text.startswith("WEBVTT\n\n")
    cues = _parse_vtt(text)
    assert [c[0] for c in cues] == [str(i) for i in range(1, len(cues) + 1)]
    assert all(a[1] <= b[1] and a[1] <= a[2] for a, b in zip(cues, cues[1:]))
    assert cues[0][3:] == ("Dr. Rivera", "How have you been?")
    assert {c[3] for c in cues} == {"Dr. Rivera", "CLIENT", "Unknown"}


def test_vtt_escapes_markup_and_falls_back_to_labels():
    segs = [{"start": 0, "end": 1, "speaker": "SPEAKER_03", "text": "a <b> & c"}]
    cues = _parse_vtt(to_vtt(segs, None))
    assert cues[0][3:] == ("SPEAKER_03", "a &lt;b&gt; &amp; c")


def test_txt_lines():
    lines = to_txt(SEGMENTS, SPEAKERS).splitlines()
    assert lines[0] == "[00:00:00] Dr. Rivera: How have you been?"
    assert lines[1].startswith("[00:00:03] CLIENT: I've been feeling")
    assert lines[2].startswith("[00:01:02] CLIENT: ")
    assert lines[3] == "[01:02:05] Unknown: Okay."
    assert all(re.fullmatch(r"\[\d{2}:\d{2}:\d{2}\] [^:]+: .+", line) for line in lines)
    # Without speaker info: the segment's role, else its label.
    plain = to_txt([s.model_dump() for s in SEGMENTS]).splitlines()
    assert plain[0].startswith("[00:00:00] THERAPIST: ") and plain[3].startswith("[01:02:05] Unknown: ")


def test_speakers_as_mapping():
    txt = to_txt(SEGMENTS[:1], {T: {"role": "THERAPIST", "display_name": None}})
    assert txt == "[00:00:00] THERAPIST: How have you been?\n"
    assert to_txt(SEGMENTS[:1], {T: "Dr. R"}) == "[00:00:00] Dr. R: How have you been?\n"


def test_json_roundtrip():
    sid = uuid.uuid4()
    doc = json.loads(to_json(SEGMENTS, SPEAKERS, session_id=sid, language="en"))
    assert doc["session_id"] == str(sid) and doc["language"] == "en"
    assert [s["speaker"] for s in doc["segments"]] == [s.speaker for s in SEGMENTS]
    assert doc["segments"][0]["speaker_name"] == "Dr. Rivera"
    assert [MergedSegment.model_validate(s).text for s in doc["segments"]] == [s.text for s in SEGMENTS]
    assert doc["speakers"][0]["display_name"] == "Dr. Rivera"


def test_empty_exports():
    assert to_srt([], []) == ""
    assert to_vtt([], []) == "WEBVTT\n"
    assert to_txt([], []) == ""


def test_rttm_delegates_to_shared():
    turns = [SpeakerTurn(start=0, end=2.5, speaker=T), {"start": 3.0, "end": 4.0, "speaker": C}]
    text = to_rttm(turns, "session 1")
    assert parse_rttm(text) == {"session_1": [(0.0, 2.5, T), (3.0, 4.0, C)]}
