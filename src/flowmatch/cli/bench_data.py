"""``flowmatch bench data``: training steps/s and resident memory against the number of rows of a
memory-mapped .npy file (:mod:`flowmatch.bench.data`)."""

from __future__ import annotations

import argparse

from flowmatch.cli._common import add_common, comma_list


def add_data(benches) -> argparse.ArgumentParser:
    p = benches.add_parser(
        "data",
        help="steps/s and resident memory of training on memory-mapped .npy files of 10^4 to 10^7 rows",
        description="Writes .npy files of N float32 rows (default N = 10^4, 10^6, 10^7, 2 columns), trains a 3x64 "
        "MLP with I-CFM on each for --steps steps, memory-mapped (each step reads only its batch rows), and with "
        "the array in memory drawn by a full permutation per step (the sampler of earlier versions; --no-baseline "
        "skips it); each training in a fresh process. Prints steps/s and peak resident memory per N and writes "
        "table.md and results.csv into --out. --wide: 10^7 rows of 64 columns (a 2.56 GB file), memory-mapped, with "
        "the rows read through the mapping and by pread (--pread).",
    )
    p.add_argument("--out", default="runs/bench/data", help="output directory, also of the .npy files")
    p.add_argument("--rows", default=None, help="comma-separated numbers of rows (default: 10000,1000000,10000000)")
    p.add_argument("--dim", type=int, default=None, help="columns of each file (default: 2; --wide: 64)")
    p.add_argument("--steps", type=int, default=None, help="training steps per measurement (default: 300)")
    p.add_argument("--batch-size", type=int, default=None, help="rows per step (default: 512)")
    p.add_argument("--no-baseline", action="store_true", help="memory-mapped training only")
    p.add_argument("--pread", action="store_true", help="also read the rows by pread instead of the mapping")
    p.add_argument(
        "--wide", action="store_true", help="10^7 rows x 64 columns (2.56 GB), memory-mapped, mapped and by pread"
    )
    p.add_argument("--quick", action="store_true", help="smoke run: 10^4 and 10^5 rows, 30 steps")
    add_common(p)
    p.set_defaults(func=run_data)
    return p


def run_data(args: argparse.Namespace) -> int:
    from flowmatch._utils.validate import check_positive_int
    from flowmatch.bench.data import DataBenchSettings, run_data_bench

    rows = None
    if args.rows is not None:
        rows = tuple(
            check_positive_int("--rows", int(r)) if r.isdigit() else _bad_rows(r) for r in comma_list(args.rows)
        )
    for name in ("dim", "steps", "batch_size"):
        if getattr(args, name) is not None:
            check_positive_int("--" + name.replace("_", "-"), getattr(args, name))
    overrides = dict(rows=rows, dim=args.dim, steps=args.steps, batch_size=args.batch_size)
    if args.no_baseline:
        overrides["baseline"] = False
    if args.pread:
        overrides["pread"] = True
    if args.wide:
        settings = DataBenchSettings.wide(**overrides)
    elif args.quick:
        settings = DataBenchSettings.quick(**overrides)
    else:
        settings = DataBenchSettings(**{k: v for k, v in overrides.items() if v is not None})
    for n in settings.rows:
        if n < settings.batch_size:
            raise ValueError(f"--rows must each be >= the batch size {settings.batch_size}, got {n}")
    res = run_data_bench(args.out, settings, log=None if args.quiet else print)
    print()
    print(res.table)
    print("wrote " + ", ".join(str(p) for p in res.files.values()))
    return 0


def _bad_rows(text: str) -> int:
    raise ValueError(f"--rows must be comma-separated positive integers, got {text!r}")
