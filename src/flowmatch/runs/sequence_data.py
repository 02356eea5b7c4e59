"""The data of a sequence run: the built-in eSpeak NG speech corpus (``--target speech``,
:mod:`flowmatch.data.speech`) or a folder of ``.npz`` utterances (:mod:`flowmatch.data.sequence_files`),
split into train and test sets of :class:`~flowmatch.data.sequences.SequenceSet` and normalised.

Normalisation (Matcha-TTS): x = (mel - mean) / std with one scalar mean and std over every valid
element of the training set, so the flow starts from N(0, I) on a unit scale; :meth:`SequenceRunData.denormalize`
undoes it for metrics, pictures and audio. The speech corpus is split by sentence (a test
sentence is never heard in training, in any voice); a folder by utterance, from the run's seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from torch import Tensor

from flowmatch.data.sequence_files import SPEECH, load_sequence_folder
from flowmatch.data.sequences import SequenceSet
from flowmatch.runs.config import RunConfig

__all__ = ["SequenceRunData", "build_sequence_data", "SPEECH_SEED_OFFSET", "REGRESSION"]

#: The method name of the regression baseline (the same backbone, L2 on the target).
REGRESSION = "regression"

#: The corpus of a run is synthesised from seed + this offset (a folder's split likewise).
SPEECH_SEED_OFFSET = 0


@dataclass
class SequenceRunData:
    """Train and test utterances of a sequence run, normalised, and what the model needs to know.

    ``num_tokens`` is the size of the token vocabulary (0: no tokens), ``num_speakers`` the number
    of speakers (0: none), ``corpus`` the speech corpus (None for a folder), ``speakers`` the
    speakers' names.
    """

    train: SequenceSet
    test: SequenceSet
    mean: float
    std: float
    channels: int
    num_tokens: int = 0
    num_speakers: int = 0
    feature_dim: int = 0
    corpus: Any = None
    speakers: tuple[str, ...] = ()

    # what the generic run code reads of every kind's data
    @property
    def dim(self) -> int:
        return self.channels

    shape = None
    num_classes = 0
    is_image = False

    def normalize(self, mel: Tensor) -> Tensor:
        return (mel - self.mean) / self.std

    def denormalize(self, x: Tensor) -> Tensor:
        return x * self.std + self.mean

    def summary(self) -> dict[str, Any]:
        lengths = torch.cat([self.train.lengths, self.test.lengths]).double()
        return {
            "utterances": {"train": len(self.train), "test": len(self.test)},
            "frames": {"mean": float(lengths.mean()), "min": int(lengths.min()), "max": int(lengths.max())},
            "channels": self.channels,
            "speakers": self.num_speakers,
            "tokens": self.num_tokens,
            "normalization": {"mean": self.mean, "std": self.std},
        }


def _stats(mels: list[np.ndarray]) -> tuple[float, float]:
    """Mean and standard deviation over every element of the utterances (float64)."""
    total = sum(m.size for m in mels)
    mean = sum(float(m.sum(dtype=np.float64)) for m in mels) / total
    var = sum(float(((m.astype(np.float64) - mean) ** 2).sum()) for m in mels) / total
    return mean, max(var, 1e-12) ** 0.5


def _speech(cfg: RunConfig) -> SequenceRunData:
    from flowmatch.data.speech import build_speech_corpus

    corpus = build_speech_corpus(cfg.speech_sentences, cfg.speech_speakers, seed=cfg.seed + SPEECH_SEED_OFFSET)
    train_idx, test_idx = corpus.train_indices(), corpus.test_indices()
    mean, std = _stats([corpus.mels[i] for i in train_idx])
    text = cfg.cond == "text"

    def subset(idx: np.ndarray) -> SequenceSet:
        return SequenceSet(
            [(corpus.mels[i] - mean) / std for i in idx],
            tokens=[corpus.phonemes[i] for i in idx] if text else None,
            speaker=corpus.speaker[idx] if text else None,
            names=[f"utterance {i} ({corpus.text(i)!r})" for i in idx],
        )

    return SequenceRunData(
        subset(train_idx),
        subset(test_idx),
        mean,
        std,
        corpus.n_mels,
        num_tokens=len(corpus.vocab) if text else 0,
        num_speakers=len(corpus.speakers) if text else 0,
        corpus=corpus,
        speakers=tuple(s.voice for s in corpus.speakers),
    )


def _folder(cfg: RunConfig) -> SequenceRunData:
    full = load_sequence_folder(cfg.target)
    n = len(full)
    n_test = min(cfg.n_test, n // 5)
    if n_test < 1:
        raise ValueError(f"a folder of sequences needs at least 5 utterances to hold one out for testing, got {n}")
    g = torch.Generator().manual_seed(cfg.seed + SPEECH_SEED_OFFSET)
    order = torch.randperm(n, generator=g)
    test_idx, train_idx = order[:n_test].sort().values, order[n_test:].sort().values
    train = full.subset(train_idx)
    mean, std = _stats([train[i].x.numpy() for i in range(len(train))])
    text = cfg.cond == "text"

    fields = set(full.fields) if text else set()
    if text and not fields & {"tokens", "features", "speaker"}:
        raise ValueError(
            f"cond 'text' needs tokens, features or a speaker in the .npz files of {cfg.target!r}, got none"
        )

    def subset(idx: Tensor) -> SequenceSet:
        part = full.subset(idx)
        utts = [part[i] for i in range(len(part))]
        return SequenceSet(
            [(u.x - mean) / std for u in utts],
            tokens=[cast(Tensor, u.tokens) for u in utts] if "tokens" in fields else None,
            features=[cast(Tensor, u.features) for u in utts] if "features" in fields else None,
            speaker=[cast(int, u.speaker) for u in utts] if "speaker" in fields else None,
        )

    utts = [full[i] for i in range(n)]
    tokens = max(int(cast(Tensor, u.tokens).max()) for u in utts) + 1 if "tokens" in fields else 0
    speakers = max(cast(int, u.speaker) for u in utts) + 1 if "speaker" in fields else 0
    return SequenceRunData(
        subset(train_idx),
        subset(test_idx),
        mean,
        std,
        full.channels,
        num_tokens=tokens,
        num_speakers=speakers,
        feature_dim=(full.feature_dim or 0) if text else 0,
        speakers=tuple(str(k) for k in range(speakers)),
    )


def build_sequence_data(cfg: RunConfig) -> SequenceRunData:
    """The run's sequence data, deterministic in ``cfg.seed`` (the corpus is cached)."""
    return _speech(cfg) if cfg.target == SPEECH else _folder(cfg)
