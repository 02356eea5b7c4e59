"""Load a user data set from a file into a float32 tensor of shape ``(N, D)``.

Supported formats: ``.npy``, ``.npz`` (one array, or a chosen key: ``"file.npz:key"``), ``.csv``
(comma separated numbers, an optional single header row of non-numbers detected automatically),
``.pt`` / ``.pth`` (a tensor, or a dict holding exactly one tensor, or a chosen key:
``"file.pt:key"``). Every rule is checked once here and broken with a one-line ``ValueError`` that
names the rule and the offending value.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from flowmatch._utils.validate import check_finite

__all__ = ["SUPPORTED_EXTENSIONS", "KEYED_EXTENSIONS", "load_array", "parse_file_spec"]

SUPPORTED_EXTENSIONS: tuple[str, ...] = (".npy", ".npz", ".csv", ".pt", ".pth")
"""File extensions ``load_array`` reads (case-insensitive)."""

KEYED_EXTENSIONS: tuple[str, ...] = (".npz", ".pt", ".pth")
"""Extensions whose files may hold several arrays, one chosen with ``"path:key"``."""


@dataclass(frozen=True)
class FileSpec:
    """A parsed data-file spec: the file ``path`` and the optional array ``key`` inside it."""

    path: Path
    key: str | None


def _suffix(path: Path) -> str:
    """Lower-case extension of ``path`` (``""`` if none)."""
    return path.suffix.lower()


def parse_file_spec(spec: str | os.PathLike[str]) -> FileSpec:
    """Split ``"file.npz:key"`` / ``"file.pt:key"`` into path and key; other specs have no key.

    A spec naming an existing file is always taken whole (so paths holding ``:`` still work).
    """
    text = os.fspath(spec)
    if os.path.exists(text) or ":" not in text:
        return FileSpec(Path(text), None)
    head, key = text.rsplit(":", 1)
    if _suffix(Path(head)) in SUPPORTED_EXTENSIONS and key and not any(c in key for c in "/\\"):
        return FileSpec(Path(head), key)
    return FileSpec(Path(text), None)


def _malformed(kind: str, path: Path, reason: object) -> ValueError:
    """The one-line error for a file that cannot be parsed."""
    reason_text = " ".join(str(reason).split()) or type(reason).__name__
    return ValueError(f"malformed {kind} file {str(path)!r}: {reason_text}")


# --------------------------------------------------------------------------------------------
# Per-format readers: each returns a torch tensor or a NumPy array (any shape), or raises.
# --------------------------------------------------------------------------------------------


def _numeric_numpy(arr: np.ndarray, kind: str, path: Path) -> np.ndarray:
    """Reject arrays whose dtype is not real numeric (or bool)."""
    real = np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    if not (real or arr.dtype == np.bool_):
        raise _malformed(kind, path, f"array dtype {arr.dtype} is not real numeric")
    return arr


#: The first bytes of every .npy file (a zip archive, i.e. an .npz, starts with ``PK``).
_NPY_MAGIC = b"\x93NUMPY"


def _read_npy(path: Path, key: str | None) -> np.ndarray:
    """Read a ``.npy`` file (no pickles)."""
    with open(path, "rb") as fh:
        head = fh.read(len(_NPY_MAGIC))
    if head != _NPY_MAGIC and not head.startswith(b"PK"):  # np.load would call it "pickled data"
        raise _malformed("npy", path, f"a .npy file must start with the bytes {_NPY_MAGIC!r}, got {head!r}")
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as err:
        if "allow_pickle" in str(err):  # an object array: its elements are pickled Python objects
            raise _malformed(
                "npy",
                path,
                "holds an array of Python objects (dtype object), which is never unpickled; save a numeric array",
            ) from None
        raise _malformed("npy", path, err) from None
    except (OSError, EOFError) as err:
        raise _malformed("npy", path, err) from None
    if not isinstance(arr, np.ndarray):
        arr.close()
        raise _malformed("npy", path, "holds a zip archive of arrays; name it .npz")
    return _numeric_numpy(np.asarray(arr), "npy", path)


def _choose_key(names: list[str], key: str | None, what: str, path: Path) -> str:
    """The single name in ``names``, or ``key``; else a ValueError listing the names."""
    listed = ", ".join(repr(k) for k in names)
    if key is not None:
        if key not in names:
            raise ValueError(f"key {key!r} not found in {what} {str(path)!r}; keys: {listed}")
        return key
    if len(names) != 1:
        raise ValueError(
            f"{what} {str(path)!r} must hold exactly one array or name one with "
            f"'{path}:KEY', got {len(names)} arrays: {listed}"
        )
    return names[0]


def _read_npz(path: Path, key: str | None) -> np.ndarray:
    """Read one array of a ``.npz`` archive: the only one, or ``key``."""
    try:
        archive = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
        raise _malformed("npz", path, err) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise _malformed("npz", path, "not a zip archive of arrays (is it a .npy file?)")
    with archive:
        names = list(archive.files)
        if not names:
            raise _malformed("npz", path, "the archive holds no arrays")
        name = _choose_key(names, key, "npz archive", path)
        try:
            arr = archive[name]
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
            raise _malformed("npz", path, f"array {name!r}: {err}") from None
    return _numeric_numpy(np.asarray(arr), "npz", path)


def _parse_csv_field(field: str) -> float | None:
    """``float(field)`` or ``None`` if it is not a number."""
    try:
        return float(field)
    except ValueError:
        return None


def _csv_rows(path: Path) -> list[tuple[int, list[str]]]:
    """Non-blank lines of a text file as ``(line number, stripped fields)``."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        reason = f"not UTF-8 text ({err.reason} at byte {err.start})"
        raise _malformed("csv", path, reason) from None
    return [
        (i, [f.strip() for f in line.split(",")]) for i, line in enumerate(text.splitlines(), start=1) if line.strip()
    ]


