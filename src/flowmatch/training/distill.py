"""Distillation of a trained flow into a few-step student, directly on its (x0, ODE(x0)) pairs.

Liu, Gong & Liu (ICLR 2023, section 2.3) distil a rectified flow into one step by regressing the
student at t = 0 only: v_s(x0, 0) = ODE(x0) - x0, so one Euler step x0 + v_s(x0, 0) is the
teacher's endpoint. For K steps the student is trained at the grid times t = k / K on the straight
line between the pair, x_t = t x1 + (1 - t) x0, with the same target x1 - x0: its own Euler iterates
then stay on that line, so K steps from x0 land on x1 = ODE(x0) wherever the fit is exact (at K = 1
the grid holds only t = 0, where the sources never cross, so the target is a function of x0).

The pairs come from :func:`flowmatch.training.reflow.reflow_pairs` and the training from
:func:`flowmatch.training.reflow.train_on_pairs` (Trainer, checkpoints, resume), with the time
sampler :class:`GridTime`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from flowmatch._utils.validate import check_positive_int
from flowmatch.objectives.cfm import FlowMatcher
from flowmatch.objectives.time_samplers import TimeSampler
from flowmatch.paths import LinearPath
from flowmatch.training.reflow import ReflowResult, reflow_pairs, train_on_pairs
from flowmatch.training.trainer import TrainerConfig

__all__ = ["GridTime", "distill_matcher", "distill"]


class GridTime(TimeSampler):
    """t uniform on the K-step Euler grid {0, 1/K, ..., (K - 1)/K} of [0, 1] (K = 1: always 0).

    Example:
        >>> import torch
        >>> from flowmatch.paths import LinearPath
        >>> sorted(set(GridTime(4)(100, LinearPath(0.0), generator=torch.Generator().manual_seed(0)).tolist()))
        [0.0, 0.25, 0.5, 0.75]
    """

    repr_fields = ("steps",)

    def __init__(self, steps: int):
        self.steps = check_positive_int("steps", steps)

    def sample_unit(self, n: int, *, device=None, dtype: torch.dtype = torch.float32, generator=None) -> Tensor:
        """k / K with k uniform in 0 .. K - 1."""
        k = torch.randint(0, self.steps, (n,), device=device, generator=generator)
        return k.to(dtype) / self.steps

    def cdf(self, u: Tensor) -> Tensor:
        """P(k / K <= u) = min(floor(K u) + 1, K) / K."""
        u = torch.as_tensor(u, dtype=torch.float64).clamp(0.0, 1.0)
        return torch.clamp(torch.floor(u * self.steps) + 1, max=self.steps) / self.steps


def distill_matcher(steps: int = 1) -> FlowMatcher:
    """The student's objective: the straight path between the pair (sigma = 0), identity coupling,
    t on the K-step grid."""
    return FlowMatcher(LinearPath(0.0), time_sampler=GridTime(steps), name=f"distill-{steps}")


def distill(
    teacher: nn.Module,
    student: nn.Module,
    x0: Tensor,
    config: TrainerConfig,
    *,
    steps: int = 1,
    solver: str = "dopri5",
    solver_steps: int = 100,
    atol: float = 1e-5,
    rtol: float = 1e-5,
    device: str | torch.device = "cpu",
    run_dir: str | Path | None = None,
    resume: bool = False,
) -> ReflowResult:
    """Distil ``teacher`` into a ``steps``-step Euler sampler trained from a copy of ``student``.

    Args:
        teacher: a trained velocity field ``model(x, t, cond=None)``; not modified.
        student: the student's initial network (a fresh one, or the teacher to warm-start).
        x0: source samples whose teacher trajectories are distilled ``(N, *dims)``.
        config: optimisation settings (batch size <= N).
        steps: K, the student's number of Euler steps.
        solver: the teacher's solver (:func:`flowmatch.ode_solvers`); ``solver_steps`` for fixed-step ones.
        solver_steps: steps of a fixed-step teacher solver.
        atol: tolerance of an adaptive teacher solver.
        rtol: tolerance of an adaptive teacher solver.
        device: as for :class:`~flowmatch.training.trainer.Trainer`.
        run_dir: as for :class:`~flowmatch.training.trainer.Trainer`.
        resume: as for :class:`~flowmatch.training.trainer.Trainer`.

    Returns:
        :class:`~flowmatch.training.reflow.ReflowResult`: the student (sample it with
        ``solver="euler", steps=K``), the teacher's pairs and the training summary.
    """
    k = check_positive_int("steps", steps)
    pairs = reflow_pairs(teacher, x0, solver=solver, steps=solver_steps, atol=atol, rtol=rtol)
    return train_on_pairs(
        student,
        pairs,
        config,
        matcher=distill_matcher(k),
        device=device,
        run_dir=run_dir,
        resume=resume,
        metadata={"distill_steps": k},
    )
