"""Train the emotion CNN on windows from the device's frontend, speaker-independently, and score it per clip.

A run folder holds everything convert needs and everything a person wants to look at:
``model.keras``, ``settings.json`` (the TrainSettings), ``report.json`` (split, labels, float
metrics per corpus and role, training history, timing), ``confusion.png``, ``curves.png``.

Labels a corpus does not have are not evidence against them: the loss of a window is the
cross-entropy of the model's probabilities renormalised over its corpus's own labels
(``corpus_labels``), so a Polish clip (nEMO has no calm) says nothing about calm.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.frontend import FrontendSettings
from edge.model import FITTED
from edge.profile import SpeechStats
from edge.speech import SpeechSettings
from training.augment import AugmentSettings, channel_curves, vtlp_matrices
from training.corpora import Clip, corpus_labels, labels_of
from training.features import ClipFeatures, extract
from training.metrics import clip_probs, scores_by_corpus
from training.network import ARCHITECTURES, POOLINGS, average_models, build_model
from training.split import TEST, TRAIN, VALIDATION, Split
from training.windows import WindowSet, fit_normalization, window_set

log = logging.getLogger(__name__)

MAX_PARAMS = 1_000_000  # an int8 file of about 1 MB at most
CLASS_WEIGHTS = ("none", "global", "corpus")
NORMALIZATIONS = ("global", "window", "none", "window_mean", "both")


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
    train_corpora: tuple[str, ...] = ()
    """Corpora whose training speakers are trained on; empty = every corpus loaded (the others are only evaluated)."""
    labels: tuple[str, ...] = ()
    """The model's labels; empty = every label of the training clips (the eight emotions first, in their usual order)."""
    corpus_labels: bool = True
    """Score each window only among its corpus's own labels (a label the corpus lacks is not evidence
    against it); False = the plain softmax cross-entropy over every label."""
    normalization: str = "both"
    """global (the training windows' mean and spread), window (each window on its own), window_mean (the
    window's mean removed, the training spread divided out), both (global and window side by side) or none
    (edge.model.Normalization)."""
    speech: SpeechSettings = SpeechSettings()
    """The speech gate: which frames and windows count as speech (the device uses the same, from the contract)."""
    augment_variants: int = 2
    """Augmented copies of each training clip, besides the clip itself."""
    augment: AugmentSettings = AugmentSettings()
    """How the copies are made."""
    arch: str = "cnn1d"
    """Network: cnn1d, cnn1d_deep, cnn2d or dscnn (training.network)."""
    width: int = 16
    """Base number of filters."""
    pooling: str = "avgmax"
    """avg, or avgmax: the last feature maps' average and maximum over time (training.network)."""
    dropout: float = 0.3
    """Dropout before the last layer."""
    epochs: int = 8
    """Passes over the training windows."""
    batch_size: int = 64
    """Windows per gradient step."""
    learning_rate: float = 2e-3
    """Peak learning rate of Adam; decays with a cosine to zero."""
    label_smoothing: float = 0.1
    """Label smoothing of the cross-entropy (spread over the window's corpus's labels)."""
    class_weights: str = "corpus"
    """none; global: weight each label inversely to its share of the training windows; corpus: the same
    within each corpus, each corpus keeping its share (calm, in RAVDESS only, then no longer outweighs
    RAVDESS's scarce neutral because SAVEE and TESS have plenty of neutral)."""
    corpus_balance: float = 0.0
    """0 = every window counts the same; 1 = every corpus counts the same in total."""
    speaker_balance: float = 0.0
    """0 = every window counts the same; 1 = every speaker counts the same within their corpus."""
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
    channel_db: float = 0.0
    """Microphone and room colouring: a smooth random curve over the mel bands, up to about this
    many dB, added to each training window's log-mel spectrum at batch time (0 = off; needs n_ceps == n_mels)."""
    channel_p: float = 0.8
    """Share of training windows that get a colouring."""
    profile_p: float = 0.5
    """Share of training windows normalised against their speaker's own statistics (a voice profile, as
    ``python -m edge enroll`` measures it) instead of the population's; the rest see the population's, as the
    device does without a profile. Only for normalisations that carry statistics (global, both, window_mean)."""
    profile_clips: tuple[int, int] = (3, 30)
    """How many of the speaker's recorded clips each such profile is measured on (drawn per window): a few
    sentences, as at enrolment, up to a long acquaintance."""
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
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization={self.normalization!r} is not one of {', '.join(NORMALIZATIONS)}")
        warps = {"vtlp_range": tuple(self.vtlp_range) != (1.0, 1.0), "channel_db": self.channel_db > 0}
        on = [k for k, v in warps.items() if v]
        if on and (self.n_ceps != self.n_mels or self.lifter):
            raise ValueError(
                f"{' and '.join(on)} work on the mel axis, which needs n_ceps equal to n_mels and lifter=0 "
                f"(got n_ceps={self.n_ceps}, n_mels={self.n_mels}, lifter={self.lifter}); "
                "set vtlp_range=[1,1] and channel_db=0 to turn them off"
            )

    @classmethod
    def from_dict(cls, data: dict) -> TrainSettings:
        data = dict(data)
        if isinstance(data.get("class_weights"), bool):  # settings.json of runs before the per-corpus choice
            data["class_weights"] = "global" if data["class_weights"] else "none"
        for name, kind in NESTED.items():
            if isinstance(data.get(name), dict):
                data[name] = kind(**{k: _tuple(v) for k, v in data[name].items()})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training settings: {', '.join(unknown)}")
        return cls(**{k: _tuple(v) for k, v in data.items()})

    def with_overrides(self, pairs: Sequence[str]) -> TrainSettings:
        """Apply ``key=value`` strings (values parsed as JSON, else taken as text); augment.key=value and speech.key=value too."""
        changes: dict = {}
        nested: dict[str, dict] = {}
        for pair in pairs:
            key, sep, raw = pair.partition("=")
            if not sep:
                raise ValueError(f"--set expects key=value, got {pair!r}")
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                value = raw
            outer, dot, inner = key.strip().partition(".")
            if dot:
                if outer not in NESTED:
                    raise ValueError(f"--set {key}: only {', '.join(NESTED)} have settings of their own")
                nested.setdefault(outer, {})[inner] = _tuple(value)
            else:
                changes[outer] = _tuple(value)
        for outer, values in nested.items():
            try:
                changes[outer] = dataclasses.replace(getattr(self, outer), **values)
            except TypeError:
                known = ", ".join(f.name for f in dataclasses.fields(NESTED[outer]))
                raise ValueError(f"unknown {outer} settings in {', '.join(values)}; known are {known}") from None
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown training settings: {', '.join(unknown)}; known are {', '.join(sorted(known))}")
        return dataclasses.replace(self, **changes)


