"""Token runs (issue 21): discrete flow matching on ``digits-tokens`` (8x8 digits on 17 grey
levels, optionally class-conditional with guidance) or ``brackets`` (Dyck words of variable length).

Evaluation: digits are scored like continuous digits (:mod:`flowmatch.metrics.images`: the
accuracy of a classifier trained on the real train images, and the Fréchet distance of its
features to the real train images); bracket words by the fraction that is balanced with matching
types (:func:`flowmatch.data.tokens.valid_fraction`). Plots: a sample grid (digits) or a text
file of sampled words (brackets).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from flowmatch._utils.io import atomic_write_text
from flowmatch.data.tokens import tokens_to_images, valid_fraction, word_text
from flowmatch.objectives.discrete import discrete_method
from flowmatch.runs.config import RunConfig
from flowmatch.runs.discrete_data import (
    TokenBatches,
    TokenRunData,
    build_token_data,
    build_token_model,
    run_mixture_path,
    sample_tokens,
)
from flowmatch.runs.kind import Report, RunKind
from flowmatch.training.config import TrainerConfig
from flowmatch.training.trainer import Trainer, TrainResult

__all__ = ["DiscreteKind", "DiscreteReport", "evaluate_tokens"]


@dataclass
class DiscreteReport:
    """A token run's evaluation at ``steps`` CTMC steps (NFE): digits' classifier accuracy and FD
    (with the real test images' values), or the brackets' valid fraction."""

    target: str
    steps: int
    nfe: int
    n: int
    guidance: float | None = None
    accuracy: float | None = None
    fd: float | None = None
    real_accuracy: float | None = None
    real_fd: float | None = None
    valid_fraction: float | None = None
    data_valid_fraction: float | None = None
    classifier: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate_tokens(
    model: nn.Module,
    data: TokenRunData,
    cfg: RunConfig,
    run_dir: Path | None,
    *,
    steps: int | None = None,
    n: int | None = None,
    guidance: float | None = None,
    seed: int | None = None,
    sampler: Any = None,
) -> DiscreteReport:
    """Sample one sequence per test sequence (with its label for conditional digits) and score them
    (``sampler``: see :func:`flowmatch.runs.discrete_data.sample_tokens`)."""
    steps = steps or cfg.eval_steps
    seed = cfg.seed if seed is None else seed
    test = data.test[:n]
    m = test.shape[0]
    if data.name == "brackets":
        mask = data.test_mask[:m] if data.test_mask is not None else None
        res = sample_tokens(model, cfg, data, m, steps=steps, mask=mask, seed=seed, sampler=sampler)
        return DiscreteReport(
            data.name,
            steps,
            res.nfe,
            m,
            valid_fraction=valid_fraction(res.x.cpu(), None if mask is None else mask.cpu()),
            data_valid_fraction=valid_fraction(test, mask),
        )
    from flowmatch.metrics.images import accuracy, classifier_features, frechet_distance, load_or_train_classifier

    device = next(model.parameters()).device
    if data.train_labels is None or data.test_labels is None:
        raise ValueError(f"the digits metrics need class labels, got {data.name!r} without them")
    train_img, test_img = tokens_to_images(data.train).to(device), tokens_to_images(data.test).to(device)
    clf, info = load_or_train_classifier(
        run_dir,
        train_img,
        data.train_labels.to(device),
        data.num_classes,
        test_images=test_img,
        test_labels=data.test_labels.to(device),
        seed=cfg.seed,
    )
    labels = data.test_labels[:m]
    w = cfg.eval_guidance if guidance is None else guidance
    cond = labels if cfg.cond == "label" else None
    res = sample_tokens(model, cfg, data, m, steps=steps, cond=cond, guidance=w, seed=seed, sampler=sampler)
    x = tokens_to_images(res.x.cpu()).to(device)
    feats_train = classifier_features(clf, train_img)
    return DiscreteReport(
        data.name,
        steps,
        res.nfe,
        m,
        guidance=w if cond is not None else None,
        accuracy=accuracy(clf, x, labels) if cond is not None else None,
        fd=frechet_distance(classifier_features(clf, x), feats_train),
        real_accuracy=info.test_accuracy,
        real_fd=frechet_distance(classifier_features(clf, test_img[:m]), feats_train),
        classifier={"train_accuracy": info.train_accuracy, "test_accuracy": info.test_accuracy},
    )


def report_table(rep: DiscreteReport) -> str:
    """A Markdown table of a token run's evaluation."""
    from flowmatch.metrics.report import format_table

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f}%"

    if rep.valid_fraction is not None:
        rows = [
            {"samples": "generated", "valid": pct(rep.valid_fraction), "NFE": str(rep.nfe), "n": str(rep.n)},
            {"samples": "test words", "valid": pct(rep.data_valid_fraction), "NFE": "-", "n": str(rep.n)},
        ]
    else:
        rows = [
            {"samples": "generated", "accuracy": pct(rep.accuracy), "FD": f"{rep.fd:.3f}", "NFE": str(rep.nfe)},
            {"samples": "real test", "accuracy": pct(rep.real_accuracy), "FD": f"{rep.real_fd:.3f}", "NFE": "-"},
        ]
    return format_table(rows)


