"""One contract test over every run kind (issue 16, item 2): a config picks its kind, and the same
driver trains, writes metrics.json, evaluates, plots and loads it, with no caller branching on the
kind."""

from __future__ import annotations

import json

import pytest

from flowmatch.runs.config import RunConfig
from flowmatch.runs.image import ImageKind
from flowmatch.runs.kind import RunKind
from flowmatch.runs.run import evaluate_run, kind_for, load_run, plot_run, train_run
from flowmatch.runs.snapshot import SnapshotKind
from flowmatch.runs.vector import VectorKind

COMMON = dict(steps=12, batch_size=32, log_every=4, checkpoint_every=12, eval_steps=3, device="cpu", seed=1)
CASES = {
    "vector": (VectorKind, dict(target="moons", n_train=200, n_test=64, hidden=16), {"samples", "trajectories"}, "w2"),
    "image": (
        ImageKind,
        dict(target="digits", cond="label", guidance_dropout=0.1, unet_width=8, unet_attention="none", n_test=64),
        {"samples"},
        "rows",
    ),
    "snapshots": (
        SnapshotKind,
        dict(snapshots="bifurcation", method="i-cfm", hidden=16, holdout=1),
        {"trajectories"},
        "holdout_w1",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_every_kind_trains_evaluates_plots_and_loads_through_the_one_driver(tmp_path, name):
    cls, settings, figures, eval_key = CASES[name]
    cfg = RunConfig(**COMMON, **settings)
    kind = kind_for(cfg)
    assert type(kind) is cls
    for method in ("build_data", "make_trainer", "evaluate", "summary", "plot", "report_text"):
        assert getattr(type(kind), method) is not getattr(RunKind, method), method  # implemented
    out = tmp_path / "run"
    _, result, report = train_run(cfg, out, quiet=True)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 12 and eval_key in metrics["eval"]
    assert kind.report_text(cfg, report, result).strip()
    run = load_run(out, device="cpu")
    assert run.kind.name == kind.name and run.step == 12
    again = evaluate_run(run, steps=3, n=32)
    assert eval_key in again.to_dict()
    written = plot_run(out, run.model, run.data, run.config)
    assert set(written) == figures | {"loss"} and all(p.is_file() for p in written.values())


def test_a_training_builds_its_method_once(tmp_path, monkeypatch):
    """Configuration resolved once (issue 16, item 3): the config checks sigma without building
    the method, and the coupling workers come from the method's spec; one training used to build
    LinearPath and ExactOT three times."""
    from flowmatch.couplings import ExactOT
    from flowmatch.objectives import methods
    from flowmatch.paths import LinearPath

    built = {"ExactOT": 0, "LinearPath": 0, "check_sigma": 0}
    for cls in (ExactOT, LinearPath):
        original = cls.__init__

        def counting(self, *a, _original=original, _name=cls.__name__, **kw):
            built[_name] += 1
            _original(self, *a, **kw)

        monkeypatch.setattr(cls, "__init__", counting)
    check = methods.check_sigma

    def counting_check(*a, **kw):
        built["check_sigma"] += 1
        return check(*a, **kw)

    monkeypatch.setattr(methods, "check_sigma", counting_check)
    cfg = RunConfig(**COMMON, **CASES["vector"][1], method="ot-cfm", sigma=0.05, coupling_workers="auto")
    train_run(cfg, tmp_path / "run", quiet=True, evaluate=False, plots=False)
    assert built == {"ExactOT": 1, "LinearPath": 1, "check_sigma": 2}  # RunConfig once, the build once


def test_a_training_resolves_its_config_once_into_a_plan(tmp_path, monkeypatch):
    """One RunPlan per training (kind, device, the Trainer's settings), and the Trainer gets exactly
    its device and settings: no second resolution of the device or of the coupling workers."""
    import flowmatch.runs.run as run_module
    from flowmatch.runs.plan import plan_run

    plans = []

    def recording(cfg, **kw):
        plans.append(plan_run(cfg, **kw))
        return plans[-1]

    monkeypatch.setattr(run_module, "plan_run", recording)
    cfg = RunConfig(**COMMON, **CASES["vector"][1], coupling_workers="auto")
    trainer, _, _ = train_run(cfg, tmp_path / "run", quiet=True, evaluate=False, plots=False)
    assert len(plans) == 1
    assert trainer.config is plans[0].trainer and trainer.device == plans[0].device
    assert isinstance(plans[0].kind, VectorKind) and plans[0].trainer.quiet
