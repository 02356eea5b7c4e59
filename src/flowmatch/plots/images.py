"""Image grids as PNG files (Pillow), for samples of image models.

:func:`plot_image_grid` is re-exported as ``flowmatch.plots.plot_image_grid``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flowmatch._utils.validate import check_positive_int
from flowmatch.plots._common import write_atomic

__all__ = ["plot_image_grid", "image_grid_array"]


def image_grid_array(
    images: Any,
    *,
    ncols: int | None = None,
    value_range: tuple[float, float] = (-1.0, 1.0),
    padding: int = 1,
    scale: int = 1,
    pad_value: float = 1.0,
) -> np.ndarray:
    """Tile images (N, C, H, W) (C = 1 or 3) into one uint8 array (H', W') or (H', W', 3).

    Values are mapped linearly from ``value_range`` to 0..255 and clipped; ``padding`` pixels of
    ``pad_value`` (a fraction of white) separate the tiles; ``scale`` enlarges every pixel to a
    ``scale x scale`` block (nearest neighbour, so 8x8 digits stay crisp).
    """
    x = (
        images.detach().to("cpu", torch.float32).numpy()
        if isinstance(images, torch.Tensor)
        else np.asarray(images, dtype=np.float32)
    )
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[0] < 1 or x.shape[1] not in (1, 3):
        raise ValueError(f"images must have shape (N, C, H, W) with N >= 1 and C in (1, 3), got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("images must be finite, got NaN or Inf values")
    lo, hi = (float(v) for v in value_range)
    if not hi > lo:
        raise ValueError(f"value_range must satisfy low < high, got {value_range!r}")
    scale = check_positive_int("scale", scale)
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"padding must be an integer >= 0, got {padding!r}")
    n, c, h, w = x.shape
    ncols = math.ceil(math.sqrt(n)) if ncols is None else check_positive_int("ncols", ncols)
    nrows = math.ceil(n / ncols)
    u8 = np.clip((x - lo) / (hi - lo) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if scale > 1:
        u8 = u8.repeat(scale, axis=2).repeat(scale, axis=3)
        h, w = h * scale, w * scale
    fill = np.uint8(round(255 * min(max(pad_value, 0.0), 1.0)))
    grid = np.full((c, nrows * h + (nrows + 1) * padding, ncols * w + (ncols + 1) * padding), fill, np.uint8)
    for k in range(n):
        r, q = divmod(k, ncols)
        y0, x0 = padding + r * (h + padding), padding + q * (w + padding)
        grid[:, y0 : y0 + h, x0 : x0 + w] = u8[k]
    return grid[0] if c == 1 else grid.transpose(1, 2, 0)


def plot_image_grid(
    images: Any,
    path: str | os.PathLike[str],
    *,
    ncols: int | None = None,
    value_range: tuple[float, float] = (-1.0, 1.0),
    padding: int = 1,
    scale: int | None = None,
    row_labels: Sequence[str] | None = None,
) -> Path:
    """Write images (N, C, H, W) as one PNG grid (row-major, ``ncols`` per row) and return the path.

    ``scale=None`` enlarges small images so that a tile is at least 32 pixels high. With
    ``row_labels`` a strip on the left names each row (e.g. the class of a class-conditional grid).
    The file is written atomically (a temporary file in the same directory, then ``os.replace``).
    """
    from PIL import Image, ImageDraw

    x = images if isinstance(images, (torch.Tensor, np.ndarray)) else np.asarray(images)
    h = int(x.shape[-2])
    if scale is None:
        scale = max(1, math.ceil(32 / h))
    arr = image_grid_array(x, ncols=ncols, value_range=value_range, padding=padding, scale=scale)
    img = Image.fromarray(arr)
    if row_labels is not None:
        labels = [str(s) for s in row_labels]
        tile = h * scale + padding
        width = 8 + 7 * max((len(s) for s in labels), default=1)
        canvas = Image.new(img.mode, (img.width + width, img.height), 255 if img.mode == "L" else (255, 255, 255))
        canvas.paste(img, (width, 0))
        draw = ImageDraw.Draw(canvas)
        for r, s in enumerate(labels):
            y = padding + r * tile + max(0, (h * scale - 11) // 2)
            draw.text((3, y), s, fill=0 if img.mode == "L" else (0, 0, 0))
        img = canvas
    dest = Path(path)
    if dest.suffix.lower() not in (".png", ""):
        raise ValueError(f"image grids are written as PNG; the path must end in .png, got {str(dest)!r}")
    if dest.suffix == "":
        dest = dest.with_suffix(".png")
    return write_atomic(dest, lambda fh: img.save(fh, format="PNG"))
