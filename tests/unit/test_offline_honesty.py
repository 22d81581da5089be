"""The offline notes say nothing the transcript does not support: ordinary small talk
gets no clinical topics, a neutral mood and no risk flags."""

from shared.contracts.events import MergedSegment, SpeakerInfo
from shared.contracts.notes import MoodTrajectory, SessionMood
from services.notes.offline import build_offline_notes

SMALL_TALK = [
    ("SPEAKER_00", "Hello. Oh, hello. I didn't know you were there."),
    ("SPEAKER_01", "Neither did I. I thought, you know, I heard a beep. This is Diane in New Jersey."),
    ("SPEAKER_00", "And I'm Sheila in Texas, originally from Chicago."),
    ("SPEAKER_01", "I'm originally from Chicago also. I'm in New Jersey now, though."),
    ("SPEAKER_00", "Well, there isn't that much difference. At least, you know, they all call me a Yankee down here."),
    ("SPEAKER_01", "I don't hear that in New Jersey now. We never had snow like that, nothing like it."),
]


def test_small_talk_gets_no_invented_clinical_content():
    segments = [MergedSegment(start=i * 5.0, end=i * 5.0 + 4.5, speaker=spk, text=text)
                for i, (spk, text) in enumerate(SMALL_TALK)]
    notes = build_offline_notes(segments, [SpeakerInfo(label="SPEAKER_00"), SpeakerInfo(label="SPEAKER_01")])
    assert "depression and low mood" not in notes.key_topics
    assert notes.session_mood is SessionMood.neutral
    assert notes.mood_trajectory is MoodTrajectory.stable
    assert notes.risk_flags == []
    assert notes.action_items == []
