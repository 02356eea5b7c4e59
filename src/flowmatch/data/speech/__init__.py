"""A built-in speech corpus, synthesised offline with eSpeak NG (issue 17).

Short English sentences of a small grammar (:mod:`.text`) spoken by several eSpeak voices
(:mod:`.voices`, :mod:`.espeak`), as Matcha-TTS log-mel spectrograms (:mod:`.mel`) with
frame-level phoneme ids from eSpeak's phoneme events (:mod:`.alignment`), split by sentence and
cached (:mod:`.corpus`, :mod:`.store`); any text in a corpus voice (:mod:`.utterance`), and
log-mels back to audio by Griffin-Lim (:mod:`.griffinlim`, :mod:`.wav`). Needs the ``speech``
extra (``pip install flowmatch[speech]``: espeakng-loader, librosa), imported on first use.

>>> from flowmatch.data.speech import build_speech_corpus, synthesize_utterance
>>> corpus = build_speech_corpus()                        # 200 sentences x 4 speakers, cached
>>> mel, ids = corpus.mels[0], corpus.phonemes[0]         # (80, T) float32, (T,) int64
>>> utt = synthesize_utterance(corpus, "A new sentence.", speaker=2)
"""

from __future__ import annotations

from flowmatch.data.speech.alignment import PAD_ID, SILENCE_ID, PhonemeVocabulary, frame_phonemes
from flowmatch.data.speech.corpus import SpeechCorpus, SpeechCorpusConfig, synthesize_corpus
from flowmatch.data.speech.espeak import SAMPLE_RATE, Synthesis, SynthesisRequest, synthesize, synthesize_isolated
from flowmatch.data.speech.griffinlim import griffin_lim, mel_to_audio, mel_to_linear
from flowmatch.data.speech.mel import frame_centres, log_mel, mel_filters, n_frames
from flowmatch.data.speech.store import build_speech_corpus, corpus_path, load_corpus, save_corpus
from flowmatch.data.speech.text import generate_sentences
from flowmatch.data.speech.utterance import Utterance, synthesize_utterance, write_mel_wav
from flowmatch.data.speech.voices import VOICE_PRESETS, SpeakerVoice
from flowmatch.data.speech.wav import read_wav, write_wav

__all__ = [
    "build_speech_corpus",
    "SpeechCorpus",
    "SpeechCorpusConfig",
    "synthesize_corpus",
    "load_corpus",
    "save_corpus",
    "corpus_path",
    "synthesize_utterance",
    "Utterance",
    "write_mel_wav",
    "SpeakerVoice",
    "VOICE_PRESETS",
    "PhonemeVocabulary",
    "PAD_ID",
    "SILENCE_ID",
    "frame_phonemes",
    "generate_sentences",
    "SynthesisRequest",
    "Synthesis",
    "synthesize",
    "synthesize_isolated",
    "SAMPLE_RATE",
    "log_mel",
    "mel_filters",
    "n_frames",
    "frame_centres",
    "mel_to_linear",
    "griffin_lim",
    "mel_to_audio",
    "write_wav",
    "read_wav",
]
