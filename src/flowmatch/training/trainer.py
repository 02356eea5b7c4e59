"""Trainer: the optimisation loop of conditional flow matching, with EMA, logging and checkpoints.

One step (Tong et al. TMLR 2024, Algorithm 1): draw x0 from the source and x1 from the target,
let the FlowMatcher pair them and draw (t, x_t, u_t), regress v_theta(t, x_t) on u_t with AdamW.

All randomness of the loop comes from two ``torch.Generator``s seeded from ``seed``: ``generator``
draws the batches and the coupling's own random numbers, ``path_generator`` draws t, eps (and
condition dropout). Both states are saved in every checkpoint: a run resumed from a checkpoint on
the same machine takes exactly the same steps as one that was never interrupted. The split lets
the batches and pairings of later steps be drawn and solved ahead, in worker threads, while the
current step trains (``coupling_workers``, :mod:`flowmatch.training.prefetch`), with the same pairs and
weights as with ``coupling_workers=0``.

Under torchrun (a process group initialised before the Trainer is built) the Trainer trains one
data-parallel replica: ``batch_size`` is the global batch, split evenly over the ranks, each with
its own seeds; the loss runs inside DistributedDataParallel; only rank 0 writes (see
:mod:`flowmatch.training.distributed`).
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from flowmatch._utils.device import resolve_device
from flowmatch.training import distributed
from flowmatch.training.checkpoint import Checkpoint, latest_checkpoint, load_checkpoint, load_weights, save_checkpoint
from flowmatch.training.config import TrainerConfig, TrainingObjective, TrainResult
from flowmatch.training.guard import TrainingDiverged, diverged_message, step_is_finite, weights_are_finite
from flowmatch.training.interrupt import DeferredInterrupt, Interrupted
from flowmatch.training.log import open_log, write_row
from flowmatch.training.optim import EMA, adamw, learning_rate
from flowmatch.training.prefetch import BatchPrefetcher, StepBatch, draw_step
from flowmatch.training.sources import SamplerStates, batch_sources
from flowmatch.training.speed import SpeedOptions

__all__ = ["Trainer", "TrainingObjective", "TrainingDiverged", "TrainerConfig", "TrainResult", "resolve_device"]


#: The path generator (t, eps) is seeded with seed + this offset.
PATH_SEED_OFFSET = 3_000_017


BatchFn = Callable[..., Any]  # (n, generator=) -> x, (x, cond) or a SequenceBatch


class Trainer:
    """Trains ``model`` with ``matcher`` on batches from ``source`` and ``target``.

    Args:
        model: velocity network ``model(x, t, cond=None)``; moved to ``device``.
        matcher: a :class:`TrainingObjective`, e.g. a :class:`~flowmatch.objectives.cfm.FlowMatcher`.
        source: callable ``(n, generator=None) -> (n, *dims)`` tensor on ``device``
            (see :mod:`flowmatch.data.batches`); or a tensor, a (memory-mapped) NumPy array, a
            Dataset or DataLoader (:func:`flowmatch.data.datasets.as_batches`).
        target: the same for the target; it may return a pair ``(x1, cond)``, whose condition
            (labels ``(n,)`` or features ``(n, ...)``) goes to the matcher, or a
            :class:`~flowmatch.data.batches.SequenceBatch` (padded sequences with their mask).
        config: :class:`TrainerConfig`.
        run_dir: where ``log.csv`` and ``checkpoints/`` go; None trains in memory only.
        device: torch device for the model and the generator.
        metadata: JSON-serialisable dict stored in every checkpoint's state.json.

    Example:
        >>> import torch
        >>> from flowmatch import methods
        >>> from flowmatch.models import MLP
        >>> from flowmatch.training.trainer import Trainer, TrainerConfig
        >>> src = lambda n, generator=None: torch.randn(n, 2, generator=generator)
        >>> tgt = lambda n, generator=None: torch.randn(n, 2, generator=generator) + 4
        >>> res = Trainer(MLP(2), methods.get("i-cfm"), src, tgt,
        ...               TrainerConfig(steps=20, batch_size=64, quiet=True)).fit()
        >>> res.step
        20
    """

    def __init__(
        self,
        model: nn.Module,
        matcher: TrainingObjective,
        source: BatchFn,
        target: BatchFn,
        config: TrainerConfig,
        *,
        run_dir: str | Path | None = None,
        device: str | torch.device = "cpu",
        metadata: dict[str, Any] | None = None,
    ):
        self.device = resolve_device(device)
        self.model = model.to(self.device)
        self.matcher = matcher
        self.config = config
        # data parallel (flowmatch.training.distributed): batch_size is global, each rank draws its share
        self.dist = distributed.info()
        self.local_batch_size = distributed.local_batch_size(config.batch_size, self.dist.world_size)
        self.source, self.target = batch_sources(source, target, self.device, self.local_batch_size)
        self._samplers = SamplerStates(source=self.source, target=self.target)  # positions checkpointed
        self.speed = SpeedOptions(config.bf16, config.compile, config.tf32).for_device(self.device)
        self._train_module = distributed.wrap_for_training(self.speed.setup(self.model), self.device)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.metadata = metadata or {}
        self.optimizer = adamw(self.model, config.lr, config.weight_decay, self.device)
        self.ema = EMA(self.model, config.ema_decay, warmup=config.ema_warmup) if config.ema_decay > 0 else None
        seed = distributed.rank_seed(config.seed, self.dist.rank)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.path_generator = torch.Generator(device=self.device).manual_seed(seed + PATH_SEED_OFFSET)
        self._prefetcher: BatchPrefetcher | None = None
        self.step = 0
        self._elapsed_before = 0.0
        self._loss_sum = 0.0
        self._loss_count = 0
        self._bad_steps = 0  # steps skipped for a non-finite loss or gradient (max_bad_steps)
        self._saved_step: int | None = None  # the step of the latest checkpoint this run wrote or loaded
        self._last_loss = math.nan  # the latest logged mean loss
        self._t_start: float | None = None  # perf_counter at the start of fit()

    # ------------------------------------------------------------------ state
    @property
    def sampling_model(self) -> nn.Module:
        """The weights to sample with: the EMA when enabled, else the trained model."""
        return self.ema.model if self.ema is not None else self.model

    def _checkpoint(self) -> Checkpoint:
        return Checkpoint(
            step=self.step,
            model=self.model.state_dict(),
            optimizer=self.optimizer.state_dict(),
            ema=self.ema.model.state_dict() if self.ema is not None else None,
            rng=distributed.gather_states(
                {  # every rank's streams (a collective)
                    **(
                        self._prefetcher.states()
                        if self._prefetcher is not None
                        else self._samplers.states(self.generator)
                    ),
                    "path_generator": self.path_generator.get_state(),
                }
            ),
            state={
                "elapsed_s": self._elapsed(),
                "loss_sum": self._loss_sum,
                "loss_count": self._loss_count,
                "bad_steps": self._bad_steps,
                "last_loss": None if math.isnan(self._last_loss) else self._last_loss,
                **self.metadata,
            },
        )

    def save(self) -> Path | None:
        """Write a checkpoint of the current step (no-op without a run directory). Weights that are
        not finite are never written: :class:`TrainingDiverged` instead, the latest checkpoint kept."""
        if self.run_dir is None:
            return None
        if not weights_are_finite([self.model] + ([self.ema.model] if self.ema is not None else [])):
            raise TrainingDiverged(
                f"the weights are not finite at step {self.step}; not checkpointed (the latest "
                f"checkpoint, step {self._saved_step}, is kept); lower the learning rate or "
                "clip the gradient (--grad-clip)"
            )
        ckpt = self._checkpoint()  # on every rank: it gathers their generator states
        if not self.dist.is_main:  # only rank 0 writes
            return None
        path = save_checkpoint(self.run_dir / "checkpoints", ckpt, keep=self.config.keep_checkpoints)
        self._saved_step = self.step
        return path

    def load(self, path: str | Path) -> int:
        """Restore model, optimizer, EMA and generator from a checkpoint; returns its step."""
        ck = load_checkpoint(path)
        load_weights(self.model, ck.model, Path(ck.path or path) / "model.safetensors")
        if ck.optimizer is not None:
            self.optimizer.load_state_dict(ck.optimizer)
        if self.ema is not None:
            if ck.ema is None:
                raise ValueError(f"checkpoint {str(ck.path)!r} has no EMA weights but ema_decay > 0")
            load_weights(self.ema.model, ck.ema, Path(ck.path or path) / "ema.safetensors")
        rng = distributed.states_for_rank(ck.rng, self.dist.rank, self.dist.world_size)
        self.generator.set_state(rng["generator"].to(torch.uint8).cpu())
        if "path_generator" in rng:
            self.path_generator.set_state(rng["path_generator"].to(torch.uint8).cpu())
        self._samplers.set_state(rng, resuming=True)  # a Dataset sampler's position; warns for iterators
        self.step = ck.step
        self._elapsed_before = float(ck.state.get("elapsed_s", 0.0))
        self._loss_sum = float(ck.state.get("loss_sum", 0.0))
        self._loss_count = int(ck.state.get("loss_count", 0))
        self._bad_steps = int(ck.state.get("bad_steps", 0))
        self._saved_step = ck.step
        last = ck.state.get("last_loss")
        self._last_loss = math.nan if last is None else float(last)
        return ck.step

    # ------------------------------------------------------------------ logging
    def _elapsed(self) -> float:
        running = 0.0 if self._t_start is None else time.perf_counter() - self._t_start
        return self._elapsed_before + running

    def _open_log(self, resumed: bool):
        if self.run_dir is None or not self.dist.is_main:
            return None
        keep = self.step if resumed else None
        return open_log(self.run_dir / "log.csv", keep_until=keep, tensorboard=self.config.log == "tensorboard")

    # ------------------------------------------------------------------ loop
    def train_step(self) -> Tensor | None:
        """One optimisation step; returns the (detached) loss, or None for a step skipped because
        its loss or gradient was not finite (at most ``max_bad_steps``; then TrainingDiverged)."""
        cfg = self.config
        lr = learning_rate(cfg.lr, cfg.lr_schedule, self.step, cfg.steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        batch = self._prefetcher.next() if self._prefetcher is not None else self._inline_batch()
        use_pairing = getattr(self.matcher, "use_pairing", None)  # objectives without a coupling lack it
        extra = batch.loss_kwargs()

        def loss_of(model: nn.Module) -> Tensor:  # run as the (DDP) module's forward
            return self.matcher.loss(model, batch.x0, batch.x1, generator=self.path_generator, **extra)

        with use_pairing(batch.pairing) if use_pairing is not None else contextlib.nullcontext():
            with self.speed.autocast():
                loss = self._train_module(loss_of)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        loss = loss.detach()
        finite = step_is_finite(loss, self.model)
        if self.dist.world_size > 1:  # every rank skips or stops together
            finite = distributed.all_ranks_true(finite)
        if not finite:
            self._skip_bad_step(loss, lr)
            return None
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.model, self.step)
        self.step += 1
        return loss

    def _skip_bad_step(self, loss: Tensor, lr: float) -> None:
        """A step whose loss or gradient is not finite: not applied; counted, and past
        ``max_bad_steps`` training stops with :class:`TrainingDiverged`."""
        norm = self._grad_norm()
        self.optimizer.zero_grad(set_to_none=True)
        self._bad_steps += 1
        if self._bad_steps > self.config.max_bad_steps:
            raise TrainingDiverged(
                diverged_message(self.step + 1, float(loss), norm, lr, self._saved_step, self._bad_steps - 1)
            )
        self.step += 1

    def _draw_step(self):
        """One step's draws from ``generator`` (:func:`~flowmatch.training.prefetch.draw_step`)."""
        return draw_step(self.source, self.target, self.matcher, self.local_batch_size, self.generator)

    def _inline_batch(self) -> StepBatch:
        batch, thunk = self._draw_step()
        batch.pairing = thunk() if thunk is not None else None
        return batch

    def _grad_norm(self) -> float:
        norms = [p.grad.detach().norm() for p in self.model.parameters() if p.grad is not None]
        return float(torch.linalg.vector_norm(torch.stack(norms))) if norms else 0.0

    def fit(self, *, resume: bool = False) -> TrainResult:
        """Train until ``config.steps``; with ``resume`` continue from the run's latest checkpoint.

        Ctrl-C (SIGINT) and SIGTERM are deferred to the end of the current step: the step
        completes, a checkpoint is written and :class:`~flowmatch.training.interrupt.Interrupted` (a
        KeyboardInterrupt) is raised, so the run resumes exactly. A second signal of the same kind
        interrupts at once (still checkpointing the last completed step, on one process).
        """
        from tqdm.auto import tqdm

        cfg = self.config
        resumed_from = None
        if resume:
            if self.run_dir is None:
                raise ValueError("resume needs a run directory, got run_dir=None")
            ck = latest_checkpoint(self.run_dir / "checkpoints")
            if ck is None:
                raise ValueError(f"cannot resume: no checkpoint in {str(self.run_dir / 'checkpoints')!r}")
            resumed_from = self.load(ck)
        if self.step > cfg.steps:
            raise ValueError(f"steps must be >= the checkpoint's step {self.step}, got {cfg.steps}")
        log = self._open_log(resumed=resume)
        losses: list[tuple[int, float]] = []
        # float64 (MPS has none): a log window split by a checkpoint sums to the same logged mean
        loss_acc = torch.zeros(
            (), device=self.device, dtype=torch.float32 if self.device.type == "mps" else torch.float64
        )
        self.model.train()
        self._t_start = time.perf_counter()
        bar = tqdm(
            total=cfg.steps,
            initial=self.step,
            disable=cfg.quiet or not self.dist.is_main,
            desc="train",
            unit="step",
            dynamic_ncols=True,
            leave=True,
        )
        step0 = self.step
        ranks = self.dist.world_size
        interrupt = DeferredInterrupt(keep_deferring=distributed.launched_by_torchrun())
        agreed_stop = False  # every rank stops after the same step and can checkpoint together
        self._prefetcher = BatchPrefetcher(
            self._draw_step,
            self.generator,
            workers=cfg.coupling_workers,
            limit=cfg.steps - self.step,
            samplers=self._samplers,
        )
        try:
            with interrupt:  # also while saving: a late forwarded signal must not kill a rank mid-gather
                try:
                    while self.step < cfg.steps:
                        path_before = self.path_generator.get_state()
                        try:
                            loss = self.train_step()
                        except KeyboardInterrupt:  # raised inside a step: undo its draws
                            self._prefetcher.rewind(include_current=True)
                            self.path_generator.set_state(path_before)
                            raise
                        if loss is not None:  # None: a skipped non-finite step (max_bad_steps)
                            loss_acc += loss
                            self._loss_count += 1
                        distributed.fault_hook(self.step)  # testing hook, no-op unless FLOWMATCH_FAULT_AT_STEP
                        bar.update(1)
                        if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                            self._loss_sum += distributed.mean_over_ranks(loss_acc)
                            loss_acc.zero_()
                            mean = self._loss_sum / self._loss_count if self._loss_count else math.nan
                            losses.append((self.step, mean))
                            self._last_loss = mean
                            if log is not None:
                                write_row(
                                    log,
                                    [
                                        self.step,
                                        f"{mean:.6g}",
                                        f"{self.optimizer.param_groups[0]['lr']:.6g}",
                                        f"{self._grad_norm():.6g}",
                                        f"{self._elapsed():.3f}",
                                    ],
                                )
                            bar.set_postfix(loss=f"{mean:.4f}")
                            self._loss_sum, self._loss_count = 0.0, 0
                        if self.step % cfg.checkpoint_every == 0 and self.step < cfg.steps:
                            self._flush_loss(loss_acc)
                            loss_acc.zero_()
                            self.save()
                        # data parallel: one tiny collective per step, so that all ranks stop together
                        stop = (
                            bool(interrupt.requested)
                            if ranks == 1
                            else not distributed.all_ranks_true(not interrupt.requested)
                        )
                        if stop:
                            agreed_stop = True
                            raise Interrupted(interrupt.requested or signal.SIGINT, self.step)
                except KeyboardInterrupt as e:
                    if ranks == 1 or agreed_stop:  # never lose work (ranks interrupted apart cannot gather)
                        self._flush_loss(loss_acc)
                        saved = self.save() is not None
                        if not isinstance(e, Interrupted):
                            e = Interrupted(interrupt.requested or signal.SIGINT, self.step)
                        e.saved = saved
                        e.args = (e.describe(),)
                        raise e from None
                    raise
        finally:
            bar.close()
            if log is not None:
                with contextlib.suppress(OSError):  # every row was flushed; a failed flush has raised already
                    log.close()
            self._prefetcher.rewind()  # the generator back at the last completed step
            self._prefetcher.close()
            self._prefetcher = None
        self._flush_loss(loss_acc)
        self.save()
        ran = self.step - step0
        wall = time.perf_counter() - self._t_start
        return TrainResult(
            step=self.step,
            final_loss=self._last_loss,
            elapsed_s=self._elapsed(),
            steps_per_s=ran / wall if ran > 0 and wall > 0 else math.nan,
            resumed_from=resumed_from,
            losses=losses,
        )

    def _flush_loss(self, loss_acc: Tensor) -> None:
        self._loss_sum += distributed.mean_over_ranks(loss_acc)
