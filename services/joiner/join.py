"""Builds the speaker-labelled transcript from the two halves. Plain domain code:
takes the transcript.ready and (optional) diarization.ready payloads and returns a
transcript.merged event; no Kafka, no DB."""

from __future__ import annotations

from uuid import UUID

from shared.contracts.events import DiarizationReady, TranscriptMerged, TranscriptReady, TranscriptSegment
from services.joiner.merge import full_text, merge_transcript
from services.joiner.quality import QualityInput, QualityThresholds, check_transcript
from services.joiner.roles import apply_roles, display_names, infer_roles, speaker_infos

UNKNOWN = "Unknown"


def degraded_warning(reason: str) -> str:
    return f"Speaker identification unavailable ({reason}); the transcript is shown without speaker labels."


def build_merged(
    session_id: UUID,
    transcript: TranscriptReady,
    segments: list[TranscriptSegment],
    diarization: DiarizationReady | None,
    version: int,
    warnings: list[str],
    tolerance_s: float = 0.5,
    quality: QualityThresholds | None = None,
) -> TranscriptMerged:
    turns = diarization.turns if diarization is not None else None
    merged = merge_transcript(segments, turns, tolerance_s=tolerance_s)
    diarized = bool(turns)
    if diarized:
        enrolled = diarization.therapist_match
        roles = infer_roles(merged, enrolled=enrolled)
        merged = apply_roles(merged, roles)
        speakers = speaker_infos(merged, roles, display_names(enrolled, list(roles)))
    else:
        roles = {}
        speakers = speaker_infos(merged, {UNKNOWN: (None, 0.5)}) if merged else []
    role_of = {label: role for label, (role, _conf) in roles.items()}
    checks = QualityInput(
        segments=segments, merged=merged if diarized else None, turns=turns, duration_s=transcript.duration_s,
        language=transcript.language, language_probability=transcript.language_probability,
        requested_language=transcript.requested_language)
    return TranscriptMerged(
        session_id=session_id,
        version=version,
        language=transcript.language,
        duration_s=transcript.duration_s,
        segments=merged,
        speakers=speakers,
        diarized=diarized,
        full_text=full_text(merged, role_of),
        warnings=warnings,
        quality_warnings=check_transcript(checks, quality or QualityThresholds()),
        notes_backend=transcript.notes_backend,
    )
