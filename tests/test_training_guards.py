"""Nothing silent (issue 15, items 4-7): divergence stops training at once with the latest
checkpoint finite, a model breaking the contract ``model(x, t, cond=None) -> x's shape`` fails with
one line whether it is trained or sampled, Gaussian sources are fresh noise every step, and what
the final evaluation needs is checked before training."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

import flowmatch
from flowmatch.cli import main
from flowmatch.data.batches import StreamBatches, TensorBatches
from flowmatch.models import MLP
from flowmatch.models.contract import ModelContractError
from flowmatch.objectives import methods
from flowmatch.training import Trainer, TrainerConfig, latest_checkpoint, load_checkpoint
from flowmatch.training.trainer import TrainingDiverged
from test_cli import TINY, error_of


def _gauss(n, generator=None):
    return torch.randn(n, 2, generator=generator)


def _target(scale=1.0):
    g = torch.Generator().manual_seed(5)
    return TensorBatches(scale * (torch.randn(400, 2, generator=g) + 3.0))


def _trainer(run_dir, *, steps=30, lr=1e-3, target=None, model=None, **cfg):
    torch.manual_seed(0)
    config = TrainerConfig(steps=steps, batch_size=32, lr=lr, quiet=True, log_every=5, checkpoint_every=10, **cfg)
    return Trainer(
        model or MLP(2, hidden=16), methods.get("i-cfm"), _gauss, target or _target(), config, run_dir=run_dir
    )


# --------------------------------------------------------------------------------------------
# 4. divergence
# --------------------------------------------------------------------------------------------


class _BlowUpAt:
    """A target whose batches are finite until draw k, then 1e30 (the loss overflows)."""

    def __init__(self, k: int):
        self.k, self.calls, self.inner = k, 0, _target()

    def __call__(self, n, generator=None):
        self.calls += 1
        x = self.inner(n, generator=generator)
        return x * 1e30 if self.calls >= self.k else x


def test_a_non_finite_loss_stops_training_at_that_step_and_the_latest_checkpoint_stays_finite(tmp_path):
    t = _trainer(tmp_path, target=_BlowUpAt(25))
    with pytest.raises(
        TrainingDiverged, match=r"training diverged at step 25: loss inf.*latest checkpoint \(step 20\)"
    ):
        t.fit()
    assert t.step == 24  # step 25 was not applied
    ck = load_checkpoint(tmp_path / "checkpoints")
    assert ck.step == 20
    assert all(torch.isfinite(v).all() for v in ck.model.values())
    assert all(torch.isfinite(p).all() for p in t.model.parameters())


def test_max_bad_steps_skips_a_bounded_number_of_steps_without_applying_them(tmp_path):
    class _BadOnce:
        def __init__(self):
            self.calls, self.inner = 0, _target()

        def __call__(self, n, generator=None):
            self.calls += 1
            x = self.inner(n, generator=generator)
            return x * math.inf if self.calls in (7, 13) else x

    t = _trainer(tmp_path, target=_BadOnce(), max_bad_steps=2)
    res = t.fit()
    assert res.step == 30 and math.isfinite(res.final_loss)
    assert load_checkpoint(tmp_path / "checkpoints").state["bad_steps"] == 2
    t3 = _trainer(tmp_path / "b", target=_BadOnce(), max_bad_steps=1)
    with pytest.raises(TrainingDiverged, match="step 13.*1 skipped so far"):
        t3.fit()


def test_a_huge_learning_rate_is_caught_in_the_cli_with_exit_2_and_no_nan_checkpoint(capsys, tmp_path):
    """--lr 1e6 used to train to the end with loss NaN and write NaN checkpoints."""
    run = tmp_path / "run"
    msg = error_of(capsys, ["train", "--out", str(run), "--target", "8gaussians", *TINY, "--lr", "1e6", "--no-plots"])
    assert "training diverged at step" in msg and "lower the learning rate" in msg
    ck = latest_checkpoint(run / "checkpoints")
    if ck is not None:  # any checkpoint written before the divergence is finite
        assert all(torch.isfinite(v).all() for v in load_checkpoint(run / "checkpoints").model.values())


def test_a_boolean_learning_rate_in_a_config_is_refused(capsys, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("lr = true\n")
    msg = error_of(capsys, ["train", "--config", str(cfg), "--out", str(tmp_path / "out"), *TINY])
    assert "lr must be a finite number > 0, got True" in msg


# --------------------------------------------------------------------------------------------
# 5. one model contract
# --------------------------------------------------------------------------------------------


class _Narrow(nn.Module):
    """Returns x[:, :1]: broadcasting used to give it a finite CFM loss."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))

    def forward(self, x, t, cond=None):
        return x[:, :1] * self.w


