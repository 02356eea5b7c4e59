"""Behaviour of flowmatch.plots: valid non-blank images, any dimension, atomic writes, errors."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from flowmatch.plots import plot_loss, plot_loss_csv, plot_samples, plot_trajectories


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
    plot_samples(np.random.default_rng(0).normal(size=(50, 2)),
                 np.random.default_rng(1).normal(size=(60, 2)), str(out))
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

    from flowmatch.plots import _Projection

    proj = _Projection(t.double().numpy(), "target")
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
    lines = ["step,loss,lr"] + [f"{s},{l:.6f},0.001" for s, l in zip(steps, losses)]
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
