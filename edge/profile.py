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

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np


@dataclass
class SpeechStats:
    """Running sums of MFCC frames that hold speech: count, sum and sum of squares per coefficient."""

    n_ceps: int
    count: float = 0.0
    """Speech frames counted (a float: adaptation decays it)."""
    total: np.ndarray = field(default=None)  # type: ignore[assignment]
    squares: np.ndarray = field(default=None)  # type: ignore[assignment]
    prior: float = 0.0
    """Of ``count``, the frames that stand for statistics it started from rather than speech heard (decayed alike)."""

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
        self.prior *= factor
        self.total *= factor
        self.squares *= factor

    @property
    def mean(self) -> np.ndarray:
        return self.total / max(self.count, 1e-9)

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(np.maximum(self.squares / max(self.count, 1e-9) - self.mean**2, 0.0))


@dataclass(frozen=True)
class Adaptation:
    """How a running device keeps learning its user's voice."""

    time_constant_s: float = 7200.0
    """Seconds of *speech* over which older speech fades to 1/e of its weight: two hours of talking, so a
    long angry episode (minutes) moves the statistics only a little and does not become the new normal."""
    prior_s: float = 60.0
    """Without a profile, the population's statistics start with the weight of this much speech."""

    def __post_init__(self) -> None:
        if self.time_constant_s <= 0 or self.prior_s < 0:
            raise ValueError("adaptation needs a positive time_constant_s and a prior_s of at least 0")

    def decay(self, speech_frames: int, hop_ms: float) -> float:
        """The factor that ages the statistics by ``speech_frames`` frames of new speech."""
        return float(np.exp(-speech_frames * hop_ms / 1000 / self.time_constant_s))


PROFILE_FORMAT = "ser-edge-profile/1"
MIN_SPEECH_S = 20.0  # below this the spread of 40 coefficients is not yet a person's, it is a few sentences'


class ProfileError(ValueError):
    """A profile that cannot be used with this model, with one sentence saying why."""


