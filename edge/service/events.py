"""What flows from the daemon to every sink: plain dicts with a "type", and the Sink interface.

Event types (all but "summary" carry "type" and "time_s", seconds of audio since the stream
started, from the sample counter; all but "window" also carry "wall_time", ISO 8601 UTC):
- "window":    one classified window: start_s, end_s, label, probs {emotion: p}, speech.
- "state":     the smoothed state changed: state (an emotion, or "silence"), probs (smoothed).
- "alert":     an alert started: id, emotion, score, started_s.
- "alert_end": an alert ended: id, emotion, ended_s, duration_s.
- "health":    periodic: source, listening (false while a microphone is reopened), sinks {name: status},
               queue_length, cpu_percent, uptime_s, windows, alerts_active, profile.
- "summary":   with a history, when its figures changed: date, timezone, today and yesterday
               (edge.history_query.daily_summary).
"""

from __future__ import annotations

from typing import Protocol


class Sink(Protocol):
    """Anything the daemon tells about events. ``handle`` runs in the audio loop: it must not wait on the disk or the network."""

    name: str

    def handle(self, event: dict) -> None: ...

    def close(self) -> None: ...


# What else the daemon looks for on a sink, when it has it:
# - ``status`` (str) and ``queue_length`` (int): reported in the health event;
# - ``resume_alerts(alerts: dict[str, str])``: after a reload, the alerts ({id: emotion}) still
#   active when this sink was built, without announcing them again;
# - ``offer(capabilities)``: after a reload, what the service now offers Home Assistant (MQTT);
# - ``take_summary() -> dict | None``: the history's new daily summary, which the daemon sends on.
