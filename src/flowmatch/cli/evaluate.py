"""flowmatch eval: evaluate a trained run on its held-out split."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, cast

from flowmatch.cli._common import add_common, add_device

if TYPE_CHECKING:  # the reports' types only: the CLI imports the library lazily
    from flowmatch.metrics.evaluate import EvalReport
    from flowmatch.metrics.images import ImageEvalReport
    from flowmatch.runs.snapshot import SnapshotReport

NAME = "eval"
HELP = "evaluate a trained run on its held-out split"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(NAME, help=HELP, description="W2/W1/MMD to held-out target samples, NPE, straightness, NFE.")
    p.add_argument("run", help="run directory")
    p.add_argument("--solver", default=None, help="solver (default: the run's eval_solver)")
    p.add_argument("--steps", type=int, default=None, help="solver steps (default: the run's eval_steps)")
    p.add_argument("--n", type=int, default=None, help="use the first N test points (default: all)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--guidance",
        default=None,
        help="image and sequence runs: comma-separated guidance scales to evaluate, e.g. 0,1,2,4 "
        "(default: the run's eval_guidance); prints the kind's metrics per scale",
    )
    p.add_argument(
        "--nll",
        action="store_true",
        help="also the mean test negative log-likelihood (nats and bits/dim; needs --source gaussian); "
        "it integrates with --solver, default dopri5",
    )
    p.add_argument("--divergence", default="exact", help="--nll divergence: exact or hutchinson (default: exact)")
    p.add_argument("--probes", type=int, default=1, help="--nll Hutchinson probes per point (default: 1)")
    p.add_argument("--atol", type=float, default=1e-5, help="--nll dopri5 absolute tolerance (default: 1e-5)")
    p.add_argument("--rtol", type=float, default=1e-5, help="--nll dopri5 relative tolerance (default: 1e-5)")
    add_device(p)
    add_common(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from flowmatch.metrics.report import eval_row, format_table
    from flowmatch.runs.run import evaluate_run, load_run

    run = load_run(args.run, device=args.device)
    n = args.n
    if n is not None:
        from flowmatch._utils.validate import check_positive_int

        n = check_positive_int("--n", n)
    if run.config.snapshots is not None:
        return _snapshot_eval(args, run, n)
    if run.kind.name == "manifold":
        from flowmatch.cli.manifold_run import manifold_eval

        return manifold_eval(args, run, n)
    if run.kind.name == "discrete":
        from flowmatch.cli.tokens import evaluate_token_run

        return evaluate_token_run(args, run, n)
    if run.data.is_image:
        return _image_eval(args, run, n)
    if run.kind.name == "sequence":
        return _sequence_eval(args, run, n)
    if args.guidance is not None:
        raise ValueError(f"--guidance applies to image and sequence runs, got target {run.config.target!r}")
    if args.nll:
        _check_nll_flags(args)
        if run.config.source != "gaussian":
            raise ValueError(
                f"--nll needs a run whose source density is known (--source gaussian), got source {run.config.source!r}"
            )
        cond = getattr(run.config, "cond", "none")
        if cond != "none":
            raise ValueError(f"--nll supports unconditional runs, got a run with cond {cond!r}")
    rep = cast("EvalReport", evaluate_run(run, solver=args.solver, steps=args.steps, n=n))
    nll = _test_nll(run, args, n) if args.nll else None
    if args.json:
        out = rep.to_dict()
        if nll is not None:
            out["nll"] = nll
        print(json.dumps(out, indent=2))
    elif not args.quiet:
        print(f"{args.run}: {run.config.method}, step {run.step}, {rep.n_test} test points")
        print(format_table([eval_row(run.config.method, rep, None)]))
        print(f"W1 {rep.w1:.4f}  MMD {rep.mmd:.2e}  straightness {rep.straightness:.4f}")
        if nll is not None:
            print(
                f"test NLL {nll['nll_nats']:.4f} nats  {nll['bits_per_dim']:.4f} bits/dim  "
                f"({nll['divergence']} divergence, {nll['solver']}, NFE {nll['nfe']}, {nll['n']} points)"
            )
    return 0


def _scales(args: argparse.Namespace) -> list[float] | None:
    """--guidance as a list of finite scales (None when not given)."""
    import math

    from flowmatch.cli._common import comma_list

    if args.guidance is None:
        return None
    try:
        scales = [float(v) for v in comma_list(args.guidance)]
    except ValueError:
        scales = []
    if not scales or not all(math.isfinite(w) for w in scales):
        raise ValueError(f"--guidance must be comma-separated numbers, e.g. 0,1,2,4, got {args.guidance!r}")
    return scales


def _sequence_eval(args: argparse.Namespace, run, n: int | None) -> int:
    """Sequence runs: the speech metrics per guidance scale (flowmatch.runs.speech_eval)."""
    from flowmatch.runs.run import evaluate_run
    from flowmatch.runs.speech_eval import SequenceReport, sequence_table

    if args.nll:
        raise ValueError("--nll is not available for sequence runs")
    rep = cast(SequenceReport, evaluate_run(run, solver=args.solver, steps=args.steps, n=n, guidance=_scales(args)))
    if args.json:
        print(json.dumps(rep.to_dict(), indent=2))
    elif not args.quiet:
        print(f"{args.run}: {run.config.method}, step {run.step}, {rep.rows[0].metrics.n_utterances} test utterances")
        print(sequence_table(rep))
    return 0


def _image_eval(args: argparse.Namespace, run, n: int | None) -> int:
    """Image runs: classifier accuracy and Fréchet distance per guidance scale (flowmatch.metrics.images)."""
    from flowmatch.runs.image import image_table
    from flowmatch.runs.run import evaluate_run

    if args.nll:
        raise ValueError("--nll is not available for image runs")
    scales = _scales(args)
    found = evaluate_run(run, solver=args.solver, steps=args.steps, n=n, guidance=scales)
    if found is None:  # the classifier of the image metrics is trained on the labels
        raise ValueError(
            f"image evaluation needs labelled images (class subfolders, or an .npz with labels), "
            f"got target {run.config.target!r} without labels"
        )
    rep = cast("ImageEvalReport", found)
    if args.json:
        print(json.dumps(rep.to_dict(), indent=2))
    elif not args.quiet:
        print(f"{args.run}: {run.config.method}, step {run.step}, cond {run.config.cond}")
        print(image_table(rep))
    return 0


def _snapshot_eval(args: argparse.Namespace, run, n: int | None) -> int:
    """Snapshot runs: the held-out W1 (ODE; SDE too with a score) and the W1 at the training time points;
    also written to RUN/eval.json."""
    from flowmatch._utils.io import write_json
    from flowmatch.runs.run import evaluate_run

    if args.nll or args.guidance is not None:
        raise ValueError("--nll and --guidance do not apply to snapshot runs")
    rep = cast("SnapshotReport", evaluate_run(run, solver=args.solver, steps=args.steps, n=n))
    out = {"step": run.step, "method": run.config.method, **rep.to_dict()}
    write_json(run.path / "eval.json", out)
    if args.json:
        print(json.dumps(out, indent=2))
    elif not args.quiet:
        held = "" if run.data.holdout is None else f", time point {run.data.holdout} held out"
        print(f"{args.run}: {run.config.method}, step {run.step}, {run.data.full.name}{held}")
        print(rep.summary())
    return 0


def _check_nll_flags(args: argparse.Namespace) -> None:
    from flowmatch._utils.validate import check_choice, check_positive_float, check_positive_int
    from flowmatch.sampling.likelihood import DIVERGENCES

    check_choice("--divergence", args.divergence, DIVERGENCES)
    check_positive_int("--probes", args.probes)
    check_positive_float("--atol", args.atol)
    check_positive_float("--rtol", args.rtol)


def _test_nll(run, args: argparse.Namespace, n: int | None) -> dict:
    """Mean -log p_1 of the first n held-out target points under the run's flow."""
    import torch

    from flowmatch.sampling.likelihood import log_likelihood

    x = run.data.target.test[:n].to(run.device)
    solver = args.solver or "dopri5"
    steps = args.steps or run.config.eval_steps
    res = log_likelihood(
        run.model,
        x,
        divergence=args.divergence,
        n_probes=args.probes,
        solver=solver,
        steps=steps,
        atol=args.atol,
        rtol=args.rtol,
        chunk_size=4096,
        generator=torch.Generator().manual_seed(0),
    )
    return {
        "nll_nats": res.mean_nll,
        "bits_per_dim": res.mean_bits_per_dim,
        "divergence": args.divergence,
        "solver": solver,
        "nfe": res.nfe,
        "n": int(x.shape[0]),
    }
