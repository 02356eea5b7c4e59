"""``flowmatch sample RUN`` for sequence runs: speak a text (``--text "..." --speaker K``) or a
held-out test utterance (``--utterance I``), optionally infilling a span of its eSpeak reference
(``--infill START:END`` in seconds), writing the mel (``--out mel.npy``), the audio through
Griffin-Lim (``--wav out.wav``) and the spectrogram beside the reference (``--png mel.png``)."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_sequence_flags", "sample_sequences", "parse_span"]


def add_sequence_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("sequence runs (--target speech)")
    g.add_argument("--text", default=None, help="text to speak (speech runs); durations come from eSpeak NG")
    g.add_argument("--speaker", type=int, default=0, help="speaker id of the corpus (default: 0)")
    g.add_argument("--utterance", type=int, default=None, help="a held-out test utterance by index instead of --text")
    g.add_argument(
        "--infill",
        default=None,
        metavar="START:END",
        help="runs trained with infill: regenerate START..END seconds of the reference, keep the rest",
    )
    g.add_argument(
        "--temperature", type=float, default=1.0, help="scale of the initial noise (Matcha-TTS uses 0.667; default: 1)"
    )
    g.add_argument("--wav", default=None, help="write the generated speech to this WAV (Griffin-Lim)")
    g.add_argument("--png", default=None, help="write the spectrogram, generated beside the reference, to this PNG")


def parse_span(text: str, frames: int, hop_seconds: float):
    """``"0.5:1.2"`` seconds -> (first frame, end frame) within ``frames``; one-line errors."""
    try:
        a, b = (float(v) for v in text.split(":"))
    except ValueError:
        raise ValueError(f"--infill must be START:END in seconds (e.g. 0.4:1.0), got {text!r}") from None
    start, end = int(round(a / hop_seconds)), int(round(b / hop_seconds))
    if not 0 <= start < end <= frames:
        raise ValueError(
            f"--infill must satisfy 0 <= START < END <= {frames * hop_seconds:.2f} s (the utterance), got {text!r}"
        )
    return start, end


def _reference(args: argparse.Namespace, run):
    """The reference utterance as a one-row SequenceBatch (normalised) and its description."""
    import torch

    from flowmatch.data.batches import SequenceBatch
    from flowmatch.data.masks import lengths_to_mask
    from flowmatch.data.seqcond import SequenceCondition

    data = run.data
    if args.utterance is not None:
        if args.text is not None:
            raise ValueError("give --text or --utterance, not both")
        if not 0 <= args.utterance < len(data.test):
            raise ValueError(
                f"--utterance must be in [0, {len(data.test)}) (the test utterances), got {args.utterance}"
            )
        b = data.test.batch([args.utterance])
        return b, f"test utterance {args.utterance}"
    if args.text is None:
        raise ValueError('sample of a sequence run needs --text "..." (speech runs) or --utterance I')
    if data.corpus is None:
        raise ValueError(f"--text needs a speech run (--target speech), got target {run.config.target!r}")
    from flowmatch.data.speech import synthesize_utterance

    utt = synthesize_utterance(data.corpus, args.text, args.speaker)
    x = data.normalize(torch.from_numpy(utt.mel))[None]
    cond = None
    if run.config.cond == "text":
        cond = SequenceCondition(tokens=torch.from_numpy(utt.phonemes)[None], speaker=torch.tensor([utt.speaker]))
    return SequenceBatch(
        x, lengths_to_mask(torch.tensor([x.shape[-1]])), cond
    ), f"{args.text!r}, speaker {args.speaker}"


def sample_sequences(args: argparse.Namespace, run) -> int:
    import numpy as np
    import torch

    from flowmatch.runs.generate_sequences import generate
    from flowmatch.runs.sequence_data import REGRESSION

    for flag in ("out", "wav", "png"):
        value = getattr(args, flag)
        suffix = {"out": ".npy", "wav": ".wav", "png": ".png"}[flag]
        if value is not None and not str(value).lower().endswith(suffix):
            raise ValueError(f"--{flag} must be a {suffix} file, got {value!r}")
    if args.out is None and args.wav is None and args.png is None:
        raise ValueError("sample of a sequence run needs --out MEL.npy, --wav FILE.wav or --png FILE.png")
    if args.sde or args.trajectory or args.grid or args.plot or args.cond is not None:
        raise ValueError("--sde, --trajectory, --grid, --plot and --cond apply to vector and image runs, not sequences")
    data = run.data
    batch, what = _reference(args, run)
    if batch.cond is not None:
        batch.cond = batch.cond.to(run.device)
    batch.x, batch.mask = batch.x.to(run.device), batch.mask.to(run.device)
    hop = 256 / 22050 if data.corpus is None else data.corpus.hop / data.corpus.sample_rate
    span = None
    if args.infill is not None:
        if not run.config.infill:
            raise ValueError(f"--infill needs a run trained with --infill, got {args.run!r}")
        a, b = parse_span(args.infill, batch.x.shape[-1], hop)
        span = torch.zeros_like(batch.mask)
        span[..., a:b] = 1
    w = 1.0 if args.guidance is None else args.guidance
    gen = generate(
        run.model,
        batch,
        regression=run.config.method == REGRESSION,
        infill_model=run.config.infill,
        span=span,
        guidance=w,
        solver=args.solver,
        steps=args.steps,
        seed=args.seed,
        temperature=args.temperature,
        atol=args.atol,
        rtol=args.rtol,
    )
    mel = data.denormalize(gen.x[0]).cpu()
    ref = data.denormalize(batch.x[0]).cpu()
    written = []
    if args.out is not None:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        np.save(args.out, mel.numpy())
        written.append(args.out)
    if args.wav is not None:
        from flowmatch.data.speech import write_mel_wav

        written.append(str(write_mel_wav(args.wav, mel)))
    if args.png is not None:
        from flowmatch.plots.spectrograms import plot_spectrograms

        how = "regression" if run.config.method == REGRESSION else f"{args.solver} {args.steps}, w = {w:g}"
        if args.temperature != 1.0 and run.config.method != REGRESSION:
            how += f", T = {args.temperature:g}"
        label = f"generated ({run.config.method}, {how})" + ("" if span is None else f", infilled {args.infill} s")
        written.append(str(plot_spectrograms([mel, ref], [label, "reference (eSpeak NG)"], args.png, hop_seconds=hop)))
    if not args.quiet:
        seconds = mel.shape[-1] * hop
        print(
            f"generated {seconds:.2f} s of speech for {what} (NFE {gen.nfe}, {gen.seconds:.2f} s); wrote {', '.join(written)}"
        )
    return 0
