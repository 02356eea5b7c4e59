"""``flowmatch bench speech``: its flags and its runner (:mod:`flowmatch.bench.speech`)."""

from __future__ import annotations

import argparse

from flowmatch.cli._common import add_common, add_device, comma_list

__all__ = ["add_speech", "run_speech"]


def add_speech(benches) -> argparse.ArgumentParser:
    p = benches.add_parser(
        "speech",
        help="text-to-speech mel decoders on the built-in eSpeak NG corpus: FM, I-CFM, OT-CFM, regression, infilling",
        description="Matcha-TTS-style mel decoders (the same 1D U-Net) trained on the built-in eSpeak NG corpus "
        "by fm (sigma_min 1e-4), i-cfm, ot-cfm, an L2 regression baseline, fm with Voicebox infilling and an "
        "unconditional fm; each scored on the held-out sentences at 1, 2, 4, 10 Euler steps and dopri5: MCD, "
        "GV ratio, speaker accuracy, Frechet distance, NFE, real-time factor; infilling MCD on the span with and "
        "without the context. Writes table.md and results.json into --out; finished models are reused.",
    )
    p.add_argument("--out", default=None, help="output directory (default: runs/bench/speech or speech-quick)")
    p.add_argument(
        "--models",
        default=None,
        help="comma-separated models (default: fm,i-cfm,ot-cfm,regression,fm+infill,unconditional)",
    )
    p.add_argument("--steps", type=int, default=None, help="training steps per model (default: 2000)")
    p.add_argument("--batch-size", type=int, default=None, help="utterances per step (default: 16)")
    p.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale w (default: 1)")
    p.add_argument("--sentences", type=int, default=None, help="corpus sentences (default: 200)")
    p.add_argument("--seed", type=int, default=None, help="seed of the corpus, the models and the noise (default: 0)")
    p.add_argument("--quick", action="store_true", help="smoke run: a tiny corpus, 30 steps, three models")
    add_device(p)
    add_common(p)
    p.set_defaults(func=run_speech)
    return p


def run_speech(args: argparse.Namespace) -> int:
    from flowmatch._utils.validate import check_positive_int
    from flowmatch.bench.speech import MODELS, SpeechBenchSettings, run_speech_bench

    models = tuple(comma_list(args.models)) if args.models is not None else None
    for m in models or ():
        if m not in MODELS:
            raise ValueError(f"--models must name models of the speech bench ({', '.join(MODELS)}), got {m!r}")
    for name in ("steps", "batch_size", "sentences"):
        if getattr(args, name) is not None:
            check_positive_int("--" + name.replace("_", "-"), getattr(args, name))
    overrides = dict(
        models=models,
        steps=args.steps,
        batch_size=args.batch_size,
        guidance=args.guidance,
        sentences=args.sentences,
        seed=args.seed,
        device=args.device,
    )
    given = {k: v for k, v in overrides.items() if v is not None}
    settings = SpeechBenchSettings.quick(**given) if args.quick else SpeechBenchSettings(**given)
    out = args.out or ("runs/bench/speech-quick" if args.quick else "runs/bench/speech")
    res = run_speech_bench(out, settings, log=None if args.quiet else print)
    print()
    print(res.table)
    print("wrote " + ", ".join(str(p) for p in res.files.values()))
    return 0
