"""The schedule change after training and the parametrisation wrapper (issue 18, items 2-3)."""

from __future__ import annotations

import pytest
import torch

from flowmatch import sample
from flowmatch.models.parametrization import AsVelocity, as_velocity
from flowmatch.models.schedule_change import ScheduleTransformedModel
from flowmatch.paths import CondOTScheduler, CosineScheduler, PolynomialScheduler, Scheduler

M = torch.tensor([2.0, -1.0], dtype=torch.float64)
S = torch.tensor([0.5, 1.5], dtype=torch.float64)  # data x1 ~ N(M, diag(S^2)), source N(0, I)


class ExactGaussian(torch.nn.Module):
    """The exact marginal field of N(0, I) -> N(M, diag(S^2)) on ``scheduler``'s path, predicting
    ``param`` (written out here, independently of flowmatch.paths.conversions)."""

    def __init__(self, scheduler: Scheduler, param: str = "velocity"):
        super().__init__()
        self.scheduler, self.param = scheduler, param

    def forward(self, x, t, cond=None):
        out = self.scheduler(t.to(torch.float64))
        a, s, da, ds = (v[:, None] for v in (out.alpha, out.sigma, out.d_alpha, out.d_sigma))
        var = a * a * S * S + s * s
        x1 = M + a * S * S / var * (x - a * M)  # E[x1 | x_t]
        eps = s / var * (x - a * M)  # E[eps | x_t]
        score = -(x - a * M) / var  # = -eps / s, finite at s = 0
        return {"velocity": da * x1 + ds * eps, "x1": x1, "eps": eps, "score": score}[self.param]


def _x0(n: int = 2000) -> torch.Tensor:
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


@pytest.mark.parametrize(
    "old,new",
    [
        (CondOTScheduler(), CosineScheduler()),
        (CosineScheduler(), CondOTScheduler()),
        (CondOTScheduler(), PolynomialScheduler(2.0)),
        (CosineScheduler(), PolynomialScheduler(3.0)),
    ],
    ids=repr,
)
def test_a_schedule_change_of_the_exact_field_keeps_the_ode_end_points(old: Scheduler, new: Scheduler) -> None:
    x0 = _x0()
    reference = sample(ExactGaussian(old), x0, solver="dopri5", atol=1e-9, rtol=1e-9).x
    moved = sample(ScheduleTransformedModel(ExactGaussian(old), old, new), x0, solver="dopri5", atol=1e-9, rtol=1e-9).x
    direct = sample(ExactGaussian(new), x0, solver="dopri5", atol=1e-9, rtol=1e-9).x
    torch.testing.assert_close(moved, reference, rtol=0, atol=1e-5)  # the same map, point by point
    torch.testing.assert_close(moved, direct, rtol=0, atol=1e-5)
    # and the endpoint law is the target's
    torch.testing.assert_close(moved.mean(0), M, rtol=0, atol=5 * float(S.max()) / 2000**0.5)


def test_the_transformed_field_is_the_new_schedulers_exact_field() -> None:
    old, new = CondOTScheduler(), CosineScheduler()
    x = _x0(64) * 2
    r = torch.linspace(0.0, 1.0, 64, dtype=torch.float64)  # both end points included: finite at r = 1
    moved = ScheduleTransformedModel(ExactGaussian(old), old, new)(x, r)
    assert bool(torch.isfinite(moved).all())
    torch.testing.assert_close(moved, ExactGaussian(new)(x, r), rtol=1e-9, atol=1e-9)


def test_rk4_through_the_end_point_is_finite() -> None:
    # rk4's last stage evaluates the field at r = 1, where sigma_r = 0 (Meta's formula divides 0 by 0)
    old, new = CosineScheduler(), CondOTScheduler()
    out = sample(ScheduleTransformedModel(ExactGaussian(old), old, new), _x0(500), solver="rk4", steps=50).x
    assert bool(torch.isfinite(out).all())


@pytest.mark.parametrize("param", ["x1", "eps", "score"])
def test_every_parametrisation_samples_the_same_distribution(param: str) -> None:
    sched = CosineScheduler()
    x0 = _x0()
    reference = sample(ExactGaussian(sched), x0, solver="rk4", steps=200, t_span=(1e-3, 1.0)).x
    field = AsVelocity(ExactGaussian(sched, param), sched, param)
    got = sample(field, x0, solver="rk4", steps=200, t_span=(1e-3, 1.0)).x
    torch.testing.assert_close(got, reference, rtol=0, atol=1e-7)
    torch.testing.assert_close(got.mean(0), M, rtol=0, atol=5 * float(S.max()) / 2000**0.5)
    torch.testing.assert_close(got.std(0), S, rtol=0.1, atol=0)


def test_as_velocity_gives_score_and_predictions() -> None:
    sched = CondOTScheduler()
    x, t = _x0(32), torch.full((32,), 0.4, dtype=torch.float64)
    field = as_velocity(ExactGaussian(sched, "eps"), sched, "eps")
    torch.testing.assert_close(field.score(x, t), ExactGaussian(sched, "score")(x, t))
    torch.testing.assert_close(field.predict("x1", x, t), ExactGaussian(sched, "x1")(x, t))
    plain = ExactGaussian(sched)
    assert as_velocity(plain, sched, "velocity") is plain
    with pytest.raises(ValueError, match="unknown parametrisation"):
        AsVelocity(plain, sched, "noise")
