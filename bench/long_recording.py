"""The long recordings of the fan-out benchmark, built from real audio in tests/data (AMI
excerpts) and generated espeak-ng dialogues (tests/audio_gen.py), cached under
var/bench-cache (never committed: a 2-hour 16 kHz WAV is 230 MB)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.common import DATA, ROOT

CACHE = ROOT / "var" / "bench-cache"
DIALOGUE_MINUTES = 8  # longer than the one-piece limit (5 min): these go the chunked path
DIALOGUE_SEEDS = (101, 102, 103)  # the 2-hour file repeats these (espeak-ng is slow on a busy box)


def dialogue(seed: int, minutes: float = DIALOGUE_MINUTES):
    """A generated two-speaker session with its exact reference text (cached by seed)."""
    from tests.audio_gen import generate_dialogue, long_session

    out = CACHE / f"dialogue_{minutes:g}min_s{seed}"
    return generate_dialogue(long_session(minutes, 2, seed=seed), out_dir=out, seed=seed, uri=f"dlg{seed}")


def _ami_block(seconds: float, start: int):
    """``seconds`` of AMI excerpts (30 s clips) one after another, starting at clip ``start``."""
    import numpy as np
    import soundfile as sf

    clips = sorted((DATA / "ami_train").glob("*.wav")) + sorted(DATA.glob("ami_dev*.wav"))
    parts, have, k = [], 0, start
    while have < seconds * 16000:
        audio, sr = sf.read(clips[k % len(clips)], dtype="float32", always_2d=True)
        assert sr == 16000
        parts.append(audio.mean(axis=1))
        have += parts[-1].size
        k += 1
    return np.concatenate(parts)[: int(seconds * 16000)]


def long_recording(hours: float = 2.0) -> tuple[Path, dict]:
    """A ``hours``-long 16 kHz mono WAV: generated dialogues (seeds 101, 102, ...) each
    followed by 2 minutes of AMI meeting excerpts, until long enough. Returns the path
    and a description (parts, the generated parts' reference text)."""
    import numpy as np
    import soundfile as sf

    path = CACHE / f"long_{hours:g}h.wav"
    meta_path = path.with_suffix(".json")
    if path.exists() and meta_path.exists():
        return path, json.loads(meta_path.read_text())
    CACHE.mkdir(parents=True, exist_ok=True)
    want = int(hours * 3600 * 16000)
    have, k, parts = 0, 0, []
    with sf.SoundFile(path, "w", samplerate=16000, channels=1, subtype="PCM_16") as out:
        while have < want:
            seed = DIALOGUE_SEEDS[k % len(DIALOGUE_SEEDS)]
            gen = dialogue(seed)
            for name, audio in ((f"dialogue s{seed}", gen.load_audio()), ("ami", _ami_block(120, k * 4))):
                audio = audio[: want - have].astype(np.float32)
                out.write(audio)
                parts.append({"part": name, "start_s": round(have / 16000, 2), "seconds": round(audio.size / 16000, 2)})
                have += audio.size
            k += 1
    meta = {"hours": hours, "parts": parts,
            "made_of": f"generated espeak-ng dialogues of {DIALOGUE_MINUTES} min (seeds {DIALOGUE_SEEDS}, repeated) "
                       "each followed by 2 min of AMI excerpts (tests/data/ami_train, ami_dev)"}
    meta_path.write_text(json.dumps(meta, indent=1))
    return path, meta


if __name__ == "__main__":
    print(long_recording())
