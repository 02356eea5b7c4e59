"""Speech metrics: mel-cepstral distortion, log-mel RMSE, global variance ratio, real-time factor,
the speaker classifier and its Fréchet distance, and the report of generated mels."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.fft
import torch

from flowmatch.data.masks import lengths_to_mask
from flowmatch.metrics.images import frechet_distance
from flowmatch.metrics.speaker import (
    SpeakerClassifier,
    accuracy,
    features,
    load_or_train_speaker_classifier,
    train_speaker_classifier,
)
from flowmatch.metrics.speech import (
    MCD_FACTOR,
    SpeechEvalReport,
    audio_seconds,
    dct_matrix,
    evaluate_speech,
    global_variance,
    global_variance_ratio,
    log_mel_rmse,
    mcd_per_utterance,
    mel_cepstra,
    mel_cepstral_distortion,
    real_time_factor,
)

N_MELS = 80


def _batch(lengths, seed=0, pad_to=None):
    """Random log-mels (B, 80, T) around -5 with the padding zeroed, and their (B, 1, T) mask."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(lengths)
    mask = lengths_to_mask(lengths, pad_to)
    x = (torch.randn(len(lengths), N_MELS, mask.shape[-1], generator=g) - 5.0) * mask
    return x, mask


def _repad(x, mask, T, fill=0.0):
    """The same utterances padded to T frames, the padding filled with ``fill``."""
    B, C, T0 = x.shape
    out = torch.full((B, C, T), fill, dtype=x.dtype)
    m = torch.zeros(B, 1, T)
    n = min(T, T0)
    out[..., :n] = torch.where(mask[..., :n] > 0, x[..., :n], torch.full((), fill))
    m[..., :n] = mask[..., :n]
    return out, m


# --------------------------------------------------------------------------------------------
# Mel-cepstral distortion and log-mel RMSE
# --------------------------------------------------------------------------------------------


def test_dct_matrix_is_scipys_orthonormal_dct_ii():
    x = np.random.default_rng(0).normal(size=(N_MELS, 7))
    d = dct_matrix(N_MELS)
    assert torch.allclose(d @ d.T, torch.eye(N_MELS, dtype=torch.float64), atol=1e-12)
    ref = scipy.fft.dct(x, type=2, norm="ortho", axis=0)
    assert np.allclose(d.numpy() @ x, ref, atol=1e-12)
    x3 = torch.from_numpy(x).float()[None]
    assert np.allclose(mel_cepstra(x3, n_cepstra=24)[0].numpy(), ref[1:25], atol=1e-5)


def test_mcd_of_a_mel_with_itself_is_zero_and_grows_with_the_noise_level():
    x, mask = _batch([40, 25, 33])
    assert mel_cepstral_distortion(x, x, mask) == 0.0
    assert log_mel_rmse(x, x, mask) == 0.0
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    values = [mel_cepstral_distortion(x + s * noise, x, mask) for s in (0.01, 0.1, 0.3, 1.0, 3.0)]
    assert all(a < b for a, b in zip(values, values[1:])), values
    assert values[0] > 0


def test_a_gain_change_leaves_mcd_unchanged_and_shifts_rmse_by_the_constant():
    x, mask = _batch([40, 25, 33])
    x = x.double()  # x + a exact in float64 (float32 would round the sum)
    y = x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    a = 1.75
    assert mel_cepstral_distortion(x + a, x, mask) < 1e-9  # c0 excluded: a constant is all c0
    assert mel_cepstral_distortion(y + a, x, mask) == pytest.approx(mel_cepstral_distortion(y, x, mask), abs=1e-9)
    assert log_mel_rmse(x + a, x, mask) == pytest.approx(a, abs=1e-12)
    assert log_mel_rmse(x - a, x, mask) == pytest.approx(a, abs=1e-12)


def _numpy_mcd(gen, ref, lengths, K):
    """The formula, directly: per utterance, the mean over its frames of (10/ln10) sqrt(2 sum_k dc^2)."""
    per_utt = []
    for b, n in enumerate(lengths):
        cg = scipy.fft.dct(gen[b, :, :n], type=2, norm="ortho", axis=0)[1 : K + 1]
        cr = scipy.fft.dct(ref[b, :, :n], type=2, norm="ortho", axis=0)[1 : K + 1]
        per_frame = 10.0 / np.log(10.0) * np.sqrt(2.0 * ((cg - cr) ** 2).sum(axis=0))
        per_utt.append(per_frame.mean())
    return float(np.mean(per_utt)), np.array(per_utt)