@dataclass(frozen=True)
class VoiceProfile:
    """What ``python -m edge enroll`` writes: statistics of one person's speech, no audio, no words."""

    mean: tuple[float, ...]
    """Mean of each MFCC coefficient over the person's speech frames."""
    std: tuple[float, ...]
    """Standard deviation of each coefficient over the same frames."""
    speech_s: float
    """Seconds of speech the statistics come from (decayed when the device adapts)."""
    model_sha256: str
    """sha256 of the .tflite the profile was made for."""
    frontend: dict
    """The frontend settings of that model: the statistics are of its frames."""
    created: str
    """When it was made (ISO 8601, UTC)."""
    updated: str = ""
    """When adaptation last changed it (ISO 8601, UTC), empty if never."""
    prior_s: float = 0.0
    """A profile the device started learning without enrolment also holds the population's statistics,
    weighted as this many seconds of speech (decayed like the rest); not counted in ``speech_s``."""
    format: str = PROFILE_FORMAT

    @classmethod
    def from_stats(cls, stats: SpeechStats, contract, created: str | None = None) -> VoiceProfile:
        return cls(
            mean=tuple(round(float(v), 6) for v in stats.mean),
            std=tuple(max(round(float(v), 6), 1e-6) for v in stats.std),  # a spread of 0 would be refused when read
            speech_s=round((stats.count - stats.prior) * contract.frontend.hop_ms / 1000, 2),
            model_sha256=contract.sha256,
            frontend=contract.frontend.to_dict(),
            created=created or utc_now(),
            prior_s=round(stats.prior * contract.frontend.hop_ms / 1000, 2),
        )

    def stats(self, hop_ms: float) -> SpeechStats:
        """Running sums that reproduce this profile, weighted by its seconds of speech (for adaptation)."""
        count = (self.speech_s + self.prior_s) * 1000 / hop_ms
        mean, std = np.asarray(self.mean), np.asarray(self.std)
        return SpeechStats(len(mean), count, mean * count, (std**2 + mean**2) * count, prior=self.prior_s * 1000 / hop_ms)

    def check(self, contract, where: str) -> None:
        """Refuse a profile made for another model or frontend, in one sentence."""
        if self.frontend != contract.frontend.to_dict():
            raise ProfileError(f"{where}: the profile was made with another frontend than this model's; enrol again with this model")
        if self.model_sha256 != contract.sha256:
            raise ProfileError(
                f"{where}: the profile belongs to another model (sha256 {self.model_sha256[:12]}…, this one is "
                f"{contract.sha256[:12]}…); enrol again with `python -m edge enroll --model ...`"
            )
        if len(self.mean) != contract.frontend.n_ceps or len(self.std) != contract.frontend.n_ceps:
            raise ProfileError(
                f"{where}: the profile holds {len(self.mean)} coefficients, the model's frames have {contract.frontend.n_ceps}"
            )

    def to_dict(self) -> dict:
        return {
            "format": self.format,
            "speech_s": self.speech_s,
            "model_sha256": self.model_sha256,
            "created": self.created,
            "updated": self.updated,
            "prior_s": self.prior_s,
            "frontend": self.frontend,
            "mean": list(self.mean),
            "std": list(self.std),
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write the profile as JSON, atomically (a temporary file, fsync, rename): a power cut leaves the old or the new one."""
        write_atomically(Path(path), (json.dumps(self.to_dict(), indent=1) + "\n").encode())

    @classmethod
    def load(cls, path: str | os.PathLike, contract=None) -> VoiceProfile:
        """Read a profile; ProfileError (one sentence) if it is unreadable or, given a model's contract, not for that model."""
        path = Path(path)
        again = "; delete it and enrol again (`python -m edge enroll`)"
        try:
            data = json.loads(path.read_bytes().decode("utf-8"))
        except FileNotFoundError:
            raise ProfileError(f"{path}: no such profile; make one with `python -m edge enroll --out {path} ...`") from None
        except OSError as exc:
            raise ProfileError(f"{path}: cannot be read ({exc.strerror or exc})") from None
        except UnicodeDecodeError:
            raise ProfileError(f"{path}: not a voice profile (it is not text; a profile is the JSON `enroll` writes)") from None
        except json.JSONDecodeError as exc:
            raise ProfileError(f"{path}: not a readable profile (broken JSON at line {exc.lineno}){again}") from None
        if not isinstance(data, dict) or data.get("format") != PROFILE_FORMAT:
            raise ProfileError(f'{path}: not a ser-edge voice profile (it has no "format": "{PROFILE_FORMAT}")')
        try:
            profile = cls(
                mean=_numbers(data, "mean"),
                std=_numbers(data, "std", positive=True),
                speech_s=_number(data, "speech_s"),
                model_sha256=str(_field(data, "model_sha256")),
                frontend=_field(data, "frontend", dict),
                created=str(data.get("created", "")),
                updated=str(data.get("updated") or ""),
                prior_s=_number(data, "prior_s", 0.0),
            )
        except ValueError as exc:
            raise ProfileError(f"{path}: the profile is damaged ({exc}){again}") from None
        if contract is not None:
            profile.check(contract, str(path))
        return profile


def _field(data: dict, key: str, kind: type | None = None):
    if key not in data:
        raise ValueError(f'it has no "{key}"')
    if kind is not None and not isinstance(data[key], kind):
        raise ValueError(f'"{key}" is not a {kind.__name__}')
    return data[key]


def _number(data: dict, key: str, default: float | None = None) -> float:
    """A finite number of 0 or more: seconds of speech."""
    value = data.get(key, default) if default is not None else _field(data, key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
        raise ValueError(f'"{key}" must be a number of 0 or more')
    return float(value)


def _numbers(data: dict, key: str, positive: bool = False) -> tuple[float, ...]:
    """A list of finite numbers (above 0 for a spread: a window is divided by it)."""
    values = _field(data, key, list)
    if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in values):
        raise ValueError(f'"{key}" must be a list of finite numbers')
    if positive and min(values) <= 0:
        raise ValueError(f'"{key}" must be above 0 everywhere')
    return tuple(float(v) for v in values)


def utc_now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def write_atomically(path: Path, data: bytes) -> None:
    """``edge.files.write_atomically``, with a path that is not a regular file refused as a ProfileError."""
    from edge.files import NotRegularFileError
    from edge.files import write_atomically as write

    try:
        write(path, data)
    except NotRegularFileError:
        raise ProfileError(f"{path} exists and is not a regular file; choose another path") from None


def measure_speech(blocks, contract, speech=None, stats: SpeechStats | None = None) -> SpeechStats:
    """Statistics of the speech frames in (samples, rate) blocks of one recording, through the device's own
    resampler, frontend and speech gate (the frames training computes for the same audio)."""
    from edge.frontend import StreamingFrontend
    from edge.resample import Resampler
    from edge.speech import SpeechDetector

    stats = stats if stats is not None else SpeechStats(contract.frontend.n_ceps)
    frontend = StreamingFrontend(contract.frontend)
    detector = SpeechDetector(contract.frontend, speech or contract.speech)
    resampler = None
    for block, rate in blocks:
        resampler = resampler or Resampler(rate, contract.frontend.sample_rate_hz)
        audio16k = resampler.process(block)
        mfcc, log_energy = frontend.process(audio16k)
        stats.add(mfcc, detector.process(log_energy, audio16k))
    if resampler is not None:
        audio16k = resampler.flush()
        mfcc, log_energy = frontend.process(audio16k)
        stats.add(mfcc, detector.process(log_energy, audio16k))
    return stats


def speech_seconds(stats: SpeechStats, contract) -> float:
    return stats.count * contract.frontend.hop_ms / 1000


def enough_speech(stats: SpeechStats, contract, needed_s: float = MIN_SPEECH_S) -> None:
    """ProfileError in one sentence when the statistics come from less than ``needed_s`` of speech."""
    heard = speech_seconds(stats, contract)
    if heard < needed_s:
        raise ProfileError(
            f"only {heard:.1f} s of speech were heard; a profile needs at least {needed_s:g} s of ordinary speech "
            "(give more or longer recordings, or speak for longer)"
        )