def _read_csv(path: Path, key: str | None) -> np.ndarray:
    """Read comma separated numbers; a first row of non-numbers only is taken as a header."""
    rows = _csv_rows(path)
    if not rows:
        raise _malformed("csv", path, "no rows (only blank lines)")
    width = len(rows[0][1])
    if all(_parse_csv_field(f) is None for f in rows[0][1]):
        rows = rows[1:]  # header row
    values: list[list[float]] = []
    for line_no, fields in rows:
        if len(fields) != width:
            raise _malformed("csv", path, f"line {line_no} has {len(fields)} fields, expected {width}")
        parsed = [_parse_csv_field(f) for f in fields]
        for j, (f, v) in enumerate(zip(fields, parsed), start=1):
            if v is None:
                raise _malformed("csv", path, f"line {line_no} field {j} {f!r} is not a number")
        values.append(parsed)  # type: ignore[arg-type]
    return np.asarray(values, dtype=np.float64).reshape(len(values), width)


def _read_pt(path: Path, key: str | None) -> Tensor:
    """Read a tensor saved with ``torch.save``: the tensor, or one tensor of a saved dict."""
    try:
        obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types (pickle, zip, runtime) for bad files
        raise _malformed("pt", path, err) from None
    if isinstance(obj, Tensor):
        if key is not None:
            raise ValueError(f"key {key!r} given but {str(path)!r} holds a single tensor, not a dict")
        return obj
    if isinstance(obj, dict):
        tensors = {str(k): v for k, v in obj.items() if isinstance(v, Tensor)}
        if not tensors:
            raise _malformed("pt", path, "the dict holds no tensors")
        return tensors[_choose_key(list(tensors), key, "pt dict", path)]
    got = type(obj).__name__
    raise _malformed("pt", path, f"expected a tensor or a dict of tensors, got {got}")


_READERS: dict[str, Callable[[Path, str | None], np.ndarray | Tensor]] = {
    ".npy": _read_npy,
    ".npz": _read_npz,
    ".csv": _read_csv,
    ".pt": _read_pt,
    ".pth": _read_pt,
}


# --------------------------------------------------------------------------------------------
# Checks and the public loader
# --------------------------------------------------------------------------------------------


def _check_file(spec: FileSpec) -> None:
    """The file must exist, have a supported extension, be non-empty, and the key be allowed."""
    path = spec.path
    if not path.is_file():
        raise ValueError(f"data file must exist (as a regular file), got {str(path)!r}")
    ext = _suffix(path)
    if ext not in SUPPORTED_EXTENSIONS:
        raise ValueError(
            f"data file extension must be one of {', '.join(SUPPORTED_EXTENSIONS)}, "
            f"got {ext or '(none)'!r} for {str(path)!r}"
        )
    if spec.key is not None and ext not in KEYED_EXTENSIONS:
        raise ValueError(
            f"a key (path:KEY) is only allowed for {', '.join(KEYED_EXTENSIONS)} files, "
            f"got key {spec.key!r} for {str(path)!r}"
        )
    if path.stat().st_size == 0:
        raise ValueError(f"data file must not be empty, got an empty file {str(path)!r}")


def _to_matrix(raw: np.ndarray | Tensor, path: Path) -> Tensor:
    """Convert to float32 ``(N, D)``, checking dtype, 2-D shape, ``N >= 1``, ``D >= 1``, finite."""
    x = torch.from_numpy(np.ascontiguousarray(raw)) if isinstance(raw, np.ndarray) else raw
    if x.is_complex():
        raise _malformed(_suffix(path).lstrip("."), path, f"dtype {x.dtype} is not real numeric")
    shape = tuple(x.shape)
    if x.ndim == 1:
        raise ValueError(
            f"data array in {str(path)!r} must be 2-D (N, D), got 1-D shape {shape}; "
            f"reshape it to ({shape[0]}, 1) for one feature or (1, {shape[0]}) for one point"
        )
    if x.ndim != 2:
        raise ValueError(f"data array in {str(path)!r} must be 2-D (N, D), got shape {shape}")
    if shape[0] < 1 or shape[1] < 1:
        raise ValueError(f"data array in {str(path)!r} must have N >= 1 rows and D >= 1 columns, got shape {shape}")
    x = x.detach().to(device="cpu", dtype=torch.float32).contiguous()
    return check_finite(f"data in {str(path)!r}", x)


def load_array(path: str | os.PathLike[str]) -> Tensor:
    """Load a data set from a file as a float32 CPU tensor of shape ``(N, D)``.

    ``path`` is a ``.npy``, ``.npz``, ``.csv``, ``.pt`` or ``.pth`` file; for ``.npz``, ``.pt``
    and ``.pth`` a key may be chosen as ``"file.npz:key"`` (needed when the file holds several
    arrays). A CSV is comma separated numbers, one point per line, with an optional single header
    row of non-numbers (detected automatically).
    Raises ``ValueError`` when the file is missing, has an unsupported extension, is empty,
    cannot be parsed (``"malformed <kind> file <path>: <reason>"``), is not 2-D, has no rows, or
    holds NaN/Inf.
    """
    spec = parse_file_spec(path)
    _check_file(spec)
    raw = _READERS[_suffix(spec.path)](spec.path, spec.key)
    return _to_matrix(raw, spec.path)
