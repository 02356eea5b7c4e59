"""Direct distillation (issue 22): the grid time sampler's law, and a student distilled from the
exact I-CFM field of a Gaussian problem reproduces the teacher's ODE endpoint in one (or two) Euler
steps, where the teacher's own one step collapses onto the mean."""

from __future__ import annotations

import pytest
import torch

from flowmatch.models import MLP
from flowmatch.paths import LinearPath
from flowmatch.sampling.ode import sample
from flowmatch.training.distill import GridTime, distill
from flowmatch.training.trainer import TrainerConfig

M = torch.tensor([1.5, -1.0])
S = torch.tensor([0.5, 2.0])


class Teacher(torch.nn.Module):
    def forward(self, x, t, cond=None):
        return teacher(x, t)


def teacher(x, t, cond=None):
    """The marginal velocity of t x1 + (1 - t) x0 with x0 ~ N(0, I), x1 ~ N(M, S^2) independent:
    x_t ~ N(t M, s_t^2), s_t^2 = (1 - t)^2 + t^2 S^2; its flow maps x0 to M + S x0."""
    tt = t.reshape(-1, 1)
    var = (1 - tt) ** 2 + tt**2 * S**2
    return M + (-(1 - tt) + tt * S**2) / var * (x - tt * M)


def test_grid_time_is_uniform_on_the_euler_grid_and_its_cdf_says_so():
    t = GridTime(4)(40_000, LinearPath(0.0), generator=torch.Generator().manual_seed(0))
    values, counts = torch.unique(t, return_counts=True)
    assert values.tolist() == [0.0, 0.25, 0.5, 0.75]
    assert ((counts / 40_000 - 0.25).abs() < 0.01).all()
    assert GridTime(4).cdf(torch.tensor([0.0, 0.3, 0.75, 1.0])).tolist() == [0.25, 0.5, 1.0, 1.0]
    assert set(GridTime(1)(50, LinearPath(0.0)).tolist()) == {0.0}
    with pytest.raises(ValueError, match="steps"):
        GridTime(0)


@pytest.mark.parametrize("steps", [1, 2])
def test_the_student_lands_on_the_teachers_endpoint_in_k_euler_steps(steps):
    x0 = torch.randn(4000, 2, generator=torch.Generator().manual_seed(0))
    exact = sample(teacher, x0[:500], solver="rk4", steps=50).x
    torch.testing.assert_close(exact, M + S * x0[:500], atol=1e-4, rtol=0)  # the teacher's flow map
    torch.manual_seed(0)
    cfg = TrainerConfig(steps=1500, batch_size=256, lr=2e-3, lr_schedule="cosine", quiet=True, log_every=500)
    res = distill(Teacher(), MLP(2, hidden=64), x0, cfg, steps=steps, solver="rk4", solver_steps=50)
    held = torch.randn(2000, 2, generator=torch.Generator().manual_seed(1))
    out = sample(res.model, held, solver="euler", steps=steps).x
    err = (out - (M + S * held)).norm(dim=1)
    assert float(err.mean()) < 0.03, float(err.mean())  # measured 0.007 at K = 1 and 2
    one = sample(teacher, held, solver="euler", steps=1).x  # the teacher's own one step: the mean
    assert float((one - (M + S * held)).norm(dim=1).mean()) > 1.0


def test_bench_fewstep_distils_the_i_cfm_run_it_trained_once(tmp_path, monkeypatch):
    from flowmatch.bench import fewstep

    calls = []
    real = fewstep._train
    monkeypatch.setattr(fewstep, "_train", lambda cfg: calls.append(cfg.method) or real(cfg))
    settings = fewstep.FewStepSettings.quick(methods=("i-cfm", fewstep.DISTILL))
    res = fewstep.run_fewstep(tmp_path, settings, log=None)
    assert calls == ["i-cfm"]  # the teacher is the i-cfm row's own run
    by = {(r["method"], r["nfe"]): r for r in res.rows}
    assert by[(fewstep.DISTILL, 1)]["train_s"] >= by[("i-cfm", 1)]["train_s"]  # its time includes the teacher's
    alone = fewstep.run_fewstep(tmp_path / "alone", fewstep.FewStepSettings.quick(methods=("i-cfm",)), log=None)
    assert [r["w2"] for r in alone.rows] == [by[("i-cfm", k)]["w2"] for k in fewstep.NFES]
    assert f"| n-moons | {fewstep.DISTILL} |" in (tmp_path / "table.md").read_text()
