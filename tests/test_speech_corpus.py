"""The built-in speech corpus (issue 17, item 5): eSpeak NG synthesis, Matcha-TTS log-mels,
frame-level phoneme alignment, the split by sentence, the cache, Griffin-Lim and WAV files."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

pytest.importorskip("espeakng_loader")
librosa = pytest.importorskip("librosa")

from flowmatch.data.speech import (  # noqa: E402
    PAD_ID,
    SAMPLE_RATE,
    SILENCE_ID,
    PhonemeVocabulary,
    SpeakerVoice,
    SpeechCorpusConfig,
    SynthesisRequest,
    build_speech_corpus,
    corpus_path,
    frame_centres,
    frame_phonemes,
    generate_sentences,
    log_mel,
    mel_filters,
    mel_to_audio,
    n_frames,
    read_wav,
    synthesize_isolated,
    synthesize_utterance,
    write_mel_wav,
    write_wav,
)
from flowmatch.data.speech.mel import FMAX, FMIN, N_FFT, N_MELS  # noqa: E402

N_SENTENCES = 16


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWMATCH_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("FLOWMATCH_CACHE_DIR", str(tmp_path_factory.mktemp("corpus-cache")))
    yield build_speech_corpus(N_SENTENCES, 4, seed=3)
    mp.undo()


def same(a, b) -> bool:
    """Bit-identical corpora."""
    return (
        a.vocab == b.vocab
        and a.sentences == b.sentences
        and a.test_sentences == b.test_sentences
        and np.array_equal(a.speaker, b.speaker)
        and np.array_equal(a.sentence, b.sentence)
        and len(a) == len(b)
        and all(x.dtype == y.dtype and x.tobytes() == y.tobytes() for x, y in zip(a.mels, b.mels))
        and all(x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(a.phonemes, b.phonemes))
    )


# --- determinism and cache ------------------------------------------------------------------


def test_two_builds_are_bit_identical_and_the_cached_load_equals_a_fresh_build(cache):
    a = build_speech_corpus(6, 2, seed=1, cache=False)
    b = build_speech_corpus(6, 2, seed=1, cache=False)
    assert same(a, b)
    assert not corpus_path(a.config).exists()
    c = build_speech_corpus(6, 2, seed=1)  # builds and writes the cache
    path = corpus_path(a.config)
    assert path.is_file() and path.parent == cache / "speech"
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temporary file left
    mtime = path.stat().st_mtime_ns
    d = build_speech_corpus(6, 2, seed=1)  # loads it
    assert path.stat().st_mtime_ns == mtime
    assert same(a, c) and same(a, d)
    assert d.mels[0].dtype == np.float32 and d.phonemes[0].dtype == np.int64
    other = build_speech_corpus(6, 2, seed=2, cache=False)
    assert corpus_path(other.config) != path and other.sentences != a.sentences


def test_a_corrupt_cache_file_is_rebuilt(cache):
    a = build_speech_corpus(3, 1, seed=0)
    path = corpus_path(a.config)
    path.write_bytes(b"not a zip file")
    b = build_speech_corpus(3, 1, seed=0)
    assert same(a, b) and path.stat().st_size > 1000


def test_sentences_are_distinct_short_and_follow_the_seed():
    s = generate_sentences(300, np.random.default_rng(5))
    assert len(set(s)) == 300
    assert all(3 <= len(x.split()) <= 7 and x.endswith(".") and x[0].isupper() for x in s)
    assert s == generate_sentences(300, np.random.default_rng(5))
    assert s != generate_sentences(300, np.random.default_rng(6))


# --- alignment ------------------------------------------------------------------------------


def test_every_frame_has_a_phoneme_of_the_vocabulary(corpus):
    assert corpus.vocab.names[PAD_ID] == "<pad>" and corpus.vocab.names[SILENCE_ID] == "<sil>"
    assert corpus.vocab.names[-1] == "<unk>" and len(corpus) == 4 * N_SENTENCES
    for mel, ids in zip(corpus.mels, corpus.phonemes):
        assert mel.shape[0] == 80 and ids.shape == (mel.shape[1],) and np.isfinite(mel).all()
        assert ids.min() >= 1 and ids.max() < len(corpus.vocab) - 1  # no padding, nothing unknown
        speech = ids[ids != SILENCE_ID]
        assert len(np.unique(speech)) > 5


def test_phoneme_order_follows_espeaks_events(corpus):
    utt = synthesize_utterance(corpus, "The quick brown fox jumps over the lazy dog.", speaker=1)
    assert utt.mel.shape == (80, n_frames(len(utt.audio))) and utt.phonemes.shape == (utt.mel.shape[1],)
    event_ids = corpus.vocab.encode([n for n, _ in utt.events])
    runs = utt.phonemes[np.r_[True, np.diff(utt.phonemes) != 0]]
    # every run of frames is a phoneme of the events, in the events' order, after the silence
    # before the first event (a phoneme shorter than a hop may get no frame, so the runs are a
    # subsequence of the event ids)
    order = np.r_[SILENCE_ID, event_ids]
    j = 0
    for r in runs:
        while j < len(order) and order[j] != r:
            j += 1
        assert j < len(order), f"frame runs {runs.tolist()} are not in the order of events {order.tolist()}"
    assert len(runs) >= 0.8 * len(event_ids)
    starts = np.array([s for _, s in utt.events])
    assert np.all(np.diff(starts) >= 0) and starts[-1] <= len(utt.audio)
    # each frame holds the phoneme whose interval contains its centre
    centres = frame_centres(len(utt.phonemes))
    for f in (0, len(centres) // 3, len(centres) // 2, len(centres) - 1):
        j = np.searchsorted(starts, centres[f], side="right") - 1
        assert utt.phonemes[f] == (SILENCE_ID if j < 0 else event_ids[j])


def test_frame_phonemes_on_known_events():
    vocab = PhonemeVocabulary.from_phonemes(["a", "b", "_:", "c"])
    assert vocab.names == ("<pad>", "<sil>", "a", "b", "c", "<unk>")
    # frame centres 128, 384, 640, 896, 1152, 1408
    ids = frame_phonemes([("a", 300), ("b", 600), ("zz", 700), ("_:", 1000), ("c", 1408)], 6, vocab)
    assert ids.tolist() == [1, 2, 3, 5, 1, 4]
    assert frame_phonemes([], 3, vocab).tolist() == [1, 1, 1]
    with pytest.raises(ValueError, match="non-decreasing"):
        frame_phonemes([("a", 500), ("b", 100)], 4, vocab)


def test_new_text_maps_unseen_phonemes_to_unknown(corpus):
    utt = synthesize_utterance(corpus, "Zhivago's rendezvous at the bourgeois chateau.", speaker=0)
    assert utt.phonemes.min() >= 1 and utt.phonemes.max() <= corpus.vocab.unknown_id
    again = synthesize_utterance(corpus, "Zhivago's rendezvous at the bourgeois chateau.", speaker=0)
    assert again.mel.tobytes() == utt.mel.tobytes()  # a fresh eSpeak process each call


# --- split and speakers ---------------------------------------------------------------------


def test_the_split_is_by_sentence_and_holds_every_speaker(corpus):
    train, test = corpus.train_indices(), corpus.test_indices()
    assert len(train) + len(test) == len(corpus) and not set(train) & set(test)
    assert not set(corpus.sentence[train]) & set(corpus.sentence[test])
    assert set(corpus.sentence[test]) == set(corpus.test_sentences)
    assert len(corpus.test_sentences) == max(1, round(0.125 * N_SENTENCES))
    assert set(corpus.speaker[train]) == set(corpus.speaker[test]) == {0, 1, 2, 3}
    for s in range(N_SENTENCES):  # every sentence spoken once by every speaker
        assert sorted(corpus.speaker[corpus.sentence == s]) == [0, 1, 2, 3]
    assert all(corpus.text(i) == corpus.sentences[corpus.sentence[i]] for i in range(len(corpus)))


def test_speakers_differ_in_pitch_and_timbre(corpus):
    # pitch: the median F0 (YIN) of each speaker differs across speakers more than within one
    texts = ["The old man waits near the red door.", "Three birds sing loudly.", "A small cat sleeps."]
    reqs = [sp.request(t) for sp in corpus.speakers for t in texts]
    f0 = np.array(
        [np.median(librosa.yin(s.float_audio(), fmin=60, fmax=500, sr=SAMPLE_RATE)) for s in synthesize_isolated(reqs)]
    ).reshape(len(corpus.speakers), len(texts))
    means = f0.mean(1)
    assert np.diff(np.sort(means)).min() > 3 * f0.std(1).max(), f0
    assert means[[0, 2]].max() < means[[1, 3]].min()  # the male variants speak lower
    # timbre: nearest speaker centroid of the mean log-mel, fitted on train, on the test utterances
    x = np.stack([m.mean(1) for m in corpus.mels])
    tr, te = corpus.train_indices(), corpus.test_indices()
    centroids = np.stack([x[tr][corpus.speaker[tr] == k].mean(0) for k in range(4)])
    pred = ((x[te][:, None] - centroids[None]) ** 2).sum(-1).argmin(1)
    assert (pred == corpus.speaker[te]).mean() >= 0.9


# --- features -------------------------------------------------------------------------------


def test_the_mel_filter_bank_is_librosas_slaney_bank():
    ref = librosa.filters.mel(
        sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=FMIN, fmax=FMAX, htk=False, norm="slaney"
    )
    m = mel_filters()
    assert m.shape == (80, 513) and m.dtype == torch.float32
    torch.testing.assert_close(m, torch.from_numpy(ref.astype(np.float32)))
    m.zero_()  # a fresh tensor: the cached bank is untouched
    assert mel_filters().abs().sum() > 0


@pytest.mark.parametrize("k", [5, 30, 60])
def test_a_sine_tone_peaks_in_the_mel_bin_of_its_frequency(k):
    freq = librosa.mel_frequencies(n_mels=N_MELS + 2, fmin=FMIN, fmax=FMAX)[k + 1]  # centre of filter k
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    mel = log_mel((0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32))
    assert mel.shape == (80, n_frames(SAMPLE_RATE)) == (80, SAMPLE_RATE // 256)
    assert int(mel[:, 5:-5].mean(1).argmax()) == k


def test_griffin_lim_round_trip_is_close_in_log_mel(corpus):
    (spoken,) = synthesize_isolated([corpus.speakers[0].request("The old man waits near the red door.")])
    mel = log_mel(spoken.audio)
    audio = mel_to_audio(mel, n_iter=48, seed=0)
    assert audio.shape == (mel.shape[1] * 256,) and audio.abs().max() <= 1.0
    err = (log_mel(audio) - mel).abs().mean().item()
    one = (log_mel(mel_to_audio(mel, n_iter=1, seed=0)) - mel).abs().mean().item()
    # measured: err 0.150 (48 iterations), 0.309 after one iteration; the pseudo-inverse of the
    # 80 x 513 bank and the phase bound how close it gets
    assert err < 0.25 and err < 0.7 * one, (err, one)
    assert torch.equal(audio, mel_to_audio(mel, n_iter=48, seed=0))  # seeded


def test_wav_round_trip_is_exact_for_int16(tmp_path, corpus):
    x = np.random.default_rng(0).integers(-32768, 32768, size=5000).astype(np.int16)
    path = write_wav(tmp_path / "a" / "x.wav", x, 16000)
    y, sr = read_wav(path)
    assert sr == 16000 and y.dtype == np.int16 and np.array_equal(x, y)
    assert [p.name for p in path.parent.iterdir()] == ["x.wav"]
    out = write_mel_wav(tmp_path / "mel.wav", corpus.mels[0], n_iter=4)
    z, sr = read_wav(out)
    assert sr == SAMPLE_RATE and len(z) == corpus.mels[0].shape[1] * 256 and np.abs(z).max() > 100
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(ValueError, match="not a readable WAV"):
        read_wav(tmp_path / "x.txt")


# --- bad input ------------------------------------------------------------------------------


def test_a_missing_or_broken_espeak_gives_one_line_errors(monkeypatch):
    from flowmatch.data.speech.espeak import Engine, library_paths

    data = library_paths()[1]
    with pytest.raises(OSError, match="cannot load eSpeak NG from '/nonexistent/libespeak-ng.so'"):
        Engine("/nonexistent/libespeak-ng.so", data)
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)
    with pytest.raises(ImportError, match=r"espeakng-loader: pip install flowmatch\[speech\]"):
        synthesize_isolated([SynthesisRequest("Hello.")])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"speakers": ["en+zzz"]}, "unknown eSpeak voice variant 'zzz'"),
        ({"speakers": ["xx+m3"]}, "unknown eSpeak language 'xx'"),
        ({"speakers": [SpeakerVoice("en+m3", rate=20)]}, "rate must be an integer in \\[80, 450\\], got 20"),
        ({"speakers": 0}, "speakers must be an integer in \\[1, 8\\]"),
        ({"speakers": ["en+m3", "en+m3"]}, "speakers must be distinct"),
        ({"seed": -1}, "seed must be an integer >= 0, got -1"),
        ({"seed": 1.5}, "seed must be an integer >= 0, got 1.5"),
        ({"seed": True}, "seed must be an integer >= 0, got True"),
        ({"n_sentences": 1}, "n_sentences must be >= 2"),
        ({"test_fraction": 1.0}, "test_fraction must be a number in \\(0, 1\\), got 1.0"),
        ({"jitter": -0.1}, "jitter must be a number in \\[0, 0.5\\]"),
    ],
)
def test_bad_settings_give_one_line_value_errors(kwargs, match):
    with pytest.raises(ValueError, match=match) as err:
        SpeechCorpusConfig(**kwargs)
    assert "\n" not in str(err.value)


def test_bad_text_and_speaker_give_one_line_value_errors(corpus):
    for text in ("", "   ", None):
        with pytest.raises(ValueError, match="the text to speak must be a non-empty string"):
            synthesize_utterance(corpus, text, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty string"):
        synthesize_isolated([SynthesisRequest("")])
    for k in (4, -1, 1.0, True):
        with pytest.raises(ValueError, match=f"speaker must be an integer in \\[0, 3\\].*got {k!r}"):
            synthesize_utterance(corpus, "Hello there.", k)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rng must be a numpy.random.Generator"):
        generate_sentences(3, 0)  # type: ignore[arg-type]