NESTED = {"augment": AugmentSettings, "speech": SpeechSettings}


def _tuple(value):
    return tuple(value) if isinstance(value, list) else value


def sample_weights(ws: WindowSet, settings: TrainSettings, n_labels: int) -> np.ndarray:
    """Per-window weights: balanced labels and, optionally, balanced speakers and corpora; mean 1."""
    weights = np.ones(len(ws.y), dtype=np.float64)
    corpus = ws.clip_corpora()[ws.clip] if len(ws) else np.zeros(0, str)
    if settings.class_weights != "none":
        groups = corpus if settings.class_weights == "corpus" else np.zeros(len(ws.y), dtype=int)
        for group in np.unique(groups):
            inside = groups == group
            counts = np.bincount(ws.y[inside], minlength=n_labels).astype(np.float64)
            per_class = np.divide(inside.sum() / np.count_nonzero(counts), counts, out=np.zeros_like(counts), where=counts > 0)
            weights[inside] = per_class[ws.y[inside]]
    if settings.speaker_balance > 0:
        # Within a corpus, each speaker's windows together weigh the same (TESS: 2 speakers, ASED: 44).
        speaker = ws.clip_speakers()[ws.clip]
        for name in np.unique(corpus):
            inside = corpus == name
            _, inverse = np.unique(speaker[inside], return_inverse=True)
            totals = np.bincount(inverse, weights=weights[inside])
            weights[inside] *= (totals.mean() / totals[inverse]) ** settings.speaker_balance
    if settings.corpus_balance > 0:
        names, inverse = np.unique(corpus, return_inverse=True)
        totals = np.bincount(inverse, weights=weights)
        target = totals.sum() / len(names)
        weights *= (target / totals[inverse]) ** settings.corpus_balance
    return (weights / weights.mean()).astype(np.float32)


def label_masks(ws: WindowSet, labels: Sequence[str], per_corpus: Mapping[str, Sequence[str]] | None) -> np.ndarray:
    """(n, labels) 1 where a window's corpus has the label (all ones without ``per_corpus``)."""
    if per_corpus is None:
        return np.ones((len(ws), len(labels)), np.float32)
    rows = np.array([[label in per_corpus.get(c.corpus, labels) for label in labels] for c in ws.clips], np.float32)
    return rows.reshape(len(ws.clips), len(labels))[ws.clip]


def targets(y: np.ndarray, masks: np.ndarray, smoothing: float) -> np.ndarray:
    """Smoothed one-hot targets, the smoothing spread over each window's allowed labels only."""
    onehot = np.eye(masks.shape[1], dtype=np.float32)[y]
    return (1 - smoothing) * onehot + smoothing * masks / masks.sum(axis=1, keepdims=True)


