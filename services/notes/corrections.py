"""The therapist's corrections applied to a merged transcript before notes are written
again (notes.regenerate carries them): speaker names and roles, and edited segment
texts. Pure: no I/O."""

from __future__ import annotations

from shared.contracts.events import MergedSegment, NotesRegenerate, SpeakerInfo

SWAP = {"THERAPIST": "CLIENT", "CLIENT": "THERAPIST"}


def has_corrections(command: NotesRegenerate) -> bool:
    return bool(command.speaker_names or command.speaker_roles or command.swap_roles or command.segment_texts)


def role_map(speakers: list[SpeakerInfo], command: NotesRegenerate) -> dict[str, str | None]:
    roles = {s.label: s.role for s in speakers}
    if command.swap_roles:
        roles = {k: SWAP.get(v, v) if v else v for k, v in roles.items()}
    roles.update(command.speaker_roles)
    return roles


def correct(segments: list[MergedSegment], speakers: list[SpeakerInfo],
            command: NotesRegenerate) -> tuple[list[MergedSegment], list[SpeakerInfo]]:
    """Segments and speakers as the therapist corrected them."""
    roles = role_map(speakers, command)
    new_speakers = [s.model_copy(update={"role": roles.get(s.label),
                                         "display_name": command.speaker_names.get(s.label, s.display_name)})
                    for s in speakers]
    new_segments = []
    for i, seg in enumerate(segments):
        update: dict = {"role": roles.get(seg.speaker, seg.role)}
        if str(i) in command.segment_texts:
            update.update(text=command.segment_texts[str(i)], words=[])
        new_segments.append(seg.model_copy(update=update))
    return new_segments, new_speakers
