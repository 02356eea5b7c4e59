"""``flowmatch bench discrete``: discrete flow matching on the built-in token data (issue 21).

Rows: flowmatch's ``dfm`` (masked and uniform sources) and ``ot-dfm`` (Hamming OT pairs, uniform
source) and, where Meta's ``flow_matching`` package is installed, its ``MixtureDiscreteProbPath``
+ ``MixturePathGeneralizedKL`` + ``MixtureDiscreteEulerSolver`` trained and sampled with the same
network (:class:`~flowmatch.models.tokens.TokenTransformer`), data, steps, batch and optimiser.
Columns: ``digits-tokens``: classifier accuracy (class-conditional rows) and FD of the samples
(as :mod:`flowmatch.runs.discrete` scores them), ``brackets``: the valid fraction, each at several
NFE; the training time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from flowmatch._utils.io import atomic_write_text
from flowmatch.runs.config import RunConfig
from flowmatch.runs.discrete import evaluate_tokens
from flowmatch.runs.discrete_data import build_token_data, build_token_model, run_mixture_path

__all__ = ["DiscreteBenchSettings", "run_discrete_bench", "meta_available"]

#: (row name, method, token source, trainer): "flowmatch" or "meta"
ROWS = (
    ("dfm (mask)", "dfm", "mask", "flowmatch"),
    ("dfm (uniform)", "dfm", "uniform", "flowmatch"),
    ("ot-dfm (uniform, Hamming OT)", "ot-dfm", "uniform", "flowmatch"),
    ("Meta flow_matching (mask, gKL)", "dfm", "mask", "meta"),
)


def meta_available() -> bool:
    try:
        import flow_matching  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class DiscreteBenchSettings:
    tasks: tuple[str, ...] = ("brackets", "digits-tokens")
    nfe: tuple[int, ...] = (8, 16, 32, 64)
    steps: int = 2000
    batch_size: int = 256
    hidden: int = 128
    depth: int = 4
    lr: float = 1e-3
    n_test: int = 500
    seed: int = 0
    rows: tuple[str, ...] = field(default_factory=lambda: tuple(r[0] for r in ROWS))

    @classmethod
    def quick(cls, **kw: Any) -> DiscreteBenchSettings:
        base = dict(steps=300, batch_size=128, hidden=64, depth=2, lr=3e-3, n_test=300, nfe=(8, 16, 32))
        return cls(**{**base, **kw})


def _config(s: DiscreteBenchSettings, task: str, method: str, source: str) -> RunConfig:
    return RunConfig(
        target=task,
        method=method,
        token_source=source,
        token_loss="gkl",
        cond="label" if task == "digits-tokens" else "none",
        steps=s.steps,
        batch_size=s.batch_size,
        hidden=s.hidden,
        depth=s.depth,
        lr=s.lr,
        n_train=4000,
        n_test=s.n_test,
        seed=s.seed,
        coupling_workers=0,
        device="cpu",
    )


def _train_meta(cfg: RunConfig) -> tuple[torch.nn.Module, float]:
    """Meta's path and generalised KL with our network and data, the same steps/batch/AdamW."""
    from flow_matching.loss import MixturePathGeneralizedKL  # type: ignore[import-untyped]
    from flow_matching.path import MixtureDiscreteProbPath  # type: ignore[import-untyped]
    from flow_matching.path.scheduler import PolynomialConvexScheduler  # type: ignore[import-untyped]

    data = build_token_data(cfg)
    model = build_token_model(cfg, data)
    ours = run_mixture_path(cfg, data)
    path = MixtureDiscreteProbPath(PolynomialConvexScheduler(cfg.kappa_power))
    loss_fn = MixturePathGeneralizedKL(path, reduction="none")
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    g = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)  # Meta's path draws from the global RNG
    start = time.perf_counter()
    for _ in range(cfg.steps):
        idx = torch.randperm(data.train.shape[0], generator=g)[: cfg.batch_size]
        x1 = data.train[idx]
        mask = data.train_mask[idx] if data.train_mask is not None else None
        cond = data.train_labels[idx] if (cfg.cond == "label" and data.train_labels is not None) else None
        if cond is not None:
            cond = torch.where(torch.rand(cond.shape[0], generator=g) < 0.1, -1, cond)
        x0 = ours.sample_source(x1, generator=g)
        t = torch.rand(x1.shape[0], generator=g) * (1 - 1e-3)
        x_t = path.sample(t=t, x_0=x0, x_1=x1).x_t
        logits = model(x_t, t, cond=cond, mask=mask)
        if ours.num_states > ours.vocab_size:  # Meta's loss reads p(x_t): the mask token gets probability ~0
            logits = torch.nn.functional.pad(logits, (0, 1), value=-1e4)
        per = loss_fn(logits, x1, x_t, t)
        loss = per.mean() if mask is None else (per * mask).sum() / mask.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model, time.perf_counter() - start


