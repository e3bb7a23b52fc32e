"""Reading audio files for the device: any format libsndfile knows, mixed to mono.

Every way a file can be unusable ends in ``AudioError`` with one sentence that names the
file and what is wrong, so a batch can report it and go on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from edge.files import what_is
from edge.pcm import int16_to_float

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".aif", ".aiff", ".aifc", ".mp3", ".opus", ".au", ".w64", ".caf")
READABLE = "WAV, FLAC, OGG, AIFF, MP3"
SILENCE_PEAK = 1e-4  # -80 dBFS: below this a whole file holds no sound worth classifying


class AudioError(ValueError):
    """An input file that cannot be used, with a message fit to show a user."""


class ClipTooLongError(AudioError):
    """An input longer than the caller accepts."""


BLOCK_S = 1.0  # seconds decoded at a time when a file is streamed: memory stays flat whatever its length


def read_audio(path: str | os.PathLike, max_duration_s: float | None = None) -> tuple[np.ndarray, int]:
    """Read a file as mono float32 in [-1, 1] and its sample rate; raise AudioError if unusable."""
    return decode_audio(path, _name(path), max_duration_s)


def _name(path) -> str:
    """A path as messages show it: bytes that are not UTF-8 become U+FFFD, never a lone surrogate."""
    raw = os.fsencode(path) if isinstance(path, (str, bytes, os.PathLike)) else str(path).encode()
    return raw.decode("utf-8", errors="replace")


@contextlib.contextmanager
def _opened(source, name: str) -> Iterator:
    """A binary file object for ``source``: a file-like object as it is, or a path opened by Python.

    Python opens any name the system can (soundfile would encode a str path as strict UTF-8), and its
    errors say what is wrong: no such file, a folder, a FIFO (never waited on), permission denied.
    """
    if not isinstance(source, (str, bytes, os.PathLike)):
        yield source
        return
    kind = what_is(source)
    if kind is not None:
        raise AudioError(f"{name}: is {kind}, not an audio file")
    try:
        f = open(source, "rb")  # noqa: SIM115 - closed below, after the caller is done
    except FileNotFoundError:
        raise AudioError(f"{name}: no such file") from None
    except PermissionError:
        raise AudioError(f"{name}: cannot be read (permission denied); make it readable or run as a user who may read it") from None
    except OSError as exc:
        raise AudioError(f"{name}: cannot be opened ({exc.strerror or exc})") from None
    try:
        if os.fstat(f.fileno()).st_size == 0:
            raise AudioError(f"{name}: the file is empty (0 bytes)")
        yield f
    finally:
        f.close()


def audio_blocks(
    source: str | os.PathLike | BinaryIO, name: str | None = None, max_duration_s: float | None = None, block_s: float = BLOCK_S
) -> Iterator[tuple[np.ndarray, int]]:
    """Decode a file (a path or a file-like object) block by block as mono float32: (samples, rate) pairs.

    The same checks as ``read_audio`` where they can be made on a stream: unreadable, truncated and
    NaN/infinite audio raise AudioError naming the file; a clip longer than ``max_duration_s`` raises
    ClipTooLongError when its header says so or, for a stream of unknown length, once that much has been
    read. Silence and shortness need the whole clip and are the consumer's to judge (``check_totals``).
    """
    import soundfile as sf

    name = _name(source) if name is None else name
    try:
        with _opened(source, name) as handle, sf.SoundFile(handle) as f:
            rate = f.samplerate
            if rate <= 0:
                raise AudioError(f"{name}: invalid sample rate {rate}")
            if max_duration_s is not None and 0 < f.frames < 2**62 and f.frames / rate > max_duration_s:
                raise ClipTooLongError(f"{name}: the clip lasts {f.frames / rate:.0f} s; at most {max_duration_s:.0f} s are accepted")
            _check_complete(f.extra_info, name)
            block = max(1, int(block_s * rate))
            read = _read_unknown_length if f.frames >= UNKNOWN_LENGTH else _read
            seen = 0
            while True:
                data = read(f, block)
                if not len(data):
                    return
                seen += len(data)
                if max_duration_s is not None and seen / rate > max_duration_s:
                    raise ClipTooLongError(
                        f"{name}: the clip lasts more than {max_duration_s:.0f} s; at most {max_duration_s:.0f} s are accepted"
                    )
                x = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
                if not np.all(np.isfinite(x)):
                    raise AudioError(f"{name}: the audio contains NaN or infinite samples")
                yield x, rate
    except AudioError:
        raise
    except sf.LibsndfileError as exc:
        raise _libsndfile_error(exc, name) from None
    except (RuntimeError, TypeError, ValueError, OSError) as exc:
        raise AudioError(f"{name}: corrupt or truncated audio ({exc})") from None


# A FLAC written to a pipe cannot go back to fill in its length: libsndfile reports 2**63 - 1 frames,
# and soundfile's read() then seeks to keep count, which such a file refuses.
UNKNOWN_LENGTH = 2**62


def _read(f, frames: int) -> np.ndarray:
    return f.read(frames, dtype="float32", always_2d=True)


def _read_unknown_length(f, frames: int) -> np.ndarray:
    """Up to ``frames`` frames straight from libsndfile, which needs no seek (soundfile's read() would)."""
    import soundfile as sf

    out = np.empty((frames, f.channels), np.float32)
    got = sf._snd.sf_readf_float(f._file, sf._ffi.cast("float *", sf._ffi.from_buffer(out)), frames)
    return out[: max(int(got), 0)]


def check_totals(samples: int, peak: float, rate: int, name: str) -> None:
    """The whole-clip checks of ``check_signal`` for a clip read in blocks: it has samples and is not silent."""
    if samples == 0:
        raise AudioError(f"{name}: the file contains no samples")
    if peak < SILENCE_PEAK:
        raise AudioError(f"{name}: the audio is silent (peak below -80 dBFS); there is nothing to classify")


def _libsndfile_error(exc, name: str) -> AudioError:
    detail = str(exc).split(":", 1)[-1].strip() or "unreadable"
    if "recognised" in detail or "recognized" in detail or "unknown format" in detail.lower():
        return AudioError(f"{name}: not an audio file that can be read ({READABLE})")
    return AudioError(f"{name}: corrupt or truncated audio ({detail})")


def decode_audio(source: str | os.PathLike | BinaryIO, name: str, max_duration_s: float | None = None) -> tuple[np.ndarray, int]:
    """Decode a path or a file-like object (an upload held in memory) as ``read_audio`` does.

    ``name`` is what messages call the input. A clip longer than ``max_duration_s`` raises
    ClipTooLongError before it is decoded (or as soon as that much is read, when its header does not say).
    The blocks of ``audio_blocks``, end to end.
    """
    blocks = list(audio_blocks(source, name, max_duration_s))
    if not blocks:
        raise AudioError(f"{name}: the file contains no samples")
    return check_signal(np.concatenate([x for x, _ in blocks]), blocks[0][1], name)


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
    if x.size and not np.all(np.isfinite(x)):
        raise AudioError(f"{name}: the audio contains NaN or infinite samples")
    check_totals(x.size, float(np.max(np.abs(x))) if x.size else 0.0, rate, name)
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
