"""Manifold runs (``--manifold sphere|torus``): Riemannian flow matching from the uniform law of
S^2 or T^2 to a built-in target with an exact density (Chen & Lipman, ICLR 2024), with i-cfm
(independent pairs) or ot-cfm (exact minibatch OT on the squared geodesic cost). Evaluation: NLL of
held-out points beside the exact density's, MMD^2 beside its floor (:mod:`flowmatch.metrics.manifold`);
samples.png on the chart of the manifold (:mod:`flowmatch.plots.manifold`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn

from flowmatch.data.batches import StreamBatches, TensorBatches
from flowmatch.data.manifold_toys import ManifoldTarget, manifold_target
from flowmatch.manifolds import Manifold, get_manifold
from flowmatch.metrics.evaluate import check_evaluable
from flowmatch.metrics.manifold import ManifoldReport, evaluate_manifold_model
from flowmatch.models.manifold import ManifoldMLP
from flowmatch.objectives.riemannian import riemannian_method
from flowmatch.runs.config import RunConfig
from flowmatch.runs.kind import Report, RunKind
from flowmatch.training.config import TrainerConfig
from flowmatch.training.trainer import Trainer, TrainResult

__all__ = ["ManifoldData", "ManifoldKind", "build_manifold_data"]

#: offsets of the data generators from the run's seed (train, test, source test, MMD floor)
_DATA_SEEDS = (101, 202, 303, 404)


@dataclass
class ManifoldData:
    """A manifold run's data: train and held-out target points, held-out source points (uniform)
    and a second target sample for the MMD floor, all ``(n, ambient_dim)``."""

    manifold: Manifold
    target: ManifoldTarget
    train: Tensor
    test: Tensor
    source_test: Tensor
    floor: Tensor
    num_classes: int | None = None
    shape: tuple[int, ...] | None = None
    is_image: bool = False

    @property
    def dim(self) -> int:
        return self.manifold.ambient_dim


def build_manifold_data(cfg: RunConfig) -> ManifoldData:
    """The data of ``cfg`` (``cfg.manifold`` not none), deterministic in ``cfg.seed``."""
    m = get_manifold(cfg.manifold)
    target = manifold_target(cfg.target, cfg.manifold)
    g = [torch.Generator().manual_seed(cfg.seed + k) for k in _DATA_SEEDS]
    return ManifoldData(
        manifold=m,
        target=target,
        train=target.sample(cfg.n_train, generator=g[0]),
        test=target.sample(cfg.n_test, generator=g[1]),
        source_test=m.random_uniform(cfg.n_test, generator=g[2]),
        floor=target.sample(cfg.n_test, generator=g[3]),
    )


class ManifoldKind(RunKind):
    """Uniform on S^2 or T^2 -> a target with an exact density (module docstring)."""

    name = "manifold"

    def build_data(self, cfg: RunConfig) -> ManifoldData:
        return build_manifold_data(cfg)

    def build_model(self, cfg: RunConfig, data: Any) -> nn.Module:
        torch.manual_seed(cfg.seed)
        return ManifoldMLP(
            data.manifold,
            hidden=cfg.hidden,
            depth=cfg.depth,
            activation=cfg.activation,
            time_embedding=cfg.time_embedding,
        )

    def check(self, cfg: RunConfig, data: ManifoldData, *, evaluate: bool) -> None:
        if evaluate:  # MMD^2 averages over pairs: checked before any training is spent
            check_evaluable(len(data.source_test), len(data.test))

    def make_trainer(
        self, cfg: RunConfig, data: ManifoldData, out: Path | None, *, device: torch.device, settings: TrainerConfig
    ) -> Trainer:
        m = data.manifold
        source = StreamBatches(
            lambda n, generator=None: m.random_uniform(n, generator=generator, device=device),
            device=device,
            name="uniform source",
        )
        target = TensorBatches(data.train.to(device), name="target training")
        return Trainer(
            self.build_model(cfg, data),
            riemannian_method(cfg.method, m),
            source,
            target,
            settings,
            run_dir=out,
            device=device,
            metadata={"method": cfg.method, "manifold": cfg.manifold, "dim": data.dim},
        )

    def evaluate(
        self,
        model: nn.Module,
        data: ManifoldData,
        cfg: RunConfig,
        run_dir: Path | None,
        *,
        solver: str | None = None,
        steps: int | None = None,
        n: int | None = None,
        guidance: Sequence[float] | None = None,
    ) -> Report | None:
        if guidance is not None:
            raise ValueError(f"guidance needs a conditional run; manifold runs are unconditional, got {list(guidance)}")
        device = next(model.parameters()).device
        return evaluate_manifold_model(
            model,
            data.manifold,
            data.source_test[:n].to(device),
            data.test[:n].to(device),
            lambda x: data.target.log_prob(x.cpu()).to(x.device),
            floor_sample=data.floor[:n].to(device),
            solver=solver or cfg.eval_solver,
            steps=steps or cfg.eval_steps,
        )

    def summary(self, cfg: RunConfig, data: ManifoldData) -> dict[str, Any]:
        return {"method": cfg.method, "manifold": cfg.manifold, "source": cfg.source, "target": cfg.target}

    def plot(
        self,
        out: Path,
        model: nn.Module,
        data: ManifoldData,
        cfg: RunConfig,
        *,
        solver: str | None = None,
        steps: int | None = None,
    ) -> dict[str, Path]:
        from flowmatch.plots.manifold import plot_manifold_samples
        from flowmatch.sampling.manifold import sample_manifold

        x0 = data.source_test.to(next(model.parameters()).device)
        res = sample_manifold(model, data.manifold, x0, solver=solver or cfg.eval_solver, steps=steps or cfg.eval_steps)
        title = f"{cfg.method} on the {cfg.manifold}: uniform -> {cfg.target}"
        path = plot_manifold_samples(
            cfg.manifold,
            res.x.cpu(),
            data.test,
            out / "samples.png",
            density=lambda x: data.target.log_prob(x),
            title=title,
        )
        return {"samples": path}

    def report_text(self, cfg: RunConfig, report: Report, result: TrainResult | None) -> str:
        text = cast(ManifoldReport, report).text(cfg.method)
        return text if result is None else f"{text}; trained in {result.elapsed_s:.1f} s"
