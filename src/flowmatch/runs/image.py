"""Image runs: class-conditional sampling with guidance, the classifier-based evaluation and the
sample grid (:class:`ImageKind`; the UNet of a config is built by :mod:`flowmatch.runs.build`).

Used by :mod:`flowmatch.runs.run` for image targets (``digits``, ``mnist``, ``cifar10``, a folder of
images, an (N, C, H, W) array); see :mod:`flowmatch.data.images`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn

from flowmatch.metrics.images import ImageEvalReport, evaluate_images, load_or_train_classifier
from flowmatch.models.guidance import guided
from flowmatch.runs.build import build_unet, unet_settings  # noqa: F401  (re-exported)
from flowmatch.runs.config import RunConfig
from flowmatch.runs.data import RunData
from flowmatch.runs.kind import Report
from flowmatch.runs.vector import VectorKind
from flowmatch.sampling.average import sample_any
from flowmatch.training.trainer import TrainResult

__all__ = ["ImageKind", "sample_images", "evaluate_image_model", "plot_image_samples", "parse_cond", "SAMPLES_GRID"]

SAMPLES_GRID = "samples.png"


def parse_cond(text: str, classes: Sequence[str]) -> int:
    """A class given on the command line: its index (``3``) or its name (``cat``)."""
    names = [str(c) for c in classes]
    if text in names:
        return names.index(text)
    try:
        k = int(text)
    except ValueError:
        k = -2
    if not 0 <= k < len(names):
        shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
        raise ValueError(f"--cond must be a class index in [0, {len(names)}) or a class name ({shown}), got {text!r}")
    return k


@torch.no_grad()
def sample_images(
    model: nn.Module,
    n: int,
    shape: Sequence[int],
    *,
    cond: Tensor | None = None,
    guidance: float = 1.0,
    solver: str = "midpoint",
    steps: int = 20,
    seed: int = 0,
    device: torch.device | str = "cpu",
    chunk_size: int | None = 512,
) -> Tensor:
    """``n`` images (n, C, H, W): x0 ~ N(0, I) from a generator seeded with ``seed``, integrated
    from t = 0 to 1 through the guided field (:class:`flowmatch.models.guidance.GuidedModel`, scale
    ``guidance``) when ``cond`` is given, else through ``model`` unconditionally. Clamped to [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn((n, *shape), generator=g).to(device)
    field = guided(model, guidance) if cond is not None else model
    cond = cond.to(device) if cond is not None else None
    res = sample_any(field, x0, solver=solver, steps=steps, cond=cond, chunk_size=chunk_size)
    return res.x.clamp(-1, 1)


def evaluate_image_model(
    model: nn.Module,
    data: Any,
    cfg: RunConfig,
    run_dir: str | Path | None,
    *,
    guidance: Sequence[float] = (1.0,),
    solver: str | None = None,
    steps: int | None = None,
    n: int | None = None,
) -> ImageEvalReport:
    """Classifier accuracy and Fréchet distance of the model's samples (one per test image, with its
    label when the run is class-conditional) at each guidance scale, beside the real test images'
    values. The classifier is trained on the real train images once and cached in ``run_dir``.

    ``data`` is a :class:`flowmatch.runs.run.RunData` of image data; ``n`` limits the test images used.
    """
    train = data.target.train
    test = data.target.test[:n]
    labels = data.labels
    device = next(model.parameters()).device
    if labels is None:
        raise ValueError(f"the image metrics need class labels to train their classifier; {cfg.target!r} has none")
    test_labels = labels.test[:n]
    clf, info = load_or_train_classifier(
        run_dir,
        train.to(device),
        labels.train.to(device),
        len(data.classes),
        test_images=data.target.test.to(device),
        test_labels=labels.test.to(device),
        seed=cfg.seed,
    )
    rep = evaluate_images(
        model,
        clf,
        train,
        test,
        test_labels if cfg.cond == "label" else None,
        guidance=guidance,
        solver=solver or cfg.eval_solver,
        steps=steps or cfg.eval_steps,
        seed=cfg.seed,
    )
    if cfg.cond != "label":  # unconditional model: the classifier's accuracy on real images only
        rep.real_accuracy = info.test_accuracy
    rep.classifier = {
        "train_accuracy": info.train_accuracy,
        "test_accuracy": info.test_accuracy,
        "file": None if run_dir is None else str(Path(run_dir) / "classifier.safetensors"),
    }
    return rep


def plot_image_samples(
    model: nn.Module,
    data: Any,
    cfg: RunConfig,
    path: str | Path,
    *,
    guidance: float | None = None,
    per_class: int = 10,
    solver: str | None = None,
    steps: int | None = None,
    seed: int = 0,
) -> Path:
    """A grid of samples: one row per class (``per_class`` each) for conditional runs, else 10x10."""
    from flowmatch.plots.images import plot_image_grid

    device = next(model.parameters()).device
    shape = tuple(data.target.train.shape[1:])
    w = cfg.eval_guidance if guidance is None else guidance
    kw: dict[str, Any] = dict(solver=solver or cfg.eval_solver, steps=steps or cfg.eval_steps, seed=seed, device=device)
    if cfg.cond == "label":
        k = len(data.classes)
        cond = torch.arange(k).repeat_interleave(per_class)
        x = sample_images(model, k * per_class, shape, cond=cond, guidance=w, **kw)
        return plot_image_grid(x, path, ncols=per_class, row_labels=list(data.classes))
    x = sample_images(model, 100, shape, **kw)
    return plot_image_grid(x, path, ncols=10)


def image_table(rep: ImageEvalReport) -> str:
    """A Markdown table of an image evaluation: one row per guidance scale, then the real test images."""
    from flowmatch.metrics.report import format_table

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f}%"

    rows = [
        {
            "samples": f"guidance w = {r.guidance:g}",
            "classifier accuracy": pct(r.accuracy),
            "FD": f"{r.fd:.3f}",
            "FD / real": f"{r.fd / rep.real_fd:.2f}" if rep.real_fd > 0 else "-",
            "NFE": str(r.nfe),
            "n": str(r.n),
        }
        for r in rep.rows
    ]
    n_real = rep.rows[0].n if rep.rows else 0
    rows.append(
        {
            "samples": "real test images",
            "classifier accuracy": pct(rep.real_accuracy),
            "FD": f"{rep.real_fd:.3f}",
            "FD / real": "1.00",
            "NFE": "-",
            "n": str(n_real),
        }
    )
    return (
        format_table(rows) + f"\n({rep.solver} {rep.steps} steps; FD to the real train images in the "
        f"classifier's feature space)"
    )


