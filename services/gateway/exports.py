"""Transcript exports for the gateway: TXT, JSON, SRT, WebVTT, RTTM and DOCX.

Pure functions over plain data so the API layer only fetches rows and picks a renderer.
Segments may be MergedSegment models or the equivalent dicts (what the DB/JSON gives
back); speakers may be SpeakerInfo models, dicts, or a mapping label -> either. A small
adapter (``_Seg`` / ``_speaker_names``) hides the difference.

Speaker naming, everywhere: the clinician-set display_name, else the inferred role
(THERAPIST/CLIENT), else the raw label (SPEAKER_00, Unknown).

Subtitle cues are kept short enough to read (at most ``max_cue_s`` seconds and
``max_cue_chars`` characters: two 42-character lines, the usual broadcast limit), split at
word boundaries using word timings. A segment without word timings is split at spaces
with times interpolated by character position, which is approximate but keeps cues
readable rather than showing 30 s of text at once.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import docx
from docx.enum.text import WD_COLOR_INDEX
from docx.shared import RGBColor

from services.gateway import rttm as _rttm
from services.gateway.notes_render import is_high
from shared.contracts.notes import ClinicalNotes, RiskFlag
from shared.contracts.notes import sort_flags

__all__ = ["to_txt", "to_json", "to_srt", "to_vtt", "to_rttm", "to_docx", "fmt_clock", "fmt_srt_time", "fmt_vtt_time"]

MAX_CUE_S = 7.0
MAX_CUE_CHARS = 84


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


@dataclass(frozen=True, slots=True)
class _Word:
    start: float
    end: float
    word: str
    p: float | None = None
    speaker: str | None = None


@dataclass(frozen=True, slots=True)
class _Seg:
    start: float
    end: float
    speaker: str
    role: str | None
    text: str
    words: tuple[_Word, ...] = field(default_factory=tuple)

    @classmethod
    def of(cls, obj: Any) -> _Seg:
        """Adapter: a MergedSegment model or its dict form."""
        words = tuple(
            _Word(
                float(_get(w, "start", 0.0)),
                float(_get(w, "end", 0.0)),
                str(_get(w, "word", "")),
                _get(w, "p"),
                _get(w, "speaker"),
            )
            for w in (_get(obj, "words") or ())
        )
        return cls(
            start=float(_get(obj, "start", 0.0)),
            end=float(_get(obj, "end", 0.0)),
            speaker=str(_get(obj, "speaker") or "Unknown"),
            role=_get(obj, "role"),
            text=str(_get(obj, "text") or ""),
            words=words,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "end": self.end,
            "speaker": self.speaker,
            "role": self.role,
            "text": self.text,
            "words": [
                {"start": w.start, "end": w.end, "word": w.word, "p": w.p, "speaker": w.speaker or self.speaker}
                for w in self.words
            ],
        }


def _speaker_list(speakers: Any) -> list[Any]:
    if speakers is None:
        return []
    if isinstance(speakers, Mapping):
        out = []
        for label, info in speakers.items():
            if isinstance(info, Mapping):
                out.append(info if info.get("label") else {**info, "label": label})
            elif hasattr(info, "label"):
                out.append(info)
            else:  # label -> display string
                out.append({"label": label, "display_name": info})
        return out
    return list(speakers)


def _speaker_names(speakers: Any) -> dict[str, str]:
    names: dict[str, str] = {}
    for info in _speaker_list(speakers):
        label = _get(info, "label")
        if label is None:
            continue
        names[str(label)] = _get(info, "display_name") or _get(info, "role") or str(label)
    return names


def _name(seg: _Seg, names: Mapping[str, str]) -> str:
    return names.get(seg.speaker) or seg.role or seg.speaker


def _segments(segments: Iterable[Any]) -> list[_Seg]:
    return [_Seg.of(s) for s in segments]


# --- time formats ------------------------------------------------------------------------
def _hmsm(t: float) -> tuple[int, int, int, int]:
    ms = max(0, int(round(float(t) * 1000)))
    return ms // 3_600_000, ms // 60_000 % 60, ms // 1000 % 60, ms % 1000


def fmt_clock(t: float) -> str:
    """00:01:02 (hours always present; seconds truncated, like a player's clock)."""
    s = max(0, int(float(t) + 1e-6))
    return f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}"


