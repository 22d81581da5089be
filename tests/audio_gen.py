"""Synthetic test dialogues: espeak-ng voices placed at known times, with exact references.

Why synthetic audio: real therapy recordings cannot ship in a repository, and the few
public diarization excerpts are 30 s long. A dialogue synthesised line by line gives
recordings of any length with a *known* ground truth: who speaks when (for DER) and what
is said (for WER), so transcription, diarization and the joiner can be tested end to end.

Each speaker gets a clearly different espeak-ng voice (language variant, voice variant,
pitch and speed) so a speaker-embedding model can tell them apart, like distinct people.
Lines are concatenated at 16 kHz mono with a known gap between them; leading/trailing
silence of each synthesised line is trimmed so the reference turns are tight. A faint,
seeded noise floor is added so the silence is not digitally perfect (a VAD that only works
on exact zeros would otherwise pass).

Results are cached by content hash (script, voices, gap, seed, generator version) in the
output directory, so repeated test runs only pay for synthesis once.

Only the standard library, numpy and scipy are used, plus the ``espeak-ng`` binary.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16_000
GENERATOR_VERSION = 4
DEFAULT_CACHE_DIR = Path(os.environ.get("TB_AUDIO_CACHE", "/tmp/tb-audio-cache"))

# Distinct voices: (espeak voice spec, pitch 0-99, speed wpm). Chosen by ear and by the
# resemblyzer similarity between them (all pairs clearly apart): male US low-pitched,
# female British high-pitched, male Scottish mid-pitched and fast, female US variant, ...
VOICE_PALETTE: list[tuple[str, int, int]] = [
    ("en-us+m3", 35, 160),
    ("en-gb+f4", 75, 150),
    ("en-gb-scotland+m7", 55, 175),
    ("en-us+f2", 60, 140),
    ("en-gb-x-rp+m1", 20, 155),
    ("en-029+f3", 85, 165),
]

# Default speaker names used by long_session(); the first is the therapist.
SESSION_SPEAKERS = ["therapist", "client", "partner", "parent", "sibling", "friend"]


@dataclass
class RefLine:
    speaker: str
    text: str
    start: float
    end: float


@dataclass
class GeneratedDialogue:
    wav: Path
    duration_s: float
    turns: list[tuple[float, float, str]]
    lines: list[RefLine]
    reference_text: str
    rttm: str
    uri: str = "generated"
    voices: dict[str, tuple[str, int, int]] = field(default_factory=dict)

    def load_audio(self) -> np.ndarray:
        """The dialogue as float32 mono 16 kHz samples in [-1, 1]."""
        return read_wav(self.wav)


# --------------------------------------------------------------------------- WAV I/O
def read_wav(path: Path | str) -> np.ndarray:
    """Read a PCM or IEEE-float WAV (mono or mixed down) as float32 16 kHz."""
    from scipy.io import wavfile

    rate, x = wavfile.read(str(path))
    if x.dtype == np.int16:
        x = x.astype(np.float32) / 32768.0
    elif x.dtype == np.int32:
        x = x.astype(np.float32) / 2147483648.0
    elif x.dtype == np.uint8:
        x = (x.astype(np.float32) - 128.0) / 128.0
    else:
        x = x.astype(np.float32)
    if x.ndim > 1:
        x = x.mean(axis=1)
    if rate != SAMPLE_RATE:
        x = _resample(x, rate, SAMPLE_RATE)
    return np.ascontiguousarray(x, dtype=np.float32)


def write_wav(path: Path | str, audio: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    pcm = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0)
    pcm = (pcm * 32767.0).astype("<i2")
    tmp = Path(str(path) + ".part")
    with wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    tmp.replace(path)  # atomic: a concurrent test never sees a half-written file


def _resample(x: np.ndarray, src: int, dst: int) -> np.ndarray:
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(src, dst)
    return resample_poly(x, dst // g, src // g).astype(np.float32)


# --------------------------------------------------------------------------- synthesis
def _espeak_bin() -> str:
    exe = shutil.which("espeak-ng") or shutil.which("espeak")
    if not exe:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
    return exe


def synthesize(text: str, voice: tuple[str, int, int]) -> np.ndarray:
    """One line of speech as float32 16 kHz, leading/trailing silence trimmed."""
    spec, pitch, speed = voice
    with tempfile.TemporaryDirectory() as td:
        out = Path(td) / "line.wav"
        subprocess.run(
            [_espeak_bin(), "-v", spec, "-p", str(pitch), "-s", str(speed), "-w", str(out), text],
            check=True,
            capture_output=True,
        )
        x = read_wav(out)
    return _trim(x)


def _trim(x: np.ndarray, frame: int = 160, rel_db: float = -40.0) -> np.ndarray:
    """Cut silence at both ends (frames 40 dB below the line's peak frame energy)."""
    n = len(x) // frame
    if n == 0:
        return x
    energy = (x[: n * frame].reshape(n, frame) ** 2).mean(axis=1) + 1e-12
    db = 10 * np.log10(energy)
    voiced = np.flatnonzero(db > db.max() + rel_db)
    if voiced.size == 0:
        return x
    return x[voiced[0] * frame : (voiced[-1] + 1) * frame]


def default_voices(speakers: list[str]) -> dict[str, tuple[str, int, int]]:
    """Assign palette voices to speakers in order of first appearance."""
    out: dict[str, tuple[str, int, int]] = {}
    for spk in speakers:
        if spk not in out:
            out[spk] = VOICE_PALETTE[len(out) % len(VOICE_PALETTE)]
    return out


def _voice_tuple(v) -> tuple[str, int, int]:
    if isinstance(v, str):  # a bare espeak spec: default pitch and speed
        return (v, 50, 160)
    spec, pitch, speed = v
    return (str(spec), int(pitch), int(speed))


def generate_dialogue(
    turns: list[tuple[str, str]],
    out_dir: Path | str | None = None,
    voices: dict[str, str | tuple[str, int, int]] | None = None,
    gap_s: float = 0.4,
    seed: int = 0,
    *,
    gap_jitter_s: float = 0.15,
    noise_db: float = -60.0,
    uri: str = "generated",
) -> GeneratedDialogue:
    """Synthesise ``turns`` ([(speaker, text)]) into one WAV with exact references.

    ``voices`` maps speaker -> espeak voice spec (``"en-gb+f4"``) or (spec, pitch, speed);
    unspecified speakers get distinct palette voices. The gap between consecutive lines is
    ``gap_s`` plus a seeded jitter in [-gap_jitter_s, +gap_jitter_s] (never below 0.1 s),
    so timing is known but not perfectly regular. Output is cached under ``out_dir``
    (default ``$TB_AUDIO_CACHE`` or /tmp/tb-audio-cache) by content hash.
    """
    out_dir = Path(out_dir) if out_dir is not None else DEFAULT_CACHE_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    speakers = [s for s, _ in turns]
    vmap = default_voices(speakers)
    for spk, v in (voices or {}).items():
        vmap[spk] = _voice_tuple(v)
    vmap = {s: vmap[s] for s in dict.fromkeys(speakers)}

    key_src = json.dumps(
        {
            "v": GENERATOR_VERSION,
            "turns": turns,
            "voices": vmap,
            "gap": gap_s,
            "jitter": gap_jitter_s,
            "noise": noise_db,
            "seed": seed,
            "uri": uri,
        },
        sort_keys=True,
    )
    key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
    wav_path = out_dir / f"dialogue-{key}.wav"
    meta_path = out_dir / f"dialogue-{key}.json"
    if wav_path.exists() and meta_path.exists():
        return _load_meta(meta_path, wav_path)

    rng = random.Random(seed)
    lead = 0.5  # leading silence, like a real recording start
    pieces: list[np.ndarray] = [np.zeros(int(lead * SAMPLE_RATE), np.float32)]
    t = lead
    lines: list[RefLine] = []
    for i, (spk, text) in enumerate(turns):
        speech = synthesize(text, vmap[spk])
        # Normalise each line to a similar loudness (-20 dBFS RMS) with a small seeded
        # variation, as with speakers at slightly different distances from the mic.
        rms = float(np.sqrt(np.mean(speech**2)) + 1e-9)
        gain_db = rng.uniform(-3.0, 3.0)
        speech = speech * (10 ** ((-20.0 + gain_db) / 20) / rms)
        start = t
        end = start + len(speech) / SAMPLE_RATE
        lines.append(RefLine(spk, text, round(start, 3), round(end, 3)))
        pieces.append(speech.astype(np.float32))
        t = end
        if i < len(turns) - 1:
            gap = max(0.1, gap_s + rng.uniform(-gap_jitter_s, gap_jitter_s))
            n_gap = int(round(gap * SAMPLE_RATE))
            pieces.append(np.zeros(n_gap, np.float32))
            t += n_gap / SAMPLE_RATE
    pieces.append(np.zeros(int(0.5 * SAMPLE_RATE), np.float32))
    audio = np.concatenate(pieces)
    nrng = np.random.default_rng(seed)
    audio += nrng.standard_normal(audio.shape, dtype=np.float32) * np.float32(10 ** (noise_db / 20))
    write_wav(wav_path, audio)

    meta = {
        "uri": uri,
        "duration_s": len(audio) / SAMPLE_RATE,
        "voices": vmap,
        "lines": [vars(line) for line in lines],
    }
    tmp = meta_path.with_suffix(".json.part")
    tmp.write_text(json.dumps(meta))
    tmp.replace(meta_path)
    return _load_meta(meta_path, wav_path)


def _load_meta(meta_path: Path, wav_path: Path) -> GeneratedDialogue:
    from services.gateway.rttm import Turn, to_rttm

    meta = json.loads(meta_path.read_text())
    lines = [RefLine(**d) for d in meta["lines"]]
    turns = [(ln.start, ln.end, ln.speaker) for ln in lines]
    return GeneratedDialogue(
        wav=wav_path,
        duration_s=meta["duration_s"],
        turns=turns,
        lines=lines,
        reference_text=" ".join(ln.text for ln in lines),
        rttm=to_rttm([Turn(*t) for t in turns], meta["uri"]),
        uri=meta["uri"],
        voices={k: tuple(v) for k, v in meta["voices"].items()},
    )


# --------------------------------------------------------------------------- scripts
# Plain words only (no digits, no numbers spelled in ways a recogniser may write as
# digits), so word-error-rate references compare cleanly.
_THERAPIST_OPEN = [
    "How have things been since we last met?",
    "What would you like to focus on today?",
    "Last time we talked about your sleep. How has that been going?",
    "I would like to check in on how the week went for you.",
    "Where would you like to start today?",
]
_THERAPIST_QUESTIONS = [
    "How did that make you feel?",
    "What went through your mind when that happened?",
    "Can you tell me more about that?",
    "When you notice that feeling, where do you feel it in your body?",
    "What do you think was behind that reaction?",
    "How are you sleeping at the moment?",
    "How are things at work these days?",
    "How has your mood been during the evenings?",
    "What helped you get through that moment?",
    "Who do you feel you can talk to when things get hard?",
    "What would you say to a friend who felt this way?",
    "Did you notice any pattern in when the worry shows up?",
    "How did the conversation with your family go?",
    "What was different on the days that felt a little easier?",
    "What do you need most right now?",
    "How do you usually look after yourself after a difficult day?",
]
_THERAPIST_REFLECT = [
    "It sounds like you have been carrying a lot on your own.",
    "That sounds really exhausting.",
    "I hear that you felt let down and also a bit angry.",
    "It makes sense that you would feel overwhelmed by all of that.",
    "You noticed the thought and you did not act on it, which is real progress.",
    "It seems like the pressure at work is spilling over into your evenings.",
    "So part of you wants to reach out, and part of you wants to hide away.",
    "Thank you for telling me that, I know it was not easy to say.",
]
_THERAPIST_HOMEWORK = [
    "For this week, I would like you to keep a short diary of your mood each evening.",
    "Could you try the breathing exercise before bed and notice what changes?",
    "Let us plan one small activity you enjoy for the weekend.",
    "Try to write down the worrying thought and one balanced alternative when it comes up.",
    "Please try to go to bed and get up at the same time every day this week.",
    "Before our next session, see if you can have that conversation with your sister.",
]
_THERAPIST_CLOSE = [
    "We are nearly out of time, so let us pause here for today.",
    "You did a lot of good work today. I will see you next week.",
]
_CLIENT_LINES = [
    "Honestly, it has been a hard week.",
    "I have not been sleeping well, I keep waking up in the middle of the night.",
    "Work has been really stressful, my manager keeps adding more to my plate.",
    "I felt anxious most mornings, especially before meetings.",
    "I had a big argument with my mother on the phone and it stayed with me all day.",
    "Some days are better than others, but the evenings are the worst.",
    "I tried the breathing exercise and it helped a little.",
    "I keep thinking that I am letting everyone down.",
    "My partner has been supportive, but I do not want to be a burden.",
    "I went for a walk on the weekend and that actually felt good.",
    "I noticed that I get irritable when I am tired.",
    "I have been avoiding my friends because I do not have the energy.",
    "When I lie in bed my mind just races through everything I did wrong.",
    "I think I felt ashamed more than anything else.",
    "It is hard to explain, it is like a heavy weight on my chest.",
    "I managed to keep the diary most evenings this week.",
    "My brother called and we talked for a long time, which was nice.",
    "I feel like I am always waiting for something bad to happen.",
    "At work I stayed late again, even though I promised myself I would not.",
    "I cried in the car after work and I do not really know why.",
    "I have been drinking more coffee to get through the afternoons.",
    "I want to feel more in control of my days.",
    "I guess I am scared that nothing will change.",
    "The kids have been a handful, and I snapped at them on Tuesday.",
    "I did not feel like eating much, I just was not hungry.",
    "I told my friend how I was feeling and she listened.",
    "I think the worry gets worse when I am alone at home.",
    "I woke up early and could not get back to sleep, so I just lay there.",
]
_CLIENT_SHORT = [
    "Yes, I think so.",
    "I am not sure.",
    "Maybe, I will try.",
    "That makes sense.",
    "Yeah, that is exactly it.",
]
_PARTNER_LINES = [
    "From my side, I see how tired you are when you get home.",
    "I want to help, but sometimes I do not know what to say.",
    "I felt shut out last week, and that hurt.",
    "We used to go for walks together and I miss that.",
    "I think we both get defensive when we are stressed.",
    "I agree, the mornings are really rushed in our house.",
    "I would like us to have one evening a week just for us.",
    "When you go quiet, I worry that I did something wrong.",
    "I noticed you seemed lighter after the weekend away.",
    "I can take the kids on Saturday mornings so you can rest.",
    "It is hard for me too, but I want us to get through this together.",
    "I did not realise how much the job was weighing on you.",
]


def long_session(minutes: float, n_speakers: int = 2, seed: int = 0) -> list[tuple[str, str]]:
    """A therapy-style dialogue script lasting roughly ``minutes`` when synthesised.

    Speaker 0 is the therapist (opens, asks, reflects, sets homework, closes); speaker 1
    is the client; further speakers (couples/family sessions) speak from the partner bank.
    Turn-taking is seeded and irregular (speakers sometimes speak two lines in a row,
    short answers occur) so it is not a trivially alternating pattern. Length is estimated
    at about 3.5 words per second (espeak-ng at 140-175 wpm) of speech plus the inter-line gap.
    """
    if n_speakers < 1:
        raise ValueError("n_speakers must be >= 1")
    rng = random.Random(seed)
    names = SESSION_SPEAKERS[:n_speakers] if n_speakers <= len(SESSION_SPEAKERS) else [
        f"speaker{i}" for i in range(n_speakers)
    ]
    target_s = minutes * 60.0
    script: list[tuple[str, str]] = []
    elapsed = 0.0

    def add(spk: str, text: str) -> None:
        nonlocal elapsed
        script.append((spk, text))
        elapsed += len(text.split()) / 3.5 + 0.45

    def pick(bank: list[str], used: dict[int, int], key: int) -> str:
        # Cycle through a shuffled bank so repeats are spread out.
        order = used.setdefault(key, 0)
        if order % len(bank) == 0:
            rng.shuffle(bank)
        used[key] = order + 1
        return bank[order % len(bank)]

    banks = {
        "q": list(_THERAPIST_QUESTIONS),
        "r": list(_THERAPIST_REFLECT),
        "h": list(_THERAPIST_HOMEWORK),
        "c": list(_CLIENT_LINES),
        "s": list(_CLIENT_SHORT),
        "p": list(_PARTNER_LINES),
    }
    used: dict[int, int] = {}
    keys = {k: i for i, k in enumerate(banks)}

    def line(kind: str) -> str:
        return pick(banks[kind], used, keys[kind])

    if n_speakers == 1:
        while elapsed < target_s:
            add(names[0], line("c"))
        return script

    therapist = names[0]
    add(therapist, rng.choice(_THERAPIST_OPEN))
    homework_given = False
    while elapsed < target_s - 8:
        # Who answers: mostly the client; in group sessions others join in.
        responder = names[1] if n_speakers == 2 or rng.random() < 0.55 else rng.choice(names[2:])
        bank = "c" if responder == names[1] else "p"
        if rng.random() < 0.12:
            add(responder, line("s"))
        else:
            add(responder, line(bank))
            if rng.random() < 0.35:
                add(responder, line(bank))
        if n_speakers > 2 and rng.random() < 0.3:
            other = rng.choice([n for n in names[1:] if n != responder])
            add(other, line("c" if other == names[1] else "p"))
        if not homework_given and elapsed > 0.75 * target_s:
            add(therapist, line("h"))
            homework_given = True
        elif rng.random() < 0.4:
            add(therapist, line("r") + " " + line("q"))
        else:
            add(therapist, line("q"))
    if not homework_given:
        add(therapist, line("h"))
    add(names[1], line("s"))
    add(therapist, rng.choice(_THERAPIST_CLOSE))
    return script


def short_dialogue() -> list[tuple[str, str]]:
    """A fixed two-speaker exchange of roughly one minute."""
    return [
        ("therapist", "How have things been since we last met?"),
        ("client", "Honestly, it has been a hard week. I have not been sleeping well."),
        ("therapist", "I am sorry to hear that. What has been keeping you awake?"),
        ("client", "Mostly work. My manager keeps adding more to my plate and I worry about it at night."),
        ("therapist", "It sounds like the pressure at work is spilling over into your evenings."),
        ("client", "Yes, that is exactly it."),
        ("therapist", "When you lie in bed, what goes through your mind?"),
        ("client", "I go over everything I did wrong during the day, again and again."),
        ("therapist", "That sounds really exhausting. Have you tried the breathing exercise we discussed?"),
        ("client", "I tried it twice. It helped a little, but I forgot on the other nights."),
        ("therapist", "For this week, could you try it every evening before bed and keep a short diary?"),
        ("client", "I can do that. I will put a reminder on my phone."),
    ]
