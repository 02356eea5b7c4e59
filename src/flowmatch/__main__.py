"""``python -m flowmatch`` (also what ``torchrun -m flowmatch`` runs)."""

import os
import sys

from flowmatch.cli import main

if __name__ == "__main__":  # not when a spawned worker process re-imports it
    code = main()
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:  # a torchrun worker: no interpreter teardown
        from flowmatch.training.distributed import exit_worker

        exit_worker(code)
    sys.exit(code)
