"""Offline image metrics: a small classifier's accuracy on class-conditional samples, and the
Fréchet distance in its penultimate feature space.

The Fréchet Inception Distance (Heusel et al. 2017) compares Gaussians fitted to features of real
and generated images,

    FD = ||mu_r - mu_g||^2 + tr(S_r + S_g - 2 (S_r^{1/2} S_g S_r^{1/2})^{1/2}),

with Inception-v3 features. Inception weights need a download, so this module uses the features
of a small CNN (:class:`ImageClassifier`) trained once on the real training images of the run
(cached in the run directory as ``classifier.safetensors``). Its values are comparable only to
other values from the same classifier; print them beside the real-versus-held-out value
(real test images against real train images), which is what a perfect sampler would score.

For class-conditional models the same classifier labels the generated images: the accuracy is the
fraction of samples generated for class c that the classifier assigns to c.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowmatch._utils.validate import check_positive_int
from flowmatch.models.guidance import guided
from flowmatch.sampling.average import sample_any

__all__ = [
    "ImageClassifier",
    "ClassifierInfo",
    "train_classifier",
    "load_or_train_classifier",
    "classifier_features",
    "frechet_distance",
    "GuidanceRow",
    "ImageEvalReport",
    "evaluate_images",
    "CLASSIFIER_FILE",
]

CLASSIFIER_FILE = "classifier.safetensors"


class ImageClassifier(nn.Module):
    """A small CNN: conv32-conv64-maxpool-conv64, adaptive average pool to 4x4, a 128-unit
    penultimate layer (the feature space of :func:`frechet_distance`), and a linear classifier."""

    def __init__(self, in_channels: int, num_classes: int, feature_dim: int = 128):
        super().__init__()
        self.in_channels = check_positive_int("in_channels", in_channels)
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(64, 64, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),
        )
        self.fc = nn.Linear(64 * 16, feature_dim)
        self.drop = nn.Dropout(0.3)
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate features (B, feature_dim)."""
        return F.relu(self.fc(self.conv(x).flatten(1)))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.drop(self.features(x)))


@dataclass
class ClassifierInfo:
    """How a cached classifier was made, and how well it does."""

    shape: list[int]
    num_classes: int
    seed: int
    epochs: int
    train_accuracy: float
    test_accuracy: float | None = None