class _NoCond(nn.Module):
    """forward(x, t) without cond: used to train, then fail to sample with a raw TypeError."""

    def __init__(self):
        super().__init__()
        self.net = MLP(2, hidden=8)

    def forward(self, x, t):
        return self.net(x, t)


def test_a_model_output_of_the_wrong_shape_fails_the_loss_with_both_shapes():
    fm = methods.get("i-cfm")
    x0, x1 = torch.randn(16, 2), torch.randn(16, 2)
    with pytest.raises(
        ModelContractError, match=r"must have the shape of x \(16, 2\), got \(16, 1\) \(model _Narrow\)"
    ):
        fm.loss(_Narrow(), x0, x1)


def test_a_model_without_cond_fails_training_and_sampling_with_the_same_one_line_error():
    with pytest.raises(ModelContractError, match=r"model _NoCond must be callable as model\(x, t, cond=None\)"):
        _trainer(None, steps=3, model=_NoCond()).fit()
    with pytest.raises(ModelContractError, match=r"model _NoCond must be callable as model\(x, t, cond=None\)"):
        flowmatch.sample(_NoCond(), torch.randn(4, 2), steps=2)


# --------------------------------------------------------------------------------------------
# 6. fresh noise
# --------------------------------------------------------------------------------------------


def test_a_gaussian_source_run_draws_fresh_noise_every_step(monkeypatch, tmp_path):
    """flowmatch train --source gaussian: every step's x0 is a new draw (no fixed set of n_train
    points); a fixed source set is a data file (--source noise.npy)."""
    seen = []
    original = StreamBatches.__call__

    def recording(self, n, generator=None):
        x = original(self, n, generator=generator)
        seen.append(x.clone())
        return x

    monkeypatch.setattr(StreamBatches, "__call__", recording)
    assert (
        main(
            [
                "train",
                "--out",
                str(tmp_path / "r"),
                "--target",
                "moons",
                *TINY,
                "--no-plots",
                "--n-train",
                "64",
                "--batch-size",
                "32",
            ]
        )
        == 0
    )
    drawn = torch.cat(seen)
    assert len(seen) == 20 and drawn.shape == (640, 2)
    assert torch.unique(drawn, dim=0).shape[0] == 640  # 640 distinct points from a 64-row training split
    assert abs(float(drawn.mean())) < 0.2 and abs(float(drawn.std()) - 1) < 0.1


# --------------------------------------------------------------------------------------------
# 7. checks before training
# --------------------------------------------------------------------------------------------


def test_n_test_1_is_refused_before_training(capsys, tmp_path, monkeypatch):
    trained = []
    monkeypatch.setattr(Trainer, "fit", lambda self, **kw: trained.append(1))
    msg = error_of(capsys, ["train", "--out", str(tmp_path / "r"), "--target", "moons", *TINY, "--n-test", "1"])
    assert "needs at least 2 held-out points per distribution" in msg and "--n-test" in msg
    assert not trained and not (tmp_path / "r").exists()


def test_max_bad_steps_is_a_run_setting_that_may_change_on_resume(tmp_path):
    run = tmp_path / "r"
    assert main(["train", "--out", str(run), "--target", "moons", *TINY, "--no-plots", "--max-bad-steps", "3"]) == 0
    assert "max_bad_steps = 3" in (run / "config.toml").read_text()
    assert (
        main(
            [
                "train",
                "--resume",
                "--out",
                str(run),
                "--max-bad-steps",
                "0",
                "--steps",
                "30",
                "--quiet",
                "--no-plots",
                "--threads",
                "1",
            ]
        )
        == 0
    )
    assert json.loads((run / "metrics.json").read_text())["train"]["steps"] == 30


def test_a_type_error_inside_a_model_that_follows_the_contract_is_its_own():
    """Only a call that the model's signature refuses is a contract error; a TypeError raised by
    the model's own code passes through unchanged."""

    class _Buggy(nn.Module):
        def forward(self, x, t, cond=None):
            return torch.cat(x, t)  # a bug: cat takes a sequence

    with pytest.raises(TypeError) as info:
        flowmatch.sample(_Buggy(), torch.randn(4, 2), steps=1)
    assert not isinstance(info.value, ModelContractError)
