"""MFCC frontend in numpy alone, batch and streaming, identical frame for frame.

The numerics follow python_speech_features (``psf``), the desk reference: pre-emphasis,
framing without padding, a window, the power spectrum ``|rfft|^2 / n_fft``, a triangular
mel filterbank with psf's bin rounding, log, an orthonormal DCT-II, a sine lifter, and
optionally the log frame energy in place of c0. Everything that depends only on the
settings (window, filterbank, DCT matrix, lifter) is computed once per ``Frontend``.

Unlike psf, the batch call returns only *complete* frames (psf zero-pads a last partial
frame), because that is all a streaming frontend can ever emit; the frames it does return
are the same as psf's first frames.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from edge.pcm import int16_to_float

WINDOWS = ("hamming", "hann", "rectangular")
_RFFT_OUT = int(np.__version__.split(".")[0]) >= 2  # numpy.fft functions take out= since 2.0


@dataclass(frozen=True)
class FrontendSettings:
    """How audio becomes MFCC frames; stored in every model's JSON contract."""

    sample_rate_hz: int = 16000
    """Rate the frontend expects; other rates are resampled before it."""
    win_ms: float = 25.0
    """Analysis frame length in milliseconds."""
    hop_ms: float = 10.0
    """Step between frame starts in milliseconds."""
    n_fft: int = 512
    """FFT size; frames shorter than it are zero-padded."""
    n_mels: int = 40
    """Number of triangular mel filters."""
    n_ceps: int = 40
    """Number of cepstral coefficients kept (at most ``n_mels``)."""
    low_hz: float = 0.0
    """Lower edge of the lowest mel filter in Hz."""
    high_hz: float | None = None
    """Upper edge of the highest mel filter in Hz; None means the Nyquist frequency."""
    preemph: float = 0.97
    """Pre-emphasis coefficient a in y[n] = x[n] - a*x[n-1]; 0 disables it. 0.97 is the
    customary value: +20 dB tilt at 8 kHz relative to DC, undoing speech's spectral slope."""
    window: str = "hamming"
    """Frame window: hamming, hann or rectangular."""
    log_floor: float = 1e-10
    """Energies are clipped to at least this before the log, so digital silence gives a
    finite value (psf uses float eps, 2.2e-16; 1e-10 keeps silence nearer to speech)."""
    lifter: int = 0
    """Sine lifter parameter L (psf default 22); 0 disables liftering."""
    append_energy: bool = False
    """Replace c0 by the log of the frame's total spectral energy, as psf does."""

    def __post_init__(self) -> None:
        problems = []
        if self.sample_rate_hz <= 0:
            problems.append(f"sample_rate_hz must be positive, got {self.sample_rate_hz}")
        if self.win_ms <= 0 or self.hop_ms <= 0:
            problems.append(f"win_ms and hop_ms must be positive, got {self.win_ms}, {self.hop_ms}")
        if self.window not in WINDOWS:
            problems.append(f"window must be one of {', '.join(WINDOWS)}, got {self.window!r}")
        if not 0 < self.n_ceps <= self.n_mels:
            problems.append(f"n_ceps must be between 1 and n_mels ({self.n_mels}), got {self.n_ceps}")
        high = self.sample_rate_hz / 2 if self.high_hz is None else self.high_hz
        if not 0 <= self.low_hz < high <= self.sample_rate_hz / 2:
            problems.append(f"need 0 <= low_hz < high_hz <= {self.sample_rate_hz / 2}, got {self.low_hz}, {self.high_hz}")
        if not 0 <= self.preemph < 1:
            problems.append(f"preemph must be in [0, 1), got {self.preemph}")
        if self.log_floor <= 0:
            problems.append(f"log_floor must be positive, got {self.log_floor}")
        if not problems and self.win_samples > self.n_fft:
            problems.append(f"a {self.win_ms} ms frame ({self.win_samples} samples) does not fit n_fft={self.n_fft}")
        if problems:
            raise ValueError("invalid frontend settings: " + "; ".join(problems))

    @property
    def win_samples(self) -> int:
        return _round_half_up(self.win_ms * self.sample_rate_hz / 1000)

    @property
    def hop_samples(self) -> int:
        return _round_half_up(self.hop_ms * self.sample_rate_hz / 1000)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> FrontendSettings:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown frontend settings: {', '.join(unknown)}")
        return cls(**data)

    def window_frames(self, window_s: float) -> int:
        """Frames in a window of ``window_s`` seconds."""
        return self.frames_for(int(round(window_s * self.sample_rate_hz)))

    def hop_frames(self, hop_s: float) -> int:
        """Frames in a hop of ``hop_s`` seconds (rounded; contracts require an exact multiple)."""
        return int(round(hop_s * 1000 / self.hop_ms))

    def frames_for(self, n_samples: int) -> int:
        """Number of complete frames in ``n_samples`` samples."""
        if n_samples < self.win_samples:
            return 0
        return 1 + (n_samples - self.win_samples) // self.hop_samples