def _random_shift(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Shift each image by up to one pixel in each direction (edge padding)."""
    b, _, h, w = x.shape
    pad = F.pad(x, (1, 1, 1, 1), mode="replicate")
    dy = torch.randint(0, 3, (b,), generator=generator, device=x.device)
    dx = torch.randint(0, 3, (b,), generator=generator, device=x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None].expand(b, x.shape[1], h, w + 2)
    out = pad.gather(2, rows)
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :].expand(b, x.shape[1], h, w)
    return out.gather(3, cols)


def train_classifier(
    images: Tensor,
    labels: Tensor,
    num_classes: int,
    *,
    epochs: int = 20,
    batch_size: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
) -> tuple[ImageClassifier, ClassifierInfo]:
    """Train :class:`ImageClassifier` on ``images`` (N, C, H, W) in [-1, 1] and ``labels`` (N,).

    Adam with a cosine learning rate, cross-entropy, random one-pixel shifts; all randomness from a
    generator seeded with ``seed`` (the initialisation too), so the result is deterministic on a
    given machine.
    """
    if images.dim() != 4 or labels.shape != (images.shape[0],):
        raise ValueError(
            f"images must be (N, C, H, W) with labels (N,), got {tuple(images.shape)} and {tuple(labels.shape)}"
        )
    epochs = check_positive_int("epochs", epochs)
    batch_size = check_positive_int("batch_size", batch_size)
    g = torch.Generator(device=images.device).manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = ImageClassifier(images.shape[1], num_classes).to(images.device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    n = images.shape[0]
    per_epoch = max(1, math.ceil(n / batch_size))
    total = epochs * per_epoch
    step = 0
    net.train()
    with torch.random.fork_rng(devices=[]):  # dropout reads the global RNG: keep it local
        torch.manual_seed(seed + 1)
        for _ in range(epochs):
            perm = torch.randperm(n, generator=g, device=images.device)
            for k in range(per_epoch):
                idx = perm[k * batch_size : (k + 1) * batch_size]
                for group in opt.param_groups:
                    group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / total))
                loss = F.cross_entropy(net(_random_shift(images[idx], g)), labels[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
    net.eval()
    acc = accuracy(net, images, labels)
    info = ClassifierInfo(list(images.shape[1:]), num_classes, seed, epochs, acc)
    return net, info


@torch.no_grad()
def _batched(fn, x: Tensor, chunk: int = 1024) -> Tensor:
    return torch.cat([fn(x[i : i + chunk]) for i in range(0, x.shape[0], chunk)])


@torch.no_grad()
def accuracy(classifier: ImageClassifier, images: Tensor, labels: Tensor) -> float:
    """Fraction of ``images`` the classifier assigns to ``labels``."""
    classifier.eval()
    pred = _batched(classifier, images).argmax(1)
    return float((pred == labels.to(pred.device)).float().mean())


@torch.no_grad()
def classifier_features(classifier: ImageClassifier, images: Tensor) -> Tensor:
    """Penultimate features (N, 128) of ``images`` (N, C, H, W)."""
    classifier.eval()
    return _batched(classifier.features, images)


def load_or_train_classifier(
    run_dir: str | Path | None,
    train_images: Tensor,
    train_labels: Tensor,
    num_classes: int,
    *,
    test_images: Tensor | None = None,
    test_labels: Tensor | None = None,
    seed: int = 0,
    epochs: int = 20,
) -> tuple[ImageClassifier, ClassifierInfo]:
    """The run's classifier: loaded from ``run_dir/classifier.safetensors`` when it exists and was
    made for the same image shape, classes, seed and epochs; otherwise trained on the real train
    images and saved there (atomically). ``run_dir=None`` trains without caching."""
    from safetensors.torch import load_file, save_file

    shape = list(train_images.shape[1:])
    path = Path(run_dir) / CLASSIFIER_FILE if run_dir is not None else None
    if path is not None and path.is_file():
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        try:
            info = ClassifierInfo(**json.loads(meta.get("info", "{}")))
        except TypeError:
            info = None
        if info is not None and (info.shape, info.num_classes, info.seed, info.epochs) == (
            shape,
            num_classes,
            seed,
            epochs,
        ):
            net = ImageClassifier(shape[0], num_classes)
            net.load_state_dict(load_file(str(path)))
            return net.to(train_images.device).eval(), info
    net, info = train_classifier(train_images, train_labels, num_classes, seed=seed, epochs=epochs)
    if test_images is not None and test_labels is not None:
        info.test_accuracy = accuracy(net, test_images, test_labels)
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


def frechet_distance(feat_a: Tensor, feat_b: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (n, d) and (m, d).

    ``||mu_a - mu_b||^2 + tr(S_a) + tr(S_b) - 2 tr((S_a^{1/2} S_b S_a^{1/2})^{1/2})`` (Heusel et al.
    2017, Eq. 6; Dowson & Landau 1982), computed in float64 with symmetric eigendecompositions
    (S_a^{1/2} S_b S_a^{1/2} is symmetric positive semi-definite and has the eigenvalues of S_a S_b).
    Covariances are unbiased (divided by n - 1).
    """
    if feat_a.dim() != 2 or feat_b.dim() != 2 or feat_a.shape[1] != feat_b.shape[1]:
        raise ValueError(f"features must be (n, d) and (m, d), got {tuple(feat_a.shape)} and {tuple(feat_b.shape)}")
    if feat_a.shape[0] < 2 or feat_b.shape[0] < 2:
        raise ValueError(f"each feature set needs at least 2 rows, got {feat_a.shape[0]} and {feat_b.shape[0]}")
    a = feat_a.detach().to("cpu", torch.float64)
    b = feat_b.detach().to("cpu", torch.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)
    ev, vec = torch.linalg.eigh(s_a)
    root_a = (vec * ev.clamp_min(0).sqrt()) @ vec.T
    m = root_a @ s_b @ root_a
    cross = torch.linalg.eigvalsh((m + m.T) / 2).clamp_min(0).sqrt().sum()
    fd = float(((mu_a - mu_b) ** 2).sum() + torch.trace(s_a) + torch.trace(s_b) - 2 * cross)
    return max(fd, 0.0)


@dataclass
class GuidanceRow:
    """Metrics of the samples generated at one guidance scale."""

    guidance: float
    accuracy: float | None
    fd: float
    n: int
    nfe: int


@dataclass
class ImageEvalReport:
    """Image metrics of a model: one row per guidance scale, and the real-versus-held-out values.

    ``real_accuracy``: the classifier's accuracy on the real test images; ``real_fd``: the FD of
    the real test images to the real train images (the value a perfect sampler would get, since
    generated sets have the size and the class counts of the test set).
    """

    rows: list[GuidanceRow]
    real_accuracy: float | None
    real_fd: float
    solver: str
    steps: int
    classifier: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate_images(
    model: nn.Module,
    classifier: ImageClassifier,
    train_images: Tensor,
    test_images: Tensor,
    test_labels: Tensor | None,
    *,
    guidance: Sequence[float] = (1.0,),
    solver: str = "midpoint",
    steps: int = 20,
    seed: int = 0,
    chunk_size: int | None = 512,
) -> ImageEvalReport:
    """Generate one image per test image (conditioned on its label when there are labels) at each
    guidance scale, and score them against the real train images.

    Samples: x0 ~ N(0, I) from a generator seeded with ``seed`` (the same noise for every scale),
    integrated with ``solver``/``steps`` through :class:`flowmatch.models.guidance.GuidedModel`. For
    unlabelled data (``test_labels=None``) the model is sampled unconditionally, once, and only
    the FD is reported.
    """
    device = next(model.parameters()).device
    n = test_images.shape[0]
    feats_train = classifier_features(classifier, train_images.to(device))
    real_fd = frechet_distance(classifier_features(classifier, test_images.to(device)), feats_train)
    real_acc = accuracy(classifier, test_images.to(device), test_labels) if test_labels is not None else None
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(test_images.shape, generator=g).to(device)
    rows = []
    model.eval()
    for w in guidance:
        if test_labels is None:
            field, cond = model, None
        else:
            cond = test_labels.to(device)
            field = guided(model, w)
        res = sample_any(field, x0, solver=solver, steps=steps, cond=cond, chunk_size=chunk_size)
        x = res.x.clamp(-1, 1)
        fd = frechet_distance(classifier_features(classifier, x), feats_train)
        acc = accuracy(classifier, x, test_labels) if test_labels is not None else None
        rows.append(GuidanceRow(float(w), acc, fd, n, res.nfe))
        if test_labels is None:
            break
    return ImageEvalReport(rows, real_acc, real_fd, solver, steps)
