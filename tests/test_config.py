"""Tests of flowmatch.runs.config: the paper's defaults, TOML round trips, one-line validation errors."""

from __future__ import annotations

import pytest
from torch import nn

from flowmatch.runs.config import RunConfig, dump_toml, load_toml
from flowmatch.runs.run import build_model


def write(path, text: str):
    path.write_text(text)
    return path


# --------------------------------------------------------------------------------------------
# Defaults: Tong et al. (TMLR 2024), Appendix D (2D experiments)
# --------------------------------------------------------------------------------------------


def test_defaults_are_the_papers_2d_setup():
    c = RunConfig()
    assert (c.hidden, c.depth, c.activation) == (64, 3, "selu")
    assert c.lr == 1e-3 and c.weight_decay == 1e-5
    assert (c.batch_size, c.steps) == (512, 20_000)
    assert c.method == "ot-cfm" and c.sigma is None and c.resolved_sigma == 0.1
    assert c.lr_schedule == "constant" and c.ema_decay == 0.0 and c.grad_clip == 0.0


def test_default_model_is_three_hidden_layers_of_64_selu():
    model = build_model(RunConfig(), dim=2)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linears] == [64, 64, 64, 2]
    assert sum(isinstance(m, nn.SELU) for m in model.modules()) == 3


# --------------------------------------------------------------------------------------------
# TOML round trip
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {},
        dict(
            sigma=0.25,
            ema_decay=0.999,
            lr_schedule="cosine",
            grad_clip=1.5,
            lr=3e-4,
            weight_decay=0.0,
            seed=7,
            steps=123,
            hidden=17,
            depth=1,
            activation="tanh",
            eval_solver="rk4",
            device="cpu",
            method="i-cfm",
            target="8gaussians",
        ),
        # strings that need escaping in TOML
        dict(target='data dir/with "quotes" and \\backslash.npy', source="moons"),
        dict(method="rf", sigma=0.0),
        dict(method="fm", sigma=0.01),
    ],
)
def test_dump_and_load_toml_round_trip(tmp_path, changes):
    cfg = RunConfig(**changes)
    path = write(tmp_path / "config.toml", dump_toml(cfg.to_dict(), header="a header\nover two lines"))
    back = RunConfig.from_dict(load_toml(path))
    assert back == cfg
    assert RunConfig.from_toml(path) == cfg


def test_none_sigma_is_written_as_a_comment_and_reads_back_as_none(tmp_path):
    text = dump_toml(RunConfig().to_dict())
    assert "# sigma = (default)" in text
    back = RunConfig.from_dict(load_toml(write(tmp_path / "c.toml", text)))
    assert back.sigma is None and back.resolved_sigma == 0.1


def test_from_toml_overrides_win_and_none_overrides_are_ignored(tmp_path):
    path = write(tmp_path / "c.toml", dump_toml(RunConfig(steps=10, seed=3).to_dict()))
    cfg = RunConfig.from_toml(path, steps=20, seed=None)
    assert cfg.steps == 20 and cfg.seed == 3


def test_a_single_train_table_is_accepted(tmp_path):
    path = write(tmp_path / "c.toml", "[train]\nsteps = 5\nmethod = 'i-cfm'\n")
    assert RunConfig.from_dict(load_toml(path)) == RunConfig(steps=5, method="i-cfm")


def test_unknown_keys_are_an_error_naming_each_of_them():
    with pytest.raises(ValueError) as e:
        RunConfig.from_dict({"stepz": 3, "learning_rate": 1.0, "steps": 4})
    msg = str(e.value)
    assert "unknown config key" in msg and "stepz" in msg and "learning_rate" in msg
    assert "valid keys" in msg and "\n" not in msg


def test_missing_and_malformed_toml_files_raise_value_error_naming_the_file(tmp_path):
    with pytest.raises(ValueError, match="config file must exist.*nope.toml"):
        load_toml(tmp_path / "nope.toml")
    bad = write(tmp_path / "bad.toml", "steps = = 3\n")
    with pytest.raises(ValueError, match="malformed TOML config.*bad.toml"):
        load_toml(bad)


def test_non_finite_floats_cannot_be_written():
    with pytest.raises(ValueError, match="non-finite.*inf"):
        dump_toml({"lr": float("inf")})


# --------------------------------------------------------------------------------------------
# Validation: every bad value is a one-line ValueError with the rule and the value
# --------------------------------------------------------------------------------------------

