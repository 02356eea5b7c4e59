"""Tests of flowmatch.training.trainer (and run.train_run): exact resumption, EMA and learning-rate maths,
interrupt safety, the training log, and an end-to-end OT-CFM training that actually learns."""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

import pytest
import torch

from flowmatch import metrics
from flowmatch.data import sample_toy
from flowmatch.data.batches import StreamBatches, TensorBatches
from flowmatch.models import MLP
from flowmatch.objectives import methods
from flowmatch.runs.config import RunConfig
from flowmatch.runs.run import build_data, build_model, train_run
from flowmatch.sampling.ode import sample
from flowmatch.training.checkpoint import atomic_write_text, latest_checkpoint, load_checkpoint
from flowmatch.training.log import LOG_COLUMNS
from flowmatch.training.optim import EMA, learning_rate
from flowmatch.training.trainer import Trainer, TrainerConfig

# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

TARGET = sample_toy("8gaussians", 256, generator=torch.Generator().manual_seed(1))


class RaiseAt:
    """A batch source that raises KeyboardInterrupt on its ``k``-th call (1-based)."""

    def __init__(self, batches, k: int):
        self.batches, self.k, self.calls = batches, k, 0

    def __call__(self, n, generator=None):
        self.calls += 1
        if self.calls == self.k:
            raise KeyboardInterrupt
        return self.batches(n, generator=generator)


def gaussian_source():
    return StreamBatches(lambda n, generator=None: torch.randn(n, 2, generator=generator), name="source")


def make_trainer(
    run_dir,
    *,
    steps,
    method="ot-cfm",
    ema_decay=0.0,
    lr_schedule="constant",
    log_every=5,
    checkpoint_every=1000,
    keep=2,
    source=None,
    target=None,
    seed=0,
):
    if run_dir is not None:
        Path(run_dir).mkdir(parents=True, exist_ok=True)  # see test_trainer_creates_its_run_directory
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MLP(2, hidden=32, depth=2)
    cfg = TrainerConfig(
        steps=steps,
        batch_size=32,
        lr=3e-3,
        lr_schedule=lr_schedule,
        ema_decay=ema_decay,
        seed=seed,
        log_every=log_every,
        checkpoint_every=checkpoint_every,
        keep_checkpoints=keep,
        quiet=True,
    )
    return Trainer(
        model, methods.get(method), source or gaussian_source(), target or TensorBatches(TARGET), cfg, run_dir=run_dir
    )