@pytest.mark.parametrize("K", [24, 13, 79])
def test_mcd_matches_a_direct_numpy_implementation(K):
    lengths = [50, 17, 33, 8]
    ref, mask = _batch(lengths, seed=3)
    gen, _ = _batch(lengths, seed=4)
    gen = gen * 0.5 + ref * 0.5
    want, want_per = _numpy_mcd(gen.double().numpy(), ref.double().numpy(), lengths, K)
    assert mel_cepstral_distortion(gen, ref, mask, n_cepstra=K) == pytest.approx(want, rel=1e-10)
    assert np.allclose(mcd_per_utterance(gen, ref, mask, n_cepstra=K).numpy(), want_per, rtol=1e-10)
    assert MCD_FACTOR == pytest.approx(10 / math.log(10) * math.sqrt(2))


def test_the_metrics_do_not_depend_on_the_padding():
    lengths = [30, 12, 21]
    ref, mask = _batch(lengths, seed=5)
    gen = ref + 0.4 * torch.randn(ref.shape, generator=torch.Generator().manual_seed(6)) * mask
    gen = 0.8 * gen + 0.2 * gen.roll(1, dims=-1) * mask  # a little smoothing, so GV ratio != 1

    def metrics(g, r, m):
        return (
            mel_cepstral_distortion(g, r, m),
            log_mel_rmse(g, r, m),
            global_variance_ratio(g, r, m),
            *global_variance(g, m).flatten().tolist(),
        )

    base = metrics(gen, ref, mask)
    for T, fill in ((30, 0.0), (64, 0.0), (64, 123.0), (97, float("nan")), (64, float("inf"))):
        g, m = _repad(gen, mask, T, fill)
        r, _ = _repad(ref, mask, T, -fill)
        assert np.allclose(metrics(g, r, m), base, rtol=1e-12, atol=1e-12), (T, fill)


# --------------------------------------------------------------------------------------------
# Global variance
# --------------------------------------------------------------------------------------------


def test_global_variance_ratio_identity_smoothing_and_scaling():
    lengths = [60, 45, 52]
    ref, mask = _batch(lengths, seed=7)
    ref = ref.double()  # the scaled copy exact to float64 rounding
    assert global_variance_ratio(ref, ref, mask) == pytest.approx(1.0, abs=1e-12)
    # A moving average over 5 frames (within each utterance) lowers the variance: over-smoothing.
    smooth = torch.zeros_like(ref)
    for b, n in enumerate(lengths):
        smooth[b, :, :n] = torch.nn.functional.avg_pool1d(
            ref[b : b + 1, :, :n], 5, stride=1, padding=2, count_include_pad=False
        )[0]
    assert global_variance_ratio(smooth, ref, mask) < 0.5
    # Scaled by s about each utterance's per-bin mean: every GV times s^2.
    n = mask.sum(-1, keepdim=True)
    mu = (ref * mask).sum(-1, keepdim=True) / n
    for s in (0.5, 1.3, 2.0):
        scaled = (mu + s * (ref - mu)) * mask
        assert global_variance_ratio(scaled, ref, mask) == pytest.approx(s**2, rel=1e-10)
        assert torch.allclose(global_variance(scaled, mask), s**2 * global_variance(ref, mask), rtol=1e-9)
    # GV is the population variance over the valid frames
    assert torch.allclose(global_variance(ref, mask)[1], ref[1, :, :45].double().var(dim=-1, unbiased=False))


# --------------------------------------------------------------------------------------------
# Real-time factor
# --------------------------------------------------------------------------------------------


def test_real_time_factor_arithmetic():
    assert audio_seconds(22050) == pytest.approx(256.0)  # 22050 frames of 256 samples at 22050 Hz
    assert audio_seconds(100, hop_length=200, sample_rate=16000) == pytest.approx(1.25)
    mask = lengths_to_mask(torch.tensor([86, 100, 30]), 120)
    frames = 86 + 100 + 30
    assert audio_seconds(mask) == pytest.approx(frames * 256 / 22050)
    assert audio_seconds(torch.tensor([86, 100, 30])) == pytest.approx(frames * 256 / 22050)
    assert real_time_factor(0.5, mask) == pytest.approx(0.5 / (frames * 256 / 22050))
    assert real_time_factor(2.0, 86, hop_length=256, sample_rate=22050) == pytest.approx(2.0 * 22050 / (86 * 256))
    with pytest.raises(ValueError, match="at least one frame"):
        real_time_factor(1.0, 0)
    with pytest.raises(ValueError, match="compute_seconds must be a finite number >= 0"):
        real_time_factor(-1.0, 10)