def fmt_srt_time(t: float) -> str:
    h, m, s, ms = _hmsm(t)
    return f"{h:02d}:{m:02d}:{s:02d},{ms:03d}"


def fmt_vtt_time(t: float) -> str:
    h, m, s, ms = _hmsm(t)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


# --- renderers ---------------------------------------------------------------------------
def to_txt(segments: Iterable[Any], speakers: Any = None) -> str:
    """One line per segment: ``[00:01:02] THERAPIST: text``."""
    names = _speaker_names(speakers)
    lines = [f"[{fmt_clock(s.start)}] {_name(s, names)}: {s.text.strip()}" for s in _segments(segments) if s.text.strip()]
    return "\n".join(lines) + ("\n" if lines else "")


def to_json(segments: Iterable[Any], speakers: Any = None, **meta: Any) -> str:
    """The transcript as JSON: ``meta`` (session_id, language, ...) plus speakers and segments.

    Each segment carries the resolved ``speaker_name`` so consumers need no lookup.
    """
    names = _speaker_names(speakers)
    speaker_rows = []
    for info in _speaker_list(speakers):
        row = info.model_dump() if hasattr(info, "model_dump") else dict(info)
        speaker_rows.append(row)
    segs = _segments(segments)
    doc = {
        **{k: (str(v) if not isinstance(v, (str, int, float, bool, type(None), list, dict)) else v) for k, v in meta.items()},
        "speakers": speaker_rows,
        "segments": [{**s.as_dict(), "speaker_name": _name(s, names)} for s in segs],
    }
    return json.dumps(doc, ensure_ascii=False, indent=2)


@dataclass(frozen=True, slots=True)
class _Cue:
    start: float
    end: float
    speaker: str
    text: str


def _synthetic_words(seg: _Seg) -> list[_Word]:
    """Whitespace tokens of a word-less segment, timed by character position."""
    text = seg.text.strip()
    if not text:
        return []
    dur = max(0.0, seg.end - seg.start)
    out: list[_Word] = []
    pos = 0
    for i, tok in enumerate(text.split()):
        begin = text.index(tok, pos)
        pos = begin + len(tok)
        out.append(
            _Word(
                seg.start + dur * begin / len(text),
                seg.start + dur * pos / len(text),
                tok if i == 0 else " " + tok,
            )
        )
    return out


def _cues(segments: Iterable[Any], speakers: Any, max_cue_s: float, max_cue_chars: int) -> list[_Cue]:
    names = _speaker_names(speakers)
    cues: list[_Cue] = []
    for seg in _segments(segments):
        text = seg.text.strip()
        if not text:
            continue
        name = _name(seg, names)
        if seg.end - seg.start <= max_cue_s and len(text) <= max_cue_chars:
            cues.append(_Cue(seg.start, max(seg.end, seg.start), name, text))
            continue
        words = list(seg.words) or _synthetic_words(seg)
        group: list[_Word] = []
        for w in words:
            if group:
                candidate = "".join(x.word for x in group + [w]).strip()
                if w.end - group[0].start > max_cue_s or len(candidate) > max_cue_chars:
                    cues.append(_cue_of(group, name))
                    group = []
            group.append(w)
        if group:
            cues.append(_cue_of(group, name))
    # Players need non-decreasing starts; keep every cue's end at or after its start.
    fixed: list[_Cue] = []
    last_start = 0.0
    for c in cues:
        start = max(c.start, last_start)
        fixed.append(_Cue(start, max(c.end, start), c.speaker, c.text))
        last_start = start
    return fixed


