"""flowmatch sample: generate samples from a trained run."""

from __future__ import annotations

import argparse
from pathlib import Path

from flowmatch.cli._common import add_common, add_device
from flowmatch.cli.sample_sequence import add_sequence_flags

NAME = "sample"
HELP = "generate samples from a trained run"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        NAME,
        help=HELP,
        description="Integrate the trained flow from fresh source samples; writes an (N, D) .npy array "
        "(sequence runs: speech for --text or a test --utterance, as a mel .npy, a WAV and a spectrogram).",
    )
    p.add_argument("run", help="run directory")
    p.add_argument("--n", type=int, default=1000, help="number of samples (default: 1000)")
    p.add_argument(
        "--solver",
        default="euler",
        help="euler, midpoint, heun, rk4, dopri5 (default: euler); runs of meanflow methods jump by their average "
        "velocity (solver average, --steps jumps) unless another ODE solver is named",
    )
    p.add_argument("--steps", type=int, default=100, help="solver steps (default: 100)")
    p.add_argument("--atol", type=float, default=1e-5, help="dopri5 absolute tolerance")
    p.add_argument("--rtol", type=float, default=1e-5, help="dopri5 relative tolerance")
    p.add_argument("--seed", type=int, default=0, help="seed of the source draw (default: 0)")
    p.add_argument("--out", default=None, help="output .npy file (required unless --grid is given)")
    p.add_argument("--trajectory", default=None, help="also save the trajectory (T+1, N, D) to this .npy")
    p.add_argument("--plot", default=None, help="also plot the samples against the test target to this PNG")
    p.add_argument("--no-ema", action="store_true", help="sample with the raw weights, not the EMA")
    p.add_argument("--chunk-size", type=int, default=None, help="integrate at most this many samples at once")
    p.add_argument(
        "--sde",
        action="store_true",
        help="sample the Schrodinger-bridge SDE dX = [v + (sigma^2/2) s] dt + sigma dW by "
        "Euler-Maruyama with --steps steps (runs that learned a score: sb-cfm)",
    )
    p.add_argument(
        "--churn",
        type=float,
        default=None,
        help="sample the diffusion SDE of the run's Gaussian path, dx = [v + (eta^2 g^2/2) s] dt + eta g dW, "
        "with churn eta (0: the probability-flow ODE, 1: the reverse-time SDE, DDPM's ancestral step) by DDIM "
        "steps, or by Euler-Maruyama with --solver euler-maruyama (runs on an affine path from N(0, I) without "
        "extra noise: method fm, rf, or a --scheduler)",
    )
    p.add_argument(
        "--cond",
        default=None,
        help="class-conditional runs: the class of every sample (index or name); default: "
        "the classes in turn, n/K samples each",
    )
    p.add_argument(
        "--guidance",
        type=float,
        default=None,
        help="classifier-free guidance scale w of conditional runs: v = v_null + w (v_cond - v_null); "
        "0 unconditional, 1 conditional (default: 1)",
    )
    p.add_argument("--grid", default=None, help="image runs: also write the samples as a PNG grid to this file")
    add_sequence_flags(p)
    add_device(p)
    add_common(p)
    p.set_defaults(func=run)
    return p


