"""Review and sign-off of clinical notes, as pure decisions (no SQL, no HTTP):
docs/adr/0008-notes-review-and-sign-off.md.

A session's notes have versions. Version 1 is the machine's notes as generated; every
human edit (fields, or a risk flag confirmed or dismissed) makes the next version, which
records who, when and which fields changed. Edits name the version they were made on
(``base_version``): an edit on anything but the current version is stale. A signed note
is locked: nothing changes it any more, addenda are appended beside it.

Risk flags carry two extra keys in a stored version: ``flag_id`` (stable through the
edits of one machine output: ``f1``, ``f2``... in the machine's order) and ``review``
(``{"status": "unreviewed" | "confirmed" | "dismissed", "reason", "by", "by_name", "at",
"severity_before"}``). Flags are never removed: a dismissed flag stays, marked dismissed
with who, when and why, and the safety net's flags (source lexicon or both) cannot be
edited away because no edit can touch the list of flags, only their review.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import ValidationError

from shared.contracts.notes import ClinicalNotes, RiskFlag

EDITABLE_FIELDS = tuple(f for f in ClinicalNotes.model_fields if f != "risk_flags")
UNREVIEWED = "unreviewed"
CONFIRMED = "confirmed"
DISMISSED = "dismissed"
SAFETY_NET_SOURCES = ("lexicon", "both")


class ReviewConflict(Exception):
    """The request cannot apply to the notes as they are now (HTTP 409); ``code`` names why."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code, self.detail = code, detail


class ReviewInvalid(Exception):
    """The request itself is wrong whatever the notes' state (HTTP 422)."""


class FlagNotFound(Exception):
    """No flag with that id in the current version (HTTP 404)."""


@dataclass(frozen=True)
class ReviewState:
    """What the decisions need to know of a session's review row."""

    current_version: int
    signed_version: int | None = None
    signed_by_name: str | None = None
    signed_at: datetime | None = None
    accept_machine_after: int | None = None

    @property
    def signed(self) -> bool:
        return self.signed_version is not None