def _cue_of(words: Sequence[_Word], name: str) -> _Cue:
    return _Cue(words[0].start, max(words[-1].end, words[0].start), name, "".join(w.word for w in words).strip())


def to_srt(
    segments: Iterable[Any], speakers: Any = None, max_cue_s: float = MAX_CUE_S, max_cue_chars: int = MAX_CUE_CHARS
) -> str:
    """SubRip: numbered cues, ``00:00:01,000 --> 00:00:02,500``, text ``THERAPIST: ...``."""
    blocks = [
        f"{i}\n{fmt_srt_time(c.start)} --> {fmt_srt_time(c.end)}\n{c.speaker}: {c.text}"
        for i, c in enumerate(_cues(segments, speakers, max_cue_s, max_cue_chars), start=1)
    ]
    return "\n\n".join(blocks) + ("\n" if blocks else "")


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _vtt_voice(name: str) -> str:
    # The voice annotation runs to the closing '>', so it must not contain one.
    return _vtt_escape(name).replace("\n", " ")


def to_vtt(
    segments: Iterable[Any], speakers: Any = None, max_cue_s: float = MAX_CUE_S, max_cue_chars: int = MAX_CUE_CHARS
) -> str:
    """WebVTT: ``WEBVTT`` header, ``00:00:01.000 --> 00:00:02.500`` cues with ``<v THERAPIST>`` tags."""
    blocks = ["WEBVTT"]
    for i, c in enumerate(_cues(segments, speakers, max_cue_s, max_cue_chars), start=1):
        blocks.append(
            f"{i}\n{fmt_vtt_time(c.start)} --> {fmt_vtt_time(c.end)}\n<v {_vtt_voice(c.speaker)}>{_vtt_escape(c.text)}</v>"
        )
    return "\n\n".join(blocks) + "\n"


def to_rttm(turns: Iterable[Any], uri: str) -> str:
    """Diarization turns (SpeakerTurn models or dicts) as RTTM, via services.gateway.rttm."""
    return _rttm.to_rttm(
        [_rttm.Turn(float(_get(t, "start")), float(_get(t, "end")), str(_get(t, "speaker"))) for t in turns], uri
    )


# --- DOCX --------------------------------------------------------------------------------
# XML 1.0 forbids most control characters; python-docx raises on them, so drop them.
_XML_INVALID = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_HIGH_RED = RGBColor(0xC0, 0x00, 0x00)


def _x(text: Any) -> str:
    return _XML_INVALID.sub("", str(text or ""))


def _docx_flag(document: Any, flag: RiskFlag, names: Mapping[str, str]) -> None:
    p = document.add_paragraph(style="List Bullet")
    if is_high(flag):
        run = p.add_run("HIGH PRIORITY ")
        run.bold = True
        run.font.color.rgb = _HIGH_RED
        run.font.highlight_color = WD_COLOR_INDEX.YELLOW
    p.add_run(flag.category.value.replace("_", " ")).bold = True
    who = names.get(flag.speaker or "") or flag.role or flag.speaker
    p.add_run(f" — severity {flag.severity.value} at {fmt_clock(flag.start)}" + (f", {_x(who)}" if who else "") + ": ")
    p.add_run(f"\u201c{_x(flag.evidence)}\u201d").italic = True
    p.add_run(f" (source: {flag.source.value})")
    if flag.rationale:
        p.add_run(f" {_x(flag.rationale)}")


def _docx_list(document: Any, title: str, items: Iterable[str]) -> None:
    items = [_x(i) for i in items if str(i or "").strip()]
    if not items:
        return
    document.add_heading(title, level=2)
    for item in items:
        document.add_paragraph(item, style="List Bullet")


