"""Token runs (issue 21): the config's rules, the CLI's refusals (exit 2, nothing written) and a
short training whose samples beat the untrained network's on the exact bracket checker."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flowmatch.cli import main
from flowmatch.data.tokens import is_dyck
from flowmatch.runs.config import RunConfig
from flowmatch.runs.discrete import DiscreteKind, evaluate_tokens
from flowmatch.runs.discrete_data import build_token_data
from flowmatch.runs.plan import kind_for


@pytest.mark.parametrize(
    "settings, message",
    [
        (
            dict(target="brackets", method="ot-cfm"),
            r"token data 'brackets' needs a discrete method \(dfm, ot-dfm\), got 'ot-cfm'",
        ),
        (
            dict(target="moons", method="dfm"),
            r"method 'dfm' trains on tokens: it needs --target digits-tokens or brackets, got 'moons'",
        ),
        (dict(target="brackets", method="dfm", token_source="gauss"), r"unknown token_source 'gauss'"),
        (dict(target="brackets", method="dfm", token_loss="mse"), r"unknown token_loss 'mse'"),
        (dict(target="brackets", method="dfm", kappa_power=0.0), r"kappa_power must be"),
        (dict(target="brackets", method="dfm", corrector=-1.0), r"corrector must be"),
        (
            dict(target="brackets", method="dfm", cond="label"),
            r"cond 'label' needs labelled token data \(digits-tokens\), got 'brackets'",
        ),
        (
            dict(target="digits-tokens", method="dfm", source="moons"),
            r"token runs take their source from --token-source",
        ),
    ],
)
def test_token_run_settings_are_checked(settings, message):
    with pytest.raises(ValueError, match=message):
        RunConfig(**settings)


def test_token_targets_are_discrete_runs_with_the_digits_split_of_continuous_runs():
    cfg = RunConfig(target="digits-tokens", method="dfm", cond="label", n_test=200)
    assert isinstance(kind_for(cfg), DiscreteKind)
    data = build_token_data(cfg)
    from flowmatch.runs.data import build_data

    images = build_data(RunConfig(target="digits", method="i-cfm", cond="label", n_test=200))
    torch.testing.assert_close(data.test.float() / 8 - 1, images.target.test.reshape(-1, 64))
    torch.testing.assert_close(data.test_labels, images.labels.test)


def test_the_cli_refuses_bad_token_settings_with_exit_2_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--target", "brackets", "--method", "dfm", "--kappa-power", "-1", "--out", str(out)]) == 2
    assert not out.exists()
    err = capsys.readouterr().err
    assert "kappa_power must be" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_short_bracket_training_beats_the_untrained_network_and_the_cli_samples_it(tmp_path):
    out = tmp_path / "run"
    args = ["train", "--target", "brackets", "--method", "dfm", "--steps", "250", "--batch-size", "128"]
    args += ["--n-train", "2000", "--n-test", "200", "--hidden", "64", "--depth", "2", "--lr", "3e-3"]
    args += ["--eval-steps", "32", "--quiet", "--no-plots", "--out", str(out)]
    assert main(args) == 0
    import json

    trained = json.loads((out / "metrics.json").read_text())["eval"]["valid_fraction"]
    cfg = RunConfig.from_toml(out / "config.toml")
    kind = DiscreteKind()
    data = kind.build_data(cfg)
    untrained = evaluate_tokens(kind.build_model(cfg, data), data, cfg, None, steps=32).valid_fraction
    assert trained > untrained + 0.1
    assert main(["sample", str(out), "--n", "20", "--steps", "16", "--out", str(tmp_path / "w.npy"), "--quiet"]) == 0
    x = np.load(tmp_path / "w.npy")
    assert x.shape == (20, 16) and x.min() >= 0 and x.max() <= 3
    assert main(["sample", str(out), "--n", "20", "--steps", "16", "--out", str(tmp_path / "w.txt"), "--quiet"]) == 0
    words = (tmp_path / "w.txt").read_text().split()
    assert len(words) == 20
    assert sum(is_dyck(["()[]".index(c) for c in w]) for w in words) >= 1


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--tasks", "moons", r"--tasks must be among digits-tokens, brackets, got 'moons'"),
        ("--nfe", "8,x", r"--nfe must be comma-separated positive integers, got '8,x'"),
    ],
)
def test_bench_discrete_refuses_bad_flags_with_exit_2(tmp_path, capsys, flag, value, message):
    out = tmp_path / "bench"
    assert main(["bench", "discrete", flag, value, "--out", str(out)]) == 2
    assert not out.exists()
    assert message.replace("\\", "") in capsys.readouterr().err.replace("\\", "")