def _conditioning(args: argparse.Namespace, run, n: int):
    """The field to integrate and its condition: the guided model and labels for conditional runs."""
    import torch

    from flowmatch.models.guidance import guided

    if run.config.cond != "label":
        if args.cond is not None or args.guidance is not None:
            raise ValueError(
                f"--cond and --guidance need a class-conditional run (trained with --cond label), "
                f"got cond {run.config.cond!r} in {args.run!r}"
            )
        return run.model, None
    from flowmatch.runs.image import parse_cond

    k = run.data.num_classes
    if args.cond is not None:
        labels = torch.full((n,), parse_cond(str(args.cond), run.data.classes), dtype=torch.long)
    else:
        labels = torch.arange(k).repeat_interleave(-(-n // k))[:n]
    w = 1.0 if args.guidance is None else args.guidance
    return guided(run.model, w), labels.to(run.device)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from flowmatch._utils.validate import check_positive_int
    from flowmatch.data import resolve_distribution
    from flowmatch.runs.run import load_run
    from flowmatch.sampling.ode import sample

    n = check_positive_int("--n", args.n)
    run = load_run(args.run, device=args.device, use_ema=not args.no_ema)
    if run.kind.name == "sequence":
        from flowmatch.cli.sample_sequence import sample_sequences

        return sample_sequences(args, run)
    if run.kind.name == "manifold":
        from flowmatch.cli.manifold_run import manifold_sample

        return manifold_sample(args, run, n)
    if run.kind.name == "discrete":
        from flowmatch.cli.tokens import sample_token_run

        return sample_token_run(args, run)
    if args.text is not None or args.wav is not None or args.png is not None or args.infill is not None:
        raise ValueError(f"--text, --wav, --png and --infill need a sequence run (--target speech), got {args.run!r}")
    if args.out is None and args.grid is None:
        raise ValueError("sample needs --out FILE.npy or --grid FILE.png, got neither")
    if args.out is not None and not str(args.out).endswith(".npy"):
        raise ValueError(f"--out must be a .npy file, got {args.out!r}")
    if args.grid is not None and not str(args.grid).lower().endswith(".png"):
        raise ValueError(f"--grid must be a .png file, got {args.grid!r}")
    if getattr(run.config, "snapshots", None) is not None:
        raise ValueError(
            f"sample draws from a run's source at t = 0 to 1; {args.run!r} is a snapshot run: push its "
            "populations with flowmatch.trajectory.inference.push (see `flowmatch eval`)"
        )
    if args.grid is not None and not run.data.is_image:
        raise ValueError(f"--grid needs an image run, got target {run.config.target!r}")
    src = resolve_distribution(run.config.source, dim=run.data.dim if run.config.source == "gaussian" else None)
    g = torch.Generator().manual_seed(args.seed)
    x0 = src.sample(n, generator=g).to(run.device)
    if run.data.shape is not None:  # images: the flat N(0, I) draw in the shape (n, C, H, W)
        x0 = x0.reshape(n, *run.data.shape)
    field, cond = _conditioning(args, run, n)
    if args.churn is not None:
        res = _sample_diffusion(args, run, x0, g, field, cond)
    elif args.sde:
        res = _sample_sde(args, run, x0, g, cond)
    elif args.solver in ("euler", "average") and _average_velocity(run):
        from flowmatch.sampling.average import sample_average

        res = sample_average(field, x0, steps=args.steps, cond=cond, return_trajectory=args.trajectory is not None)
        args.solver = "average"
    else:
        res = sample(
            field,
            x0,
            solver=args.solver,
            steps=args.steps,
            atol=args.atol,
            rtol=args.rtol,
            return_trajectory=args.trajectory is not None,
            chunk_size=args.chunk_size,
            cond=cond,
        )
    label = "euler-maruyama sde" if args.sde else args.solver
    if args.churn is not None:
        label = f"diffusion churn {args.churn:g}, {'ddim' if args.solver == 'euler' else args.solver}"
    out = Path(args.out) if args.out is not None else None
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        np.save(out, res.x.cpu().numpy())
    if args.grid is not None:
        from flowmatch.plots import plot_image_grid

        per_row = -(-n // run.data.num_classes) if (cond is not None and args.cond is None) else None
        rows = list(run.data.classes) if per_row is not None else None
        grid = plot_image_grid(res.x.clamp(-1, 1).cpu(), args.grid, ncols=per_row, row_labels=rows)
    if args.trajectory is not None:
        np.save(args.trajectory, res.trajectory.cpu().numpy())
    if args.plot is not None:
        from flowmatch import plots

        plots.plot_samples(
            res.x.cpu(),
            run.data.target.test,
            args.plot,
            source=x0.cpu(),
            title=f"{run.config.method}: {label} {args.steps}",
        )
    if not args.quiet:
        where = " and ".join(str(f) for f in (out, grid if args.grid is not None else None) if f is not None)
        extra = "" if cond is None else f", guidance {1.0 if args.guidance is None else args.guidance}"
        print(f"wrote {n} samples of dimension {run.data.dim} to {where} ({label}, NFE {res.nfe}{extra})")
    return 0


def _sample_sde(args: argparse.Namespace, run, x0, g, cond=None):
    """``--sde``: Euler-Maruyama with the run's sigma; the noise generator is seeded from ``g``
    after the source draw, so ``--seed`` fixes both. Conditional runs: the condition goes to both
    fields (guidance scale 1; other scales are not defined for the score here)."""
    import torch

    from flowmatch.models import has_score
    from flowmatch.sampling.sde import sample_sde

    if not has_score(run.model):
        raise ValueError(
            f"--sde needs a run that learned a score (method sb-cfm with score = true), "
            f"got method {run.config.method!r} without a score in {args.run!r}"
        )
    if args.solver != "euler":
        raise ValueError(f"--sde integrates by Euler-Maruyama; --solver must be left at euler, got {args.solver!r}")
    if getattr(args, "guidance", None) not in (None, 1.0):
        raise ValueError(
            f"--sde samples the conditional fields as trained (guidance 1); got --guidance {args.guidance}"
        )
    seed = int(torch.randint(0, 2**62, (1,), generator=g))
    noise_gen = torch.Generator(device=x0.device).manual_seed(seed)
    return sample_sde(
        run.model,
        x0,
        sigma=run.config.resolved_sigma,
        steps=args.steps,
        generator=noise_gen,
        cond=cond,
        return_trajectory=args.trajectory is not None,
        chunk_size=args.chunk_size,
    )


def _average_velocity(run) -> bool:
    from flowmatch.objectives import methods

    return methods.spec(run.config.method).average_velocity


def _sample_diffusion(args: argparse.Namespace, run, x0, g, field, cond):
    """``--churn ETA``: :func:`flowmatch.sample_diffusion` on the run's scheduler, the noise seeded
    from ``g`` after the source draw. A network trained on x1 or eps is passed as itself with its
    parametrisation (the DDIM step needs no conversion to a velocity at t = 0)."""
    import torch

    from flowmatch._utils.validate import check_nonnegative_float, check_positive_int
    from flowmatch.models import AsVelocity
    from flowmatch.runs.path_options import run_scheduler
    from flowmatch.sampling.diffusion import sample_diffusion

    churn = check_nonnegative_float("--churn", args.churn)
    if args.sde:
        raise ValueError("--churn and --sde are two samplers; give one of them, got both")
    scheduler = run_scheduler(run.config)
    if scheduler is None or run.config.source != "gaussian":
        raise ValueError(
            f"--churn needs a run on an affine Gaussian path from N(0, I) (method fm or rf, or a --scheduler "
            f"with sigma 0, and --source gaussian), got method {run.config.method!r}, scheduler "
            f"{run.config.scheduler!r}, sigma {run.config.resolved_sigma}, source {run.config.source!r}"
        )
    if args.solver not in ("euler", "ddim", "euler-maruyama"):
        raise ValueError(f"--churn steps by ddim (default) or euler-maruyama; got --solver {args.solver!r}")
    param = "velocity"
    if isinstance(field, AsVelocity):
        field, param = field.model, field.param
    seed = int(torch.randint(0, 2**62, (1,), generator=g))
    return sample_diffusion(
        field,
        x0,
        scheduler,
        param=param,
        churn=churn,
        solver="ddim" if args.solver == "euler" else args.solver,
        steps=check_positive_int("--steps", args.steps),
        cond=cond,
        generator=torch.Generator(device=x0.device).manual_seed(seed),
        return_trajectory=args.trajectory is not None,
    )
