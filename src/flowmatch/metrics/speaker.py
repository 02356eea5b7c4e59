"""A speaker classifier on log-mel spectrograms: its accuracy on generated speech (does the model
keep the speaker it was asked for?) and its penultimate features (a Fréchet distance between
generated and real speech, the speech analogue of :mod:`flowmatch.metrics.images`).

Pretrained speaker encoders (x-vectors, ECAPA) need a download, so this module trains a small
1D-convolutional network (:class:`SpeakerClassifier`) on the run's real training mels, once, and
caches it in the run directory as ``speaker_classifier.safetensors``. Its values are comparable
only to other values from the same classifier; print them beside the real-test value (accuracy
on the real test mels, FD of the real test to the real train features), which is what a perfect
generator would score.

Architecture: per-bin standardisation with the training mels' mean and standard deviation, three
convolutions over time (kernel 5, 5, 3) with ReLU, and statistics pooling over the valid frames
(Snyder et al. 2018, "X-vectors"): the masked mean and standard deviation over time,

    mu_c = sum_t m_t h_ct / sum_t m_t,    sigma_c = sqrt(sum_t m_t (h_ct - mu_c)^2 / sum_t m_t + eps),

then a 128-unit layer (the feature space) and a linear head. Padded frames are zeroed after every
layer, so a frame's receptive field sees zeros beyond an utterance's end whatever the padding
length (the convolutions pad with zeros too): the features do not depend on how long a batch is
padded, nor on what the padding holds.

Batches follow :mod:`flowmatch.data.masks`: ``mels (B, n_mels, T)``, ``mask (B, 1, T)`` with 1 for a
valid frame. :func:`check_mel_batch` is the input rule of every mel metric (here and in
:mod:`flowmatch.metrics.speech`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowmatch._utils.validate import check_finite, check_positive_int
from flowmatch.data.masks import check_mask

__all__ = [
    "SpeakerClassifier",
    "SpeakerClassifierInfo",
    "check_mel_batch",
    "check_labels",
    "train_speaker_classifier",
    "load_or_train_speaker_classifier",
    "accuracy",
    "features",
    "data_fingerprint",
    "SPEAKER_CLASSIFIER_FILE",
]

SPEAKER_CLASSIFIER_FILE = "speaker_classifier.safetensors"


def check_mel_batch(mels: object, mask: object | None, *, name: str = "mels") -> tuple[Tensor, Tensor]:
    """Validate a padded mel batch; returns ``(mels, valid)`` with ``valid`` a bool ``(B, 1, T)``.

    Rules: ``mels`` is a floating tensor ``(B, n_mels, T)``; ``mask`` is None (every frame valid)
    or a 0/1 tensor of shape ``(B, 1, T)`` (one entry per frame) with a valid frame in every row;
    the valid elements are finite (the padding may hold anything).
    """
    if not isinstance(mels, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor (B, n_mels, T), got {type(mels).__name__}")
    if mels.dim() != 3 or not torch.is_floating_point(mels) or 0 in mels.shape:
        raise ValueError(
            f"{name} must be a non-empty floating tensor of shape (B, n_mels, T), got {tuple(mels.shape)} {mels.dtype}"
        )
    if mask is None:
        valid = torch.ones(mels.shape[0], 1, mels.shape[2], dtype=torch.bool, device=mels.device)
    else:
        b, _, t = mels.shape
        if not isinstance(mask, Tensor) or tuple(mask.shape) != (b, 1, t):
            got = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
            raise ValueError(f"mask must have shape (B, 1, T) = {(b, 1, t)} for {name} (1 = valid frame), got {got}")
        valid = check_mask(mask, mels) > 0
    check_finite(f"{name} (valid frames)", torch.where(valid, mels, torch.zeros((), dtype=mels.dtype)))
    return mels, valid


def check_labels(labels: object, n: int, *, name: str = "speakers", num_classes: int | None = None) -> Tensor:
    """Validate integer labels of shape ``(n,)`` (in ``[0, num_classes)`` when given)."""
    if not isinstance(labels, Tensor) or labels.shape != (n,) or torch.is_floating_point(labels):
        got = f"{tuple(labels.shape)} {labels.dtype}" if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(f"{name} must be an integer tensor of shape (B,) = ({n},), got {got}")
    if num_classes is not None and n and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"{name} must lie in [0, {num_classes}), got values in [{int(labels.min())}, {int(labels.max())}]"
        )
    return labels.long()


class SpeakerClassifier(nn.Module):
    """conv(k5)-conv(k5)-conv(k3) over time with ReLU, masked mean+std pooling, a ``feature_dim``
    penultimate layer (the Fréchet-distance feature space) and a linear speaker head.

    ``mean``/``std`` (buffers, shape ``(n_mels, 1)``) standardise each mel bin; set from the
    training mels by :func:`train_speaker_classifier`.
    """

    mean: Tensor
    std: Tensor

    def __init__(self, n_mels: int, num_speakers: int, *, channels: int = 64, feature_dim: int = 128):
        super().__init__()
        self.n_mels = check_positive_int("n_mels", n_mels)
        self.num_speakers = check_positive_int("num_speakers", num_speakers)
        self.register_buffer("mean", torch.zeros(n_mels, 1))
        self.register_buffer("std", torch.ones(n_mels, 1))
        self.convs = nn.ModuleList(
            [
                nn.Conv1d(n_mels, channels, 5, padding=2),
                nn.Conv1d(channels, channels, 5, padding=2),
                nn.Conv1d(channels, channels, 3, padding=1),
            ]
        )
        self.fc = nn.Linear(2 * channels, feature_dim)
        self.drop = nn.Dropout(0.2)
        self.head = nn.Linear(feature_dim, num_speakers)

    def features(self, mels: Tensor, valid: Tensor) -> Tensor:
        """Penultimate features ``(B, feature_dim)`` of ``mels (B, n_mels, T)``; ``valid`` is a
        bool ``(B, 1, T)`` (see :func:`check_mel_batch`)."""
        zero = torch.zeros((), dtype=mels.dtype, device=mels.device)
        h = torch.where(valid, (mels - self.mean) / self.std, zero)
        for conv in self.convs:
            h = torch.where(valid, F.relu(conv(h)), zero)
        count = valid.sum(dim=-1).clamp_min(1).to(h.dtype)  # (B, 1); a crop of padding only pools zeros
        mu = h.sum(dim=-1) / count
        var = torch.where(valid, (h - mu[..., None]) ** 2, zero).sum(dim=-1) / count
        return F.relu(self.fc(torch.cat([mu, (var + 1e-5).sqrt()], dim=1)))

    def forward(self, mels: Tensor, valid: Tensor) -> Tensor:
        """Speaker logits ``(B, num_speakers)``."""
        return self.head(self.drop(self.features(mels, valid)))


@dataclass
class SpeakerClassifierInfo:
    """How a cached speaker classifier was made (``fingerprint``: :func:`data_fingerprint` of its
    training data), and how well it does."""

    n_mels: int
    num_speakers: int
    seed: int
    steps: int
    crop_frames: int | None
    fingerprint: str
    train_accuracy: float
    test_accuracy: float | None = None


def data_fingerprint(mels: Tensor, valid: Tensor, labels: Tensor) -> str:
    """SHA-256 (hex, 16 digits) of the valid mel values, the mask and the labels: the cache key of a
    trained classifier (padding contents do not change it)."""
    h = hashlib.sha256()
    clean = torch.where(valid, mels, torch.zeros((), dtype=mels.dtype, device=mels.device))
    for t in (clean.detach().to("cpu", torch.float32), valid.to("cpu", torch.uint8), labels.to("cpu", torch.int64)):
        h.update(str(tuple(t.shape)).encode())
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _random_crop(mels: Tensor, valid: Tensor, crop: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """A window of ``crop`` frames of each utterance, uniformly placed within its valid span."""
    b, c, t = mels.shape
    if t <= crop:
        return mels, valid
    frames = torch.arange(1, t + 1, device=mels.device)
    ends = (valid[:, 0] * frames).amax(dim=-1).cpu()  # one past the last valid frame
    start = (torch.rand(b, generator=g) * ((ends - crop).clamp_min(0) + 1)).long().to(mels.device)
    idx = (start[:, None] + torch.arange(crop, device=mels.device))[:, None, :]
    return mels.gather(2, idx.expand(b, c, crop)), valid.gather(2, idx)


def train_speaker_classifier(
    mels: Tensor,
    mask: Tensor | None,
    labels: Tensor,
    num_speakers: int,
    *,
    steps: int = 300,
    batch_size: int = 32,
    lr: float = 2e-3,
    crop_frames: int | None = 128,
    seed: int = 0,
) -> tuple[SpeakerClassifier, SpeakerClassifierInfo]:
    """Train :class:`SpeakerClassifier` on real ``mels (N, n_mels, T)`` with ``mask (N, 1, T)`` and
    speaker ``labels (N,)``: ``steps`` Adam steps of cross-entropy on minibatches of ``batch_size``
    utterances drawn without replacement (reshuffled each epoch), each cut to a random window of
    ``crop_frames`` frames within its valid span (``None``: whole utterances). Speaker identity is
    a property of the whole utterance, so the crops are augmentation and make a step cheap; the
    statistics pooling then scores whole utterances of any length.

    The bins are standardised with the mean and standard deviation over the valid training frames.
    All randomness comes from ``seed`` (initialisation, batches, dropout; the global RNG is left as
    it was), so the result is deterministic on a given machine.
    """
    mels, valid = check_mel_batch(mels, mask)
    labels = check_labels(labels, mels.shape[0], num_classes=check_positive_int("num_speakers", num_speakers))
    steps = check_positive_int("steps", steps)
    batch_size = check_positive_int("batch_size", batch_size)
    crop = mels.shape[-1] if crop_frames is None else check_positive_int("crop_frames", crop_frames)
    n, n_mels, _ = mels.shape
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = SpeakerClassifier(n_mels, num_speakers).to(mels.device)
    frames = valid.expand_as(mels)
    count = frames.sum(dim=(0, 2)).to(mels.dtype)
    zero = torch.zeros((), dtype=mels.dtype, device=mels.device)
    mean = torch.where(frames, mels, zero).sum(dim=(0, 2)) / count
    var = torch.where(frames, (mels - mean[:, None]) ** 2, zero).sum(dim=(0, 2)) / count
    net.mean.copy_(mean[:, None])
    net.std.copy_(var.sqrt().clamp_min(1e-3)[:, None])
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    net.train()
    with torch.random.fork_rng(devices=[]):  # dropout reads the global RNG: keep it local
        torch.manual_seed(seed + 1)
        perm, pos = torch.randperm(n, generator=g), 0
        for _ in range(steps):
            if pos >= n:
                perm, pos = torch.randperm(n, generator=g), 0
            idx = perm[pos : pos + batch_size].to(mels.device)
            pos += batch_size
            loss = F.cross_entropy(net(*_random_crop(mels[idx], valid[idx], crop, g)), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    net.eval()
    fingerprint = data_fingerprint(mels, valid, labels)
    info = SpeakerClassifierInfo(
        n_mels, num_speakers, seed, steps, crop_frames, fingerprint, accuracy(net, mels, valid, labels)
    )
    return net, info


@torch.no_grad()
def features(classifier: SpeakerClassifier, mels: Tensor, mask: Tensor | None, *, chunk: int = 256) -> Tensor:
    """Penultimate features ``(B, feature_dim)`` of ``mels (B, n_mels, T)``, in chunks of ``chunk``
    utterances; for :func:`flowmatch.metrics.images.frechet_distance`."""
    mels, valid = check_mel_batch(mels, mask)
    if mels.shape[1] != classifier.n_mels:
        raise ValueError(f"mels must have the classifier's {classifier.n_mels} mel bins, got {mels.shape[1]}")
    classifier.eval()
    dev = classifier.mean.device
    parts = [
        classifier.features(mels[i : i + chunk].to(dev), valid[i : i + chunk].to(dev))
        for i in range(0, mels.shape[0], chunk)
    ]
    return torch.cat(parts)


@torch.no_grad()
def accuracy(classifier: SpeakerClassifier, mels: Tensor, mask: Tensor | None, labels: Tensor) -> float:
    """Fraction of the utterances the classifier assigns to their speaker ``labels (B,)``."""
    mels, valid = check_mel_batch(mels, mask)
    labels = check_labels(labels, mels.shape[0])
    pred = classifier.head(features(classifier, mels, valid)).argmax(1)
    return float((pred == labels.to(pred.device)).float().mean())


def load_or_train_speaker_classifier(
    run_dir: str | Path | None,
    train_mels: Tensor,
    train_mask: Tensor | None,
    train_labels: Tensor,
    num_speakers: int,
    *,
    test_mels: Tensor | None = None,
    test_mask: Tensor | None = None,
    test_labels: Tensor | None = None,
    seed: int = 0,
    steps: int = 300,
    crop_frames: int | None = 128,
) -> tuple[SpeakerClassifier, SpeakerClassifierInfo]:
    """The run's speaker classifier: loaded from ``run_dir/speaker_classifier.safetensors`` when it
    exists and was made from the same data (:func:`data_fingerprint`), speakers, seed, steps and crop;
    otherwise trained on the real train mels and saved there (atomically). ``run_dir=None`` trains
    without caching. With test data, ``info.test_accuracy`` is the accuracy on it."""
    from safetensors.torch import load_file, save_file

    mels, valid = check_mel_batch(train_mels, train_mask, name="train_mels")
    labels = check_labels(train_labels, mels.shape[0], name="train_labels")
    key = (mels.shape[1], num_speakers, seed, steps, crop_frames, data_fingerprint(mels, valid, labels))
    path = Path(run_dir) / SPEAKER_CLASSIFIER_FILE if run_dir is not None else None
    if path is not None and path.is_file():
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        try:
            info: SpeakerClassifierInfo | None = SpeakerClassifierInfo(**json.loads(meta.get("info", "{}")))
        except TypeError:
            info = None
        if info is not None and (
            (info.n_mels, info.num_speakers, info.seed, info.steps, info.crop_frames, info.fingerprint) == key
        ):
            net = SpeakerClassifier(info.n_mels, num_speakers)
            net.load_state_dict(load_file(str(path)))
            return net.to(mels.device).eval(), info
    net, info = train_speaker_classifier(
        mels, valid, labels, num_speakers, seed=seed, steps=steps, crop_frames=crop_frames
    )
    if test_mels is not None and test_labels is not None:
        info.test_accuracy = accuracy(net, test_mels, test_mask, test_labels)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()},
            str(tmp),
            metadata={"info": json.dumps(asdict(info))},
        )
        tmp.replace(path)
    return net, info
