"""Data-parallel training on several processes with PyTorch's own engine: torch.distributed,
DistributedDataParallel (DDP) and torchrun (torch.distributed.run).

``torchrun --nproc-per-node N -m flowmatch train ...`` (or ``flowmatch train --nproc N ...``, which
launches it) starts N processes (ranks); each builds the same run and trains one replica of the
model. The rules:

- Process group: gloo on the CPU, NCCL on CUDA (rank r on ``cuda:LOCAL_RANK``); created by
  :func:`process_group` when the environment says torchrun started us, otherwise nothing changes.
- Batch: ``batch_size`` is the *global* batch B. Each rank draws B/N rows per step (B must be
  divisible by N), from its own generators seeded with :func:`rank_seed` (rank 0's seed is the run
  seed itself, so a 1-process run is unchanged). DDP averages the gradients over ranks:
  (1/N) sum_r grad (1/(B/N)) sum_{i in rank r} l_i = grad (1/B) sum_i l_i, the gradient of the
  loss of one process over the union of the ranks' rows; every rank then takes the same step.
- Coupling: each rank pairs its own B/N rows (``coupling_scope = "local"``) or all ranks solve one
  OT problem on the gathered B rows and each keeps its slice of the pairs (``"global"``,
  :mod:`flowmatch.couplings.global_coupling`).
- Writes: only rank 0 writes checkpoints, log.csv, config.toml, metrics.json and plots, and only
  rank 0 evaluates. A checkpoint holds the generator states of every rank (gathered by rank 0,
  :func:`gather_states`); on resume every rank reads the same checkpoint from the (shared) run
  directory and takes its own states (:func:`states_for_rank`): no broadcast is needed.
- Faults: under ``torchrun --max-restarts K`` a failed worker makes torchrun restart every worker;
  a restarted worker (``TORCHELASTIC_RESTART_COUNT`` > 0) resumes from the latest checkpoint
  (:func:`restart_resume_mode`), so the run ends with the same steps and weights as an
  uninterrupted one.

Testing hook (documented, for fault-tolerance tests only): with ``FLOWMATCH_FAULT_AT_STEP=k`` in
the environment, rank ``FLOWMATCH_FAULT_RANK`` (default 0) exits at once with status 1 right after
optimisation step k, in the first attempt only (``TORCHELASTIC_RESTART_COUNT`` unset or 0).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NoReturn

import torch
from torch import Tensor, nn

from flowmatch._utils.ranks import (
    DistInfo,
    all_gather_cat,
    all_ranks_true,
    barrier,
    gather_states,
    group_initialized,
    info,
    launched_by_torchrun,
    local_device,
    mean_over_ranks,
    states_for_rank,
)

__all__ = [
    "DistInfo",
    "info",
    "launched_by_torchrun",
    "process_group",
    "backend_for",
    "local_device",
    "rank_seed",
    "local_batch_size",
    "all_gather_cat",
    "mean_over_ranks",
    "all_ranks_true",
    "barrier",
    "gather_states",
    "states_for_rank",
    "LossModule",
    "wrap_for_training",
    "restart_count",
    "restart_resume_mode",
    "fault_hook",
    "launch",
    "free_port",
    "exit_worker",
]

#: Added (times the rank) to the run seed to seed rank r's generators (2^63 / golden ratio, odd).
RANK_SEED_STRIDE = 0x9E3779B97F4A7C15 >> 1


def backend_for(device: str | torch.device) -> str:
    """NCCL for CUDA devices, gloo otherwise ("auto": CUDA when available)."""
    if str(device) == "auto":
        return "nccl" if torch.cuda.is_available() else "gloo"
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


@contextlib.contextmanager
def process_group(device: str | torch.device = "auto") -> Iterator[DistInfo]:
    """Initialise the default process group when launched by torchrun (gloo on CPU, NCCL on
    CUDA with rank r on ``cuda:LOCAL_RANK``) and destroy it on exit. Outside torchrun, or when a
    group already exists, it yields the current :func:`info` and changes nothing."""
    if not launched_by_torchrun() or group_initialized():
        yield info()
        return
    backend = backend_for(device)
    if backend == "nccl":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise ValueError(
                f"local rank {local} needs CUDA device {local}, but only "
                f"{torch.cuda.device_count()} are visible; use at most that many processes per node"
            )
        torch.cuda.set_device(local)
    # torchrun's rendezvous TCPStore outlives a restart with the keys of the failed attempt in it
    # (e.g. rank 0's old gloo address, which a fast rank 1 would read and fail to connect to):
    # give every attempt its own key space.
    store, rank, world_size = next(torch.distributed.rendezvous("env://"))
    store = torch.distributed.PrefixStore(f"flowmatch/attempt-{restart_count()}", store)
    torch.distributed.init_process_group(backend, store=store, rank=rank, world_size=world_size)
    try:
        yield info()
    finally:
        torch.distributed.destroy_process_group()


def rank_seed(seed: int, rank: int) -> int:
    """Seed of rank ``rank``'s generators: ``seed`` for rank 0, ``seed + rank * RANK_SEED_STRIDE``
    (mod 2^63) for the others, so the ranks' streams never coincide with each other or with the
    run's other offsets (data split, path noise)."""
    return (int(seed) + int(rank) * RANK_SEED_STRIDE) % (1 << 63)


