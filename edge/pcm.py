"""Samples as the device counts them: int16 PCM to float and back, in one place."""

from __future__ import annotations

import numpy as np

INT16_FULL_SCALE = 32768.0  # 2**15: int16 -32768 maps to -1.0 and 32767 to just below 1.0


def int16_to_float(samples: np.ndarray) -> np.ndarray:
    """int16 PCM to float32 in [-1, 1); exact, since every int16 divided by 2**15 fits float32."""
    return np.asarray(samples, dtype=np.int16).astype(np.float32) / INT16_FULL_SCALE
