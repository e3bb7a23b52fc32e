"""Opt-in debug recording: the audio that led to an alert, written as WAV for someone to listen to.

Off by default. Privacy is the rule of the service: no audio is written or sent anywhere
unless ``[debug] record = true`` (or ``--record-dir``), and turning it on says so loudly in
the log at start. Only the last ``record_s`` seconds before each alert are kept in memory;
nothing else ever reaches the disk.
"""

from __future__ import annotations

import logging
import os
import re
from collections import deque
from pathlib import Path

import numpy as np

from edge.pcm import int16_to_float
from edge.settings import RecordSettings

log = logging.getLogger(__name__)


class AlertRecorder:
    """A Sink that keeps recent audio in memory and writes it out when an alert starts."""

    name = "recorder"

    def __init__(self, settings: RecordSettings) -> None:
        if not settings.record_dir:
            raise ValueError("debug recording needs a folder: set [debug] record_dir or pass --record-dir")
        self.settings = settings
        self.folder = Path(settings.record_dir)
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)  # a new folder: for this user only (an existing one keeps its mode)
        self._chunks: deque[np.ndarray] = deque()
        self._samples = 0
        self.sample_rate_hz: int | None = None
        self.status = "ok"
        self.written: list[Path] = []
        log.warning(
            "DEBUG RECORDING IS ON: the last %.0f s of audio before every alert is written to %s; turn [debug] record off to stop",
            settings.record_s,
            self.folder,
        )

    def feed(self, chunk: np.ndarray, sample_rate_hz: int) -> None:
        """Remember a chunk of the input (any rate), forgetting what is older than record_s."""
        if chunk.size == 0:
            return
        if sample_rate_hz != self.sample_rate_hz:
            self._chunks.clear()
            self._samples = 0
            self.sample_rate_hz = sample_rate_hz
        x = int16_to_float(chunk) if chunk.dtype == np.int16 else chunk.astype(np.float32)
        self._chunks.append(x)
        self._samples += x.size
        keep = int(self.settings.record_s * sample_rate_hz)
        while self._chunks and self._samples - self._chunks[0].size >= keep:
            self._samples -= self._chunks.popleft().size

    def handle(self, event: dict) -> None:
        if event.get("type") != "alert" or not self._chunks:
            return
        import soundfile as sf

        audio = np.concatenate(self._chunks)[-int(self.settings.record_s * self.sample_rate_hz) :]
        safe_id = re.sub(r"[^A-Za-z0-9_.-]", "_", str(event.get("id")))
        path = self.folder / f"alert_{safe_id}_{event.get('emotion')}.wav"
        try:
            # 0600 before a byte is written (a recording of someone's voice is for this user only), never through a link.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            os.fchmod(fd, 0o600)  # a file there before keeps its mode through O_CREAT
            with os.fdopen(fd, "wb") as f:
                sf.write(f, audio, self.sample_rate_hz, subtype="PCM_16", format="WAV")
        except (OSError, RuntimeError) as exc:
            self.status = f"error: {exc}"
            log.warning("could not write the debug recording %s (%s)", path, exc)
            return
        self.written.append(path)
        log.warning("debug recording: wrote %.1f s before alert %s to %s", audio.size / self.sample_rate_hz, event.get("id"), path)

    def close(self) -> None:
        self._chunks.clear()