def _round_half_up(x: float) -> int:
    # psf rounds 0.5 up (400.0 and 160.0 at 16 kHz either way), not to even like round().
    return int(math.floor(x + 0.5))


def hz_to_mel(hz):
    """HTK mel scale, as psf uses it."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel):
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(settings: FrontendSettings) -> np.ndarray:
    """Triangular filters, shape (n_mels, n_fft//2 + 1), on psf's floored FFT bins."""
    high = settings.sample_rate_hz / 2 if settings.high_hz is None else settings.high_hz
    mels = np.linspace(hz_to_mel(settings.low_hz), hz_to_mel(high), settings.n_mels + 2)
    bins = np.floor((settings.n_fft + 1) * mel_to_hz(mels) / settings.sample_rate_hz)
    k = np.arange(settings.n_fft // 2 + 1, dtype=np.float64)[None, :]
    left, centre, right = bins[:-2, None], bins[1:-1, None], bins[2:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        rising = np.where((k >= left) & (k < centre), (k - left) / (centre - left), 0.0)
        falling = np.where((k >= centre) & (k < right), (right - k) / (right - centre), 0.0)
    return rising + falling


def dct_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Orthonormal DCT-II as a matrix, shape (n_in, n_out): ``x @ D`` is scipy's dct(x, norm='ortho')[:n_out]."""
    n = np.arange(n_in)[:, None]
    k = np.arange(n_out)[None, :]
    d = np.cos(np.pi * k * (2 * n + 1) / (2 * n_in)) * np.sqrt(2.0 / n_in)
    d[:, 0] /= np.sqrt(2.0)
    return d


def analysis_window(settings: FrontendSettings) -> np.ndarray:
    """The frame window (hamming, hann or rectangular) of ``win_samples`` samples, float64."""
    n = settings.win_samples
    if settings.window == "hamming":
        return np.hamming(n)
    if settings.window == "hann":
        return np.hanning(n)
    return np.ones(n)


class Frontend:
    """Batch MFCC: ``frontend(signal)`` gives (frames, n_ceps) float32 for the complete frames.

    Keeps a scratch buffer between calls, so one instance serves one thread at a time.
    """

    def __init__(self, settings: FrontendSettings | None = None) -> None:
        self.settings = settings or FrontendSettings()
        s = self.settings
        self._window = analysis_window(s)
        # One matrix gives the mel energies and, in its last column, the frame's total energy;
        # psf's 1/n_fft power scaling is folded in, so the spectrum is used as |X|^2 directly.
        fbank_t = mel_filterbank(s).T  # (bins, mels)
        self._energies = np.ascontiguousarray(np.hstack((fbank_t, np.ones((fbank_t.shape[0], 1)))) / s.n_fft)
        self._dct = dct_matrix(s.n_mels, s.n_ceps)
        self._buffers: tuple[np.ndarray, ...] = ()
        if s.lifter > 0:
            n = np.arange(s.n_ceps)
            self._lift = 1.0 + (s.lifter / 2.0) * np.sin(np.pi * n / s.lifter)
        else:
            self._lift = None

    def _scratch(self, n: int) -> tuple[np.ndarray, ...]:
        """Views of n rows of the per-instance work buffers, grown when a call needs more."""
        if not self._buffers or self._buffers[0].shape[0] < n:
            s = self.settings
            bins = s.n_fft // 2 + 1
            self._buffers = (
                np.zeros((n, s.n_fft)),  # windowed frames, zero-padded to n_fft
                np.zeros((n, bins), dtype=np.complex128),
                np.zeros((n, bins)),
                np.zeros((n, bins)),
                np.zeros((n, s.n_mels + 1)),
            )
        return tuple(b[:n] for b in self._buffers)

    def __call__(self, signal: np.ndarray) -> np.ndarray:
        return self.mfcc(signal)

    def mfcc(self, signal: np.ndarray) -> np.ndarray:
        """MFCC of a whole mono signal at ``settings.sample_rate_hz``."""
        return self.features(signal)[0]

    def features(self, signal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """MFCC and log energy per complete frame of a whole mono signal."""
        x = _as_signal(signal)
        emphasized = np.empty_like(x)
        if x.size:
            emphasized[0] = x[0]
            np.subtract(x[1:], self.settings.preemph * x[:-1], out=emphasized[1:])
        return self.frames_to_mfcc(self.frame(emphasized))

    def frame(self, emphasized: np.ndarray) -> np.ndarray:
        """Complete frames of an already pre-emphasised signal, as a strided view."""
        s = self.settings
        n = s.frames_for(emphasized.size)
        if n == 0:
            return np.zeros((0, s.win_samples), dtype=np.float64)
        x = np.ascontiguousarray(emphasized)
        # as_strided directly: sliding_window_view's checks cost 4x more than a 100 ms chunk's framing.
        step = x.strides[0]
        return np.lib.stride_tricks.as_strided(x, shape=(n, s.win_samples), strides=(s.hop_samples * step, step), writeable=False)

    def frames_to_mfcc(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """MFCC and log energy of pre-emphasised frames: ((n, n_ceps) float32, (n,) float32).

        The log energy is log of the frame's total spectral power, the quantity psf
        substitutes for c0; the speech detector uses it too.
        """
        s = self.settings
        if frames.shape[0] == 0:
            return np.zeros((0, s.n_ceps), np.float32), np.zeros((0,), np.float32)
        n = frames.shape[0]
        padded, spectrum, power, scratch, energies = self._scratch(n)
        # Every step writes into buffers kept between calls: no zero-padding copy for the FFT
        # and no fresh arrays faulted in per call, which halves the time of a second of audio.
        np.multiply(frames, self._window, out=padded[:, : s.win_samples])
        if _RFFT_OUT:
            np.fft.rfft(padded, out=spectrum)
        else:  # numpy < 2 (tflite-runtime's Pis) has no out= for the FFT
            spectrum[...] = np.fft.rfft(padded)
        np.multiply(spectrum.real, spectrum.real, out=power)
        np.multiply(spectrum.imag, spectrum.imag, out=scratch)
        power += scratch
        np.matmul(power, self._energies, out=energies)  # (frames, mels + 1)
        np.maximum(energies, s.log_floor, out=energies)
        np.log(energies, out=energies)
        ceps = energies[:, :-1] @ self._dct
        log_energy = energies[:, -1]
        if self._lift is not None:
            ceps *= self._lift
        if s.append_energy:
            ceps[:, 0] = log_energy
        return ceps.astype(np.float32), log_energy.astype(np.float32)


class StreamingFrontend:
    """Feed chunks of any size; get exactly the frames the batch call gives on the whole signal.

    Keeps the last raw sample (for pre-emphasis across chunk edges) and the pre-emphasised
    samples of the frame not yet complete. ``samples_seen`` counts every sample fed, and
    frame i always starts at sample ``i * hop_samples``.
    """

    def __init__(self, settings: FrontendSettings | None = None, frontend: Frontend | None = None) -> None:
        self.frontend = frontend or Frontend(settings)
        self.settings = self.frontend.settings
        self.reset()

    def reset(self) -> None:
        """Forget all audio: the next sample fed is sample 0 of a new stream."""
        self._pending = np.zeros(0, dtype=np.float64)
        self._last = None  # last raw sample of the previous chunk, for pre-emphasis
        self.samples_seen = 0
        self.frames_emitted = 0

    def process(self, chunk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Add samples; return (mfcc, log_energy) of the frames completed by them."""
        x = _as_signal(chunk)
        if x.size == 0:
            return self.frontend.frames_to_mfcc(np.zeros((0, self.settings.win_samples)))
        emphasized = np.empty_like(x)
        emphasized[0] = x[0] if self._last is None else x[0] - self.settings.preemph * self._last
        np.subtract(x[1:], self.settings.preemph * x[:-1], out=emphasized[1:])
        self._last = x[-1]
        self.samples_seen += x.size

        buffer = np.concatenate((self._pending, emphasized)) if self._pending.size else emphasized
        frames = self.frontend.frame(buffer)
        n = frames.shape[0]
        out = self.frontend.frames_to_mfcc(frames)
        consumed = n * self.settings.hop_samples
        self._pending = buffer[consumed:].copy()
        self.frames_emitted += n
        return out


def _as_signal(signal: np.ndarray) -> np.ndarray:
    x = np.asarray(signal)
    if x.ndim != 1:
        raise ValueError(f"the frontend takes mono audio as a 1-D array, got shape {x.shape}")
    if x.dtype == np.int16:
        return int16_to_float(x).astype(np.float64)
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"audio must be int16 or float samples, got {x.dtype}")
    return x.astype(np.float64, copy=False)
