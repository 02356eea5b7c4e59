"""``flowmatch bench fewstep``: W2 at 1, 2, 4 and 100 function evaluations
(:mod:`flowmatch.bench.fewstep`)."""

from __future__ import annotations

import argparse

from flowmatch.cli._common import add_common, add_device, comma_list, default_threads_for_small_models


def add_fewstep(benches) -> argparse.ArgumentParser:
    p = benches.add_parser(
        "fewstep",
        help="one- and few-step generation: MeanFlow and shortcut models against I-CFM and OT-CFM in 2D",
        description="Train i-cfm, ot-cfm, meanflow, ot-meanflow, shortcut, cfm-consistency and the i-cfm run distilled into one step (i-cfm-distill) on the 2D tasks (N->moons, N->8gaussians, "
        "moons->8gaussians) with the paper's budget and score W2 on the held-out points at 1, 2, 4 and 100 "
        "function evaluations (Euler steps, or MeanFlow's average-velocity jumps). Writes table.md and "
        "results.csv into --out.",
    )
    p.add_argument("--out", default=None, help="output directory (default: runs/bench/fewstep, or fewstep-quick)")
    p.add_argument("--tasks", default=None, help="comma-separated (default: n-moons,n-8gaussians,moons-8gaussians)")
    p.add_argument(
        "--methods",
        default=None,
        help="comma-separated (default: i-cfm,ot-cfm,meanflow,ot-meanflow,shortcut,cfm-consistency,i-cfm-distill)",
    )
    p.add_argument("--seeds", type=int, default=None, help="number of seeds 0..N-1 (default: 1)")
    p.add_argument("--steps", type=int, default=None, help="training steps per run (default: 20000)")
    p.add_argument("--batch-size", type=int, default=None, help="pairs per step (default: 512)")
    p.add_argument("--quick", action="store_true", help="smoke run: n-moons, 40 steps of batch 64")
    add_device(p)
    add_common(p)
    p.set_defaults(func=run_fewstep)
    return p


def run_fewstep(args: argparse.Namespace) -> int:
    from flowmatch._utils.validate import check_positive_int
    from flowmatch.bench.fewstep import FewStepSettings, run_fewstep

    overrides = dict(
        tasks=tuple(comma_list(args.tasks)) if args.tasks is not None else None,
        methods=tuple(comma_list(args.methods)) if args.methods is not None else None,
        seeds=args.seeds,
        steps=args.steps,
        batch_size=args.batch_size,
        device=args.device,
    )
    for name in ("seeds", "steps", "batch_size"):
        if overrides[name] is not None:
            check_positive_int("--" + name.replace("_", "-"), overrides[name])
    default_threads_for_small_models(args, small_model=True)
    given = {k: v for k, v in overrides.items() if v is not None}
    settings = FewStepSettings.quick(**given) if args.quick else FewStepSettings(**given)
    out = args.out or ("runs/bench/fewstep-quick" if args.quick else "runs/bench/fewstep")
    res = run_fewstep(out, settings, log=None if args.quiet else print)
    print()
    print(res.table)
    print("wrote " + ", ".join(str(p) for p in res.files.values()))
    return 0


def add_fewstep_digits(benches) -> argparse.ArgumentParser:
    p = benches.add_parser(
        "fewstep-digits",
        help="one- and few-step generation on class-conditional digits: accuracy and FD at 1 to 100 NFE",
        description="Train ot-cfm, i-cfm, meanflow, ot-meanflow, shortcut and cfm-consistency as class-conditional "
        "digits runs (1000 steps of batch 128, lr 2e-3 cosine, EMA 0.995, guidance dropout 0.1) and score one "
        "sample per test image at 1, 2, 4, 20 and 100 function evaluations: the digits classifier's accuracy and "
        "the Fréchet distance in its feature space, beside the real test images'. Writes table.md and results.csv.",
    )
    p.add_argument("--out", default=None, help="output directory (default: runs/bench/fewstep-digits[-quick])")
    p.add_argument(
        "--methods",
        default=None,
        help="comma-separated (default: ot-cfm,i-cfm,meanflow,ot-meanflow,shortcut,cfm-consistency)",
    )
    p.add_argument("--steps", type=int, default=None, help="training steps per run (default: 1000)")
    p.add_argument("--batch-size", type=int, default=None, help="images per step (default: 128)")
    p.add_argument("--guidance", type=float, default=None, help="guidance scale w of the samples (default: 1)")
    p.add_argument("--quick", action="store_true", help="smoke run: ot-cfm and meanflow, 8 steps of batch 32")
    add_device(p)
    add_common(p)
    p.set_defaults(func=run_fewstep_digits)
    return p


def run_fewstep_digits(args: argparse.Namespace) -> int:
    from flowmatch._utils.validate import check_nonnegative_float, check_positive_int
    from flowmatch.bench.fewstep_digits import DigitsFewStepSettings, run_fewstep_digits

    overrides = dict(
        methods=tuple(comma_list(args.methods)) if args.methods is not None else None,
        steps=args.steps,
        batch_size=args.batch_size,
        guidance=args.guidance,
        device=args.device,
    )
    for name in ("steps", "batch_size"):
        if overrides[name] is not None:
            check_positive_int("--" + name.replace("_", "-"), overrides[name])
    if args.guidance is not None:
        check_nonnegative_float("--guidance", args.guidance)
    given = {k: v for k, v in overrides.items() if v is not None}
    settings = DigitsFewStepSettings.quick(**given) if args.quick else DigitsFewStepSettings(**given)
    out = args.out or ("runs/bench/fewstep-digits-quick" if args.quick else "runs/bench/fewstep-digits")
    res = run_fewstep_digits(out, settings, log=None if args.quiet else print)
    print()
    print(res.table)
    print("wrote " + ", ".join(str(p) for p in res.files.values()))
    return 0
