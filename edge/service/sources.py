"""Audio sources: where the service's sound comes from, behind one small interface.

A source yields ``(samples, sample_rate_hz)`` chunks of mono audio (int16 or float32) from
``chunks(stop)`` until it ends or ``stop`` is set. When no audio is ready it yields an
empty chunk now and then, so the daemon's loop keeps turning (to see ``stop`` and ping
the watchdog) even when the microphone or pipe is silent.

- FileSource: a file read a chunk at a time (edge.audio.audio_blocks), as fast as possible or paced in real time, optionally looped.
- StdinSource: raw 16-bit little-endian PCM on a file descriptor (``arecord ... | python -m edge run --source -``).
- MicSource: a PortAudio input device (through sounddevice, no compiler needed) at its native rate;
  missing, busy or unplugged devices are retried with edge.service.backoff; input overflows are counted, not fatal.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import queue
import select
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from edge.audio import AudioError, audio_blocks
from edge.inputs import rate_warning
from edge.pcm import int16_to_float
from edge.service.backoff import Backoff, BackoffSettings, retry
from edge.settings import SourceSettings

log = logging.getLogger(__name__)

Chunk = tuple[np.ndarray, int]
IDLE_POLL_S = 0.2  # longest a source blocks before yielding an empty chunk, so stop and the watchdog are seen


class SourceError(RuntimeError):
    """A source that cannot start (a missing file, an unknown device), with one sentence saying why."""


class AudioSource(Protocol):
    """Where audio comes from. ``chunks`` yields (mono samples, sample rate in Hz)."""

    name: str

    def chunks(self, stop: threading.Event) -> Iterator[Chunk]: ...

    def close(self) -> None: ...


def open_source(settings: SourceSettings) -> AudioSource:
    """The source the settings name; raises SourceError if it cannot be used at all."""
    if settings.kind == "file":
        return FileSource(settings.source, chunk_ms=settings.chunk_ms, realtime=settings.realtime, loop=settings.loop)
    if settings.kind == "stdin":
        return StdinSource(rate_hz=settings.rate_hz, channels=settings.channels, chunk_ms=settings.chunk_ms)
    return MicSource(settings.device, chunk_ms=settings.chunk_ms)


class FileSource:
    """An audio file read a chunk at a time at its own rate (the classifier resamples): memory does not grow with its length."""

    def __init__(self, path: str, chunk_ms: int = 100, realtime: bool = False, loop: bool = False) -> None:
        self.path = path
        self.name = f"file:{path}"
        self.realtime = realtime
        self.loop = loop
        self.passes = 0
        self.chunk_s = chunk_ms / 1000
        # Read the header and the first chunk now: a file that cannot be used stops the service before it starts.
        blocks = self._blocks()
        try:
            first = next(blocks, None)
        except SourceError:
            blocks.close()
            raise
        if first is None:
            raise SourceError(f"{path}: the file contains no samples")
        self.sample_rate_hz = first[1]
        self.chunk_samples = max(1, int(self.chunk_s * self.sample_rate_hz))
        self._first_pass: tuple[Chunk, Iterator[Chunk]] | None = (first, blocks)
        warning = rate_warning(path, self.sample_rate_hz)
        if warning:
            log.warning("%s", warning)

    def _blocks(self) -> Iterator[Chunk]:
        """One pass over the file; a problem found on the way (a truncated file) is a SourceError naming it."""
        try:
            yield from audio_blocks(self.path, self.path, block_s=self.chunk_s)
        except AudioError as exc:
            raise SourceError(str(exc)) from None

    def chunks(self, stop: threading.Event) -> Iterator[Chunk]:
        sent = 0  # samples yielded since the start, across loops, for real-time pacing
        started = time.monotonic()
        while not stop.is_set():
            if self._first_pass is not None:
                first, rest = self._first_pass
                self._first_pass = None
                blocks = itertools.chain([first], rest)
            else:
                rest = self._blocks()
                blocks = rest
            try:
                for chunk, rate in blocks:
                    if stop.is_set():
                        return
                    if self.realtime:
                        # Due when the chunk's last sample would have been captured by a microphone.
                        due = started + (sent + chunk.size) / self.sample_rate_hz
                        if stop.wait(max(0.0, due - time.monotonic())):
                            return
                    sent += chunk.size
                    yield chunk, rate
            finally:
                rest.close()
            self.passes += 1
            if not self.loop:
                return
            log.debug("%s: looping (pass %d)", self.path, self.passes + 1)

    def close(self) -> None:
        if self._first_pass is not None:
            self._first_pass[1].close()
            self._first_pass = None


class StdinSource:
    """Raw signed 16-bit little-endian PCM from a file descriptor (stdin by default)."""

    def __init__(self, rate_hz: int = 16000, channels: int = 1, chunk_ms: int = 100, fd: int | None = None) -> None:
        if rate_hz <= 0 or channels < 1:
            raise SourceError(f"stdin needs a positive rate and at least one channel, got {rate_hz} Hz and {channels} channel(s)")
        self.fd = sys.stdin.fileno() if fd is None else fd
        self.sample_rate_hz = rate_hz
        self.channels = channels
        self.frame_bytes = 2 * channels
        self.read_bytes = max(1, rate_hz * chunk_ms // 1000) * self.frame_bytes
        self.name = "stdin"
        self.bytes_read = 0

    def chunks(self, stop: threading.Event) -> Iterator[Chunk]:
        pending = b""  # a partial frame waits for its other bytes
        while not stop.is_set():
            ready, _, _ = select.select([self.fd], [], [], IDLE_POLL_S)
            if not ready:
                yield np.zeros(0, np.int16), self.sample_rate_hz
                continue
            data = os.read(self.fd, self.read_bytes)
            if not data:
                if pending:
                    log.warning("stdin ended inside a frame; %d byte(s) dropped", len(pending))
                return
            self.bytes_read += len(data)
            data = pending + data
            usable = len(data) - len(data) % self.frame_bytes
            pending = data[usable:]
            yield self._decode(data[:usable]), self.sample_rate_hz

    def _decode(self, data: bytes) -> np.ndarray:
        samples = np.frombuffer(data, dtype="<i2")
        if self.channels == 1:
            return samples.astype(np.int16)
        return int16_to_float(samples).reshape(-1, self.channels).mean(axis=1)

    def close(self) -> None:
        pass


# ---------------------------------------------------------------------------------------------- microphone

STALL_S = 2.0  # no audio for this long from an open stream means the device is gone
QUEUE_CHUNKS = 50  # chunks buffered between the audio thread and the loop (5 s at 100 ms)


@dataclass(frozen=True)
class InputDevice:
    """An audio input as PortAudio sees it."""

    index: int
    name: str
    default_rate_hz: int
    channels: int


@contextlib.contextmanager
def quiet_stderr(enabled: bool = True):
    """Silence ALSA's and JACK's C-level chatter on fd 2 while PortAudio probes devices."""
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _sounddevice_module():
    """sounddevice (PortAudio without a compiler), or one sentence naming what to install."""
    try:
        import sounddevice
    except ImportError:
        raise SourceError("the microphone needs the Python package sounddevice: pip install 'ser-edge[mic]'") from None
    except OSError:  # sounddevice's own import fails this way when the PortAudio library is missing
        raise SourceError("the microphone needs the PortAudio library: sudo apt-get install libportaudio2") from None
    return sounddevice


def list_input_devices(sd) -> list[InputDevice]:
    """Input devices that PortAudio (through the sounddevice module ``sd``) knows now."""
    return [
        InputDevice(index, str(d["name"]), int(d["default_samplerate"]), int(d["max_input_channels"]))
        for index, d in enumerate(sd.query_devices())
        if int(d["max_input_channels"]) > 0
    ]


def default_input_index(sd) -> int | None:
    """The system's default input device, or None when there is none."""
    try:
        return int(sd.query_devices(kind="input")["index"])
    except (sd.PortAudioError, KeyError, ValueError):
        return None


