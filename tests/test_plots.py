"""Behaviour of flowmatch.plots: valid non-blank images, any dimension, atomic writes, errors."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from flowmatch.plots import (
    plot_loss,
    plot_loss_csv,
    plot_loss_curves,
    plot_sample_panels,
    plot_samples,
    plot_trajectories,
    plot_trajectory_panels,
)


def _randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _assert_image(path, fmt: str = "PNG") -> np.ndarray:
    """The file is a decodable image of the given format, with real content (not one colour)."""
    assert path.is_file() and path.stat().st_size > 0
    with Image.open(path) as im:
        assert im.format == fmt
        im.load()
        assert im.size[0] > 100 and im.size[1] > 100
        pixels = np.asarray(im.convert("RGB"))
    packed = pixels.astype(np.int32)
    colours = np.unique((packed[..., 0] << 16) | (packed[..., 1] << 8) | packed[..., 2])
    assert len(colours) > 10, "image is (nearly) blank"
    # Something other than the white background covers a visible part of the canvas.
    non_white = (pixels < 250).any(-1).mean()
    assert non_white > 0.01
    return pixels


def _only_file(directory, name: str) -> None:
    """Atomic write: the destination exists and no temporary file is left next to it."""
    assert sorted(p.name for p in directory.iterdir()) == [name]


def _trajectory(n: int, dims: tuple[int, ...], steps: int = 10, seed: int = 0) -> torch.Tensor:
    """Straight paths from noise to a shifted copy, shape (steps+1, n, *dims)."""
    x0 = _randn(n, *dims, seed=seed)
    x1 = 0.5 * _randn(n, *dims, seed=seed + 1) + 3.0
    t = torch.linspace(0, 1, steps + 1).reshape(-1, *([1] * (1 + len(dims))))
    return x0[None] + t * (x1 - x0)[None]


@pytest.mark.parametrize("dims", [(2,), (5,), (1, 4, 4)])
def test_plot_samples_writes_a_non_blank_png_for_any_dimension(tmp_path, dims):
    gen = _randn(300, *dims, seed=1)
    tgt = _randn(400, *dims, seed=2) + 2.0
    src = _randn(200, *dims, seed=3)
    out = tmp_path / "nested" / "dir" / "samples.png"
    ret = plot_samples(gen, tgt, out, source=src, title=f"dims={dims}", max_points=250)
    assert ret == out
    _assert_image(out)
    _only_file(out.parent, "samples.png")


def test_plot_samples_accepts_numpy_and_overwrites(tmp_path):
    out = tmp_path / "s.png"
    out.write_bytes(b"old")
    plot_samples(np.random.default_rng(0).normal(size=(50, 2)), np.random.default_rng(1).normal(size=(60, 2)), str(out))
    _assert_image(out)
    _only_file(tmp_path, "s.png")


def test_high_dimensional_samples_are_projected_on_target_principal_components(tmp_path):
    # Target varies only along e_3 and e_5: the plot must still show two spread-out clusters
    # (the first two raw coordinates would collapse everything onto a point).
    t = torch.zeros(400, 5)
    t[:200, 2] = -4.0
    t[200:, 2] = 4.0
    t[:, 4] = torch.linspace(-2, 2, 400)
    out = plot_samples(t.clone(), t, tmp_path / "pca.png")
    _assert_image(out)

    from flowmatch.plots._common import Projection

    proj = Projection(t.double().numpy(), "target")
    assert proj.labels[0].startswith("PC1 of target") and proj.labels[1].startswith("PC2 of target")
    p2 = proj(t.double().numpy())
    centred = (t - t.mean(0)).double().numpy()
    # All the variance lies in the plotted plane, and distances are preserved (isometry).
    assert np.allclose((p2**2).sum(), (centred**2).sum(), rtol=1e-10)
    assert np.allclose(np.linalg.norm(p2[0] - p2[-1]), np.linalg.norm(centred[0] - centred[-1]))


@pytest.mark.parametrize("dims", [(2,), (5,), (1, 4, 4)])
def test_plot_trajectories_writes_a_non_blank_png(tmp_path, dims):
    traj = _trajectory(80, dims)
    target = 0.5 * _randn(300, *dims, seed=7) + 3.0
    out = plot_trajectories(traj, tmp_path / "traj.png", target=target, n_show=50)
    _assert_image(out)
    out2 = plot_trajectories(traj, tmp_path / "traj_notarget.png")
    _assert_image(out2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["traj.png", "traj_notarget.png"]


def test_plot_loss_and_csv(tmp_path):
    steps = np.arange(1, 501)
    losses = 2.0 * np.exp(-steps / 150) + 0.1 + 0.05 * np.abs(np.sin(steps))
    out = plot_loss(steps, losses, tmp_path / "loss.png", title="loss")
    _assert_image(out)

    csv_path = tmp_path / "log.csv"
    lines = ["step,loss,lr"] + [f"{s},{loss:.6f},0.001" for s, loss in zip(steps, losses)]
    lines.insert(10, "9.5,,0.001")  # a row without a loss value is skipped
    csv_path.write_text("\n".join(lines) + "\n")
    out_csv = plot_loss_csv(csv_path, tmp_path / "plots" / "loss_csv.png")
    _assert_image(out_csv)
    _only_file(tmp_path / "plots", "loss_csv.png")

    # A diverged run: non-finite losses are left out and the rest is still plotted.
    csv_path.write_text("\n".join(lines[:200] + ["200,nan,0.001", "201,inf,0.001"]) + "\n")
    _assert_image(plot_loss_csv(csv_path, tmp_path / "plots" / "diverged.png"))
    csv_path.write_text("step,loss\n1,nan\n")
    with pytest.raises(ValueError, match=r"no finite loss values \(1 non-finite\)"):
        plot_loss_csv(csv_path, tmp_path / "plots" / "none.png")


def test_plot_loss_with_nonpositive_values_uses_a_linear_axis(tmp_path):
    steps = np.arange(100)
    losses = np.sin(steps / 10.0)
    _assert_image(plot_loss(steps, losses, tmp_path / "lin.png"))


def test_format_follows_the_suffix(tmp_path):
    out = plot_samples(_randn(30, 2, seed=8), _randn(30, 2, seed=9), tmp_path / "s.jpg")
    _assert_image(out, fmt="JPEG")
    _only_file(tmp_path, "s.jpg")


def test_failed_write_leaves_no_file(tmp_path, monkeypatch):
    import matplotlib.figure

    def boom(self, *args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        plot_samples(_randn(10, 2, seed=10), _randn(10, 2, seed=11), tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


def test_plots_do_not_touch_pyplot_or_the_backend(tmp_path, monkeypatch):
    # With pyplot made unimportable and matplotlib.use forbidden, every plot still works.
    import matplotlib

    def forbidden(*args, **kwargs):
        raise AssertionError("flowmatch.plots must not switch the matplotlib backend")

    backend = matplotlib.get_backend()
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    monkeypatch.setattr(matplotlib, "use", forbidden)
    x = _randn(20, 2, seed=16)
    _assert_image(plot_samples(x, x + 1, tmp_path / "a.png"))
    _assert_image(plot_trajectories(_trajectory(10, (2,), steps=3), tmp_path / "b.png"))
    _assert_image(plot_loss([1, 2, 3], [3.0, 2.0, 1.0], tmp_path / "c.png"))
    _assert_image(plot_sample_panels({"a": x, "b": x + 1}, x, tmp_path / "d.png"))
    _assert_image(plot_trajectory_panels({"a": _trajectory(10, (2,), steps=3)}, tmp_path / "e.png"))
    _assert_image(plot_loss_curves({"a": ([1, 2, 3], [3.0, 2.0, 1.0])}, tmp_path / "f.png"))
    assert matplotlib.get_backend() == backend


def test_bad_input_raises_value_error(tmp_path):
    p = tmp_path / "bad.png"
    x2 = _randn(10, 2, seed=12)
    with pytest.raises(ValueError, match=r"generated must hold at least 1 sample, got shape \(0, 2\)"):
        plot_samples(torch.zeros(0, 2), x2, p)
    with pytest.raises(ValueError, match="same feature dimension, got 3 and 2"):
        plot_samples(_randn(10, 3, seed=13), x2, p)
    with pytest.raises(ValueError, match="same feature dimension, got 5 and 2"):
        plot_samples(x2, x2, p, source=_randn(4, 5, seed=14))
    nan = x2.clone()
    nan[2, 0] = math.nan
    with pytest.raises(ValueError, match=r"first at index \(2, 0\)"):
        plot_samples(nan, x2, p)
    with pytest.raises(ValueError, match=r"shape \(T\+1, n, \*dims\).*got shape \(5, 2\)"):
        plot_trajectories(torch.zeros(5, 2), p)
    with pytest.raises(ValueError, match=r"got shape \(1, 4, 2\)"):
        plot_trajectories(torch.zeros(1, 4, 2), p)
    with pytest.raises(ValueError, match="same feature dimension, got 3 and 2"):
        plot_trajectories(torch.zeros(3, 4, 2), p, target=_randn(5, 3, seed=15))
    with pytest.raises(ValueError, match="n_show must be a positive integer, got 0"):
        plot_trajectories(torch.zeros(3, 4, 2), p, n_show=0)
    with pytest.raises(ValueError, match="same length, got 3 and 4"):
        plot_loss([1, 2, 3], [1.0, 2.0, 3.0, 4.0], p)
    with pytest.raises(ValueError, match="at least 1 value, got 0"):
        plot_loss([], [], p)
    with pytest.raises(ValueError, match=r"losses must be finite"):
        plot_loss([1, 2], [1.0, math.inf], p)
    with pytest.raises(ValueError, match="unsupported image format 'xyz'"):
        plot_loss([1, 2], [1.0, 2.0], tmp_path / "loss.xyz")
    csv_path = tmp_path / "log.csv"
    csv_path.write_text("step,lr\n1,0.1\n")
    with pytest.raises(ValueError, match="'step' and 'loss' columns, got \\['step', 'lr'\\]"):
        plot_loss_csv(csv_path, p)
    csv_path.write_text("step,loss\n1,abc\n")
    with pytest.raises(ValueError, match="line 2: step and loss must be numbers"):
        plot_loss_csv(csv_path, p)
    assert sorted(x.name for x in tmp_path.iterdir()) == ["log.csv"]


# --------------------------------------------------------------------------------------------
# Comparison figures
# --------------------------------------------------------------------------------------------


def _limits(ax) -> tuple[tuple[float, float], tuple[float, float]]:
    return tuple(ax.get_xlim()), tuple(ax.get_ylim())


def _inside(points: np.ndarray, ax) -> bool:
    (x0, x1), (y0, y1) = _limits(ax)
    return bool(((points[:, 0] >= x0) & (points[:, 0] <= x1) & (points[:, 1] >= y0) & (points[:, 1] <= y1)).all())


@pytest.mark.parametrize("dims", [(2,), (5,)])
def test_sample_panels_one_subplot_per_method_same_projection_and_limits(tmp_path, dims):
    from flowmatch.plots._common import Projection
    from flowmatch.plots.samples import _build_sample_panels

    tgt = _randn(300, *dims, seed=20) + 2.0
    src = _randn(100, *dims, seed=21)
    panels = {
        "good": _randn(200, *dims, seed=22) + 2.0,
        "shifted": _randn(150, *dims, seed=23) + 12.0,  # far away: must widen every panel
        "collapsed": torch.full((50, *dims), 2.0),
    }
    fig = _build_sample_panels(panels, tgt, source=src, title="cmp", max_points=1000)
    assert len(fig.axes) == len(panels)
    assert [ax.get_title() for ax in fig.axes] == list(panels)
    assert len({_limits(ax) for ax in fig.axes}) == 1  # identical limits everywhere
    proj = Projection(tgt.double().numpy(), "target")
    assert {ax.get_xlabel() for ax in fig.axes if ax.get_xlabel()} == {proj.labels[0]}
    for ax, gen in zip(fig.axes, panels.values()):
        src_pts, tgt_pts, gen_pts = (np.asarray(c.get_offsets()) for c in ax.collections)
        # Every panel shows the same projection of the shared sets and its own generated set.
        assert np.allclose(tgt_pts, proj(tgt.double().numpy().reshape(300, -1)))
        assert np.allclose(src_pts, proj(src.double().numpy().reshape(100, -1)))
        assert np.allclose(gen_pts, proj(gen.double().numpy().reshape(gen.shape[0], -1)))
        for pts in (src_pts, tgt_pts):
            assert _inside(pts, fig.axes[0])
        assert _inside(gen_pts, fig.axes[0])

    out = plot_sample_panels(panels, tgt, tmp_path / "cmp" / "samples.png", source=src, title="cmp")
    assert out == tmp_path / "cmp" / "samples.png"
    _assert_image(out)
    _only_file(out.parent, "samples.png")


@pytest.mark.parametrize(
    ("n", "ncols", "geometry"), [(1, None, (1, 1)), (5, None, (2, 4)), (5, 2, (3, 2)), (3, 10, (1, 3))]
)
def test_panel_grid_has_exactly_one_axes_per_entry(n, ncols, geometry):
    from flowmatch.plots.samples import _build_sample_panels

    x = _randn(20, 2, seed=24)
    fig = _build_sample_panels({f"m{i}": x + i for i in range(n)}, x, ncols=ncols)
    assert len(fig.axes) == n
    assert {ax.get_subplotspec().get_gridspec().get_geometry() for ax in fig.axes} == {geometry}
    # Each panel keeps x tick labels unless another panel sits directly below it.
    rows, cols = geometry
    for i, ax in enumerate(fig.axes):
        has_below = i + cols < n
        assert any(t.get_visible() for t in ax.get_xticklabels()) or has_below
        assert bool(ax.get_xlabel()) == (not has_below)


@pytest.mark.parametrize("dims", [(2,), (5,)])
def test_trajectory_panels_share_projection_and_limits(tmp_path, dims):
    from flowmatch.plots.trajectories import _build_trajectory_panels

    straight = _trajectory(40, dims, steps=10, seed=30)
    coarse = _trajectory(25, dims, steps=2, seed=32) - 6.0  # other T, n, and location
    panels = {"straight": straight, "coarse": coarse, "straight again": straight}
    fig = _build_trajectory_panels(panels, n_show=30)
    assert len(fig.axes) == 3
    assert [ax.get_title() for ax in fig.axes] == list(panels)
    assert len({_limits(ax) for ax in fig.axes}) == 1
    segs = [ax.collections[0].get_segments() for ax in fig.axes]
    assert len(segs[0]) == 30 and len(segs[1]) == 25  # n_show paths, or all when fewer
    assert len(segs[0][0]) == 11 and len(segs[1][0]) == 3  # T+1 points per path
    # The same trajectory is drawn identically in two panels (one projection for the figure).
    assert all(np.allclose(a, b) for a, b in zip(segs[0], segs[2]))
    for ax, seg in zip(fig.axes, segs):
        assert _inside(np.concatenate(seg), ax)

    target = 0.5 * _randn(200, *dims, seed=33) + 3.0
    out = plot_trajectory_panels(panels, tmp_path / "traj.png", target=target, title="paths")
    _assert_image(out)
    _only_file(tmp_path, "traj.png")


def test_loss_curves_one_distinct_colour_per_run_and_bias_corrected_ema(tmp_path):
    from matplotlib.colors import to_hex

    from flowmatch.plots.loss import _build_loss_curves

    steps = np.arange(1, 301)
    curves = {
        "constant": (steps, np.full(300, 0.7)),
        "decay": (steps, np.exp(-steps / 80.0) + 0.05),
        "short": (np.arange(50), np.linspace(2.0, 1.0, 50)),  # other length
    }
    fig = _build_loss_curves(curves, smoothing=0.9)
    (ax,) = fig.axes
    assert ax.get_yscale() == "log"
    lines = ax.get_lines()
    assert len(lines) == 2 * len(curves)  # raw + smoothed per run
    raw, smooth = lines[0::2], lines[1::2]
    assert [ln.get_label() for ln in smooth] == list(curves)
    colours = [to_hex(ln.get_color()) for ln in smooth]
    assert len(set(colours)) == len(curves)
    assert [to_hex(ln.get_color()) for ln in raw] == colours  # raw in the run's colour...
    assert all(
        r.get_alpha() < 0.5 and r.get_linewidth() < s.get_linewidth() for r, s in zip(raw, smooth)
    )  # ...but faint
    # Bias correction: the EMA of a constant is that constant from the first step on.
    assert np.allclose(smooth[0].get_ydata(), 0.7, rtol=1e-12)
    # The EMA of a decreasing sequence lags behind it (stays above) and keeps its order.
    y = curves["decay"][1]
    ema = np.asarray(smooth[1].get_ydata())
    assert ema[0] == pytest.approx(y[0]) and (ema[1:] > y[1:]).all() and (np.diff(ema) < 0).all()

    lin = _build_loss_curves({"a": (steps, np.exp(-steps / 80.0)), "b": (steps, steps * 0.0)})
    assert lin.axes[0].get_yscale() == "linear"  # one non-positive loss: linear axis

    many = _build_loss_curves({f"r{i}": ([0, 1], [1.0, 0.5]) for i in range(25)})
    assert len({to_hex(ln.get_color()) for ln in many.axes[0].get_lines()[1::2]}) == 25

    out = plot_loss_curves(curves, tmp_path / "loss.png", title="runs")
    _assert_image(out)
    _only_file(tmp_path, "loss.png")


def test_comparison_figures_reject_bad_input_naming_the_value(tmp_path):
    p = tmp_path / "bad.png"
    x2 = _randn(10, 2, seed=40)
    traj = _trajectory(5, (2,), steps=2)
    for call in (lambda: plot_sample_panels({}, x2, p), lambda: plot_trajectory_panels({}, p)):
        with pytest.raises(ValueError, match="panels must hold at least 1 entry, got 0"):
            call()
    with pytest.raises(ValueError, match="curves must hold at least 1 entry, got 0"):
        plot_loss_curves({}, p)
    with pytest.raises(TypeError, match="panels must be a mapping of name -> data, got list"):
        plot_sample_panels([x2], x2, p)
    with pytest.raises(
        ValueError,
        match=r"panels\['b'\] and target must have the same feature "
        r"dimension, got 3 and 2",
    ):
        plot_sample_panels({"a": x2, "b": _randn(10, 3, seed=41)}, x2, p)
    nan = x2.clone()
    nan[4, 1] = math.nan
    with pytest.raises(
        ValueError,
        match=r"panels\['nan run'\] must be finite, got 1 NaN/Inf "
        r"value\(s\) \(first at index \(4, 1\)\)",
    ):
        plot_sample_panels({"ok": x2, "nan run": nan}, x2, p)
    with pytest.raises(ValueError, match=r"panels\['a'\] must hold at least 1 sample"):
        plot_sample_panels({"a": torch.zeros(0, 2)}, x2, p)
    with pytest.raises(ValueError, match="ncols must be a positive integer, got 0"):
        plot_sample_panels({"a": x2}, x2, p, ncols=0)
    with pytest.raises(
        ValueError,
        match=r"panels\['b'\] and panels\['a'\] must have the same "
        r"feature dimension, got 3 and 2",
    ):
        plot_trajectory_panels({"a": traj, "b": _trajectory(5, (3,), steps=2)}, p)
    with pytest.raises(
        ValueError,
        match=r"panels\['a'\] and target must have the same feature "
        r"dimension, got 2 and 3",
    ):
        plot_trajectory_panels({"a": traj}, p, target=_randn(5, 3, seed=42))
    with pytest.raises(
        ValueError,
        match=r"panels\['flat'\] must have shape \(T\+1, n, \*dims\)"
        r".*got shape \(5, 2\)",
    ):
        plot_trajectory_panels({"a": traj, "flat": torch.zeros(5, 2)}, p)
    inf_traj = traj.clone()
    inf_traj[1, 3, 0] = math.inf
    with pytest.raises(ValueError, match=r"panels\['x'\] must be finite.*\(1, 3, 0\)"):
        plot_trajectory_panels({"x": inf_traj}, p)
    with pytest.raises(ValueError, match=r"curves\['b'\] losses must be finite.*\(1,\)"):
        plot_loss_curves({"a": ([1, 2], [1.0, 2.0]), "b": ([1, 2], [1.0, math.nan])}, p)
    with pytest.raises(
        ValueError,
        match=r"curves\['b'\] steps and curves\['b'\] losses must have "
        r"the same length, got 2 and 3",
    ):
        plot_loss_curves({"b": ([1, 2], [1.0, 2.0, 3.0])}, p)
    with pytest.raises(
        ValueError,
        match=r"curves\['a'\] must be a \(steps, losses\) pair, "
        r"got length 3",
    ):
        plot_loss_curves({"a": ([1], [1.0], [2.0])}, p)
    with pytest.raises(ValueError, match=r"smoothing must be a number in \[0, 1\), got 1.0"):
        plot_loss_curves({"a": ([1], [1.0])}, p, smoothing=1.0)
    assert list(tmp_path.iterdir()) == []
