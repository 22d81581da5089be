"""Pure formatting for the command-line client: clock times, durations, local dates, the
pipeline's stages in order, plain-text tables. No I/O, so each is unit-tested.

``clock`` (shared/clock.py, re-exported here) is the one way seconds become text (durations,
flag times, speaker talk time): it floors, like the web page's ``clock()`` and the notes, so a
flag at 62.7 s is 01:02 in every view."""

from __future__ import annotations

import math
from datetime import datetime, time, timedelta, timezone, tzinfo
from typing import Any, Iterable, Sequence

from shared.clock import clock  # noqa: F401  (re-exported: the CLI and its tests use cli_format.clock)

# The pipeline: upload, then transcription and diarization side by side, then the merge
# ("join" in the status messages), then the notes. Stages the server adds later are shown
# after these, in the order it sent them.
STAGE_ORDER = ("upload", "preprocessing", "transcription", "diarization", "join", "merge", "notes")
STAGE_LABELS = {"join": "merge"}
PARALLEL = {("transcription", "diarization")}
TERMINAL = ("processed", "failed")


def eta(seconds: float | None) -> str:
    """``about 15 s left`` / ``about 3 min left``, as on the web page; '' when unknown."""
    if seconds is None:
        return ""
    if seconds < 60:
        return f"about {max(1, round(seconds))} s left"
    return f"about {round(seconds / 60)} min left"


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 string from the API (naive values are taken as UTC)."""
    if not value or not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def local_time(value: Any, utc: bool = False, tz: tzinfo | None = None) -> str:
    """``2026-11-30 14:05`` in the user's time zone (``tz``, else the system's), or in UTC."""
    parsed = parse_time(value)
    if parsed is None:
        return "-"
    shown = parsed.astimezone(timezone.utc if utc else tz)
    return shown.strftime("%Y-%m-%d %H:%M")


def session_day(value: Any, utc: bool = False, tz: tzinfo | None = None) -> str:
    """The day of a session: a date given without a time (stored as midnight UTC) is that
    day everywhere; a date with a time is the day in the user's zone."""
    parsed = parse_time(value)
    if parsed is None:
        return "-"
    if parsed.utcoffset() == timedelta(0) and parsed.time() == time(0):
        return parsed.date().isoformat()
    return local_time(value, utc, tz)[:10]


def zone_name(utc: bool = False, tz: tzinfo | None = None) -> str:
    """The name of the zone local_time() shows (``UTC``, ``CET``, ``+0530``...)."""
    if utc:
        return "UTC"
    now = datetime.now(timezone.utc).astimezone(tz)
    return now.tzname() or now.strftime("%z")


def stage_label(name: str) -> str:
    return STAGE_LABELS.get(name, name)


def ordered_stages(stages: dict[str, Any] | None) -> list[tuple[str, dict]]:
    """The stages in pipeline order, whatever order the JSON object arrived in (PostgreSQL's
    jsonb sorts keys by length, which put notes before transcription)."""
    items = list((stages or {}).items())
    rank = {name: i for i, name in enumerate(STAGE_ORDER)}
    return sorted(items, key=lambda kv: (rank.get(kv[0], len(STAGE_ORDER)), items.index(kv)))


def stage_state(stage: dict) -> str:
    state = stage.get("state") or "?"
    if state == "running" and stage.get("fraction"):
        return f"running {math.floor(100 * float(stage['fraction']))}%"
    return state


def pipeline_line(stages: dict[str, Any] | None) -> str:
    """``upload done → transcription running 40% ‖ diarization done → merge pending → notes pending``."""
    parts: list[str] = []
    previous = None
    for name, stage in ordered_stages(stages):
        if parts:
            parts.append(" ‖ " if (previous, name) in PARALLEL else " → ")
        parts.append(f"{stage_label(name)} {stage_state(stage)}")
        previous = name
    return "".join(parts)


def status_text(status: str | None, progress: Any) -> str:
    status = status or "?"
    if status in TERMINAL:
        return status
    try:
        return f"{status} {int(progress)}%"
    except (TypeError, ValueError):
        return status


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Left-aligned columns separated by two spaces, with a header row; the last column
    is not padded. Always printed, even for no rows, so a script sees the columns."""
    body = [["" if cell is None else str(cell) for cell in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        padded = [c.ljust(w) if i < len(cells) - 1 else c for i, (c, w) in enumerate(zip(cells, widths))]
        return "  ".join(padded).rstrip()

    return "\n".join([line(list(headers))] + [line(r) for r in body])


def session_rows(items: list[dict], patients: dict[str, str], utc: bool = False,
                 tz: tzinfo | None = None) -> list[list[str]]:
    """One row per session for ``list``: id, session date, uploaded, patient, duration,
    status, file."""
    rows = []
    for s in items:
        patient = s.get("patient_name") or patients.get(str(s.get("patient_id"))) or (
            "?" if s.get("patient_id") else "-")
        rows.append([str(s.get("id")), session_day(s.get("session_date"), utc, tz),
                     local_time(s.get("created_at"), utc, tz), patient, clock(s.get("duration_seconds")),
                     status_text(s.get("status"), s.get("progress")), s.get("audio_filename") or "-"])
    return rows


LIST_HEADERS = ("ID", "SESSION DATE", "UPLOADED", "PATIENT", "DURATION", "STATUS", "FILE")


def flag_line(flag: dict) -> str:
    """``03:12  high  self harm  CLIENT: "evidence"`` (the same time as the web page and SOAP)."""
    who = flag.get("role") or flag.get("speaker") or ""
    category = str(flag.get("category") or "?").replace("_", " ")
    priority = " HIGH PRIORITY" if flag.get("high_priority") else ""
    evidence = " ".join(str(flag.get("evidence") or "").split())
    return f"{clock(flag.get('start'))}  {flag.get('severity') or '?'}{priority}  {category}" + (
        f"  {who}" if who else "") + (f': "{evidence}"' if evidence else "")
