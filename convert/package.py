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
import math
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convert.card import write_card
from convert.int8 import tensor_specs, to_int8_tflite
from edge.model import Model, ModelContract, Normalization, write_model
from training.corpora import Clip, corpus_labels
from training.features import extract
from training.licences import licence_text
from training.metrics import evaluate_clips
from training.settings import TrainSettings
from training.split import TEST, TRAIN, VALIDATION, Split
from training.windows import window_set

log = logging.getLogger(__name__)

MAX_BYTES = 1024 * 1024  # 1 MB: a Pi holds it in cache-friendly memory and loads it in milliseconds


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
    crossval: dict | None = None,
) -> ModelContract:
    """Quantise, check, and write NAME.tflite + NAME.json + MODEL_CARD.md; returns the contract.

    ``crossval`` (a crossval.json of the same settings) puts the leave-one-corpus-out table in the card and the contract.
    """
    import keras

    from training.plots import plot_confusion

    gates = gates or Gates()
    run_dir, out = Path(run_dir), Path(out)
    report = json.loads((run_dir / "report.json").read_text())
    settings = TrainSettings.from_dict(report["settings"])
    split = Split(**{k: tuple(v) for k, v in report["split"].items()})
    norm = Normalization(**{k: tuple(v) if isinstance(v, list) else v for k, v in report["normalization"].items()})
    frontend = settings.frontend
    keras_model = keras.models.load_model(run_dir / "model.keras", compile=False)  # inference only: no custom loss needed
    labels = tuple(report.get("labels") or ())
    if not labels:
        raise ConversionError(f"{run_dir}/report.json names no labels: it comes from an older training run; train it again")
    per_corpus = {k: tuple(v) for k, v in report.get("corpus_labels", corpus_labels(clips)).items()}

    # Only the corpora the run learnt from and was judged on: --data may hold more than it used.
    run_corpora = {corpus for role in report["data"].values() for corpus in role["clips"]}  # keyed by corpus: crema_d stays whole
    clips = [c for c in clips if c.corpus in run_corpora]
    if not clips:
        raise ValueError(
            f"none of the run's corpora ({', '.join(sorted(run_corpora))}) are in the data given; "
            "--data is the folder that holds the corpora's folders (e.g. ../shared/data), and --manifest your own"
        )
    train_clips = split.select(clips, TRAIN)
    val_clips, test_clips = split.select(clips, VALIDATION), split.select(clips, TEST)
    checked_on_training = not val_clips and bool(report.get("adapt"))
    if checked_on_training:  # an adaptation to one person's voice has no other speakers: check on its own clips
        log.warning("no held-out speakers: int8 is checked against float on the adaptation clips themselves")
        val_clips = train_clips
    if not val_clips:
        raise ConversionError("no validation speakers in the data: the int8 model cannot be checked against the float one")
    features = extract(train_clips + val_clips + test_clips, frontend, cache_dir, (0,), None, settings.speech, workers=workers)
    n_train = len(train_clips)

    def windows(chosen, hop_s: float, speech_only: bool = False):
        return window_set(chosen, frontend, settings.window_s, hop_s, labels, settings.speech, speech_only)

    calibration = windows(features[:n_train], settings.train_hop_s, speech_only=True)
    val_ws = windows(features[n_train : n_train + len(val_clips)], settings.hop_s)
    test_ws = windows(features[n_train + len(val_clips) :], settings.hop_s)

    log.info("quantising with %d calibration windows drawn from %d training windows", min(500, len(calibration)), len(calibration))
    pick = np.sort(np.random.default_rng(settings.seed).permutation(len(calibration))[:500])  # to_int8_tflite calibrates on 500
    tflite = to_int8_tflite(keras_model, norm.apply(calibration.take(pick)), seed=settings.seed)
    spec_in, spec_out = tensor_specs(tflite)
    if len(tflite) > gates.max_bytes:
        raise ConversionError(
            f"the int8 model is {len(tflite) / 1024:.0f} KB, more than the {gates.max_bytes / 1024:.0f} KB allowed; use a smaller network"
        )

    used = sorted({c.corpus for c in clips})
    corpus_languages = {corpus: next(c.language for c in clips if c.corpus == corpus) for corpus in used}
    corpus_labels_all = {k: list(v) for k, v in per_corpus.items()}
    base = (report.get("adapt") or {}).get("base_data")
    protocol = "speaker-independent: validation and test speakers never appear in training"
    if base:  # an adapted model derives from its base's corpora too: they stay in its data and its licence
        base_corpora = sorted(base["data"][TRAIN]["clips"])
        used = sorted(set(used) | set(base_corpora))
        corpus_languages = {**corpus_languages, **{k: v for k, v in base.get("corpus_languages", {}).items() if v}}
        corpus_labels_all = {**base.get("corpus_labels", {}), **corpus_labels_all}
        protocol = (
            f"adapted from {base['name']} (trained {protocol}) on the clips of training_data.split; "
            "scores on the adaptation clips' own speakers say nothing of new voices"
        )
    contract = ModelContract(
        labels=labels,
        frontend=frontend,
        window_s=settings.window_s,
        hop_s=settings.hop_s,
        input=spec_in,
        output=spec_out,
        sha256="",
        normalization=norm,
        speech=settings.speech,
        training_data={
            "corpora": used,
            "languages": sorted({language for language in corpus_languages.values() if language}),
            "corpus_languages": corpus_languages,
            "corpus_labels": corpus_labels_all,
            "split": report["data"],
            "augmentation": {"variants_per_clip": settings.augment_variants, **settings.augment.to_dict()},
            "train_settings": settings.to_dict(),
            "protocol": protocol,
            **({"adapted_from": base} if base else {}),
        },
        licence=licence_text(used),
    )
    with tempfile.TemporaryDirectory() as tmp:
        candidate = Path(tmp) / f"{out.stem}.tflite"
        write_model(candidate, tflite, contract)
        device = Model(candidate)

        def float_predict(w):
            return np.concatenate(
                [keras_model.predict(norm.apply(w[i : i + 512]), batch_size=256, verbose=0) for i in range(0, len(w), 512)]
            )

        metrics: dict = {}
        agreement = {}
        full: dict = {}
        for role, ws in ((VALIDATION, val_ws), (TEST, test_ws)):
            if not ws.clips:
                continue
            float_clip, float_scores = evaluate_clips(float_predict, ws, labels, per_corpus)
            int8_clip, int8_scores = evaluate_clips(device.predict, ws, labels, per_corpus)
            agreement[role] = round(float(np.mean(float_clip.argmax(1) == int8_clip.argmax(1))), 4)
            metrics[role] = {"float": _strip(float_scores), "int8": _strip(int8_scores)}
            full[role] = {"float": float_scores, "int8": int8_scores}
        ms = latency_ms(candidate, val_ws.take(np.arange(min(200, len(val_ws)))))

    val = metrics[VALIDATION]
    drop = (val["float"]["all"]["wa"] - val["int8"]["all"]["wa"]) * 100
    problems = []
    # One clip in a dozen is 8 %: a small validation set may always lose one clip to a coin-flip between two
    # labels, so one disagreement is allowed however few the clips (unless the gate asks for more than all of them).
    n = len(val_ws.clips)
    disagree = round((1 - agreement[VALIDATION]) * n)
    allowed = max(math.floor((1 - gates.min_agreement) * n), 1 if gates.min_agreement <= 1 else -1)
    if disagree > allowed:
        problems.append(
            f"int8 and float agree on only {agreement[VALIDATION] * 100:.1f} % of validation clips "
            f"(need {gates.min_agreement * 100:.0f} %, or all but one of a few)"
        )
    if drop > gates.max_accuracy_drop_points:
        problems.append(f"int8 validation accuracy is {drop:.1f} points below float (at most {gates.max_accuracy_drop_points} allowed)")
    if problems:
        raise ConversionError("; ".join(problems) + "; calibrate on more windows or change the network")

    metrics.update(
        int8_float_agreement=agreement,
        latency_ms_per_window_1_thread=round(ms, 3),
        size_bytes=len(tflite),
        **({"validation_is_training": True} if checked_on_training else {}),
        # What the base was trained on is training_data.adapted_from, once.
        **({"adapted": {k: v for k, v in report["adapt"].items() if k != "base_data"}} if report.get("adapt") else {}),
        **({"leave_one_corpus_out": {k: crossval[k] for k in ("protocol", "corpora", "mean")}} if crossval else {}),
        parameters=int(keras_model.count_params()),
        note="clip level: the mean of the probabilities of each clip's speech windows, as the device does",
    )
    contract = dataclasses.replace(contract, metrics=metrics)
    contract = write_model(out, tflite, contract)
    if crossval:
        differ = sorted(k for k, v in crossval["settings"].items() if k != "ensemble" and report["settings"].get(k) != v)
        if differ:
            log.warning(
                "the cross-validation was run with other settings (%s): its table describes them, not this model", ", ".join(differ)
            )
        crossval = {**crossval, "settings_differ": differ}
    write_card(out.parent / "MODEL_CARD.md", contract, report, crossval)
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
            full[VALIDATION]["int8"], labels, reports_dir / "confusion_int8_validation.png", "int8 model, validation speakers (clip level)"
        )
        if (run_dir / "curves.png").exists():
            shutil.copyfile(run_dir / "curves.png", reports_dir / "curves.png")
    log.info("wrote %s (%d bytes) and its contract", out, len(tflite))
    return contract