# --------------------------------------------------------------------------------------------
# Speaker classifier and Fréchet distance
# --------------------------------------------------------------------------------------------


def _speakers(n_per, num_speakers=5, seed=0, min_len=20, max_len=70):
    """Synthetic 'speakers': log-mels with a speaker-specific spectral tilt and two formant-like
    bumps, a random time-varying envelope and noise; variable lengths, zero padding."""
    g = torch.Generator().manual_seed(seed)
    pg = torch.Generator().manual_seed(1234)  # the speakers are the same in every split
    bins = torch.arange(N_MELS, dtype=torch.float32)
    tilt = torch.rand(num_speakers, generator=pg) * 0.06 - 0.03
    centres = torch.rand(num_speakers, 2, generator=pg) * 60 + 10
    profiles = torch.stack(
        [
            tilt[s] * (bins - 40) + sum(1.5 * torch.exp(-0.5 * ((bins - centres[s, j]) / 4.0) ** 2) for j in range(2))
            for s in range(num_speakers)
        ]
    )
    labels = torch.arange(num_speakers).repeat_interleave(n_per)
    lengths = torch.randint(min_len, max_len + 1, (len(labels),), generator=g)
    mask = lengths_to_mask(lengths)
    T = mask.shape[-1]
    loud = torch.randn(len(labels), 1, T, generator=g).cumsum(-1) * 0.2  # slow energy contour
    x = profiles[labels][..., None] + loud - 5.0 + 0.7 * torch.randn(len(labels), N_MELS, T, generator=g)
    return x * mask, mask, labels


@pytest.fixture(scope="module")
def trained():
    mels, mask, labels = _speakers(24, seed=0)
    clf, info = train_speaker_classifier(mels, mask, labels, 5, steps=150, seed=0)
    return clf, info, (mels, mask, labels)


def test_the_speaker_classifier_separates_synthetic_speakers(trained):
    clf, info, _ = trained
    test_mels, test_mask, test_labels = _speakers(20, seed=1)
    assert accuracy(clf, test_mels, test_mask, test_labels) > 0.95
    assert info.train_accuracy > 0.95


def test_training_on_random_crops_still_scores_whole_utterances():
    mels, mask, labels = _speakers(16, seed=6, min_len=40, max_len=90)
    clf, info = train_speaker_classifier(mels, mask, labels, 5, steps=100, crop_frames=24, seed=1)
    test_mels, test_mask, test_labels = _speakers(10, seed=7, min_len=40, max_len=90)
    assert info.crop_frames == 24
    assert accuracy(clf, test_mels, test_mask, test_labels) > 0.95


def test_speaker_features_are_padding_invariant(trained):
    clf, _, _ = trained
    mels, mask, _ = _speakers(3, seed=2)
    f = features(clf, mels, mask)
    for T, fill in ((mels.shape[-1] + 37, 0.0), (mels.shape[-1] + 5, float("nan")), (mels.shape[-1], 50.0)):
        m2, k2 = _repad(mels, mask, T, fill)
        assert torch.allclose(features(clf, m2, k2), f, atol=1e-5), (T, fill)
    # one utterance alone gives its row of the batch
    n = int(mask[4].sum())
    assert torch.allclose(features(clf, mels[4:5, :, :n], None), f[4:5], atol=1e-5)


def test_training_is_seeded_and_the_cache_is_keyed_by_the_data(tmp_path):
    mels, mask, labels = _speakers(4, num_speakers=3, seed=3)
    state = torch.random.get_rng_state()
    a, info_a = load_or_train_speaker_classifier(tmp_path, mels, mask, labels, 3, steps=5)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global RNG is left alone
    assert (tmp_path / "speaker_classifier.safetensors").is_file()
    b, info_b = load_or_train_speaker_classifier(tmp_path, mels, mask, labels, 3, steps=5)
    assert info_b == info_a
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    c, _ = train_speaker_classifier(mels, mask, labels, 3, steps=5)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), c.state_dict().values()))
    # other data: retrained (a different fingerprint), and the cache replaced
    _, info_d = load_or_train_speaker_classifier(tmp_path, mels + 0.1 * mask, mask, labels, 3, steps=5)
    assert info_d.fingerprint != info_a.fingerprint


