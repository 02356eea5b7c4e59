"""A ctypes binding to eSpeak NG (``libespeak-ng`` as shipped by the wheel ``espeakng-loader``):
text in, a 22050 Hz int16 waveform and the phonemes' start samples out.

The API used is the one of ``speak_lib.h`` (revision 12):

- ``espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, path, espeakINITIALIZE_PHONEME_EVENTS)``
  returns the sample rate (22050 Hz) or -1; ``espeak_Synth`` then does not return before the
  utterance is synthesised, handing the audio to the callback set by ``espeak_SetSynthCallback``
  in blocks, each with an event list ended by an event of type 0 (``espeakEVENT_LIST_TERMINATED``).
- An ``espeakEVENT_PHONEME`` event (type 7) marks the start of a phoneme: its ``audio_position``
  is the time in ms from the start of the utterance and ``id.string`` (8 bytes, zero-terminated
  unless all 8 are used) its eSpeak name (Kirshenbaum-like ASCII, a stress mark ``'`` or ``,``
  before a stressed vowel; names starting with ``_`` are pauses). The start sample of a phoneme
  is ``round(audio_position * sample_rate / 1000)``.
- ``espeak_SetVoiceByName("en+m3")`` chooses a language and a voice variant (``voices/!v``),
  ``espeak_SetParameter(espeakRATE, wpm, 0)``, ``(espeakPITCH, 0..100, 0)`` and
  ``(espeakRANGE, 0..100, 0)`` its speed (words per minute), base pitch and pitch range.

eSpeak is one process-global engine and not thread-safe: every call holds :data:`LOCK`. Its
output is not a function of the request alone: the wave generator keeps state between utterances
(the index into its pitch-flutter table, a ``static`` of ``AdvanceParameters`` in ``wavegen.c``,
and the phase of the glottal cycle), which ``espeak_Initialize`` and ``espeak_ng_SetRandSeed``
do not reset, so the same text spoken twice in one process gives waveforms a few samples apart;
and the breath noise of some variants (``f2``, ``f3``) draws from a generator that eSpeak seeds
from the clock, which :class:`Engine` fixes with ``espeak_ng_SetRandSeed(1)``.
What is reproducible is a fixed sequence of requests in a fresh process: :func:`synthesize_isolated`
runs this module as a script in a new interpreter (``python -I espeak.py``, no flowmatch import)
and is what the corpus uses, so that two builds are bit-identical.
"""

from __future__ import annotations

import ctypes
import json
import struct
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "SAMPLE_RATE",
    "LOCK",
    "SynthesisRequest",
    "Synthesis",
    "library_paths",
    "check_voice",
    "synthesize",
    "synthesize_isolated",
]

#: eSpeak NG's native sample rate (Hz)
SAMPLE_RATE = 22050
#: held by every call into the (process-global, not thread-safe) engine
LOCK = threading.Lock()

AUDIO_OUTPUT_SYNCHRONOUS = 2
INITIALIZE_PHONEME_EVENTS = 0x0001
EVENT_LIST_TERMINATED = 0
EVENT_PHONEME = 7
POS_CHARACTER = 1
CHARS_UTF8 = 1
RATE, PITCH, RANGE = 1, 3, 4
EE_OK = 0
#: the seed of eSpeak's noise generator (``espeak_ng_SetRandSeed``)
RAND_SEED = 1


