"""Training with x1-, eps- and score-prediction (issue 18, item 2)."""

from __future__ import annotations

import pytest
import torch

from flowmatch import MLP, sample
from flowmatch.models.parametrization import AsVelocity
from flowmatch.objectives import FlowMatcher, UniformTime
from flowmatch.paths import AffinePath, CondOTScheduler, CosineScheduler, LinearPath, VPScheduler

PARAMS = ["velocity", "x1", "eps", "score"]


def _batch(n: int = 256, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, generator=g), torch.randn(n, 2, generator=g) * 0.5 + torch.tensor([2.0, -1.0])


@pytest.mark.parametrize("scheduler", [CondOTScheduler(), CosineScheduler(), VPScheduler()], ids=repr)
@pytest.mark.parametrize("param", PARAMS)
def test_velocity_weighting_makes_every_loss_the_velocity_loss(scheduler, param: str) -> None:
    torch.manual_seed(0)
    net = MLP(2, hidden=32)
    # inside [0.3, 0.9] every scheduler here has alpha, sigma > VELOCITY_CLIP: no clipping
    fm = FlowMatcher(
        AffinePath(scheduler), time_sampler=UniformTime(0.3, 0.9), target_param=param, loss_weighting="velocity"
    )
    x0, x1 = _batch()
    s = fm.sample(x0, x1, generator=torch.Generator().manual_seed(1))
    ours = fm.regression_loss(net, s)
    as_velocity = FlowMatcher.loss_from_sample(AsVelocity(net, scheduler, param), s)
    torch.testing.assert_close(ours, as_velocity, rtol=1e-4, atol=0)


def test_default_weightings_are_the_usual_losses() -> None:
    torch.manual_seed(0)
    net = MLP(2, hidden=32)
    sched = CosineScheduler()
    x0, x1 = _batch()
    for param, target, weight in [
        ("x1", lambda s, sg: s.x1, lambda sg: 1.0),
        ("eps", lambda s, sg: s.x0, lambda sg: 1.0),
        ("score", lambda s, sg: -s.x0 / sg, lambda sg: sg**2),
    ]:
        fm = FlowMatcher(AffinePath(sched), target_param=param)
        s = fm.sample(x0, x1, generator=torch.Generator().manual_seed(2))
        sg = sched(s.t).sigma[:, None]
        expected = (weight(sg) * (net(s.x_t, s.t) - target(s, sg)) ** 2).mean()
        torch.testing.assert_close(fm.regression_loss(net, s), expected, rtol=1e-5, atol=0)
        torch.testing.assert_close(fm.loss(net, x0, x1, generator=torch.Generator().manual_seed(2)), expected)


# eps-prediction is left out: its velocity multiplies the network's error by D / alpha_t, which is
# 1 / t on CondOT, and after 600 steps it samples a std of 0.6-0.8 instead of 0.5 under either
# weighting (measured; `flowmatch bench paths` reports it beside the others).
@pytest.mark.parametrize(
    ("param", "weighting"), [("velocity", "default"), ("x1", "default"), ("x1", "velocity"), ("score", "default")]
)
def test_each_parametrisation_trains_and_samples_the_target(param: str, weighting: str) -> None:
    torch.manual_seed(0)
    sched = CondOTScheduler()
    net = MLP(2, hidden=64)
    fm = FlowMatcher(AffinePath(sched), target_param=param, loss_weighting=weighting)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(3)
    for step in range(600):
        x0, x1 = _batch(256, seed=100 + step)
        loss = fm.loss(net, x0, x1, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    field = AsVelocity(net, sched, param)
    t0 = 0.0 if param in ("velocity", "x1") else 0.02  # eps and score do not identify x1 at alpha = 0
    z = torch.randn(4000, 2, generator=torch.Generator().manual_seed(4))
    # up to t = 0.95, then the denoised prediction E[x1 | x_t] (near the data end the velocity of an
    # x1- or eps-network divides its error by sigma_t, so samplers end on the prediction, as DDIM does)
    x_end = sample(field, z, solver="midpoint", steps=50, t_span=(t0, 0.95)).x
    x = field.predict("x1", x_end, torch.full((4000,), 0.95))
    torch.testing.assert_close(x.mean(0), torch.tensor([2.0, -1.0]), rtol=0, atol=0.12)
    torch.testing.assert_close(x.std(0), torch.tensor([0.5, 0.5]), rtol=0, atol=0.12)


def test_non_gaussian_paths_refuse_other_parametrisations_in_one_line() -> None:
    with pytest.raises(ValueError, match="target parametrisation 'eps' needs an affine Gaussian path"):
        FlowMatcher(LinearPath(0.1), target_param="eps")
    with pytest.raises(ValueError, match="unknown target parametrisation"):
        FlowMatcher(AffinePath(CondOTScheduler()), target_param="noise")
    with pytest.raises(ValueError, match="unknown loss weighting"):
        FlowMatcher(AffinePath(CondOTScheduler()), target_param="x1", loss_weighting="snr")
    assert "target_param='x1'" in repr(FlowMatcher(AffinePath(CondOTScheduler()), target_param="x1"))
