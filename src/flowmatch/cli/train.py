"""flowmatch train: train a model into a run directory."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import warnings
from dataclasses import fields
from pathlib import Path
from typing import Any

from flowmatch.cli._common import add_common, default_threads_for_small_models

NAME = "train"
HELP = "train a model into a run directory"

# Help text of every RunConfig field (flag --name-with-dashes).
_HELP = {
    "source": "source distribution q0: a built-in name (gaussian, moons, 8gaussians, ...) or a .npy/.npz/.csv/.pt file",
    "target": "target distribution q1: a built-in name or a data file of shape (N, D); images: digits, "
    "mnist, cifar10 (local torchvision data), a folder of PNG/JPG (classes from subfolders) or "
    "a .npy (N, C, H, W) / .npz with images and labels; sequences: speech (the built-in eSpeak NG corpus "
    "of 80-bin log-mels) or a folder of .npz utterances (x (C, T), optional tokens, features, speaker)",
    "speech_sentences": "speech runs: sentences of the built-in corpus (each spoken by every speaker; "
    "1/8 held out for testing)",
    "speech_speakers": "speech runs: eSpeak voices of the built-in corpus (1 to 8)",
    "infill": "sequence runs: train Voicebox-style infilling (a span of each utterance generated from the rest)",
    "span_min": "infill: smallest fraction of an utterance in its span",
    "span_max": "infill: largest fraction of an utterance in its span",
    "n_train": "training points drawn per built-in distribution (files: all rows but the test part)",
    "n_test": "held-out points per distribution, used by the evaluation",
    "manifold": "Riemannian flow matching on a manifold: none, sphere (S^2; --target vmf-mixture) or torus "
    "(T^2; --target wrapped-gaussians); the source is uniform on it, methods i-cfm and ot-cfm (geodesic-cost OT)",
    "test_split": "built-in data: fresh (independent test draw) or paper (random split of one draw)",
    "mmap": "memory-map .npy data files instead of reading them whole: auto (files of 256 MiB or more), on, off, "
    "or pread (mapped, rows read by pread system calls: resident memory stays that of the model); the run is the "
    "same every way (same split, batches and weights)",
    "snapshots": "time-labelled data for trajectory inference: a .npz (arrays x (N, D) and t (N,)), a .csv "
    "with a header and a time column t or time, an AnnData .h5ad (cells; see --time-key, --embedding), or the "
    "built-in course bifurcation; trains across consecutive time points (source and target are unused)",
    "time_key": ".h5ad snapshots: the obs column of the cells' time labels, e.g. day (sorted distinct values "
    "are the time points); t or time: the one obs column of that name",
    "embedding": ".h5ad snapshots: the cells' features: an obsm key (e.g. X_pca) or a number of principal "
    "components of X computed on load (seeded PCA); X: the matrix X itself",
    "log": "csv (log.csv) or tensorboard (log.csv and, in RUN/tensorboard/, the same scalars and the final "
    "figures as TensorBoard events; needs pip install flowmatch[tensorboard])",
    "holdout": "snapshot runs: index (0-based, among the sorted time points) of an intermediate time point "
    "left out of training; eval reports the W1 of the previous time point pushed to it",
    "method": "flow matching method: i-cfm, ot-cfm, fm, sb-cfm, vp-cfm, rf; meanflow, ot-meanflow, shortcut (one-step "
    "generation by the average velocity); or cnf (maximum-likelihood CNF baseline); sequence runs also regression (the same network trained by L2 on the target)",
    "sigma": "path noise sigma (fm: sigma_min); default: the method's paper value",
    "scheduler": "the path x_t = alpha_t x1 + sigma_t x0 of a Gaussian-path run: auto (the method's own path), "
    "condot[:SIGMA_MIN], polynomial:N, vp[:BETA_MIN,BETA_MAX], linear-vp, cosine; replaces the path of i-cfm, "
    "ot-cfm, fm, vp-cfm, rf (their coupling stays), --sigma adds noise on top (default 0)",
    "target_param": "what the network predicts: velocity, x1, eps (the noise) or score (x1/eps/score need "
    "--source gaussian and a path without extra noise: method fm or a --scheduler); sampled through its velocity",
    "loss_weighting": "x1/eps/score runs: default (plain regression of the target; sigma^2 for the score) or "
    "velocity (the velocity loss, clipped where alpha or sigma < 0.05)",
    "time_sampler": "the law of t: uniform, logit-normal[:MEAN,STD], shift:S[:BASE] (SD3/Flux), mode[:SCALE]",
    "score": "true/false: also learn the score of the path ([SF]2M), so that `flowmatch sample --sde` "
    "works; default: the method's (true for sb-cfm; other methods cannot)",
    "cond": "condition the model: none; label (the target's class labels); text (a sequence's frame-aligned "
    "tokens and its speaker: the phonemes and voice of speech)",
    "guidance_dropout": "probability of training a pair with the null condition, for classifier-free "
    "guidance at sampling (0: off; e.g. 0.1)",
    "model": "velocity network: auto (unet for images, unet1d for sequences, mlp otherwise), mlp, unet, unet1d "
    "(Matcha-TTS-style decoder) or transformer (Voicebox-like)",
    "unet_width": "channels of the UNet's first level",
    "unet_mults": "UNet channel multiplier per level, e.g. 1,2,2 (auto: from the image size)",
    "unet_attention": "image resolutions (px) with self-attention in the UNet besides its middle block, "
    "e.g. 16,8; none; auto: the 16 px level",
    "unet_blocks": "residual blocks per UNet level",
    "hidden": "width of each hidden layer of the MLP (sequence models: of the first level)",
    "depth": "number of hidden layers of the MLP (unet1d: levels; transformer: 2 x depth layers)",
    "activation": "MLP activation: selu, silu, relu, gelu, tanh, elu",
    "time_embedding": "how t enters the MLP: concat or sinusoidal",
    "steps": "optimisation steps",
    "batch_size": "pairs per step: the global batch (with --nproc N each process draws batch_size / N)",
    "lr": "AdamW learning rate",
    "lr_schedule": "constant, or cosine decay to 0 over the run",
    "weight_decay": "AdamW weight decay",
    "grad_clip": "clip the gradient norm to this value (0: off)",
    "ema_decay": "decay of the EMA of the weights used for sampling (0: off)",
    "ema_warmup": "warm the EMA up: decay min(ema_decay, (1 + s) / (10 + s)) at step s, so the average forgets "
    "the random initial weights (false: ema_decay from the first step)",
    "seed": "random seed (data split, initialisation, batches, noise)",
    "device": "auto (CUDA when present), cpu, cuda, cuda:N or mps",
    "log_every": "write the mean loss to log.csv every this many steps",
    "checkpoint_every": "write a checkpoint every this many steps (and at the end)",
    "keep_checkpoints": "how many checkpoints to keep",
    "max_bad_steps": "steps with a non-finite loss or gradient to skip (not apply) before training stops "
    "with an error (0: stop at the first; the latest checkpoint is always finite)",
    "eval_solver": "solver for the final evaluation: euler, midpoint, heun, rk4, dopri5, or average (the jumps "
    "of a meanflow run); auto: average for meanflow methods, else euler",
    "eval_steps": "solver steps for the final evaluation",
    "coupling_workers": "threads that solve the couplings (OT) of the next steps while a step trains: "
    "an integer >= 0 (0: inline) or auto (1 when the method pairs its batches and "
    "there are 2+ CPUs); the results are the same for every value",
    "eval_guidance": "guidance scale w of the final evaluation and sample grid of conditional runs "
    "(0: unconditional, 1: conditional)",
    "coupling_scope": "data-parallel runs (--nproc, torchrun): local (each process pairs its own batch) or "
    "global (one OT problem over the batches of all processes, each keeps its slice)",
    "distill": "a trained run directory: train a few-step student on its own (x0, ODE(x0)) pairs (dopri5), "
    "starting from its settings (flags override them); unconditional vector runs",
    "distill_steps": "with --distill: the student's number of Euler steps K (trained at t = 0, 1/K, ...)",
    "token_source": "token runs (--target digits-tokens or brackets, --method dfm/ot-dfm): the source of the "
    "mixture path, mask (every token the extra mask token) or uniform (uniform tokens)",
    "token_loss": "token runs: the posterior's loss, ce (cross-entropy) or gkl (generalised KL)",
    "kappa_power": "token runs: the scheduler kappa_t = t^n of the mixture path (n > 0; 1: linear)",
    "corrector": "token runs: weight beta >= 0 of the CTMC sampler's divergence-free term (0: off)",
    "bf16": "CUDA only: bfloat16 autocast of the forward pass (ignored with a note on other devices)",
    "compile": "CUDA only: torch.compile the model for training (ignored with a note on other devices)",
    "tf32": "CUDA only: TF32 tensor cores for float32 matmuls (ignored with a note on other devices)",
}


def _bool_flag(text: str) -> bool:
    """'true'/'false' (also yes/no, 1/0) -> bool."""
    value = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}.get(text.strip().lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"must be true or false, got {text!r}")
    return value


#: Flag types of the RunConfig fields whose default is None.
_NONE_DEFAULT_TYPES = {"sigma": float, "score": _bool_flag, "holdout": int}
#: How the help shows the default of RunConfig fields whose default is None (else "method default").
_NONE_DEFAULT_SHOWN = {"snapshots": "none", "holdout": "none", "time_key": "t or time", "embedding": "X"}


def add_run_flags(p: argparse.ArgumentParser) -> None:
    """One flag per RunConfig field (defaults read from the dataclass, without importing torch)."""
    from flowmatch.runs.config import RunConfig

    for f in fields(RunConfig):
        default = f.default
        kind: Any = {int: int, float: float, str: str, bool: _bool_flag}.get(
            type(default), _NONE_DEFAULT_TYPES.get(f.name, str)
        )
        shown = default if default is not None else _NONE_DEFAULT_SHOWN.get(f.name, "method default")
        switch: dict[str, Any] = (
            dict(nargs="?", const=True) if isinstance(default, bool) else {}
        )  # --bf16 = --bf16 true
        p.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f.name,
            type=kind,
            default=None,
            metavar=f.name.upper(),
            help=f"{_HELP[f.name]} (default: {shown})",
            **switch,
        )


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        NAME,
        help=HELP,
        description="Train a flow matching model; writes config.toml, checkpoints/, "
        "log.csv, metrics.json and plots into --out.",
    )
    add_run_flags(p)
    p.add_argument("--config", type=str, default=None, help="TOML file of settings; flags override it")
    p.add_argument("--out", type=str, default=None, help="run directory to create (or, with --resume, to continue)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its latest checkpoint")
    p.add_argument("--force", action="store_true", help="overwrite a non-empty --out")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument(
        "--nproc",
        type=int,
        default=None,
        help="train data-parallel on this many local processes: launches torchrun "
        "(torch.distributed.run) with `-m flowmatch train` and these flags; --batch-size is "
        "the global batch, split evenly over the processes",
    )
    p.add_argument(
        "--max-restarts",
        type=int,
        default=None,
        help="with --nproc: restart the workers this many times after a failure; each restart "
        "resumes from the latest checkpoint (default: 0)",
    )
    add_common(p)
    p.set_defaults(func=run)
    return p


def _explicit(args: argparse.Namespace) -> dict[str, Any]:
    from flowmatch.runs.config import RunConfig

    return {f.name: getattr(args, f.name) for f in fields(RunConfig) if getattr(args, f.name) is not None}


def run(args: argparse.Namespace) -> int:
    from flowmatch.data.images import is_image_spec
    from flowmatch.data.sequence_files import is_sequence_spec
    from flowmatch.runs.config import RunConfig, load_toml
    from flowmatch.runs.directory import CONFIG_FILE
    from flowmatch.runs.run import kind_for, train_run
    from flowmatch.training import distributed

    if args.out is None:
        raise ValueError("train needs --out RUN_DIR (the run directory to write or, with --resume, to continue)")
    if distributed.restart_count() > 0:  # torchrun restarted us after a fault: continue the run
        args.resume, args.force = distributed.restart_resume_mode(args.out)
    settings: dict[str, Any] = {}
    if args.resume:
        run_cfg = Path(args.out) / CONFIG_FILE
        if not run_cfg.is_file():
            raise ValueError(f"cannot resume: run directory {args.out!r} has no {CONFIG_FILE}")
        settings.update(load_toml(run_cfg))
    if args.config is not None:
        settings.update(load_toml(args.config))
    explicit = _explicit(args)
    if explicit.get("distill") is not None:  # stored absolute: the student resumes from anywhere
        explicit["distill"] = str(Path(explicit["distill"]).resolve())
        if not args.resume:
            settings = {**_student_settings(explicit), **settings}
    settings.update(explicit)
    cfg = RunConfig.from_dict(settings)
    if args.nproc is not None or args.max_restarts is not None:
        return _launch(cfg, args)
    default_threads_for_small_models(
        args,
        small_model=cfg.model == "mlp"
        or (cfg.model == "auto" and not is_image_spec(cfg.target) and not is_sequence_spec(cfg.target)),
    )
    with distributed.process_group(cfg.device) as dist, _speed_note(cfg, quiet=not dist.is_main):
        _, result, report = train_run(
            cfg, args.out, resume=args.resume, force=args.force, quiet=args.quiet, plots=not args.no_plots
        )
    if not args.quiet and dist.is_main:
        print(
            f"trained {cfg.method} for {result.step} steps in {result.elapsed_s:.1f} s "
            f"({result.steps_per_s:.1f} steps/s); final loss {result.final_loss:.4f}"
        )
        if report is not None:  # W2 table, image metrics or held-out W1: the run kind's text
            print(kind_for(cfg).report_text(cfg, report, result))
        print(f"run directory: {args.out}")
    return 0


def _student_settings(explicit: dict[str, Any]) -> dict[str, Any]:
    """--distill TEACHER: the teacher's settings as the base of the student's (--config and flags
    override them), as a velocity network (the teacher's prediction target and time sampler do
    not apply) evaluated by Euler in --distill-steps steps; a conditional student learns the
    teacher's guided flow, so it has no condition dropout and samples at guidance 1."""
    from flowmatch.runs.distill import teacher_settings

    base = teacher_settings(explicit["distill"])
    for name in ("target_param", "loss_weighting", "time_sampler", "scheduler", "distill", "distill_steps"):
        base.pop(name, None)
    base.update(eval_solver="euler", eval_steps=explicit.get("distill_steps", 1), guidance_dropout=0.0)
    if base.get("cond", "none") != "none":
        base["eval_guidance"] = 1.0
    return base