def rescan_devices(sd) -> None:
    """Restart PortAudio, which lists devices only when it starts, so one plugged in since is seen.

    sounddevice has no public call for this; its module-level _terminate/_initialize pair is the known way.
    """
    terminate, initialize = getattr(sd, "_terminate", None), getattr(sd, "_initialize", None)
    if terminate is not None and initialize is not None:
        terminate()
        initialize()


def find_device(devices: list[InputDevice], wanted: str, default_index: int | None) -> InputDevice | None:
    """The device ``wanted`` names: an index, an exact name, or a unique part of a name; "" is the default."""
    if wanted == "":
        return next((d for d in devices if d.index == default_index), devices[0] if devices else None)
    if wanted.isdigit():
        return next((d for d in devices if d.index == int(wanted)), None)
    exact = [d for d in devices if d.name == wanted]
    if exact:
        return exact[0]
    partial = [d for d in devices if wanted.lower() in d.name.lower()]
    return partial[0] if len(partial) == 1 else None


class MicSource:
    """A microphone through sounddevice, opened at the device's own rate, reopened with backoff when lost."""

    def __init__(
        self,
        device: str = "",
        chunk_ms: int = 100,
        sounddevice_module=None,
        backoff: BackoffSettings | None = None,
        stall_s: float = STALL_S,
        quiet: bool = True,
    ) -> None:
        self.wanted = device
        self.chunk_ms = chunk_ms
        self._sd = sounddevice_module or _sounddevice_module()
        self._backoff = Backoff(backoff)
        self.stall_s = stall_s
        self.quiet = quiet
        self.overflows = 0
        self.reopens = 0
        self.listening = False  # the stream is open and delivering; False while (re)opening
        self.device: InputDevice | None = None
        self._stream = None
        self._opener: threading.Thread | None = None
        self._queue: queue.Queue[bytes] = queue.Queue(maxsize=QUEUE_CHUNKS)
        # An explicitly named device that does not exist is a configuration error, not a glitch.
        if device != "":
            with quiet_stderr(self.quiet):
                known = list_input_devices(self._sd)
            if find_device(known, device, None) is None:
                names = "; ".join(f"{d.index}: {d.name}" for d in known) or "none"
                raise SourceError(f"no input device matches {device!r} (input devices: {names}); see python -m edge devices")
        self.name = f"mic:{device or 'default'}"

    def require_device(self) -> InputDevice:
        """The input device ``chunks`` will open, or SourceError now: for a one-off recording, which must not wait
        with backoff for a microphone that is not there, as the service does."""
        sd = self._sd
        try:
            with quiet_stderr(self.quiet):
                device = find_device(list_input_devices(sd), self.wanted, default_input_index(sd))
        except sd.PortAudioError as exc:
            raise SourceError(f"PortAudio cannot list the audio devices ({exc})") from None
        if device is None:
            raise SourceError(f"no microphone: input device {self.wanted or 'default'} is not present; see python -m edge devices")
        return device

    def _open(self) -> InputDevice:
        """One attempt to (re)open the device; OSError when it is missing or busy."""
        self._close_stream()
        sd = self._sd
        try:
            with quiet_stderr(self.quiet):
                rescan_devices(sd)
                devices, default = list_input_devices(sd), default_input_index(sd)
        except sd.PortAudioError as exc:
            raise OSError(f"PortAudio cannot list devices: {exc}") from None
        device = find_device(devices, self.wanted, default)
        if device is None:
            raise OSError(f"input device {self.wanted or 'default'} not present")
        frames = max(1, device.default_rate_hz * self.chunk_ms // 1000)
        try:
            with quiet_stderr(self.quiet):
                self._stream = sd.RawInputStream(
                    samplerate=device.default_rate_hz,
                    blocksize=frames,
                    device=device.index,
                    channels=1,
                    dtype="int16",
                    callback=self._callback,
                )
                self._stream.start()
        except sd.PortAudioError as exc:
            self._close_stream()
            raise OSError(str(exc)) from None
        log.info("listening to input device %d (%s) at %d Hz", device.index, device.name, device.default_rate_hz)
        return device

    def _callback(self, indata, frames, time_info, status) -> None:
        if status.input_overflow:
            self.overflows += 1
        try:
            self._queue.put_nowait(bytes(indata))  # indata is PortAudio's buffer, reused after the callback
        except queue.Full:  # the loop is behind: drop audio rather than block the audio thread
            self.overflows += 1

    def chunks(self, stop: threading.Event) -> Iterator[Chunk]:
        while not stop.is_set():
            self.listening = False
            self.device = yield from self._reopen(stop)
            if self.device is None:
                return
            self.listening = True
            rate = self.device.default_rate_hz
            last_audio = time.monotonic()
            while not stop.is_set():
                try:
                    data = self._queue.get(timeout=IDLE_POLL_S)
                except queue.Empty:
                    active = self._is_active()
                    if not active or time.monotonic() - last_audio > self.stall_s:
                        log.warning("microphone %s stopped delivering audio; reopening", self.device.name)
                        self.reopens += 1
                        break
                    yield np.zeros(0, np.int16), rate
                    continue
                last_audio = time.monotonic()
                yield np.frombuffer(data, dtype=np.int16), rate

    def _reopen(self, stop: threading.Event) -> Iterator[Chunk]:
        """Open the device with backoff in a helper thread, yielding empty chunks meanwhile.

        The waits between attempts grow to 30 s; the daemon's loop must keep turning through
        them to ping the systemd watchdog, or a missing microphone would look like a hung service.
        """
        opened: list[InputDevice | None] = []
        what = f"opening microphone {self.wanted or 'default'}"

        def open_until_stopped() -> None:
            opened.append(retry(self._open, what, stop, self._backoff, (OSError,)))
            if stop.is_set():  # opened after the loop gave up on it (below): nobody will read or close it
                self._close_stream()

        opener = self._opener = threading.Thread(target=open_until_stopped, name="mic-open", daemon=True)
        opener.start()
        rate = self.device.default_rate_hz if self.device else 16000
        while True:
            opener.join(IDLE_POLL_S)
            if not opener.is_alive():
                return opened[0] if opened else None
            if stop.is_set():  # an attempt can block in PortAudio for seconds; a stop must not wait for it
                return None
            yield np.zeros(0, np.int16), rate

    def _is_active(self) -> bool:
        try:
            return bool(self._stream is not None and self._stream.active)
        except self._sd.PortAudioError:
            return False

    def _close_stream(self) -> None:
        if self._stream is not None:
            with contextlib.suppress(Exception):
                self._stream.stop()
            with contextlib.suppress(Exception):
                self._stream.close()
            self._stream = None
        while not self._queue.empty():
            self._queue.get_nowait()

    def close(self) -> None:
        if self._opener is not None and self._opener.is_alive():
            return  # an attempt is inside PortAudio: closing under it is undefined; the opener closes once it sees the stop
        self._close_stream()


def input_devices(quiet: bool = True, sounddevice_module=None) -> list[InputDevice]:
    """Every input device PortAudio knows now, with its default rate and channels."""
    sd = sounddevice_module or _sounddevice_module()
    with quiet_stderr(quiet):
        return list_input_devices(sd)
