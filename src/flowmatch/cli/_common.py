"""Flags and helpers shared by the subcommands."""

from __future__ import annotations

import argparse

__all__ = ["add_common", "add_device", "comma_list", "default_threads_for_small_models"]


def add_common(p: argparse.ArgumentParser) -> None:
    """--quiet and --threads, on every subcommand."""
    p.add_argument("--quiet", action="store_true", help="no progress bar or table")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for torch (default: 1 for MLP training on the CPU, else torch's choice)",
    )


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")


def comma_list(text: str) -> list[str]:
    """'a, b,,c' -> ['a', 'b', 'c']."""
    return [s.strip() for s in text.split(",") if s.strip()]


def default_threads_for_small_models(args: argparse.Namespace, *, small_model: bool) -> None:
    """Use one torch thread for small (MLP) models on the CPU unless --threads was given.

    A 3x64 MLP step is a few hundred microseconds of arithmetic; with two intra-op threads the
    threads spin-wait on each other, which on a loaded machine makes a step many times slower
    (measured: docs/benchmarks.md).
    """
    if args.threads is None and small_model:
        import torch

        torch.set_num_threads(1)
