"""Consistency flow matching (issue 22): the loss vanishes exactly on a straight flow's own pairs
and not on a wrong field, a constant field's loss is flow matching's, the two times lie on one
conditional path within one segment, and training on independent pairs gives one-step (and
K-segment, K-step) samples with the target's spread where flow matching's one step collapses."""

from __future__ import annotations

import pytest
import torch

from flowmatch.models import MLP
from flowmatch.objectives import FlowMatcher
from flowmatch.objectives.consistency import ConsistencyMatcher, segment_end
from flowmatch.paths import LinearPath
from flowmatch.sampling.ode import sample

M = torch.tensor([1.5, -1.0])
S = torch.tensor([0.5, 2.0])


def straight_v(x, t, cond=None):
    """The velocity of the straight flow x_t = (1 - t) z + t (S z + M): x1 - x0 = (S - 1) z + M."""
    tt = t.reshape(-1, 1)
    z = (x - tt * M) / (1 - tt + tt * S)
    return (S - 1) * z + M


class Constant(torch.nn.Module):
    def __init__(self, b):
        super().__init__()
        self.b = torch.nn.Parameter(b.clone())

    def forward(self, x, t, cond=None):
        return self.b.expand_as(x)


@pytest.mark.parametrize("segments", [1, 3])
def test_a_straight_flow_has_zero_loss_on_its_own_pairs_and_a_wrong_field_does_not(segments):
    z = torch.randn(512, 2, generator=torch.Generator().manual_seed(0))
    x0, x1 = z, S * z + M  # the flow's own deterministic coupling: the conditional path is the flow
    cm = ConsistencyMatcher(LinearPath(0.0), segments=segments, delta=1e-2, alpha=1e-3)
    loss = cm.loss(straight_v, x0, x1, generator=torch.Generator().manual_seed(1))
    assert float(loss) < 1e-9

    def wrong(x, t, cond=None):  # right at t = 0, bent later
        return straight_v(x, t) + 0.5 * t.reshape(-1, 1) * x

    assert float(cm.loss(wrong, x0, x1, generator=torch.Generator().manual_seed(1))) > 1e-2


def test_a_constant_fields_loss_is_the_flow_matching_loss():
    b = torch.tensor([0.3, -0.2])
    x0, x1 = torch.randn(256, 2), torch.randn(256, 2) * S + M
    cm = ConsistencyMatcher(LinearPath(0.0), delta=1e-3, alpha=0.7)
    s = cm.sample(x0, x1, generator=torch.Generator().manual_seed(0))
    expected = ((b - (s.x1 - s.x0)) ** 2).mean()
    torch.testing.assert_close(cm.regression_loss(Constant(b), s), expected, rtol=1e-4, atol=0)
    fm = FlowMatcher(LinearPath(0.0)).loss(Constant(b), x0, x1, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(cm.regression_loss(Constant(b), s), fm, rtol=1e-4, atol=0)


def test_the_two_times_lie_on_one_path_within_one_segment():
    cm = ConsistencyMatcher(LinearPath(0.2), segments=4, delta=0.05)
    x0, x1 = torch.randn(4000, 2), torch.randn(4000, 2)
    s = cm.sample(x0, x1, generator=torch.Generator().manual_seed(0))
    assert bool((s.t >= 0).all()) and bool((s.t <= 1 - 0.05).all())
    torch.testing.assert_close(s.end, segment_end(s.t, 4))
    torch.testing.assert_close(s.r, torch.minimum(s.t + 0.05, s.end))
    assert set(torch.unique(s.end).tolist()) == {0.25, 0.5, 0.75, 1.0}
    assert bool(((s.end - s.t > 0) & (s.end - s.t <= 0.25 + 1e-7)).all())
    assert bool((s.r == s.end).any()) and bool((s.r < s.end).any())  # both cases occur
    path = LinearPath(0.2)
    torch.testing.assert_close(s.x_r, path.x_t(s.x0, s.x1, s.r, s.eps))  # same pair, same noise
    torch.testing.assert_close(s.x_t, path.x_t(s.x0, s.x1, s.t, s.eps))
    assert segment_end(torch.tensor([0.0, 0.2499, 0.25, 1.0]), 4).tolist() == [0.25, 0.25, 0.5, 1.0]


def _train(matcher, steps=1500, seed=0):
    m, s = M, S
    torch.manual_seed(seed)
    net = MLP(2, hidden=64)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    decay = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1 - i / steps)  # a settled last iterate
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        loss = matcher.loss(
            net, torch.randn(256, 2, generator=g), m + s * torch.randn(256, 2, generator=g), generator=g
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        decay.step()
    return net


@pytest.mark.parametrize("segments", [1, 2])
def test_training_on_independent_pairs_gives_few_step_samples_with_the_targets_spread(segments):
    net = _train(ConsistencyMatcher(LinearPath(0.0), segments=segments, delta=1e-2))
    x0 = torch.randn(4000, 2, generator=torch.Generator().manual_seed(1))
    out = sample(net, x0, solver="euler", steps=segments).x
    assert (out.mean(0) - M).abs().max() < 0.15, out.mean(0)
    assert ((out.std(0) - S).abs() / S).max() < 0.2, out.std(0)
    if segments == 1:  # flow matching's one Euler step lands near the mean, E[x1 - x0 | x0] = M - x0
        fm_net = _train(FlowMatcher(LinearPath(0.0)))
        one = sample(fm_net, x0, solver="euler", steps=1).x
        assert (one.std(0) / S).max() < 0.5, one.std(0)


def test_bad_settings_raise_one_line():
    with pytest.raises(ValueError, match="delta must be shorter than a segment"):
        ConsistencyMatcher(LinearPath(0.0), segments=4, delta=0.3)
    with pytest.raises(ValueError, match="segments"):
        ConsistencyMatcher(LinearPath(0.0), segments=0)
    with pytest.raises(ValueError, match="delta"):
        ConsistencyMatcher(LinearPath(0.0), delta=0.0)
    with pytest.raises(ValueError, match="alpha"):
        ConsistencyMatcher(LinearPath(0.0), alpha=-1.0)