class ImageKind(VectorKind):
    """N(0, I) -> images ``(N, C, H, W)``: trained like a vector run; evaluated by a classifier
    (accuracy, Fréchet distance) when the images have labels; a sample grid."""

    name = "image"

    def evaluate(
        self,
        model: nn.Module,
        data: RunData,
        cfg: RunConfig,
        run_dir: Path | None,
        *,
        solver: str | None = None,
        steps: int | None = None,
        n: int | None = None,
        guidance: Sequence[float] | None = None,
    ) -> ImageEvalReport | None:
        if data.labels is None:  # the classifier of the image metrics needs labels
            return None
        w = tuple(guidance) if guidance is not None else (cfg.eval_guidance,)
        return evaluate_image_model(model, data, cfg, run_dir, guidance=w, solver=solver, steps=steps, n=n)

    def plot(
        self,
        out: Path,
        model: nn.Module,
        data: RunData,
        cfg: RunConfig,
        *,
        solver: str | None = None,
        steps: int | None = None,
    ) -> dict[str, Path]:
        return {"samples": plot_image_samples(model, data, cfg, out / SAMPLES_GRID, solver=solver, steps=steps)}

    def report_text(self, cfg: RunConfig, report: Report, result: TrainResult | None) -> str:
        return image_table(cast(ImageEvalReport, report))