class DiscreteKind(RunKind):
    """Token sequences by discrete flow matching (``dfm``, ``ot-dfm``)."""

    name = "discrete"

    def build_data(self, cfg: RunConfig) -> TokenRunData:
        return build_token_data(cfg)

    def build_model(self, cfg: RunConfig, data: TokenRunData) -> nn.Module:
        return build_token_model(cfg, data)

    def make_trainer(
        self, cfg: RunConfig, data: TokenRunData, out: Path | None, *, device: torch.device, settings: TrainerConfig
    ) -> Trainer:
        path = run_mixture_path(cfg, data)
        labels = data.train_labels.to(device) if (cfg.cond == "label" and data.train_labels is not None) else None
        mask = data.train_mask.to(device) if data.train_mask is not None else None
        target = TokenBatches(data.train.to(device), mask, labels)
        matcher = discrete_method(cfg.method, path, loss=cfg.token_loss, cond_dropout=cfg.guidance_dropout)
        return Trainer(
            self.build_model(cfg, data),
            matcher,
            path,
            target,
            settings,
            run_dir=out,
            device=device,
            metadata={"method": cfg.method, "target": cfg.target, "cond": cfg.cond},
        )

    def evaluate(
        self,
        model: nn.Module,
        data: TokenRunData,
        cfg: RunConfig,
        run_dir: Path | None,
        *,
        solver: str | None = None,
        steps: int | None = None,
        n: int | None = None,
        guidance: Sequence[float] | None = None,
    ) -> DiscreteReport:
        w = None if guidance is None else float(list(guidance)[0])
        return evaluate_tokens(model, data, cfg, run_dir, steps=steps, n=n, guidance=w)

    def summary(self, cfg: RunConfig, data: TokenRunData) -> dict[str, Any]:
        return {
            "method": cfg.method,
            "target": cfg.target,
            "token_source": cfg.token_source,
            "token_loss": cfg.token_loss,
            "kappa_power": cfg.kappa_power,
            "cond": cfg.cond,
        }

    def plot(
        self,
        out: Path,
        model: nn.Module,
        data: TokenRunData,
        cfg: RunConfig,
        *,
        solver: str | None = None,
        steps: int | None = None,
    ) -> dict[str, Path]:
        if data.name == "brackets":
            res = sample_tokens(model, cfg, data, 50, steps=steps, seed=cfg.seed)
            mask = data.test_mask.repeat(2, 1)[:50] if data.test_mask is not None else None
            lines = [word_text(res.x[i].cpu(), None if mask is None else mask[i]) for i in range(50)]
            path = out / "samples.txt"
            atomic_write_text(path, "\n".join(lines) + "\n")
            return {"samples": path}
        from flowmatch.plots.images import plot_image_grid

        if cfg.cond == "label":
            cond = torch.arange(data.num_classes).repeat_interleave(10)
            res = sample_tokens(model, cfg, data, len(cond), steps=steps, cond=cond, guidance=cfg.eval_guidance)
            grid = plot_image_grid(tokens_to_images(res.x.cpu()), out / "samples.png", ncols=10)
        else:
            res = sample_tokens(model, cfg, data, 100, steps=steps, seed=cfg.seed)
            grid = plot_image_grid(tokens_to_images(res.x.cpu()), out / "samples.png", ncols=10)
        return {"samples": grid}

    def report_text(self, cfg: RunConfig, report: Report, result: TrainResult | None) -> str:
        return report_table(cast(DiscreteReport, report))
