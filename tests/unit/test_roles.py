"""Role inference (services/joiner/roles.py) on generated sessions.

The generated therapist asks questions, reflects and sets homework; the client talks more
and about themself. The therapist must be found whichever diarization label they got and
whoever speaks first, and weak or symmetric evidence must leave the roles unset.
"""

from __future__ import annotations

import random

import pytest

from services.joiner.merge import UNKNOWN
from services.joiner.roles import CLIENT, THERAPIST, apply_roles, infer_roles, speaker_features, speaker_infos
from shared.contracts.events import MergedSegment

THERAPIST_LINES = [
    "How did that make you feel?",
    "It sounds like that was really hard for you.",
    "What do you think was going on for you in that moment?",
    "Can you tell me more about that?",
    "That makes sense, given everything you've been carrying.",
    "When you noticed that thought, what did you do next?",
    "On a scale of one to ten, how anxious were you?",
    "What would it look like if you gave yourself a little more credit?",
    "Mm-hmm. And how did your partner respond?",
    "You mentioned your sleep earlier. Has that changed at all?",
]
CLIENT_LINES = [
    "I've been feeling really anxious at work, and I keep replaying every meeting in my head.",
    "Honestly I didn't sleep much, maybe four hours a night, and I was exhausted by Thursday.",
    "My manager sent me an email and I just froze, I couldn't even open it for an hour.",
    "I think I was scared that I had messed something up again, like I always do.",
    "I talked to my sister about it and she said I'm overthinking, which made me feel worse.",
    "I tried going for a walk on Sunday and that helped a bit, I felt calmer afterwards.",
    "I guess I felt embarrassed, because I know it's not a big deal but my body reacts anyway.",
    "Yeah, I noticed I was holding my breath a lot, especially before I had to speak.",
    "I don't know, I just get this tight feeling in my chest and my mind races.",
    "My partner was supportive, he made dinner and let me vent for a while.",
]
THERAPIST_OPEN = "Welcome back. How have you been since we last met?"
CLIENT_OPEN = "Sorry I'm a few minutes late, the traffic was awful today."
THERAPIST_HOMEWORK = (
    "So this week, I'd like you to keep a thought record. Between now and next session, "
    "try to write down the thought and what you felt, and practice the breathing exercise once a day."
)
THERAPIST_CLOSE = "We're almost out of time, so let's stop here. See you next week."
CLIENT_CLOSE = "Okay, thank you. That was helpful."


def _session(therapist: str, client: str, client_first: bool, seed: int, exchanges: int = 14) -> list[MergedSegment]:
    rnd = random.Random(seed)
    lines: list[tuple[str, str]] = []
    if client_first:
        lines.append((client, CLIENT_OPEN))
    lines.append((therapist, THERAPIST_OPEN))
    for _ in range(exchanges):
        lines.append((client, rnd.choice(CLIENT_LINES)))
        if rnd.random() < 0.4:  # clients often hold the floor for several segments
            lines.append((client, rnd.choice(CLIENT_LINES)))
        lines.append((therapist, rnd.choice(THERAPIST_LINES)))
    lines.append((client, rnd.choice(CLIENT_LINES)))
    lines.append((therapist, THERAPIST_HOMEWORK))
    lines.append((client, CLIENT_CLOSE))
    lines.append((therapist, THERAPIST_CLOSE))
    segs, t = [], 0.0
    for speaker, text in lines:
        dur = len(text.split()) * 0.38  # ~160 words per minute
        segs.append(MergedSegment(start=round(t, 2), end=round(t + dur, 2), speaker=speaker, text=text))
        t += dur + rnd.uniform(0.2, 1.2)
    return segs


@pytest.mark.parametrize("therapist,client", [("SPEAKER_00", "SPEAKER_01"), ("SPEAKER_01", "SPEAKER_00")])
@pytest.mark.parametrize("client_first", [False, True])
@pytest.mark.parametrize("seed", range(5))
def test_questioning_homework_setter_is_therapist(therapist, client, client_first, seed):
    merged = _session(therapist, client, client_first, seed)
    roles = infer_roles(merged)
    assert roles[therapist][0] == THERAPIST
    assert roles[client][0] == CLIENT
    assert roles[therapist][1] >= 0.7
    assert 0.5 <= roles[client][1] <= 1.0


def test_client_talks_more_in_generated_session():
    """Sanity check on the generator: the talk-time cue points the same way as the others."""
    f = speaker_features(_session("SPEAKER_00", "SPEAKER_01", False, 0))
    assert f["SPEAKER_01"].talk_time_s > f["SPEAKER_00"].talk_time_s
    assert f["SPEAKER_00"].questions > f["SPEAKER_01"].questions
    assert f["SPEAKER_00"].homework > f["SPEAKER_01"].homework