def digest(notes: dict) -> str:
    """A stable fingerprint of machine notes, to notice that regenerated notes arrived."""
    return hashlib.sha256(json.dumps(notes, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def machine_version(notes: dict) -> dict:
    """The machine's notes as a stored version: each flag gets its id and an open review."""
    flags = [{**flag, "flag_id": f"f{i}", "review": {"status": UNREVIEWED}}
             for i, flag in enumerate(notes.get("risk_flags") or [], 1)]
    return {**notes, "risk_flags": flags}


def machine_supersedes(state: ReviewState | None, latest_kind: str | None, latest_digest: str | None,
                       machine_digest: str | None) -> bool:
    """Whether the machine's notes as they are now become the next version.

    Never once signed. Otherwise only when they differ from the notes the latest machine
    version came from, and nobody's work is lost: the current version is the machine's
    own, or the regeneration was asked for with ``discard_edits`` on this very version.
    """
    if machine_digest is None or state is None or state.signed or machine_digest == latest_digest:
        return False
    return latest_kind == "machine" or state.accept_machine_after == state.current_version


def check_editable(state: ReviewState, base_version: int) -> None:
    """Raise ReviewConflict unless an edit made on ``base_version`` may apply now."""
    if state.signed:
        raise ReviewConflict(
            "signed", f"the notes are signed (version {state.signed_version}, by {state.signed_by_name or 'the therapist'}"
                      f"{' at ' + state.signed_at.isoformat() if state.signed_at else ''}) and locked: add an addendum instead")
    if base_version != state.current_version:
        raise ReviewConflict(
            "stale_version", f"version {base_version} is not the current version ({state.current_version}): "
                             "reload the notes and apply your change again")


def _normalised(notes: dict) -> dict:
    return ClinicalNotes.model_validate(notes).model_dump(mode="json")


def apply_edit(current: dict, edit: dict[str, Any]) -> tuple[dict, list[dict]]:
    """The next version's notes after ``edit`` (field -> new value, already validated),
    and the list of fields that really changed. Raises ReviewInvalid when ``edit`` names
    the risk flags (reviewed one by one) or changes nothing."""
    if "risk_flags" in edit:
        raise ReviewInvalid("risk flags are not edited as a field: confirm or dismiss each one "
                            "(POST .../notes/flags/{flag_id}/review)")
    unknown = sorted(set(edit) - set(EDITABLE_FIELDS))
    if unknown:
        raise ReviewInvalid(f"unknown notes fields: {', '.join(unknown)}")
    before = _normalised(current)
    try:
        after = _normalised({**before, **edit})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors(include_url=False))
        raise ReviewInvalid(f"the edited notes are not valid: {problems}") from None
    changed = [name for name in EDITABLE_FIELDS if name in edit and after[name] != before[name]]
    if not changed:
        raise ReviewInvalid("the edit changes nothing")
    updated = {**current, **{name: after[name] for name in changed}}
    return updated, [{"field": name} for name in changed]


def _find_flag(notes: dict, flag_id: str) -> int:
    for index, flag in enumerate(notes.get("risk_flags") or []):
        if flag.get("flag_id") == flag_id:
            return index
    raise FlagNotFound(flag_id)


def apply_flag_review(current: dict, flag_id: str, decision: str, reason: str, severity: str | None,
                      by: UUID, by_name: str, at: datetime) -> tuple[dict, list[dict]]:
    """The next version's notes with flag ``flag_id`` confirmed or dismissed. A dismissal
    needs a reason; a confirmation may set another severity. The flag itself stays."""
    reason = " ".join((reason or "").split())
    if decision == DISMISSED and not reason:
        raise ReviewInvalid("a dismissed risk flag needs a reason")
    if decision == DISMISSED and severity:
        raise ReviewInvalid("only a confirmed risk flag takes a severity")
    index = _find_flag(current, flag_id)
    flags = [dict(f) for f in current.get("risk_flags") or []]
    flag = flags[index]
    previous = (flag.get("review") or {}).get("status", UNREVIEWED)
    review = {"status": decision, "reason": reason, "by": str(by), "by_name": by_name, "at": at.isoformat()}
    if severity and severity != flag.get("severity"):
        review["severity_before"] = flag.get("severity")
        flag["severity"], flag["high_priority"] = severity, severity == "high"
    if previous == decision and review.get("severity_before") is None and (flag.get("review") or {}).get("reason") == reason:
        raise ReviewInvalid(f"risk flag {flag_id} is already {decision} with that reason")
    flag["review"] = review
    RiskFlag.model_validate(flag)  # still a valid flag
    flags[index] = flag
    detail = decision + (f", severity {review['severity_before']} -> {severity}" if "severity_before" in review else "")
    return {**current, "risk_flags": flags}, [{"field": "risk_flags", "flag_id": flag_id, "detail": detail}]


def unreviewed_flags(notes: dict) -> list[str]:
    """Ids of the flags nobody confirmed or dismissed yet: signing waits for them."""
    return [f.get("flag_id", "?") for f in notes.get("risk_flags") or []
            if (f.get("review") or {}).get("status", UNREVIEWED) == UNREVIEWED]


def check_signable(state: ReviewState, base_version: int, notes: dict) -> None:
    """Raise ReviewConflict unless the version the therapist read may be signed now."""
    check_editable(state, base_version)
    pending = unreviewed_flags(notes)
    if pending:
        raise ReviewConflict("flags_unreviewed", f"confirm or dismiss every risk flag before signing "
                                                 f"({len(pending)} not reviewed: {', '.join(pending)})")


def check_regenerate(state: ReviewState | None, latest_kind: str | None, discard_edits: bool) -> bool:
    """Whether a regeneration may be asked for; True when it must record ``discard_edits``
    (the current version is a human's). Raises ReviewConflict when signed, or when it would
    replace human edits without ``discard_edits``."""
    if state is None:
        return False
    if state.signed:
        raise ReviewConflict("signed", "the notes are signed and locked: regenerating them is refused; add an addendum")
    if latest_kind == "machine":
        return False
    if not discard_edits:
        raise ReviewConflict(
            "human_edits", f"version {state.current_version} holds a therapist's edits: regenerated notes would replace "
                           "them (they stay in the version history). Send {\"discard_edits\": true} to regenerate anyway")
    return True


def check_addendum(state: ReviewState | None, text: str) -> str:
    """The addendum's text, cleaned; raises ReviewConflict unless the notes are signed."""
    if state is None or not state.signed:
        raise ReviewConflict("not_signed", "addenda are for signed notes: edit the notes instead")
    text = (text or "").strip()
    if not text:
        raise ReviewInvalid("the addendum is empty")
    return text
