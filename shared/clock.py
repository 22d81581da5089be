"""The one way a time offset is written for people: 12:34, or 1:02:03 past an hour, seconds
floored (never rounded up), so a flag at 62.7 s reads 01:02 in the notes, the CLI, the
quality warnings and the web page (its clock() in app.js does the same; a test compares)."""

from __future__ import annotations

import math


def clock(seconds: float | None) -> str:
    """12:34 or 1:02:03 (minutes always two digits); "--:--" for a missing or non-finite value."""
    if seconds is None:
        return "--:--"
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        return "--:--"
    if math.isnan(value) or math.isinf(value):
        return "--:--"
    t = max(0, math.floor(value))
    h, rem = divmod(t, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"
