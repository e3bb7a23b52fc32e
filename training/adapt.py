"""Few-shot adaptation: adapt a trained model to a few labelled clips of a new language or voice, in seconds.

The base is a training run folder (``model.keras`` + ``report.json``, e.g. one fold of a cross-validation)
or the shipped model (its contract names its training settings; its float twin is ``models/ser_cnn.keras``).
The clips come from manifests (``path,label[,speaker][,corpus]``), any language, any subset of the labels:
each window's loss is taken over the labels its corpus has, so a manifest with four labels teaches
those four and says nothing against the rest.

With few clips (``layers="auto"``, the default, under ``auto_all_from`` clips of some label; or
``layers="head"``) the networks stay as trained and only each one's last dense layer is refitted, on the
embeddings of the clips and their augmented copies: a softmax regression over the manifest's labels,
pulled toward the trained weights by ``head_l2`` (L2-SP), solved by L-BFGS in seconds. A few dozen clips
cannot teach 240,000 weights without teaching them their speakers, but they can re-aim the last layer, and
give it a second input the frozen network does not see (``window_stats``, ``with_window_stats``): per
coefficient, the level, spread and movement of the window itself, which a new language or microphone changes.
On corpora held out of training, 10 clips per emotion from other speakers took new ASED speakers from 0.39 to
0.54 restricted UA, SAVEE from 0.33 to 0.45 and TurEV-DB from 0.37 to 0.40, and left nEMO about where it was
(0.42 to 0.41); the last layer alone took them to 0.51, 0.39, 0.37 and 0.42. From 20 clips of every label on,
``auto`` fine-tunes every layer by Adam (``layers="all"``; ``"top"`` keeps the first block), then refits the
last layer and the statistics the same way (training/README.md, "Adaptation"). With ``profiles`` the
adaptation also learns from windows normalised against their own speaker's statistics (as ``python -m edge
enroll`` measures them), so the adapted model serves with and without a voice profile, as the base was trained.
The result is a run folder that ``python -m convert`` turns into an int8 model with its contract and card,
through the same checks.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.model import Normalization
from training.corpora import Clip, corpus_labels
from training.metrics import evaluate_clips
from training.objective import label_masks, masked_crossentropy, sample_weights, targets
from training.profiles import profile_probs, speaker_stats
from training.settings import TrainSettings
from training.split import TRAIN, VALIDATION, Split
from training.train import _batches, _configure_tensorflow, load_features, window_taker
from training.windows import fit_normalization, window_set

log = logging.getLogger(__name__)

LAYERS = ("auto", "head", "all", "top")

STATS_SPREAD_FLOOR = 0.05
"""Least spread a window statistic is standardised by: the statistics share one int8 tensor whose step is about
0.015, so a statistic spread less than a few steps is mostly rounding."""


@dataclass(frozen=True)
class AdaptSettings:
    """How a trained model is adapted to a few labelled clips."""

    epochs: int = 12
    """Passes over the adaptation windows (layers all and top)."""
    learning_rate: float = 3e-4
    """Adam's learning rate, constant: a tenth of training's peak, so the model moves but does not forget (all, top)."""
    batch_size: int = 32
    """Windows per step (all, top)."""
    augment_variants: int = 4
    """Augmented audio copies of each labelled clip (noise, gain, pitch, tempo), besides the clip itself."""
    seed: int = 7
    """Seed for the order of windows and the warps."""
    layers: str = "auto"
    """head: only the last dense layer of each network, refitted on frozen embeddings (L-BFGS, ``head_l2``); all:
    every layer fine-tuned by Adam (batch norm frozen); top: the same but the first convolution block (the
    low-level spectral filters) stays as training made it; auto: all when every label has ``auto_all_from`` clips
    or more, else head."""
    auto_all_from: int = 20
    """layers=auto: clips per label from which every layer is fine-tuned (measured: below it the head alone did
    as well or better on the held-out corpora, from it Adam did better on three of four)."""
    head_l2: float = 0.3
    """Weight of the squared distance of the refitted last layer from the one it starts from (the trained one; after
    Adam, the tuned one), against the mean cross-entropy of the windows; smaller follows the clips more (chosen on
    ASED, nEMO, TurEV and SAVEE held out)."""
    window_stats: bool = True
    """Give each network's softmax a second input, statistics of the window itself (``with_window_stats``), fitted
    jointly with the last layer by L-BFGS (layers=head; after Adam for all and top)."""
    stats_l2: float = 0.3
    """With window_stats: weight of the squared distance of the statistics' weights (standardised on the adaptation
    windows) from where they start (zero; an adapted model's own when it is adapted again), against the mean
    cross-entropy."""
    profiles: bool = True
    """Learn from windows normalised against their speaker's own statistics too, as the base model was trained, so the
    adapted model works with and without a voice profile: head, each window twice (population's and its speaker's,
    for speakers with at least the base's ``profile_clips[0]`` clips); all and top, the base's share ``profile_p`` of
    windows against their speaker's statistics from a few of their clips."""
    renormalize: bool = False
    """Measure the normalisation's mean and spread on the new clips instead of keeping the training population's
    (a new corpus, microphone or language brings its own level and colour; the statistics need no labels)."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class Base:
    """A trained float model and what it was trained with."""

    keras_path: Path
    settings: TrainSettings
    labels: tuple[str, ...]
    normalization: Normalization
    provenance: dict = dataclasses.field(default_factory=dict)
    """What the base was trained on, for the adapted model's contract and card: ``data`` (speakers and clips per
    role and corpus), ``corpus_languages``, ``corpus_labels`` and, when known, ``leave_one_corpus_out``."""


def load_base(base: str | Path, keras_path: str | Path | None = None) -> Base:
    """A run folder, or a .tflite whose contract names its training settings (the float twin from ``keras_path``)."""
    from training.corpora import LANGUAGES

    base = Path(base)
    if base.is_dir():
        if not (base / "report.json").is_file() or not (base / "model.keras").is_file():
            raise ValueError(
                f"{base} is not a training run folder (it needs model.keras and report.json, as `python -m training train` "
                "or one fold of `crossval` writes, e.g. runs/crossval/fold5), nor a .tflite model"
            )
        report = json.loads((base / "report.json").read_text())
        norm = report["normalization"]
        own = {
            "name": str(base),
            "data": report["data"],
            "corpus_languages": {c: LANGUAGES.get(c, "") for c in report["data"][TRAIN]["clips"]},
            "corpus_labels": report.get("corpus_labels", {}),
        }
        adapted = report.get("adapt", {}).get("base_data")  # a run adapted before: its base, and its own clips on top
        return Base(
            base / "model.keras",
            TrainSettings.from_dict(report["settings"]),
            tuple(report["labels"]),
            Normalization(**{k: tuple(v) if isinstance(v, list) else v for k, v in norm.items()}),
            _chained(adapted, own) if adapted else own,
        )
    from edge.model import Model

    if not base.is_file():
        raise FileNotFoundError(f"--base {base}: no such model or run folder")
    contract = Model(base).contract
    settings = contract.training_data.get("train_settings")
    if not settings:
        raise ValueError(f"{base}: its contract does not name the settings it was trained with; give a training run folder instead")
    if keras_path is None:
        keras_path = _float_twin(base)
    keras_path = Path(keras_path)
    if not keras_path.is_file():
        raise FileNotFoundError(f"the float model {keras_path} is missing; give --keras the float twin of {base.name}")
    td = contract.training_data
    own = {
        "name": f"{'the shipped model ' if base.resolve() == SHIPPED.resolve() else ''}{base.name} (sha256 {contract.sha256[:12]}…)",
        "data": td.get("split", {}),
        "corpus_languages": td.get("corpus_languages", {}),
        "corpus_labels": td.get("corpus_labels", {}),
        **({"leave_one_corpus_out": contract.metrics["leave_one_corpus_out"]} if "leave_one_corpus_out" in contract.metrics else {}),
    }
    adapted = td.get("adapted_from")
    return Base(
        keras_path, TrainSettings.from_dict(settings), contract.labels, contract.normalization, _chained(adapted, own) if adapted else own
    )


def _chained(first: dict, then: dict) -> dict:
    """The provenance of a model adapted twice: what ``first`` describes, with the clips the model ``then`` describes was
    adapted on added to its training data (so a later card, licence and zero-shot check count them too)."""
    a, b = first["data"][TRAIN], then["data"][TRAIN]
    corpora = set(a["clips"]) | set(b["clips"])
    train = {
        "speakers": sorted(set(a["speakers"]) | set(b["speakers"])),
        "clips": {c: a["clips"].get(c, 0) + b["clips"].get(c, 0) for c in sorted(corpora)},
    }
    return {
        **first,
        "name": f"{then['name']}, adapted from {first['name']}",
        "data": {**first["data"], TRAIN: train},
        "corpus_languages": {**then.get("corpus_languages", {}), **{k: v for k, v in first.get("corpus_languages", {}).items() if v}},
        "corpus_labels": {**first.get("corpus_labels", {}), **then.get("corpus_labels", {})},
    }


SHIPPED = Path(__file__).resolve().parents[1] / "edge" / "models" / "ser_cnn_int8.tflite"
SHIPPED_FLOAT = Path(__file__).resolve().parents[1] / "models" / "ser_cnn.keras"


def check_out(out: str | Path) -> None:
    """ValueError in one sentence when ``out`` cannot take an adapted run: a file, or a folder holding anything but an
    earlier adaptation (a training run or a cross-validation fold must never be written over by mistake)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; adapt writes a run folder (model.keras, report.json, int8/): give a folder")
    if out.is_dir() and any(out.iterdir()):
        try:
            earlier = "adapt" in json.loads((out / "report.json").read_text())
        except (OSError, ValueError):
            earlier = False
        if not earlier:
            raise ValueError(f"--out {out} holds other files and no earlier adaptation; give a new or empty folder")
        log.info("replacing the earlier adaptation in %s", out)


def _float_twin(tflite: Path) -> Path:
    """The float model an int8 .tflite was converted from: the shipped one's, or that of the run folder it sits in
    (``python -m training adapt`` writes RUN/int8/ser_cnn_int8.tflite beside RUN/model.keras); ValueError otherwise,
    never another model's weights."""
    if tflite.resolve() == SHIPPED.resolve():
        return SHIPPED_FLOAT
    for folder in (tflite.parent, tflite.parent.parent):
        if (folder / "model.keras").is_file() and (folder / "report.json").is_file():
            return folder / "model.keras"
    raise ValueError(f"--base {tflite}: its float model is not beside it; give it with --keras, or give the run folder as --base")


def adapt(
    base: Base,
    clips: Sequence[Clip],
    out_dir: str | Path,
    settings: AdaptSettings | None = None,
    cache_dir: str | Path = "cache",
    validation: Sequence[str] = (),
    workers: int = 2,
    threads: int = 2,
    progress: bool = True,
    features=None,
) -> dict:
    """Adapt ``base`` to ``clips`` (speakers in ``validation`` held out to score) and write a run folder for convert."""
    import keras

    settings = settings or AdaptSettings()
    if settings.layers not in LAYERS:
        raise ValueError(f"layers={settings.layers!r}: choose {', '.join(LAYERS)}")
    started = time.monotonic()
    out_dir = Path(out_dir)
    unknown = sorted({c.label for c in clips} - set(base.labels))
    if unknown:
        raise ValueError(f"the clips have labels the base model does not: {', '.join(unknown)}; its labels are {', '.join(base.labels)}")
    train_settings = dataclasses.replace(base.settings, augment_variants=settings.augment_variants, labels=base.labels, train_corpora=())
    split = Split(validation=tuple(validation), test=())
    per_corpus = corpus_labels(clips)
    lonely = sorted(f"{corpus} ({labels[0]})" for corpus, labels in per_corpus.items() if len(labels) < 2)
    if lonely:
        raise ValueError(
            f"each corpus needs clips of two labels or more, since it is judged among its own labels only: {', '.join(lonely)} "
            "has one; add clips of other emotions, or give these clips the corpus column of a set that has them"
        )
    if features is None:
        features = load_features(clips, train_settings, cache_dir, split, workers, progress)
    frontend, labels = train_settings.frontend, base.labels
    chosen = [features[(c.path, v)] for c in split.select(clips, TRAIN) for v in range(settings.augment_variants + 1)]
    if not chosen:
        raise ValueError("no clips to adapt on: every speaker is held out for validation")
    train_ws = window_set(chosen, frontend, train_settings.window_s, train_settings.train_hop_s, labels, train_settings.speech, True)
    val_ws = window_set(
        [features[(c.path, 0)] for c in split.select(clips, VALIDATION)], frontend, train_settings.window_s, train_settings.hop_s, labels
    )
    masks = label_masks(train_ws, labels, per_corpus)
    y_true = np.concatenate([targets(train_ws.y, masks, train_settings.label_smoothing), masks], axis=1)
    weights = sample_weights(train_ws, dataclasses.replace(train_settings, class_weights="corpus"), len(labels))

    norm = fit_normalization(base.normalization.kind, train_ws) if settings.renormalize else base.normalization
    if settings.renormalize and norm.kind == "window":
        norm = base.normalization
    recorded = {(c.path, 0): features[(c.path, 0)] for c in split.select(clips, TRAIN)}

    _configure_tensorflow(settings.seed, threads)
    model = keras.models.load_model(base.keras_path, compile=False)
    fewest = min(Counter(c.label for c in split.select(clips, TRAIN)).values(), default=0)
    layers = settings.layers if settings.layers != "auto" else "all" if fewest >= settings.auto_all_from else "head"
    if progress:
        log.info("adapting %s (%d clips of the rarest label)", "every layer" if layers == "all" else layers, fewest)
    own = _speaker_normalizations(norm, recorded.values(), train_settings.profile_clips[0]) if settings.profiles else {}
    stats_l2 = settings.stats_l2 if settings.window_stats else None
    _check_stats_kept(model, stats_l2, base.keras_path)
    if layers == "head":
        model, history = _refit_heads(model, train_ws, norm, own, masks, weights, settings.head_l2, stats_l2)
    else:
        # Adam sees what training saw: warps, and (with profiles) a share of windows against their speaker's statistics.
        seen = train_settings if settings.profiles else dataclasses.replace(train_settings, profile_p=0.0)
        take = window_taker(train_ws, recorded, norm, seen)
        history = _fine_tune(model, layers, settings, progress, take, y_true, weights, train_settings, len(labels))
        tuned = keras.models.load_model(base.keras_path, compile=False)
        tuned.set_weights(model.get_weights())  # as trained, without Adam's frozen flags and optimiser
        model = tuned
        if stats_l2 is not None:  # then the statistics branch, with the tuned last layer
            model, refit = _refit_heads(model, train_ws, norm, own, masks, weights, settings.head_l2, stats_l2)
            history["refit"] = refit

    def predict(windows: np.ndarray) -> np.ndarray:
        return np.concatenate([model.predict(norm.apply(windows[i : i + 512]), verbose=0) for i in range(0, len(windows), 512)])

    metrics = {VALIDATION: evaluate_clips(predict, val_ws, labels, per_corpus)[1]} if val_ws.clips else {}
    bare = keras.models.load_model(base.keras_path, compile=False)
    before = {}
    if val_ws.clips:  # the same speakers before adaptation: what it bought

        def predict_base(windows: np.ndarray) -> np.ndarray:
            n = base.normalization
            return np.concatenate([bare.predict(n.apply(windows[i : i + 512]), verbose=0) for i in range(0, len(windows), 512)])

        before = evaluate_clips(predict_base, val_ws, labels, per_corpus)[1]
    out_dir.mkdir(parents=True, exist_ok=True)  # only now: a run refused above leaves nothing behind
    model.save(out_dir / "model.keras")
    report = {
        "settings": train_settings.to_dict(),
        "adapt": {
            **settings.to_dict(),
            "layers": layers,
            "layers_asked": settings.layers,
            # Whether the last layer now has window statistics (the setting, or a base adapted with them).
            "window_stats": stats_l2 is not None,
            "base": str(base.keras_path),
            "base_data": base.provenance,
            "profiled_speakers": history.get("profiled_speakers"),
        },
        "labels": list(labels),
        "corpus_labels": {k: list(v) for k, v in per_corpus.items()},
        "normalization": dataclasses.asdict(norm),
        "split": split.to_dict(),
        "data": split.describe(clips),
        "windows": {"train": len(train_ws), "validation": len(val_ws)},
        "parameters": int(model.count_params()),
        "float": metrics,
        **({"base_float": before} if before else {}),
        "history": history,
        "seconds": {"total": round(time.monotonic() - started, 1)},
    }
    (out_dir / "settings.json").write_text(json.dumps(train_settings.to_dict(), indent=2) + "\n")
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _fine_tune(
    model, layers: str, settings: AdaptSettings, progress: bool, take, y_true, weights, train_settings: TrainSettings, n_labels: int
) -> dict:
    """Every layer (or all but the first block) fine-tuned by Adam, batch norm frozen; the loss per epoch."""
    import keras

    kept = {
        "all": lambda layer: False,
        "top": lambda layer: layer.name in ("conv0", "dw0"),
    }
    for layer in _layers(model):
        # Batch norm keeps its inference-mode statistics: a few dozen clips cannot estimate them.
        if isinstance(layer, keras.layers.BatchNormalization) or (layer.weights and kept[layers](layer)):
            layer.trainable = False
    model.compile(optimizer=keras.optimizers.Adam(settings.learning_rate), loss=masked_crossentropy(n_labels))
    batches = _batches(
        take, y_true, weights, dataclasses.replace(train_settings, batch_size=settings.batch_size, mixup_alpha=0.0), settings.seed
    )
    fit = model.fit(batches, epochs=settings.epochs, verbose=2 if progress else 0)
    return {k: [round(float(v), 4) for v in vals] for k, vals in fit.history.items()}


def _speaker_normalizations(norm: Normalization, features, min_clips: int) -> dict[str, Normalization]:
    """Each speaker's own normalisation (a voice profile from their clips' speech frames), for speakers with
    ``min_clips`` clips or more (training's ``profile_clips`` lower bound: a few sentences, as at enrolment)."""
    features = list(features)
    counts = Counter(f.clip.speaker for f in features)
    return {
        speaker: norm.with_profile(stats.mean, stats.std)
        for speaker, stats in speaker_stats(features).items()
        if counts[speaker] >= min_clips and stats.count > 0
    }


def _refit_heads(model, ws, norm: Normalization, own: dict[str, Normalization], masks, weights, l2: float, stats_l2: float | None):
    """Each network's last dense layer refitted on its frozen embeddings of ``ws`` (and of ``own``'s views); with
    ``stats_l2``, jointly with a window-statistics branch (``with_window_stats``). Returns the model (rebuilt when a
    branch was added) and what the fits did."""
    import keras

    speakers = ws.clip_speakers()[ws.clip]
    views = [(np.arange(len(ws)), norm)]
    views += [(np.flatnonzero(speakers == s), n) for s, n in own.items() if (speakers == s).any()]
    rows = np.concatenate([index for index, _ in views])
    history = {"profiled_speakers": len(views) - 1, "windows": len(rows), "loss_before": [], "loss_after": [], "iterations": []}
    _check_stats_kept(model, stats_l2, "the model")
    members = []
    for net in _members(model):
        parts = _head_parts(net)
        embed = keras.Model(net.inputs, parts.head.input)
        W0, b0 = parts.head.get_weights()
        inputs = [embed]
        if stats_l2 is not None:
            inputs.append(keras.Model(net.inputs, parts.stats.output) if parts.stats else _window_stats_model(net))
        chunks = [
            [m.predict(n.apply(ws.take(index[i : i + 512])), verbose=0) for m in inputs]
            for index, n in views
            for i in range(0, len(index), 512)
        ]
        E = np.concatenate([c[0] for c in chunks])
        l2s = np.full(len(W0), l2)
        if stats_l2 is not None:
            S = np.concatenate([c[1] for c in chunks]).astype(np.float64)
            # Fitted on standardised statistics (one pull for all of them), folded back into the weights after.
            # A statistic that hardly varies gets no more than a few int8 steps' worth of weight.
            mu, sd = S.mean(axis=0), np.maximum(S.std(axis=0), STATS_SPREAD_FLOOR)
            V0 = parts.stats_dense.get_weights()[0].astype(np.float64) if parts.stats else np.zeros((S.shape[1], W0.shape[1]))
            E = np.concatenate([E, (S - mu) / sd], axis=1)
            b0 = b0 + mu @ V0
            W0 = np.concatenate([W0, sd[:, None] * V0])
            l2s = np.concatenate([l2s, np.full(S.shape[1], stats_l2)])
        W, b, fit = fit_softmax_head(E, ws.y[rows], masks[rows], weights[rows], W0, b0, l2s)
        if stats_l2 is not None:
            d = len(parts.head.get_weights()[0])
            V = W[d:] / sd[:, None]
            W, b = W[:d], b - mu @ V
            net = net if parts.stats else with_window_stats(net)
            _head_parts(net).stats_dense.set_weights([V.astype(np.float32)])
            history["window_stats"] = int(S.shape[1])
        _head_parts(net).head.set_weights([W.astype(np.float32), b.astype(np.float32)])
        members.append(net)
        for key in ("loss_before", "loss_after", "iterations"):
            history[key].append(fit[key])
    if len(members) == 1:
        return members[0], history
    from training.network import average_models

    frames, coeffs = model.inputs[0].shape[1:]
    return average_models(members, frames, coeffs), history


def fit_softmax_head(embeddings, y, masks, weights, W0, b0, l2, max_iter: int = 300) -> tuple[np.ndarray, np.ndarray, dict]:
    """A dense softmax layer refitted to (embeddings, y), each row's softmax over its ``masks`` row, held near (W0, b0).

    Minimises the weighted mean cross-entropy + ``l2`` * ||W - W0||^2 by L-BFGS (the bias is free); ``l2`` is one
    weight, or one per input. Labels no row allows keep their trained weights exactly.
    """
    import scipy.optimize

    E = np.asarray(embeddings, np.float64)
    masks = np.asarray(masks, bool)
    w = np.asarray(weights, np.float64) / max(float(np.sum(weights)), 1e-12)
    y = np.asarray(y, int)
    d, n_labels = W0.shape
    onehot = np.eye(n_labels)[y]
    W0, b0 = np.asarray(W0, np.float64), np.asarray(b0, np.float64)
    pull = np.broadcast_to(np.asarray(l2, np.float64), (d,))[:, None]

    def loss_and_grad(theta):
        W, b = theta[: d * n_labels].reshape(d, n_labels), theta[d * n_labels :]
        z = np.where(masks, E @ W + b, -np.inf)
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        loss = -np.sum(w * np.log(p[np.arange(len(y)), y] + 1e-12)) + np.sum(pull * (W - W0) ** 2)
        g = (p - onehot) * w[:, None]
        return loss, np.concatenate([(E.T @ g + 2 * pull * (W - W0)).ravel(), g.sum(axis=0)])

    theta0 = np.concatenate([W0.ravel(), b0])
    before = loss_and_grad(theta0)[0]
    res = scipy.optimize.minimize(loss_and_grad, theta0, jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    W, b = res.x[: d * n_labels].reshape(d, n_labels), res.x[d * n_labels :]
    return W, b, {"loss_before": round(float(before), 4), "loss_after": round(float(res.fun), 4), "iterations": int(res.nit)}


@dataclass
class _HeadParts:
    head: object
    """The dense layer over the embedding (the last layer, or ``probs_embedding`` in a network with a branch)."""
    stats: object | None = None
    """The ``window_stats`` layer, in a network with a branch."""
    stats_dense: object | None = None
    """The ``probs_window_stats`` layer, in a network with a branch."""


def _head_parts(net) -> _HeadParts:
    names = {layer.name for layer in net.layers}
    if "probs_window_stats" in names:
        return _HeadParts(net.get_layer("probs_embedding"), net.get_layer("window_stats"), net.get_layer("probs_window_stats"))
    return _HeadParts(net.layers[-1])


def _check_stats_kept(model, stats_l2: float | None, name) -> None:
    """An adapted model's window statistics are part of its last layer: refitting that layer without them would fit
    another model than the one that runs."""
    if stats_l2 is None and any(_head_parts(net).stats is not None for net in _members(model)):
        raise ValueError(
            f"{name} already has window statistics (it was adapted with them), and --no-window-stats cannot take them "
            "out; adapt the model it was adapted from instead, or leave --no-window-stats off"
        )


def _members(model) -> list:
    """Each network: the model itself, or each member of an ensemble."""
    import keras

    return [layer for layer in model.layers if isinstance(layer, keras.Model)] or [model]


def _window_steps(x, coeffs: int):
    """Per coefficient, over the window: the mean of the frames, of their positive part and of the positive part of
    the frame-to-frame steps (3 x ``coeffs`` statistics: level, spread and movement), from layers with int8 kernels;
    the one fixed kernel holds only -1 and 1."""
    from keras import layers

    steps = layers.DepthwiseConv1D(2, use_bias=False, trainable=False, name="window_steps")
    step = steps(x)
    kernel = np.zeros((2, coeffs, 1), np.float32)
    kernel[:, :, 0] = [[-1.0], [1.0]]  # each frame less the one before
    steps.set_weights([kernel])
    mean = layers.GlobalAveragePooling1D
    parts = [
        mean(name="frame_mean")(x),
        mean(name="frame_positive_mean")(layers.ReLU(name="frame_positive")(x)),
        mean(name="step_positive_mean")(layers.ReLU(name="step_positive")(step)),
    ]
    return layers.Concatenate(name="window_stats")(parts)


def _window_stats_model(net):
    import keras

    inputs = keras.Input(net.inputs[0].shape[1:], name="mfcc")
    return keras.Model(inputs, _window_steps(inputs, net.inputs[0].shape[-1]))


def with_window_stats(net):
    """``net`` with a second input to its softmax: a dense layer over statistics of the window itself (``_window_steps``),
    starting at zero, so the network's output is unchanged until it is fitted. The embedding's dense layer keeps its
    weights as ``probs_embedding``.

    The statistics say what a new language or microphone does to level, spread and movement, where the frozen
    network's embedding was learned on other voices (the module's docstring has what they bought). Every layer has an
    int8 kernel, and the fixed one holds only -1 and 1.
    """
    import keras
    from keras import layers

    head = net.layers[-1]
    labels = head.units
    logits = layers.Add(name="logits")(
        [
            layers.Dense(labels, name="probs_embedding")(head.input),
            layers.Dense(labels, use_bias=False, kernel_initializer="zeros", name="probs_window_stats")(
                _window_steps(net.inputs[0], net.inputs[0].shape[-1])
            ),
        ]
    )
    out = keras.Model(net.inputs, layers.Softmax(name="probs")(logits), name=net.name)
    out.get_layer("probs_embedding").set_weights(head.get_weights())
    return out


def _layers(model):
    """Every layer, inside nested models (an ensemble's members) too."""
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _layers(layer)


def learning_curve(
    base: Base,
    clips: Sequence[Clip],
    corpus: str,
    out_dir: str | Path,
    shots: Sequence[int] = (0, 5, 10, 20, 50),
    settings: AdaptSettings | None = None,
    cache_dir: str | Path = "cache",
    seed: int = 0,
    workers: int = 2,
    threads: int = 2,
    repeats: int = 3,
) -> dict:
    """UA on half of ``corpus``'s speakers after adapting on ``k`` labelled clips per emotion of its other half, for each k.

    ``base`` must never have heard ``corpus`` (e.g. the fold of a leave-one-corpus-out run that held it out).
    k = 0 is the base model as it is (zero-shot); every other k is the mean over ``repeats`` draws of clips (one draw
    when k is over what every label has: all its clips).
    """
    import keras

    settings = settings or AdaptSettings()
    out_dir = Path(out_dir)
    heard = [s for s in base.provenance.get("data", {}).get(TRAIN, {}).get("speakers", []) if s.startswith(f"{corpus}_")]
    if heard:
        raise ValueError(
            f"the base model was trained on {len(heard)} {corpus} speaker(s) ({', '.join(heard[:3])}{', …' if len(heard) > 3 else ''}): "
            f"its zero-shot would not be zero-shot; give the leave-one-corpus-out fold that held {corpus} out"
        )
    mine = [c for c in clips if c.corpus == corpus]
    if not mine:
        raise ValueError(f"no clips of {corpus!r}: the corpora loaded are {', '.join(sorted({c.corpus for c in clips}))}")
    _configure_tensorflow(settings.seed, threads)  # before the first model is loaded, or TensorFlow keeps its own threads
    speakers = sorted({c.speaker for c in mine})
    if len(speakers) < 2:
        raise ValueError(f"{corpus} has {len(speakers)} speaker(s); a learning curve needs some to adapt on and others to test on")
    rng = np.random.default_rng(seed)
    tested = sorted(rng.permutation(speakers)[: len(speakers) // 2].tolist())
    pool = [c for c in mine if c.speaker not in tested]
    test = [c for c in mine if c.speaker in tested]
    per_corpus = corpus_labels(mine)
    train_settings = dataclasses.replace(base.settings, augment_variants=settings.augment_variants, labels=base.labels, train_corpora=())
    features = load_features(mine, train_settings, cache_dir, Split(validation=(), test=()), workers, progress=False)
    test_ws = window_set(
        [features[(c.path, 0)] for c in test], train_settings.frontend, train_settings.window_s, train_settings.hop_s, base.labels
    )
    rows = []
    stats = speaker_stats([features[(c.path, 0)] for c in test])

    def score(model, norm) -> tuple[float, float]:
        """Restricted UA of the tested speakers: as they are, and each enrolled on their own clips (a voice profile)."""

        def predict(n: Normalization, windows: np.ndarray) -> np.ndarray:
            return np.concatenate([model.predict(n.apply(windows[i : i + 512]), verbose=0) for i in range(0, len(windows), 512)])

        plain = predict(norm, test_ws.x)
        enrolled = profile_probs(predict, test_ws, norm, stats)
        return tuple(evaluate_clips(None, test_ws, base.labels, per_corpus, p)[1][corpus]["ua_restricted"] for p in (plain, enrolled))

    zero, zero_enrolled = score(keras.models.load_model(base.keras_path, compile=False), base.normalization)
    for k in shots:
        if k == 0:
            rows.append({"shots_per_label": 0, "clips": 0, "ua_restricted": zero, "ua_restricted_enrolled": zero_enrolled, "draws": []})
            continue
        draws, enrolled = [], []
        by_label = [[c for c in pool if c.label == label] for label in per_corpus[corpus]]
        # Each draw its own clips: which few clips a user labels moves the result. A k that takes every clip draws once.
        for draw in range(repeats if any(len(candidates) > k for candidates in by_label) else 1):
            pick = np.random.default_rng([seed, k, draw])
            chosen = [c for candidates in by_label for c in _pick(candidates, k, pick)]
            run = out_dir / f"shots{k}-{draw}"
            report = adapt(base, chosen, run, settings, cache_dir, (), workers, threads, progress=False, features=features)
            plain, mine = score(keras.models.load_model(run / "model.keras", compile=False), _run_normalization(run))
            draws.append(plain)
            enrolled.append(mine)
        rows.append(
            {
                "shots_per_label": k,
                "clips": len(chosen),
                "layers": report["adapt"]["layers"],
                "ua_restricted": round(float(np.mean(draws)), 4),
                "ua_restricted_enrolled": round(float(np.mean(enrolled)), 4),
                "draws": draws,
                "draws_enrolled": enrolled,
            }
        )
        log.info(
            "%d clips per label: restricted UA %.3f (draws %s), %.3f enrolled, on %s",
            k,
            rows[-1]["ua_restricted"],
            draws,
            rows[-1]["ua_restricted_enrolled"],
            ", ".join(tested),
        )
    result = {
        "corpus": corpus,
        "adapted_on": sorted(set(speakers) - set(tested)),
        "tested_on": tested,
        "settings": settings.to_dict(),
        "rows": rows,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "curve.json").write_text(json.dumps(result, indent=2) + "\n")
    _plot_curve(result, out_dir / "curve.png")
    return result


def _run_normalization(run_dir: Path) -> Normalization:
    data = json.loads((run_dir / "report.json").read_text())["normalization"]
    return Normalization(**{key: tuple(v) if isinstance(v, list) else v for key, v in data.items()})


def _pick(candidates: list[Clip], k: int, rng: np.random.Generator) -> list[Clip]:
    order = rng.permutation(len(candidates))[:k]
    return [candidates[i] for i in sorted(order)]


def _plot_curve(result: dict, path: Path) -> None:
    from training.plots import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    k = [r["shots_per_label"] for r in result["rows"]]
    ua = [100 * r["ua_restricted"] for r in result["rows"]]
    enrolled = [100 * r["ua_restricted_enrolled"] for r in result["rows"] if "ua_restricted_enrolled" in r]
    ax.plot(k, ua, "-o", label="new speakers as they are")
    if len(enrolled) == len(k):
        ax.plot(k, enrolled, "-s", label="each new speaker enrolled (a voice profile)")
    for row in result["rows"]:
        ax.plot([row["shots_per_label"]] * len(row["draws"]), [100 * d for d in row["draws"]], ".", color="grey", alpha=0.6)
    for x, y in zip(k, ua, strict=True):
        ax.annotate(f"{y:.0f}", (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_xlabel("labelled clips per emotion (from other speakers of the corpus)")
    ax.set_ylabel("restricted UA on new speakers (%)")
    tested = result["tested_on"]
    who = ", ".join(tested) if len(tested) <= 4 else f"{len(tested)} new speakers"
    ax.set_title(f"Adapting to {result['corpus']}: tested on {who}", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
