"""The built-in speech corpus: sentences of :mod:`~flowmatch.data.speech.text` spoken by eSpeak NG
voices, as Matcha-TTS log-mels with frame-level phoneme ids, split by sentence.

``build_speech_corpus(n_sentences, speakers, seed)`` draws ``n_sentences`` distinct sentences;
every speaker speaks every sentence (utterance ``i = sentence * n_speakers + speaker``), with its
rate scaled by ``1 + jitter u`` and its pitch shifted by ``round(40 jitter v)`` (u, v uniform on
[-1, 1]). Each utterance is a log-mel ``(80, T)`` float32 (:func:`~flowmatch.data.speech.mel.log_mel`)
and its phoneme ids ``(T,)`` int64 (:func:`~flowmatch.data.speech.alignment.frame_phonemes`).
A fraction ``test_fraction`` of the sentences (``max(1, round(test_fraction n_sentences))``) is
held out with all its utterances, so the test split holds unseen text in every voice.

Randomness: ``numpy.random.SeedSequence(seed).spawn(3)`` gives the streams of the sentences, the
jitter and the split; eSpeak runs in a fresh process (:func:`~flowmatch.data.speech.espeak.synthesize_isolated`),
so two builds with the same settings are bit-identical. The corpus is cached as one ``.npz``
under ``cache_dir() / "speech"`` (:mod:`~flowmatch.data.speech.store`), keyed by a hash of
every setting and :data:`~flowmatch.data.speech.store.FORMAT_VERSION`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flowmatch._utils.validate import check_nonnegative_int, check_positive_int
from flowmatch.data.speech.alignment import PhonemeVocabulary, frame_phonemes
from flowmatch.data.speech.espeak import synthesize_isolated
from flowmatch.data.speech.mel import HOP, N_MELS, SAMPLE_RATE, log_mel
from flowmatch.data.speech.text import generate_sentences
from flowmatch.data.speech.voices import SpeakerVoice, jittered, resolve_speakers

__all__ = ["SpeechCorpusConfig", "SpeechCorpus", "synthesize_corpus"]


@dataclass(frozen=True)
class SpeechCorpusConfig:
    """Every setting of a corpus (its cache key): ``n_sentences`` distinct sentences spoken by
    each of ``speakers``, per-utterance rate/pitch ``jitter`` (0..0.5), ``test_fraction`` of the
    sentences held out, all drawn from ``seed``."""

    n_sentences: int = 200
    speakers: tuple[SpeakerVoice, ...] = field(default_factory=lambda: resolve_speakers(4))
    seed: int = 0
    test_fraction: float = 0.125
    jitter: float = 0.05

    def __post_init__(self) -> None:
        n = check_positive_int("n_sentences", self.n_sentences)
        if n < 2:
            raise ValueError(f"n_sentences must be >= 2 (one sentence at least on each side of the split), got {n}")
        object.__setattr__(self, "n_sentences", n)
        object.__setattr__(self, "speakers", resolve_speakers(self.speakers))
        object.__setattr__(self, "seed", check_nonnegative_int("seed", self.seed))
        tf = self.test_fraction
        if isinstance(tf, bool) or not isinstance(tf, (int, float)) or not 0.0 < float(tf) < 1.0:
            raise ValueError(f"test_fraction must be a number in (0, 1), got {tf!r}")
        object.__setattr__(self, "test_fraction", float(tf))
        jit = self.jitter
        if isinstance(jit, bool) or not isinstance(jit, (int, float)) or not 0.0 <= float(jit) <= 0.5:
            raise ValueError(f"jitter must be a number in [0, 0.5], got {jit!r}")
        object.__setattr__(self, "jitter", float(jit))
        if self.n_test >= n:
            raise ValueError(f"test_fraction={tf!r} of {n} sentences leaves no training sentence")

    @property
    def n_test(self) -> int:
        """Held-out sentences: ``max(1, round(test_fraction * n_sentences))``."""
        return max(1, round(self.test_fraction * self.n_sentences))

    def as_dict(self) -> dict[str, Any]:
        """The settings as JSON-able values (speakers as dicts)."""
        return {
            "n_sentences": self.n_sentences,
            "speakers": [s.__dict__ for s in self.speakers],
            "seed": self.seed,
            "test_fraction": self.test_fraction,
            "jitter": self.jitter,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SpeechCorpusConfig:
        """Inverse of :meth:`as_dict`."""
        return cls(
            n_sentences=d["n_sentences"],
            speakers=tuple(SpeakerVoice(**s) for s in d["speakers"]),
            seed=d["seed"],
            test_fraction=d["test_fraction"],
            jitter=d["jitter"],
        )


@dataclass(frozen=True, eq=False)
class SpeechCorpus:
    """A synthesised corpus. Utterance i: ``mels[i]`` ``(80, T_i)`` float32 log-mel,
    ``phonemes[i]`` ``(T_i,)`` int64 ids of ``vocab``, ``speaker[i]``, ``sentence[i]`` (an index
    into ``sentences``, the texts); ``test_sentences`` are the held-out sentence ids (sorted)."""

    config: SpeechCorpusConfig
    vocab: PhonemeVocabulary
    mels: tuple[np.ndarray, ...]
    phonemes: tuple[np.ndarray, ...]
    speaker: np.ndarray
    sentence: np.ndarray
    sentences: tuple[str, ...]
    test_sentences: tuple[int, ...]

    sample_rate: int = SAMPLE_RATE
    hop: int = HOP
    n_mels: int = N_MELS

    def __len__(self) -> int:
        return len(self.mels)

    @property
    def speakers(self) -> tuple[SpeakerVoice, ...]:
        """The speakers, by speaker id."""
        return self.config.speakers

    @property
    def lengths(self) -> np.ndarray:
        """``(N,)`` int64 frames per utterance."""
        return np.array([m.shape[1] for m in self.mels], dtype=np.int64)

    def text(self, i: int) -> str:
        """The text of utterance ``i``."""
        return self.sentences[int(self.sentence[i])]

    def is_test(self) -> np.ndarray:
        """``(N,)`` bool: whether utterance i's sentence is held out."""
        return np.isin(self.sentence, np.array(self.test_sentences, dtype=np.int64))

    def train_indices(self) -> np.ndarray:
        """Utterances of the training sentences, ascending."""
        return np.flatnonzero(~self.is_test())

    def test_indices(self) -> np.ndarray:
        """Utterances of the held-out sentences, ascending."""
        return np.flatnonzero(self.is_test())

    def stats(self) -> dict[str, float]:
        """Utterances, sentences, speakers, phoneme ids, frames (total, mean, min, max), hours."""
        n = self.lengths
        return {
            "utterances": len(self),
            "sentences": len(self.sentences),
            "speakers": len(self.speakers),
            "vocab": len(self.vocab),
            "frames": int(n.sum()),
            "mean_frames": float(n.mean()),
            "min_frames": int(n.min()),
            "max_frames": int(n.max()),
            "mean_seconds": float(n.mean() * self.hop / self.sample_rate),
            "hours": float(n.sum() * self.hop / self.sample_rate / 3600),
        }


