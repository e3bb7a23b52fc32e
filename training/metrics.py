"""Clip-level scores: weighted accuracy (WA), unweighted average recall (UA), per-class recall, confusion."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edge.model import EMOTIONS


def confusion(truth: Sequence[int], predicted: Sequence[int], n: int = len(EMOTIONS)) -> np.ndarray:
    """Counts, rows = true label, columns = predicted label."""
    m = np.zeros((n, n), dtype=np.int64)
    np.add.at(m, (np.asarray(truth, int), np.asarray(predicted, int)), 1)
    return m


def scores(truth: Sequence[int], predicted: Sequence[int]) -> dict:
    """WA = share of clips right; UA = mean recall over the labels present in ``truth``."""
    m = confusion(truth, predicted)
    support = m.sum(axis=1)
    present = support > 0
    recall = np.divide(np.diag(m), support, out=np.zeros(len(EMOTIONS)), where=present)
    return {
        "clips": int(support.sum()),
        "wa": round(float(np.trace(m) / max(support.sum(), 1)), 4),
        "ua": round(float(recall[present].mean()) if present.any() else 0.0, 4),
        "recall": {EMOTIONS[i]: round(float(recall[i]), 4) for i in np.flatnonzero(present)},
        "confusion": m.tolist(),
    }


def scores_by_corpus(corpora: Sequence[str], truth: Sequence[int], predicted: Sequence[int]) -> dict:
    """scores() per corpus plus 'all'."""
    corpora, truth, predicted = np.asarray(corpora), np.asarray(truth), np.asarray(predicted)
    out = {name: scores(truth[corpora == name], predicted[corpora == name]) for name in sorted(set(corpora.tolist()))}
    out["all"] = scores(truth, predicted)
    return out


def clip_probs(
    window_probs: np.ndarray, window_clip: np.ndarray, speech_ratio: np.ndarray, n_clips: int, min_ratio: float = 0.25
) -> np.ndarray:
    """Per clip, the mean probability over its speech windows (all of its windows if none): the device's clip verdict."""
    out = np.zeros((n_clips, window_probs.shape[1]), dtype=np.float64)
    for i in range(n_clips):
        mine = window_clip == i
        speech = mine & (speech_ratio >= min_ratio) & (speech_ratio > 0)
        chosen = speech if speech.any() else mine
        out[i] = window_probs[chosen].mean(axis=0)
    return out
