"""Speech runs end to end (issue 17, item 6 and 7): ``flowmatch train --target speech`` on a small
built-in eSpeak NG corpus, evaluation, pictures, resume, ``flowmatch sample --text/--utterance/--infill``
with WAV and PNG, ``flowmatch bench speech --quick``, and the behaviour the issue asks of a short
training: the flow's global variance closer to the data's than the regression baseline's, and a
conditional model's MCD below an unconditional one's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from flowmatch.cli import main
from flowmatch.data.speech import read_wav

pytestmark = pytest.mark.slow

CORPUS = ["--target", "speech", "--speech-sentences", "12", "--speech-speakers", "2"]
SMALL = ["--batch-size", "6", "--hidden", "16", "--depth", "2", "--lr", "3e-3", "--log-every", "10"]


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory):
    """One corpus cache for the module (synthesised once, a few seconds)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("FLOWMATCH_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


@pytest.fixture(scope="module")
def tts_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "tts"
    argv = [
        "train",
        *CORPUS,
        *SMALL,
        "--cond",
        "text",
        "--method",
        "fm",
        "--sigma",
        "1e-4",
        "--guidance-dropout",
        "0.1",
    ]
    argv += ["--steps", "20", "--checkpoint-every", "10", "--eval-steps", "2", "--quiet", "--out", str(out)]
    assert main(argv) == 0
    return out


def test_a_speech_run_trains_evaluates_and_draws_its_spectrograms(tts_run):
    metrics = json.loads((tts_run / "metrics.json").read_text())
    assert metrics["method"] == "fm" and metrics["cond"] == "text" and metrics["infill"] is False
    row = metrics["eval"]["rows"][0]
    assert row["nfe"] == 2 and row["mcd"] > 0 and 0 < row["gv_ratio"] and 0 <= row["speaker_accuracy"] <= 1
    assert metrics["data"]["speakers"] == 2 and metrics["data"]["utterances"]["test"] >= 2
    assert (tts_run / "samples.png").stat().st_size > 10_000 and (tts_run / "loss.png").is_file()


def test_a_speech_run_resumes_to_the_same_weights_as_a_straight_run(tts_run, tmp_path):
    from flowmatch.training.checkpoint import load_checkpoint

    straight = tmp_path / "straight"
    argv = [
        "train",
        *CORPUS,
        *SMALL,
        "--cond",
        "text",
        "--method",
        "fm",
        "--sigma",
        "1e-4",
        "--guidance-dropout",
        "0.1",
    ]
    common = ["--checkpoint-every", "10", "--eval-steps", "2", "--quiet", "--no-plots"]
    assert main([*argv, *common, "--steps", "30", "--out", str(straight)]) == 0
    resumed = tmp_path / "resumed"
    assert main([*argv, *common, "--steps", "20", "--out", str(resumed)]) == 0
    assert main(["train", "--resume", "--steps", "30", "--quiet", "--no-plots", "--out", str(resumed)]) == 0
    a, b = load_checkpoint(straight / "checkpoints"), load_checkpoint(resumed / "checkpoints")
    assert a.step == b.step == 30
    for k in a.model:
        assert torch.equal(a.model[k], b.model[k]), k


def test_sample_speaks_a_text_to_a_wav_and_a_spectrogram(tts_run, tmp_path, capsys):
    wav, png, npy = tmp_path / "a.wav", tmp_path / "a.png", tmp_path / "a.npy"
    argv = ["sample", str(tts_run), "--text", "A small cat sings.", "--speaker", "1", "--steps", "2"]
    assert main([*argv, "--guidance", "2", "--wav", str(wav), "--png", str(png), "--out", str(npy)]) == 0
    audio, rate = read_wav(wav)
    mel = torch.from_numpy(__import__("numpy").load(npy))
    assert rate == 22050 and mel.shape[0] == 80
    assert abs(len(audio) / rate - mel.shape[1] * 256 / 22050) < 0.05  # the audio is as long as the mel
    assert png.stat().st_size > 10_000 and "generated" in capsys.readouterr().out
    assert main(["sample", str(tts_run), "--utterance", "0", "--steps", "2", "--out", str(npy)]) == 0


@pytest.mark.parametrize(
    "extra, rule",
    [
        (["--infill", "0.1:0.3", "--text", "Hello there."], "trained with --infill"),
        (["--text", "Hello.", "--speaker", "5"], "speaker must be an integer in [0, 1]"),
        (["--utterance", "999"], "--utterance must be in"),
        (["--text", "Hi.", "--wav", "x.mp3"], "--wav must be a .wav file"),
        ([], "needs --out"),
    ],
)
def test_sample_of_a_speech_run_refuses_bad_requests_in_one_line(tts_run, tmp_path, capsys, extra, rule):
    out = [] if not extra else ["--out", str(tmp_path / "m.npy")]
    assert main(["sample", str(tts_run), *extra, *(out if "--wav" not in extra else [])]) == 2
    err = capsys.readouterr().err.strip()
    assert rule in err and len(err.splitlines()) == 1


def test_bad_speech_settings_are_one_line_errors(tmp_path, capsys):
    cases = [
        (["train", "--target", "moons", "--cond", "text"], "cond 'text' needs sequence data"),
        (["train", *CORPUS, "--cond", "label"], "use --cond text"),
        (["train", *CORPUS, "--model", "mlp"], "need a sequence model"),
        (["train", *CORPUS, "--method", "sb-cfm"], "coupling respects masks"),
        (["train", "--target", "moons", "--method", "regression"], "baseline for conditional sequences"),
        (["train", *CORPUS, "--infill", "--span-min", "0.8", "--span-max", "0.5"], "span_min <= span_max"),
    ]
    for argv, rule in cases:
        assert main([*argv, "--out", str(tmp_path / "x")]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert rule in err and len(err.splitlines()) == 1, err


def test_infilling_from_the_cli_keeps_the_context_frames(tmp_path):
    run = tmp_path / "infill"
    argv = ["train", *CORPUS, *SMALL, "--cond", "text", "--method", "fm", "--infill", "--guidance-dropout", "0.1"]
    assert main([*argv, "--steps", "10", "--eval-steps", "2", "--quiet", "--no-plots", "--out", str(run)]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["eval"]["infill"]) >= {"mcd_span_infilled", "mcd_span_no_context"}
    out = tmp_path / "filled.npy"
    text = "The old dog runs home."
    assert main(["sample", str(run), "--text", text, "--infill", "0.3:0.6", "--steps", "2", "--out", str(out)]) == 0
    from flowmatch.data.speech import build_speech_corpus, synthesize_utterance

    corpus = build_speech_corpus(12, 2)
    ref = synthesize_utterance(corpus, text, 0).mel
    got = __import__("numpy").load(out)
    a, b = round(0.3 * 22050 / 256), round(0.6 * 22050 / 256)
    # the context frames are the reference exactly (up to the normalisation's float32 round trip)
    assert abs(got[:, :a] - ref[:, :a]).max() < 1e-4 and abs(got[:, b:] - ref[:, b:]).max() < 1e-4
    assert abs(got[:, a:b] - ref[:, a:b]).max() > 0.1


def test_bench_speech_quick_prints_its_table(tmp_path, capsys):
    assert main(["bench", "speech", "--quick", "--out", str(tmp_path / "bench")]) == 0
    out = capsys.readouterr().out
    assert "| fm " in out and "| regression" in out and "real test utterances" in out and "infilling" in out
    results = json.loads((tmp_path / "bench" / "results.json").read_text())
    assert {r["model"] for r in results["rows"]} == {"fm", "regression", "fm+infill"}


def test_a_short_training_beats_the_regression_gv_and_the_unconditional_mcd(tmp_path):
    """Trained alike for 150 steps: the flow's global variance is closer to the data's than the
    regression baseline's (which regresses to the mean), and conditioning on the text lowers MCD.
    A ratio's distance from 1 is measured on the log scale (GV ratios 2 and 0.5 are equally far off)."""
    import math

    from flowmatch.runs.config import RunConfig
    from flowmatch.runs.run import train_run

    base = dict(
        target="speech",
        speech_sentences=12,
        speech_speakers=2,
        steps=150,
        batch_size=6,
        hidden=16,
        depth=2,
        lr=3e-3,
        eval_steps=8,
        log_every=50,
        checkpoint_every=1000,
    )
    reports = {}
    for name, extra in {
        "flow": dict(method="fm", sigma=1e-4, cond="text"),
        "regression": dict(method="regression", cond="text"),
        "unconditional": dict(method="fm", sigma=1e-4, cond="none"),
    }.items():
        _, _, rep = train_run(RunConfig(**base, **extra), None, quiet=True, plots=False)
        reports[name] = rep.rows[0].metrics
    flow, reg, unc = reports["flow"], reports["regression"], reports["unconditional"]
    assert abs(math.log(flow.gv_ratio)) < abs(math.log(reg.gv_ratio)) and reg.gv_ratio < 0.9
    assert flow.mcd < unc.mcd


def test_a_speech_run_trains_data_parallel_with_two_processes(tmp_path):
    out = tmp_path / "ddp"
    argv = ["train", *CORPUS, *SMALL, "--cond", "text", "--method", "ot-cfm", "--steps", "10", "--eval-steps", "2"]
    assert main([*argv, "--nproc", "2", "--quiet", "--no-plots", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train"]["steps"] == 10 and metrics["eval"]["rows"][0]["nfe"] == 2
    rows = (out / "log.csv").read_text().splitlines()
    assert rows[0].startswith("step") and rows[-1].startswith("10,")  # one log, written by rank 0
