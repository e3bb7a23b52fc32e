"""The decision policy: window verdicts in, state changes and alerts out. No model, no I/O, no clock.

For every classified window the policy

1. feeds the window's probabilities to a smoother (the mean of the last ``smoothing_windows``
   *speech* windows; silence never feeds it, and a long silence empties it),
2. reports a "state" event when the smoothed top emotion changes, or "silence" after
   ``silence_s`` without speech,
3. runs one small state machine per alert rule:

       idle ──score ≥ threshold──▶ pending ──still ≥ threshold after hold_s──▶ ACTIVE (alert)
        ▲                            │ score < threshold                       │ score < threshold - hysteresis
        │                            ▼                                         ▼ for release_s
        └──────── cooldown_s after the end ◀──────────────────────────────── ended (alert_end)

The hold runs through short pauses, but an alert starts only on a speech window: the smoothed
score does not change in silence, so one angry-sounding window followed by quiet is not "sustained".

Time is the window's end in seconds of audio (``WindowResult.end_s``), so a test can drive
the policy with a plain list of probabilities and a recorded stream replays identically.
Its settings, ``PolicySettings`` and ``AlertRule``, live in ``edge.settings`` with the service's
others and can be imported from here too.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from edge.model import probs_dict
from edge.settings import AlertRule, PolicySettings

__all__ = ["SILENCE", "AlertRule", "Policy", "PolicySettings"]

log = logging.getLogger(__name__)

SILENCE = "silence"


@dataclass
class _Track:
    """Where one rule's state machine stands."""

    rule: AlertRule
    above_since_s: float | None = None  # pending: first time the score reached the threshold
    alert_id: str | None = None  # active when set
    started_s: float = 0.0
    peak: float = 0.0
    below_since_s: float | None = None  # active and fading since
    cooldown_until_s: float = float("-inf")


