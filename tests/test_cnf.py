"""The maximum-likelihood CNF baseline: its loss is the likelihood of flowmatch.log_likelihood,
its gradient through the solver is the gradient of the Gaussian log-likelihood on a closed-form
flow, training lowers the NLL, and it is a registered method that `flowmatch train` runs."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import flowmatch
from flowmatch.objectives import methods
from flowmatch.objectives.cnf import CNFObjective
from flowmatch.runs.config import RunConfig
from flowmatch.sampling.likelihood import log_likelihood

DT = torch.float64


class AffineFlow(nn.Module):
    """v(t, x) = (s - 1)(x - t m) / (1 - t + t s) + m with learnable m and s = exp(log_s): the flow
    of z -> m + s z, so its model density is exactly N(m, diag(s^2))."""

    def __init__(self, m, log_s):
        super().__init__()
        self.m = nn.Parameter(torch.as_tensor(m, dtype=DT))
        self.log_s = nn.Parameter(torch.as_tensor(log_s, dtype=DT))

    def forward(self, x, t, cond=None):
        s = self.log_s.exp()
        tt = t[:, None].to(x.dtype)
        return (s - 1) * (x - tt * self.m) / (1 - tt + tt * s) + self.m


def test_cnf_loss_is_minus_the_mean_log_likelihood_with_the_same_probes():
    torch.manual_seed(0)
    model = flowmatch.MLP(2, hidden=16).double()
    x1 = torch.randn(32, 2, generator=torch.Generator().manual_seed(1), dtype=DT)
    cnf = CNFObjective(solver="rk4", steps=5, n_probes=2)
    loss = cnf.loss(model, torch.randn(32, 2, dtype=DT), x1, generator=torch.Generator().manual_seed(7))
    ref = log_likelihood(
        model,
        x1,
        divergence="hutchinson",
        n_probes=2,
        solver="rk4",
        steps=5,
        generator=torch.Generator().manual_seed(7),
    )
    torch.testing.assert_close(loss.detach(), -ref.log_prob.mean(), rtol=1e-12, atol=1e-12)
    # x0 is not used; the probes come from the generator only.
    again = cnf.loss(model, None, x1, generator=torch.Generator().manual_seed(7))
    assert float(again.detach()) == float(loss.detach())
    other = cnf.loss(model, None, x1, generator=torch.Generator().manual_seed(8))
    assert float(other.detach()) != float(loss.detach())
    # With many probes it approaches the exact-divergence NLL.
    exact = CNFObjective(solver="rk4", steps=5, divergence="exact").loss(model, None, x1)
    many = CNFObjective(solver="rk4", steps=5, n_probes=200).loss(
        model, None, x1, generator=torch.Generator().manual_seed(9)
    )
    assert abs(float(many.detach()) - float(exact.detach())) < 0.02


@pytest.mark.parametrize("solver,divergence", [("rk4", "exact"), ("rk4", "hutchinson"), ("dopri5", "exact")])
def test_gradient_through_the_solver_is_the_gaussian_mle_gradient(solver, divergence):
    # The affine flow's Jacobian is diagonal, so even one Rademacher probe gives the exact trace.
    m0, log_s0 = [0.5, -1.0], [0.3, -0.4]
    x1 = torch.randn(64, 2, generator=torch.Generator().manual_seed(2), dtype=DT) * 1.5 + 1.0
    model = AffineFlow(m0, log_s0)
    cnf = CNFObjective(solver=solver, steps=24, divergence=divergence, atol=1e-9, rtol=1e-9)
    loss = cnf.loss(model, None, x1, generator=torch.Generator().manual_seed(3))
    loss.backward()
    m, log_s = torch.tensor(m0, dtype=DT, requires_grad=True), torch.tensor(log_s0, dtype=DT, requires_grad=True)
    nll = (0.5 * ((x1 - m) / log_s.exp()) ** 2 + log_s).sum(1).mean() + math.log(2 * math.pi)
    nll.backward()
    assert float(loss.detach()) == pytest.approx(float(nll.detach()), abs=1e-5)
    torch.testing.assert_close(model.m.grad, m.grad, atol=1e-5, rtol=0)
    torch.testing.assert_close(model.log_s.grad, log_s.grad, atol=1e-5, rtol=0)


def test_a_few_cnf_steps_lower_the_nll_of_a_1d_gaussian():
    g = torch.Generator().manual_seed(0)
    data = lambda n: 2.0 + 0.5 * torch.randn(n, 1, generator=g)  # noqa: E731  N(2, 1/4)
    test = data(300)
    torch.manual_seed(0)
    model = flowmatch.MLP(1, hidden=32, depth=2)
    cnf = methods.get("cnf")
    nll_before = log_likelihood(model, test).mean_nll
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(20):
        loss = cnf.loss(model, None, data(64), generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    nll_after = log_likelihood(model, test).mean_nll
    entropy = 0.5 * math.log(2 * math.pi * math.e * 0.25)  # 0.73 nats: no density does better
    assert nll_after < nll_before - 1.0, (nll_before, nll_after)
    assert nll_after > entropy - 0.1, (nll_after, entropy)


def test_cnf_is_a_registered_method_with_a_gaussian_source():
    s = methods.spec("cnf")
    assert s.requires_gaussian_source and not s.simulation_free and s.fixed_sigma
    assert all(methods.spec(n).simulation_free for n in methods.names() if n != "cnf")
    obj = methods.get("cnf")
    assert isinstance(obj, CNFObjective) and obj.name == "cnf"
    assert (obj.solver, obj.divergence, obj.n_probes) == ("rk4", "hutchinson", 1)
    with pytest.raises(ValueError, match="needs --source gaussian, got 'moons'"):
        RunConfig(method="cnf", source="moons", target="8gaussians")
    with pytest.raises(ValueError, match="needs sigma = 0, got 0.1"):
        methods.get("cnf", sigma=0.1)
    with pytest.raises(ValueError, match="unknown divergence 'trace'"):
        CNFObjective(divergence="trace")
    with pytest.raises(ValueError, match="steps must be a positive integer, got 0"):
        CNFObjective(steps=0)


def test_flowmatch_train_method_cnf(tmp_path):
    import csv

    from flowmatch.cli import main
    from flowmatch.runs.run import load_run

    out = tmp_path / "cnf"
    argv = [
        "train",
        "--method",
        "cnf",
        "--target",
        "moons",
        "--steps",
        "4",
        "--batch-size",
        "16",
        "--n-train",
        "100",
        "--n-test",
        "16",
        "--hidden",
        "8",
        "--log-every",
        "2",
        "--eval-steps",
        "2",
        "--threads",
        "1",
        "--quiet",
        "--no-plots",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    with open(out / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [2, 4]
    # The logged loss is a negative log-likelihood in nats of 2D data: about that of N(0, I) on moons.
    run = load_run(out, device="cpu")
    nll = log_likelihood(run.model, run.data.target.train[:64]).mean_nll
    assert abs(float(rows[-1]["loss"]) - nll) < 1.0
