"""Data-parallel training (issue 8) with 2 CPU processes (gloo) under torchrun.

Two launches serve every test of the file (module fixtures), since each start of torch in a worker
costs seconds on a 2-core machine:

- ``tests/ddp_script.py`` under ``torchrun --nproc-per-node 2``: the global-coupling pairs of two
  ranks, a DDP I-CFM run and an uninterrupted DDP OT-CFM run with global coupling;
- ``flowmatch train --nproc 2 --max-restarts 1`` (which launches ``torchrun -m flowmatch train``)
  of the same OT-CFM run, with rank 1 killed after step 25 by the testing hook
  ``FLOWMATCH_FAULT_AT_STEP``: torchrun restarts both workers, which resume from step 20.

The single-process references are computed here: one process, global batch B = 2 b, whose rows
are those the two ranks drew (rank r's b rows from its own generators, in rank order), the mean
loss over the B rows, one AdamW step; DDP's averaged gradient is the gradient of that mean.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from flowmatch.cli import main
from flowmatch.couplings import ExactOT, Sinkhorn
from flowmatch.couplings.global_coupling import GlobalCoupling, shared_generator
from flowmatch.data.batches import TensorBatches
from flowmatch.objectives import methods
from flowmatch.runs.config import RunConfig
from flowmatch.runs.run import build_data, build_model
from flowmatch.training import distributed
from flowmatch.training.checkpoint import load_checkpoint
from flowmatch.training.trainer import PATH_SEED_OFFSET

HERE = Path(__file__).parent
FLOWMATCH = Path(sys.executable).parent / "flowmatch"
WORLD = 2

COMMON = dict(n_train=200, n_test=64, hidden=16, batch_size=32, lr=2e-3, log_every=5, eval_steps=4, device="cpu")
ICFM = dict(COMMON, method="i-cfm", steps=20, checkpoint_every=20, seed=3, coupling_workers=0)
OT_GLOBAL = dict(COMMON, method="ot-cfm", coupling_scope="global", steps=40, checkpoint_every=10, seed=1)
FAULT_STEP = 25

#: DDP against the single-process reference: float32 sums in another order (gradient all-reduce)
#: drift apart over the steps; measured max |difference| of the weights ~1e-7 after 20-40 steps.
WEIGHT_TOL = 2e-5
#: Restart against uninterrupted: the same computation resumed from a checkpoint (measured: 0).
RESTART_TOL = 1e-6


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    for k in ("FLOWMATCH_FAULT_AT_STEP", "FLOWMATCH_FAULT_RANK", "RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(k, None)
    return env


@pytest.fixture(scope="module")
def script_out(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc-per-node={WORLD}",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint=localhost:{distributed.free_port()}",
        str(HERE / "ddp_script.py"),
        str(out),
        json.dumps({"icfm": ICFM, "ot_global": OT_GLOBAL}),
    ]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def restarted(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("restart") / "run"
    flags = []
    for k, v in OT_GLOBAL.items():
        flags += ["--" + k.replace("_", "-"), str(v)]
    env = dict(_env(), FLOWMATCH_FAULT_AT_STEP=str(FAULT_STEP), FLOWMATCH_FAULT_RANK="1")
    cmd = [
        str(FLOWMATCH),
        "train",
        "--nproc",
        str(WORLD),
        "--max-restarts",
        "1",
        *flags,
        "--no-plots",
        "--quiet",
        "--out",
        str(out),
    ]
    log = out.parent / "stderr.txt"
    with open(log, "w") as err:
        proc = subprocess.run(
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL, text=True, timeout=300
        )
    stderr = log.read_text()
    assert proc.returncode == 0, stderr[-3000:]
    return out, stderr


# ---------------------------------------------------------------- single-process references
def reference_model(cfg_dict: dict, *, ranks: tuple[int, ...] = (0, 1), global_ot: bool = False):
    """One process trains on the union of the rows the given ranks draw (b rows each, in rank order)."""
    cfg = RunConfig.from_dict(cfg_dict)
    data = build_data(cfg)
    model = build_model(cfg, data.dim)
    fm = methods.get("i-cfm", sigma=cfg.sigma)  # the straight path of i-cfm and ot-cfm; pairs made here
    target = TensorBatches(data.target.train)
    b = cfg.batch_size // WORLD
    gens = [torch.Generator().manual_seed(distributed.rank_seed(cfg.seed, r)) for r in ranks]
    path_gens = [torch.Generator().manual_seed(distributed.rank_seed(cfg.seed, r) + PATH_SEED_OFFSET) for r in ranks]
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    for _ in range(cfg.steps):
        drawn = [(torch.randn(b, data.dim, generator=g), target(b, generator=g)) for g in gens]
        x0 = torch.cat([d[0] for d in drawn])
        x1 = torch.cat([d[1] for d in drawn])
        if global_ot:
            x1 = x1[ExactOT().pair(x0, x1).i1]
        losses = [
            fm.loss(model, x0[k * b : (k + 1) * b], x1[k * b : (k + 1) * b], generator=pg)
            for k, pg in enumerate(path_gens)
        ]
        loss = torch.stack(losses).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model


def run_model(run_dir: Path, cfg_dict: dict):
    cfg = RunConfig.from_dict(cfg_dict)
    model = build_model(cfg, 2)
    ck = load_checkpoint(run_dir / "checkpoints")
    model.load_state_dict(ck.model)
    return model, ck


def max_weight_diff(a, b) -> float:
    return max(float((p - q).detach().abs().max()) for p, q in zip(a.parameters(), b.parameters()))


def eval_loss(model) -> float:
    """I-CFM loss on a fixed evaluation batch (fixed t and noise)."""
    g = torch.Generator().manual_seed(12345)
    x0 = torch.randn(512, 2, generator=g)
    x1 = torch.randn(512, 2, generator=g) * 0.3 + torch.tensor([1.0, -0.5])
    with torch.no_grad():
        return float(methods.get("i-cfm").loss(model, x0, x1, generator=g))


# ---------------------------------------------------------------- tests
def test_ddp_icfm_matches_one_process_with_the_global_batch(script_out):
    ddp, ck = run_model(script_out / "icfm", ICFM)
    assert ck.step == ICFM["steps"]
    ref = reference_model(ICFM)
    diff = max_weight_diff(ddp, ref)
    assert diff < WEIGHT_TOL
    assert abs(eval_loss(ddp) - eval_loss(ref)) < WEIGHT_TOL
    # the tolerance discriminates: training on rank 0's rows alone ends far away
    half = reference_model(ICFM, ranks=(0,))
    assert max_weight_diff(ddp, half) > 100 * WEIGHT_TOL
    # only rank 0 wrote, with both ranks' generator states; the log is the global mean loss
    assert set(ck.rng) == {"generator", "path_generator", "generator@rank1", "path_generator@rank1"}
    assert not torch.equal(ck.rng["generator"], ck.rng["generator@rank1"])


def test_ddp_ot_cfm_with_global_coupling_matches_one_process_exact_ot_of_the_global_batch(script_out):
    ddp, _ = run_model(script_out / "ot_global", OT_GLOBAL)
    ref = reference_model(OT_GLOBAL, global_ot=True)
    assert max_weight_diff(ddp, ref) < WEIGHT_TOL
    # per-rank OT (local scope) of the same rows is a different run
    local = reference_model(OT_GLOBAL, global_ot=False)
    assert max_weight_diff(ddp, local) > 100 * WEIGHT_TOL


def test_global_coupling_pairs_equal_exact_ot_of_the_gathered_batch(script_out):
    ranks = [torch.load(script_out / f"pairs-rank{r}.pt") for r in range(WORLD)]
    x0g = torch.cat([r["x0"] for r in ranks])
    x1g = torch.cat([r["x1"] for r in ranks])
    b = ranks[0]["x0"].shape[0]
    one = ExactOT().pair(x0g, x1g)
    got_x0 = torch.cat([r["exact"]["x0"] for r in ranks])
    got_x1 = torch.cat([r["exact"]["x1"] for r in ranks])
    assert torch.equal(got_x0, x0g[one.i0]) and torch.equal(got_x1, x1g[one.i1])
    assert torch.equal(torch.cat([r["exact"]["i1"] for r in ranks]), one.i1)
    assert sorted(torch.cat([r["exact"]["i1"] for r in ranks]).tolist()) == list(range(WORLD * b))  # a permutation
    # one OT problem costs no more than the two per-rank problems together (and here strictly less)
    cost = lambda a, c: float(((a - c) ** 2).sum())
    local = sum(cost(*ExactOT().pair(r["x0"], r["x1"]).apply(r["x0"], r["x1"])) for r in ranks)
    assert cost(got_x0, got_x1) < local
    # a stochastic base: both ranks drew the same numbers (from the shared generator), so their
    # slices are the single-process pairing with that generator, not of their own local generators
    sk = Sinkhorn(0.1, sampling="rows")
    want = sk(x0g, x1g, generator=shared_generator(7, x0g, x1g))
    assert torch.equal(torch.cat([r["sinkhorn"]["i1"] for r in ranks]), want.i1)


def test_killed_worker_is_restarted_and_the_run_matches_the_uninterrupted_one(script_out, restarted):
    out, stderr = restarted
    assert f"FLOWMATCH_FAULT_AT_STEP={FAULT_STEP}: rank 1 exits" in stderr
    resumed, ck = run_model(out, OT_GLOBAL)
    uninterrupted, ck_ref = run_model(script_out / "ot_global", OT_GLOBAL)
    assert ck.step == ck_ref.step == OT_GLOBAL["steps"]
    assert abs(eval_loss(resumed) - eval_loss(uninterrupted)) <= RESTART_TOL
    assert max_weight_diff(resumed, uninterrupted) <= RESTART_TOL
    # rank 0's log: rows after the step-20 checkpoint were dropped and rewritten once
    steps = [int(line.split(",")[0]) for line in (out / "log.csv").read_text().splitlines()[1:]]
    assert steps == list(range(5, OT_GLOBAL["steps"] + 1, 5))
    assert json.loads((out / "metrics.json").read_text())["train"]["steps"] == OT_GLOBAL["steps"]


# ---------------------------------------------------------------- single process, no launch
def test_rank_seeds_keep_rank_0_and_separate_the_others():
    assert distributed.rank_seed(5, 0) == 5
    seeds = {distributed.rank_seed(5, r) for r in range(64)}
    assert len(seeds) == 64 and all(0 <= s < 2**63 for s in seeds)


def test_global_coupling_in_one_process_is_its_base():
    g = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(32, 2, generator=g), torch.randn(32, 2, generator=g) + 2
    assert torch.equal(GlobalCoupling(ExactOT())(x0, x1).i1, ExactOT()(x0, x1).i1)
    with pytest.raises(ValueError, match="does not take conditions"):
        GlobalCoupling(ExactOT())(x0, x1, cond=torch.zeros(32, dtype=torch.long))


def test_checkpoint_of_another_world_size_is_a_one_line_error():
    rng = {"generator": torch.zeros(3, dtype=torch.uint8), "generator@rank1": torch.ones(3, dtype=torch.uint8)}
    assert torch.equal(distributed.states_for_rank(rng, 1, 2)["generator"], rng["generator@rank1"])
    with pytest.raises(ValueError, match="written by 2 process"):
        distributed.states_for_rank(rng, 0, 1)


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--nproc", "2", "--batch-size", "33"],
            "batch_size (the global batch) must be divisible by the number of processes 2, got 33",
        ),
        (["--nproc", "0"], "nproc must be a positive integer, got 0"),
        (["--max-restarts", "1"], "--max-restarts needs --nproc"),
        (["--coupling-scope", "everywhere"], "unknown coupling_scope 'everywhere'; choose one of: global, local"),
    ],
)
def test_bad_distributed_flags_are_one_line_errors_with_exit_code_2(tmp_path, capsys, argv, message):
    assert main(["train", "--out", str(tmp_path / "r"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err
    assert not (tmp_path / "r").exists()


def test_gpu_speed_options_are_ignored_on_the_cpu_with_one_note(tmp_path, capsys):
    argv = [
        "train",
        "--steps",
        "3",
        "--batch-size",
        "16",
        "--n-train",
        "64",
        "--n-test",
        "32",
        "--hidden",
        "8",
        "--eval-steps",
        "2",
        "--device",
        "cpu",
        "--bf16",
        "--compile",
        "--tf32",
        "--no-plots",
        "--quiet",
        "--out",
        str(tmp_path / "r"),
    ]
    assert main(argv) == 0
    err = capsys.readouterr().err.strip()
    assert err == "flowmatch: note: --bf16, --compile, --tf32: CUDA only, ignored on device cpu"
    cfg = RunConfig.from_toml(tmp_path / "r" / "config.toml")
    assert cfg.bf16 and cfg.compile and cfg.tf32  # kept in the config: the same run is fast on a GPU


def test_worker_argv_repeats_the_settings(tmp_path):
    from flowmatch.cli import build_parser
    from flowmatch.cli.train import _explicit, worker_argv

    argv = [
        "train",
        "--nproc",
        "2",
        "--method",
        "ot-cfm",
        "--sigma",
        "0.05",
        "--bf16",
        "--coupling-scope",
        "global",
        "--out",
        str(tmp_path),
        "--quiet",
    ]
    args = build_parser().parse_args(argv)
    again = build_parser().parse_args(worker_argv(args))
    assert _explicit(again) == _explicit(args) and again.nproc is None and again.quiet and again.out == str(tmp_path)
