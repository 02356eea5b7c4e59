"""Trajectory inference over time-labelled snapshots: the multi-marginal matcher
(:mod:`~flowmatch.trajectory.matcher`), pushing populations and leave-one-out W1
(:mod:`~flowmatch.trajectory.inference`), and the closed-form Gaussian Schrödinger bridge
(:mod:`~flowmatch.trajectory.gaussian_bridge`)."""

from flowmatch.trajectory.matcher import (
    SnapshotBatches,
    SnapshotLoss,
    SnapshotMatcher,
    SnapshotPathSample,
    interval_blocks,
)

__all__ = ["interval_blocks", "SnapshotBatches", "SnapshotPathSample", "SnapshotLoss", "SnapshotMatcher"]