class Policy:
    """Turns WindowResults (anything with end_s, probs, speech) into event dicts; see the module doc.

    ``labels`` are the model's, in the order of its probabilities. A rule for a label the model
    does not have can never fire: it is left out, with a warning.
    """

    def __init__(self, settings: PolicySettings | None = None, labels: Sequence[str] = (), id_prefix: str = "") -> None:
        self.labels = tuple(labels)
        if not self.labels:
            raise ValueError("the policy needs the model's labels")
        self.settings = self._usable(settings or PolicySettings())
        self.id_prefix = id_prefix
        self._count = 0
        self.reset()

    def _usable(self, settings: PolicySettings) -> PolicySettings:
        unknown = [e for e in settings.named if e not in self.labels]
        if unknown:
            raise ValueError(f"[policy.alerts.{unknown[0]}] names a label the model does not have; its labels are {', '.join(self.labels)}")
        missing = [r.emotion for r in settings.rules if r.emotion not in self.labels]
        if missing:
            log.warning("alert rules for %s left out: the model's labels are %s", ", ".join(missing), ", ".join(self.labels))
            settings = replace(settings, rules=tuple(r for r in settings.rules if r.emotion in self.labels))
        return settings

    def reset(self) -> None:
        """Forget everything heard and every alert (without reporting their end)."""
        self._history: deque[np.ndarray] = deque(maxlen=self.settings.smoothing_windows)
        self._tracks = {r.emotion: _Track(r) for r in self.settings.rules}
        self._last_speech_s: float | None = None
        self._state: str | None = None
        self._time_s = 0.0

    @property
    def state(self) -> str | None:
        """The last reported state: an emotion, "silence", or None before the first window."""
        return self._state

    @property
    def active_alerts(self) -> dict[str, str]:
        """Active alerts as {emotion: alert id}."""
        return {e: t.alert_id for e, t in self._tracks.items() if t.alert_id is not None}

    @property
    def smoothed(self) -> np.ndarray | None:
        """Mean probabilities of the recent speech windows, or None when there are none."""
        return np.mean(self._history, axis=0) if self._history else None

    def process(self, result) -> list[dict]:
        """Take one window's verdict; return the events it causes, in order."""
        t = float(result.end_s)
        self._time_s = t
        s = self.settings
        if result.speech:
            self._history.append(np.asarray(result.probs, dtype=np.float64))
            self._last_speech_s = t
        elif self._history and self._silent_for(t) > s.reset_after_silence_s:
            log.debug("%.1f s without speech at %.1f s: smoother reset", self._silent_for(t), t)
            self._history.clear()

        events: list[dict] = []
        smoothed = self.smoothed
        if result.speech and smoothed is not None:
            state = self.labels[int(np.argmax(smoothed))]
        elif self._silent_for(t) >= s.silence_s:
            state = SILENCE
        else:
            state = self._state or SILENCE
        if state != self._state:
            self._state = state
            probs = None if state == SILENCE or smoothed is None else probs_dict(smoothed, self.labels)
            events.append({"type": "state", "time_s": round(t, 3), "state": state, "probs": probs})

        for track in self._tracks.values():
            score = 0.0 if smoothed is None else float(smoothed[self.labels.index(track.rule.emotion)])
            events.extend(self._step(track, score, t, bool(result.speech)))
        return events

    def process_all(self, results: Iterable) -> list[dict]:
        """Events for a sequence of windows."""
        return [event for r in results for event in self.process(r)]

    def finish(self, reason: str = "end_of_stream") -> list[dict]:
        """End every active alert now (stream over, service stopping); returns their alert_end events."""
        return [self._end(track, self._time_s, reason) for track in self._tracks.values() if track.alert_id is not None]

    def reconfigure(self, settings: PolicySettings) -> list[dict]:
        """Apply new settings, keeping what was heard and the alerts whose emotion still has a rule.

        Returns alert_end events for active alerts whose rule was removed.
        """
        settings = self._usable(settings)
        events = [
            self._end(track, self._time_s, "rule_removed")
            for emotion, track in self._tracks.items()
            if track.alert_id is not None and settings.rule(emotion) is None
        ]
        self.settings = settings
        self._history = deque(self._history, maxlen=settings.smoothing_windows)
        old = self._tracks
        self._tracks = {r.emotion: replace(old[r.emotion], rule=r) if r.emotion in old else _Track(r) for r in settings.rules}
        return events

    def _silent_for(self, t: float) -> float:
        return float("inf") if self._last_speech_s is None else t - self._last_speech_s

    def _step(self, track: _Track, score: float, t: float, speech: bool) -> list[dict]:
        rule = track.rule
        if track.alert_id is not None:
            track.peak = max(track.peak, score)
            if score >= rule.release_below:
                track.below_since_s = None
                return []
            if track.below_since_s is None:
                track.below_since_s = t
            if t - track.below_since_s >= rule.release_s:
                return [self._end(track, t, "released")]
            return []
        if t < track.cooldown_until_s or score < rule.threshold:
            track.above_since_s = None
            return []
        if track.above_since_s is None:
            track.above_since_s = t
        if t - track.above_since_s < rule.hold_s or not speech:
            return []
        self._count += 1
        track.alert_id = f"{self.id_prefix}{self._count}"
        track.started_s, track.peak, track.below_since_s, track.above_since_s = t, score, None, None
        log.info("alert %s: %s (score %.2f) at %.1f s", track.alert_id, rule.emotion, score, t)
        return [
            {
                "type": "alert",
                "time_s": round(t, 3),
                "id": track.alert_id,
                "emotion": rule.emotion,
                "score": round(score, 4),
                "started_s": round(t, 3),
                "held_s": rule.hold_s,
            }
        ]

    def _end(self, track: _Track, t: float, reason: str) -> dict:
        event = {
            "type": "alert_end",
            "time_s": round(t, 3),
            "id": track.alert_id,
            "emotion": track.rule.emotion,
            "ended_s": round(t, 3),
            "duration_s": round(t - track.started_s, 3),
            "peak": round(track.peak, 4),
            "reason": reason,
        }
        log.info("alert %s ended: %s after %.1f s (%s)", track.alert_id, track.rule.emotion, t - track.started_s, reason)
        track.alert_id, track.below_since_s, track.above_since_s = None, None, None
        track.cooldown_until_s = t + track.rule.cooldown_s
        return event
