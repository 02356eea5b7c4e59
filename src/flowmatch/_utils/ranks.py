"""Where this process stands among data-parallel ranks, and the few collectives that the layers
below training need (the global coupling gathers batches; the trainer averages losses, agrees on
a stop and gathers generator states). Without a process group every function is the identity of
one process (rank 0 of 1). The launch, DDP wrapping and restarts are in
:mod:`flowmatch.training.distributed`, which re-exports these names."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "DistInfo",
    "group_initialized",
    "info",
    "launched_by_torchrun",
    "all_gather_cat",
    "mean_over_ranks",
    "all_ranks_true",
    "barrier",
    "gather_states",
    "states_for_rank",
    "local_device",
    "RANK_KEY",
]


#: Key suffix of rank r's generator states in a checkpoint's rng.safetensors ("generator@rank1").
RANK_KEY = "@rank"


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the process group (rank 0 of 1 when there is none)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes and evaluates."""
        return self.rank == 0


def group_initialized() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def info() -> DistInfo:
    """Rank, world size and local rank of the initialised process group, else rank 0 of 1."""
    if not group_initialized():
        return DistInfo()
    return DistInfo(
        torch.distributed.get_rank(), torch.distributed.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))
    )


def launched_by_torchrun() -> bool:
    """Whether torchrun (or another env:// launcher) started this process: RANK and WORLD_SIZE set."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def all_gather_cat(x: Tensor) -> Tensor:
    """The tensors ``x`` (b, ...) of all ranks, concatenated in rank order: (N b, ...), on every
    rank (every rank must pass the same shape). Without a process group: ``x`` itself."""
    if not group_initialized() or torch.distributed.get_world_size() == 1:
        return x
    x = x.detach().contiguous()
    parts = [torch.empty_like(x) for _ in range(torch.distributed.get_world_size())]
    torch.distributed.all_gather(parts, x)
    return torch.cat(parts)


def mean_over_ranks(x: Tensor) -> float:
    """Mean of a scalar over the ranks (a float); ``float(x)`` without a process group."""
    if not group_initialized() or torch.distributed.get_world_size() == 1:
        return float(x)
    y = x.detach().clone().reshape(1).to(torch.float64 if x.device.type != "mps" else torch.float32)
    torch.distributed.all_reduce(y)
    return float(y) / torch.distributed.get_world_size()


def all_ranks_true(flag: bool) -> bool:
    """Whether ``flag`` holds on every rank (a collective: call it on every rank); ``flag`` itself
    without a process group."""
    if not group_initialized() or torch.distributed.get_world_size() == 1:
        return bool(flag)
    device = torch.device("cuda", torch.cuda.current_device()) if torch.distributed.get_backend() == "nccl" else "cpu"
    y = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    torch.distributed.all_reduce(y, op=torch.distributed.ReduceOp.MIN)
    return bool(y.item())


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    if group_initialized() and torch.distributed.get_world_size() > 1:
        if torch.distributed.get_backend() == "nccl":
            torch.distributed.barrier(device_ids=[torch.cuda.current_device()])
        else:
            torch.distributed.barrier()


def gather_states(states: dict[str, Tensor]) -> dict[str, Tensor]:
    """Every rank's generator states, for rank 0's checkpoint: rank 0's under their own names,
    rank r's as ``name@rank{r}`` (a collective: call it on every rank). Without a process group:
    ``states`` unchanged, so single-process checkpoints keep their format."""
    dist = info()
    if dist.world_size == 1:
        return dict(states)
    out = dict(states)
    for name, state in states.items():
        state = state.detach().to(torch.uint8).cpu()
        if torch.distributed.get_backend() == "nccl":
            parts = all_gather_cat(state.to(local_device(torch.device("cuda")))[None]).cpu()
        else:
            parts = all_gather_cat(state[None])
        for r in range(1, dist.world_size):
            out[f"{name}{RANK_KEY}{r}"] = parts[r].clone()
    return out


def states_for_rank(rng: dict[str, Tensor], rank: int, world_size: int) -> dict[str, Tensor]:
    """This rank's generator states from a checkpoint written by :func:`gather_states`.

    The checkpoint must come from a run with the same number of processes (each rank resumes
    its own streams); a one-line error says so otherwise.
    """
    saved = 1 + max((int(k.rsplit(RANK_KEY, 1)[1]) for k in rng if RANK_KEY in k), default=0)
    if saved != world_size:
        raise ValueError(f"a checkpoint written by {saved} process(es) must be resumed with as many, got {world_size}")
    if rank == 0:
        return {k: v for k, v in rng.items() if RANK_KEY not in k}
    suffix = f"{RANK_KEY}{rank}"
    return {k[: -len(suffix)]: v for k, v in rng.items() if k.endswith(suffix)}


def local_device(device: torch.device) -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` for a CUDA device without index in a process
    group, else ``device`` unchanged."""
    if device.type == "cuda" and device.index is None and group_initialized():
        return torch.device("cuda", info().local_rank)
    return device
