"""What the device says about an input it can read but may misjudge: audio recorded at too low a rate.

The model's frames cover 0 to 8 kHz (16 kHz audio, mel filters up to Nyquist). Audio sampled under
MIN_RATE_HZ has nothing above half its rate, so the upper filters see only the resampler's silence
and the verdict comes from a spectrum the model never trained on: it is given, with a warning.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

MIN_RATE_HZ = 8000
"""Telephone audio (8 kHz, speech up to 4 kHz) is the least the model's training data resembles."""


def rate_warning(name: str, rate_hz: int) -> str | None:
    """One sentence when ``rate_hz`` is too low for a verdict to be trusted; None otherwise."""
    if 0 < rate_hz < MIN_RATE_HZ:
        return (
            f"{name}: recorded at {rate_hz} Hz, under the {MIN_RATE_HZ} Hz the model needs; "
            "the verdict is unreliable (record at 16 kHz or more)"
        )
    return None


class RateTap:
    """Passes (samples, rate) blocks through and remembers their rate, for the warning above."""

    def __init__(self, blocks: Iterable[tuple[np.ndarray, int]]) -> None:
        self._blocks = blocks
        self.rate_hz = 0

    def __iter__(self) -> Iterator[tuple[np.ndarray, int]]:
        for block, rate in self._blocks:
            self.rate_hz = rate
            yield block, rate
