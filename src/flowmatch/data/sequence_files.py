"""A user's own sequence features on disk: a folder of ``.npz`` files, one per utterance.

Each file holds the arrays (no pickles, no other names):

- ``x``: the utterance, shape ``(C, T)`` (channels first, the layout of a mel spectrogram in
  Matcha-TTS), or ``(T, C)`` when loaded with ``layout="TC"``; any real dtype, stored float32;
- ``tokens`` (optional): ``(T,)`` integers >= 1, one symbol per frame (0 is the padding id);
- ``features`` (optional): ``(F, T)`` (``(T, F)`` with ``layout="TC"``), frame-aligned floats;
- ``speaker`` (optional): a scalar integer >= 0 (a 0-d array, as ``np.savez(..., speaker=3)``
  writes it).

Every file must hold the same optional fields, and the same C (and F). The layout is never
guessed from the shapes: a ``(T, C)`` file read as ``"CT"`` is C utterance frames of T channels,
and fails the same-C rule as soon as two files differ in length. Files are read in the order of
their names (Python string order), so a folder always loads to the same set. Every broken rule
raises a one-line ``ValueError`` naming the file and the rule.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from flowmatch.data.sequences import SequenceSet

__all__ = ["load_sequence_folder", "save_sequence_folder", "is_sequence_spec", "SEQUENCE_FIELDS", "LAYOUTS", "SPEECH"]

#: The name of the built-in speech corpus as a run's target (:mod:`flowmatch.data.speech`).
SPEECH = "speech"


def is_sequence_spec(spec: str) -> bool:
    """Whether a target names sequence data: the built-in ``speech`` corpus, or a folder holding
    ``.npz`` utterances (a folder of images is image data)."""
    if spec == SPEECH:
        return True
    p = Path(spec)
    return p.is_dir() and any(p.glob("*.npz"))


#: The arrays a sequence file may hold; ``x`` is required.
SEQUENCE_FIELDS: tuple[str, ...] = ("x", "tokens", "features", "speaker")

#: The layouts of ``x`` and ``features`` in a file: channels first (``"CT"``) or time first (``"TC"``).
LAYOUTS: tuple[str, ...] = ("CT", "TC")


def _read(path: Path, layout: str) -> dict[str, np.ndarray]:
    """The arrays of one ``.npz`` file, every field rule of a single file checked."""
    try:
        archive = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
        raise ValueError(f"malformed npz file {str(path)!r}: {' '.join(str(err).split())}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"sequence file {str(path)!r} must be an .npz archive of arrays, got a single .npy array")
    with archive:
        unknown = [k for k in archive.files if k not in SEQUENCE_FIELDS]
        if unknown:
            raise ValueError(
                f"sequence file {str(path)!r} may hold only the arrays {', '.join(SEQUENCE_FIELDS)}, "
                f"got {', '.join(repr(k) for k in unknown)}"
            )
        if "x" not in archive.files:
            raise ValueError(f"sequence file {str(path)!r} must hold an array 'x' (C, T), got {list(archive.files)}")
        try:
            arrays = {k: np.asarray(archive[k]) for k in archive.files}
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
            raise ValueError(f"malformed npz file {str(path)!r}: {' '.join(str(err).split())}") from None
    for name, arr in arrays.items():
        if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
            raise ValueError(f"sequence file {str(path)!r}: {name} must hold real numbers, got dtype {arr.dtype}")
    dims = {"x": 2, "tokens": 1, "features": 2, "speaker": 0}
    shapes = {"x": "(C, T)", "tokens": "(T,)", "features": "(F, T)", "speaker": "() (a scalar)"}
    if layout == "TC":
        shapes.update(x="(T, C) (layout 'TC')", features="(T, F) (layout 'TC')")
    for name, arr in arrays.items():
        if arr.ndim != dims[name]:
            raise ValueError(f"sequence file {str(path)!r}: {name} must have shape {shapes[name]}, got {arr.shape}")
    for name in ("tokens", "speaker"):
        if name in arrays and not np.issubdtype(arrays[name].dtype, np.integer):
            raise ValueError(f"sequence file {str(path)!r}: {name} must be integers, got dtype {arrays[name].dtype}")
    return arrays


def load_sequence_folder(path: str | os.PathLike[str], *, layout: str = "CT") -> SequenceSet:
    """The utterances of the ``.npz`` files in folder ``path`` (see the module docstring).

    ``layout`` is ``"CT"`` (default: ``x`` ``(C, T)``, ``features`` ``(F, T)``) or ``"TC"``
    (``x`` ``(T, C)``, ``features`` ``(T, F)``, transposed on loading). Only files ending in
    ``.npz`` are read (other files, e.g. a README, are ignored), sorted by name. The set's
    ``names`` are the files' paths.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"sequence folder must be an existing directory, got {str(folder)!r}")
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() == ".npz" and p.is_file()), key=lambda p: p.name)
    if not files:
        raise ValueError(f"sequence folder {str(folder)!r} must hold at least one .npz file, got none")
    columns: dict[str, list[np.ndarray]] = {name: [] for name in SEQUENCE_FIELDS}
    first: set[str] | None = None
    for file in files:
        arrays = _read(file, layout)
        present = set(arrays)
        if first is None:
            first = present
        elif present != first:
            raise ValueError(
                f"sequence file {str(file)!r} holds the arrays {sorted(present)} but {str(files[0])!r} holds "
                f"{sorted(first)}; every file must hold the same ones"
            )
        for name, arr in arrays.items():
            columns[name].append(arr.T if layout == "TC" and name in ("x", "features") else arr)
    if first is None:  # the folder was checked to hold .npz files; kept for a folder emptied meanwhile
        raise ValueError(f"a folder of sequences needs .npz files, found none in {str(folder)!r}")
    return SequenceSet(
        columns["x"],
        tokens=columns["tokens"] if "tokens" in first else None,
        features=columns["features"] if "features" in first else None,
        speaker=[int(s) for s in columns["speaker"]] if "speaker" in first else None,
        names=[str(f) for f in files],
    )


