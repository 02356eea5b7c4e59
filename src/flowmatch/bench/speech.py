"""Speech benchmark: ``flowmatch bench speech``.

Text-and-speaker-conditional mel decoders on the built-in eSpeak NG corpus
(:mod:`flowmatch.data.speech`), in the manner of Matcha-TTS (a flow-matching decoder on
frame-aligned phonemes) and Voicebox (infilling from the context). Each model is the same
:class:`~flowmatch.models.sequence.UNet1D` trained for the same steps:

- ``fm``: Lipman's flow matching from N(0, I) with sigma_min = 1e-4 (Matcha-TTS's decoder loss);
- ``i-cfm`` and ``ot-cfm`` (sigma 0.1 by default; OT pairs noise with each target's valid frames,
  across utterances whose texts differ, so the pairing ignores the condition);
- ``regression``: the network trained by L2 to output the mel from the text (the over-smoothed
  conditional mean);
- ``fm+infill``: ``fm`` trained to infill spans of 30-100% of each utterance (Voicebox);
- ``unconditional``: ``fm`` without text or speaker (the floor a condition must beat).

For every flow the held-out test utterances (unseen sentences, every speaker) are generated at 1,
2, 4 and 10 Euler steps and by dopri5, with classifier-free guidance ``guidance`` (condition dropout
0.1 in training), and scored by :mod:`flowmatch.runs.speech_eval`: MCD (dB, log-mel cepstra c1..c24),
global-variance ratio, speaker accuracy of the speaker classifier trained on real mels, Fréchet
distance in its features (beside the real test utterances' values), NFE and real-time factor of
the decoder on this machine (no vocoder). Infilling: MCD on a span of half of each test utterance,
regenerated with its context, beside the same network without the context and ``fm`` (text only).

Each model trains into ``OUT/<name>`` (a run directory, reused when its config.toml matches and it
finished: rerun the command to rebuild the table after an interruption); ``table.md`` and
``results.json`` go into ``OUT``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from flowmatch._utils.io import atomic_write_text
from flowmatch.runs.config import RunConfig

__all__ = ["SpeechBenchSettings", "SpeechBenchResult", "run_speech_bench", "MODELS"]

#: The models of the table: name -> RunConfig changes from the common settings.
MODELS: dict[str, dict[str, Any]] = {
    "fm": dict(method="fm", sigma=1e-4),
    "i-cfm": dict(method="i-cfm"),
    "ot-cfm": dict(method="ot-cfm"),
    "regression": dict(method="regression", guidance_dropout=0.0),
    "fm+infill": dict(method="fm", sigma=1e-4, infill=True),
    "unconditional": dict(method="fm", sigma=1e-4, cond="none", guidance_dropout=0.0),
}


@dataclass(frozen=True)
class SpeechBenchSettings:
    """Settings of the benchmark (defaults: the table of the closing note of issue 17)."""

    models: tuple[str, ...] = tuple(MODELS)
    steps: int = 2000
    batch_size: int = 16
    lr: float = 2e-3
    ema_decay: float = 0.999
    guidance_dropout: float = 0.1
    guidance: float = 1.0
    temperatures: tuple[float, ...] = (0.667,)  # extra rows at euler 4 with the noise scaled (Matcha: 0.667)
    sentences: int = 200
    speakers: int = 4
    hidden: int = 64
    depth: int = 3
    euler_steps: tuple[int, ...] = (1, 2, 4, 10)
    dopri5: bool = True
    n_test: int | None = None  # test utterances scored (None: all)
    seed: int = 0
    device: str = "auto"

    @classmethod
    def quick(cls, **overrides: Any) -> SpeechBenchSettings:
        base = cls(
            models=("fm", "regression", "fm+infill"),
            steps=30,
            batch_size=8,
            sentences=16,
            speakers=2,
            hidden=16,
            depth=2,
            euler_steps=(1, 4),
            dopri5=False,
            temperatures=(),
            n_test=8,
        )
        return replace(base, **{k: v for k, v in overrides.items() if v is not None})

    def config(self, name: str) -> RunConfig:
        if name not in MODELS:
            raise ValueError(f"unknown model {name!r} of the speech bench; choose from {', '.join(MODELS)}")
        common: dict[str, Any] = dict(
            target="speech",
            cond="text",
            steps=self.steps,
            batch_size=self.batch_size,
            lr=self.lr,
            lr_schedule="cosine",
            ema_decay=self.ema_decay,
            guidance_dropout=self.guidance_dropout,
            speech_sentences=self.sentences,
            speech_speakers=self.speakers,
            hidden=self.hidden,
            depth=self.depth,
            seed=self.seed,
            device=self.device,
            eval_guidance=self.guidance,
            log_every=max(1, self.steps // 20),
            checkpoint_every=max(1, self.steps // 4),
        )
        return RunConfig(**{**common, **MODELS[name]})


@dataclass
class SpeechBenchResult:
    rows: list[dict[str, Any]]
    infill: dict[str, float] | None
    table: str
    files: dict[str, Path] = field(default_factory=dict)


def _trained(name: str, cfg: RunConfig, out: Path, log: Callable[[str], None] | None):
    """The model of ``cfg`` in ``out``: reused when that run finished with this config, else trained."""
    from flowmatch.runs.run import load_run, train_run

    done = out / "metrics.json"
    if done.is_file() and (out / "config.toml").is_file():
        try:
            same = RunConfig.from_toml(out / "config.toml").to_dict() == cfg.to_dict()
        except ValueError:
            same = False
        if same:
            seconds = json.loads(done.read_text())["train"]["train_time_s"]
            if log:
                log(f"{name}: reusing {out} (trained in {seconds:.0f} s)")
            return load_run(out, device=cfg.device).model, seconds
    if log:
        log(f"{name}: training {cfg.steps} steps into {out}")
    trainer, result, _ = train_run(cfg, out, force=out.exists(), quiet=True, evaluate=False, plots=False)
    return trainer.sampling_model.eval(), result.elapsed_s


def run_speech_bench(
    out: str | Path | None, settings: SpeechBenchSettings, *, log: Callable[[str], None] | None = print
) -> SpeechBenchResult:
    """Train the models of ``settings`` and print the table (module docstring)."""
    from flowmatch.runs.sequence_data import build_sequence_data
    from flowmatch.runs.speech_eval import evaluate_infilling, evaluate_sequences, speaker_classifier, test_batch

    root = Path(out if out is not None else "runs/bench/speech")
    data = build_sequence_data(settings.config("fm"))
    clf, train_mels, clf_info = speaker_classifier(data, root, settings.seed)
    rows: list[dict[str, Any]] = []
    models: dict[str, Any] = {}
    for name in settings.models:
        cfg = settings.config(name)
        model, seconds = _trained(name, cfg, root / name, log)
        models[name] = (model, cfg)
        mdata = data if cfg.cond == "text" else build_sequence_data(cfg)
        mclf = (clf, train_mels) if cfg.cond == "text" else (None, None)
        settings_list: list[tuple[str, int, float]] = [("euler", k, 1.0) for k in settings.euler_steps]
        if settings.dopri5:
            settings_list.append(("dopri5", 0, 1.0))
        settings_list += [("euler", 4, temp) for temp in settings.temperatures]
        if cfg.method == "regression":
            settings_list = [("regression", 0, 1.0)]
        elif cfg.cond == "none":
            settings_list = [("euler", max(settings.euler_steps), 1.0)]
        for solver, steps, temp in settings_list:
            w = settings.guidance if cfg.cond == "text" and cfg.method != "regression" else 1.0
            t0 = time.perf_counter()
            rep = evaluate_sequences(
                model,
                mdata,
                cfg,
                None,
                solver=solver if solver != "regression" else None,
                steps=steps or 1,
                n=settings.n_test,
                guidance=(w,),
                classifier=mclf,
                temperature=temp,
            )
            m = rep.rows[0].metrics
            row = {
                "model": name,
                "solver": solver,
                "steps": steps,
                "guidance": w,
                "temperature": temp,
                "train_s": seconds,
            }
            row.update(asdict(m))
            rows.append(row)
            if log:
                log(
                    f"{name} {solver} {steps} T={temp:g}: MCD {m.mcd:.2f}, GV {m.gv_ratio:.3f}, acc {m.speaker_accuracy}, "
                    f"NFE {m.nfe} ({time.perf_counter() - t0:.1f} s)"
                )
    infill = None
    if "fm+infill" in models:
        model, cfg = models["fm+infill"]
        batch = test_batch(data, settings.n_test, next(model.parameters()).device)
        steps = max(settings.euler_steps)
        infill = evaluate_infilling(model, data, cfg, batch, solver="euler", steps=steps, guidance=settings.guidance)
        if "fm" in models:
            other = evaluate_infilling(
                model,
                data,
                cfg,
                batch,
                solver="euler",
                steps=steps,
                guidance=settings.guidance,
                no_context_model=models["fm"][0],
            )
            infill["mcd_span_fm_text_only"] = other["mcd_span_no_context"]
        infill["steps"] = steps
    table = format_table(rows, infill, settings, clf_info)
    root.mkdir(parents=True, exist_ok=True)
    files = {
        "table": atomic_write_text(root / "table.md", table + "\n"),
        "results": atomic_write_text(
            root / "results.json",
            json.dumps(
                {"settings": asdict(settings), "rows": rows, "infill": infill, "classifier": clf_info}, indent=2
            ),
        ),
    }
    return SpeechBenchResult(rows, infill, table, files)


def format_table(rows: list[dict[str, Any]], infill: dict[str, float] | None, settings, clf_info) -> str:
    """The Markdown table of the benchmark, then the infilling comparison."""
    from flowmatch.metrics.report import format_table as markdown

    def num(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    out = []
    for r in rows:
        solver = (
            "one pass"
            if r["solver"] == "regression"
            else (f"euler {r['steps']}" if r["solver"] == "euler" else "dopri5")
        )
        out.append(
            {
                "model": r["model"],
                "sampler": solver,
                "w": f"{r['guidance']:g}",
                "T": f"{r['temperature']:g}",
                "NFE": str(r["nfe"]),
                "MCD (dB)": num(r["mcd"], ".2f"),
                "GV ratio": num(r["gv_ratio"], ".3f"),
                "speaker acc": "-" if r["speaker_accuracy"] is None else f"{100 * r['speaker_accuracy']:.1f}%",
                "FD": num(r["fd"], ".2f"),
                "RTF": num(r["rtf"], ".4f"),
                "train (s)": f"{r['train_s']:.0f}",
            }
        )
    real = next((r for r in rows if r["real_speaker_accuracy"] is not None), None)
    if real is not None:
        out.append(
            {
                "model": "real test utterances",
                "sampler": "-",
                "w": "-",
                "T": "-",
                "NFE": "-",
                "MCD (dB)": "0",
                "GV ratio": "1",
                "speaker acc": f"{100 * real['real_speaker_accuracy']:.1f}%",
                "FD": num(real["real_fd"], ".2f"),
                "RTF": "-",
                "train (s)": "-",
            }
        )
    text = markdown(out)
    text += (
        f"\n({settings.steps} steps of batch {settings.batch_size} per model; {settings.sentences} sentences x "
        f"{settings.speakers} speakers, test = held-out sentences; speaker classifier test accuracy "
        f"{100 * clf_info.get('test_accuracy', float('nan')):.1f}%)"
    )
    if infill is not None:
        text += (
            f"\ninfilling, {100 * infill['span_fraction']:.0f}% spans, euler {infill['steps']}: MCD on the span "
            f"{infill['mcd_span_infilled']:.2f} dB with the context, {infill['mcd_span_no_context']:.2f} dB for the "
            f"same network without it"
        )
        if "mcd_span_fm_text_only" in infill:
            text += f", {infill['mcd_span_fm_text_only']:.2f} dB for fm (text only)"
    return text
