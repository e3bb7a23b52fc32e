"""Seeded audio augmentation with audiomentations, including in-car noise (engine hum, road rumble).

Augmentation acts on 16 kHz audio before the device's frontend, so the model learns from
the features of plausible recordings rather than from perturbed features. Each (clip,
variant) draws its own seed from the base seed and the clip's path, so a variant is the
same on every run and in every worker process, whatever order the clips come in.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 16000
CAR_NOISE_SECONDS = 6.0


@dataclass(frozen=True)
class AugmentSettings:
    """Which perturbations a training variant gets and how strong they may be."""

    seed: int = 1234
    """Base seed; each clip and variant derives its own from it."""
    noise_p: float = 0.8
    """Probability of adding noise (white, coloured, or in-car), one kind at a time."""
    snr_db: tuple[float, float] = (5.0, 30.0)
    """Signal-to-noise ratio range for the added noise, in dB."""
    gain_db: tuple[float, float] = (-12.0, 6.0)
    """Gain range in dB (quieter more than louder, since int16 clips at full scale)."""
    shift_max_fraction: float = 0.2
    """Largest circular time shift as a fraction of the clip (moves where windows fall)."""
    pitch_semitones: tuple[float, float] = (-4.0, 4.0)
    """Pitch shift range in semitones (speaker variety without changing tempo)."""
    pitch_p: float = 0.9
    """Probability of a pitch shift."""
    stretch_rate: tuple[float, float] = (0.9, 1.1)
    """Time-stretch rate range (speaking-rate variety without changing pitch)."""
    stretch_p: float = 0.3
    """Probability of a time stretch."""

    def __post_init__(self) -> None:
        # Ranges given as [-4, 4] on the command line are the same settings as (-4.0, 4.0), and
        # must give the same feature-cache keys.
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, (tuple, list)):
                object.__setattr__(self, f.name, tuple(float(v) for v in value))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def write_car_noise(folder: str | Path, count: int = 6, seed: int = 7) -> list[Path]:
    """Synthesise in-car noise clips (WAV, 16 kHz) for AddBackgroundNoise; reuses them if present.

    Engine hum: a 4-cylinder engine fires twice per revolution, so 750-3000 rpm gives a
    fundamental of 25-100 Hz; its harmonics fall off about 6 dB per octave and the speed
    wanders slowly. Road rumble: brown noise (random walk, -6 dB/octave) that dominates
    below a few hundred hertz, as tyre and wind noise do in a cabin.
    """
    import soundfile as sf

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n = int(CAR_NOISE_SECONDS * SAMPLE_RATE_HZ)
    t = np.arange(n) / SAMPLE_RATE_HZ
    paths = []
    for i in range(count):
        path = folder / f"car_{i:02d}.wav"
        paths.append(path)
        if path.exists():
            continue
        f0 = rng.uniform(25.0, 100.0)
        wander = 1.0 + 0.03 * np.sin(2 * np.pi * rng.uniform(0.05, 0.3) * t + rng.uniform(0, 2 * np.pi))
        phase = 2 * np.pi * np.cumsum(f0 * wander) / SAMPLE_RATE_HZ
        hum = sum(np.sin(k * phase + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 12))
        rumble = np.cumsum(rng.standard_normal(n))
        rumble -= np.convolve(rumble, np.ones(801) / 801, mode="same")  # drop the walk's drift below ~20 Hz
        hum /= np.sqrt(np.mean(hum**2))
        rumble /= np.sqrt(np.mean(rumble**2))
        mix = rng.uniform(0.3, 1.0) * hum + rng.uniform(0.3, 1.0) * rumble
        sf.write(str(path), (0.3 * mix / np.max(np.abs(mix))).astype(np.float32), SAMPLE_RATE_HZ)
    return paths


class Augmenter:
    """Callable (audio16k, clip_key, variant) -> augmented audio, deterministic per key and variant."""

    def __init__(self, settings: AugmentSettings, noise_dir: str | Path) -> None:
        import audiomentations as am

        self.settings = s = settings
        write_car_noise(noise_dir)
        noise = am.OneOf(
            [
                am.AddGaussianSNR(min_snr_db=s.snr_db[0], max_snr_db=s.snr_db[1], p=1.0),
                am.AddColorNoise(min_snr_db=s.snr_db[0], max_snr_db=s.snr_db[1], p=1.0),
                am.AddBackgroundNoise(sounds_path=str(noise_dir), min_snr_db=s.snr_db[0], max_snr_db=s.snr_db[1], p=1.0),
            ],
            p=s.noise_p,
        )
        self._compose = am.Compose(
            [
                am.PitchShift(min_semitones=s.pitch_semitones[0], max_semitones=s.pitch_semitones[1], p=s.pitch_p),
                am.TimeStretch(min_rate=s.stretch_rate[0], max_rate=s.stretch_rate[1], leave_length_unchanged=False, p=s.stretch_p),
                am.Shift(min_shift=-s.shift_max_fraction, max_shift=s.shift_max_fraction, rollover=True, p=1.0),
                noise,
                am.Gain(min_gain_db=s.gain_db[0], max_gain_db=s.gain_db[1], p=1.0),
            ]
        )

    def seed_for(self, clip_key: str, variant: int) -> int:
        digest = hashlib.sha256(f"{self.settings.seed}:{clip_key}:{variant}".encode()).digest()
        return int.from_bytes(digest[:4], "little")

    def __call__(self, audio16k: np.ndarray, clip_key: str, variant: int) -> np.ndarray:
        seed = self.seed_for(clip_key, variant)
        # audiomentations draws from numpy's and python's global generators.
        np.random.seed(seed)
        random.seed(seed)
        out = self._compose(samples=np.asarray(audio16k, dtype=np.float32), sample_rate=SAMPLE_RATE_HZ)
        return np.clip(out, -1.0, 1.0).astype(np.float32)  # a recording saturates at full scale


def vtlp_matrices(alphas: np.ndarray, frontend) -> np.ndarray:
    """Vocal tract length perturbation of MFCC frames, one (n_ceps, n_ceps) matrix per factor.

    A longer or shorter vocal tract moves every formant by about the same factor, so a
    speaker's spectrum is stretched along frequency. With all cepstra kept (n_ceps == n_mels,
    no lifter) the orthonormal DCT can be undone exactly: MFCC -> log-mel, each band takes the
    value the unwarped spectrum had at its centre frequency / alpha (linear interpolation
    between band centres), -> MFCC. All three steps are linear, so ``frames @ M`` warps.
    Batch-time and nearly free: new "speakers" every epoch, beside the stored audio variants.
    """
    from edge.frontend import dct_matrix, hz_to_mel, mel_to_hz

    n = frontend.n_mels
    if frontend.n_ceps != n or frontend.lifter or frontend.append_energy:
        raise ValueError(
            "vocal tract length perturbation needs every cepstral coefficient (n_ceps == n_mels), no lifter and no energy in c0"
        )
    high = frontend.sample_rate_hz / 2 if frontend.high_hz is None else frontend.high_hz
    centres = mel_to_hz(np.linspace(hz_to_mel(frontend.low_hz), hz_to_mel(high), n + 2)[1:-1])
    dct = dct_matrix(n, n)
    bands = np.arange(n)
    out = np.empty((len(alphas), n, n), np.float32)
    for i, alpha in enumerate(np.asarray(alphas, np.float64)):
        source = np.interp(centres / alpha, centres, bands)  # fractional band each band reads from
        lo = np.floor(source).astype(int)
        hi = np.minimum(lo + 1, n - 1)
        warp = np.zeros((n, n))
        np.add.at(warp, (lo, bands), 1.0 - (source - lo))
        np.add.at(warp, (hi, bands), source - lo)
        out[i] = dct.T @ warp @ dct
    return out


LN_PER_DB = np.log(10.0) / 10.0  # a power ratio of x dB is a natural-log energy difference of x * ln(10) / 10


def channel_curves(n: int, max_db: float, frontend, rng: np.random.Generator) -> np.ndarray:
    """Microphone, room and level colourings as MFCC offsets, one (n_ceps,) row per window.

    A linear channel multiplies the power spectrum, so it adds a curve to every frame's log-mel
    energies, and through the orthonormal DCT a constant vector to every MFCC frame. The curve
    is a gain plus a random sum of the four slowest cosines over the mel bands (tilts, a bass or
    presence bump), scaled so its largest excursion is up to ``max_db``: what a different
    microphone, distance or room does, which the training corpora each fix to one setting.
    """
    from edge.frontend import dct_matrix

    bands = (np.arange(frontend.n_mels) + 0.5) / frontend.n_mels
    basis = np.cos(np.pi * np.arange(5)[:, None] * bands[None, :])  # (5, n_mels): gain, tilt, ...
    coefficients = rng.uniform(-1.0, 1.0, size=(n, 5))
    curves = coefficients @ basis
    peak = np.maximum(np.abs(curves).max(axis=1, keepdims=True), 1e-9)
    curves *= rng.uniform(0.0, max_db, size=(n, 1)) / peak * LN_PER_DB
    return (curves @ dct_matrix(frontend.n_mels, frontend.n_ceps)).astype(np.float32)
