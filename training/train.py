"""Train the emotion CNN on windows from the device's frontend, speaker-independently, and score it per clip.

A run folder holds everything convert needs and everything a person wants to look at:
``model.keras``, ``settings.json`` (the TrainSettings, ``training.settings``), ``report.json`` (split,
labels, float metrics per corpus and role, training history, timing), ``confusion.png``, ``curves.png``.

What the network is trained towards (targets, per-corpus label masks, weights, the masked loss) is
``training.objective``; the voice profiles drawn for training windows and held-out speakers are
``training.profiles``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from edge.model import FITTED
from training.augment import channel_curves, vtlp_matrices
from training.corpora import Clip, corpus_labels, labels_of
from training.features import ClipFeatures, extract
from training.metrics import evaluate_clips
from training.network import average_models, build_model
from training.objective import label_masks, masked_crossentropy, sample_weights, targets
from training.profiles import ProfileSampler, profile_probs, speaker_stats
from training.settings import TrainSettings
from training.split import TEST, TRAIN, VALIDATION, Split
from training.windows import WindowSet, fit_normalization, window_set

log = logging.getLogger(__name__)

MAX_PARAMS = 1_000_000  # an int8 file of about 1 MB at most


def _configure_tensorflow(seed: int, threads: int) -> None:
    import keras
    import tensorflow as tf

    try:
        if tf.config.threading.get_intra_op_parallelism_threads() != threads:  # set already (a curve adapts many times)
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        # TensorFlow fixes its thread pools when it first runs an op; a process that already
        # used it (a test session, a notebook) keeps them. Results stay deterministic.
        log.warning("TensorFlow is already running; it keeps its thread settings instead of %d threads", threads)
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def _batches(take, y_true: np.ndarray, weights: np.ndarray, settings: TrainSettings, seed: int):
    """Shuffled batches of (windows, [target, mask], weight), optionally SpecAugmented and mixed up.

    A keras PyDataset built lazily so that keras is imported only when a model is trained.
    ``take(index, rng)`` returns the (augmented,) normalised windows ``index`` as a new array.
    """
    import keras

    n, half = len(y_true), y_true.shape[1] // 2
    batch_size, alpha = settings.batch_size, settings.mixup_alpha
    time_mask, coeff_mask = settings.time_mask_frames, settings.coeff_mask

    class Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.rng = np.random.default_rng(seed)
            self.order = self.rng.permutation(n)

        def __len__(self):
            return int(np.ceil(n / batch_size))

        def __getitem__(self, i):
            pick = self.order[i * batch_size : (i + 1) * batch_size]
            bx, by, bw = take(pick, self.rng), y_true[pick], weights[pick]
            for j in range(len(bx) if time_mask or coeff_mask else 0):
                if time_mask:
                    width = self.rng.integers(0, time_mask + 1)
                    start = self.rng.integers(0, bx.shape[1] - width + 1)
                    bx[j, start : start + width, :] = 0.0  # 0 is the mean after normalisation
                if coeff_mask:
                    width = self.rng.integers(0, coeff_mask + 1)
                    start = self.rng.integers(0, bx.shape[2] - width + 1)
                    bx[j, :, start : start + width] = 0.0
            if alpha > 0:
                lam = self.rng.beta(alpha, alpha, size=len(pick)).astype(np.float32)
                lam = np.maximum(lam, 1 - lam)  # the first window stays dominant, so its weight still fits
                partner = self.rng.permutation(len(pick))
                bx = lam[:, None, None] * bx + (1 - lam[:, None, None]) * bx[partner]
                mixed = lam[:, None] * by[:, :half] + (1 - lam[:, None]) * by[partner, :half]
                by = np.concatenate([mixed, np.maximum(by[:, half:], by[partner, half:])], axis=1)
            return bx, by, bw

        def on_epoch_end(self):
            self.order = self.rng.permutation(n)

    return Batches()


def _epoch_scores(predict_fn, ws: WindowSet, labels, per_corpus, history: dict):
    """A keras callback that scores the validation clips after every epoch, as the device would."""
    import keras

    class EpochScores(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            _, scores = evaluate_clips(lambda w: predict_fn(self.model, w), ws, labels, per_corpus)
            for name, s in scores.items():
                if name != "all":
                    history.setdefault(name, []).append(s["ua_restricted"])

    return EpochScores()


def training_clips(clips: Sequence[Clip], settings: TrainSettings, split: Split) -> list[Clip]:
    """The clips a run trains on: the split's training speakers, of ``train_corpora`` if it names any."""
    return [c for c in split.select(clips, TRAIN) if not settings.train_corpora or c.corpus in settings.train_corpora]


