"""The stdout sink: one JSON object per line, for pipes, journald and people watching a terminal."""

from __future__ import annotations

import json
import sys
from typing import TextIO

from edge.settings import StdoutSettings

DEFAULT_TYPES = ("state", "alert", "alert_end")
VERBOSE_TYPES = ("window", "state", "alert", "alert_end", "health")


class StdoutSink:
    """Writes events as JSON lines: state changes and alerts, plus windows and health when verbose."""

    name = "stdout"

    def __init__(self, settings: StdoutSettings | None = None, stream: TextIO | None = None) -> None:
        self.settings = settings or StdoutSettings()
        self.types = VERBOSE_TYPES if self.settings.verbose else DEFAULT_TYPES
        self._stream = stream
        self.status = "ok"

    def handle(self, event: dict) -> None:
        if event.get("type") not in self.types:
            return
        stream = self._stream or sys.stdout
        try:
            stream.write(json.dumps(event, separators=(",", ":")) + "\n")
            stream.flush()
        except BrokenPipeError:  # the reader went away; the service goes on for its other sinks
            self.status = "broken pipe"

    def close(self) -> None:
        pass
