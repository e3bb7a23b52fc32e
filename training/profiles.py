"""Voice profiles in training and scoring: a speaker's own statistics in place of the population's.

``ProfileSampler`` draws, per training window, a profile of its speaker measured on a few of their
recorded clips (as ``python -m edge enroll`` measures one); ``speaker_stats`` and ``profile_probs``
score held-out speakers each enrolled from their own (unlabelled) clips.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from edge.profile import SpeechStats
from training.features import ClipFeatures
from training.windows import WindowSet


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