class EventId(ctypes.Union):
    """``espeak_EVENT.id``: a number (word, sentence), a name (mark, play) or a phoneme name."""

    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class Event(ctypes.Structure):
    """``espeak_EVENT`` of ``speak_lib.h``."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", EventId),
    ]


Callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(Event))


@dataclass(frozen=True)
class SynthesisRequest:
    """One utterance to speak: ``text`` with eSpeak voice ``voice`` (``"en+m3"``), speed ``rate``
    (words per minute, 80..450), base ``pitch`` and ``pitch_range`` (0..100, 50 is eSpeak's default)."""

    text: str
    voice: str = "en+m3"
    rate: int = 175
    pitch: int = 50
    pitch_range: int = 50


@dataclass(frozen=True)
class Synthesis:
    """eSpeak's output: the ``(N,)`` int16 waveform at :data:`SAMPLE_RATE` and, in the order of
    eSpeak's phoneme events, ``(name, start sample)`` for every phoneme (pauses ``_...`` included)."""

    audio: np.ndarray
    phonemes: tuple[tuple[str, int], ...]
    sample_rate: int = SAMPLE_RATE

    def float_audio(self) -> np.ndarray:
        """The waveform as float32 in [-1, 1): ``audio / 32768``."""
        return self.audio.astype(np.float32) / np.float32(32768.0)


def library_paths() -> tuple[str, str]:
    """``(libespeak-ng path, espeak-ng-data path)`` from ``espeakng_loader`` (imported here, lazily)."""
    try:
        import espeakng_loader  # type: ignore[import-untyped]
    except ImportError:
        raise ImportError(
            "the speech corpus needs eSpeak NG from the package espeakng-loader: pip install flowmatch[speech]"
        ) from None
    return str(espeakng_loader.get_library_path()), str(espeakng_loader.get_data_path())


def check_voice(voice: Any, data_path: str | None = None) -> str:
    """``voice`` if it names an installed eSpeak voice ``"<language>[+<variant>]"`` (a dictionary
    ``<language>_dict`` and a variant file ``voices/!v/<variant>`` in the data), else ValueError.
    eSpeak itself accepts any variant name silently and speaks the default voice instead."""
    if not isinstance(voice, str) or not voice.strip() or voice.count("+") > 1:
        raise ValueError(f"a speaker voice must be a string '<language>[+<variant>]' such as 'en+m3', got {voice!r}")
    data = Path(data_path if data_path is not None else library_paths()[1])
    lang, _, variant = voice.partition("+")
    if not (data / f"{lang.split('-')[0].lower()}_dict").is_file():
        raise ValueError(f"unknown eSpeak language {lang!r} in speaker voice {voice!r} (no {lang}_dict in {data})")
    if variant and not (data / "voices" / "!v" / variant).is_file():
        known = sorted(p.name for p in (data / "voices" / "!v").iterdir())
        raise ValueError(f"unknown eSpeak voice variant {variant!r} in {voice!r}; choose one of: {', '.join(known)}")
    return voice


class Engine:
    """The process's eSpeak engine: loads the library, initialises it once and speaks requests.
    Callers hold :data:`LOCK`."""

    def __init__(self, lib_path: str, data_path: str) -> None:
        try:
            lib = ctypes.CDLL(lib_path)
        except OSError as e:
            raise OSError(f"cannot load eSpeak NG from {lib_path!r}: {e}") from None
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [Callback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int]
        lib.espeak_Synth.argtypes += [ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_Synth.restype = ctypes.c_int
        rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), INITIALIZE_PHONEME_EVENTS)
        if rate != SAMPLE_RATE:
            raise OSError(f"eSpeak NG failed to initialise with data {data_path!r} (returned {rate})")
        # the breath noise of some variants (f2, f3, ...) draws from a generator seeded by the clock
        # at initialisation; a fixed seed makes a fresh process speak the same bits every time
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_ng_SetRandSeed.restype = None
        lib.espeak_ng_SetRandSeed(RAND_SEED)
        self.lib = lib
        self.chunks: list[bytes] = []
        self.events: list[tuple[str, int]] = []
        self.callback = Callback(self.receive)  # kept referenced: eSpeak calls it later
        lib.espeak_SetSynthCallback(self.callback)

    def receive(self, wav: Any, n: int, events: Any) -> int:
        """The synth callback: keep the samples and the phoneme events; 0 continues synthesis."""
        if wav and n > 0:
            self.chunks.append(ctypes.string_at(wav, 2 * n))
        i = 0
        while events[i].type != EVENT_LIST_TERMINATED:
            ev = events[i]
            if ev.type == EVENT_PHONEME:
                name = ev.id.string.decode("utf-8", "replace")
                self.events.append((name, round(ev.audio_position * SAMPLE_RATE / 1000)))
            i += 1
        return 0

    def speak(self, req: SynthesisRequest) -> tuple[bytes, list[tuple[str, int]]]:
        """The int16 bytes and phoneme events of one request."""
        if self.lib.espeak_SetVoiceByName(req.voice.encode()) != EE_OK:
            raise ValueError(f"eSpeak NG has no voice {req.voice!r}")
        for param, value in ((RATE, req.rate), (PITCH, req.pitch), (RANGE, req.pitch_range)):
            self.lib.espeak_SetParameter(param, int(value), 0)
        self.chunks, self.events = [], []
        text = req.text.encode("utf-8")
        err = self.lib.espeak_Synth(text, len(text) + 1, 0, POS_CHARACTER, 0, CHARS_UTF8, None, None)
        if err != EE_OK:
            raise OSError(f"espeak_Synth failed with status {err} on {req.text!r}")
        return b"".join(self.chunks), self.events