def masked_crossentropy(n_labels: int):
    """Cross-entropy of the probabilities renormalised over each window's allowed labels.

    ``y_true`` is [target (n_labels), mask (n_labels)] side by side. With a mask of all ones
    it is the ordinary categorical cross-entropy.
    """
    from keras import ops

    def loss(y_true, y_pred):
        target, mask = y_true[:, :n_labels], y_true[:, n_labels:]
        kept = y_pred * mask
        kept = kept / ops.maximum(ops.sum(kept, axis=-1, keepdims=True), 1e-7)
        return -ops.sum(target * ops.log(ops.clip(kept, 1e-7, 1.0)), axis=-1)

    return loss


def evaluate_clips(
    predict, ws: WindowSet, labels: Sequence[str], per_corpus: Mapping[str, Sequence[str]], probs: np.ndarray | None = None
) -> tuple[np.ndarray, dict]:
    """Clip probabilities (speech-window average, as the device) and per-corpus scores, plain and restricted.

    ``predict(windows)`` gives the window probabilities, or ``probs`` are given already.
    """
    if probs is None:
        probs = predict(ws.x) if len(ws) else np.zeros((0, len(labels)))
    per_clip = clip_probs(probs, ws.clip, ws.speech, len(ws.clips))
    index = {label: i for i, label in enumerate(labels)}
    truth = [index[c.label] for c in ws.clips]
    return per_clip, scores_by_corpus([c.corpus for c in ws.clips], truth, per_clip, labels, per_corpus)


class ProfileSampler:
    """Voice profiles of the training speakers, measured on a random few of their recorded clips, per window.

    Each recorded clip's speech-frame sums are kept once; a profile of k clips is their sum, so drawing one
    per window costs k additions of 40 numbers.
    """

    def __init__(self, ws: WindowSet, features: Mapping[tuple[str, int], ClipFeatures], clips: tuple[int, int]) -> None:
        self.low, self.high = int(clips[0]), int(clips[1])
        speakers = ws.clip_speakers()
        paths = sorted({c.path for c in ws.clips})
        row = {path: i for i, path in enumerate(paths)}
        n = ws.frames.shape[1]
        self.count, self.total, self.squares = np.zeros(len(paths)), np.zeros((len(paths), n)), np.zeros((len(paths), n))
        speaker_of = {}
        for c, speaker in zip(ws.clips, speakers, strict=True):
            speaker_of[c.path] = speaker
        for path, i in row.items():
            f = features[(path, 0)]
            chosen = f.mfcc[f.speech].astype(np.float64)
            self.count[i], self.total[i], self.squares[i] = len(chosen), chosen.sum(axis=0), (chosen**2).sum(axis=0)
        self.rows_of = {}
        for path, speaker in speaker_of.items():
            self.rows_of.setdefault(speaker, []).append(row[path])
        self.rows_of = {k: np.array(sorted(v)) for k, v in self.rows_of.items()}
        self.window_speaker = speakers[ws.clip]

    def draw(self, windows: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) per window: its speaker's statistics over k of their recorded clips, k drawn per window."""
        mean = np.zeros((len(windows), self.total.shape[1]))
        std = np.ones_like(mean)
        for j, w in enumerate(windows):
            rows = self.rows_of[self.window_speaker[w]]
            k = min(len(rows), int(rng.integers(self.low, self.high + 1)))
            pick = rows[rng.permutation(len(rows))[:k]]
            count = max(self.count[pick].sum(), 1.0)
            m = self.total[pick].sum(axis=0) / count
            mean[j], std[j] = m, np.sqrt(np.maximum(self.squares[pick].sum(axis=0) / count - m**2, 0.0))
        return mean.astype(np.float32), std.astype(np.float32)


def speaker_stats(features: Sequence[ClipFeatures]) -> dict[str, SpeechStats]:
    """Each speaker's voice profile statistics from their clips' speech frames, as ``python -m edge enroll`` measures them."""
    out: dict[str, SpeechStats] = {}
    for f in features:
        out.setdefault(f.clip.speaker, SpeechStats(f.mfcc.shape[1])).add(f.mfcc, f.speech)
    return out


def profile_probs(predict_normalised, ws: WindowSet, norm, stats: Mapping[str, SpeechStats]) -> np.ndarray:
    """Window probabilities with each speaker's windows normalised against that speaker's profile."""
    speakers = ws.clip_speakers()[ws.clip]
    probs = None
    for speaker in np.unique(speakers):
        inside = np.flatnonzero(speakers == speaker)
        s = stats[speaker]
        mine = predict_normalised(norm.with_profile(s.mean, s.std), ws.take(inside))
        probs = np.zeros((len(ws), mine.shape[1]), np.float32) if probs is None else probs
        probs[inside] = mine
    return probs if probs is not None else np.zeros((0, 0), np.float32)


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

    profiles = ProfileSampler(train_ws, features, settings.profile_clips) if settings.profile_p > 0 and norm.kind in FITTED else None

    def take(index: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Training windows as the network sees them: warped (VTLP), coloured (channel) if asked, then normalised,
        a share of them against their speaker's profile (those neither warped nor coloured: a profile is
        measured on the same voice through the same microphone, so it would take both away again)."""
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
