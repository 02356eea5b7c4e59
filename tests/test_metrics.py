"""Mathematical checks of flowmatch.metrics: closed forms and brute-force optima."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.stats import wasserstein_distance

from flowmatch.metrics import (
    SampleQuality,
    median_pairwise_distance,
    mmd_rbf,
    normalized_path_energy,
    path_energy,
    sample_quality,
    straightness,
    w1,
    w2,
    wasserstein,
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=_gen(seed), dtype=torch.float64)


def _brute_force_assignment(x: np.ndarray, y: np.ndarray, p: float) -> tuple[float, tuple]:
    """min over permutations sigma of mean_i ||x_i - y_sigma(i)||^p, and the argmin."""
    cost = np.linalg.norm(x[:, None, :] - y[None, :, :], axis=-1) ** p
    n = x.shape[0]
    best, arg = math.inf, None
    for perm in itertools.permutations(range(n)):
        c = cost[np.arange(n), perm].mean()
        if c < best:
            best, arg = c, perm
    return best, arg


def _random_grid(t: int, seed: int) -> torch.Tensor:
    """A non-uniform grid of t intervals from 0 to 1."""
    inner = torch.rand(t - 1, generator=_gen(seed), dtype=torch.float64).sort().values
    return torch.cat([torch.zeros(1, dtype=torch.float64), inner, torch.ones(1, dtype=torch.float64)])


def _euler(field, x0: torch.Tensor, times: torch.Tensor, cond=None) -> torch.Tensor:
    """Explicit Euler trajectory (T+1, n, *dims) of a velocity model on ``times``."""
    xs = [x0]
    x = x0
    for k in range(times.shape[0] - 1):
        t = torch.full((x.shape[0],), float(times[k]), dtype=x.dtype)
        v = field(x, t) if cond is None else field(x, t, cond=cond)
        x = x + (times[k + 1] - times[k]) * v
        xs.append(x)
    return torch.stack(xs)


class Constant(torch.nn.Module):
    """v(t, x) = c."""

    def __init__(self, c: torch.Tensor) -> None:
        super().__init__()
        self.c = c

    def forward(self, x, t, cond=None):
        return self.c.expand_as(x).clone()


class Rotation(torch.nn.Module):
    """v(t, x) = A x with A = omega [[0, -1], [1, 0]] (rigid rotation at angular speed omega)."""

    def __init__(self, omega: float) -> None:
        super().__init__()
        self.A = torch.tensor([[0.0, -omega], [omega, 0.0]], dtype=torch.float64)
        self.calls = 0

    def forward(self, x, t, cond=None):
        self.calls += 1
        return x @ self.A.T


class CondVelocity(torch.nn.Module):
    """v(t, x, cond) = cond (a per-sample constant velocity)."""

    def forward(self, x, t, cond=None):
        return cond.clone()


# --------------------------------------------------------------------------------------------
# Wasserstein
# --------------------------------------------------------------------------------------------


def test_w2_of_a_set_with_itself_is_zero():
    x = _randn(50, 3, seed=0)
    assert w2(x, x) == pytest.approx(0.0, abs=1e-12)
    assert w1(x, x.clone()) == pytest.approx(0.0, abs=1e-12)


def test_w2_of_a_translation_is_the_shift_norm():
    # sum_i ||x_i - x_sigma(i) - c||^2 = sum_i ||x_i - x_sigma(i)||^2 + n ||c||^2 >= n ||c||^2,
    # so the identity matching is optimal and W2 = ||c|| exactly.
    x = _randn(64, 2, seed=1)
    c = torch.tensor([3.0, -1.5], dtype=torch.float64)
    assert w2(x, x + c) == pytest.approx(float(c.norm()), rel=1e-10)
    assert w2(x + c, x) == pytest.approx(float(c.norm()), rel=1e-10)


def test_w1_and_w2_equal_the_brute_force_optimum_over_permutations():
    # Birkhoff: with n = m and uniform weights an optimal plan is a permutation.
    x = _randn(6, 2, seed=2).numpy()
    y = (_randn(6, 2, seed=3) + 0.5).numpy()
    best1, _ = _brute_force_assignment(x, y, 1.0)
    best2, _ = _brute_force_assignment(x, y, 2.0)
    best3, _ = _brute_force_assignment(x, y, 3.0)
    assert w1(x, y) == pytest.approx(best1, rel=1e-10)
    assert w2(x, y) == pytest.approx(math.sqrt(best2), rel=1e-10)
    assert wasserstein(x, y, p=3) == pytest.approx(best3 ** (1 / 3), rel=1e-10)


def test_w2_squared_in_1d_equals_the_sorted_matching():
    x = _randn(200, seed=4)
    y = 2.0 * _randn(200, seed=5) + 1.0
    expected = float(((x.sort().values - y.sort().values) ** 2).mean())
    assert w2(x, y) ** 2 == pytest.approx(expected, rel=1e-10)
    assert w2(x[:, None], y[:, None]) ** 2 == pytest.approx(expected, rel=1e-10)


def test_weighted_w1_in_1d_matches_scipy_for_unequal_sizes():
    x = _randn(30, seed=6).numpy()
    y = (_randn(45, seed=7) * 0.5 + 2.0).numpy()
    a = np.linspace(1.0, 2.0, 30)
    b = np.linspace(3.0, 1.0, 45)
    expected = wasserstein_distance(x, y, u_weights=a, v_weights=b)
    assert w1(x, y, a=a, b=b) == pytest.approx(expected, rel=1e-9)
    assert w1(x, y) == pytest.approx(wasserstein_distance(x, y), rel=1e-9)


def test_samples_of_shape_n_by_dims_are_flattened():
    x = _randn(20, 1, 2, 2, seed=8)
    y = _randn(20, 1, 2, 2, seed=9)
    assert w2(x, y) == pytest.approx(w2(x.reshape(20, 4), y.reshape(20, 4)), rel=1e-12)


def test_non_convergence_is_an_error_not_a_silent_value():
    x, y = _randn(60, 2, seed=10), _randn(59, 2, seed=11)  # unequal sizes: POT's network simplex
    with pytest.raises(RuntimeError, match="num_iter_max"):
        w2(x, y, num_iter_max=3)


def test_equal_size_sets_are_solved_as_an_assignment_equal_to_pots_optimum(monkeypatch):
    import ot
    from scipy.spatial.distance import cdist

    x, y = _randn(300, 3, seed=12), _randn(300, 3, seed=13) * 2 + 1
    w = np.full(300, 1 / 300)
    ref2 = ot.emd2(w, w, cdist(x.numpy(), y.numpy(), "sqeuclidean")) ** 0.5
    ref1 = ot.emd2(w, w, cdist(x.numpy(), y.numpy()))
    calls = []
    monkeypatch.setattr(ot, "emd2", lambda *a, **k: calls.append(1) or (_ for _ in ()).throw(AssertionError))
    assert w2(x, y) == pytest.approx(ref2, rel=1e-9)  # the certified gap is 1e-9 relative
    assert w1(x, y) == pytest.approx(ref1, rel=1e-9)
    assert calls == []  # POT was not called
    with pytest.raises(AssertionError):  # weights or unequal sizes still go to POT
        w2(x, y[:299])


# --------------------------------------------------------------------------------------------
# MMD
# --------------------------------------------------------------------------------------------


def _mmd_brute(x: np.ndarray, y: np.ndarray, bws) -> float:
    def k(u, v):
        return sum(math.exp(-float(((u - v) ** 2).sum()) / (2 * s * s)) for s in bws)

    n, m = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kxy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return kxx + kyy - 2 * kxy


def test_mmd_equals_the_unbiased_u_statistic():
    x = _randn(5, 3, seed=12).numpy()
    y = (_randn(7, 3, seed=13) + 0.3).numpy()
    bws = (0.7, 1.9)
    assert mmd_rbf(x, y, bandwidths=bws) == pytest.approx(_mmd_brute(x, y, bws), rel=1e-10)


def test_mmd_default_bandwidths_are_the_median_heuristic():
    x = _randn(9, 2, seed=14).numpy()
    y = (_randn(8, 2, seed=15) * 2).numpy()
    z = np.concatenate([x, y])
    med = float(np.median([np.linalg.norm(a - b) for a, b in itertools.combinations(z, 2)]))
    assert median_pairwise_distance(x, y) == pytest.approx(med, rel=1e-12)
    expected = _mmd_brute(x, y, (0.5 * med, med, 2 * med))
    assert mmd_rbf(x, y) == pytest.approx(expected, rel=1e-10)


def test_mmd_is_near_zero_for_equal_and_positive_for_shifted_distributions():
    x = _randn(1000, 2, seed=16)
    y = _randn(1000, 2, seed=17)
    same = mmd_rbf(x, y)
    shifted = mmd_rbf(x, y + torch.tensor([1.0, 0.0], dtype=torch.float64))
    assert abs(same) < 5e-3
    assert shifted > 0.1
    assert shifted > 20 * abs(same)


# --------------------------------------------------------------------------------------------
# Path energy and NPE
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("grid", ["uniform", "random"])
def test_path_energy_of_straight_constant_speed_paths_is_the_mean_squared_chord(grid):
    x0, x1 = _randn(40, 3, seed=18), _randn(40, 3, seed=19) + 2.0
    times = torch.linspace(0, 1, 8, dtype=torch.float64) if grid == "uniform" else _random_grid(13, 20)
    traj = x0[None] + times[:, None, None] * (x1 - x0)[None]
    expected = float(((x1 - x0) ** 2).sum(-1).mean())
    assert path_energy(traj, times) == pytest.approx(expected, rel=1e-10)


def test_path_energy_of_a_half_circle_has_its_closed_form_and_exceeds_the_chord():
    # x(t) = r (cos(pi t), sin(pi t)) on T uniform steps: each step is a chord of length
    # 2 r sin(pi / (2T)), so E = T * (2 r sin(pi/(2T)))^2 * T -> (pi r)^2 > (2r)^2 = ||x1 - x0||^2.
    r, steps = 1.5, 50
    times = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
    traj = (r * torch.stack([torch.cos(math.pi * times), torch.sin(math.pi * times)], -1))[:, None]
    energy = path_energy(traj, times)
    assert energy == pytest.approx(4 * r**2 * steps**2 * math.sin(math.pi / (2 * steps)) ** 2, rel=1e-12)
    assert energy > 4 * r**2 * 1.5
    assert energy == pytest.approx((math.pi * r) ** 2, rel=1e-3)


def test_path_energy_of_an_euler_trajectory_is_the_left_riemann_sum_of_speed_squared():
    field = Rotation(1.3)
    times = _random_grid(17, 21)
    x0 = _randn(25, 2, seed=22)
    traj = _euler(field, x0, times)
    dt = times[1:] - times[:-1]
    riemann = sum(float(dt[k]) * float((field(traj[k], None) ** 2).sum(-1).mean()) for k in range(17))
    assert path_energy(traj, times) == pytest.approx(riemann, rel=1e-12)


def test_npe_is_zero_for_straight_paths_of_the_exact_ot_matching():
    x0 = _randn(7, 2, seed=23)
    x1 = _randn(7, 2, seed=24) * 0.5 + torch.tensor([2.0, 1.0], dtype=torch.float64)
    w2sq, perm = _brute_force_assignment(x0.numpy(), x1.numpy(), 2.0)
    target = x1[list(perm)]
    times = torch.tensor([0.0, 0.1, 0.35, 0.7, 1.0], dtype=torch.float64)
    traj = x0[None] + times[:, None, None] * (target - x0)[None]
    assert normalized_path_energy(traj, times, x0, x1) == pytest.approx(0.0, abs=1e-10)

    # Independent (identity) pairing: not optimal here, so the paths carry excess energy.
    ident_cost = float(((x1 - x0) ** 2).sum(-1).mean())
    assert ident_cost > 1.05 * w2sq
    traj_ind = x0[None] + times[:, None, None] * (x1 - x0)[None]
    npe = normalized_path_energy(traj_ind, times, x0, x1)
    assert npe == pytest.approx((ident_cost - w2sq) / w2sq, rel=1e-9)
    assert npe > 0.05


def test_npe_requires_times_from_0_to_1_and_a_positive_w2():
    x0 = _randn(5, 2, seed=25)
    times = torch.linspace(0, 0.5, 3, dtype=torch.float64)
    traj = torch.stack([x0] * 3)
    with pytest.raises(ValueError, match="0.5"):
        normalized_path_energy(traj, times, x0, x0 + 1)
    with pytest.raises(ValueError, match="W2"):
        normalized_path_energy(traj, torch.linspace(0, 1, 3), x0, x0)
    with pytest.raises(ValueError, match="W2"):  # a given W2^2 is checked the same way
        normalized_path_energy(traj, torch.linspace(0, 1, 3), x0, x0 + 1, w2sq=0.0)


def test_npe_with_a_given_w2_squared_uses_it():
    x0, x1 = _randn(9, 2, seed=26), _randn(9, 2, seed=27) + 3
    times = torch.linspace(0, 1, 5, dtype=torch.float64)
    traj = x0[None] + times[:, None, None] * (x1 - x0)[None]
    w2sq = w2(x0, x1) ** 2
    assert normalized_path_energy(traj, times, x0, x1, w2sq=w2sq) == pytest.approx(
        normalized_path_energy(traj, times, x0, x1), rel=1e-12
    )
    energy = path_energy(traj, times)
    assert normalized_path_energy(traj, times, x0, x1, w2sq=2.0) == pytest.approx(abs(energy - 2.0) / 2.0)


# --------------------------------------------------------------------------------------------
# Straightness
# --------------------------------------------------------------------------------------------


def test_straightness_of_a_constant_field_is_zero():
    c = torch.tensor([0.7, -2.0], dtype=torch.float64)
    times = _random_grid(9, 26)
    traj = _euler(Constant(c), _randn(30, 2, seed=27), times)
    assert straightness(Constant(c), traj, times) == pytest.approx(0.0, abs=1e-20)


def test_straightness_with_per_sample_conditioning_is_zero_and_chunked():
    cond = _randn(23, 3, seed=28)
    times = torch.linspace(0, 1, 6, dtype=torch.float64)
    model = CondVelocity()
    traj = _euler(model, _randn(23, 3, seed=29), times, cond=cond)
    assert straightness(model, traj, times, cond=cond, batch_size=5) == pytest.approx(0.0, abs=1e-20)
    # A mismatched conditioning is nonzero: every sample gets another sample's velocity.
    assert straightness(model, traj, times, cond=cond.flip(0), batch_size=5) > 0.1


def test_straightness_of_a_rotation_matches_its_closed_forms():
    omega, steps = math.pi / 2, 40
    field = Rotation(omega)
    x0 = _randn(50, 2, seed=30)
    times = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
    traj = _euler(field, x0, times)

    # Discrete closed form: x_k = B^k x0 with B = I + hA, chord = (B^T - I) x0, so the deviation
    # at step k is M_k x0 with M_k = A B^k - (B^T - I), and S = sum_k h tr(M_k Sigma M_k^T).
    h = 1.0 / steps
    A = field.A.numpy()
    B = np.eye(2) + h * A
    sigma = (x0.T @ x0).numpy() / x0.shape[0]
    chord = np.linalg.matrix_power(B, steps) - np.eye(2)
    expected = sum(
        h * np.trace((A @ np.linalg.matrix_power(B, k) - chord) @ sigma @ (A @ np.linalg.matrix_power(B, k) - chord).T)
        for k in range(steps)
    )
    field.calls = 0
    value = straightness(field, traj, times, batch_size=16)
    assert value == pytest.approx(expected, rel=1e-10)
    assert field.calls == steps * 4  # ceil(50 / 16) = 4 chunks per time point

    # Continuous limit: exact rotation x(t) = R(omega t) x0 gives
    # S = E|x0|^2 (omega^2 - 2 (1 - cos omega)) > 0.
    fine = 2000
    times_f = torch.linspace(0, 1, fine + 1, dtype=torch.float64)
    traj_f = _euler(field, x0, times_f)
    limit = float((x0**2).sum(-1).mean()) * (omega**2 - 2 * (1 - math.cos(omega)))
    assert limit > 0.5
    assert straightness(field, traj_f, times_f) == pytest.approx(limit, rel=5e-3)


def test_straightness_runs_the_model_in_its_own_dtype_without_grad():
    class Linear(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 2)

        def forward(self, x, t, cond=None):
            assert x.dtype == torch.float32 and t.dtype == torch.float32 and t.shape == x.shape[:1]
            assert not torch.is_grad_enabled()
            return self.lin(x)

    times = torch.linspace(0, 1, 4)
    traj = torch.randn(4, 10, 2, generator=_gen(31), dtype=torch.float64)
    assert straightness(Linear(), traj, times) > 0


# --------------------------------------------------------------------------------------------
# SampleQuality
# --------------------------------------------------------------------------------------------


def test_sample_quality_collects_the_three_distances():
    x = _randn(40, 2, seed=32)
    y = _randn(40, 2, seed=33) + 1.0
    q = sample_quality(x, y)
    assert isinstance(q, SampleQuality)
    assert q.w1 == pytest.approx(w1(x, y), rel=1e-12)
    assert q.w2 == pytest.approx(w2(x, y), rel=1e-12)
    assert q.mmd == pytest.approx(mmd_rbf(x, y), rel=1e-12)
    assert q.w1 <= q.w2 + 1e-12  # Hoelder: W1 <= W2


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def test_validation_errors_name_the_rule_and_the_value():
    x = _randn(10, 2, seed=34)
    with pytest.raises(ValueError, match="same feature dimension, got 2 and 3"):
        w2(x, _randn(10, 3, seed=35))
    with pytest.raises(ValueError, match=r"p must be a finite number >= 1, got 0.5"):
        wasserstein(x, x, p=0.5)
    with pytest.raises(ValueError, match=r"at least 1 sample, got shape \(0, 2\)"):
        w1(torch.zeros(0, 2), x)
    bad = x.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match=r"1 NaN/Inf value\(s\) \(first at index \(3, 1\)\)"):
        w2(bad, x)
    with pytest.raises(ValueError, match="a must be finite and >= 0"):
        w1(x, x, a=-torch.ones(10))
    with pytest.raises(ValueError, match=r"one weight per sample \(10\), got 9"):
        w1(x, x, a=torch.ones(9))
    with pytest.raises(ValueError, match="n=1"):
        mmd_rbf(x[:1], x)
    with pytest.raises(ValueError, match="bandwidth must be a finite number > 0, got -1.0"):
        mmd_rbf(x, x, bandwidths=[1.0, -1.0])
    times = torch.tensor([0.0, 0.6, 0.4, 1.0])
    with pytest.raises(ValueError, match=r"strictly increasing, got times\[1\]=0.6"):
        path_energy(torch.zeros(4, 3, 2), times)
    with pytest.raises(ValueError, match=r"times must have shape \(T\+1,\) = \(4,\)"):
        path_energy(torch.zeros(4, 3, 2), torch.linspace(0, 1, 5))
    with pytest.raises(ValueError, match=r"at least 3 axes, got shape \(4, 3\)"):
        path_energy(torch.zeros(4, 3), torch.linspace(0, 1, 4))
    with pytest.raises(ValueError, match=r"cond must have first axis n = 3"):
        straightness(CondVelocity(), torch.zeros(4, 3, 2), torch.linspace(0, 1, 4), cond=torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"model output must have shape \(3, 2\), got \(3, 1\)"):
        straightness(lambda x, t: x[:, :1], torch.zeros(4, 3, 2), torch.linspace(0, 1, 4))