def _docx_notes(document: Any, notes: ClinicalNotes, names: Mapping[str, str]) -> None:
    flags = sort_flags(notes.risk_flags)
    high = sum(1 for f in flags if is_high(f))
    document.add_heading(f"Risk flags — review first ({len(flags)} flag(s), {high} high priority)", level=2)
    if not flags:
        document.add_paragraph("No risk flags were raised. (Absence of flags is not a risk assessment.)")
    elif high:
        warn = document.add_paragraph().add_run("High-priority risk content was detected in this session. "
                                                "Review before anything else.")
        warn.bold = True
        warn.font.color.rgb = _HIGH_RED
    for flag in flags:
        _docx_flag(document, flag, names)
    if notes.topic_summary.strip():
        document.add_heading("Summary", level=2)
        document.add_paragraph(_x(notes.topic_summary))
    document.add_heading("Mood", level=2)
    document.add_paragraph(f"Session mood: {notes.session_mood.value.replace('_', ' ')}; "
                           f"trajectory: {notes.mood_trajectory.value}.")
    _docx_list(document, "Key topics", notes.key_topics)
    _docx_list(document, "Emotional themes", notes.emotional_themes)
    _docx_list(document, "Triggers", notes.triggers)
    _docx_list(document, "Strategies", (f"{s.name} ({s.category}; {s.status})" for s in notes.strategies))
    _docx_list(document, "Action items", (f"{a.task} ({a.category}, owner: {a.owner})" for a in notes.action_items))
    _docx_list(document, "Significant quotes",
               (f"{fmt_clock(q.start)} {names.get(q.speaker) or q.role or q.speaker}: \u201c{q.quote}\u201d"
                for q in notes.significant_quotes))
    _docx_list(document, "Unresolved concerns", notes.unresolved_concerns)
    _docx_list(document, "Follow up next session", notes.follow_up_topics)
    if notes.therapist_notes.strip():
        document.add_heading("Therapist notes", level=2)
        document.add_paragraph(_x(notes.therapist_notes))


def to_docx(notes: dict | None, segments: list[dict], speakers: list[dict], meta: dict) -> bytes:
    """A Word document: session details, then the clinical notes (risk flags first, high
    severity marked HIGH PRIORITY in red), then the speaker-labelled transcript.

    ``notes`` is a ClinicalNotes dict or None; ``meta`` may carry session_id, session_date,
    duration_s, language and engine (missing keys are left out).
    """
    names = _speaker_names(speakers)
    document = docx.Document()
    document.core_properties.title = "Session notes and transcript"
    document.add_heading("Session notes and transcript", level=0)
    when = meta.get("session_date")
    if isinstance(when, datetime):
        when = when.strftime("%Y-%m-%d %H:%M")
    details = [("Session", meta.get("session_id")), ("Date", when),
               ("Duration", fmt_clock(meta["duration_s"]) if meta.get("duration_s") is not None else None),
               ("Language", meta.get("language")), ("Notes generated by", meta.get("engine"))]
    for label, value in details:
        if value is not None and str(value).strip():
            p = document.add_paragraph()
            p.add_run(f"{label}: ").bold = True
            p.add_run(_x(value))

    document.add_heading("Clinical notes", level=1)
    if notes:
        _docx_notes(document, ClinicalNotes.model_validate(notes), names)
    else:
        document.add_paragraph("No notes for this session yet.")

    document.add_heading("Transcript", level=1)
    lines = [s for s in _segments(segments or ()) if s.text.strip()]
    if not lines:
        document.add_paragraph("No transcript for this session yet.")
    for seg in lines:
        p = document.add_paragraph()
        stamp = p.add_run(f"[{fmt_clock(seg.start)}] ")
        stamp.font.color.rgb = RGBColor(0x70, 0x70, 0x70)
        p.add_run(f"{_x(_name(seg, names))}: ").bold = True
        p.add_run(_x(seg.text.strip()))

    out = io.BytesIO()
    document.save(out)
    return out.getvalue()
