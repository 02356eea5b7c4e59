"""The ``flowmatch`` command. Each subcommand lives in its own module of this package and
registers itself through ``add_parser(subparsers)`` (which sets ``func``); add a new one to
``COMMANDS``.

Errors in what the user typed or supplied (ValueError, FileNotFoundError), and a file the system
refuses to write or read (OSError: a read-only or full disk), print one line ``flowmatch: error:
...`` on stderr and exit with code 2, no traceback; set FLOWMATCH_DEBUG=1 to see the traceback. A
checkpoint fallback (the newest checkpoint missing or damaged) prints one line ``flowmatch:
warning: ...``.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence

from flowmatch._utils.version import VERSION
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
    parser.add_argument("--version", action="version", version=f"flowmatch {VERSION}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``flowmatch`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_checkpoint_warnings(warnings.showwarning)
            if args.threads is not None:
                import torch

                from flowmatch._utils.validate import check_positive_int

                torch.set_num_threads(check_positive_int("--threads", args.threads))
            return args.func(args)
    except (ValueError, OSError) as e:  # FileNotFoundError is an OSError
        if os.environ.get("FLOWMATCH_DEBUG"):
            raise
        if isinstance(e, OSError) and not isinstance(e, FileNotFoundError) and e.filename is not None:
            msg = f"cannot access {str(e.filename)!r}: {e.strerror or e}"  # e.g. a read-only --out
        else:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"flowmatch: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        from flowmatch.training.interrupt import Interrupted

        if os.environ.get("RANK", "0") == "0":  # torchrun workers: rank 0 speaks for all
            text = e.describe() if isinstance(e, Interrupted) else "interrupted; the latest checkpoint is kept"
            print(f"flowmatch: {text}", file=sys.stderr)
        return e.exit_code if isinstance(e, Interrupted) else 130


def _one_line_checkpoint_warnings(show_other):
    """A ``warnings.showwarning`` that prints each checkpoint fallback once, as one line ``flowmatch:
    warning: ...``, and hands every other warning to ``show_other``."""
    from flowmatch.training.checkpoint import CheckpointFallbackWarning

    shown: set[str] = set()  # a run looks up its checkpoint more than once: say it once

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, CheckpointFallbackWarning):
            if str(message) not in shown:
                shown.add(str(message))
                print(f"flowmatch: warning: {message}", file=file or sys.stderr)
        else:
            show_other(message, category, filename, lineno, file, line)

    return show
