"""The speech gate benchmark's signals: real speech with a reference of where it is, synthetic noises, their mix.

Speech: clips of the seven corpora (English, Polish, Turkish, Amharic), a few speakers each,
read and resampled by the device's own code, each scaled to an active speech level of -26 dBFS
and laid end to end with 1 s between clips and 2 s before the first. The reference is made
from the clean speech alone: a frame is speech when its plain (not pre-emphasised) level is
at most 25 dB below the loud frames of its own clip (their 95th percentile). Signal-to-noise
ratios are of that active speech level to the noise's mean power.

Noises, made here with fixed seeds (none is a recording):
- car: engine hum and road rumble, ``training.augment.write_car_noise`` with a seed training never used;
- white and pink (1/f) noise;
- fan: a blower's broadband rush (pink, rolled off below 150 Hz and above 3 kHz), its blade-pass
  tone at 163 Hz with two harmonics, and a slow 0.3 Hz swell;
- hum: 50 Hz mains with the harmonics a transformer buzzes at;
- random bytes: uniform int16 samples, what random bytes on stdin decode to.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import numpy as np

from benchmarks.common import CACHE

CORPORA = ("ravdess", "savee", "tess", "nemo", "turev", "esd", "ased")
NOISES = ("car", "white", "pink", "fan", "hum", "random bytes")
RATE = 16000
SPEECH_LEVEL_DBFS = -26.0  # the active speech level every clip is scaled to (ITU-T P.56's usual -26 dBov)
REFERENCE_BELOW_LOUD_DB = 25.0  # reference speech: within this of the clip's loud frames
LOUD_PERCENTILE = 95
GAP_S, LEAD_S = 1.0, 2.0
GAP_MARGIN_S = 0.3  # gap frames are at least this far from reference speech (word edges are not gaps)
NOISE_ALONE_S, QUIET_S = 60.0, 5.0
NOISE_ALONE_DBFS = -30.0
QUIET_DBFS = -80.0
NOISE_SEED = 4049  # training synthesised car noise with seed 7, benchmarks.accuracy with 2027


def choose_clips(data_root: Path, speakers_per_corpus: int, clips_per_speaker: int, seed: int = 0):
    """A few clips of a few speakers of every corpus present, in a seeded choice."""
    from training.corpora import load_data

    corpora = [c for c in CORPORA if (data_root / c).is_dir()]
    clips = load_data(data_root, corpora)
    rng = random.Random(seed)
    chosen = []
    for corpus in corpora:
        by_speaker: dict[str, list] = {}
        for clip in sorted((c for c in clips if c.corpus == corpus), key=lambda c: c.path):
            by_speaker.setdefault(clip.speaker, []).append(clip)
        speakers = sorted(by_speaker)
        rng.shuffle(speakers)
        for speaker in speakers[:speakers_per_corpus]:
            chosen += rng.sample(by_speaker[speaker], min(clips_per_speaker, len(by_speaker[speaker])))
    return chosen


def plain_levels_db(x: np.ndarray, frontend) -> np.ndarray:
    """Mean square per frontend frame of the plain signal (no pre-emphasis, no window), in dB."""
    n = frontend.frames_for(x.size)
    if n == 0:
        return np.zeros(0)
    frames = np.lib.stride_tricks.sliding_window_view(x.astype(np.float64), frontend.win_samples)[:: frontend.hop_samples][:n]
    return 10 * np.log10(np.mean(frames**2, axis=1) + 1e-20)


@dataclasses.dataclass
class SpeechStream:
    audio: np.ndarray
    """Clean speech at 16 kHz, clips scaled to SPEECH_LEVEL_DBFS, silence between them."""
    reference: np.ndarray
    """Reference speech flag per frame."""
    gap: np.ndarray
    """Frames at least GAP_MARGIN_S from any reference frame."""
    clips: int
    corpora: dict


def speech_stream(clips, frontend) -> SpeechStream:
    from edge.audio import read_audio
    from edge.resample import resample

    hop = frontend.hop_samples
    parts, flags = [np.zeros(int(LEAD_S * RATE))], [np.zeros(int(LEAD_S * RATE) // hop, dtype=bool)]
    corpora: dict[str, int] = {}
    for clip in clips:
        x, rate = read_audio(clip.path)
        y = resample(x, rate).astype(np.float64)
        y = y[: y.size - y.size % hop]  # whole hops, so the next clip starts on a frame boundary
        levels = plain_levels_db(y, frontend)
        ref = levels > np.percentile(levels, LOUD_PERCENTILE) - REFERENCE_BELOW_LOUD_DB
        active = np.mean(10 ** (levels[ref] / 10))
        y *= 10 ** (SPEECH_LEVEL_DBFS / 20) / np.sqrt(active)
        frames = np.zeros(y.size // hop, dtype=bool)
        frames[: ref.size] = ref
        parts += [y, np.zeros(int(GAP_S * RATE))]
        flags += [frames, np.zeros(int(GAP_S * RATE) // hop, dtype=bool)]
        corpora[clip.corpus] = corpora.get(clip.corpus, 0) + 1
    audio = np.concatenate(parts)
    n = frontend.frames_for(audio.size)
    reference = np.concatenate(flags)[:n]
    margin = int(GAP_MARGIN_S * RATE / hop)
    near = np.convolve(reference.astype(float), np.ones(2 * margin + 1), mode="same") > 0
    return SpeechStream(audio, reference, ~near, len(clips), corpora)


def unit_power(x: np.ndarray) -> np.ndarray:
    return x / np.sqrt(np.mean(x**2))


def shaped(rng: np.random.Generator, n: int, gain_of_hz) -> np.ndarray:
    """White noise shaped in frequency by gain_of_hz (amplitude gain per rfft bin)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    hz = np.fft.rfftfreq(n, 1 / RATE)
    return np.fft.irfft(spectrum * gain_of_hz(np.maximum(hz, 1.0)), n)


