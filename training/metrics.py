"""Clip-level scores: weighted accuracy (WA), unweighted average recall (UA), per-class recall, confusion.

Two readings of one set of clip probabilities:

- plain: the clip's label is the argmax over all of the model's labels;
- restricted: the argmax over the labels the clip's corpus has (a German corpus without calm
  is not scored down for a "calm" its speakers were never asked for). This is how corpora with
  fewer labels than the model are compared across papers and in the independent evaluation.

``evaluate_clips`` gives both for a set of windows and the model's window probabilities.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from edge.classifier import clip_probs as device_clip_probs
from training.windows import WindowSet


def confusion(truth: Sequence[int], predicted: Sequence[int], n: int) -> np.ndarray:
    """Counts, rows = true label, columns = predicted label."""
    m = np.zeros((n, n), dtype=np.int64)
    np.add.at(m, (np.asarray(truth, int), np.asarray(predicted, int)), 1)
    return m


def scores(truth: Sequence[int], predicted: Sequence[int], labels: Sequence[str]) -> dict:
    """WA = share of clips right; UA = mean recall over the labels present in ``truth``."""
    m = confusion(truth, predicted, len(labels))
    support = m.sum(axis=1)
    present = support > 0
    recall = np.divide(np.diag(m), support, out=np.zeros(len(labels)), where=present)
    return {
        "clips": int(support.sum()),
        "wa": round(float(np.trace(m) / max(support.sum(), 1)), 4),
        "ua": round(float(recall[present].mean()) if present.any() else 0.0, 4),
        "recall": {labels[i]: round(float(recall[i]), 4) for i in np.flatnonzero(present)},
        "confusion": m.tolist(),
    }


def restricted_argmax(probs: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Per row, the argmax over the columns where ``allowed`` (same shape, or one row for all) is True."""
    return np.where(allowed, probs, -np.inf).argmax(axis=1)


def scores_by_corpus(
    corpora: Sequence[str], truth: Sequence[int], probs: np.ndarray, labels: Sequence[str], corpus_labels: Mapping[str, Sequence[str]]
) -> dict:
    """Plain and restricted scores per corpus, plus 'all' (every clip) and 'mean' (the corpora's average UA).

    Each corpus's entry has wa, ua, recall and confusion (argmax over every label), plus
    wa_restricted, ua_restricted and recall_restricted (argmax over ``corpus_labels[corpus]``).
    """
    corpora, truth, probs = np.asarray(corpora), np.asarray(truth, int), np.asarray(probs)
    allowed = np.array([[label in corpus_labels.get(c, labels) for label in labels] for c in corpora]).reshape(len(corpora), len(labels))
    plain, restricted = probs.argmax(axis=1), restricted_argmax(probs, allowed) if len(probs) else np.zeros(0, int)
    out = {}
    for name in [*sorted(set(corpora.tolist())), "all"]:
        inside = np.ones(len(corpora), bool) if name == "all" else corpora == name
        entry = scores(truth[inside], plain[inside], labels)
        limited = scores(truth[inside], restricted[inside], labels)
        entry.update(wa_restricted=limited["wa"], ua_restricted=limited["ua"], recall_restricted=limited["recall"])
        out[name] = entry
    corpus_names = [n for n in out if n != "all"]
    if corpus_names:
        out["mean"] = {
            k: round(float(np.mean([out[n][k] for n in corpus_names])), 4) for k in ("wa", "ua", "wa_restricted", "ua_restricted")
        }
        out["mean"]["corpora"] = corpus_names
    return out


def clip_probs(window_probs: np.ndarray, window_clip: np.ndarray, window_speech: np.ndarray, n_clips: int) -> np.ndarray:
    """Per clip, the device's verdict (``edge.classifier.clip_probs``) from its windows."""
    out = np.zeros((n_clips, window_probs.shape[1]), dtype=np.float64)
    order = np.argsort(window_clip, kind="stable")
    bounds = np.searchsorted(window_clip[order], np.arange(n_clips + 1))
    for i in range(n_clips):
        mine = order[bounds[i] : bounds[i + 1]]
        if len(mine):
            out[i] = device_clip_probs(window_probs[mine], window_speech[mine])[0]
    return out


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
