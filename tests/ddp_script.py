"""Worker of tests/test_ddp.py, run by torchrun with 2 processes (gloo):
``python -m torch.distributed.run --nproc-per-node 2 ... tests/ddp_script.py OUT SETTINGS_JSON``.

1. Global coupling: each rank draws its own x0, x1 (b = 24 rows, seeds ``rank_seed(7, rank)``) and
   pairs them with ``GlobalCoupling(ExactOT())`` and ``GlobalCoupling(Sinkhorn(...))``; saves its
   batches and its pairs (``OUT/pairs-rank{r}.pt``).
2. Training: every run in SETTINGS_JSON ({name: RunConfig dict}) is trained with
   :func:`flowmatch.runs.run.train_run` into ``OUT/name`` (no evaluation, no plots), as the CLI would.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from flowmatch.couplings import ExactOT, Sinkhorn
from flowmatch.couplings.global_coupling import GlobalCoupling
from flowmatch.runs.config import RunConfig
from flowmatch.runs.run import train_run
from flowmatch.training import distributed

PAIR_SEED = 7
PAIR_ROWS = 24


def main(out: str, settings: str) -> None:
    torch.set_num_threads(1)
    out_dir = Path(out)
    with distributed.process_group("cpu") as dist:
        g = torch.Generator().manual_seed(distributed.rank_seed(PAIR_SEED, dist.rank))
        x0 = torch.randn(PAIR_ROWS, 2, generator=g)
        x1 = torch.randn(PAIR_ROWS, 2, generator=g) * 0.5 + torch.tensor([3.0, 1.0])
        saved = {"x0": x0, "x1": x1}
        for name, base in (("exact", ExactOT()), ("sinkhorn", Sinkhorn(0.1, sampling="rows"))):
            # the local generator differs per rank: the global pairing must not depend on it
            p = GlobalCoupling(base, seed=PAIR_SEED)(x0, x1, generator=torch.Generator().manual_seed(dist.rank))
            a0, a1 = p.apply(x0, x1)
            saved[name] = {"i0": p.i0, "i1": p.i1, "x0": a0, "x1": a1}
        torch.save(saved, out_dir / f"pairs-rank{dist.rank}.pt")
        for name, cfg in json.loads(settings).items():
            train_run(RunConfig.from_dict(cfg), out_dir / name, quiet=True, evaluate=False, plots=False)


if __name__ == "__main__":
    from flowmatch.training.distributed import exit_worker

    main(sys.argv[1], sys.argv[2])
    exit_worker(0)
