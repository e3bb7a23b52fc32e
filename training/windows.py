"""Windows of cached frames, exactly as the device cuts them, and the normalisation fitted on them.

Windows overlap (a 3 s window every 0.5 s holds each frame six times), so a set of windows is
kept as its clips' frames end to end plus the row where each window starts: ``take`` cuts a
batch, ``x`` all of them. The windows and their speech ratios are those of
``edge.classifier.frame_windows``; which windows hold speech is ``edge.speech.window_has_speech``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge.classifier import make_windows, speech_ratios
from edge.frontend import FrontendSettings
from edge.model import Normalization
from edge.speech import SpeechSettings, window_has_speech
from training.corpora import Clip
from training.features import ClipFeatures


@dataclass
class WindowSet:
    """Windows of several clips, with the clip each came from, cut on demand from one array of frames."""

    frames: np.ndarray
    """(rows, coefficients) un-normalised frames of every clip end to end; a clip shorter than
    one window is stored repeated to fill it, as ``make_windows`` pads it."""
    starts: np.ndarray
    """(n,) row of ``frames`` where each window starts."""
    window_frames: int
    """Frames per window."""
    y: np.ndarray
    """(n,) label index per window (into the run's labels)."""
    clip: np.ndarray
    """(n,) index into ``clips`` per window."""
    speech_ratio: np.ndarray
    """(n,) share of speech frames per window."""
    clips: list[Clip]
    speech: np.ndarray | None = None
    """(n,) whether each window holds speech (``window_has_speech``)."""
    clip_rows: np.ndarray | None = None
    """(len(clips), 2) first and last+1 row of ``frames`` that belong to each clip."""

    def __len__(self) -> int:
        return len(self.starts)

    def take(self, index: np.ndarray) -> np.ndarray:
        """Windows ``index`` as a new (len(index), window_frames, coefficients) array."""
        return self.frames[self.starts[np.asarray(index)][:, None] + np.arange(self.window_frames)]

    @property
    def x(self) -> np.ndarray:
        """Every window, (n, window_frames, coefficients): for evaluation-sized sets."""
        return self.take(np.arange(len(self)))

    def clip_speakers(self) -> np.ndarray:
        return np.array([c.speaker for c in self.clips])

    def clip_corpora(self) -> np.ndarray:
        return np.array([c.corpus for c in self.clips])


def window_set(
    features: Sequence[ClipFeatures],
    frontend: FrontendSettings,
    window_s: float,
    hop_s: float,
    labels: Sequence[str],
    speech: SpeechSettings | None = None,
    speech_only: bool = False,
) -> WindowSet:
    """Windows of cached frames, as ``frame_windows`` cuts them; with ``speech_only`` keep the speech windows (all if a clip has none).

    Clips whose label is not in ``labels`` are left out.
    """
    speech = speech or SpeechSettings()
    wf, hf = frontend.window_frames(window_s), frontend.hop_frames(hop_s)
    index = {label: i for i, label in enumerate(labels)}
    blocks, starts, ys, idx, ratios, flags, clips, rows_of = [], [], [], [], [], [], [], []
    rows = 0
    for f in features:
        if f.clip.label not in index:
            continue
        mfcc = f.mfcc if len(f.mfcc) >= wf else make_windows(f.mfcc, wf, hf).reshape(-1, f.mfcc.shape[1])  # the padding, once
        r = speech_ratios(f.speech, wf, hf)
        local = np.arange(len(r)) * hf
        has = window_has_speech(r, speech)
        if speech_only and has.any():
            local, r, has = local[has], r[has], has[has]
        if not len(local) or not len(mfcc):
            continue
        blocks.append(mfcc)
        starts.append(rows + local)
        rows_of.append((rows, rows + len(mfcc)))
        rows += len(mfcc)
        ratios.append(r)
        flags.append(has)
        ys.append(np.full(len(local), index[f.clip.label]))
        idx.append(np.full(len(local), len(clips)))
        clips.append(f.clip)
    if not blocks:
        none = np.zeros(0, int)
        empty = np.zeros((0, frontend.n_ceps), np.float32)
        return WindowSet(empty, none, wf, none, none, np.zeros(0, np.float32), [], np.zeros(0, bool), np.zeros((0, 2), int))
    frames = np.concatenate(blocks).astype(np.float32, copy=False)
    return WindowSet(
        frames,
        np.concatenate(starts),
        wf,
        np.concatenate(ys),
        np.concatenate(idx),
        np.concatenate(ratios),
        clips,
        np.concatenate(flags),
        np.array(rows_of, dtype=np.int64),
    )


def coverage(ws: WindowSet) -> np.ndarray:
    """How many of the set's windows hold each row of frames (float64, one per row)."""
    cover = np.zeros(len(ws.frames) + 1, np.int64)
    np.add.at(cover, ws.starts, 1)
    np.add.at(cover, ws.starts + ws.window_frames, -1)
    return np.cumsum(cover[:-1]).astype(np.float64)


def fit_normalization(kind: str, ws: WindowSet) -> Normalization:
    """Normalisation fitted on the training windows (a frame counts once per window holding it)."""
    if kind == "window" or kind == "none":
        return Normalization(kind)
    weight = coverage(ws)
    total = weight.sum()
    mean = weight @ ws.frames / total
    if kind == "window_mean":  # the spread of frames around their own window's mean
        var = np.zeros(ws.frames.shape[1])
        for start in range(0, len(ws), 4096):
            chunk = ws.take(np.arange(start, min(start + 4096, len(ws)))).astype(np.float64)
            var += ((chunk - chunk.mean(axis=1, keepdims=True)) ** 2).sum(axis=(0, 1))
        return Normalization(kind, (), tuple(float(v) for v in np.sqrt(var / (len(ws) * ws.window_frames))))
    squares = np.zeros(ws.frames.shape[1])
    for start in range(0, len(ws.frames), 1 << 18):  # in blocks: the frames as float64 at once would be gigabytes
        block = ws.frames[start : start + (1 << 18)].astype(np.float64) - mean
        squares += weight[start : start + (1 << 18)] @ block**2
    return Normalization(kind, tuple(float(v) for v in mean), tuple(float(v) for v in np.sqrt(squares / total)))
