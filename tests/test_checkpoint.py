"""Tests of flowmatch.training.checkpoint: exact round trips, the `latest` pointer, pruning, crash safety."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from flowmatch.models import MLP
from flowmatch.training.checkpoint import (
    Checkpoint,
    atomic_write_text,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)


def trained_model_and_optimizer(seed: int = 0, steps: int = 3):
    """A small MLP and an AdamW that has taken ``steps`` steps (so it has moments)."""
    torch.manual_seed(seed)
    model = MLP(2, hidden=8, depth=2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(16, 2, generator=g)
        t = torch.rand(16, generator=g)
        loss = (model(x, t) - x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model, opt


def one_more_step(model, opt, seed: int = 123):
    g = torch.Generator().manual_seed(seed)
    x, t = torch.randn(16, 2, generator=g), torch.rand(16, generator=g)
    opt.zero_grad()
    (model(x, t) - 2 * x).pow(2).mean().backward()
    opt.step()


def simple_ckpt(step: int) -> Checkpoint:
    return Checkpoint(
        step=step,
        model={"w": torch.full((2, 2), float(step))},
        rng={"g": torch.Generator().manual_seed(step).get_state()},
    )


def step_dirs(directory):
    return sorted(p.name for p in directory.iterdir() if p.is_dir() and p.name.startswith("step-"))


# --------------------------------------------------------------------------------------------
# Round trip
# --------------------------------------------------------------------------------------------


def test_round_trip_of_model_optimizer_ema_rng_and_state(tmp_path):
    model, opt = trained_model_and_optimizer()
    ema = {k: v * 0.5 + 1 for k, v in model.state_dict().items()}
    gen = torch.Generator().manual_seed(42)
    torch.randn(7, generator=gen)  # advance it past its seed
    ck = Checkpoint(
        step=3,
        model=model.state_dict(),
        optimizer=opt.state_dict(),
        ema=ema,
        rng={"generator": gen.get_state()},
        state={"elapsed_s": 1.25, "method": "ot-cfm"},
    )
    path = save_checkpoint(tmp_path / "ckpts", ck)
    assert path.name == "step-00000003"

    back = load_checkpoint(path)
    assert back.step == 3 and back.path == path
    assert back.state["elapsed_s"] == 1.25 and back.state["method"] == "ot-cfm"
    assert back.model.keys() == model.state_dict().keys()
    for k, v in model.state_dict().items():
        assert torch.equal(back.model[k], v) and back.model[k].dtype == v.dtype
    for k, v in ema.items():
        assert torch.equal(back.ema[k], v)

    # optimizer: Adam moments and step counts are identical after loading into a fresh AdamW
    model2 = MLP(2, hidden=8, depth=2)
    model2.load_state_dict(back.model)
    opt2 = torch.optim.AdamW(model2.parameters(), lr=0.5, weight_decay=0.0)  # hyper-params restored too
    opt2.load_state_dict(back.optimizer)
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["state"].keys() == s2["state"].keys()
    for pid in s1["state"]:
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(s1["state"][pid][key], s2["state"][pid][key]), (pid, key)
    g1, g2 = s1["param_groups"][0], s2["param_groups"][0]
    assert (g2["lr"], g2["weight_decay"], tuple(g2["betas"]), g2["eps"]) == (
        g1["lr"],
        g1["weight_decay"],
        tuple(g1["betas"]),
        g1["eps"],
    )

    # behaviour: one more identical step from both gives identical weights
    one_more_step(model, opt)
    one_more_step(model2, opt2)
    for p1, p2 in zip(model.parameters(), model2.parameters()):
        assert torch.equal(p1, p2)

    # rng: the restored generator continues the same stream
    gen2 = torch.Generator()
    gen2.set_state(back.rng["generator"])
    assert torch.equal(torch.randn(5, generator=gen), torch.randn(5, generator=gen2))


def test_files_are_safetensors_and_state_json(tmp_path):
    model, opt = trained_model_and_optimizer(steps=1)
    ck = Checkpoint(
        step=1,
        model=model.state_dict(),
        optimizer=opt.state_dict(),
        ema=model.state_dict(),
        rng={"g": torch.Generator().get_state()},
        state={"a": 1},
    )
    path = save_checkpoint(tmp_path, ck)
    assert sorted(p.name for p in path.iterdir()) == [
        "ema.safetensors",
        "model.safetensors",
        "optimizer.safetensors",
        "rng.safetensors",
        "state.json",
    ]
    with safe_open(str(path / "model.safetensors"), framework="pt") as f:
        assert set(f.keys()) == set(model.state_dict())
        for k in f.keys():
            assert torch.equal(f.get_tensor(k), model.state_dict()[k])
    state = json.loads((path / "state.json").read_text())
    assert state["step"] == 1 and state["a"] == 1
    assert state["optimizer"]["param_groups"][0]["lr"] == 1e-2


def test_checkpoint_without_optimizer_or_ema_loads_them_as_none(tmp_path):
    path = save_checkpoint(tmp_path, simple_ckpt(5))
    assert not (path / "ema.safetensors").exists() and not (path / "optimizer.safetensors").exists()
    back = load_checkpoint(path)
    assert back.optimizer is None and back.ema is None and torch.equal(back.model["w"], torch.full((2, 2), 5.0))


# --------------------------------------------------------------------------------------------
# latest, pruning
# --------------------------------------------------------------------------------------------


def test_latest_points_at_the_newest_and_only_keep_remain(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    for step in (10, 20, 30, 40, 50):
        save_checkpoint(tmp_path, simple_ckpt(step), keep=2)
        assert (tmp_path / "latest").read_text().strip() == f"step-{step:08d}"
        assert latest_checkpoint(tmp_path) == tmp_path / f"step-{step:08d}"
        assert load_checkpoint(tmp_path).step == step  # a checkpoints/ folder loads its latest
    assert step_dirs(tmp_path) == ["step-00000040", "step-00000050"]
    assert load_checkpoint(tmp_path / "step-00000040").step == 40


@pytest.mark.parametrize("keep", [1, 3])
def test_keep_bounds_the_number_of_checkpoints(tmp_path, keep):
    for step in range(1, 7):
        save_checkpoint(tmp_path, simple_ckpt(step), keep=keep)
    assert step_dirs(tmp_path) == [f"step-{s:08d}" for s in range(7 - keep, 7)]


def test_saving_the_same_step_again_replaces_it(tmp_path):
    save_checkpoint(tmp_path, simple_ckpt(3))
    ck = simple_ckpt(3)
    ck.model = {"w": torch.zeros(2, 2)}
    save_checkpoint(tmp_path, ck)
    assert step_dirs(tmp_path) == ["step-00000003"]
    assert torch.equal(load_checkpoint(tmp_path).model["w"], torch.zeros(2, 2))


# --------------------------------------------------------------------------------------------
# Crash safety
# --------------------------------------------------------------------------------------------


def test_a_leftover_tmp_directory_from_a_crash_is_ignored(tmp_path):
    save_checkpoint(tmp_path, simple_ckpt(2))
    # crash while writing step 3: a half-written temporary directory is left behind
    tmp = tmp_path / ".tmp-step-00000003-99999"
    tmp.mkdir()
    (tmp / "model.safetensors").write_bytes(b"\x00garbage")
    assert latest_checkpoint(tmp_path) == tmp_path / "step-00000002"
    assert load_checkpoint(tmp_path).step == 2
    # later checkpoints are written and pruned normally around it
    for step in (4, 5, 6):
        save_checkpoint(tmp_path, simple_ckpt(step), keep=2)
    assert step_dirs(tmp_path) == ["step-00000005", "step-00000006"]
    assert load_checkpoint(tmp_path).step == 6


def test_a_crash_between_rename_and_pointer_update_keeps_the_previous_latest(tmp_path):
    save_checkpoint(tmp_path, simple_ckpt(2))
    save_checkpoint(tmp_path, simple_ckpt(3))
    atomic_write_text(tmp_path / "latest", "step-00000002\n")  # the pointer never moved to 3
    assert load_checkpoint(tmp_path).step == 2


def test_a_pointer_to_an_incomplete_checkpoint_is_rejected(tmp_path):
    (tmp_path / "step-00000007").mkdir()  # no state.json
    atomic_write_text(tmp_path / "latest", "step-00000007\n")
    assert latest_checkpoint(tmp_path) is None
    with pytest.raises(ValueError, match="names no complete checkpoint"):
        load_checkpoint(tmp_path)
    with pytest.raises(ValueError, match="must contain state.json"):
        load_checkpoint(tmp_path / "step-00000007")


def test_atomic_write_text_leaves_no_temporary_file(tmp_path):
    atomic_write_text(tmp_path / "sub" / "f.txt", "one")
    atomic_write_text(tmp_path / "sub" / "f.txt", "two")
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["f.txt"]
    assert (tmp_path / "sub" / "f.txt").read_text() == "two"