def synthesize_corpus(config: SpeechCorpusConfig) -> SpeechCorpus:
    """Build the corpus of ``config`` from scratch (no cache; see :func:`build_speech_corpus`)."""
    if not isinstance(config, SpeechCorpusConfig):
        raise TypeError(f"config must be a SpeechCorpusConfig, got {type(config).__name__}")
    text_seq, jitter_seq, split_seq = np.random.SeedSequence(config.seed).spawn(3)
    sentences = generate_sentences(config.n_sentences, np.random.default_rng(text_seq))
    jitter_rng = np.random.default_rng(jitter_seq)
    requests, speaker, sentence = [], [], []
    for s, text in enumerate(sentences):
        for k, voice in enumerate(config.speakers):
            requests.append(jittered(voice, text, jitter_rng, jitter=config.jitter))
            speaker.append(k)
            sentence.append(s)
    spoken = synthesize_isolated(requests)
    vocab = PhonemeVocabulary.from_phonemes(name for sp in spoken for name, _ in sp.phonemes)
    mels, tokens = [], []
    for sp in spoken:
        mel = log_mel(sp.audio).numpy().astype(np.float32)
        mels.append(mel)
        tokens.append(frame_phonemes(sp.phonemes, mel.shape[1], vocab))
    test = np.sort(np.random.default_rng(split_seq).permutation(config.n_sentences)[: config.n_test])
    return SpeechCorpus(
        config=config,
        vocab=vocab,
        mels=tuple(mels),
        phonemes=tuple(tokens),
        speaker=np.array(speaker, dtype=np.int64),
        sentence=np.array(sentence, dtype=np.int64),
        sentences=tuple(sentences),
        test_sentences=tuple(int(i) for i in test),
    )
