"""A training run folder to the shipped artefacts: int8 .tflite, its JSON contract, MODEL_CARD.md.

The int8 model is calibrated on real training windows, then served through
``edge.model.Model`` exactly as the device serves it and compared with the float Keras
model on the validation speakers, clip by clip. If they disagree too much the conversion
fails loudly and nothing is written to the destination.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convert.int8 import tensor_specs, to_int8_tflite
from edge.model import EMOTIONS, Model, ModelContract, Normalization, write_model
from training.corpora import Clip
from training.features import extract
from training.split import TEST, TRAIN, VALIDATION, Split
from training.train import TrainSettings, evaluate_clips, window_set

log = logging.getLogger(__name__)

MAX_BYTES = 300 * 1024
LICENCE = (
    "Derived from RAVDESS (Livingstone & Russo 2018, CC BY-NC-SA 4.0), TESS (Pichora-Fuller & Dupuis 2020, "
    "CC BY-NC-ND 4.0) and SAVEE (Haq & Jackson 2009/2010, free for research use): non-commercial research use only, "
    "with attribution to all three corpora."
)


class ConversionError(RuntimeError):
    """The int8 model is not good enough or not small enough to ship; the message says which."""


@dataclass(frozen=True)
class Gates:
    """What the int8 model must achieve against its float twin on the validation speakers."""

    min_agreement: float = 0.95
    """Share of validation clips on which int8 and float pick the same label."""
    max_accuracy_drop_points: float = 1.5
    """Largest allowed fall of the validation accuracy (all corpora), in percentage points."""
    max_bytes: int = MAX_BYTES
    """Largest .tflite file."""


def _strip(per_corpus: dict) -> dict:
    """Scores without the confusion matrices, for the contract."""
    return {name: {k: v for k, v in s.items() if k != "confusion"} for name, s in per_corpus.items()}


def latency_ms(tflite_path: Path, windows: np.ndarray, repeats: int = 3) -> float:
    """Median milliseconds per window through edge.model.Model with one thread (a Pi core's view)."""
    model = Model(tflite_path, threads=1)
    model.predict(windows[:4])  # warm up the interpreter
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict(windows)
        times.append((time.perf_counter() - start) / len(windows) * 1000)
    return float(np.median(times))


def convert_run(
    run_dir: str | Path,
    clips: list[Clip],
    out: str | Path,
    cache_dir: str | Path = "cache",
    keras_out: str | Path | None = None,
    reports_dir: str | Path | None = None,
    gates: Gates | None = None,
    workers: int = 2,
) -> ModelContract:
    """Quantise, check, and write NAME.tflite + NAME.json + MODEL_CARD.md; returns the contract."""
    import keras

    from training.plots import plot_confusion

    gates = gates or Gates()
    run_dir, out = Path(run_dir), Path(out)
    report = json.loads((run_dir / "report.json").read_text())
    settings = TrainSettings.from_dict(report["settings"])
    split = Split(**{k: tuple(v) for k, v in report["split"].items()})
    norm = Normalization(**{k: tuple(v) if isinstance(v, list) else v for k, v in report["normalization"].items()})
    frontend = settings.frontend
    keras_model = keras.models.load_model(run_dir / "model.keras")

    train_clips = split.select(clips, TRAIN)
    val_clips, test_clips = split.select(clips, VALIDATION), split.select(clips, TEST)
    if not val_clips:
        raise ConversionError("no validation speakers in the data: the int8 model cannot be checked against the float one")
    features = extract(train_clips + val_clips + test_clips, frontend, cache_dir, (0,), workers=workers)
    n_train = len(train_clips)
    calibration = window_set(features[:n_train], frontend, settings.window_s, settings.train_hop_s, speech_only=True)
    val_ws = window_set(features[n_train : n_train + len(val_clips)], frontend, settings.window_s, settings.hop_s, False)
    test_ws = window_set(features[n_train + len(val_clips) :], frontend, settings.window_s, settings.hop_s, False)

    log.info("quantising with %d calibration windows drawn from %d training windows", min(500, len(calibration)), len(calibration))
    tflite = to_int8_tflite(keras_model, norm.apply(calibration.x), seed=settings.seed)
    spec_in, spec_out = tensor_specs(tflite)
    if len(tflite) > gates.max_bytes:
        raise ConversionError(
            f"the int8 model is {len(tflite) / 1024:.0f} KB, more than the {gates.max_bytes / 1024:.0f} KB allowed; use a smaller network"
        )

    contract = ModelContract(
        labels=EMOTIONS,
        frontend=frontend,
        window_s=settings.window_s,
        hop_s=settings.hop_s,
        input=spec_in,
        output=spec_out,
        sha256="",
        normalization=norm,
        training_data={
            "corpora": sorted({c.corpus for c in clips}),
            "split": report["data"],
            "augmentation": {"variants_per_clip": settings.augment_variants, **settings.augment.to_dict()},
            "train_settings": settings.to_dict(),
            "protocol": "speaker-independent: validation and test speakers never appear in training",
        },
        licence=LICENCE,
    )
    with tempfile.TemporaryDirectory() as tmp:
        candidate = Path(tmp) / f"{out.stem}.tflite"
        write_model(candidate, tflite, contract)
        device = Model(candidate)

        def float_predict(w):
            return keras_model.predict(norm.apply(w), batch_size=256, verbose=0)

        metrics: dict = {}
        agreement = {}
        full: dict = {}
        for role, ws in ((VALIDATION, val_ws), (TEST, test_ws)):
            if not ws.clips:
                continue
            float_clip, float_scores = evaluate_clips(float_predict, ws)
            int8_clip, int8_scores = evaluate_clips(device.predict, ws)
            agreement[role] = round(float(np.mean(float_clip.argmax(1) == int8_clip.argmax(1))), 4)
            metrics[role] = {"float": _strip(float_scores), "int8": _strip(int8_scores)}
            full[role] = {"float": float_scores, "int8": int8_scores}
        ms = latency_ms(candidate, val_ws.take(np.arange(min(200, len(val_ws)))))

    val = metrics[VALIDATION]
    drop = (val["float"]["all"]["wa"] - val["int8"]["all"]["wa"]) * 100
    problems = []
    if agreement[VALIDATION] < gates.min_agreement:
        problems.append(
            f"int8 and float agree on only {agreement[VALIDATION] * 100:.1f} % of validation clips (need {gates.min_agreement * 100:.0f} %)"
        )
    if drop > gates.max_accuracy_drop_points:
        problems.append(f"int8 validation accuracy is {drop:.1f} points below float (at most {gates.max_accuracy_drop_points} allowed)")
    if problems:
        raise ConversionError("; ".join(problems) + "; calibrate on more windows or change the network")

    metrics.update(
        int8_float_agreement=agreement,
        latency_ms_per_window_1_thread=round(ms, 3),
        size_bytes=len(tflite),
        parameters=int(keras_model.count_params()),
        note="clip level: the mean of the probabilities of each clip's speech windows, as the device does",
    )
    contract = dataclasses.replace(contract, metrics=metrics)
    contract = write_model(out, tflite, contract)
    write_card(out.parent / "MODEL_CARD.md", contract, report)
    if keras_out:
        Path(keras_out).parent.mkdir(parents=True, exist_ok=True)
        # An uncompiled clone: the same weights without Adam's two moment tensors per weight (a third of the size).
        bare = keras.models.clone_model(keras_model)
        bare.set_weights(keras_model.get_weights())
        bare.save(keras_out)
    if reports_dir:
        reports_dir = Path(reports_dir)
        reports_dir.mkdir(parents=True, exist_ok=True)
        plot_confusion(
            full[VALIDATION]["int8"], reports_dir / "confusion_int8_validation.png", "int8 model, validation speakers (clip level)"
        )
        if (run_dir / "curves.png").exists():
            shutil.copyfile(run_dir / "curves.png", reports_dir / "curves.png")
    log.info("wrote %s (%d bytes) and its contract", out, len(tflite))
    return contract


def _table(metrics: dict, role: str) -> list[str]:
    rows = ["| corpus | clips | float WA | float UA | int8 WA | int8 UA |", "|---|---:|---:|---:|---:|---:|"]
    f, q = metrics[role]["float"], metrics[role]["int8"]
    for name in f:
        rows.append(
            f"| {name} | {f[name]['clips']} | {f[name]['wa'] * 100:.1f} | {f[name]['ua'] * 100:.1f} | {q[name]['wa'] * 100:.1f} | {q[name]['ua'] * 100:.1f} |"
        )
    return rows


def write_card(path: Path, contract: ModelContract, report: dict) -> None:
    """MODEL_CARD.md: what the model is, what it was trained and judged on, how well it does, and its limits."""
    m = contract.metrics
    data = report["data"]
    s = report["settings"]
    recall = m[VALIDATION]["int8"].get("ravdess", m[VALIDATION]["int8"]["all"])["recall"]
    lines = [
        f"# Model card: {contract.name}",
        "",
        "Speech emotion recognition for Raspberry-Pi-class devices: a small CNN over MFCC windows, full int8.",
        "",
        "## What it does",
        f"- Input: a {contract.window_s:g} s window ({contract.window_frames} frames x {contract.frontend.n_ceps} MFCC) from the device's "
        f"own frontend (`edge.frontend`, {contract.frontend.n_mels} mel filters, 25 ms frames every 10 ms), "
        f"normalised `{contract.normalization.kind}`; a new window every {contract.hop_s:g} s.",
        f"- Output: probabilities over {', '.join(contract.labels)}.",
        f"- A clip's verdict is the mean over its speech windows. Network `{s['arch']}`"
        + (f" with `{s['pooling']}` pooling" if "pooling" in s else "")
        + (f", {s['ensemble']} of them averaged" if s.get("ensemble", 1) > 1 else "")
        + f", {m['parameters']} parameters, "
        f"{m['size_bytes'] / 1024:.0f} KB int8, {m['latency_ms_per_window_1_thread']:.2f} ms per window on one core of the build machine.",
        "",
        "## Data and speakers",
        "Speaker-independent: validation and test speakers never appear in training. The test speakers were used for no choice; "
        "how the settings were chosen (speaker cross-validation) is in training/README.md.",
        "",
        "| role | speakers | clips |",
        "|---|---|---|",
    ]
    for role in (TRAIN, VALIDATION, TEST):
        d = data[role]
        lines.append(f"| {role} | {', '.join(d['speakers']) or '-'} | {', '.join(f'{k} {v}' for k, v in d['clips'].items()) or '-'} |")
    class_weights = s.get("class_weights", "global")
    if isinstance(class_weights, bool):  # runs from before the per-corpus choice
        class_weights = "global" if class_weights else "none"
    weights = {
        "corpus": "Labels were weighted to count equally within each corpus, each corpus keeping its share of the windows.",
        "global": "Labels were weighted to count equally over all training windows.",
    }.get(class_weights, "Labels were not weighted.")
    lines += [
        "",
        weights,
        "TESS has two speakers only (both female, reading the same words): YAF is held out, OAF trains. "
        "RAVDESS actors 21-24 and SAVEE speaker KL were never available here and are kept for an independent evaluation.",
        f"Training clips were augmented ({s['augment_variants']} copies each: white, coloured and in-car noise at "
        f"{s['augment']['snr_db'][0]:g}-{s['augment']['snr_db'][1]:g} dB SNR, gain, time shift, "
        f"pitch shift of up to {max(abs(v) for v in s['augment']['pitch_semitones']):g} semitones, time stretch)"
        + (
            f", and each training window's mel axis was warped by a factor of {s['vtlp_range'][0]:g}-{s['vtlp_range'][1]:g} "
            "(vocal tract length perturbation)."
            if tuple(s.get("vtlp_range", (1.0, 1.0))) != (1.0, 1.0)
            else "."
        ),
        "",
        "## Metrics (clip level, validation speakers)",
        "",
        *_table(m, VALIDATION),
        "",
        f"int8 vs float top-1 agreement on validation clips: {m['int8_float_agreement'][VALIDATION] * 100:.1f} %.",
        "",
        "Per-class recall, int8, RAVDESS validation: " + ", ".join(f"{k} {v * 100:.0f} %" for k, v in recall.items()) + ".",
    ]
    if TEST in m:
        lines += ["", "## Metrics (clip level, test speakers, looked at once)", "", *_table(m, TEST)]
    lines += [
        "",
        "## Intended use and limits",
        "- Research and demonstration of on-device emotion recognition, e.g. noticing a raised, angry or fearful voice in a room or car.",
        "- Trained on *acted* emotions by adult native English speakers (North American and British), in quiet studios; "
        "real, spontaneous emotion is subtler and will be recognised less well. Other languages, children, and far-field "
        "microphones are untested. TESS and SAVEE have no 'calm' class.",
        "- Not for decisions about people (hiring, policing, health, insurance): an emotion label from a voice is a guess, "
        "and the error rates above are on the same kind of data it was trained on.",
        "",
        "## Licence",
        contract.licence,
        "",
        "Corpora: RAVDESS, Livingstone & Russo (2018), PLoS ONE 13(5): e0196391. TESS, Pichora-Fuller & Dupuis (2020), "
        "University of Toronto, Borealis. SAVEE, Haq & Jackson (2009/2010), University of Surrey.",
        "",
        f"Rebuild: `make model` (see training/README.md). Contract: `{contract.name}.json` (sha256 {contract.sha256[:16]}…).",
        "",
    ]
    path.write_text("\n".join(lines))
