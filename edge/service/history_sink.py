"""The history sink: adds up each minute of listening in the audio loop and writes it from a thread of its own.

``handle`` runs in the daemon's processing loop, so it only adds numbers to the open minute (a few
microseconds a window) and, when a minute is over, puts it on a bounded queue without waiting: the
loop never touches the disk. The writer thread opens the database (moving a corrupt or locked one
aside, ``edge.history.open_for_writing``), commits each minute as one transaction, and every hour
deletes what is older than ``keep_days`` or over ``max_mb``.

A disk that is read-only or full is reported once (and once more when writing works again); the
minutes wait in memory, at most MAX_WAITING of them (a day), and are written when the disk allows.
Listening goes on whatever the disk does.

Minutes are minutes of audio: the window's end (seconds of audio, from the sample counter) added to
the wall-clock time at which the stream started. A microphone keeps them on the wall clock (the
anchor is moved on if lost audio lets them fall behind it by more than DRIFT_S); a file played as fast
as possible is stored as if it had been heard live from the moment it started.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable

from edge import history, history_query
from edge.history import MINUTE_S, Minute, Source
from edge.settings import HistorySettings

log = logging.getLogger(__name__)

# A microphone losing audio (overflows, a reopened device) falls behind the clock; beyond this the minutes follow the clock again.
DRIFT_S = 120.0
QUEUE_MINUTES = 64  # minutes handed to the writer and not yet taken; it takes them within milliseconds unless its thread is starved
MAX_WAITING = 1440  # minutes kept in memory while the disk refuses them: a day
HOUSEKEEPING_S = 3600.0  # retention and the size cap, at start and then hourly
RETRY_S = 60.0  # while the disk refuses, the waiting minutes are tried again this often
CLOSE_TIMEOUT_S = 3.0  # stopping waits this long at most for the last minutes to be written
_STOP = object()


class HistorySink:
    """Sink named "history": the per-minute record of windows and alerts in an SQLite database."""

    name = "history"

    def __init__(self, settings: HistorySettings, path: str, source: Source, hop_s: float, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.path = path
        self.source = source
        self.hop_s = float(hop_s)
        self._clock = clock
        self._anchor: float | None = None  # wall-clock time at audio time 0
        self._minute: Minute | None = None
        self._covered: float | None = None  # audio time up to which windows have been counted
        self._labels = frozenset(source.labels)
        self.dropped = 0
        self._closed = False
        self._queue: queue.Queue = queue.Queue(QUEUE_MINUTES)
        self.writer = HistoryWriter(path, settings, source, self._queue)
        self.writer.start()

    # -- the Sink interface, in the audio loop: no I/O, no waiting ------------------------------------

    def handle(self, event: dict) -> None:
        kind = event.get("type")
        if kind == "window":
            end = float(event["end_s"])
            start = max(float(event.get("start_s", end - self.hop_s)), 0.0)
            # The audio this window adds: all of the first window (3 s), a hop of each after it; a new stream
            # (its time back at 0) starts over.
            first = self._covered is None or end <= self._covered
            new = end - start if first else end - max(start, self._covered)
            self._covered = end
            minute = self._minute_at(end)
            # A first window that began in the minute before (not open: the stream started there) is counted here, up to
            # the minute's 60 s.
            minute.heard_s = min(minute.heard_s + new, MINUTE_S)
            if event.get("speech"):  # a hop per speech window: the time each verdict stands for
                minute.speech_s += self.hop_s
                label = event["label"]
                minute.verdicts[label] = minute.verdicts.get(label, 0) + 1
                sums = minute.prob_sums
                for name, p in event["probs"].items():
                    sums[name] = sums.get(name, 0.0) + p
        elif kind in ("alert", "alert_end") and event.get("emotion") in self._labels:
            minute = self._minute_at(float(event["time_s"]))
            counts = minute.raised if kind == "alert" else minute.ended
            counts[event["emotion"]] = counts.get(event["emotion"], 0) + 1

    def close(self) -> None:
        """Hand over the open minute and wait (at most CLOSE_TIMEOUT_S) for the writer to commit everything; once."""
        if self._closed:
            return
        self._closed = True
        self._hand_over()
        self.writer.stop(CLOSE_TIMEOUT_S)

    @property
    def status(self) -> str:
        return self.writer.status

    def take_summary(self) -> dict | None:
        """Today's and yesterday's figures (``edge.history_query.daily_summary``) when they changed since the last call, else None."""
        return self.writer.take_summary()

    # -- internals ----------------------------------------------------------------------------------

    def _minute_at(self, audio_s: float) -> Minute:
        now = self._clock()
        if self._anchor is None or now - (self._anchor + audio_s) > DRIFT_S:
            self._anchor = now - audio_s
        start = int((self._anchor + audio_s) // MINUTE_S) * MINUTE_S
        if self._minute is None or start != self._minute.start:
            self._hand_over()
            self._minute = Minute(start)
        return self._minute

    def _hand_over(self) -> None:
        minute, self._minute = self._minute, None
        if minute is None or minute.heard_s == 0 and not minute.raised and not minute.ended:
            return
        try:
            self._queue.put_nowait(minute)
        except queue.Full:  # the writer is starved of CPU or stuck in the kernel: never wait for it here
            self.dropped += 1
            if self.dropped == 1:
                log.warning("history: the writer is behind by %d minutes; dropping minutes until it catches up", QUEUE_MINUTES)


class HistoryWriter(threading.Thread):
    """The thread that owns the database connection: opens it, writes minutes, keeps it within its limits."""

    def __init__(self, path: str, settings: HistorySettings, source: Source, minutes: queue.Queue) -> None:
        super().__init__(name="history-writer", daemon=True)
        self.path = path
        self.settings = settings
        self.source = source
        self.minutes = minutes
        self.waiting: deque[Minute] = deque()
        self.written = 0
        self.lost = 0
        self.problem: str | None = None  # the sentence last reported, until writing works again
        self._db: sqlite3.Connection | None = None
        self._opened = False  # the first open checks the file (quick_check); reopening after a failure does not
        self._next_housekeeping = 0.0
        self._stopping = threading.Event()
        self._summary_lock = threading.Lock()
        self._summary: dict | None = None  # the newest daily summary, until the audio loop takes it
        self._summary_sent: dict | None = None

    @property
    def status(self) -> str:
        if self.problem is not None:
            return f"not writing ({self.problem}); {len(self.waiting)} minute(s) waiting"
        return f"ok, {self.written} minute(s) written"

    def stop(self, timeout_s: float) -> None:
        self._stopping.set()
        with contextlib.suppress(queue.Full):  # a full queue wakes the writer anyway; it drains it and sees the flag
            self.minutes.put_nowait(_STOP)
        self.join(timeout_s)
        if self.is_alive():
            log.warning("history: the last minutes were not written within %.0f s of stopping (the disk is slow or busy)", timeout_s)
        elif self.waiting:
            log.warning("history: %d minute(s) could not be written before stopping (%s)", len(self.waiting), self.problem)

    def run(self) -> None:
        try:
            self._housekeeping()  # at start: a corrupt or locked database is moved aside now, not at the first minute
            while True:
                self._take(timeout_s=0.1 if self._stopping.is_set() else RETRY_S if self.waiting else HOUSEKEEPING_S)
                self._write()
                self._housekeeping()
                if self._stopping.is_set() and self.minutes.empty():
                    return
        finally:
            if self._db is not None:
                self._db.close()

    def _take(self, timeout_s: float) -> None:
        """Wait for a minute (or the timeout), then take every minute that is queued."""
        try:
            item = self.minutes.get(timeout=timeout_s)
        except queue.Empty:
            return
        while True:
            if item is not _STOP:
                if len(self.waiting) >= MAX_WAITING:
                    self.waiting.popleft()
                    self.lost += 1
                self.waiting.append(item)
            try:
                item = self.minutes.get_nowait()
            except queue.Empty:
                return

    def _write(self) -> None:
        if not self.waiting or not self._connected():
            return
        try:
            history.write_minutes(self._db, self.source, list(self.waiting))
        except sqlite3.Error as exc:
            self._failed(exc)
            return
        self.written += len(self.waiting)
        self.waiting.clear()
        self._recovered()
        self._summarise()

    def _summarise(self) -> None:
        """Today's and yesterday's figures from the database (earlier runs of the day included), for the audio loop to send on."""
        try:
            summary = history_query.daily_summary(self._db)
        except sqlite3.Error as exc:
            log.debug("history: no daily summary (%s)", exc)
            return
        with self._summary_lock:
            if summary != self._summary_sent:
                self._summary = summary

    def take_summary(self) -> dict | None:
        with self._summary_lock:
            summary, self._summary = self._summary, None
            if summary is not None:
                self._summary_sent = summary
            return summary

    def _connected(self) -> bool:
        if self._db is not None:
            return True
        try:
            self._db = history.open_for_writing(self.path, check=not self._opened)
        except (sqlite3.Error, OSError, history.HistoryError) as exc:
            self._failed(exc)
            return False
        if not self._opened:
            log.info(
                "history: a per-minute history in %s (kept %g days, at most %g MB)",
                self.path,
                self.settings.keep_days,
                self.settings.max_mb,
            )
        self._opened = True
        return True

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if now < self._next_housekeeping or not self._connected():
            return
        self._next_housekeeping = now + HOUSEKEEPING_S
        try:
            old = history.delete_before(self._db, time.time() - self.settings.keep_days * 86400)
            big = history.keep_under(self._db, int(self.settings.max_mb * 1e6))
        except sqlite3.Error as exc:
            self._failed(exc)
            return
        self._summarise()  # at start, and past midnight even without a minute written
        if old:
            log.info("history: deleted %d minute(s) older than %g days", old, self.settings.keep_days)
        if big:
            log.warning("history: the database reached its cap of %g MB; deleted the oldest %d minute(s)", self.settings.max_mb, big)

    def _failed(self, exc: BaseException) -> None:
        """Report a failure once (a different one again); the connection is opened anew at the next try."""
        code = history.error_code(exc) if isinstance(exc, sqlite3.Error) else None
        if isinstance(exc, history.HistoryError):
            why, fix = str(exc), ""  # its sentence says what to do
        elif isinstance(exc, OSError):
            why, fix = (
                f"its folder cannot be made or used: {exc.strerror or exc}",
                "make the folder writable by this user or set [history] path",
            )
        elif code == history.SQLITE_FULL:
            why, fix = "the disk is full", "free space on it or lower [history] max_mb"
        elif code in (history.SQLITE_READONLY, history.SQLITE_CANTOPEN) and _read_only_disk(self.path):
            why, fix = "the disk is read-only", "mount it read-write or set [history] path to a writable disk"
        else:
            why = history.CANNOT_WRITE.get(code, str(exc))
            fix = "make the file and its folder writable by this user (or set [history] path)"
        if why != self.problem:
            log.error(
                "history: cannot write %s (%s); listening goes on and up to a day of minutes waits in memory%s",
                self.path,
                why,
                f": {fix}" if fix else "",
            )
            self.problem = why
        if self._db is not None:
            self._db.close()
            self._db = None

    def _recovered(self) -> None:
        if self.problem is not None:
            log.info("history: writing to %s again", self.path)
            self.problem = None


def _read_only_disk(path: str) -> bool:
    """Whether the file system that holds ``path`` is mounted read-only."""
    try:
        return bool(os.statvfs(os.path.dirname(os.path.abspath(path))).f_flag & os.ST_RDONLY)
    except OSError:
        return False
