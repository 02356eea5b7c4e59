"""``python -m flowmatch`` (also what ``torchrun -m flowmatch`` runs)."""

import sys

from flowmatch.cli import main

if __name__ == "__main__":  # not when a spawned worker process re-imports it
    sys.exit(main())