def make_noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of one kind of noise at unit mean power (random bytes: at their own full scale)."""
    t = np.arange(n) / RATE
    if kind == "car":
        from edge.audio import read_audio
        from training.augment import write_car_noise

        clips = [read_audio(p)[0].astype(np.float64) for p in write_car_noise(CACHE / "speech_gate_noise", count=6, seed=NOISE_SEED)]
        order = rng.permutation(len(clips))
        return unit_power(np.resize(np.concatenate([clips[i] for i in order]), n))
    if kind == "white":
        return rng.standard_normal(n)
    if kind == "pink":
        return unit_power(shaped(rng, n, lambda f: 1 / np.sqrt(np.maximum(f, 20.0))))
    if kind == "fan":
        rush = shaped(rng, n, lambda f: 1 / np.sqrt(f) / (1 + (150 / f) ** 2) / (1 + (f / 3000) ** 2))
        blade_hz = 163.0  # 7 blades at 1400 rpm
        tone = sum(a * np.sin(2 * np.pi * k * blade_hz * t + rng.uniform(0, 2 * np.pi)) for k, a in ((1, 1.0), (2, 0.4), (3, 0.2)))
        swell = 1 + 0.1 * np.sin(2 * np.pi * 0.3 * t)
        return unit_power(swell * (unit_power(rush) + 0.5 * unit_power(tone)))
    if kind == "hum":
        # 50 Hz mains: a transformer buzzes at twice the mains and its harmonics; odd ones from saturation.
        harmonics = ((1, 1.0), (2, 0.6), (3, 0.5), (4, 0.25), (5, 0.3), (6, 0.1), (7, 0.2), (9, 0.1))
        return unit_power(sum(a * np.sin(2 * np.pi * 50 * k * t + rng.uniform(0, 2 * np.pi)) for k, a in harmonics))
    if kind == "random bytes":
        from edge.pcm import int16_to_float

        return int16_to_float(rng.integers(-32768, 32768, n, dtype=np.int16)).astype(np.float64)
    raise ValueError(f"unknown noise {kind!r}")


def noise_alone(kind: str, rng: np.random.Generator) -> np.ndarray:
    """QUIET_S of quiet, then NOISE_ALONE_S of the noise."""
    quiet = rng.standard_normal(int(QUIET_S * RATE)) * 10 ** (QUIET_DBFS / 20)
    noise = make_noise(kind, int(NOISE_ALONE_S * RATE), rng)
    if kind != "random bytes":
        noise = noise * 10 ** (NOISE_ALONE_DBFS / 20)
    return np.concatenate((quiet, noise))


def mix(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """Speech at SPEECH_LEVEL_DBFS plus noise of unit power scaled to the SNR; clipped at full scale as a recording is."""
    gain = 10 ** ((SPEECH_LEVEL_DBFS - snr_db) / 20) / np.sqrt(np.mean(noise**2))
    return np.clip(speech + gain * noise, -1.0, 1.0)