def _meta_sampler(model: torch.nn.Module, cfg: RunConfig, data: Any) -> Callable[..., Any]:
    """A model for :func:`flowmatch.runs.discrete.evaluate_tokens` whose samples come from Meta's
    MixtureDiscreteEulerSolver (its draws use the global RNG, seeded with the run's seed)."""
    from flow_matching.path import MixtureDiscreteProbPath
    from flow_matching.path.scheduler import PolynomialConvexScheduler
    from flow_matching.solver import MixtureDiscreteEulerSolver  # type: ignore[import-untyped]
    from flow_matching.utils import ModelWrapper  # type: ignore[import-untyped]

    ours = run_mixture_path(cfg, data)

    class Probs(ModelWrapper):
        def forward(self, x: torch.Tensor, t: torch.Tensor, **extras: Any) -> torch.Tensor:
            p = torch.softmax(self.model(x, t, **extras).float(), -1)
            return torch.nn.functional.pad(p, (0, ours.num_states - ours.vocab_size))

    solver = MixtureDiscreteEulerSolver(
        Probs(model), MixtureDiscreteProbPath(PolynomialConvexScheduler(cfg.kappa_power)), ours.num_states
    )

    def sample(x0: torch.Tensor, steps: int, cond: Any, mask: Any) -> torch.Tensor:
        torch.manual_seed(cfg.seed)
        extras = {"cond": cond} if cond is not None else {}
        if mask is not None:
            extras["mask"] = mask
        x = solver.sample(x_init=x0, step_size=1.0 / steps, **extras)
        return x if mask is None else torch.where(mask, x, x0)

    return sample


@dataclass
class DiscreteBenchResult:
    table: str
    rows: list[dict[str, Any]]
    files: dict[str, Path]


def run_discrete_bench(
    out: str | Path, settings: DiscreteBenchSettings, *, log: Callable[[str], None] | None = None
) -> DiscreteBenchResult:
    """Train every row on every task, score it at every NFE, write table.md into ``out``."""
    from flowmatch.metrics.report import format_table
    from flowmatch.runs.run import train_run

    rows: list[dict[str, Any]] = []
    for task in settings.tasks:
        for name, method, source, trainer in ROWS:
            if name not in settings.rows or (trainer == "meta" and not meta_available()):
                continue
            cfg = _config(settings, task, method, source)
            data = build_token_data(cfg)
            if trainer == "meta":
                model, elapsed = _train_meta(cfg)
                sampler = _meta_sampler(model, cfg, data)
            else:
                tr, res, _ = train_run(cfg, None, quiet=True, evaluate=False, plots=False)
                model, elapsed, sampler = tr.sampling_model, res.elapsed_s, None
            row: dict[str, Any] = {"task": task, "method": name, "train_s": f"{elapsed:.0f}"}
            for nfe in settings.nfe:
                rep = evaluate_tokens(model, data, cfg, None, steps=nfe, sampler=sampler)
                if rep.valid_fraction is not None:
                    row[f"valid @ NFE {nfe}"] = f"{100 * rep.valid_fraction:.1f}%"
                else:
                    row[f"acc / FD @ NFE {nfe}"] = f"{100 * (rep.accuracy or 0):.1f}% / {rep.fd:.1f}"
                    row["real acc / FD"] = f"{100 * (rep.real_accuracy or 0):.1f}% / {rep.real_fd:.1f}"
            rows.append(row)
            if log is not None:
                log(str(row))
    tables = []
    for task in settings.tasks:
        these = [r for r in rows if r["task"] == task]
        if these:
            tables.append(f"### {task}\n\n" + format_table(these))
    text = "\n\n".join(tables) + (
        f"\n\n({settings.steps} steps of batch {settings.batch_size}, TokenTransformer width {settings.hidden}, "
        f"depth {settings.depth}, generalised KL, linear kappa; digits class-conditional, guidance w = 1)\n"
    )
    path = Path(out)
    path.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path / "table.md", text)
    return DiscreteBenchResult(text, rows, {"table": path / "table.md"})