@contextlib.contextmanager
def _speed_note(cfg, *, quiet: bool):
    """GPU speed options asked for off CUDA: one note line (instead of the library's warning)."""
    from flowmatch.training.speed import SpeedOptions, SpeedOptionWarning, ignored_message
    from flowmatch.training.trainer import resolve_device

    requested = SpeedOptions(cfg.bf16, cfg.compile, cfg.tf32).requested
    device = resolve_device(cfg.device)
    if requested and device.type != "cuda" and not quiet:
        print(f"flowmatch: note: {ignored_message(requested, device)}", file=sys.stderr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SpeedOptionWarning)
        yield


def _flag_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def worker_argv(args: argparse.Namespace) -> list[str]:
    """The ``flowmatch train`` arguments of each torchrun worker: the flags given, minus --nproc
    and --max-restarts (RunConfig values written back as text)."""
    argv = ["train"]
    for name, value in _explicit(args).items():
        argv += ["--" + name.replace("_", "-"), _flag_text(value)]
    for name in ("config", "out", "threads"):
        if getattr(args, name) is not None:
            argv += ["--" + name, str(getattr(args, name))]
    for name in ("resume", "force", "no_plots", "quiet"):
        if getattr(args, name):
            argv.append("--" + name.replace("_", "-"))
    return argv