def window_taker(train_ws: WindowSet, features: Mapping[tuple[str, int], ClipFeatures], norm, settings: TrainSettings):
    """``take(index, rng)``: training windows as the network sees them, drawn anew each epoch.

    Warped (VTLP), coloured (channel) if asked, then normalised, a share ``profile_p`` of them against their
    speaker's profile (those neither warped nor coloured: a profile is measured on the same voice through the
    same microphone, so it would take both away again). Training and adaptation use the same.
    """
    frontend = settings.frontend
    vtlp = tuple(settings.vtlp_range) != (1.0, 1.0)
    profiles = ProfileSampler(train_ws, features, settings.profile_clips) if settings.profile_p > 0 and norm.kind in FITTED else None

    def take(index: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        windows = train_ws.take(index)
        own = rng.random(len(index)) < settings.profile_p if profiles is not None else np.zeros(len(index), bool)
        if vtlp:
            warp = (rng.random(len(index)) < settings.vtlp_p) & ~own
            alphas = np.where(warp, rng.uniform(*settings.vtlp_range, size=len(index)), 1.0)
            windows = np.einsum("btc,bcd->btd", windows, vtlp_matrices(alphas, frontend))
        if settings.channel_db > 0:
            curves = channel_curves(len(index), settings.channel_db, frontend, rng)
            curves[(rng.random(len(index)) >= settings.channel_p) | own] = 0.0
            windows += curves[:, None, :]
        out = norm.apply(windows)
        if own.any():
            mean, std = profiles.draw(index[own], rng)
            centre = windows[own].mean(axis=1, keepdims=True) if norm.kind == "window_mean" else mean[:, None, :]
            against = (windows[own] - centre) / (std[:, None, :] + norm.eps)  # Normalization.with_profile, per window
            out[own, :, : against.shape[2]] = against
        return out

    return take


def load_features(
    clips: Sequence[Clip], settings: TrainSettings, cache_dir: str | Path, split: Split, workers: int = 2, progress: bool = True
) -> dict[tuple[str, int], ClipFeatures]:
    """Cached frames for a split: every variant of the training clips, the recorded clip of the others."""
    train_clips = training_clips(clips, settings, split)
    chosen = {c.path for c in train_clips}
    held_out = [c for c in clips if c.path not in chosen]
    variants = tuple(range(settings.augment_variants + 1))
    found = extract(train_clips, settings.frontend, cache_dir, variants, settings.augment, settings.speech, workers, progress)
    found += extract(held_out, settings.frontend, cache_dir, (0,), None, settings.speech, workers, progress)
    return {(f.clip.path, f.variant): f for f in found}


def train(
    clips: Sequence[Clip],
    settings: TrainSettings,
    out_dir: str | Path,
    cache_dir: str | Path = "cache",
    split: Split | None = None,
    workers: int = 2,
    threads: int = 2,
    progress: bool = True,
    features: Mapping[tuple[str, int], ClipFeatures] | None = None,
) -> dict:
    """Train, score the float model per clip on validation and test speakers, and write the run folder.

    ``features`` (from ``load_features`` over these or more clips) saves reading the cache again,
    e.g. once for all folds of a cross-validation.
    """
    import keras

    from training.plots import plot_confusion, plot_curves

    settings.check()
    started = time.monotonic()
    split = split or Split()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frontend = settings.frontend
    train_clips = training_clips(clips, settings, split)
    if not train_clips:
        raise ValueError("no training clips: every speaker is held out (or train_corpora names no corpus in the data)")
    labels = tuple(settings.labels) or labels_of(train_clips)
    per_corpus = corpus_labels(clips)
    log.info("%d training clips, %d held out; labels %s", len(train_clips), len(clips) - len(train_clips), ", ".join(labels))
    own_features = features is None
    if own_features:
        features = load_features(clips, settings, cache_dir, split, workers, progress)
    variants = range(settings.augment_variants + 1)
    train_features = [features[(c.path, v)] for c in train_clips for v in variants]
    features_s = time.monotonic() - started

    def held_out(role: str) -> WindowSet:
        chosen = [features[(c.path, 0)] for c in split.select(clips, role)]
        return window_set(chosen, frontend, settings.window_s, settings.hop_s, labels, settings.speech)

    train_ws = window_set(train_features, frontend, settings.window_s, settings.train_hop_s, labels, settings.speech, speech_only=True)
    del train_features  # the window set holds the frames now
    if own_features:  # and the augmented copies are not needed again (profiles and scores use the recordings)
        features = {key: f for key, f in features.items() if key[1] == 0}
    norm = fit_normalization(settings.normalization, train_ws)
    val_ws, test_ws = held_out(VALIDATION), held_out(TEST)
    log.info("%d training windows; %d validation windows", len(train_ws), len(val_ws))

    frames, coeffs = train_ws.window_frames, norm.width(train_ws.frames.shape[1])
    vtlp = tuple(settings.vtlp_range) != (1.0, 1.0)
    if vtlp:
        vtlp_matrices(np.ones(1), frontend)  # refuses a frontend it cannot warp, before any training

    take = window_taker(train_ws, features, norm, settings)

    masks = label_masks(train_ws, labels, per_corpus if settings.corpus_labels else None)
    y_true = np.concatenate([targets(train_ws.y, masks, settings.label_smoothing), masks], axis=1)
    weights = sample_weights(train_ws, settings, len(labels))

    def predict_with(model, windows: np.ndarray, normalization=None) -> np.ndarray:
        out = []
        for start in range(0, len(windows), 512):  # normalised in blocks: a whole set at once is a large copy
            out.append(model.predict((normalization or norm).apply(windows[start : start + 512]), batch_size=256, verbose=0))
        return np.concatenate(out) if out else np.zeros((0, len(labels)), np.float32)

    fit_started = time.monotonic()
    members, histories, epoch_ua = [], [], []
    for member in range(settings.ensemble):
        seed = settings.seed + member
        _configure_tensorflow(seed, threads)
        model = build_model(settings.arch, frames, coeffs, len(labels), settings.width, settings.dropout, settings.pooling)
        if model.count_params() * settings.ensemble > MAX_PARAMS:
            raise ValueError(
                f"{settings.ensemble} x the {settings.arch} network has {model.count_params() * settings.ensemble} parameters, "
                f"more than the {MAX_PARAMS} allowed"
            )
        steps = int(np.ceil(len(train_ws) / settings.batch_size)) * settings.epochs
        schedule = keras.optimizers.schedules.CosineDecay(settings.learning_rate, decay_steps=max(steps, 1))
        model.compile(optimizer=keras.optimizers.Adam(schedule), loss=masked_crossentropy(len(labels)))
        log.info("training network %d of %d (seed %d)", member + 1, settings.ensemble, seed)
        per_epoch: dict[str, list[float]] = {}
        callbacks = [_epoch_scores(predict_with, val_ws, labels, per_corpus, per_epoch)] if len(val_ws) else []
        fit = model.fit(
            _batches(take, y_true, weights, settings, seed), epochs=settings.epochs, callbacks=callbacks, verbose=2 if progress else 0
        )
        histories.append(fit.history)
        epoch_ua.append(per_epoch)
        # An uncompiled twin with the trained weights: the loss is a closure over the label count, which a
        # model file cannot name; convert and the benchmarks only run the model forward.
        bare = build_model(settings.arch, frames, coeffs, len(labels), settings.width, settings.dropout, settings.pooling)
        bare.set_weights(model.get_weights())
        members.append(bare)
    model = average_models(members, frames, coeffs)
    fit_s = time.monotonic() - fit_started
    history = {k: np.mean([h[k] for h in histories], axis=0) for k in histories[0]}
    validation_ua = {k: np.mean([e[k] for e in epoch_ua], axis=0) for k in (epoch_ua[0] if epoch_ua else {})}

    metrics, with_profile = {}, {}
    for role, ws in ((VALIDATION, val_ws), (TEST, test_ws)):
        if ws.clips:
            _, metrics[role] = evaluate_clips(lambda w: predict_with(model, w), ws, labels, per_corpus)
            if norm.kind in FITTED:  # each held-out speaker enrolled from their own (unlabelled) clips
                stats = speaker_stats([features[(c.path, 0)] for c in ws.clips])
                probs = profile_probs(lambda n, w: predict_with(model, w, n), ws, norm, stats)
                _, with_profile[role] = evaluate_clips(None, ws, labels, per_corpus, probs)
    model.save(out_dir / "model.keras")
    report = {
        "settings": settings.to_dict(),
        "labels": list(labels),
        "corpus_labels": {k: list(v) for k, v in per_corpus.items()},
        "normalization": dataclasses.asdict(norm),
        "split": split.to_dict(),
        "data": split.describe(clips),
        "windows": {"train": len(train_ws), "validation": len(val_ws), "test": len(test_ws)},
        "parameters": int(model.count_params()),
        "float": metrics,
        "float_with_profile": with_profile,
        "history": {k: [round(float(v), 4) for v in vals] for k, vals in history.items()},
        "validation_ua_per_epoch": {k: [round(float(v), 4) for v in vals] for k, vals in validation_ua.items()},
        "seconds": {"features": round(features_s, 1), "fit": round(fit_s, 1), "total": round(time.monotonic() - started, 1)},
    }
    (out_dir / "settings.json").write_text(json.dumps(settings.to_dict(), indent=2) + "\n")
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    if VALIDATION in metrics:
        plot_confusion(metrics[VALIDATION], labels, out_dir / "confusion.png", "float model, validation speakers")
    plot_curves(report["history"], report["validation_ua_per_epoch"], out_dir / "curves.png")
    log.info("validation: %s", summary_line(metrics.get(VALIDATION, {})))
    return report


def summary_line(per_corpus: dict) -> str:
    return "; ".join(
        f"{name} UA {s['ua']:.3f} restricted {s['ua_restricted']:.3f} ({s['clips']} clips)"
        for name, s in per_corpus.items()
        if name not in ("all", "mean")
    )
