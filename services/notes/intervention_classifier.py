"""Supervised intervention layer on all-MiniLM-L6-v2 embeddings (issue 14, notes round 11).

Why: the offline extractor names a session's interventions from hand-written patterns
(``offline.STRATEGIES``); each round added the shapes the last writers used, and on a new
writer it finds 0.56-0.63 of the labelled interventions. Therapists mostly SHOW a technique
rather than name it ("What would you say to a friend who...?"), so the wording varies more
than a pattern list can follow. This layer is a one-vs-rest logistic regression per
technique, trained on the therapist lines the blind sets' writers tagged, reading each
therapist turn with the turn before it (a validation or a reframe answers what was said):

- ``line``: the therapist turn itself;
- ``ask``: the previous turn (usually the client's) followed by the therapist turn.

A technique is added to the notes when one therapist turn reaches its probability
threshold (one threshold for all classes, chosen on leave-one-set-out folds, stored in the
weights file) and the patterns have not already found it; its evidence is that turn's
sentence the technique's weights score highest, verbatim. It only adds: what the patterns
find stays. Inference is numpy only; ``bench/intervention_classifier.py`` reproduces the
weights. The encoder is the risk layer's (one MiniLM per process).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.notes.risk_classifier import Encoder, embed

WEIGHTS = Path(__file__).with_name("intervention_classifier.npz")

#: Label name (the writers' vocabulary, normalised) -> (strategy name, strategy category) as
#: the pattern extractor names it, so a technique found both ways is one strategy.
STRATEGY_OF: dict[str, tuple[str, str]] = {
    "psychoeducation": ("psychoeducation", "psychoeducation"),
    "validation": ("validation", "interpersonal"),
    "safety planning": ("safety planning", "safety"),
    "problem solving": ("problem solving", "cognitive"),
    "motivational interviewing": ("motivational interviewing", "motivational"),
    "communication skills": ("communication skills", "interpersonal"),
    "means restriction": ("means restriction", "safety"),
    "behavioural activation": ("behavioral activation", "behavioral"),
    "cognitive restructuring": ("thought records / cognitive restructuring", "cognitive"),
    "sleep hygiene": ("sleep hygiene", "behavioral"),
    "family work": ("family work", "interpersonal"),
    "mindfulness/grounding": ("grounding", "mindfulness"),
    "distress tolerance": ("distress tolerance", "dbt"),
    "reframing": ("reframing", "cognitive"),
}
#: Techniques that need two or more clients in the room (as ``offline.MULTI_CLIENT_MOVES``).
MULTI_CLIENT_ONLY = {"family work"}


def normalise_label(label: str) -> str:
    """A writer's intervention label in the classes' spelling ("Safety_Planning" -> "safety planning")."""
    t = label.lower().strip().replace("_", " ").replace("behavioral", "behavioural")
    return {"grounding": "mindfulness/grounding", "mindfulness": "mindfulness/grounding",
            "mindfulness grounding": "mindfulness/grounding"}.get(t, t)


@dataclass(frozen=True)
class TherapistTurn:
    speaker: str
    therapist: bool
    text: str


def context_texts(turns: list[TherapistTurn], i: int) -> tuple[str, str]:
    """(line, ask) texts of therapist turn ``i`` (see the module docstring)."""
    prev = turns[i - 1].text if i > 0 else ""
    return turns[i].text, (prev + " " + turns[i].text).strip()


def features(encoder: Encoder, turns: list[TherapistTurn], idx: list[int]) -> np.ndarray:
    """Feature rows (line | ask embeddings) for the therapist turns ``idx``."""
    if not idx:
        return np.zeros((0, 2 * 384), dtype=np.float32)
    flat = embed(encoder, [x for i in idx for x in context_texts(turns, i)])
    return flat.reshape(len(idx), 2 * flat.shape[1])


@dataclass(frozen=True)
class InterventionHit:
    label: str  # the class, in the writers' vocabulary (a key of STRATEGY_OF)
    turn: int
    probability: float


class InterventionClassifier:
    """Loads the shipped weights (or ``weights`` arrays, for tests) and scores therapist turns."""

    def __init__(self, encoder: Encoder, path: Path | str = WEIGHTS, weights: dict[str, np.ndarray] | None = None,
                 threshold: float | None = None):
        w = dict(weights) if weights is not None else dict(np.load(str(path), allow_pickle=False))
        self.encoder = encoder
        self.classes = [str(c) for c in w["classes"]]
        self.W, self.b = w["W"].astype(np.float32), w["b"].astype(np.float32)
        self.threshold = float(w["threshold"]) if threshold is None else threshold

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """P(technique) per row and class (independent sigmoids: a turn may carry two)."""
        if x.shape[0] == 0:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        return 1.0 / (1.0 + np.exp(-(x @ self.W.T + self.b)))

    def detect(self, turns: list[TherapistTurn], several_clients: bool) -> list[InterventionHit]:
        """The best turn of every technique at or above the threshold, in session order."""
        idx = [i for i, t in enumerate(turns) if t.therapist and t.text.strip()]
        p = self.probabilities(features(self.encoder, turns, idx))
        hits = []
        for j, label in enumerate(self.classes):
            if p.shape[0] == 0 or (label in MULTI_CLIENT_ONLY and not several_clients):
                continue
            k = int(np.argmax(p[:, j]))
            if p[k, j] >= self.threshold:
                hits.append(InterventionHit(label, idx[k], float(p[k, j])))
        return sorted(hits, key=lambda h: (h.turn, h.label))

    def best_sentence(self, label: str, sentences: list[str]) -> int:
        """Index of the sentence that alone carries ``label`` most (its line-block logit): the
        evidence quote of a turn-level hit."""
        j = self.classes.index(label)
        emb = embed(self.encoder, sentences)
        return int(np.argmax(emb @ self.W[j, : emb.shape[1]]))
