"""Likelihood benchmark: simulation-free flow matching (OT-CFM, I-CFM) against the
maximum-likelihood CNF baseline (Chen et al. 2018; Grathwohl et al. 2019).

For each task N(0, I) -> target and each method, one 3x64 SELU MLP (the paper's 2D model, same
initialisation for every method) is trained with AdamW; every ``--eval-every`` steps (``--cnf-eval-every`` for the CNF) the clock is
paused and W2 (exact, POT) between ``--n-test`` dopri5 samples and held-out target points is
measured, giving the training wall time at which W2 first falls below the task's bound. After
training the test negative log-likelihood is computed with the exact divergence and dopri5
(flowmatch.log_likelihood). The bound is stated in the table header next to the sampling floor,
the W2 between two independent draws of ``--n-test`` target points.

Run (no `flowmatch` command needed)::

    python benchmarks/likelihood.py --steps 2000 --cnf-steps 300 --tasks moons,8gaussians

Prints a Markdown table on stdout (progress on stderr).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

import torch

import flowmatch
from flowmatch.data import sample_toy
from flowmatch.data.batches import StreamBatches, TensorBatches
from flowmatch.metrics import w2
from flowmatch.models import MLP
from flowmatch.objectives import methods
from flowmatch.training.trainer import Trainer, TrainerConfig

#: Default W2 bounds: reached by a 3x64 MLP within ~1000 CFM steps; the sampling floor at 1000
#: test points is about 0.07 (moons) and 0.53 (8gaussians).
DEFAULT_BOUNDS = {"moons": 0.5, "8gaussians": 0.8}
METHODS = ("ot-cfm", "i-cfm", "cnf")


@dataclass
class Row:
    task: str
    method: str
    steps: int
    train_s: float
    first_below: tuple[int, float] | None  # (step, seconds)
    w2_final: float
    nll: float
    bpd: float
    nfe: int


def parse_bounds(text: str | None) -> dict[str, float]:
    bounds = dict(DEFAULT_BOUNDS)
    for item in (text or "").split(","):
        if item.strip():
            name, _, value = item.partition("=")
            bounds[name.strip()] = float(value)
    return bounds


def w2_of_model(model, x0, x1) -> float:
    res = flowmatch.sample(model, x0, solver="dopri5", atol=1e-4, rtol=1e-4)
    return w2(res.x, x1)


def train_one(task: str, method: str, steps: int, args, data: dict, bound: float) -> Row:
    torch.manual_seed(args.seed)
    model = MLP(2)
    objective = methods.get(method)
    source = StreamBatches(lambda n, generator=None: torch.randn(n, 2, generator=generator))
    trainer = Trainer(
        model,
        objective,
        source,
        TensorBatches(data["train"]),
        TrainerConfig(steps=steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed, quiet=True),
    )
    train_s = 0.0
    first = None
    for step in range(1, steps + 1):
        t0 = time.perf_counter()
        trainer.model.train()
        trainer.train_step()
        train_s += time.perf_counter() - t0
        every = args.cnf_eval_every if method == "cnf" else args.eval_every
        if step % every == 0 or step == steps:
            trainer.model.eval()
            dist = w2_of_model(trainer.model, data["x0_test"], data["test"])
            print(f"  {task} {method} step {step}: W2 {dist:.3f} after {train_s:.1f} s", file=sys.stderr)
            if first is None and dist < bound:
                first = (step, train_s)
    model.eval()
    w2_final = w2_of_model(model, data["x0_test"], data["test"])
    ll = flowmatch.log_likelihood(
        model, data["test"][: args.n_nll], divergence="exact", solver="dopri5", atol=1e-5, rtol=1e-5, chunk_size=1000
    )
    return Row(task, method, steps, train_s, first, w2_final, ll.mean_nll, ll.mean_bits_per_dim, ll.nfe)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--steps", type=int, default=2000, help="training steps of OT-CFM and I-CFM (default: 2000)")
    p.add_argument("--cnf-steps", type=int, default=None, help="training steps of the CNF (default: --steps)")
    p.add_argument("--tasks", default="moons,8gaussians", help="comma-separated targets (source N(0, I))")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated methods")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--eval-every", type=int, default=100, help="W2 is measured every K steps (default: 100)")
    p.add_argument(
        "--cnf-eval-every",
        type=int,
        default=None,
        help="W2 interval of the CNF, whose steps cost ~10x more (default: --eval-every / 10)",
    )
    p.add_argument(
        "--w2-bound",
        default=None,
        help="bounds as task=value,... (default: " + ", ".join(f"{k}={v}" for k, v in DEFAULT_BOUNDS.items()) + ")",
    )
    p.add_argument("--n-train", type=int, default=10_000)
    p.add_argument("--n-test", type=int, default=1000, help="test points for W2 (default: 1000)")
    p.add_argument("--n-nll", type=int, default=1000, help="test points for the NLL (default: 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cnf_steps = args.cnf_steps or args.steps
    args.cnf_eval_every = args.cnf_eval_every or max(1, args.eval_every // 10)
    bounds = parse_bounds(args.w2_bound)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    names = [m.strip() for m in args.methods.split(",") if m.strip()]
    for name in names:
        methods.spec(name)
    t_start = time.perf_counter()

    rows: list[Row] = []
    floors = {}
    for task in tasks:
        if task not in bounds:
            p.error(f"no W2 bound for task {task!r}; pass --w2-bound {task}=VALUE")
        g = torch.Generator().manual_seed(args.seed + 1)
        data = {
            "train": sample_toy(task, args.n_train, generator=g),
            "test": sample_toy(task, args.n_test, generator=g),
            "x0_test": torch.randn(args.n_test, 2, generator=g),
        }
        floors[task] = w2(data["test"], sample_toy(task, args.n_test, generator=g))
        for name in names:
            rows.append(train_one(task, name, cnf_steps if name == "cnf" else args.steps, args, data, bounds[task]))

    total = time.perf_counter() - t_start
    print(
        f"Budget: {args.steps} steps (OT-CFM, I-CFM), {cnf_steps} steps (CNF: rk4, 8 steps, 1 Rademacher "
        f"probe), batch {args.batch_size}, AdamW lr {args.lr}, 3x64 SELU MLP, {args.threads} CPU thread(s); "
        f"W2 every {args.eval_every} steps (CNF: {args.cnf_eval_every}) on {args.n_test} test points (dopri5 samples, tol 1e-4); "
        f"NLL: exact divergence, dopri5 (tol 1e-5), {args.n_nll} test points. Total {total:.0f} s.\n"
    )
    head = [
        "task",
        "method",
        "steps",
        "train s",
        "W2 final",
        "W2 bound (floor)",
        "time to W2 < bound",
        "test NLL (nats)",
        "bits/dim",
        "NFE (NLL)",
    ]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for r in rows:
        reach = "not reached" if r.first_below is None else f"{r.first_below[1]:.1f} s (step {r.first_below[0]})"
        cells = [
            f"N -> {r.task}",
            r.method,
            str(r.steps),
            f"{r.train_s:.1f}",
            f"{r.w2_final:.3f}",
            f"{bounds[r.task]} ({floors[r.task]:.3f})",
            reach,
            f"{r.nll:.3f}",
            f"{r.bpd:.3f}",
            str(r.nfe),
        ]
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