def save_sequence_folder(sequences: SequenceSet, path: str | os.PathLike[str]) -> list[Path]:
    """Write every utterance of ``sequences`` as ``path/<index>.npz`` (``x`` ``(C, T)`` float32,
    and the fields present), the index zero-padded to six digits or more so that
    :func:`load_sequence_folder` reads them back in the same order, value for value.

    The folder is created if needed and must not already hold ``.npz`` files (they would be read
    back with the saved ones). Returns the files written.
    """
    if not isinstance(sequences, SequenceSet):
        raise TypeError(f"sequences must be a SequenceSet, got {type(sequences).__name__}")
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"sequence folder must be a directory, got the file {str(folder)!r}")
    folder.mkdir(parents=True, exist_ok=True)
    existing = sorted(p.name for p in folder.iterdir() if p.suffix.lower() == ".npz")
    if existing:
        raise ValueError(
            f"sequence folder {str(folder)!r} must not already hold .npz files (they would load with the saved "
            f"ones), got {len(existing)} such as {existing[0]!r}"
        )
    width = max(6, len(str(len(sequences) - 1)))
    written = []
    for i in range(len(sequences)):
        utt = sequences[i]
        arrays = {"x": utt.x.cpu().numpy()}
        if utt.tokens is not None:
            arrays["tokens"] = utt.tokens.cpu().numpy()
        if utt.features is not None:
            arrays["features"] = utt.features.cpu().numpy()
        if utt.speaker is not None:
            arrays["speaker"] = np.asarray(utt.speaker, dtype=np.int64)
        file = folder / f"{i:0{width}d}.npz"
        np.savez(file, **arrays)  # type: ignore[arg-type]
        written.append(file)
    return written
