"""``python -m flowmatch`` (also what ``torchrun -m flowmatch`` runs)."""

import sys

from flowmatch.cli import main

sys.exit(main())
