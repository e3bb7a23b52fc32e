"""Reading audio files for the device: any format libsndfile knows, mixed to mono.

Every way a file can be unusable ends in ``AudioError`` with one sentence that names the
file and what is wrong, so a batch can report it and go on.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import BinaryIO

import numpy as np

from edge.pcm import int16_to_float

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".aif", ".aiff", ".aifc", ".mp3", ".opus", ".au", ".w64", ".caf")
READABLE = "WAV, FLAC, OGG, AIFF, MP3"
SILENCE_PEAK = 1e-4  # -80 dBFS: below this a whole file holds no sound worth classifying


class AudioError(ValueError):
    """An input file that cannot be used, with a message fit to show a user."""


class ClipTooLongError(AudioError):
    """An input longer than the caller accepts."""


def read_audio(path: str | os.PathLike, max_duration_s: float | None = None) -> tuple[np.ndarray, int]:
    """Read a file as mono float32 in [-1, 1] and its sample rate; raise AudioError if unusable."""
    p = Path(path)
    if not p.exists():
        raise AudioError(f"{path}: no such file")
    if p.is_dir():
        raise AudioError(f"{path}: is a folder, not an audio file")
    if p.stat().st_size == 0:
        raise AudioError(f"{path}: the file is empty (0 bytes)")
    return decode_audio(str(p), str(path), max_duration_s)


def decode_audio(source: str | BinaryIO, name: str, max_duration_s: float | None = None) -> tuple[np.ndarray, int]:
    """Decode a path or a file-like object (an upload held in memory) as ``read_audio`` does.

    ``name`` is what messages call the input. A clip longer than ``max_duration_s`` raises
    ClipTooLongError before it is decoded.
    """
    import soundfile as sf  # the device always has it, but importing edge need not load libsndfile

    try:
        with sf.SoundFile(source) as f:
            rate = f.samplerate
            if max_duration_s is not None and rate > 0 and f.frames / rate > max_duration_s:
                raise ClipTooLongError(f"{name}: the clip lasts {f.frames / rate:.0f} s; at most {max_duration_s:.0f} s are accepted")
            _check_complete(f.extra_info, name)
            data = f.read(dtype="float32", always_2d=True)
    except AudioError:
        raise
    except sf.LibsndfileError as exc:
        detail = str(exc).split(":", 1)[-1].strip() or "unreadable"
        if "recognised" in detail or "recognized" in detail or "unknown format" in detail.lower():
            raise AudioError(f"{name}: not an audio file that can be read ({READABLE})") from None
        raise AudioError(f"{name}: corrupt or truncated audio ({detail})") from None
    except (RuntimeError, TypeError, ValueError, OSError) as exc:
        raise AudioError(f"{name}: corrupt or truncated audio ({exc})") from None
    return check_signal(data, rate, name)


# libsndfile reads a WAV or AIFF whose data chunk is cut short without an error and only
# notes it in its log, e.g. "data : 96000 (should be 31970)". A recorder that was killed
# leaves a placeholder size instead (0x7FFFFFFF or 0xFFFFFFFF from arecord and sox): that is
# an unfinished header, not lost audio, so it is accepted.
_DATA_SIZE = re.compile(r"^\s*(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
_PLACEHOLDER_SIZE = 0x7FFF0000


def _check_complete(log_text: str, name: str) -> None:
    """Raise AudioError when the file's header promises more audio than the file holds."""
    for claimed, present in ((int(a), int(b)) for a, b in _DATA_SIZE.findall(log_text)):
        if present < claimed < _PLACEHOLDER_SIZE:
            raise AudioError(f"{name}: the file is truncated (its header promises {claimed} bytes of audio, {present} are there)")


def check_signal(data: np.ndarray, rate: int, name: str = "audio") -> tuple[np.ndarray, int]:
    """Mix (frames, channels) or (frames,) to mono float32 and reject what cannot be classified."""
    x = np.asarray(data)
    if x.ndim == 2:
        x = x.mean(axis=1) if x.shape[1] > 1 else x[:, 0]
    elif x.ndim != 1:
        raise AudioError(f"{name}: expected mono or multichannel samples, got an array of shape {x.shape}")
    if x.dtype == np.int16:
        x = int16_to_float(x)
    x = x.astype(np.float32, copy=False)
    if rate <= 0:
        raise AudioError(f"{name}: invalid sample rate {rate}")
    if x.size == 0:
        raise AudioError(f"{name}: the file contains no samples")
    if not np.all(np.isfinite(x)):
        raise AudioError(f"{name}: the audio contains NaN or infinite samples")
    if float(np.max(np.abs(x))) < SILENCE_PEAK:
        raise AudioError(f"{name}: the audio is silent (peak below -80 dBFS); there is nothing to classify")
    return x, int(rate)


def find_audio(paths: list[str]) -> list[tuple[str, str | None]]:
    """Expand files and folders (searched recursively) into (path, error-or-None) pairs.

    Files named directly are kept whatever their suffix so that their own error is reported;
    folders contribute their audio files in sorted order, and a folder with none is an error.
    """
    found: list[tuple[str, str | None]] = []
    for given in paths:
        p = Path(given)
        if p.is_dir():
            files = sorted(str(f) for f in p.rglob("*") if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES)
            if files:
                found.extend((f, None) for f in files)
            else:
                found.append((given, f"{given}: no audio files found in this folder"))
        else:
            found.append((given, None))
    return found
