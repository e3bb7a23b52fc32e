"""The live view's memory of the running service: a Sink that keeps recent events and fans them out.

The daemon calls ``handle(event)`` from its processing loop, so nothing here may block:
every browser that listens (server-sent events) gets its own bounded queue, and a browser
that falls behind loses its queued events instead of slowing the daemon. It is told so
with a fresh snapshot when it reads again.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LiveSettings:
    """How much the live view remembers and how many browsers it feeds."""

    history_s: float = 300.0
    """Window results older than this (seconds of audio before the newest) are forgotten."""
    max_windows: int = 2000
    """Hard bound on remembered windows whatever their times (about 17 min at a 0.5 s hop)."""
    subscriber_queue_events: int = 256
    """Events queued per browser before that browser's backlog is dropped."""
    max_subscribers: int = 8
    """Browsers that may listen at once; each holds one server thread."""


class Subscriber:
    """One listening browser: a bounded queue of events, and whether it missed some."""

    def __init__(self, maxsize: int) -> None:
        self.events: queue.Queue = queue.Queue(maxsize)
        self.dropped = 0
        """Events this subscriber lost because its queue was full."""
        self.needs_snapshot = False
        """Set when events were dropped: the next read starts with a full snapshot."""

    def get(self, timeout_s: float) -> dict | None:
        """The next event, or None after ``timeout_s`` without one."""
        try:
            return self.events.get(timeout=timeout_s)
        except queue.Empty:
            return None


CLOSED = {"type": "closed"}  # sent to every subscriber when the feed closes


class LiveFeed:
    """Sink named "http": current state, recent windows, active alerts, last health, and SSE fan-out."""

    name = "http"

    def __init__(self, settings: LiveSettings | None = None) -> None:
        self.settings = settings or LiveSettings()
        self._lock = threading.Lock()
        self._subscribers: list[Subscriber] = []
        self._started = time.monotonic()
        self._closed = False
        self._state: dict | None = None
        self._windows: deque[dict] = deque(maxlen=self.settings.max_windows)
        self._alerts: dict[str, dict] = {}
        self._health: dict | None = None
        self._health_at = 0.0

    # -- the Sink interface -------------------------------------------------------------

    def handle(self, event: dict) -> None:
        """Remember the event and pass it to every listening browser; never blocks."""
        kind = event.get("type")
        with self._lock:
            if kind == "window":
                self._add_window(event)
            elif kind == "state":
                self._state = event
            elif kind == "alert":
                self._alerts[str(event.get("id"))] = event
            elif kind == "alert_end":
                self._alerts.pop(str(event.get("id")), None)
            elif kind == "health":
                self._health = event
                self._health_at = time.monotonic()
            else:
                log.debug("ignoring event of type %s", kind)
                return
            subscribers = list(self._subscribers)
        for sub in subscribers:
            self._offer(sub, event)

    def resume_alerts(self, alerts: dict[str, str]) -> None:
        """Alerts already active when this feed was built (after a reload), as {id: emotion}."""
        for alert_id, emotion in alerts.items():
            with self._lock:
                known = alert_id in self._alerts
            if not known:
                self.handle({"type": "alert", "id": alert_id, "emotion": emotion})

    def close(self) -> None:
        """Tell every listening browser the stream has ended."""
        with self._lock:
            self._closed = True
            subscribers, self._subscribers = self._subscribers, []
        for sub in subscribers:
            clear_queue(sub.events)
            sub.events.put_nowait(CLOSED)

    @property
    def status(self) -> str:
        with self._lock:
            return f"ok, {len(self._subscribers)} viewer(s)"

    # -- what the web app reads ---------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def uptime_s(self) -> float:
        """Seconds since this feed was created (the web side of the service)."""
        return time.monotonic() - self._started

    def snapshot(self) -> dict:
        """Current state, recent windows (oldest first) and active alerts, as GET /api/state answers."""
        with self._lock:
            return {
                "state": self._state,
                "windows": list(self._windows),
                "alerts": list(self._alerts.values()),
                "history_s": self.settings.history_s,
            }

    def health(self) -> dict:
        """The last health event (None before the first), its age, and this feed's uptime."""
        with self._lock:
            health, at = self._health, self._health_at
        return {
            "health": health,
            "health_age_s": None if health is None else round(time.monotonic() - at, 1),
            "uptime_s": round(self.uptime_s, 1),
        }

    def subscribe(self) -> Subscriber | None:
        """A new listener, or None when the feed is closed or already feeds ``max_subscribers``."""
        with self._lock:
            if self._closed or len(self._subscribers) >= self.settings.max_subscribers:
                return None
            sub = Subscriber(self.settings.subscriber_queue_events)
            self._subscribers.append(sub)
            log.debug("live view: a browser subscribed (%s now)", len(self._subscribers))
            return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        with self._lock:
            if sub in self._subscribers:
                self._subscribers.remove(sub)
                log.debug("live view: a browser left (%s now)", len(self._subscribers))

    # -- internals ------------------------------------------------------------------------

    def _add_window(self, event: dict) -> None:
        end = float(event.get("end_s", event.get("time_s", 0.0)))
        if self._windows and end < float(self._windows[-1].get("end_s", 0.0)):
            self._windows.clear()  # time went backwards: a new stream started
        self._windows.append(event)
        horizon = end - self.settings.history_s
        while self._windows and float(self._windows[0].get("end_s", 0.0)) < horizon:
            self._windows.popleft()

    def _offer(self, sub: Subscriber, event: dict) -> None:
        try:
            sub.events.put_nowait(event)
        except queue.Full:
            # A slow browser: drop its backlog (never wait) and resend the whole picture later.
            lost = clear_queue(sub.events) + 1
            if sub.dropped == 0:
                log.warning("live view: a browser is not keeping up; dropped %s queued events for it and will resend a snapshot", lost)
            sub.dropped += lost
            sub.needs_snapshot = True


def clear_queue(q: queue.Queue) -> int:
    """Empty a queue without blocking; returns how many items it held."""
    n = 0
    while True:
        try:
            q.get_nowait()
        except queue.Empty:
            return n
        n += 1
