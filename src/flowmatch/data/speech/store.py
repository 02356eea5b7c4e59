"""The corpus cache: one ``.npz`` per setting under ``cache_dir() / "speech"``.

The file is ``corpus-<key>.npz`` with ``key`` the first 16 hex digits of the SHA-256 of the JSON
of every setting (:meth:`SpeechCorpusConfig.as_dict`), :data:`FORMAT_VERSION`, the mel settings
and the eSpeak NG package version, so a change of any of them builds a new file. It holds the
log-mels concatenated along time ``(80, sum T_i)`` with the utterance offsets ``(N + 1,)``, the
phoneme ids likewise, and the rest as plain arrays (strings as unicode arrays: loading needs no
pickle). Writes are atomic (a temporary file in the same directory, then ``os.replace``); a file
that cannot be read or is of another version or key is rebuilt.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from flowmatch._utils.cache import cache_dir
from flowmatch._utils.io import atomic_write
from flowmatch.data.speech import mel as melspec
from flowmatch.data.speech.alignment import PhonemeVocabulary
from flowmatch.data.speech.corpus import SpeechCorpus, SpeechCorpusConfig, synthesize_corpus

__all__ = ["FORMAT_VERSION", "corpus_key", "corpus_path", "save_corpus", "load_corpus", "build_speech_corpus"]

#: bumped whenever the corpus's content for the same settings changes
FORMAT_VERSION = 2


def engine_version() -> str:
    """The installed espeakng-loader version (part of the key: another eSpeak may speak differently)."""
    try:
        return metadata.version("espeakng-loader")
    except metadata.PackageNotFoundError:
        return "unknown"


def corpus_key(config: SpeechCorpusConfig) -> str:
    """16 hex digits naming the corpus of ``config`` (see the module docstring)."""
    mel = {k: getattr(melspec, k) for k in ("SAMPLE_RATE", "N_FFT", "WIN", "HOP", "N_MELS", "FMIN", "FMAX")}
    blob = {"format": FORMAT_VERSION, "config": config.as_dict(), "mel": mel, "espeak": engine_version()}
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]


def corpus_path(config: SpeechCorpusConfig) -> Path:
    """Where the corpus of ``config`` is cached."""
    return cache_dir() / "speech" / f"corpus-{corpus_key(config)}.npz"


def save_corpus(corpus: SpeechCorpus, path: str | os.PathLike[str]) -> Path:
    """Write ``corpus`` to ``path`` (``.npz``) atomically."""
    path = Path(path)
    offsets = np.concatenate([[0], np.cumsum(corpus.lengths)]).astype(np.int64)
    arrays: dict[str, Any] = {
        "format": np.array(FORMAT_VERSION, dtype=np.int64),
        "key": np.array(corpus_key(corpus.config)),
        "config": np.array(json.dumps(corpus.config.as_dict(), sort_keys=True)),
        "vocab": np.array(corpus.vocab.names),
        "mel": np.concatenate(corpus.mels, axis=1).astype(np.float32),
        "phonemes": np.concatenate(corpus.phonemes).astype(np.int64),
        "offsets": offsets,
        "speaker": corpus.speaker.astype(np.int64),
        "sentence": corpus.sentence.astype(np.int64),
        "sentences": np.array(corpus.sentences),
        "test_sentences": np.array(corpus.test_sentences, dtype=np.int64),
    }
    return atomic_write(path, lambda f: np.savez(f, **arrays))


def load_corpus(path: str | os.PathLike[str]) -> SpeechCorpus:
    """The corpus saved at ``path``; ValueError naming the file if it is not one of this version."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if int(z["format"]) != FORMAT_VERSION:
                raise ValueError(f"format {int(z['format'])}, expected {FORMAT_VERSION}")
            config = SpeechCorpusConfig.from_dict(json.loads(str(z["config"])))
            if str(z["key"]) != corpus_key(config):
                raise ValueError("its key does not match its settings")
            mel, tokens, off = z["mel"], z["phonemes"], z["offsets"]
            n = len(off) - 1
            return SpeechCorpus(
                config=config,
                vocab=PhonemeVocabulary(tuple(str(s) for s in z["vocab"])),
                mels=tuple(np.ascontiguousarray(mel[:, off[i] : off[i + 1]]) for i in range(n)),
                phonemes=tuple(np.ascontiguousarray(tokens[off[i] : off[i + 1]]) for i in range(n)),
                speaker=z["speaker"].astype(np.int64),
                sentence=z["sentence"].astype(np.int64),
                sentences=tuple(str(s) for s in z["sentences"]),
                test_sentences=tuple(int(i) for i in z["test_sentences"]),
            )
    except (OSError, KeyError, ValueError, TypeError, zipfile.BadZipFile, json.JSONDecodeError) as e:
        reason = " ".join(str(e).split()) or type(e).__name__
        raise ValueError(f"{str(path)!r} is not a flowmatch speech corpus: {reason}") from None


def build_speech_corpus(
    n_sentences: int = 200,
    speakers: Any = 4,
    *,
    seed: int = 0,
    test_fraction: float = 0.125,
    jitter: float = 0.05,
    cache: bool = True,
) -> SpeechCorpus:
    """The speech corpus of these settings (see :mod:`flowmatch.data.speech.corpus`): loaded from
    the cache when there, else synthesised and (``cache=True``) saved. ``speakers``: a count of
    :data:`~flowmatch.data.speech.voices.VOICE_PRESETS` or a list of voices."""
    config = SpeechCorpusConfig(
        n_sentences=n_sentences, speakers=speakers, seed=seed, test_fraction=test_fraction, jitter=jitter
    )
    path = corpus_path(config)
    if cache and path.is_file():
        with contextlib.suppress(ValueError):  # unreadable or stale: rebuilt below
            return load_corpus(path)
    corpus = synthesize_corpus(config)
    if cache:
        save_corpus(corpus, path)
    return corpus
