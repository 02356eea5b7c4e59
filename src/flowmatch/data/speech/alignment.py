"""Phoneme vocabulary and frame-level alignment from eSpeak's phoneme events.

Vocabulary: id 0 is padding (``<pad>``, never inside an utterance), 1 silence (``<sil>``: every
eSpeak pause ``_``, ``_:``, ``_!``... and the frames outside the phonemes), then the sorted
eSpeak names of the corpus's phonemes, and last ``<unk>`` for a phoneme of new text that the
corpus never spoke.

Alignment: phoneme j sounds on samples [s_j, s_{j+1}) (s_j its start sample, the last one up to
the end of the audio); frame f (centre c_f = f hop + hop / 2, :func:`frame_centres`) takes

    token[f] = id(phoneme j)  with j = max{j : s_j <= c_f},   or <sil> when c_f < s_0,

so every frame gets exactly one id, the ids follow the order of eSpeak's events, and a phoneme
shorter than a hop may get no frame. This is the "durations from eSpeak" of the corpus: the
number of frames of each phoneme is a duration target for a text-to-speech model.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from flowmatch.data.speech.mel import frame_centres

__all__ = ["PAD", "SILENCE", "PAD_ID", "SILENCE_ID", "UNKNOWN", "is_pause", "PhonemeVocabulary", "frame_phonemes"]

PAD, SILENCE, UNKNOWN = "<pad>", "<sil>", "<unk>"
PAD_ID, SILENCE_ID = 0, 1


def is_pause(name: str) -> bool:
    """Whether an eSpeak phoneme name is a pause (``_`` and its lengths)."""
    return name.startswith("_")


@dataclass(frozen=True)
class PhonemeVocabulary:
    """Names by id: ``(<pad>, <sil>, *sorted phonemes, <unk>)``."""

    names: tuple[str, ...]

    @classmethod
    def from_phonemes(cls, names: Iterable[str]) -> PhonemeVocabulary:
        """The vocabulary of the non-pause phoneme names in ``names``."""
        return cls((PAD, SILENCE, *sorted({n for n in names if not is_pause(n)}), UNKNOWN))

    def __post_init__(self) -> None:
        n = self.names
        if len(n) < 3 or n[0] != PAD or n[1] != SILENCE or n[-1] != UNKNOWN or len(set(n)) != len(n):
            raise ValueError(f"a phoneme vocabulary must be (<pad>, <sil>, ..., <unk>) without repeats, got {n!r}")

    def __len__(self) -> int:
        return len(self.names)

    @property
    def unknown_id(self) -> int:
        """The id of ``<unk>`` (the last)."""
        return len(self.names) - 1

    def id(self, name: str) -> int:
        """The id of one eSpeak phoneme name: silence for a pause, ``<unk>`` if not in the vocabulary."""
        if is_pause(name):
            return SILENCE_ID
        return self.index().get(name, self.unknown_id)

    def index(self) -> dict[str, int]:
        """``{name: id}``."""
        return {n: i for i, n in enumerate(self.names)}

    def encode(self, names: Sequence[str]) -> np.ndarray:
        """``(len(names),)`` int64 ids."""
        table = self.index()
        unk = self.unknown_id
        return np.array([SILENCE_ID if is_pause(n) else table.get(n, unk) for n in names], dtype=np.int64)


def frame_phonemes(phonemes: Sequence[tuple[str, int]], n_frames: int, vocab: PhonemeVocabulary) -> np.ndarray:
    """``(n_frames,)`` int64 phoneme id of every frame (see the module docstring)."""
    if not phonemes:
        return np.full(n_frames, SILENCE_ID, dtype=np.int64)
    starts = np.array([s for _, s in phonemes], dtype=np.int64)
    if np.any(np.diff(starts) < 0):
        raise ValueError(f"phoneme start samples must be non-decreasing (eSpeak's event order), got {starts.tolist()}")
    ids = vocab.encode([n for n, _ in phonemes])
    j = np.searchsorted(starts, frame_centres(n_frames), side="right") - 1
    return np.where(j >= 0, ids[np.maximum(j, 0)], SILENCE_ID).astype(np.int64)
