"""Train the emotion CNN on windows from the device's frontend, speaker-independently, and score it per clip.

A run folder holds everything convert needs and everything a person wants to look at:
``model.keras``, ``settings.json`` (the TrainSettings), ``report.json`` (split, float
metrics per corpus and role, training history, timing), ``confusion.png``, ``curves.png``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.classifier import make_windows, speech_ratios
from edge.frontend import FrontendSettings
from edge.model import EMOTIONS, Normalization
from edge.speech import SpeechSettings
from training.augment import AugmentSettings, vtlp_matrices
from training.corpora import Clip
from training.features import ClipFeatures, extract
from training.metrics import clip_probs, scores_by_corpus
from training.network import ARCHITECTURES, POOLINGS, average_models, build_model
from training.split import TEST, TRAIN, VALIDATION, Split

log = logging.getLogger(__name__)

MAX_PARAMS = 300_000
CLASS_WEIGHTS = ("none", "global", "corpus")


@dataclass(frozen=True)
class TrainSettings:
    """Every choice that shapes the model; saved beside it so a run can be repeated exactly."""

    n_mels: int = 40
    """Mel filters in the frontend."""
    n_ceps: int = 40
    """Cepstral coefficients per frame (the model's input width)."""
    lifter: int = 0
    """Frontend sine lifter (0 = off)."""
    window_s: float = 3.0
    """Window the device classifies, in seconds."""
    hop_s: float = 0.5
    """Hop between the device's windows, in seconds (a multiple of 10 ms)."""
    train_hop_s: float = 0.5
    """Hop between training windows, in seconds; smaller gives more, overlapping windows."""
    normalization: str = "global"
    """window, global or none (edge.model.Normalization kinds)."""
    augment_variants: int = 9
    """Augmented copies of each training clip, besides the clip itself."""
    augment: AugmentSettings = AugmentSettings()
    """How the copies are made."""
    arch: str = "cnn1d"
    """Network: cnn1d, cnn2d or dscnn (training.network)."""
    width: int = 16
    """Base number of filters."""
    pooling: str = "avgmax"
    """avg, or avgmax: the last feature maps' average and maximum over time (training.network)."""
    dropout: float = 0.3
    """Dropout before the last layer."""
    epochs: int = 5
    """Passes over the training windows."""
    batch_size: int = 64
    """Windows per gradient step."""
    learning_rate: float = 2e-3
    """Peak learning rate of Adam; decays with a cosine to zero."""
    label_smoothing: float = 0.1
    """Label smoothing of the cross-entropy."""
    class_weights: str = "corpus"
    """none; global: weight each label inversely to its share of the training windows; corpus: the same
    within each corpus, each corpus keeping its share (calm, in RAVDESS only, then no longer outweighs
    RAVDESS's scarce neutral because SAVEE and TESS have plenty of neutral)."""
    corpus_balance: float = 0.0
    """0 = every window counts the same; 1 = every corpus counts the same in total."""
    mixup_alpha: float = 0.0
    """Beta(alpha, alpha) mixup of window pairs and their labels; 0 disables it."""
    time_mask_frames: int = 0
    """SpecAugment: blank (to the mean) one random span of up to this many frames per training window."""
    coeff_mask: int = 0
    """SpecAugment: blank one random band of up to this many coefficients per training window."""
    vtlp_range: tuple[float, float] = (0.85, 1.15)
    """Vocal tract length perturbation: frequency-warp factors drawn per training window, each
    epoch anew ((1.0, 1.0) = off; needs n_ceps == n_mels)."""
    vtlp_p: float = 0.8
    """Share of training windows that get a warp."""
    seed: int = 42
    """Seed for the network's initialisation and the order of windows."""
    ensemble: int = 2
    """Networks trained with seeds seed, seed+1, ...; the shipped model averages their probabilities."""

    @property
    def frontend(self) -> FrontendSettings:
        return FrontendSettings(n_mels=self.n_mels, n_ceps=self.n_ceps, lifter=self.lifter)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def check(self) -> None:
        """Refuse combinations that would fail only after the features are extracted."""
        if self.arch not in ARCHITECTURES or self.pooling not in POOLINGS:
            raise ValueError(
                f"arch={self.arch!r} pooling={self.pooling!r}: arch must be one of {', '.join(ARCHITECTURES)} "
                f"and pooling one of {', '.join(POOLINGS)}"
            )
        if self.class_weights not in CLASS_WEIGHTS:
            raise ValueError(f"class_weights={self.class_weights!r} is not one of {', '.join(CLASS_WEIGHTS)}")
        if tuple(self.vtlp_range) != (1.0, 1.0) and (self.n_ceps != self.n_mels or self.lifter):
            raise ValueError(
                f"vtlp_range={list(self.vtlp_range)} warps the mel axis, which needs n_ceps equal to n_mels and lifter=0 "
                f"(got n_ceps={self.n_ceps}, n_mels={self.n_mels}, lifter={self.lifter}); set vtlp_range=[1,1] to turn it off"
            )

    @classmethod
    def from_dict(cls, data: dict) -> TrainSettings:
        data = dict(data)
        if isinstance(data.get("class_weights"), bool):  # settings.json of runs before the per-corpus choice
            data["class_weights"] = "global" if data["class_weights"] else "none"
        if isinstance(data.get("augment"), dict):
            aug = {k: tuple(v) if isinstance(v, list) else v for k, v in data["augment"].items()}
            data["augment"] = AugmentSettings(**aug)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training settings: {', '.join(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    def with_overrides(self, pairs: Sequence[str]) -> TrainSettings:
        """Apply ``key=value`` strings (values parsed as JSON, else taken as text); augment.key=value too."""
        changes: dict = {}
        augment: dict = {}
        for pair in pairs:
            key, sep, raw = pair.partition("=")
            if not sep:
                raise ValueError(f"--set expects key=value, got {pair!r}")
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                value = raw
            if key.startswith("augment."):
                augment[key.split(".", 1)[1]] = tuple(value) if isinstance(value, list) else value
            else:
                changes[key.strip()] = tuple(value) if isinstance(value, list) else value
        if augment:
            changes["augment"] = dataclasses.replace(self.augment, **augment)
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown training settings: {', '.join(unknown)}; known are {', '.join(sorted(known))}")
        return dataclasses.replace(self, **changes)


@dataclass
class WindowSet:
    """Windows of several clips, with the clip each came from, cut on demand from one array of frames.

    Windows overlap (a 3 s window every 0.5 s holds each frame six times), so a training set
    with many augmented copies is kept as frames plus window start rows: ``take`` cuts a
    batch, ``x`` all of them. The windows are exactly those of ``frame_windows``.
    """

    frames: np.ndarray
    """(rows, coefficients) un-normalised frames of every clip end to end; a clip shorter than
    one window is stored repeated to fill it, as ``make_windows`` pads it."""
    starts: np.ndarray
    """(n,) row of ``frames`` where each window starts."""
    window_frames: int
    """Frames per window."""
    y: np.ndarray
    """(n,) label index per window."""
    clip: np.ndarray
    """(n,) index into ``clips`` per window."""
    speech_ratio: np.ndarray
    """(n,) share of speech frames per window."""
    clips: list[Clip]

    def __len__(self) -> int:
        return len(self.starts)

    def take(self, index: np.ndarray) -> np.ndarray:
        """Windows ``index`` as a new (len(index), window_frames, coefficients) array."""
        return self.frames[self.starts[np.asarray(index)][:, None] + np.arange(self.window_frames)]

    @property
    def x(self) -> np.ndarray:
        """Every window, (n, window_frames, coefficients): for evaluation-sized sets."""
        return self.take(np.arange(len(self)))


def window_set(features: Sequence[ClipFeatures], frontend: FrontendSettings, window_s: float, hop_s: float, speech_only: bool) -> WindowSet:
    """Windows of cached frames, as ``frame_windows`` cuts them; with ``speech_only`` keep the speech windows (all if a clip has none)."""
    wf, hf = frontend.window_frames(window_s), frontend.hop_frames(hop_s)
    min_ratio = SpeechSettings().min_speech_ratio
    blocks, starts, ys, idx, ratios, clips = [], [], [], [], [], []
    rows = 0
    for f in features:
        mfcc = f.mfcc if len(f.mfcc) >= wf else make_windows(f.mfcc, wf, hf).reshape(-1, f.mfcc.shape[1])  # the padding, once
        r = speech_ratios(f.speech, wf, hf)
        local = np.arange(len(r)) * hf
        if speech_only:
            keep = (r >= min_ratio) & (r > 0)
            if keep.any():
                local, r = local[keep], r[keep]
        if not len(local) or not len(mfcc):
            continue
        blocks.append(mfcc)
        starts.append(rows + local)
        rows += len(mfcc)
        ratios.append(r)
        ys.append(np.full(len(local), EMOTIONS.index(f.clip.label)))
        idx.append(np.full(len(local), len(clips)))
        clips.append(f.clip)
    if not blocks:
        none = np.zeros(0, int)
        return WindowSet(np.zeros((0, frontend.n_ceps), np.float32), none, wf, none, none, np.zeros(0, np.float32), [])
    frames = np.concatenate(blocks).astype(np.float32, copy=False)
    return WindowSet(frames, np.concatenate(starts), wf, np.concatenate(ys), np.concatenate(idx), np.concatenate(ratios), clips)


def fit_normalization(kind: str, ws: WindowSet) -> Normalization:
    """Normalisation fitted on the training windows (a frame counts once per window holding it)."""
    if kind != "global":
        return Normalization(kind)
    # How many windows hold each row of frames: +1 where a window starts, -1 where it ends.
    cover = np.zeros(len(ws.frames) + 1, np.int64)
    np.add.at(cover, ws.starts, 1)
    np.add.at(cover, ws.starts + ws.window_frames, -1)
    weight = np.cumsum(cover[:-1]).astype(np.float64)
    total = weight.sum()
    mean = weight @ ws.frames / total
    var = weight @ (ws.frames.astype(np.float64) - mean) ** 2 / total
    return Normalization("global", tuple(float(v) for v in mean), tuple(float(v) for v in np.sqrt(var)))


def sample_weights(ws: WindowSet, settings: TrainSettings) -> np.ndarray:
    """Per-window weights: balanced labels and, optionally, balanced corpora; mean 1."""
    weights = np.ones(len(ws.y), dtype=np.float64)
    corpus = np.array([ws.clips[i].corpus for i in ws.clip])
    if settings.class_weights != "none":
        groups = corpus if settings.class_weights == "corpus" else np.zeros(len(ws.y), dtype=int)
        for group in np.unique(groups):
            inside = groups == group
            counts = np.bincount(ws.y[inside], minlength=len(EMOTIONS)).astype(np.float64)
            per_class = np.divide(inside.sum() / np.count_nonzero(counts), counts, out=np.zeros_like(counts), where=counts > 0)
            weights[inside] = per_class[ws.y[inside]]
    if settings.corpus_balance > 0:
        names, inverse = np.unique(corpus, return_inverse=True)
        totals = np.bincount(inverse, weights=weights)
        target = totals.sum() / len(names)
        weights *= (target / totals[inverse]) ** settings.corpus_balance
    return (weights / weights.mean()).astype(np.float32)


def evaluate_clips(predict, ws: WindowSet) -> tuple[np.ndarray, dict]:
    """Clip probabilities (speech-window average, as the device) and per-corpus scores."""
    probs = predict(ws.x) if len(ws) else np.zeros((0, len(EMOTIONS)))
    per_clip = clip_probs(probs, ws.clip, ws.speech_ratio, len(ws.clips))
    truth = [EMOTIONS.index(c.label) for c in ws.clips]
    return per_clip, scores_by_corpus([c.corpus for c in ws.clips], truth, per_clip.argmax(axis=1))


def _configure_tensorflow(seed: int, threads: int) -> None:
    import keras
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        # TensorFlow fixes its thread pools when it first runs an op; a process that already
        # used it (a test session, a notebook) keeps them. Results stay deterministic.
        log.warning("TensorFlow is already running; it keeps its thread settings instead of %d threads", threads)
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


class _MixupBatches:
    """Shuffled batches, optionally mixed up; a keras PyDataset built lazily so keras is imported late."""

    @staticmethod
    def make(take, y_onehot, weights, batch_size: int, alpha: float, seed: int, time_mask: int = 0, coeff_mask: int = 0):
        """``take(index, rng)`` returns the (augmented,) normalised windows ``index`` as a new array."""
        import keras

        n = len(y_onehot)

        class Batches(keras.utils.PyDataset):
            def __init__(self):
                super().__init__()
                self.rng = np.random.default_rng(seed)
                self.order = self.rng.permutation(n)

            def __len__(self):
                return int(np.ceil(n / batch_size))

            def __getitem__(self, i):
                pick = self.order[i * batch_size : (i + 1) * batch_size]
                bx, by, bw = take(pick, self.rng), y_onehot[pick], weights[pick]
                if time_mask or coeff_mask:
                    for j in range(len(bx)):
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
                    by = lam[:, None] * by + (1 - lam[:, None]) * by[partner]
                return bx, by, bw

            def on_epoch_end(self):
                self.order = self.rng.permutation(n)

        return Batches()


def train(
    clips: Sequence[Clip],
    settings: TrainSettings,
    out_dir: str | Path,
    cache_dir: str | Path = "cache",
    split: Split | None = None,
    workers: int = 2,
    threads: int = 2,
    progress: bool = True,
) -> dict:
    """Train, score the float model per clip on validation and test speakers, and write the run folder."""
    import keras

    from training.plots import plot_confusion, plot_curves

    settings.check()
    started = time.monotonic()
    split = split or Split()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frontend = settings.frontend
    train_clips = split.select(clips, TRAIN)
    held_out = [c for c in clips if split.role(c) != TRAIN]
    if not train_clips:
        raise ValueError("no training clips: every speaker is held out")
    log.info("%d training clips, %d held out", len(train_clips), len(held_out))

    variants = tuple(range(settings.augment_variants + 1))
    train_features = extract(train_clips, frontend, cache_dir, variants, settings.augment, workers=workers, progress=progress)
    eval_features = extract(held_out, frontend, cache_dir, (0,), workers=workers, progress=progress)
    features_s = time.monotonic() - started

    train_ws = window_set(train_features, frontend, settings.window_s, settings.train_hop_s, speech_only=True)
    del train_features  # the window set holds the frames now
    norm = fit_normalization(settings.normalization, train_ws)
    val_ws = window_set([f for f in eval_features if split.role(f.clip) == VALIDATION], frontend, settings.window_s, settings.hop_s, False)
    test_ws = window_set([f for f in eval_features if split.role(f.clip) == TEST], frontend, settings.window_s, settings.hop_s, False)
    log.info("%d training windows; %d validation windows", len(train_ws), len(val_ws))

    frames, coeffs = train_ws.window_frames, train_ws.frames.shape[1]
    vtlp = settings.vtlp_range != (1.0, 1.0)
    if vtlp:
        vtlp_matrices(np.ones(1), frontend)  # refuses a frontend it cannot warp, before any training

    def take(index: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Training windows as the network sees them: warped (VTLP) if asked, then normalised."""
        windows = train_ws.take(index)
        if vtlp:
            warp = rng.random(len(index)) < settings.vtlp_p
            alphas = np.where(warp, rng.uniform(*settings.vtlp_range, size=len(index)), 1.0)
            windows = np.einsum("btc,bcd->btd", windows, vtlp_matrices(alphas, frontend))
        return norm.apply(windows)

    y = np.eye(len(EMOTIONS), dtype=np.float32)[train_ws.y]
    weights = sample_weights(train_ws, settings)
    val_speech = (val_ws.speech_ratio >= SpeechSettings().min_speech_ratio) & (val_ws.speech_ratio > 0)
    validation = (
        (norm.apply(val_ws.x[val_speech]), np.eye(len(EMOTIONS), dtype=np.float32)[val_ws.y[val_speech]]) if val_speech.any() else None
    )
    fit_started = time.monotonic()
    members, histories = [], []
    for member in range(settings.ensemble):
        seed = settings.seed + member
        _configure_tensorflow(seed, threads)
        model = build_model(settings.arch, frames, coeffs, len(EMOTIONS), settings.width, settings.dropout, settings.pooling)
        if model.count_params() * settings.ensemble > MAX_PARAMS:
            raise ValueError(
                f"{settings.ensemble} x the {settings.arch} network has {model.count_params() * settings.ensemble} parameters, more than the {MAX_PARAMS} allowed"
            )
        steps = int(np.ceil(len(train_ws) / settings.batch_size)) * settings.epochs
        schedule = keras.optimizers.schedules.CosineDecay(settings.learning_rate, decay_steps=max(steps, 1))
        model.compile(
            optimizer=keras.optimizers.Adam(schedule),
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=settings.label_smoothing),
            metrics=["accuracy"],
        )
        batches = _MixupBatches.make(
            take, y, weights, settings.batch_size, settings.mixup_alpha, seed, settings.time_mask_frames, settings.coeff_mask
        )
        log.info("training network %d of %d (seed %d)", member + 1, settings.ensemble, seed)
        histories.append(model.fit(batches, epochs=settings.epochs, validation_data=validation, verbose=2 if progress else 0).history)
        members.append(model)
    model = average_models(members, frames, coeffs)
    fit_s = time.monotonic() - fit_started
    history = {k: np.mean([h[k] for h in histories], axis=0) for k in histories[0]}

    def predict(windows: np.ndarray) -> np.ndarray:
        return model.predict(norm.apply(windows), batch_size=256, verbose=0)

    metrics = {}
    confusion_sets = {}
    for role, ws in ((VALIDATION, val_ws), (TEST, test_ws)):
        if ws.clips:
            _, metrics[role] = evaluate_clips(predict, ws)
            confusion_sets[role] = metrics[role]
    model.save(out_dir / "model.keras")
    report = {
        "settings": settings.to_dict(),
        "normalization": dataclasses.asdict(norm),
        "split": split.to_dict(),
        "data": split.describe(clips),
        "windows": {"train": len(train_ws), "validation": len(val_ws), "test": len(test_ws)},
        "parameters": int(model.count_params()),
        "float": metrics,
        "history": {k: [round(float(v), 4) for v in vals] for k, vals in history.items()},
        "seconds": {"features": round(features_s, 1), "fit": round(fit_s, 1), "total": round(time.monotonic() - started, 1)},
    }
    (out_dir / "settings.json").write_text(json.dumps(settings.to_dict(), indent=2) + "\n")
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    if VALIDATION in metrics:
        plot_confusion(metrics[VALIDATION], out_dir / "confusion.png", "float model, validation speakers")
    plot_curves(report["history"], out_dir / "curves.png")
    log.info("validation: %s", summary_line(metrics.get(VALIDATION, {})))
    return report


def summary_line(per_corpus: dict) -> str:
    return "; ".join(f"{name} WA {s['wa']:.3f} UA {s['ua']:.3f} ({s['clips']} clips)" for name, s in per_corpus.items())
