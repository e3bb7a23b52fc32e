"""Streaming polyphase resampling to 16 kHz in numpy alone.

The filter is the one ``scipy.signal.resample_poly`` designs by default: a Kaiser-windowed
sinc (beta 5.0) spanning 10 zero crossings either side at the slower of the two rates,
cut off at the lower Nyquist frequency. Output sample n sits exactly at input time
``n * down / up`` (zero phase), as in scipy, so the two agree sample for sample; the only
difference is that this one can be fed a chunk at a time and keeps its own history.
"""

from __future__ import annotations

import functools
from fractions import Fraction

import numpy as np

KAISER_BETA = 5.0  # scipy.signal.resample_poly's default window ('kaiser', 5.0): ~-55 dB stopband
ZERO_CROSSINGS = 10  # scipy's half_len = 10 * max(up, down): 10 sinc lobes either side


# The filter has 20 * max(up, down) taps. Every common rate stays far below this bound
# (TESS's 24,414 Hz is the largest: 8000/12207); an odd rate such as 44,099 or 199,999 Hz
# would need millions of taps and hundreds of MB, so its ratio is approximated instead.
MAX_PHASES = 16384


def ratio(in_rate_hz: int, out_rate_hz: int) -> tuple[int, int]:
    """(up, down) in lowest terms, both at most MAX_PHASES.

    When the exact ratio needs more, the nearest fraction within that bound is used: the
    output rate is then off by a few parts per million at most (5 ppm for 199,999 Hz),
    far below what anyone hears.
    """
    if in_rate_hz <= 0 or out_rate_hz <= 0:
        raise ValueError(f"sample rates must be positive, got {in_rate_hz} and {out_rate_hz}")
    exact = Fraction(int(out_rate_hz), int(in_rate_hz))
    limit = MAX_PHASES
    approx = exact.limit_denominator(limit)
    while approx.numerator > MAX_PHASES:  # upsampling: the numerator is the larger one
        limit //= 2
        approx = exact.limit_denominator(limit)
    return approx.numerator, approx.denominator


def design_filter(up: int, down: int) -> np.ndarray:
    """scipy's firwin(2*half_len+1, 1/max(up, down), window=('kaiser', 5.0)) * up, in numpy."""
    max_rate = max(up, down)
    half_len = ZERO_CROSSINGS * max_rate
    cutoff = 1.0 / max_rate  # as a fraction of the upsampled Nyquist rate
    n = np.arange(-half_len, half_len + 1, dtype=np.float64)
    h = cutoff * np.sinc(cutoff * n) * np.kaiser(2 * half_len + 1, KAISER_BETA)
    return h / h.sum() * up  # unit gain at DC before upsampling, as firwin's scale=True


