"""One utterance of any text in a corpus's voice, and a log-mel back to a WAV file.

:func:`synthesize_utterance` speaks ``text`` as speaker ``k`` of a corpus, with that speaker's
pitch, rate and range and no jitter, in a fresh eSpeak process (so the same call always gives the
same bits), and returns the reference log-mel and the frame-level phoneme ids in the corpus's
vocabulary (a phoneme the corpus never spoke maps to ``<unk>``). The ids are the conditioning of
``flowmatch sample --text ... --speaker K``: their run lengths are eSpeak's phoneme durations.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flowmatch.data.speech.alignment import frame_phonemes
from flowmatch.data.speech.corpus import SpeechCorpus
from flowmatch.data.speech.espeak import synthesize_isolated
from flowmatch.data.speech.griffinlim import mel_to_audio
from flowmatch.data.speech.mel import SAMPLE_RATE, log_mel
from flowmatch.data.speech.wav import write_wav

__all__ = ["Utterance", "synthesize_utterance", "write_mel_wav"]


@dataclass(frozen=True, eq=False)
class Utterance:
    """A spoken text: ``mel`` ``(80, T)`` float32, ``phonemes`` ``(T,)`` int64 ids, the eSpeak
    ``audio`` ``(N,)`` int16, and eSpeak's ``(name, start sample)`` events."""

    text: str
    speaker: int
    mel: np.ndarray
    phonemes: np.ndarray
    audio: np.ndarray
    events: tuple[tuple[str, int], ...]


def check_speaker(corpus: SpeechCorpus, speaker: Any) -> int:
    """``speaker`` as a speaker id of ``corpus``, else a one-line ValueError."""
    n = len(corpus.speakers)
    if isinstance(speaker, bool) or not isinstance(speaker, (int, np.integer)) or not 0 <= int(speaker) < n:
        raise ValueError(f"speaker must be an integer in [0, {n - 1}] (the corpus has {n} speakers), got {speaker!r}")
    return int(speaker)


def synthesize_utterance(corpus: SpeechCorpus, text: str, speaker: int) -> Utterance:
    """``text`` spoken by speaker ``speaker`` of ``corpus`` (see the module docstring)."""
    if not isinstance(corpus, SpeechCorpus):
        raise TypeError(f"corpus must be a SpeechCorpus, got {type(corpus).__name__}")
    k = check_speaker(corpus, speaker)
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"the text to speak must be a non-empty string, got {text!r}")
    (spoken,) = synthesize_isolated([corpus.speakers[k].request(text)])
    if len(spoken.audio) < corpus.hop:
        raise ValueError(f"eSpeak produced no speech for the text {text!r}")
    mel = log_mel(spoken.audio).numpy().astype(np.float32)
    tokens = frame_phonemes(spoken.phonemes, mel.shape[1], corpus.vocab)
    return Utterance(text, k, mel, tokens, spoken.audio, spoken.phonemes)


def write_mel_wav(
    path: str | os.PathLike[str], mel: Any, *, n_iter: int = 64, momentum: float = 0.99, seed: int = 0
) -> Path:
    """Write the ``(80, T)`` log-mel ``mel`` as a 22050 Hz WAV through Griffin-Lim; returns the path."""
    return write_wav(path, mel_to_audio(mel, n_iter=n_iter, momentum=momentum, seed=seed), SAMPLE_RATE)
