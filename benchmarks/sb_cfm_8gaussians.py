"""SB-CFM ([SF]2M: velocity + score) against OT-CFM on N(0, I) -> 8gaussians after the same short training.

For every method / sigma / seed one run is trained exactly as ``flowmatch train`` would (the paper's
3x64 SELU MLP, AdamW lr 1e-3, the given steps and batch size; sb-cfm runs learn a second MLP for
the score) and evaluated on ``--n-test`` held-out points by the exact W2 (POT):

- ODE: Euler, 100 steps, on the velocity (what ``flowmatch eval`` reports);
- SDE: Euler-Maruyama, 100 steps, drift v + (sigma^2/2) s, diffusion sigma (``flowmatch sample
  --sde``), with the default deterministic last step, and with a stochastic last step.

The sampling floor (W2 between two independent draws of ``--n-test`` target points) is printed
with the table. Published reference ([SF]2M Table 2, N -> 8gaussians, 10k test points): OT-CFM
0.303 +- 0.043, SB-CFM 2.314 +- 2.112 (diverged), [SF]2M-Exact 0.275 +- 0.058.

Run::

    python benchmarks/sb_cfm_8gaussians.py --steps 3000 --batch-size 256 --seeds 0,1,2 \\
        --runs ot-cfm:0.1,sb-cfm:1.0,sb-cfm:0.5,sb-cfm:2.0

Prints a Markdown table on stdout (one line per run on stderr as it finishes).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from flowmatch.data import resolve_distribution
from flowmatch.metrics import w2
from flowmatch.models import has_score
from flowmatch.runs.config import RunConfig
from flowmatch.runs.run import build_data, train_run
from flowmatch.sampling.ode import sample
from flowmatch.sampling.sde import sample_sde


def _fmt(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", default="8gaussians")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--n-test", type=int, default=2000)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--runs", default="ot-cfm:0.1,sb-cfm:1.0", help="method:sigma, comma-separated")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = [(r.split(":")[0], float(r.split(":")[1])) for r in args.runs.split(",")]

    target = resolve_distribution(args.target)
    g = torch.Generator().manual_seed(12345)
    floor = w2(target.sample(args.n_test, generator=g), target.sample(args.n_test, generator=g))

    rows = []
    for method, sigma in runs:
        res: dict[str, list[float]] = {"ode": [], "sde": [], "sde_last_sde": [], "time": []}
        for seed in seeds:
            cfg = RunConfig(
                source="gaussian",
                target=args.target,
                method=method,
                sigma=sigma,
                steps=args.steps,
                batch_size=args.batch_size,
                n_test=args.n_test,
                seed=seed,
                device="cpu",
                checkpoint_every=args.steps,
            )
            t0 = time.perf_counter()
            trainer, result, _ = train_run(cfg, None, quiet=True, evaluate=False, plots=False)
            res["time"].append(time.perf_counter() - t0)
            data = build_data(cfg)
            model = trainer.sampling_model.eval()
            x0, x1 = data.source.test, data.target.test
            res["ode"].append(w2(sample(model, x0, solver="euler", steps=100).x, x1))
            if has_score(model):
                for key, last in (("sde", "ode"), ("sde_last_sde", "sde")):
                    out = sample_sde(
                        model,
                        x0,
                        sigma=cfg.resolved_sigma,
                        steps=100,
                        last_step=last,
                        generator=torch.Generator().manual_seed(seed),
                    )
                    res[key].append(w2(out.x, x1))
            print(
                f"{method} sigma={sigma} seed={seed}: ODE {res['ode'][-1]:.3f}"
                + (f" SDE {res['sde'][-1]:.3f} SDE(last sde) {res['sde_last_sde'][-1]:.3f}" if res["sde"] else "")
                + f" ({res['time'][-1]:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
        rows.append((method, sigma, res))

    print(
        f"N(0, I) -> {args.target}, {args.steps} steps, batch {args.batch_size}, seeds {args.seeds}; "
        f"W2 on {args.n_test} test points (sampling floor {floor:.3f})\n"
    )
    print("| method | sigma | W2 ODE (euler 100) | W2 SDE (EM 100) | W2 SDE (EM 100, stochastic last step) | train s |")
    print("|---|---|---|---|---|---|")
    for method, sigma, res in rows:
        print(
            f"| {method} | {sigma:g} | {_fmt(res['ode'])} | {_fmt(res['sde'])} | {_fmt(res['sde_last_sde'])} "
            f"| {statistics.mean(res['time']):.0f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
