"""The speakers of the corpus: eSpeak NG voice variants with their own pitch, pitch range and rate.

A speaker is ``SpeakerVoice(voice, pitch, rate, pitch_range)``: the variant (``"en+m3"``: the
formants, the pitch band and the stress pattern of ``voices/!v/m3``) sets the timbre, the three
numbers the eSpeak parameters ``espeakPITCH`` (0..100), ``espeakRATE`` (words per minute) and
``espeakRANGE`` (0..100). :data:`VOICE_PRESETS` are eight such speakers, four male and four
female, the first ``k`` alternating male and female; each utterance then jitters rate and pitch
(:func:`jittered`) so that no two utterances of a speaker have exactly the same prosody.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from flowmatch.data.speech.espeak import SynthesisRequest, check_request, check_voice

__all__ = ["SpeakerVoice", "VOICE_PRESETS", "resolve_speakers", "jittered"]


@dataclass(frozen=True)
class SpeakerVoice:
    """One speaker: an eSpeak ``voice`` (``"<language>+<variant>"``), base ``pitch`` (0..100),
    ``rate`` (words per minute) and ``pitch_range`` (0..100)."""

    voice: str
    pitch: int = 50
    rate: int = 175
    pitch_range: int = 50

    def request(self, text: str, *, rate_scale: float = 1.0, pitch_shift: int = 0) -> SynthesisRequest:
        """The eSpeak request for ``text`` spoken by this speaker, rate scaled and pitch shifted."""
        rate = int(np.clip(round(self.rate * rate_scale), 80, 450))
        pitch = int(np.clip(self.pitch + pitch_shift, 0, 100))
        return SynthesisRequest(text, self.voice, rate, pitch, self.pitch_range)


#: eight speakers, alternating male and female: distinct variants, pitches and rates
VOICE_PRESETS: tuple[SpeakerVoice, ...] = (
    SpeakerVoice("en+m1", pitch=40, rate=165, pitch_range=45),
    SpeakerVoice("en+f2", pitch=45, rate=175, pitch_range=60),
    SpeakerVoice("en+m3", pitch=50, rate=185, pitch_range=50),
    SpeakerVoice("en+f4", pitch=80, rate=170, pitch_range=55),
    SpeakerVoice("en+m5", pitch=35, rate=175, pitch_range=40),
    SpeakerVoice("en+f1", pitch=60, rate=180, pitch_range=65),
    SpeakerVoice("en+m7", pitch=45, rate=160, pitch_range=50),
    SpeakerVoice("en+f3", pitch=70, rate=190, pitch_range=50),
)


def resolve_speakers(speakers: Any) -> tuple[SpeakerVoice, ...]:
    """The speakers of ``speakers``: an int ``k`` (the first k of :data:`VOICE_PRESETS`), or a
    sequence of :class:`SpeakerVoice` or voice strings (a string gets the default pitch and rate).
    Raises a one-line ValueError on an unknown voice, a duplicate or a bad count."""
    if isinstance(speakers, int) and not isinstance(speakers, bool):
        if not 1 <= speakers <= len(VOICE_PRESETS):
            raise ValueError(f"speakers must be an integer in [1, {len(VOICE_PRESETS)}] or a list, got {speakers!r}")
        speakers = VOICE_PRESETS[:speakers]
    if isinstance(speakers, str) or not isinstance(speakers, Sequence) or not speakers:
        raise ValueError(f"speakers must be a positive count or a non-empty list of voices, got {speakers!r}")
    out = []
    for s in speakers:
        sv = SpeakerVoice(s) if isinstance(s, str) else s
        if not isinstance(sv, SpeakerVoice):
            raise ValueError(f"a speaker must be a SpeakerVoice or a voice string such as 'en+m3', got {s!r}")
        check_voice(sv.voice)
        check_request(SynthesisRequest("check", sv.voice, sv.rate, sv.pitch, sv.pitch_range))
        out.append(sv)
    if len(set(out)) != len(out):
        raise ValueError(f"speakers must be distinct, got {[s.voice for s in out]}")
    return tuple(out)


def jittered(speaker: SpeakerVoice, text: str, rng: np.random.Generator, *, jitter: float) -> SynthesisRequest:
    """``speaker``'s request for ``text`` with its rate scaled by ``1 + jitter * u`` and its pitch
    shifted by ``round(40 * jitter * v)`` (u, v uniform on [-1, 1], drawn from ``rng`` in that order)."""
    u, v = rng.uniform(-1.0, 1.0, size=2)
    return speaker.request(text, rate_scale=1.0 + jitter * float(u), pitch_shift=round(40 * jitter * float(v)))