NEUTRAL = [
    "The weather was fine on the drive over.",
    "We went to the market on Saturday morning.",
    "The train was on time for once.",
    "There was a lot of traffic near the bridge.",
    "The new cafe on the corner opened last month.",
    "Dinner was pasta with a simple tomato sauce.",
]


def test_ambiguous_conversation_leaves_roles_unset():
    segs, t = [], 0.0
    for i in range(12):
        speaker = "SPEAKER_00" if i % 2 == 0 else "SPEAKER_01"
        text = NEUTRAL[(i // 2) % len(NEUTRAL)]
        segs.append(MergedSegment(start=t, end=t + 3.0, speaker=speaker, text=text))
        t += 3.5
    roles = infer_roles(segs)
    assert roles["SPEAKER_00"][0] is None and roles["SPEAKER_01"][0] is None
    assert 0.5 <= roles["SPEAKER_00"][1] < 0.6


def test_too_little_evidence_leaves_roles_unset():
    segs = [
        MergedSegment(start=0, end=1, speaker="SPEAKER_00", text="How are you?"),
        MergedSegment(start=1, end=2, speaker="SPEAKER_01", text="Fine."),
    ]
    roles = infer_roles(segs)
    assert roles["SPEAKER_00"][0] is None and roles["SPEAKER_01"][0] is None


def test_three_speakers_therapist_and_numbered_clients():
    base = _session("SPEAKER_01", "SPEAKER_00", False, 3)
    rnd = random.Random(7)
    merged, t = [], 0.0
    for seg in base:
        merged.append(seg.model_copy(update={"start": t, "end": t + seg.end - seg.start}))
        t += seg.end - seg.start + 0.5
        if seg.speaker == "SPEAKER_00" and rnd.random() < 0.6:  # a partner joins in (couples session)
            text = rnd.choice(CLIENT_LINES)
            dur = len(text.split()) * 0.38
            merged.append(MergedSegment(start=t, end=t + dur, speaker="SPEAKER_02", text=text))
            t += dur + 0.5
    roles = infer_roles(merged)
    assert roles["SPEAKER_01"][0] == THERAPIST
    # first appearance: SPEAKER_01 (therapist), SPEAKER_00, then SPEAKER_02
    assert roles["SPEAKER_00"][0] == "CLIENT 1"
    assert roles["SPEAKER_02"][0] == "CLIENT 2"


def test_three_indistinct_speakers_get_no_roles():
    segs, t = [], 0.0
    for i in range(18):
        speaker = f"SPEAKER_0{i % 3}"
        segs.append(MergedSegment(start=t, end=t + 3.0, speaker=speaker, text=NEUTRAL[(i // 3) % len(NEUTRAL)]))
        t += 3.5
    assert all(role is None for role, _ in infer_roles(segs).values())


def test_minor_phantom_speaker_does_not_block_two_speaker_roles():
    merged = _session("SPEAKER_00", "SPEAKER_01", False, 1)
    end = merged[-1].end
    merged.append(MergedSegment(start=end + 1, end=end + 2, speaker="SPEAKER_02", text="Bye."))
    roles = infer_roles(merged)
    assert roles["SPEAKER_00"][0] == THERAPIST
    assert roles["SPEAKER_01"][0] == CLIENT
    assert roles["SPEAKER_02"][0] is None


def test_unknown_never_gets_a_role_and_labels_are_kept():
    merged = _session("SPEAKER_01", "SPEAKER_00", True, 2)
    merged.insert(3, MergedSegment(start=merged[2].end, end=merged[2].end + 0.1, speaker=UNKNOWN, text="Hmm."))
    roles = infer_roles(merged)
    assert roles[UNKNOWN] == (None, 0.5)
    labelled = apply_roles(merged, roles)
    assert [s.speaker for s in labelled] == [s.speaker for s in merged]
    assert {s.role for s in labelled if s.speaker == "SPEAKER_01"} == {THERAPIST}
    assert {s.role for s in labelled if s.speaker == UNKNOWN} == {None}
    infos = {i.label: i for i in speaker_infos(merged, roles)}
    assert infos["SPEAKER_01"].role == THERAPIST and infos["SPEAKER_01"].label == "SPEAKER_01"
    assert infos[UNKNOWN].role is None


def test_only_unknown_speaker():
    segs = [MergedSegment(start=0, end=5, speaker=UNKNOWN, text="How have you been? I'd like you to practice.")]
    assert infer_roles(segs) == {UNKNOWN: (None, 0.5)}
