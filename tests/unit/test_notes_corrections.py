"""notes.regenerate carries the therapist's corrections; the notes are written from them.
The bug this guards: after naming speakers and setting roles through the API, regenerated
notes still said "Speaker roles were not identified" (the notes input ignored the names
and roles, which lived only in the gateway's read view)."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

from services.gateway.routes.sessions import regenerate_command
from services.notes.corrections import correct, has_corrections
from services.notes.offline import build_offline_notes
from shared.contracts.events import NotesRegenerate, SpeakerInfo
from tests.unit.test_offline_notes import _session

SID = uuid.uuid4()


def _unlabelled():
    """The same session as the diarizer left it when roles could not be inferred."""
    segments = [s.model_copy(update={"role": None}) for s in _session()]
    speakers = [SpeakerInfo(label="SPEAKER_00", talk_time_s=60), SpeakerInfo(label="SPEAKER_01", talk_time_s=70)]
    return segments, speakers


def test_roles_and_names_reach_the_notes():
    segments, speakers = _unlabelled()
    assert "not identified" in build_offline_notes(segments, speakers).therapist_notes
    command = NotesRegenerate(session_id=SID, speaker_names={"SPEAKER_00": "Dr Rivera", "SPEAKER_01": "Sam"},
                              speaker_roles={"SPEAKER_00": "THERAPIST", "SPEAKER_01": "CLIENT"})
    assert has_corrections(command)
    fixed_segments, fixed_speakers = correct(segments, speakers, command)
    assert {s.role for s in fixed_segments} == {"THERAPIST", "CLIENT"}
    assert [(s.display_name, s.role) for s in fixed_speakers] == [("Dr Rivera", "THERAPIST"), ("Sam", "CLIENT")]
    notes = build_offline_notes(fixed_segments, fixed_speakers)
    assert "not identified" not in notes.therapist_notes
    assert notes.action_items, "with the therapist known, homework is attributed"


def test_third_speaker_and_swap_and_text_edits():
    segments, speakers = _session(), [SpeakerInfo(label="SPEAKER_00", role="THERAPIST"),
                                      SpeakerInfo(label="SPEAKER_01", role="CLIENT"),
                                      SpeakerInfo(label="SPEAKER_02")]
    command = NotesRegenerate(session_id=SID, swap_roles=True, speaker_roles={"SPEAKER_02": "PARENT"},
                              segment_texts={"1": "Corrected words here."})
    fixed, spk = correct(segments, speakers, command)
    assert [s.role for s in spk] == ["CLIENT", "THERAPIST", "PARENT"]
    assert fixed[0].role == "CLIENT" and fixed[1].role == "THERAPIST"
    assert fixed[1].text == "Corrected words here." and fixed[1].words == []
    assert fixed[2].text == segments[2].text
    assert not has_corrections(NotesRegenerate(session_id=SID))


def test_gateway_builds_the_command_from_the_session_row():
    row = SimpleNamespace(id=SID, speaker_names={"SPEAKER_00": "Dr Rivera"},
                          role_overrides={"__swap__": True, "SPEAKER_02": "PARENT"},
                          segment_edits={"3": {"text": "new", "original": "old", "edited_at": "x"}})
    command = regenerate_command(row, uuid.uuid4(), "offline")
    assert command.speaker_names == {"SPEAKER_00": "Dr Rivera"}
    assert command.speaker_roles == {"SPEAKER_02": "PARENT"} and command.swap_roles
    assert command.segment_texts == {"3": "new"} and command.backend == "offline"
