"""Image data sets: tensors of shape (N, C, H, W) scaled to [-1, 1], with optional class labels.

Sources (all offline; nothing is ever downloaded):

- ``digits``: scikit-learn's 8x8 handwritten digits (1797 images, 10 classes), shipped inside the
  scikit-learn package (:func:`sklearn.datasets.load_digits`); pixel values 0..16 map to [-1, 1].
- a folder of PNG/JPG files (Pillow): images directly in the folder are unlabelled; images in
  subfolders take the subfolder name as their class (classes sorted by name). All images are
  converted to the mode of the first one (L or RGB) and must share its size, unless ``size`` is
  given (then each is resized to ``size x size``).
- a ``.npy`` array of shape (N, C, H, W) (or (N, H, W), one channel), or a ``.npz`` archive holding
  ``images`` (that shape) and optionally ``labels`` (N,) integers. Integer arrays are read as
  8-bit pixels (0..255); floating arrays are taken as they are (scale them to [-1, 1] yourself).
- ``mnist``, ``cifar10``: torchvision's data sets, when torchvision is importable and the data is
  already on disk under ``root`` (default ``$FLOWMATCH_DATA`` or ``~/.cache/flowmatch``);
  otherwise a ValueError says what is missing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from flowmatch._utils.validate import check_finite, check_positive_int

__all__ = [
    "ImageData",
    "IMAGE_DATASETS",
    "IMAGE_EXTENSIONS",
    "is_image_spec",
    "load_images",
    "load_digits",
    "load_image_folder",
    "load_image_array",
    "load_torchvision",
    "image_split",
]

#: Built-in image data set names.
IMAGE_DATASETS = ("digits", "mnist", "cifar10")
#: File suffixes read as images from a folder.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


@dataclass(frozen=True)
class ImageData:
    """Images ``(N, C, H, W)`` float32 in [-1, 1] (CPU), labels ``(N,)`` int64 or None, class names."""

    images: Tensor
    labels: Tensor | None
    classes: tuple[str, ...]
    name: str

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return tuple(int(s) for s in self.images.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return int(self.images.shape[0])


def _from_uint8(x: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)).to(torch.float32) / 127.5 - 1.0


def load_digits() -> ImageData:
    """scikit-learn's 8x8 digits: (1797, 1, 8, 8) in [-1, 1] (value / 8 - 1), labels 0..9."""
    try:
        from sklearn.datasets import load_digits as _load
    except ImportError:
        raise ValueError("the digits data set needs scikit-learn (pip install scikit-learn)") from None
    d = _load()
    x = torch.from_numpy(np.asarray(d.images, dtype=np.float32))[:, None] / 8.0 - 1.0
    y = torch.from_numpy(np.asarray(d.target, dtype=np.int64))
    return ImageData(x, y, tuple(str(i) for i in range(10)), "digits")


def load_image_folder(path: str | os.PathLike[str], *, size: int | None = None) -> ImageData:
    """Images of a folder (see the module doc); labels from subfolder names when there are any."""
    from PIL import Image

    root = Path(path)
    if not root.is_dir():
        raise ValueError(f"image folder must be a directory, got {str(root)!r}")
    if size is not None:
        size = check_positive_int("image size", size)
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def files(d: Path) -> list[Path]:
        return sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)

    if subdirs:
        classes = tuple(d.name for d in subdirs)
        items = [(f, i) for i, d in enumerate(subdirs) for f in files(d)]
    else:
        classes = ()
        items = [(f, -1) for f in files(root)]
    if not items:
        raise ValueError(f"image folder {str(root)!r} holds no {'/'.join(IMAGE_EXTENSIONS)} files")
    arrays, mode, shape = [], None, None
    for f, _ in items:
        try:
            with Image.open(f) as im:
                if mode is None:
                    mode = "L" if im.mode in ("L", "1", "I", "I;16", "LA") else "RGB"
                img = im.convert(mode)
                if size is not None:
                    img = img.resize((size, size), Image.Resampling.BILINEAR)
                a = np.asarray(img, dtype=np.uint8)
        except OSError as e:
            raise ValueError(f"cannot read image {str(f)!r}: {e}") from None
        if shape is None:
            shape = a.shape
        elif a.shape != shape:
            raise ValueError(
                f"all images must have the size of the first one {shape[1]}x{shape[0]}, got "
                f"{a.shape[1]}x{a.shape[0]} for {str(f)!r}; pass a size to resize them"
            )
        arrays.append(a)
    x = np.stack(arrays)
    x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
    labels = torch.tensor([i for _, i in items], dtype=torch.int64) if classes else None
    return ImageData(_from_uint8(x), labels, classes, str(root))


