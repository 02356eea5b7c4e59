"""Figures for flow-matching runs: samples, trajectories and training loss.

Figures are drawn with :class:`matplotlib.figure.Figure` and the Agg canvas
(:class:`matplotlib.backends.backend_agg.FigureCanvasAgg`) directly, never through
``matplotlib.pyplot``: no global figure state is created and a user's interactive backend is left
untouched (this package does not call ``matplotlib.use``). Each function writes its file
atomically (a temporary file in the destination directory, then ``os.replace``), creates missing
parent directories, and returns the destination path. The image format follows the file suffix
(``.png`` when there is none).

Samples of shape ``(n, *dims)`` are flattened to ``(n, D)``. For ``D = 2`` the two coordinates are
plotted; for ``D > 2`` every point set is projected onto the top two principal components of the
reference set (the target when given), and the axis labels say so; for ``D = 1`` the values are
plotted on a line at height 0.

Comparison figures (:func:`plot_sample_panels`, :func:`plot_trajectory_panels`) draw one subplot
per method with the same projection and identical axis limits in every subplot, so the panels can
be compared by eye; :func:`plot_loss_curves` overlays several training curves on one axis.

Layout: :mod:`flowmatch.plots.samples`, :mod:`flowmatch.plots.trajectories` and
:mod:`flowmatch.plots.loss` hold the figures (:mod:`flowmatch.plots.images`: PNG grids of
image samples, with Pillow); :mod:`flowmatch.plots._common` the shared input
checks, projection, figure layout and atomic writing.
"""

from __future__ import annotations

from flowmatch.plots.images import plot_image_grid
from flowmatch.plots.loss import plot_loss, plot_loss_csv, plot_loss_curves
from flowmatch.plots.samples import plot_sample_panels, plot_samples
from flowmatch.plots.snapshots import plot_snapshot_trajectories
from flowmatch.plots.trajectories import plot_trajectories, plot_trajectory_panels

__all__ = [
    "plot_samples",
    "plot_trajectories",
    "plot_loss",
    "plot_loss_csv",
    "plot_sample_panels",
    "plot_trajectory_panels",
    "plot_loss_curves",
    "plot_image_grid",
    "plot_snapshot_trajectories",
]
