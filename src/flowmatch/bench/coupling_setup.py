"""What the coupling benchmark (:mod:`flowmatch.bench.coupling`) measures and trains on: its
settings and result, the data pools, TorchCFM's with-replacement coupling, and the Trainer of one
measured configuration (shared by the timing and the quality parts)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from flowmatch.couplings import Coupling, ExactOT, Pairing, pairs_from_plan
from flowmatch.data import sample_toy
from flowmatch.data.batches import TensorBatches
from flowmatch.models import MLP
from flowmatch.objectives.cfm import FlowMatcher
from flowmatch.training.trainer import Trainer, TrainerConfig

__all__ = ["CouplingBenchSettings", "CouplingBenchResult", "WithReplacementOT", "sample_pools", "bench_trainer"]


@dataclass
class CouplingBenchSettings:
    """What ``flowmatch bench coupling`` measures (defaults: the full benchmark, ~15 min on 2 cores)."""

    dims: tuple[int, ...] = (2, 64, 3072)
    batches: tuple[int, ...] = (128, 256, 512, 1024)
    steps: int = 40  # timed training steps per measurement at batch 256 (scaled by 256/batch)
    repeats: int = 5  # interleaved repeats; the tables show medians
    workers: int = 1  # coupling_workers of the prefetched OT-CFM rows
    large: tuple[int, ...] = (4096, 8192, 16384)
    block_size: int = 512
    exact_large_max: int = 4096  # exact full-batch optimum computed up to this batch (for block rows)
    threads: int = 1  # torch threads during the benchmark
    seed: int = 0
    torchcfm: bool = True
    quality: bool = False
    quality_steps: int = 3000
    quality_seeds: int = 3
    quality_block: int = 256

    @classmethod
    def quick(cls, **overrides: Any) -> CouplingBenchSettings:
        """A smoke run: 2D and 64D, batch 128 and 256, few steps, one large batch."""
        base: dict[str, Any] = dict(
            dims=(2, 64),
            batches=(128, 256),
            steps=6,
            repeats=2,
            large=(4096,),
            exact_large_max=0,
            quality_steps=60,
            quality_seeds=1,
        )
        base.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**base)


@dataclass
class CouplingBenchResult:
    """Rows of the three tables, their Markdown, and the files written."""

    rows: list[dict[str, Any]]
    large_rows: list[dict[str, Any]]
    quality_rows: list[dict[str, Any]]
    table: str
    files: dict[str, Path] = field(default_factory=dict)


class WithReplacementOT(Coupling):
    """The exact OT plan sampled with replacement: n pairs iid from P / sum P (TorchCFM's OT-CFM).

    For equal batches P is a permutation / n, so the pairs are n uniform draws (with replacement)
    of the n optimal pairs: about 63% distinct. Here only as the baseline of the quality table.
    """

    def prepare(self, x0, x1, *, cond=None, generator=None, mask=None):
        self.check_mask_support(mask)
        u = torch.rand(x0.shape[0], generator=generator, dtype=torch.float64)
        return lambda: self._solve(x0, x1, u)

    def pair(self, x0, x1, *, generator=None) -> Pairing:
        return self.prepare(x0, x1, generator=generator)()

    def _solve(self, x0, x1, u) -> Pairing:
        n = x0.shape[0]
        perm = ExactOT()(x0, x1).i1.cpu()
        log_plan = torch.full((n, n), -math.inf, dtype=torch.float64)
        log_plan[torch.arange(n), perm] = 0.0
        i0, i1 = pairs_from_plan(log_plan, "joint", (u,))
        return Pairing(i0.to(x0.device), i1.to(x1.device))


# ----------------------------------------------------------------------------------------------
# data


def _mixture(n: int, dim: int, generator: torch.Generator) -> Tensor:
    centres = torch.randn(10, dim, generator=torch.Generator().manual_seed(1234))
    k = torch.randint(0, 10, (n,), generator=generator)
    return centres[k] + 0.5 * torch.randn(n, dim, generator=generator)


def sample_pools(dim: int, n: int, seed: int) -> tuple[Tensor, Tensor]:
    """Source and target training sets (n rows each): N(0, I) -> moons (2D) or the mixture."""
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(n, dim, generator=g)
    x1 = sample_toy("moons", n, generator=g) if dim == 2 else _mixture(n, dim, g)
    return x0, x1


def bench_trainer(
    matcher: FlowMatcher, dim: int, batch: int, steps: int, workers: int, pools: tuple[Tensor, Tensor], seed: int
) -> Trainer:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MLP(dim)
    cfg = TrainerConfig(
        steps=steps,
        batch_size=batch,
        seed=seed,
        quiet=True,
        log_every=10**9,
        checkpoint_every=10**9,
        coupling_workers=workers,
    )
    return Trainer(model, matcher, TensorBatches(pools[0]), TensorBatches(pools[1]), cfg)