@functools.lru_cache(maxsize=16)
def _polyphase(up: int, down: int) -> tuple[np.ndarray, np.ndarray]:
    """Taps per phase, shape (up, taps), and the input offsets j they apply to.

    Output n at input position c = n*down = m0*up + p uses inputs m0 - j with taps
    h[half + p + j*up]; one range of j covers every phase, with zeros where h ends.
    """
    h = design_filter(up, down)
    half = (h.size - 1) // 2
    j = np.arange(-((half + up - 1) // up), half // up + 1)
    idx = half + np.arange(up)[:, None] + j[None, :] * up
    valid = (idx >= 0) & (idx < h.size)
    table = np.where(valid, h[np.clip(idx, 0, h.size - 1)], 0.0)
    table.flags.writeable = False
    return table, j


class Resampler:
    """Feed chunks at ``in_rate_hz``; get the samples at ``out_rate_hz`` that they complete.

    Any chunking gives the same samples as one call with the whole signal, and
    ``process(x) + flush()`` equals ``scipy.signal.resample_poly(x, up, down)``.
    """

    def __init__(self, in_rate_hz: int, out_rate_hz: int = 16000) -> None:
        self.in_rate_hz = int(in_rate_hz)
        self.out_rate_hz = int(out_rate_hz)
        self.up, self.down = ratio(self.in_rate_hz, self.out_rate_hz)
        self.passthrough = self.up == self.down
        if not self.passthrough:
            self._table, self._offsets = _polyphase(self.up, self.down)
            self._j_lo = int(self._offsets[0])
            self._half = ZERO_CROSSINGS * max(self.up, self.down)
        self.reset()

    def reset(self) -> None:
        """Forget all input: the next sample is the first of a new stream."""
        self._history = np.zeros(0, dtype=np.float64)
        self._history_start = 0  # absolute input index of _history[0]
        self.samples_in = 0
        self.samples_out = 0

    def process(self, chunk: np.ndarray) -> np.ndarray:
        """Resample a chunk; returns the output samples now complete (float64)."""
        x = np.asarray(chunk, dtype=np.float64)
        if x.ndim != 1:
            raise ValueError(f"resampling takes mono audio as a 1-D array, got shape {x.shape}")
        if self.passthrough:
            self.samples_in += x.size
            self.samples_out += x.size
            return x.copy()
        self._history = np.concatenate((self._history, x))
        self.samples_in += x.size
        # Output n needs inputs up to floor((n*down + half) / up); those up to samples_in - 1 exist.
        last = (self.samples_in * self.up - 1 - self._half) // self.down
        return self._emit(last + 1)

    def flush(self) -> np.ndarray:
        """The tail as if the stream were followed by silence, as scipy ends a whole signal."""
        if self.passthrough:
            return np.zeros(0)
        total = -(-self.samples_in * self.up // self.down)  # ceil: scipy's output length
        return self._emit(total)

    def _emit(self, stop: int) -> np.ndarray:
        blocks = []
        while self.samples_out < stop:
            # Bounded blocks keep the (outputs x taps) gather small on a Pi.
            end = min(stop, self.samples_out + _BLOCK)
            blocks.append(self._emit_block(np.arange(self.samples_out, end, dtype=np.int64)))
            self.samples_out = end
        # Keep only the inputs the next output can still reach.
        first_needed = (self.samples_out * self.down) // self.up + self._j_lo
        drop = min(max(first_needed - self._history_start, 0), self._history.size)
        if drop:
            self._history = self._history[drop:]
            self._history_start += drop
        return np.concatenate(blocks) if blocks else np.zeros(0)

    def _emit_block(self, n: np.ndarray) -> np.ndarray:
        if self.up <= _STRIDED_MAX_UP:
            return self._emit_strided(int(n[0]), n.size)
        m0, phase = np.divmod(n * self.down, self.up)
        index = m0[:, None] - self._offsets[None, :] - self._history_start
        # Inputs before the stream or after its end are zeros, as in scipy.
        padded = np.concatenate((self._history, [0.0]))
        index = np.where((index >= 0) & (index < self._history.size), index, self._history.size)
        return np.einsum("ij,ij->i", padded[index], self._table[phase])

    def _emit_strided(self, first: int, count: int) -> np.ndarray:
        """The same sums without a gather, for small ``up`` (48, 32, 96, 24 and 8 kHz input).

        Outputs first + r, first + r + up, ... share one phase, and their inputs step by
        ``down``: a strided view of the (zero-padded) history holds each one's taps in a row.
        """
        taps = self._offsets.size
        j_hi = int(self._offsets[-1])
        last = first + count - 1
        lo = (first * self.down) // self.up - j_hi - self._history_start  # first input needed
        hi = (last * self.down) // self.up - self._j_lo - self._history_start + 1  # one past the last
        left, right = max(-lo, 0), max(hi - self._history.size, 0)
        padded = np.concatenate((np.zeros(left), self._history, np.zeros(right))) if left or right else self._history
        out = np.empty(count)
        for r in range(min(self.up, count)):
            n0 = first + r
            m0, phase = divmod(n0 * self.down, self.up)
            rows = (count - r + self.up - 1) // self.up
            start = m0 - j_hi - self._history_start + left
            view = np.lib.stride_tricks.as_strided(
                padded[start:],
                shape=(rows, taps),
                strides=(padded.strides[0] * self.down, padded.strides[0]),
                writeable=False,
            )
            # Row q holds inputs m0 + q*down - j for j from j_hi down to j_lo: the taps reversed.
            out[r :: self.up] = np.einsum("ij,j->i", view, self._table[phase][::-1])
        return out


_STRIDED_MAX_UP = 8  # above this the per-phase loop costs more than one gather
_BLOCK = 4096  # output samples per gather


def resample(signal: np.ndarray, in_rate_hz: int, out_rate_hz: int = 16000) -> np.ndarray:
    """Resample a whole signal (the streaming resampler fed once, then flushed)."""
    r = Resampler(in_rate_hz, out_rate_hz)
    out = r.process(signal)
    return np.concatenate((out, r.flush())) if not r.passthrough else out