def test_frechet_distance_of_speaker_features(trained):
    clf, _, _ = trained
    mels, mask, _ = _speakers(20, seed=4)
    f = features(clf, mels, mask)
    assert frechet_distance(f, f) == pytest.approx(0.0, abs=1e-6)
    shifted = features(clf, (mels + 2.0 * torch.linspace(-1, 1, N_MELS)[:, None]) * mask, mask)
    assert frechet_distance(shifted, f) > 1.0


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------


def test_evaluate_speech_reports_generated_beside_real(trained):
    clf, _, (train_mels, train_mask, _) = trained
    ref, mask, speakers = _speakers(10, seed=5)
    noise = torch.randn(ref.shape, generator=torch.Generator().manual_seed(9))
    gen = (ref + 0.5 * noise) * mask
    rep = evaluate_speech(
        gen, ref, mask, speakers, clf, train_mels=train_mels, train_mask=train_mask, nfe=10, compute_seconds=0.2
    )
    assert isinstance(rep, SpeechEvalReport)
    d = rep.to_dict()
    assert d["mcd"] == pytest.approx(mel_cepstral_distortion(gen, ref, mask))
    assert d["log_mel_rmse"] == pytest.approx(log_mel_rmse(gen, ref, mask))
    assert d["gv_ratio"] > 1.0  # added noise raises the variance
    assert d["real_speaker_accuracy"] > 0.95 and d["speaker_accuracy"] is not None
    assert d["fd"] > d["real_fd"] >= 0.0
    assert d["nfe"] == 10 and d["n_utterances"] == 50
    assert d["rtf"] == pytest.approx(real_time_factor(0.2, mask))
    assert d["audio_seconds"] == pytest.approx(audio_seconds(mask))
    bare = evaluate_speech(ref, ref, mask)
    assert (bare.mcd, bare.log_mel_rmse, bare.gv_ratio) == (0.0, 0.0, pytest.approx(1.0))
    assert bare.speaker_accuracy is None and bare.fd is None and bare.rtf is None


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda x, m: mel_cepstral_distortion(x, x[:, :, :-1], None), r"same shape \(frame-aligned mels\)"),
        (lambda x, m: mel_cepstral_distortion(x, x, m[:, :, :-1]), r"mask must have shape \(B, 1, T\) = \(2, 1, 30\)"),
        (lambda x, m: log_mel_rmse(x, x, m.expand(-1, N_MELS, -1)), r"mask must have shape \(B, 1, T\)"),
        (lambda x, m: global_variance_ratio(x, x, m * 2), "mask must hold only 0 and 1"),
        (lambda x, m: mel_cepstral_distortion(x[0], x[0]), r"shape \(B, n_mels, T\), got \(80, 30\)"),
        (lambda x, m: mel_cepstral_distortion(x, x, m, n_cepstra=80), "n_cepstra must be at most n_mels - 1 = 79"),
        (lambda x, m: mel_cepstral_distortion(x, x, m, n_cepstra=0), "n_cepstra must be a positive integer"),
        (lambda x, m: log_mel_rmse(x.long(), x.long()), "floating tensor"),
        (lambda x, m: global_variance_ratio(x, x, m * 0), "at least one valid element"),
        (lambda x, m: global_variance_ratio(x, x, lengths_to_mask(torch.tensor([1, 5]), 30)), "at least 2 valid"),
        (lambda x, m: global_variance_ratio(x, torch.zeros_like(x), m), "reference must vary over time"),
        (lambda x, m: mel_cepstral_distortion(x.masked_fill(m > 0, float("nan")), x, m), "must be finite"),
        (lambda x, m: evaluate_speech(x, x, m, torch.tensor([0])), r"speakers must be an integer tensor of shape"),
        (lambda x, m: audio_seconds(torch.ones(2, 80, 3)), r"frames must be a count"),
    ],
)
def test_bad_input_gives_one_line_errors(call, match):
    x, m = _batch([30, 20])
    with pytest.raises(ValueError, match=match) as err:
        call(x, m)
    assert "\n" not in str(err.value)


def test_the_classifier_checks_its_inputs(trained):
    clf, _, _ = trained
    x, m = _batch([30, 20])
    with pytest.raises(ValueError, match="classifier's 80 mel bins, got 40"):
        features(clf, x[:, :40], m)
    with pytest.raises(ValueError, match=r"speakers must lie in \[0, 5\), got values in \[0, 7\]"):
        evaluate_speech(x, x, m, torch.tensor([0, 7]), clf)
    with pytest.raises(ValueError, match="num_speakers must be a positive integer"):
        SpeakerClassifier(80, 0)