def local_batch_size(batch_size: int, world_size: int) -> int:
    """Rows per rank, B / N; a one-line error when the global batch B does not divide."""
    if batch_size % world_size:
        raise ValueError(
            f"batch_size (the global batch) must be divisible by the number of processes {world_size}, got {batch_size}"
        )
    return batch_size // world_size


class LossModule(nn.Module):
    """``LossModule(model)(fn) = fn(model)``: the whole loss computation as one ``forward``.

    DDP synchronises the gradients of what runs inside its ``forward``; objectives that call other
    methods of the model (``model.score`` of [SF]2M) or call it several times (the CNF baseline)
    are covered because the entire loss runs there.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, fn: Callable[[nn.Module], Tensor]) -> Tensor:
        return fn(self.model)


def wrap_for_training(model: nn.Module, device: torch.device) -> nn.Module:
    """``LossModule(model)``, inside DistributedDataParallel when there are several ranks.

    ``model`` may be a ``torch.compile``d module sharing the parameters of the one the optimizer
    holds; DDP hooks those parameters, so the optimizer's model receives the averaged gradients.
    """
    module = LossModule(model)
    if info().world_size == 1:
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids)


def restart_count() -> int:
    """How many times torchrun has restarted this worker group (0 in the first attempt or outside torchrun)."""
    try:
        return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    except ValueError:
        return 0


def restart_resume_mode(out: str | Path | None) -> tuple[bool, bool]:
    """(resume, force) for a worker that torchrun restarted after a fault: resume from the run's
    latest checkpoint if one was written, else start the run over (overwriting the first attempt)."""
    from flowmatch.training.checkpoint import latest_checkpoint

    has_ckpt = out is not None and latest_checkpoint(Path(out) / "checkpoints") is not None
    return has_ckpt, not has_ckpt


def _fault_step() -> int | None:
    text = os.environ.get("FLOWMATCH_FAULT_AT_STEP")
    return int(text) if text else None


_FAULT = _fault_step()


def fault_hook(step: int) -> None:
    """Testing hook: exit with status 1 after step ``FLOWMATCH_FAULT_AT_STEP`` on rank
    ``FLOWMATCH_FAULT_RANK`` (default 0), in the first attempt only. No-op when unset."""
    if _FAULT is None or step != _FAULT or restart_count() > 0:
        return
    if info().rank == int(os.environ.get("FLOWMATCH_FAULT_RANK", "0")):
        print(
            f"flowmatch: FLOWMATCH_FAULT_AT_STEP={step}: rank {info().rank} exits (testing hook)",
            file=sys.stderr,
            flush=True,
        )
        os._exit(1)


def exit_worker(code: int) -> NoReturn:
    """End a torchrun worker now that its work is done: flush the standard streams and ``os._exit``,
    skipping the interpreter's teardown. There the C++ destructors of torch.distributed's threads
    abort a worker now and then ("terminate called without an active exception", SIGABRT, after the
    last line of Python; seen in 1 of 8 launches of tests/ddp_script.py on 2 busy vCPUs), which
    torchrun reports as a failed run. Every file of a run is closed (and fsynced) before this."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def free_port() -> int:
    """A TCP port free on localhost now (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(nproc: int, argv: Sequence[str], *, module: str = "flowmatch", max_restarts: int = 0) -> int:
    """Run ``python -m {module} {argv}`` on ``nproc`` local processes with torchrun
    (torch.distributed.run, standalone rendezvous on a free port) and return an exit status:
    0, the workers' status when they failed (2 for bad input), or 1.

    OMP_NUM_THREADS defaults to 1 in the workers (as torchrun would, without its warning).
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    from flowmatch._utils.validate import check_positive_int

    nproc = check_positive_int("nproc", nproc)
    if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
        raise ValueError(f"max_restarts must be an integer >= 0, got {max_restarts!r}")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    args = get_args_parser().parse_args(
        [
            f"--nproc-per-node={nproc}",
            "--nnodes=1",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint=localhost:{free_port()}",
            f"--max-restarts={max_restarts}",
            "-m",
            module,
            *argv,
        ]
    )
    try:
        run(args)
    except SignalException as e:  # Ctrl-C or SIGTERM: the workers got it too and checkpointed
        sig = int(e.sigval)
        print(
            f"flowmatch: {signal.Signals(sig).name} received; the workers stopped at a common step with a "
            "checkpoint; continue with --resume",
            file=sys.stderr,
        )
        return 128 + sig
    except ChildFailedError as e:
        codes = sorted({f.exitcode for f in e.failures.values()})
        print(
            f"flowmatch: error: {len(e.failures)} worker(s) failed with exit code(s) "
            f"{', '.join(map(str, codes))} (their output is above)",
            file=sys.stderr,
        )
        return 2 if codes == [2] else 1
    return 0
