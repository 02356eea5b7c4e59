"""Shortcut models (issue 22): self-consistency holds exactly for the exact average velocity of a
Gaussian path, the sampled steps are the paper's dyadic grid, consistency 0 is flow matching, and
training gives one-step samples with the target's spread."""

from __future__ import annotations

import pytest
import torch

from flowmatch.models.average import AverageVelocityMLP
from flowmatch.objectives import FlowMatcher
from flowmatch.objectives.shortcut import ShortcutMatcher, shortcut_target
from flowmatch.paths import LinearPath
from flowmatch.sampling.average import sample_average
from test_meanflow import M, S, _points, affine_u


def test_two_exact_steps_of_d_are_the_exact_step_of_2d():
    x, t, h = _points(seed=7)
    d = h / 2
    torch.testing.assert_close(shortcut_target(affine_u, x, t, d), affine_u(x, t, h=2 * d), atol=1e-10, rtol=0)

    def wrong(x, t, cond=None, h=None):  # a field with the right velocity and a wrong curvature in h
        return affine_u(x, t, h=h) + 0.3 * h[:, None] * x

    assert (shortcut_target(wrong, x, t, d) - wrong(x, t, h=2 * d)).abs().max() > 1e-2


def test_steps_and_times_are_the_dyadic_grid():
    sm = ShortcutMatcher(LinearPath(0.0), consistency=0.5, min_step=1 / 16)
    x0, x1 = torch.randn(4000, 2), torch.randn(4000, 2)
    s = sm.sample(x0, x1, generator=torch.Generator().manual_seed(0))
    d = s.h[s.h > 0]
    assert 0.45 < len(d) / 4000 < 0.55
    assert set(torch.unique(d).tolist()) == {1 / 2, 1 / 4, 1 / 8, 1 / 16}
    t = s.t[s.h > 0]
    assert torch.allclose(t / (2 * d), torch.round(t / (2 * d))) and bool((t + 2 * d <= 1).all())
    torch.testing.assert_close(s.x_t, s.t[:, None] * s.x1 + (1 - s.t[:, None]) * s.x0)


def test_consistency_0_is_the_flow_matching_loss():
    torch.manual_seed(1)
    net = AverageVelocityMLP(2, hidden=16)
    x0, x1 = torch.randn(64, 2), torch.randn(64, 2) + 2
    ours = ShortcutMatcher(LinearPath(0.1), consistency=0.0).loss(
        net, x0, x1, generator=torch.Generator().manual_seed(2)
    )
    theirs = FlowMatcher(LinearPath(0.1)).loss(net, x0, x1, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(ours, theirs)


def test_shortcut_training_gives_one_step_samples_with_the_targets_spread():
    m, s = M.float(), S.float()
    torch.manual_seed(0)
    net = AverageVelocityMLP(2, hidden=64)
    sm = ShortcutMatcher(LinearPath(0.0), consistency=0.5, min_step=1 / 8)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(1500):
        loss = sm.loss(net, torch.randn(256, 2, generator=g), m + s * torch.randn(256, 2, generator=g), generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    x0 = torch.randn(4000, 2, generator=torch.Generator().manual_seed(1))
    one = sample_average(net, x0, steps=1).x
    assert (one.mean(0) - m).abs().max() < 0.15, one.mean(0)
    assert ((one.std(0) - s).abs() / s).max() < 0.2, one.std(0)


def test_bad_settings_raise_one_line():
    with pytest.raises(ValueError, match="min_step must be 1 / 2\\^k"):
        ShortcutMatcher(LinearPath(0.0), min_step=0.3)
    with pytest.raises(ValueError, match="consistency"):
        ShortcutMatcher(LinearPath(0.0), consistency=-0.1)
