"""``flowmatch sample`` and ``flowmatch eval`` of token runs (``--target digits-tokens`` or
``brackets``, :mod:`flowmatch.runs.discrete`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

__all__ = ["sample_token_run", "evaluate_token_run"]


def sample_token_run(args: argparse.Namespace, run: Any) -> int:
    """Write ``--n`` samples: tokens to ``--out`` (.npy, (N, L) int64; or .txt for bracket words, one
    a line) and, for digits, a grid to ``--grid`` (.png). Everything is checked before writing."""
    import numpy as np
    import torch

    from flowmatch._utils.io import atomic_write, atomic_write_text
    from flowmatch._utils.validate import check_positive_int
    from flowmatch.data.tokens import tokens_to_images, word_text
    from flowmatch.runs.discrete_data import sample_tokens
    from flowmatch.runs.image import parse_cond

    n = check_positive_int("--n", args.n)
    steps = check_positive_int("--steps", args.steps)
    data, cfg = run.data, run.config
    if args.out is None and args.grid is None:
        raise ValueError("sample needs --out FILE.npy (or .txt for brackets) or --grid FILE.png, got neither")
    if args.out is not None and not str(args.out).endswith((".npy", ".txt")):
        raise ValueError(f"--out must be a .npy or .txt file, got {args.out!r}")
    if args.out is not None and str(args.out).endswith(".txt") and data.name != "brackets":
        raise ValueError(f"--out .txt writes bracket words and needs a brackets run, got target {cfg.target!r}")
    if args.grid is not None and (data.name != "digits-tokens" or not str(args.grid).lower().endswith(".png")):
        raise ValueError(f"--grid needs a digits-tokens run and a .png file, got {cfg.target!r} and {args.grid!r}")
    cond = None
    if cfg.cond == "label":
        if args.cond is not None:
            cond = torch.full((n,), parse_cond(args.cond, data.classes), dtype=torch.long)
        else:
            cond = torch.arange(n) % data.num_classes
    elif args.cond is not None:
        raise ValueError(f"--cond needs a class-conditional run (cond 'label'), got cond {cfg.cond!r}")
    w = cfg.eval_guidance if args.guidance is None else args.guidance
    res = sample_tokens(run.model, cfg, data, n, steps=steps, cond=cond, guidance=w, seed=args.seed)
    x = res.x.cpu()
    if args.out is not None:
        if str(args.out).endswith(".txt"):
            mask = data.test_mask.repeat(-(-n // data.test_mask.shape[0]), 1)[:n]
            atomic_write_text(args.out, "\n".join(word_text(x[i], mask[i]) for i in range(n)) + "\n")
        else:
            atomic_write(args.out, lambda f: np.save(f, x.numpy()))
    if args.grid is not None:
        from flowmatch.plots.images import plot_image_grid

        plot_image_grid(tokens_to_images(x), Path(args.grid), ncols=10)
    if not args.quiet:
        print(f"sampled {n} sequences with {res.nfe} CTMC steps")
    return 0


def evaluate_token_run(args: argparse.Namespace, run: Any, n: int | None) -> int:
    """The token run's metrics (:func:`flowmatch.runs.discrete.evaluate_tokens`) at ``--steps``."""
    from flowmatch.runs.discrete import evaluate_tokens, report_table

    if getattr(args, "guidance", None) is not None and "," in str(args.guidance):
        raise ValueError(f"--guidance of token runs takes one scale, got {args.guidance!r}")
    w = None if getattr(args, "guidance", None) is None else float(args.guidance)
    rep = evaluate_tokens(run.model, run.data, run.config, run.path, steps=args.steps, n=n, guidance=w)
    print(json.dumps(rep.to_dict(), indent=2) if args.json else report_table(rep))
    return 0
