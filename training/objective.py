"""What the network is trained towards: smoothed targets, per-corpus label masks, window weights and the loss.

Labels a corpus does not have are not evidence against them: the loss of a window is the
cross-entropy of the model's probabilities renormalised over its corpus's own labels
(``corpus_labels``), so a Polish clip (nEMO has no calm) says nothing about calm. Keras is
imported only inside ``masked_crossentropy``, when a model is compiled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from training.settings import TrainSettings
from training.windows import WindowSet


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
