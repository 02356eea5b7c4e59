"""Meta's ``flow_matching`` package (Lipman et al. 2024, "Flow Matching Guide and Code") on the
data of ``flowmatch bench manifold``, where it is installed: its :class:`GeodesicProbPath` with the
CondOT scheduler (x_t = exp_{x0}(t log_{x0}(x1)), the same geodesic path), independent pairs (it
has no OT coupling), the same network (:class:`~flowmatch.models.manifold.ManifoldMLP`), optimiser,
batch size and steps, and its :class:`RiemannianODESolver` (projected Euler) for sampling. Its
torus is [0, 2 pi)^d: points are moved to it and back, which the periodic network does not notice.
The package computes no Riemannian likelihood, so the NLL of its model is ours
(:func:`flowmatch.sampling.manifold.manifold_log_prob`) on its trained field.
"""

from __future__ import annotations

import importlib.util
import math
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from flowmatch.manifolds import FlatTorus, Manifold, wrap
from flowmatch.models.manifold import ManifoldMLP

__all__ = ["meta_available", "train_meta", "sample_meta"]


def meta_available() -> bool:
    """Whether ``flow_matching`` (Meta) can be imported."""
    return importlib.util.find_spec("flow_matching") is not None


def _meta_manifold(m: Manifold):
    from flow_matching.utils.manifolds import FlatTorus as MetaTorus  # type: ignore[import-untyped]
    from flow_matching.utils.manifolds import Sphere as MetaSphere

    return MetaTorus() if isinstance(m, FlatTorus) else MetaSphere()


def _to_meta(m: Manifold, x: Tensor) -> Tensor:
    return torch.remainder(x, 2 * math.pi) if isinstance(m, FlatTorus) else x


def train_meta(
    m: Manifold,
    train: Tensor,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    hidden: int,
    depth: int,
    seed: int,
) -> tuple[nn.Module, float]:
    """A ManifoldMLP trained by Meta's geodesic path on independent (uniform, data) pairs;
    returns (model, seconds)."""
    from flow_matching.path import GeodesicProbPath  # type: ignore[import-untyped]
    from flow_matching.path.scheduler import CondOTScheduler  # type: ignore[import-untyped]

    torch.manual_seed(seed)
    model = ManifoldMLP(m, hidden=hidden, depth=depth)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    path = GeodesicProbPath(CondOTScheduler(), _meta_manifold(m))
    g = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    for _ in range(steps):
        x1 = _to_meta(m, train[torch.randint(0, train.shape[0], (batch_size,), generator=g)])
        x0 = _to_meta(m, m.random_uniform(batch_size, generator=g))
        t = torch.rand(batch_size, generator=g)
        s = path.sample(x_0=x0, x_1=x1, t=t)
        loss = ((model(s.x_t, t) - s.dx_t) ** 2).sum(-1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval(), time.perf_counter() - t0


def sample_meta(m: Manifold, model: Callable[..., Tensor], x0: Tensor, steps: int) -> Tensor:
    """x0 pushed by Meta's RiemannianODESolver (projected Euler, ``steps`` uniform steps), in our chart."""
    from flow_matching.solver import RiemannianODESolver  # type: ignore[import-untyped]
    from flow_matching.utils import ModelWrapper  # type: ignore[import-untyped]

    class _Wrapped(ModelWrapper):
        def forward(self, x: Tensor, t: Tensor, **extras) -> Tensor:
            return self.model(x, t.reshape(()).expand(x.shape[0]).to(x.dtype))

    solver = RiemannianODESolver(_meta_manifold(m), _Wrapped(model))
    grid = torch.linspace(0, 1, steps + 1)
    with torch.no_grad():
        x = solver.sample(_to_meta(m, x0), step_size=None, method="euler", time_grid=grid)
    return wrap(x) if isinstance(m, FlatTorus) else x
