"""A voice profile: the mean and spread of one person's speech frames, to normalise against.

Emotion is heard as a change from how a person usually sounds. The model's normalisation
(``edge.model.Normalization``) subtracts a mean and divides by a spread per coefficient; by
default those of the training population. A profile holds the same two statistics measured on
one person's ordinary speech through their own microphone, so their usual level, timbre and
channel are taken out and what is left is how this moment differs from their usual.

``SpeechStats`` accumulates the statistics over speech frames only (silence says nothing about
a voice). Enrolment, continuous adaptation on the device and training's evaluation all use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class SpeechStats:
    """Running sums of MFCC frames that hold speech: count, sum and sum of squares per coefficient."""

    n_ceps: int
    count: float = 0.0
    """Speech frames counted (a float: adaptation decays it)."""
    total: np.ndarray = field(default=None)  # type: ignore[assignment]
    squares: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.total = np.zeros(self.n_ceps) if self.total is None else np.asarray(self.total, np.float64)
        self.squares = np.zeros(self.n_ceps) if self.squares is None else np.asarray(self.squares, np.float64)

    def add(self, mfcc: np.ndarray, speech: np.ndarray) -> None:
        """Count the frames of ``mfcc`` (frames, n_ceps) whose ``speech`` flag is set."""
        chosen = np.asarray(mfcc, np.float64)[np.asarray(speech, bool)]
        self.count += len(chosen)
        self.total += chosen.sum(axis=0)
        self.squares += (chosen**2).sum(axis=0)

    def decay(self, factor: float) -> None:
        """Weigh everything counted so far by ``factor`` (0..1): older speech counts less."""
        self.count *= factor
        self.total *= factor
        self.squares *= factor

    @property
    def mean(self) -> np.ndarray:
        return self.total / max(self.count, 1e-9)

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(np.maximum(self.squares / max(self.count, 1e-9) - self.mean**2, 0.0))