ENGINE: dict[str, Engine] = {}


def check_request(req: Any) -> SynthesisRequest:
    """``req`` if it is a SynthesisRequest with non-empty text and parameters in eSpeak's ranges."""
    if not isinstance(req, SynthesisRequest):
        raise TypeError(f"expected a SynthesisRequest, got {type(req).__name__}")
    if not isinstance(req.text, str) or not req.text.strip():
        raise ValueError(f"the text to speak must be a non-empty string, got {req.text!r}")
    if "\0" in req.text:
        raise ValueError(f"the text to speak must not contain NUL characters, got {req.text!r}")
    for name, value, lo, hi in (("rate", req.rate, 80, 450), ("pitch", req.pitch, 0, 100)):
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    if isinstance(req.pitch_range, bool) or not isinstance(req.pitch_range, int) or not 0 <= req.pitch_range <= 100:
        raise ValueError(f"pitch_range must be an integer in [0, 100], got {req.pitch_range!r}")
    return req


def to_synthesis(audio: bytes, events: list[tuple[str, int]] | list[list[Any]]) -> Synthesis:
    """Wrap eSpeak's bytes and events (trailing pauses past the end clipped to the length)."""
    wave = np.frombuffer(audio, dtype="<i2").astype(np.int16)
    return Synthesis(wave, tuple((str(n), min(int(s), len(wave))) for n, s in events))


def synthesize(request: SynthesisRequest) -> Synthesis:
    """Speak one request in this process (holding :data:`LOCK`). Fast, but its waveform depends
    on what this process spoke before (see the module docstring); :func:`synthesize_isolated`
    is reproducible."""
    req = check_request(request)
    lib_path, data_path = library_paths()
    check_voice(req.voice, data_path)
    with LOCK:
        if "engine" not in ENGINE:
            ENGINE["engine"] = Engine(lib_path, data_path)
        audio, events = ENGINE["engine"].speak(req)
    return to_synthesis(audio, events)


def synthesize_isolated(requests: list[SynthesisRequest], *, timeout: float = 600.0) -> list[Synthesis]:
    """Speak ``requests`` in order in a fresh interpreter: the result depends only on the list."""
    reqs = [check_request(r) for r in requests]
    lib_path, data_path = library_paths()
    for voice in sorted({r.voice for r in reqs}):
        check_voice(voice, data_path)
    job = {"lib": lib_path, "data": data_path, "requests": [r.__dict__ for r in reqs]}
    proc = subprocess.run(
        [sys.executable, "-I", str(Path(__file__).resolve())],
        input=json.dumps(job).encode(),
        capture_output=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise OSError(f"the eSpeak NG worker failed: {lines[-1] if lines else f'exit status {proc.returncode}'}")
    out, pos, results = proc.stdout, 0, []
    for _ in reqs:
        n_json, n_audio = struct.unpack_from("<qq", out, pos)
        pos += 16
        events = json.loads(out[pos : pos + n_json])
        pos += n_json
        results.append(to_synthesis(out[pos : pos + n_audio], events))
        pos += n_audio
    return results


def worker_main() -> None:
    """The isolated worker: a JSON job on stdin, per request ``<qq`` (json bytes, audio bytes),
    the events as JSON and the int16 audio on stdout."""
    job = json.loads(sys.stdin.buffer.read())
    engine = Engine(job["lib"], job["data"])
    out = sys.stdout.buffer
    for fields in job["requests"]:
        audio, events = engine.speak(SynthesisRequest(**fields))
        meta = json.dumps(events).encode()
        out.write(struct.pack("<qq", len(meta), len(audio)) + meta + audio)
    out.flush()


if __name__ == "__main__":
    try:
        worker_main()
    except (OSError, ValueError) as e:
        sys.stderr.write(f"{type(e).__name__}: {e}\n")
        sys.exit(1)
