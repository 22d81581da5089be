"""Voice-enrolment samples for tests and the calibration bench (issue 14 item 4): one
espeak-ng voice reading sentences that never occur in the generated sessions (the
Rainbow Passage, a public-domain text used for voice recordings, and a few more), so an
enrolment is matched on the voice, not on repeated audio."""

from __future__ import annotations

from pathlib import Path

from tests.audio_gen import GeneratedDialogue, generate_dialogue

ENROLMENT_SENTENCES = [
    "When the sunlight strikes raindrops in the air, they act as a prism and form a rainbow.",
    "The rainbow is a division of white light into many beautiful colors.",
    "These take the shape of a long round arch, with its path high above, and its two ends apparently beyond the horizon.",
    "There is, according to legend, a boiling pot of gold at one end.",
    "People look, but no one ever finds it.",
    "When a man looks for something beyond his reach, his friends say he is looking for the pot of gold at the end of the rainbow.",
    "Throughout the centuries people have explained the rainbow in various ways.",
    "Some have accepted it as a miracle without physical explanation.",
    "To the Hebrews it was a token that there would be no more universal floods.",
    "The Greeks used to imagine that it was a sign from the gods to foretell war or heavy rain.",
    "The Norsemen considered the rainbow as a bridge over which the gods passed from earth to their home in the sky.",
    "Others have tried to explain the phenomenon physically.",
    "Aristotle thought that the rainbow was caused by reflection of the sun's rays by the rain.",
    "Since then physicists have found that it is not reflection, but refraction by the raindrops which causes the rainbows.",
    "The north wind and the sun were disputing which was the stronger, when a traveller came along wrapped in a warm cloak.",
    "They agreed that the one who first succeeded in making the traveller take his cloak off should be considered stronger.",
]


def enrolment_sample(voice: tuple[str, int, int], min_s: float = 28.0, out_dir: Path | str | None = None,
                     sentences: list[str] | None = None) -> GeneratedDialogue:
    """At least ``min_s`` seconds of ``voice`` reading the enrolment sentences (cycled)."""
    bank = sentences or ENROLMENT_SENTENCES
    n = 6
    while True:
        lines = [("therapist", bank[i % len(bank)]) for i in range(n)]
        gen = generate_dialogue(lines, out_dir=out_dir, voices={"therapist": voice}, gap_s=0.5, seed=11,
                                uri="enrolment")
        if gen.duration_s >= min_s or n > 4 * len(bank):
            return gen
        n += 3
