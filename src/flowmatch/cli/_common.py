"""Flags and helpers shared by the subcommands."""

from __future__ import annotations

import argparse

__all__ = ["add_common", "add_device", "comma_list"]


def add_common(p: argparse.ArgumentParser) -> None:
    """--quiet and --threads, on every subcommand."""
    p.add_argument("--quiet", action="store_true", help="no progress bar or table")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: torch's choice)")


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")


def comma_list(text: str) -> list[str]:
    """'a, b,,c' -> ['a', 'b', 'c']."""
    return [s.strip() for s in text.split(",") if s.strip()]