BAD = [
    (dict(steps=0), ["steps must be a positive integer", "0"]),
    (dict(steps=2.5), ["steps must be a positive integer", "2.5"]),
    (dict(batch_size=-1), ["batch_size must be a positive integer", "-1"]),
    (dict(n_train=0), ["n_train must be a positive integer", "0"]),
    (dict(sigma=-0.1), ["sigma must be a finite number >= 0", "-0.1"]),
    (dict(sigma=float("nan")), ["sigma must be a finite number >= 0", "nan"]),
    (dict(lr=0), ["lr must be a finite number > 0", "got 0"]),
    (dict(lr=-1e-3), ["lr must be a finite number > 0", "-0.001"]),
    (dict(weight_decay=-1.0), ["weight_decay must be a finite number >= 0", "-1.0"]),
    (dict(ema_decay=1.0), ["ema_decay must be < 1", "1.0"]),
    (dict(ema_decay=1.5), ["ema_decay must be a number in [0, 1]", "1.5"]),
    (dict(seed=-1), ["seed must be an integer >= 0", "-1"]),
    (dict(method="cfm-xx"), ["unknown method", "'cfm-xx'", "ot-cfm"]),
    (dict(activation="swish"), ["unknown activation", "'swish'", "selu"]),
    (dict(eval_solver="rk45"), ["unknown eval_solver", "'rk45'", "dopri5"]),
    (dict(lr_schedule="linear"), ["unknown lr_schedule", "'linear'", "cosine"]),
    (dict(time_embedding="fourier"), ["unknown time_embedding", "'fourier'"]),
    (dict(device="tpu"), ["device must be auto, cpu, cuda, cuda:N or mps", "'tpu'"]),
    (dict(method="fm", source="moons"), ["needs --source gaussian", "'moons'"]),
    (dict(method="rf", sigma=0.3), ["needs sigma = 0", "0.3"]),
    (dict(method="sb-cfm", sigma=0.0), ["sb-cfm needs sigma > 0", "0.0"]),
    (dict(method="fm", sigma=1.0), ["fm needs sigma_min in [0, 1)", "1.0"]),
    (dict(target=""), ["target must be a dataset name or file path", "''"]),
]


@pytest.mark.parametrize("kwargs, parts", BAD, ids=[repr(k) for k, _ in BAD])
def test_bad_values_raise_one_line_value_error_with_rule_and_value(kwargs, parts):
    with pytest.raises(ValueError) as e:
        RunConfig(**kwargs)
    msg = str(e.value)
    assert "\n" not in msg
    for part in parts:
        assert part in msg, (part, msg)


TOML_BAD = [
    ("steps = 0\n", ["steps must be a positive integer", "0"]),
    ("batch_size = -1\n", ["batch_size must be a positive integer", "-1"]),
    ("sigma = nan\n", ["sigma must be a finite number >= 0", "nan"]),
    ("lr = 0.0\n", ["lr must be a finite number > 0", "0.0"]),
    ("ema_decay = 1.0\n", ["ema_decay must be < 1", "1.0"]),
    ("steps = 'ten'\n", ["steps must be a positive integer", "'ten'"]),
    ("seed = true\n", ["seed must be an integer >= 0", "True"]),
    ("method = 'fm'\nsource = 'moons'\n", ["needs --source gaussian", "'moons'"]),
]


@pytest.mark.parametrize("text, parts", TOML_BAD, ids=[t.strip() for t, _ in TOML_BAD])
def test_bad_values_from_a_toml_file_are_rejected_the_same_way(tmp_path, text, parts):
    with pytest.raises(ValueError) as e:
        RunConfig.from_dict(load_toml(write(tmp_path / "c.toml", text)))
    msg = str(e.value)
    assert "\n" not in msg
    for part in parts:
        assert part in msg, (part, msg)


@pytest.mark.parametrize("device", ["cuda:abc", "cuda:"])
def test_malformed_cuda_device_index_is_a_value_error(device):
    with pytest.raises(ValueError, match="device must be auto, cpu, cuda, cuda:N or mps"):
        RunConfig(device=device)


def test_validate_normalises_integral_floats_and_rechecks_after_replace():
    cfg = RunConfig(steps=10.0, lr=1)
    assert cfg.steps == 10 and isinstance(cfg.steps, int) and isinstance(cfg.lr, float)
    with pytest.raises(ValueError, match="steps must be a positive integer, got 0"):
        cfg.replace(steps=0)
