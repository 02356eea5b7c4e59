"""Private helpers shared by every layer: input checks (:mod:`.validate`) and atomic file writes
(:mod:`.io`). Nothing here imports torch at module level or any other part of flowmatch."""
