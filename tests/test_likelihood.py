"""Likelihoods of a flow as a CNF: closed-form densities, exact and Hutchinson divergences,
bits/dim, encode/decode round trips, and the `eval --nll` / `encode` commands."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import flowmatch
from flowmatch.sampling.likelihood import (
    LikelihoodResult,
    decode,
    encode,
    hutchinson_probes,
    log_likelihood,
    standard_normal_log_prob,
    velocity_and_divergence,
)

DT = torch.float64


def affine_field(m: torch.Tensor, s: torch.Tensor):
    """The straight-line flow of z -> m + s z (elementwise): x_t = (1 - t + t s) z + t m, so
    v(t, x) = (s - 1)(x - t m) / (1 - t + t s) + m and div v = sum (s - 1) / (1 - t + t s).
    It carries N(0, c^2 I) to N(m, diag(s^2 c^2)) for every c."""

    def field(x, t, cond=None):
        tt = t.reshape(-1, *[1] * (x.dim() - 1)).to(x.dtype)
        a = 1 - tt + tt * s
        return (s - 1) * (x - tt * m) / a + m

    return field


def gaussian_log_prob(x, m, s):
    """log N(x; m, diag(s^2)) summed over all non-batch dimensions."""
    z = (x - m) / s
    d = x[0].numel()
    return (-0.5 * z**2 - torch.log(s).expand_as(x)).reshape(len(x), -1).sum(1) - 0.5 * d * math.log(2 * math.pi)


def mlp(dim=3, seed=0, hidden=32):
    torch.manual_seed(seed)
    return flowmatch.MLP(dim, hidden=hidden, depth=2, activation="tanh").double()


class ConvField(nn.Module):
    """A small convolutional velocity field on (B, C, H, W), t appended as a channel."""

    def __init__(self, c=2, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.c1 = nn.Conv2d(c + 1, 6, 3, padding=1)
        self.c2 = nn.Conv2d(6, c, 3, padding=1)

    def forward(self, x, t, cond=None):
        tt = t.to(x.dtype).reshape(-1, 1, 1, 1).expand(x.shape[0], 1, *x.shape[2:])
        return self.c2(torch.tanh(self.c1(torch.cat([x, tt], dim=1))))


def jacobian_trace(model, x, t):
    """Reference divergence: the trace of the full autograd Jacobian, one sample at a time."""
    out = []
    for b in range(x.shape[0]):
        jac = torch.autograd.functional.jacobian(lambda xi, b=b: model(xi[None], t[b : b + 1])[0], x[b])
        d = x[b].numel()
        out.append(jac.reshape(d, d).trace())
    return torch.stack(out)


def full_jacobians(model, x, t):
    d = x[0].numel()
    return torch.stack(
        [
            torch.autograd.functional.jacobian(lambda xi, b=b: model(xi[None], t[b : b + 1])[0], x[b]).reshape(d, d)
            for b in range(x.shape[0])
        ]
    )


# --------------------------------------------------------------------------------------------
# Closed forms
# --------------------------------------------------------------------------------------------


def test_exact_log_likelihood_of_the_affine_flow_is_the_gaussian_density_dopri5():
    m = torch.tensor([1.0, -2.0, 0.5], dtype=DT)
    s = torch.tensor([0.5, 2.0, 1.3], dtype=DT)
    g = torch.Generator().manual_seed(0)
    x = m + s * torch.randn(100, 3, generator=g, dtype=DT)
    res = log_likelihood(affine_field(m, s), x, solver="dopri5", atol=1e-8, rtol=1e-8)
    assert isinstance(res, LikelihoodResult) and res.method == "exact" and res.solver == "dopri5"
    torch.testing.assert_close(res.log_prob, gaussian_log_prob(x, m, s), atol=1e-3, rtol=0)
    # The code z is the inverse map (x - m) / s, and the flow's log-det is -sum log s.
    torch.testing.assert_close(res.z, (x - m) / s, atol=1e-6, rtol=0)
    torch.testing.assert_close(
        res.log_prob - standard_normal_log_prob(res.z), -torch.log(s).sum().expand(100), atol=1e-6, rtol=0
    )
    assert res.nfe > 0


def test_fixed_step_log_likelihood_converges_at_the_solver_order():
    m = torch.tensor([0.3], dtype=DT)
    s = torch.tensor([3.0], dtype=DT)
    x = torch.linspace(-4, 4, 9, dtype=DT)[:, None]
    exact = gaussian_log_prob(x, m, s)
    errs = {}
    for solver in ("euler", "rk4"):
        errs[solver] = [
            float((log_likelihood(affine_field(m, s), x, solver=solver, steps=n).log_prob - exact).abs().max())
            for n in (10, 20)
        ]
    # Halving h divides the error by 2^p: about 2 for Euler, about 16 for RK4.
    assert 1.6 < errs["euler"][0] / errs["euler"][1] < 2.5, errs
    assert 12 < errs["rk4"][0] / errs["rk4"][1] < 20, errs
    assert errs["rk4"][1] < 1e-5


def test_image_shaped_log_likelihood_and_a_torch_distributions_prior():
    # Source N(0, c^2 I) as a torch.distributions prior; the affine flow carries it to N(m, (s c)^2).
    g = torch.Generator().manual_seed(1)
    shape = (2, 3, 3)
    m = torch.randn(shape, generator=g, dtype=DT)
    s = torch.rand(shape, generator=g, dtype=DT) + 0.5
    c = 0.7
    prior = torch.distributions.Independent(
        torch.distributions.Normal(torch.zeros(shape, dtype=DT), c * torch.ones(shape, dtype=DT)), 3
    )
    x = m + s * c * torch.randn(5, *shape, generator=g, dtype=DT)
    res = log_likelihood(affine_field(m, s), x, prior=prior, solver="dopri5", atol=1e-8, rtol=1e-8)
    assert res.z.shape == x.shape and res.log_prob.shape == (5,)
    torch.testing.assert_close(res.log_prob, gaussian_log_prob(x, m, s * c), atol=1e-3, rtol=0)


def test_bits_per_dim_is_nats_over_d_ln2():
    # The zero field is the identity flow: log p_1 = log N(x; 0, I); at x = 0 that is -(D/2) log(2 pi).
    zero = lambda x, t, cond=None: 0 * x  # noqa: E731
    x = torch.zeros(4, 6, dtype=DT)
    res = log_likelihood(zero, x, solver="euler", steps=3)
    torch.testing.assert_close(res.log_prob, torch.full((4,), -3 * math.log(2 * math.pi), dtype=DT))
    torch.testing.assert_close(res.bits_per_dim, torch.full((4,), math.log2(2 * math.pi) / 2, dtype=DT))
    x = torch.randn(7, 3, dtype=DT)
    res = log_likelihood(mlp(), x, solver="rk4", steps=4)
    torch.testing.assert_close(res.bits_per_dim, -res.log_prob / (3 * math.log(2)))
    assert res.mean_bits_per_dim == pytest.approx(float(res.bits_per_dim.mean()))
    assert res.mean_nll == pytest.approx(float(-res.log_prob.mean()))


# --------------------------------------------------------------------------------------------
# Divergence
# --------------------------------------------------------------------------------------------


def test_exact_divergence_is_the_trace_of_the_autograd_jacobian_vectors():
    model = mlp(dim=5)
    g = torch.Generator().manual_seed(2)
    x, t = torch.randn(6, 5, generator=g, dtype=DT), torch.rand(6, generator=g, dtype=DT)
    v, div = velocity_and_divergence(model, x, t)
    torch.testing.assert_close(v, model(x, t))
    torch.testing.assert_close(div, jacobian_trace(model, x, t))


def test_exact_divergence_is_the_trace_of_the_autograd_jacobian_images():
    model = ConvField(c=2).double()
    g = torch.Generator().manual_seed(3)
    x, t = torch.randn(3, 2, 4, 4, generator=g, dtype=DT), torch.rand(3, generator=g, dtype=DT)
    v, div = velocity_and_divergence(model, x, t)
    assert v.shape == x.shape and div.shape == (3,)
    torch.testing.assert_close(div, jacobian_trace(model, x, t))
    # Hutchinson with the whole basis as "probes" (scaled by D, since it averages) is exact too.
    d = 32
    basis = torch.eye(d, dtype=DT).reshape(d, 1, 2, 4, 4).expand(d, 3, 2, 4, 4)
    _, div_h = velocity_and_divergence(model, x, t, probes=basis)
    torch.testing.assert_close(d * div_h, div)


@pytest.mark.parametrize("kind", ["rademacher", "gaussian"])
def test_hutchinson_is_unbiased_with_the_predicted_variance(kind):
    model = mlp(dim=4, seed=4)
    g = torch.Generator().manual_seed(5)
    b, k = 3, 4000
    x, t = torch.randn(b, 4, generator=g, dtype=DT), torch.rand(b, generator=g, dtype=DT)
    exact = jacobian_trace(model, x, t)
    # k independent single-probe estimates per point, in one batched call: row j*b + i is point i.
    xr, tr = x.repeat(k, 1), t.repeat(k)
    probes = hutchinson_probes(xr, 1, kind, generator=g)
    if kind == "rademacher":
        assert set(probes.unique().tolist()) == {-1.0, 1.0}
    _, est = velocity_and_divergence(model, xr, tr, probes=probes)
    est = est.reshape(k, b)
    mean, se = est.mean(0), est.std(0) / math.sqrt(k)
    assert bool(((mean - exact).abs() < 4 * se).all()), (mean, exact, se)
    # Var(eps^T J eps) = 0.5 ||J + J^T||_F^2 (Gaussian) or that minus the diagonal (Rademacher).
    jac = full_jacobians(model, x, t)
    sym = jac + jac.transpose(1, 2)
    if kind == "rademacher":
        sym = sym - torch.diag_embed(torch.diagonal(sym, dim1=1, dim2=2))
    var = 0.5 * (sym**2).sum((1, 2))
    torch.testing.assert_close(est.var(0), var, rtol=0.15, atol=1e-8)
    # K probes at once average the K single-probe estimates.
    many = hutchinson_probes(x, 7, kind, generator=g)
    _, avg = velocity_and_divergence(model, x, t, probes=many)
    singles = torch.stack([velocity_and_divergence(model, x, t, probes=many[i : i + 1])[1] for i in range(7)])
    torch.testing.assert_close(avg, singles.mean(0))


def test_hutchinson_log_likelihood_is_reproducible_chunk_invariant_and_unbiased():
    model = mlp(dim=3, seed=6)
    x = torch.randn(12, 3, generator=torch.Generator().manual_seed(7), dtype=DT)
    kw = dict(divergence="hutchinson", n_probes=2, solver="rk4", steps=6)
    a = log_likelihood(model, x, generator=torch.Generator().manual_seed(1), **kw)
    b = log_likelihood(model, x, generator=torch.Generator().manual_seed(1), chunk_size=5, **kw)
    c = log_likelihood(model, x, generator=torch.Generator().manual_seed(2), **kw)
    torch.testing.assert_close(a.log_prob, b.log_prob)
    torch.testing.assert_close(a.z, b.z)
    assert not torch.allclose(a.log_prob, c.log_prob)
    exact = log_likelihood(model, x, solver="rk4", steps=6)
    torch.testing.assert_close(a.z, exact.z)  # the probes do not change the trajectory
    many = log_likelihood(
        model,
        x,
        divergence="hutchinson",
        n_probes=400,
        solver="rk4",
        steps=6,
        generator=torch.Generator().manual_seed(3),
    )
    assert float((many.log_prob - exact.log_prob).abs().max()) < 0.1


# --------------------------------------------------------------------------------------------
# Encode / decode
# --------------------------------------------------------------------------------------------


def test_decode_of_encode_is_the_identity_dopri5():
    model = mlp(dim=3, seed=8)
    x = torch.randn(50, 3, generator=torch.Generator().manual_seed(9), dtype=DT) * 2
    z = encode(model, x, atol=1e-9, rtol=1e-9)
    back = decode(model, z.x, atol=1e-9, rtol=1e-9)
    assert float((back.x - x).abs().max()) < 1e-4
    assert float((z.x - x).abs().max()) > 0.1  # the map is not trivial
    # encode is the z of the likelihood, and on the affine flow it is (x - m) / s.
    torch.testing.assert_close(log_likelihood(model, x, atol=1e-9, rtol=1e-9).z, z.x, atol=1e-6, rtol=0)
    m, s = torch.tensor([1.0, 2.0, 3.0], dtype=DT), torch.tensor([0.5, 1.5, 2.5], dtype=DT)
    torch.testing.assert_close(encode(affine_field(m, s), x, atol=1e-9, rtol=1e-9).x, (x - m) / s)
    assert flowmatch.encode is encode and flowmatch.decode is decode
    assert flowmatch.log_likelihood is log_likelihood


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(divergence="trace"), r"unknown divergence 'trace'; choose one of: exact, hutchinson"),
        (dict(divergence="hutchinson", n_probes=0), r"n_probes must be a positive integer, got 0"),
        (dict(probe_dist="uniform"), r"unknown probe distribution 'uniform'"),
        (dict(chunk_size=0), r"chunk_size must be a positive integer, got 0"),
        (dict(solver="rk45"), r"unknown solver 'rk45'"),
        (
            dict(prior=torch.distributions.Normal(0.0, 1.0)),
            r"prior.log_prob\(z\) must return one value per sample, shape \(4,\), got \(4, 2\)",
        ),
        (dict(prior=object()), r"prior must have a log_prob\(z\) method, got object"),
    ],
)
def test_bad_arguments_are_one_line_value_errors(kwargs, message):
    model = lambda x, t, cond=None: -x  # noqa: E731
    with pytest.raises(ValueError, match=message):
        log_likelihood(model, torch.randn(4, 2), solver=kwargs.pop("solver", "euler"), steps=2, **kwargs)


def test_bad_data_is_rejected():
    model = lambda x, t, cond=None: -x  # noqa: E731
    with pytest.raises(ValueError, match=r"x must have shape \(n, \*dims\)"):
        log_likelihood(model, torch.randn(5))
    with pytest.raises(ValueError, match="x must be a floating-point tensor"):
        log_likelihood(model, torch.ones(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="x must be finite"):
        log_likelihood(model, torch.tensor([[0.0, math.nan]]))


# --------------------------------------------------------------------------------------------
# CLI: eval --nll and encode
# --------------------------------------------------------------------------------------------

TINY = [
    "--steps",
    "20",
    "--batch-size",
    "32",
    "--n-train",
    "200",
    "--n-test",
    "48",
    "--hidden",
    "16",
    "--log-every",
    "10",
    "--checkpoint-every",
    "20",
    "--eval-steps",
    "4",
    "--threads",
    "1",
    "--quiet",
    "--no-plots",
]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from flowmatch.cli import main

    out = tmp_path_factory.mktemp("nll") / "run"
    assert main(["train", "--out", str(out), "--target", "8gaussians", *TINY]) == 0
    return out


def one_error_line(capsys, argv):
    from flowmatch.cli import main

    capsys.readouterr()
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 2, (rc, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("flowmatch: error: ") and "Traceback" not in err, err
    return lines[0]


def test_eval_nll_prints_the_test_nll_of_log_likelihood(tiny_run, capsys):
    import json

    from flowmatch.cli import main
    from flowmatch.runs.run import load_run

    capsys.readouterr()
    assert main(["eval", str(tiny_run), "--nll", "--json", "--n", "16", "--device", "cpu"]) == 0
    nll = json.loads(capsys.readouterr().out)["nll"]
    run = load_run(tiny_run, device="cpu")
    ref = log_likelihood(run.model, run.data.target.test[:16])
    assert nll["n"] == 16 and nll["divergence"] == "exact" and nll["solver"] == "dopri5"
    assert nll["nll_nats"] == pytest.approx(ref.mean_nll, rel=1e-5)
    assert nll["bits_per_dim"] == pytest.approx(nll["nll_nats"] / (2 * math.log(2)), rel=1e-6)
    assert (
        main(
            [
                "eval",
                str(tiny_run),
                "--nll",
                "--n",
                "16",
                "--divergence",
                "hutchinson",
                "--probes",
                "2",
                "--solver",
                "rk4",
                "--steps",
                "5",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "test NLL" in out and "nats" in out and "bits/dim" in out and "hutchinson divergence, rk4" in out


def test_encode_command_round_trips_and_matches_the_library(tiny_run, tmp_path):
    from flowmatch.cli import main
    from flowmatch.runs.run import load_run

    x = np.random.default_rng(0).normal(size=(20, 2)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert (
        main(
            [
                "encode",
                str(tiny_run),
                "--data",
                str(tmp_path / "x.npy"),
                "--out",
                str(tmp_path / "z.npy"),
                "--atol",
                "1e-7",
                "--rtol",
                "1e-7",
                "--quiet",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "encode",
                str(tiny_run),
                "--data",
                str(tmp_path / "z.npy"),
                "--out",
                str(tmp_path / "x2.npy"),
                "--decode",
                "--atol",
                "1e-7",
                "--rtol",
                "1e-7",
                "--quiet",
            ]
        )
        == 0
    )
    z, x2 = np.load(tmp_path / "z.npy"), np.load(tmp_path / "x2.npy")
    run = load_run(tiny_run, device="cpu")
    ref = encode(run.model, torch.from_numpy(x), atol=1e-7, rtol=1e-7).x.numpy()
    np.testing.assert_allclose(z, ref, atol=1e-5)
    assert np.abs(x2 - x).max() < 1e-3  # float32 weights: round trip at float32 precision
    assert np.abs(z - x).max() > 0.05


def test_likelihood_commands_reject_bad_input_with_one_line(tiny_run, tmp_path, capsys):
    np.save(tmp_path / "three.npy", np.zeros((5, 3), dtype=np.float32))
    line = one_error_line(
        capsys, ["encode", str(tiny_run), "--data", str(tmp_path / "three.npy"), "--out", str(tmp_path / "z.npy")]
    )
    assert "--data must have D = 2 columns" in line and "(5, 3)" in line
    line = one_error_line(capsys, ["eval", str(tiny_run), "--nll", "--divergence", "trace"])
    assert "unknown --divergence 'trace'; choose one of: exact, hutchinson" in line
    line = one_error_line(
        capsys, ["encode", str(tiny_run), "--data", str(tmp_path / "missing.npy"), "--out", str(tmp_path / "z.npy")]
    )
    assert "missing.npy" in line
    line = one_error_line(
        capsys, ["encode", str(tiny_run), "--data", str(tmp_path / "three.npy"), "--out", str(tmp_path / "z.txt")]
    )
    assert "--out must be a .npy file" in line


def test_readme_likelihoods_snippet_runs():
    import re
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs" / "likelihoods.md").read_text()
    code = re.search(r"# Likelihoods\s.*?```python\n(.*?)```", page, re.S).group(1)
    scope: dict = {}
    exec(compile(code, "docs/likelihoods.md", "exec"), scope)
    assert scope["res"].log_prob.shape == (500,) and scope["z"].shape == (500, 2)
    assert float((scope["x_back"] - scope["x"]).abs().max()) < 1e-3
    assert abs(scope["est"].mean_nll - scope["res"].mean_nll) < 0.05