def read_log(run_dir) -> tuple[list[str], list[list[str]]]:
    with open(Path(run_dir) / "log.csv", newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def log_without_time(run_dir) -> list[list[str]]:
    """log.csv rows without elapsed_s (wall-clock time differs between any two runs)."""
    header, rows = read_log(run_dir)
    assert header == list(LOG_COLUMNS)
    return [r[:4] for r in rows]


def assert_same_tensors(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def assert_same_trainer_state(t1: Trainer, t2: Trainer):
    assert t1.step == t2.step
    assert_same_tensors(t1.model.state_dict(), t2.model.state_dict())
    if t1.ema is not None or t2.ema is not None:
        assert_same_tensors(t1.ema.model.state_dict(), t2.ema.model.state_dict())
    s1, s2 = t1.optimizer.state_dict()["state"], t2.optimizer.state_dict()["state"]
    for pid in s1:
        assert_same_tensors(s1[pid], s2[pid])
    assert torch.equal(t1.generator.get_state(), t2.generator.get_state())


# --------------------------------------------------------------------------------------------
# (a) resume == uninterrupted
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["ot-cfm", "sb-cfm", "i-cfm"])
def test_resume_equals_uninterrupted_training(tmp_path, method):
    """24 steps straight vs. 12 steps, then a new Trainer resumed to 24: identical weights,
    optimizer moments, generator state and log rows (ot-cfm: exact coupling; sb-cfm draws pairs
    from the Sinkhorn plan with the generator). log_every divides 12: a run that ends at step 12
    logs its final loss there, which an uninterrupted run does not (by design)."""
    straight = make_trainer(tmp_path / "a", steps=24, method=method, log_every=4)
    straight.fit()

    first = make_trainer(tmp_path / "b", steps=12, method=method, log_every=4)
    first.fit()
    second = make_trainer(tmp_path / "b", steps=24, method=method, log_every=4)
    res = second.fit(resume=True)

    assert res.resumed_from == 12 and res.step == 24
    assert_same_trainer_state(straight, second)
    assert log_without_time(tmp_path / "a") == log_without_time(tmp_path / "b")
    assert [r[0] for r in log_without_time(tmp_path / "a")] == ["4", "8", "12", "16", "20", "24"]


def test_resume_from_a_mid_run_checkpoint_with_ema_and_cosine_lr(tmp_path):
    """A run of 24 steps with EMA and cosine lr checkpoints at step 12; a second run directory
    holding that checkpoint (and the full log, whose rows after step 12 must be dropped) resumes
    to the same weights, EMA weights and log. The loss window 11..15 straddles the checkpoint."""
    a = make_trainer(tmp_path / "a", steps=24, ema_decay=0.9, lr_schedule="cosine", checkpoint_every=12, keep=5)
    a.fit()
    ck12 = tmp_path / "a" / "checkpoints" / "step-00000012"
    assert ck12.is_dir()

    b_ckpts = tmp_path / "b" / "checkpoints"
    b_ckpts.mkdir(parents=True)
    shutil.copytree(ck12, b_ckpts / ck12.name)
    atomic_write_text(b_ckpts / "latest", ck12.name + "\n")
    shutil.copy(tmp_path / "a" / "log.csv", tmp_path / "b" / "log.csv")

    b = make_trainer(tmp_path / "b", steps=24, ema_decay=0.9, lr_schedule="cosine")
    assert b.fit(resume=True).resumed_from == 12
    assert_same_trainer_state(a, b)
    assert log_without_time(tmp_path / "a") == log_without_time(tmp_path / "b")
    # the EMA is a genuinely different set of weights from the model
    assert not torch.equal(a.ema.model.net[0].weight, a.model.net[0].weight)


def test_train_run_resume_equals_uninterrupted(tmp_path):
    base = dict(
        target="8gaussians",
        n_train=256,
        n_test=32,
        hidden=16,
        batch_size=32,
        log_every=5,
        checkpoint_every=1000,
        ema_decay=0.8,
        lr=3e-3,
    )
    kw = dict(quiet=True, evaluate=False, plots=False)
    train_run(RunConfig(steps=20, **base), tmp_path / "a", **kw)
    train_run(RunConfig(steps=10, **base), tmp_path / "b", **kw)
    _, res, _ = train_run(RunConfig(steps=20, **base), tmp_path / "b", resume=True, **kw)
    assert res.resumed_from == 10
    ca, cb = load_checkpoint(tmp_path / "a" / "checkpoints"), load_checkpoint(tmp_path / "b" / "checkpoints")
    assert ca.step == cb.step == 20
    assert_same_tensors(ca.model, cb.model)
    assert_same_tensors(ca.ema, cb.ema)
    assert log_without_time(tmp_path / "a") == log_without_time(tmp_path / "b")
    assert RunConfig.from_toml(tmp_path / "b" / "config.toml").steps == 20


def test_resume_errors(tmp_path):
    with pytest.raises(ValueError, match="resume needs a run directory"):
        make_trainer(None, steps=4).fit(resume=True)
    with pytest.raises(ValueError, match="cannot resume: no checkpoint in"):
        make_trainer(tmp_path / "empty", steps=4).fit(resume=True)
    make_trainer(tmp_path / "r", steps=8).fit()
    with pytest.raises(ValueError, match="steps must be >= the checkpoint's step 8, got 4"):
        make_trainer(tmp_path / "r", steps=4).fit(resume=True)


def test_resume_with_ema_on_from_a_checkpoint_without_ema_is_an_error(tmp_path):
    make_trainer(tmp_path / "r", steps=4).fit()
    with pytest.raises(ValueError, match="has no EMA weights but ema_decay > 0"):
        make_trainer(tmp_path / "r", steps=8, ema_decay=0.9).fit(resume=True)


def test_trainer_creates_its_run_directory(tmp_path):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = MLP(2, hidden=8, depth=1)
    t = Trainer(
        model,
        methods.get("i-cfm"),
        gaussian_source(),
        TensorBatches(TARGET),
        TrainerConfig(steps=2, batch_size=16, quiet=True),
        run_dir=tmp_path / "new" / "run",
    )
    t.fit()
    assert latest_checkpoint(tmp_path / "new" / "run" / "checkpoints") is not None


# --------------------------------------------------------------------------------------------
# (b) EMA maths
# --------------------------------------------------------------------------------------------


def test_ema_update_is_the_convex_combination():
    torch.manual_seed(0)
    model = MLP(2, hidden=8, depth=1)
    ema = EMA(model, decay=0.9)
    old = {k: v.clone() for k, v in ema.model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    ema.update(model)
    for k, new in model.state_dict().items():
        expected = 0.9 * old[k].double() + 0.1 * new.double()
        torch.testing.assert_close(ema.model.state_dict()[k].double(), expected, rtol=0, atol=1e-6)
    assert all(not p.requires_grad for p in ema.model.parameters())


@pytest.mark.parametrize("decay, warmup", [(0.5, False), (0.99, False), (0.99, True)])
def test_trainer_steps_update_the_ema_with_the_decay_of_each_step(decay, warmup):
    """Three steps, each checked against the convex combination with its decay: the plain decay
    without warm-up, min(decay, (1 + s) / (10 + s)) with it (0.1, 0.1818.., 0.25 for s = 0, 1, 2)."""
    t = make_trainer(None, steps=3, ema_decay=decay)
    t.config.ema_warmup = warmup
    t.ema.warmup = warmup
    ema = {k: v.clone().double() for k, v in t.model.state_dict().items()}
    assert_same_tensors(t.model.state_dict(), t.ema.model.state_dict())  # the EMA starts at the initial weights
    for s in range(3):
        t.train_step()
        d = min(decay, (1 + s) / (10 + s)) if warmup else decay
        for k, new in t.model.state_dict().items():
            ema[k] = d * ema[k] + (1 - d) * new.double()
            torch.testing.assert_close(t.ema.model.state_dict()[k].double(), ema[k], rtol=0, atol=1e-6)
    assert t.sampling_model is t.ema.model


def test_ema_warmup_forgets_the_initial_weights():
    """The share of the initial weights after s warm-up steps is 1 / C(s + 9, 9) (ema_decay_at's
    docstring), against decay^s without warm-up: 0.999^2000 = 13.5%."""
    from math import comb

    from flowmatch.training.optim import ema_decay_at

    for s in (1, 10, 100):
        share = math.prod(ema_decay_at(0.999, k, True) for k in range(s))
        assert share == pytest.approx(1 / comb(s + 9, 9), rel=1e-9)
    assert math.prod(ema_decay_at(0.999, k, False) for k in range(2000)) == pytest.approx(0.1352, abs=1e-4)
    assert ema_decay_at(0.999, 10**6, True) == 0.999  # the warm-up ends: the plain decay


# --------------------------------------------------------------------------------------------
# (c) learning rate
# --------------------------------------------------------------------------------------------


def test_cosine_learning_rate():
    total, base = 1000, 2e-3
    lrs = [learning_rate(base, "cosine", s, total) for s in range(total + 1)]
    assert lrs[0] == base
    assert lrs[total // 2] == pytest.approx(base / 2, rel=1e-12)
    assert lrs[total] == pytest.approx(0.0, abs=1e-15)
    assert lrs[total - 1] < 1e-5 * base  # the last step of the run has lr ~ 0
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
    # symmetric about the midpoint: lr(s) + lr(T - s) = base
    assert all(math.isclose(lrs[s] + lrs[total - s], base, rel_tol=1e-12) for s in range(total + 1))


def test_constant_learning_rate():
    assert {learning_rate(1e-3, "constant", s, 50) for s in range(51)} == {1e-3}


def test_logged_lr_is_the_cosine_schedule_of_the_step_taken(tmp_path):
    make_trainer(tmp_path, steps=20, lr_schedule="cosine", log_every=4).fit()
    for step, _, lr, _ in log_without_time(tmp_path):
        assert float(lr) == pytest.approx(learning_rate(3e-3, "cosine", int(step) - 1, 20), rel=1e-5)


# --------------------------------------------------------------------------------------------
# (d) KeyboardInterrupt
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ema_decay, schedule", [(0.0, "constant"), (0.9, "cosine")])
def test_keyboard_interrupt_keeps_the_last_completed_step_and_resume_finishes_identically(
    tmp_path, ema_decay, schedule
):
    kw = dict(steps=20, ema_decay=ema_decay, lr_schedule=schedule)
    straight = make_trainer(tmp_path / "a", **kw)
    straight.fit()

    # the source raises on its 9th call: 8 steps completed, the 9th never started
    t = make_trainer(tmp_path / "b", source=RaiseAt(gaussian_source(), 9), **kw)
    with pytest.raises(KeyboardInterrupt):
        t.fit()
    assert t.step == 8
    assert load_checkpoint(tmp_path / "b" / "checkpoints").step == 8
    assert [r[0] for r in log_without_time(tmp_path / "b")] == ["5"]

    resumed = make_trainer(tmp_path / "b", **kw)
    assert resumed.fit(resume=True).resumed_from == 8
    assert_same_trainer_state(straight, resumed)
    assert log_without_time(tmp_path / "a") == log_without_time(tmp_path / "b")


def test_keyboard_interrupt_inside_a_step_still_resumes_identically(tmp_path):
    straight = make_trainer(tmp_path / "a", steps=20)
    straight.fit()
    t = make_trainer(tmp_path / "b", steps=20, target=RaiseAt(TensorBatches(TARGET), 9))
    with pytest.raises(KeyboardInterrupt):
        t.fit()
    assert load_checkpoint(tmp_path / "b" / "checkpoints").step == 8
    resumed = make_trainer(tmp_path / "b", steps=20)
    resumed.fit(resume=True)
    assert_same_trainer_state(straight, resumed)


# --------------------------------------------------------------------------------------------
# Misc. behaviour of the loop
# --------------------------------------------------------------------------------------------


def test_batch_size_larger_than_the_training_set_is_rejected_before_training():
    with pytest.raises(ValueError, match="batch size must not exceed the target training set of 20 rows, got 32"):
        make_trainer(None, steps=2, target=TensorBatches(TARGET[:20], name="target training"))


def test_same_seed_same_weights_different_seed_different_weights():
    a, b, c = (make_trainer(None, steps=6, seed=s) for s in (0, 0, 1))
    for t in (a, b, c):
        t.fit()
    assert_same_tensors(a.model.state_dict(), b.model.state_dict())
    assert not torch.equal(a.model.net[0].weight, c.model.net[0].weight)


def test_training_does_not_touch_the_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    make_trainer(None, steps=3, method="ot-cfm").fit()
    assert torch.equal(torch.rand(3), expected)


# --------------------------------------------------------------------------------------------
# (e), (f) end to end: OT-CFM learns gaussian -> 8gaussians; log.csv
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_end_to_end_ot_cfm_learns_8gaussians_and_logs_a_decreasing_loss(tmp_path):
    cfg = RunConfig(
        source="gaussian",
        target="8gaussians",
        method="ot-cfm",
        n_train=2000,
        n_test=500,
        steps=1500,
        batch_size=128,
        log_every=100,
        checkpoint_every=100_000,
        seed=0,
    )
    data = build_data(cfg)
    x0, x1 = data.source.test, data.target.test

    def w2_of(model):
        return metrics.w2(sample(model, x0, solver="euler", steps=50).x, x1)

    # Measured (1 thread, ~10 s of training): untrained W2 ~ 3.9 (about W2(q0, q1) = 3.9, the
    # untrained flow barely moves its input); trained W2 ~ 0.70; the sampling floor, W2 between
    # 500 train and 500 test target points, is ~ 0.63.
    w2_untrained = w2_of(build_model(cfg, 2))
    trainer, result, _ = train_run(cfg, tmp_path / "run", quiet=True, evaluate=False, plots=False)
    w2_trained = w2_of(trainer.sampling_model)
    w2_floor = metrics.w2(data.target.train[:500], x1)
    assert w2_untrained > 3.0
    assert w2_trained < 1.0
    assert w2_trained < 0.3 * w2_untrained
    assert w2_trained < w2_floor + 0.4

    header, rows = read_log(tmp_path / "run")
    assert header == ["step", "loss", "lr", "grad_norm", "elapsed_s"]
    assert [int(r[0]) for r in rows] == list(range(100, 1501, 100))
    loss = [float(r[1]) for r in rows]
    assert all(math.isfinite(v) and v > 0 for v in loss)
    assert sum(loss[-3:]) / 3 < 0.7 * sum(loss[:3]) / 3  # the loss decreases overall
    assert result.final_loss == pytest.approx(loss[-1], rel=1e-5)
    assert {float(r[2]) for r in rows} == {1e-3}
    assert all(float(r[3]) > 0 and math.isfinite(float(r[3])) for r in rows)
    elapsed = [float(r[4]) for r in rows]
    assert all(b >= a for a, b in zip(elapsed, elapsed[1:]))


def test_the_trainer_uses_fused_adamw_with_the_per_tensor_update():
    from flowmatch.models import MLP
    from flowmatch.training.optim import adamw

    torch.manual_seed(0)
    a, b = MLP(2, hidden=16), MLP(2, hidden=16)
    b.load_state_dict(a.state_dict())
    start = [p.detach().clone() for p in a.parameters()]
    fused = adamw(a, 1e-2, 1e-3, torch.device("cpu"))
    plain = torch.optim.AdamW(b.parameters(), lr=1e-2, weight_decay=1e-3)
    assert fused.defaults["fused"] is True and not plain.defaults["fused"]
    x, t = torch.randn(64, 2), torch.rand(64)
    for _ in range(5):
        for model, opt in ((a, fused), (b, plain)):
            opt.zero_grad()
            (model(x, t) ** 2).mean().backward()
            opt.step()
    assert min(float((p.detach() - p0).abs().max()) for p, p0 in zip(a.parameters(), start)) > 1e-3  # it trained
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)  # the same update up to rounding


def test_a_signal_forwarded_while_the_interrupted_run_saves_is_deferred_too(tmp_path, monkeypatch):
    """Under torchrun the launcher forwards the terminal's Ctrl-C, so a worker can get a second
    SIGINT while it writes the checkpoint of the first: that save must finish (it gathers the
    ranks' states; a rank killed mid-gather cost CI a traceback) and the run report it saved."""
    import os
    import signal

    from flowmatch.training import distributed
    from flowmatch.training.interrupt import Interrupted

    monkeypatch.setattr(distributed, "launched_by_torchrun", lambda: True)
    t = make_trainer(tmp_path / "run", steps=1000, checkpoint_every=1000)
    step, save = t.train_step, t.save

    def step_then_signal():
        out = step()
        if t.step == 3:
            os.kill(os.getpid(), signal.SIGINT)  # the terminal's Ctrl-C
        return out

    def signal_then_save():
        os.kill(os.getpid(), signal.SIGINT)  # the launcher's forwarded copy, mid-save
        return save()

    monkeypatch.setattr(t, "train_step", step_then_signal)
    monkeypatch.setattr(t, "save", signal_then_save)
    with pytest.raises(Interrupted) as info:
        t.fit()
    assert info.value.saved and info.value.step == 3
    assert load_checkpoint(tmp_path / "run" / "checkpoints").step == 3
