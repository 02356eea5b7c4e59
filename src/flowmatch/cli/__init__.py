"""The ``flowmatch`` command. Each subcommand lives in its own module of this package and
registers itself through ``add_parser(subparsers)`` (which sets ``func``); add a new one to
``COMMANDS``.

Errors in what the user typed or supplied (ValueError, FileNotFoundError) print one line
``flowmatch: error: ...`` on stderr and exit with code 2, no traceback; set FLOWMATCH_DEBUG=1 to
see the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from flowmatch.cli import bench, demo, encode, evaluate, plot, sample, train

__all__ = ["main", "build_parser", "COMMANDS"]

#: Subcommand modules, in the order --help lists them.
COMMANDS = [train, sample, evaluate, encode, plot, demo, bench]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowmatch",
        description="Train, sample and evaluate conditional flow matching models "
        "(I-CFM, OT-CFM, FM, SB-CFM, VP-CFM, rectified flow).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``flowmatch`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.threads is not None:
            import torch

            from flowmatch._utils.validate import check_positive_int

            torch.set_num_threads(check_positive_int("--threads", args.threads))
        return args.func(args)
    except (ValueError, FileNotFoundError) as e:
        if os.environ.get("FLOWMATCH_DEBUG"):
            raise
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"flowmatch: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        from flowmatch.training.interrupt import Interrupted

        if os.environ.get("RANK", "0") == "0":  # torchrun workers: rank 0 speaks for all
            text = e.describe() if isinstance(e, Interrupted) else "interrupted; the latest checkpoint is kept"
            print(f"flowmatch: {text}", file=sys.stderr)
        return e.exit_code if isinstance(e, Interrupted) else 130