def load_image_array(path: str | os.PathLike[str]) -> ImageData:
    """A .npy (N, C, H, W) / (N, H, W) array, or a .npz with ``images`` and optional ``labels``."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"image array file must exist, got {str(p)!r}")
    labels = None
    try:
        if p.suffix.lower() == ".npz":
            with np.load(p, allow_pickle=False) as z:
                if "images" not in z.files:
                    raise ValueError(
                        f"image archive {str(p)!r} must hold an 'images' array, got keys "
                        f"{', '.join(repr(k) for k in z.files)}"
                    )
                x = z["images"]
                labels = z["labels"] if "labels" in z.files else None
        else:
            x = np.load(p, allow_pickle=False)
    except (OSError, EOFError) as e:
        raise ValueError(f"malformed image array file {str(p)!r}: {e}") from None
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or min(x.shape) < 1:
        raise ValueError(f"image array in {str(p)!r} must have shape (N, C, H, W) or (N, H, W), got {x.shape}")
    if np.issubdtype(x.dtype, np.integer):
        if x.min() < 0 or x.max() > 255:
            raise ValueError(
                f"integer images in {str(p)!r} must be 8-bit pixels in [0, 255], got values in [{x.min()}, {x.max()}]"
            )
        images = _from_uint8(x)
    elif np.issubdtype(x.dtype, np.floating):
        images = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    else:
        raise ValueError(f"image array in {str(p)!r} must be numeric, got dtype {x.dtype}")
    check_finite(f"images in {str(p)!r}", images)
    classes: tuple[str, ...] = ()
    y = None
    if labels is not None:
        if labels.ndim != 1 or labels.shape[0] != x.shape[0] or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(
                f"labels in {str(p)!r} must be {x.shape[0]} integers (N,), got "
                f"shape {labels.shape} dtype {labels.dtype}"
            )
        if labels.min() < 0:
            raise ValueError(f"labels in {str(p)!r} must be >= 0, got {labels.min()}")
        y = torch.from_numpy(labels.astype(np.int64))
        classes = tuple(str(i) for i in range(int(labels.max()) + 1))
    return ImageData(images, y, classes, str(p))


def _data_root(root: str | os.PathLike[str] | None) -> Path:
    if root is not None:
        return Path(root)
    env = os.environ.get("FLOWMATCH_DATA")
    return Path(env) if env else Path.home() / ".cache" / "flowmatch"


def load_torchvision(name: str, *, train: bool = True, root: str | os.PathLike[str] | None = None) -> ImageData:
    """torchvision's MNIST (1x28x28) or CIFAR-10 (3x32x32) from local files; never downloads."""
    if name not in ("mnist", "cifar10"):
        raise ValueError(f"unknown torchvision data set {name!r}; choose one of: cifar10, mnist")
    try:
        import torchvision.datasets as tvd
    except ImportError:
        raise ValueError(f"the {name} data set needs torchvision, which is not installed") from None
    where = _data_root(root)
    try:
        if name == "mnist":
            ds = tvd.MNIST(str(where), train=train, download=False)
            x = ds.data.numpy()[:, None]
            y = ds.targets.numpy()
        else:
            ds = tvd.CIFAR10(str(where), train=train, download=False)
            x = np.asarray(ds.data).transpose(0, 3, 1, 2)
            y = np.asarray(ds.targets)
    except RuntimeError as e:
        raise ValueError(
            f"{name} is not on disk under {str(where)!r} (set FLOWMATCH_DATA; flowmatch "
            f"never downloads): {str(e).splitlines()[0]}"
        ) from None
    classes = tuple(getattr(ds, "classes", [str(i) for i in range(10)]))
    return ImageData(_from_uint8(x), torch.from_numpy(np.asarray(y, dtype=np.int64)), classes, name)


def is_image_spec(spec: str) -> bool:
    """Whether ``spec`` names image data: a built-in image set, a folder, or a 3-D/4-D array file."""
    if spec in IMAGE_DATASETS:
        return True
    p = Path(spec)
    if p.is_dir():  # a folder of .npz utterances is sequence data (flowmatch.data.sequence_files)
        return not any(p.glob("*.npz"))
    if p.is_file() and p.suffix.lower() == ".npy":
        try:
            arr = np.load(p, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return False
        return isinstance(arr, np.ndarray) and arr.ndim in (3, 4)
    if p.is_file() and p.suffix.lower() == ".npz":
        try:
            with np.load(p, allow_pickle=False) as z:
                return "images" in z.files
        except (OSError, ValueError, EOFError):
            return False
    return False


def load_images(spec: str, *, train: bool = True) -> ImageData:
    """Resolve an image spec (see :func:`is_image_spec`); ``train`` picks torchvision's split."""
    if spec == "digits":
        return load_digits()
    if spec in ("mnist", "cifar10"):
        return load_torchvision(spec, train=train)
    p = Path(spec)
    if p.is_dir():
        return load_image_folder(p)
    if p.suffix.lower() in (".npy", ".npz"):
        return load_image_array(p)
    raise ValueError(
        f"unknown image data {spec!r}; choose {', '.join(IMAGE_DATASETS)}, a folder of images or a .npy/.npz array"
    )


@dataclass(frozen=True)
class ImageSplit:
    """Train and test images with their labels (``None`` when unlabelled)."""

    train: Tensor
    test: Tensor
    train_labels: Tensor | None
    test_labels: Tensor | None
    classes: tuple[str, ...]


def image_split(spec: str, *, n_test: int, generator: torch.Generator | None = None) -> ImageSplit:
    """Train/test split of an image data set.

    torchvision sets keep their official split (the test part is the first ``n_test`` official
    test images). Other sets are split at random: the test part is ``min(n_test, N // 5)`` images
    (at most a fifth, so that the classifier of :mod:`flowmatch.metrics.images` and the model keep
    most images to learn from), the train part all the others.
    """
    n_test = check_positive_int("n_test", n_test)
    if spec in ("mnist", "cifar10"):
        tr, te = load_torchvision(spec, train=True), load_torchvision(spec, train=False)
        k = min(n_test, len(te))
        return ImageSplit(tr.images, te.images[:k], tr.labels, None if te.labels is None else te.labels[:k], tr.classes)
    data = load_images(spec)
    n = len(data)
    if n < 2:
        raise ValueError(f"image data {spec!r} needs at least 2 images for a train/test split, got {n}")
    k = max(1, min(n_test, n // 5))
    device = generator.device if generator is not None else torch.device("cpu")
    perm = torch.randperm(n, generator=generator, device=device).cpu()
    test_rows, train_rows = perm[:k], perm[k:]
    y = data.labels
    return ImageSplit(
        data.images[train_rows],
        data.images[test_rows],
        None if y is None else y[train_rows],
        None if y is None else y[test_rows],
        data.classes,
    )
