"""Few-step networks with conditions and on images: the UNet's interval input (h) and its
JVP-differentiable attention, the class-conditional AverageVelocityMLP, classifier-free guidance of
an average velocity, chunked jumps, and class-conditional digits runs of meanflow and shortcut."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from flowmatch.cli import main
from flowmatch.models.average import AverageVelocityMLP
from flowmatch.models.guidance import guided
from flowmatch.models.unet import UNet
from flowmatch.objectives.meanflow import meanflow_target
from flowmatch.runs import RunConfig
from flowmatch.runs.run import load_run, train_run
from flowmatch.sampling.average import sample_any, sample_average

UNET = dict(base_channels=16, channel_mults=(1, 2), image_size=8, num_classes=10, attention_resolutions=(4,))


def _unet(interval: bool) -> UNet:
    torch.manual_seed(0)
    return UNet(1, interval=interval, **UNET).double()


def test_the_interval_input_leaves_a_plain_unets_initial_weights_unchanged():
    plain, interval = _unet(False).state_dict(), _unet(True).state_dict()
    assert all(torch.equal(plain[k], interval[k]) for k in plain)
    assert set(interval) - set(plain) == {f"interval_mlp.{i}.{p}" for i in (0, 2) for p in ("weight", "bias")}
    x, t = torch.randn(2, 1, 8, 8, dtype=torch.float64), torch.rand(2, dtype=torch.float64)
    with pytest.raises(ValueError, match="interval=False"):
        _unet(False)(x, t, h=torch.zeros(2))


def test_the_plain_attention_equals_the_fused_one():
    net = _unet(True)
    x, t, c = torch.randn(3, 1, 8, 8, dtype=torch.float64), torch.rand(3, dtype=torch.float64), torch.tensor([1, 4, -1])
    h = torch.rand(3, dtype=torch.float64)
    plain = net(x, t, c, h=h)
    for m in net.modules():
        if hasattr(m, "fused"):
            m.fused = True
    torch.testing.assert_close(net(x, t, c, h=h), plain, rtol=1e-10, atol=1e-10)


def test_the_meanflow_jvp_through_a_conditional_unet_matches_finite_differences():
    net = _unet(True)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 1, 8, 8, generator=g, dtype=torch.float64)
    v = torch.randn(2, 1, 8, 8, generator=g, dtype=torch.float64)
    t = torch.tensor([0.2, 0.5], dtype=torch.float64)
    h = torch.tensor([0.3, 0.1], dtype=torch.float64)
    c = torch.tensor([3, 7])
    u, target = meanflow_target(net, x, t, h, v, cond=c)
    eps = 1e-6  # d/ds u(x + s v, t + s, h - s) at s = 0, central differences

    def along(s: float) -> torch.Tensor:
        return net(x + s * v, t + s, c, h=h - s)

    du = (along(eps) - along(-eps)) / (2 * eps)
    torch.testing.assert_close(target, v + h.reshape(-1, 1, 1, 1) * du, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(u, net(x, t, c, h=h))


def test_the_conditional_average_velocity_mlp_embeds_its_labels_with_a_null_class():
    torch.manual_seed(0)
    net = AverageVelocityMLP(2, hidden=16, num_classes=3)
    x, t, h = torch.randn(4, 2), torch.rand(4), torch.rand(4)
    a = net(x, t, torch.tensor([0, 0, 0, 0]), h=h)
    b = net(x, t, torch.tensor([2, 2, 2, 2]), h=h)
    assert not torch.allclose(a, b)  # the label enters
    torch.testing.assert_close(net(x, t, None, h=h), net(x, t, torch.full((4,), -1), h=h))  # None is null
    with pytest.raises(ValueError, match="unconditional"):
        AverageVelocityMLP(2, hidden=16)(x, t, torch.zeros(4, dtype=torch.long))


def test_guidance_of_an_average_velocity_is_the_extrapolation_of_its_two_fields():
    torch.manual_seed(0)
    net = AverageVelocityMLP(2, hidden=16, num_classes=3)
    x, t, h, c = torch.randn(5, 2), torch.rand(5), torch.rand(5), torch.tensor([0, 1, 2, 1, 0])
    w = 2.5
    u_c, u_0 = net(x, t, c, h=h), net(x, t, torch.full((5,), -1), h=h)
    torch.testing.assert_close(guided(net, w)(x, t, c, h=h), u_0 + w * (u_c - u_0))
    torch.testing.assert_close(guided(net, 1.0)(x, t, c, h=h), u_c)
    torch.testing.assert_close(guided(net, 0.0)(x, t, c, h=h), u_0)


def test_chunked_jumps_equal_unchunked_ones_with_the_condition_split_alongside():
    torch.manual_seed(0)
    net = AverageVelocityMLP(2, hidden=16, num_classes=3)
    x0, c = torch.randn(11, 2), torch.arange(11) % 3
    whole = sample_average(net, x0, steps=3, cond=c).x
    chunked = sample_any(net, x0, solver="average", steps=3, cond=c, chunk_size=4)
    torch.testing.assert_close(chunked.x, whole)
    assert chunked.nfe == 3


@pytest.mark.slow
@pytest.mark.parametrize("method", ["meanflow", "shortcut"])
def test_a_class_conditional_digits_run_trains_evaluates_and_samples_in_one_step(method, tmp_path):
    cfg = RunConfig(
        method=method,
        target="digits",
        cond="label",
        guidance_dropout=0.1,
        unet_width=8,
        unet_attention="none",
        n_test=64,
        steps=8,
        batch_size=32,
        log_every=4,
        checkpoint_every=8,
        eval_steps=1,
    )
    out = tmp_path / method
    train_run(cfg, out, quiet=True)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["eval"]["solver"] == "average" and [r["nfe"] for r in metrics["eval"]["rows"]] == [1]
    run = load_run(out, device="cpu")
    assert isinstance(run.model, UNet) and run.model.interval_mlp is not None
    f = tmp_path / "one.npy"
    argv = ["sample", str(out), "--n", "6", "--steps", "1", "--cond", "3", "--guidance", "2", "--out", str(f)]
    assert main([*argv, "--quiet"]) == 0
    x0 = torch.randn(6, 64, generator=torch.Generator().manual_seed(0)).reshape(6, 1, 8, 8)
    expected = sample_average(guided(run.model, 2.0), x0, steps=1, cond=torch.full((6,), 3)).x
    np.testing.assert_allclose(np.load(f).reshape(6, 1, 8, 8), expected.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_bench_fewstep_digits_scores_each_method_at_every_nfe_on_the_same_test_set(tmp_path, capsys):
    from flowmatch.bench.fewstep_digits import DIGITS_NFES, DigitsFewStepSettings, run_fewstep_digits

    settings = DigitsFewStepSettings.quick(methods=("shortcut",), steps=2)
    res = run_fewstep_digits(tmp_path, settings, log=None)
    assert [(r["method"], r["nfe"]) for r in res.rows] == [("shortcut", k) for k in DIGITS_NFES]
    real = {(r["real_fd"], r["real_accuracy"]) for r in res.rows}
    assert len(real) == 1  # one classifier, one test set for every NFE
    assert all(r["fd"] > 0 and np.isclose(r["fd_real"], r["fd"] / r["real_fd"]) for r in res.rows)
    assert "| shortcut |" in (tmp_path / "table.md").read_text()
    assert main(["bench", "fewstep-digits", "--quick", "--methods", "2-rf", "--out", str(tmp_path), "--quiet"]) == 2
    assert "methods must be among" in capsys.readouterr().err
