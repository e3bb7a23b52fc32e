"""Energy-based speech detection per frame, so silence and steady noise are not classified.

A frame counts as speech when its level is above an absolute floor *and* some decibels
above a running noise floor. The noise floor follows quieter frames at once and rises
only slowly, so a steady engine hum is learnt as noise within seconds while speech,
which pauses between words, keeps it down. A window holds speech when enough of its
frames do. Everything is a function of the frames alone, so any chunking of the audio
gives the same decisions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edge.frontend import FrontendSettings, analysis_window

LN_TO_DB = 10.0 / math.log(10.0)  # natural-log power to decibels


@dataclass(frozen=True)
class SpeechSettings:
    """When a frame and a window count as speech."""

    threshold_dbfs: float = -70.0
    """Frames quieter than this (pre-emphasised level, dB re full scale) are never speech.
    Pre-emphasis takes 15-25 dB off voiced speech, and quiet acted corpora (RAVDESS) peak
    near -60 dB on this scale: at -50, one clip in ten had no speech window at all."""
    margin_db: float = 12.0
    """A speech frame is at least this far above the running noise floor."""
    floor_rise_db_per_s: float = 2.0
    """How fast the noise floor may rise; it falls to a quieter frame at once."""
    min_speech_ratio: float = 0.25
    """A window holds speech when at least this share of its frames are speech."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_speech_ratio <= 1.0:
            raise ValueError(f"min_speech_ratio must be between 0 and 1, got {self.min_speech_ratio}")
        if self.margin_db < 0 or self.floor_rise_db_per_s < 0:
            raise ValueError("margin_db and floor_rise_db_per_s must not be negative")


def window_has_speech(ratio, settings: SpeechSettings):
    """Whether windows hold speech, from their share of speech frames: at least ``min_speech_ratio``
    and at least one frame (a ratio of 0 is never speech, even with min_speech_ratio = 0).

    The one rule for the device, training's choice of windows and the clip-level evaluation;
    a float gives a bool, an array an array of bools.
    """
    r = np.asarray(ratio, dtype=np.float64)
    has = (r >= settings.min_speech_ratio) & (r > 0)
    return bool(has) if has.ndim == 0 else has


class SpeechDetector:
    """Stateful per-frame speech decisions from the frontend's log energies."""

    def __init__(self, frontend: FrontendSettings, settings: SpeechSettings | None = None) -> None:
        self.settings = settings or SpeechSettings()
        window = analysis_window(frontend)
        # The frontend's energy is sum(|rfft|^2)/n_fft over half the spectrum, about
        # 0.5 * sum((w*x)^2) (Parseval). For a signal of RMS r that is 0.5 * sum(w^2) * r^2, so
        # dividing by 0.5 * sum(w^2) turns it into mean square re full scale.
        self._offset_db = LN_TO_DB * math.log(0.5 * float(np.sum(window**2)))
        self._rise_per_frame = self.settings.floor_rise_db_per_s * frontend.hop_ms / 1000.0
        self.reset()

    def reset(self) -> None:
        """Forget the noise floor."""
        self.noise_floor_db = self.settings.threshold_dbfs

    def level_dbfs(self, log_energy: np.ndarray) -> np.ndarray:
        """Frame levels in dBFS from the frontend's natural-log energies."""
        return np.asarray(log_energy, dtype=np.float64) * LN_TO_DB - self._offset_db

    def process(self, log_energy: np.ndarray) -> np.ndarray:
        """Boolean speech flag per frame; updates the noise floor frame by frame."""
        levels = self.level_dbfs(log_energy)
        flags = np.zeros(levels.size, dtype=bool)
        floor = self.noise_floor_db
        s = self.settings
        for i, level in enumerate(levels):  # ~100 frames/s: a plain loop is cheap and exact
            floor = min(level, floor + self._rise_per_frame)
            flags[i] = level > s.threshold_dbfs and level > floor + s.margin_db
        self.noise_floor_db = floor
        return flags
