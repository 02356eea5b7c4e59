"""Objective metrics of generated speech mels against frame-aligned references, and the speed of
generation.

Inputs are batches of natural-log mel spectrograms ``(B, n_mels, T)`` (80 bins in this project),
padded with zeros, with a frame mask ``(B, 1, T)`` (1 = valid frame; :mod:`flowmatch.data.masks`).
Generated and reference mels are frame-aligned by construction (the same durations), so the
metrics compare frame by frame, with no dynamic time warping.

Every metric is computed per utterance over its valid frames and then averaged over the
utterances (each utterance weighs the same, whatever its length: the way TTS papers average over
a test set). Padded frames never enter a sum, so the values do not depend on how far a batch is
padded nor on what its padding holds (up to float64 rounding). All arithmetic is float64 on the
CPU. With ``x_ct`` the log-mel of bin c at frame t, ``m_t`` the mask and ``n = sum_t m_t``:

**Mel-cepstral distortion** (dB). Cepstra by the orthonormal DCT-II over the mel axis (the MFCC
recipe, Davis & Mermelstein 1980),

    c_kt = sqrt((2 - [k = 0]) / N) sum_{c<N} x_ct cos(pi k (c + 1/2) / N),

and, over the coefficients k = 1..K (c0, the frame energy, is excluded, so a gain change, a
constant added to every bin, leaves MCD unchanged),

    MCD_t = (10 / ln 10) sqrt(2 sum_{k=1..K} (c_kt - c'_kt)^2),      MCD = mean_b (1/n_b) sum_t m_t MCD_t.

The factor (10 / ln 10) sqrt(2) is the convention of Kubichek 1993 ("Mel-cepstral distance measure
for objective speech quality assessment", IEEE PACRIM), which converts a natural-log cepstral
distance to dB. Caution: these are cepstra of the log-mel (MFCC-like), not SPTK mel-cepstra
(mcep, all-pass warped cepstra of a spectral envelope), and the DCT normalisation sets their
scale; absolute values are therefore not comparable to papers that report MCD from mcep (nor to
other DCT conventions), only to other values computed here. K = 24 by default (the usual mcep
order at 22.05 kHz): the low quefrencies, the spectral envelope, not the harmonic fine structure.

**Log-mel RMSE**: ``RMSE_b = sqrt(sum_{c,t} m_t (x_ct - x'_ct)^2 / (N n_b))``, averaged over
utterances; a constant offset a of every valid element gives exactly |a|.

**Global variance ratio** (over-smoothing; Toda & Tokuda 2007, "A speech parameter generation
algorithm considering global variance for HMM-based speech synthesis", IEICE Trans. Inf. & Syst.
E90-D(5)). Per utterance and bin, the variance over the valid frames (divided by n_b),

    GV_bc = (1/n_b) sum_t m_t (x_ct - mu_bc)^2,      mu_bc = (1/n_b) sum_t m_t x_ct,

and the ratio of the mean GVs, per utterance, averaged: ``GVR = mean_b sum_c GV^gen_bc /
sum_c GV^ref_bc``. A ratio of means, not a mean of ratios: a reference bin that is nearly constant
(a floor-clamped silent bin) would make a bin-wise ratio explode. It is 1 for the references
themselves, s^2 for a copy scaled by s about its per-bin means, and below 1 for an over-smoothed
output (the mean-seeking regression decoders; Toda & Tokuda's Fig. 1).

**Real-time factor**: seconds of compute per second of audio, ``RTF = compute_s / audio_s`` with
``audio_s = frames * hop_length / sample_rate`` (hop 256 at 22050 Hz by default, the LJSpeech
setting of HiFi-GAN and Matcha-TTS). The compute is whatever the caller timed (the decoder's
sampling, with or without the vocoder); say which beside the number.

:func:`evaluate_speech` gathers these and the speaker metrics of :mod:`flowmatch.metrics.speaker`
into a :class:`SpeechEvalReport` for mels generated elsewhere.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from flowmatch._utils.validate import check_nonnegative_float, check_nonnegative_int, check_positive_int
from flowmatch.metrics.images import frechet_distance
from flowmatch.metrics.speaker import SpeakerClassifier, accuracy, check_labels, check_mel_batch, features

__all__ = [
    "DEFAULT_N_CEPSTRA",
    "HOP_LENGTH",
    "SAMPLE_RATE",
    "MCD_FACTOR",
    "dct_matrix",
    "mel_cepstra",
    "mcd_per_utterance",
    "mel_cepstral_distortion",
    "log_mel_rmse",
    "global_variance",
    "global_variance_ratio",
    "audio_seconds",
    "real_time_factor",
    "SpeechEvalReport",
    "evaluate_speech",
]

#: Cepstral coefficients c_1..c_K compared by MCD.
DEFAULT_N_CEPSTRA = 24
#: STFT hop (samples) and sample rate of the project's mels (LJSpeech, HiFi-GAN's configuration).
HOP_LENGTH = 256
SAMPLE_RATE = 22050
#: Kubichek's (10 / ln 10) * sqrt(2): a natural-log cepstral distance in dB.
MCD_FACTOR = 10.0 / math.log(10.0) * math.sqrt(2.0)


def dct_matrix(n: int, *, dtype: torch.dtype = torch.float64) -> Tensor:
    """The orthonormal DCT-II matrix ``D (n, n)``, ``D_kc = sqrt((2 - [k = 0]) / n) cos(pi k (c + 1/2) / n)``
    (``D @ x`` equals ``scipy.fft.dct(x, type=2, norm="ortho")``; D is orthogonal)."""
    n = check_positive_int("n", n)
    k = torch.arange(n, dtype=torch.float64)[:, None]
    c = torch.arange(n, dtype=torch.float64)[None, :]
    d = torch.cos(math.pi * k * (c + 0.5) / n) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d.to(dtype)


def _check_k(n_cepstra: Any, n_mels: int) -> int:
    k = check_positive_int("n_cepstra", n_cepstra)
    if k > n_mels - 1:
        raise ValueError(f"n_cepstra must be at most n_mels - 1 = {n_mels - 1} (c0 is excluded), got {k}")
    return k


def mel_cepstra(mels: Tensor, *, n_cepstra: int = DEFAULT_N_CEPSTRA) -> Tensor:
    """Cepstra ``c_1..c_K`` ``(B, K, T)`` (float64, CPU) of log-mels ``(B, n_mels, T)``: the
    orthonormal DCT-II over the mel axis, without c0 (every frame, padding included)."""
    mels, _ = check_mel_batch(mels, None)
    k = _check_k(n_cepstra, mels.shape[1])
    d = dct_matrix(mels.shape[1])[1 : k + 1]
    return torch.einsum("kc,bct->bkt", d, mels.detach().to("cpu", torch.float64))


def _pair(generated: object, reference: object, mask: object | None) -> tuple[Tensor, Tensor, Tensor]:
    """(generated, reference) as float64 CPU with the padding zeroed, and the bool frame mask."""
    gen, valid = check_mel_batch(generated, mask, name="generated")
    ref, _ = check_mel_batch(reference, mask, name="reference")
    if gen.shape != ref.shape:
        raise ValueError(
            f"generated and reference must have the same shape (frame-aligned mels), "
            f"got {tuple(gen.shape)} and {tuple(ref.shape)}"
        )
    valid = valid.cpu()
    zero = torch.zeros((), dtype=torch.float64)
    gen = torch.where(valid, gen.detach().to("cpu", torch.float64), zero)
    ref = torch.where(valid, ref.detach().to("cpu", torch.float64), zero)
    return gen, ref, valid


def mcd_per_utterance(
    generated: Tensor, reference: Tensor, mask: Tensor | None = None, *, n_cepstra: int = DEFAULT_N_CEPSTRA
) -> Tensor:
    """``(B,)`` mel-cepstral distortion (dB) of each utterance: the mean of ``MCD_t`` over its valid
    frames (module docstring)."""
    gen, ref, valid = _pair(generated, reference, mask)
    k = _check_k(n_cepstra, gen.shape[1])
    d = dct_matrix(gen.shape[1])[1 : k + 1]
    diff = torch.einsum("kc,bct->bkt", d, gen - ref)  # the DCT is linear: c(gen) - c(ref)
    per_frame = MCD_FACTOR * (diff**2).sum(dim=1, keepdim=True).sqrt()  # (B, 1, T)
    frames = valid.sum(dim=(1, 2)).to(torch.float64)
    return torch.where(valid, per_frame, 0.0).sum(dim=(1, 2)) / frames


def mel_cepstral_distortion(
    generated: Tensor, reference: Tensor, mask: Tensor | None = None, *, n_cepstra: int = DEFAULT_N_CEPSTRA
) -> float:
    """Mel-cepstral distortion (dB) of log-mel cepstra c_1..c_K, per utterance over its valid
    frames, averaged over utterances. Not SPTK-mcep MCD: see the module docstring."""
    return float(mcd_per_utterance(generated, reference, mask, n_cepstra=n_cepstra).mean())


def log_mel_rmse(generated: Tensor, reference: Tensor, mask: Tensor | None = None) -> float:
    """Root-mean-square log-mel error over each utterance's valid elements, averaged over
    utterances (in natural-log units)."""
    gen, ref, valid = _pair(generated, reference, mask)
    elements = valid.sum(dim=(1, 2)).to(torch.float64) * gen.shape[1]
    return float((((gen - ref) ** 2).sum(dim=(1, 2)) / elements).sqrt().mean())


def global_variance(mels: Tensor, mask: Tensor | None = None) -> Tensor:
    """``(B, n_mels)`` variance over the valid frames of each utterance and bin (divided by the
    number of valid frames), float64 on the CPU."""
    x, valid = check_mel_batch(mels, mask)
    valid = valid.cpu()
    zero = torch.zeros((), dtype=torch.float64)
    x = torch.where(valid, x.detach().to("cpu", torch.float64), zero)
    n = valid.sum(dim=2).to(torch.float64)  # (B, 1)
    mu = x.sum(dim=2) / n
    return torch.where(valid, (x - mu[..., None]) ** 2, zero).sum(dim=2) / n


def global_variance_ratio(generated: Tensor, reference: Tensor, mask: Tensor | None = None) -> float:
    """``mean_b sum_c GV^gen_bc / sum_c GV^ref_bc`` (module docstring): 1 for the references, below 1
    for over-smoothed mels. Needs 2 valid frames per utterance and a reference that varies."""
    gen, ref, valid = _pair(generated, reference, mask)
    short = valid.sum(dim=(1, 2)) < 2
    if bool(short.any()):
        b = int(short.nonzero()[0, 0])
        raise ValueError(f"the global variance needs at least 2 valid frames per utterance, got 1 in row {b}")
    gv_ref = global_variance(ref, valid).sum(dim=1)
    if bool((gv_ref == 0).any()):
        b = int((gv_ref == 0).nonzero()[0, 0])
        raise ValueError(f"the reference must vary over time to divide by its global variance, row {b} is constant")
    return float((global_variance(gen, valid).sum(dim=1) / gv_ref).mean())


def audio_seconds(frames: int | Tensor, *, hop_length: int = HOP_LENGTH, sample_rate: int = SAMPLE_RATE) -> float:
    """Seconds of audio in ``frames``: ``frames * hop_length / sample_rate``. ``frames`` is a count,
    a ``(B,)`` integer tensor of lengths, or a ``(B, 1, T)`` frame mask (its valid frames)."""
    hop = check_positive_int("hop_length", hop_length)
    sr = check_positive_int("sample_rate", sample_rate)
    if isinstance(frames, Tensor):
        if frames.dim() == 1 and not torch.is_floating_point(frames) and bool((frames >= 0).all()):
            count = int(frames.sum())
        elif frames.dim() == 3 and frames.shape[1] == 1:
            count = int((frames > 0).sum())
        else:
            raise ValueError(
                f"frames must be a count, (B,) integer lengths >= 0 or a (B, 1, T) mask, got {tuple(frames.shape)}"
            )
    else:
        count = check_nonnegative_int("frames", frames)
    return count * hop / sr


def real_time_factor(
    compute_seconds: float, frames: int | Tensor, *, hop_length: int = HOP_LENGTH, sample_rate: int = SAMPLE_RATE
) -> float:
    """Seconds of compute per second of audio, ``compute_seconds / audio_seconds(frames)`` (below 1:
    faster than real time)."""
    spent = check_nonnegative_float("compute_seconds", compute_seconds)
    audio = audio_seconds(frames, hop_length=hop_length, sample_rate=sample_rate)
    if audio <= 0:
        raise ValueError(f"the real-time factor needs at least one frame of audio, got {audio} s")
    return spent / audio


@dataclass
class SpeechEvalReport:
    """Speech metrics of generated mels against their frame-aligned real test references.

    ``mcd`` (dB, log-mel cepstra c_1..c_K), ``log_mel_rmse`` and ``gv_ratio`` compare generated to
    reference; the real references score 0, 0 and 1 on them by definition. ``speaker_accuracy``:
    the speaker classifier's accuracy on the generated mels, beside ``real_speaker_accuracy`` on
    the real test mels. ``fd``: Fréchet distance of the generated to the real train features,
    beside ``real_fd`` of the real test to the real train features (what a perfect generator
    scores). ``nfe``: model evaluations per sample; ``rtf``: compute seconds per audio second of
    ``compute_seconds`` over ``audio_seconds``. None where not computed (no classifier, no speaker
    labels, no train mels, no timing).
    """

    n_utterances: int
    audio_seconds: float
    mcd: float
    log_mel_rmse: float
    gv_ratio: float
    speaker_accuracy: float | None
    real_speaker_accuracy: float | None
    fd: float | None
    real_fd: float | None
    nfe: int | None
    rtf: float | None
    compute_seconds: float | None
    n_cepstra: int
    hop_length: int
    sample_rate: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate_speech(
    generated: Tensor,
    reference: Tensor,
    mask: Tensor | None,
    speakers: Tensor | None = None,
    classifier: SpeakerClassifier | None = None,
    *,
    train_mels: Tensor | None = None,
    train_mask: Tensor | None = None,
    nfe: int | None = None,
    compute_seconds: float | None = None,
    hop_length: int = HOP_LENGTH,
    sample_rate: int = SAMPLE_RATE,
    n_cepstra: int = DEFAULT_N_CEPSTRA,
) -> SpeechEvalReport:
    """Score already generated mels ``(B, n_mels, T)`` against the real test mels ``reference``
    (same shape, the same ``mask (B, 1, T)``) generated for ``speakers (B,)``.

    The speaker accuracies need ``classifier`` and ``speakers``; the Fréchet distances need
    ``classifier`` and the real ``train_mels``/``train_mask`` (use the classifier's training data:
    see :func:`flowmatch.metrics.speaker.load_or_train_speaker_classifier`). ``nfe`` and the
    timed ``compute_seconds`` of the generation are recorded, and the latter gives the RTF.
    """
    gen, ref, valid = _pair(generated, reference, mask)
    n = gen.shape[0]
    if speakers is not None:
        speakers = check_labels(speakers, n, num_classes=classifier.num_speakers if classifier is not None else None)
    nfe = None if nfe is None else check_nonnegative_int("nfe", nfe)
    spent = None if compute_seconds is None else check_nonnegative_float("compute_seconds", compute_seconds)
    audio = audio_seconds(valid, hop_length=hop_length, sample_rate=sample_rate)
    acc = real_acc = fd = real_fd = None
    if classifier is not None:
        if speakers is not None:
            acc = accuracy(classifier, generated, valid, speakers)
            real_acc = accuracy(classifier, reference, valid, speakers)
        if train_mels is not None:
            feats_train = features(classifier, train_mels, train_mask)
            fd = frechet_distance(features(classifier, generated, valid), feats_train)
            real_fd = frechet_distance(features(classifier, reference, valid), feats_train)
    return SpeechEvalReport(
        n_utterances=n,
        audio_seconds=audio,
        mcd=mel_cepstral_distortion(gen, ref, valid, n_cepstra=n_cepstra),
        log_mel_rmse=log_mel_rmse(gen, ref, valid),
        gv_ratio=global_variance_ratio(gen, ref, valid),
        speaker_accuracy=acc,
        real_speaker_accuracy=real_acc,
        fd=fd,
        real_fd=real_fd,
        nfe=nfe,
        rtf=None if spent is None else real_time_factor(spent, valid, hop_length=hop_length, sample_rate=sample_rate),
        compute_seconds=spent,
        n_cepstra=n_cepstra,
        hop_length=hop_length,
        sample_rate=sample_rate,
    )
