"""What flows from the daemon to every sink: plain dicts with a "type", and the Sink interface.

Event types (all carry "type" and "time_s", seconds of audio since the stream started,
from the sample counter; alerts also carry "wall_time", ISO 8601 UTC):
- "window":    one classified window: start_s, end_s, label, probs {emotion: p}, speech.
- "state":     the smoothed state changed: state (an emotion, or "silence"), probs (smoothed).
- "alert":     an alert started: id, emotion, score, started_s.
- "alert_end": an alert ended: id, emotion, ended_s, duration_s.
- "health":    periodic: source, listening (false while a microphone is reopened), sinks {name: status},
               queue_length, cpu_percent, uptime_s.
"""

from __future__ import annotations

from typing import Protocol

EVENT_TYPES = ("window", "state", "alert", "alert_end", "health")


class Sink(Protocol):
    """Anything the daemon tells about events. ``handle`` must not block for long."""

    name: str

    def handle(self, event: dict) -> None: ...

    def close(self) -> None: ...


# A sink may also have ``resume_alerts(alerts: dict[str, str])``: after a reload the daemon tells
# a newly built sink which alerts ({id: emotion}) are still active, without announcing them again.