def _launch(cfg, args: argparse.Namespace) -> int:
    """--nproc N: check what can be checked here, then run torchrun with N local workers."""
    from flowmatch.runs.directory import check_run_dir
    from flowmatch.runs.lock import HELD_ENV, RunLock
    from flowmatch.training import distributed

    if args.nproc is None:
        raise ValueError(
            f"--max-restarts needs --nproc (or pass --max-restarts to torchrun), got --max-restarts {args.max_restarts}"
        )
    if distributed.launched_by_torchrun():
        raise ValueError(f"--nproc launches torchrun itself; inside torchrun leave it out, got --nproc {args.nproc}")
    nproc = args.nproc
    if isinstance(nproc, bool) or nproc < 1:
        raise ValueError(f"nproc must be a positive integer, got {nproc!r}")
    distributed.local_batch_size(cfg.batch_size, nproc)
    if distributed.backend_for(cfg.device) == "nccl":
        import torch

        if nproc > torch.cuda.device_count():
            raise ValueError(
                f"nproc must not exceed the {torch.cuda.device_count()} CUDA devices with device "
                f"{cfg.device!r}, got {nproc} (use --device cpu for gloo processes)"
            )
    check_run_dir(cfg, Path(args.out), resume=args.resume, force=args.force)
    # the launcher holds the run's lock for all its workers and their restarts
    with RunLock(args.out):
        os.environ[HELD_ENV] = str(Path(args.out).resolve())
        try:
            return distributed.launch(nproc, worker_argv(args), max_restarts=args.max_restarts or 0)
        finally:
            os.environ.pop(HELD_ENV, None)
