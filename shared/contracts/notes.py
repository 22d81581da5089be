"""The clinical-notes schema: one source of truth for the LLM's structured output,
the offline extractor, the notes.ready event, the database and the API."""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, Field


class SessionMood(str, Enum):
    very_low = "very_low"
    low = "low"
    neutral = "neutral"
    positive = "positive"
    very_positive = "very_positive"
    mixed = "mixed"


class MoodTrajectory(str, Enum):
    improving = "improving"
    declining = "declining"
    stable = "stable"
    fluctuating = "fluctuating"


class RiskCategory(str, Enum):
    suicidal_ideation = "suicidal_ideation"
    self_harm = "self_harm"
    harm_to_others = "harm_to_others"
    abuse_or_violence = "abuse_or_violence"
    substance_use = "substance_use"
    hopelessness = "hopelessness"
    other = "other"


class Severity(str, Enum):
    low = "low"
    moderate = "moderate"
    high = "high"


class FlagSource(str, Enum):
    lexicon = "lexicon"
    llm = "llm"
    both = "both"


class Strategy(BaseModel):
    name: str
    category: str = Field(description="e.g. breathing, cognitive, behavioral, mindfulness, interpersonal")
    status: str = Field(description="introduced, practiced, assigned or reviewed")
    context: str = ""


class ActionItem(BaseModel):
    task: str
    category: str = Field(description="homework, practice, reading, tracking, appointment, referral or other")
    details: str = ""
    owner: str = Field("client", description="client or therapist")


class SignificantQuote(BaseModel):
    quote: str = Field(description="Verbatim text from the transcript")
    speaker: str
    role: str | None = None
    start: float
    end: float
    why: str = ""


class RiskFlag(BaseModel):
    category: RiskCategory
    severity: Severity
    evidence: str = Field(description="Verbatim quote from the transcript")
    start: float
    end: float | None = None
    speaker: str | None = None
    role: str | None = None
    source: FlagSource
    high_priority: bool = Field(False, description="True for high severity: shown first")
    rationale: str = ""


_SEVERITY_RANK = {"high": 0, "moderate": 1, "low": 2}


def sort_flags(flags: list[RiskFlag]) -> list[RiskFlag]:
    """High severity first, then by time: what a clinician must see first. The notes
    service stores flags in this order and every export shows them in it."""
    return sorted(flags, key=lambda f: (_SEVERITY_RANK[f.severity.value], f.start, f.category.value))


class ClinicalNotes(BaseModel):
    key_topics: list[str] = Field(default_factory=list)
    topic_summary: str = ""
    strategies: list[Strategy] = Field(default_factory=list)
    emotional_themes: list[str] = Field(default_factory=list)
    triggers: list[str] = Field(default_factory=list)
    action_items: list[ActionItem] = Field(default_factory=list)
    significant_quotes: list[SignificantQuote] = Field(default_factory=list)
    session_mood: SessionMood = SessionMood.neutral
    mood_trajectory: MoodTrajectory = MoodTrajectory.stable
    follow_up_topics: list[str] = Field(default_factory=list)
    unresolved_concerns: list[str] = Field(default_factory=list)
    risk_flags: list[RiskFlag] = Field(default_factory=list)
    therapist_notes: str = ""
    patient_summary: str = ""
