"""A bounded, ordered queue of alert events that survives restarts: nothing raised is lost to an outage.

The MQTT sink puts every alert here first and takes it out only when the broker has acknowledged
it. With a file, every change is written to disk before the call returns, atomically
(``edge.files.write_atomically``), so a power cut leaves either the old queue or the new one,
never half of each. The file is JSON lines, one ``{"seq": n, "event": {...}}`` per entry, oldest first, and
small: ``max_items`` alerts of a few hundred bytes each.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections import OrderedDict
from pathlib import Path

from edge.files import read_regular, what_is, why, write_atomically

log = logging.getLogger(__name__)


EXAMPLE_PATH = "/var/lib/ser-edge/mqtt-queue.jsonl"
MAX_FILE_BYTES = 64 << 20  # queue_max alerts of a few hundred bytes each are far below this


class QueueFileError(ValueError):
    """The queue file cannot be used (a folder, or not writable); raised with one sentence."""


class AlertQueue:
    """Events in arrival order, each under an increasing sequence number; thread-safe.

    ``path`` None keeps the queue in memory only (lost on restart). When ``max_items`` is reached,
    the oldest entry is dropped with a warning, so a long outage costs the oldest alerts, never
    the device's memory or disk.
    """

    def __init__(self, path: str | Path | None = None, max_items: int = 1000) -> None:
        if max_items < 1:
            raise ValueError(f"the alert queue must hold at least one item, not {max_items}")
        self.path = Path(path) if path is not None else None
        self.max_items = int(max_items)
        self.dropped = 0
        self._lock = threading.Lock()
        self._items: OrderedDict[int, dict] = OrderedDict()
        self._next_seq = 1
        self._dirty = False
        if self.path is not None:
            self._check_path()
            self._load()

    # -- public interface -------------------------------------------------------------------

    def append(self, event: dict) -> int:
        """Add ``event`` at the end (persisted before returning) and return its sequence number."""
        with self._lock:
            seq = self._next_seq
            self._next_seq += 1
            self._items[seq] = dict(event)
            while len(self._items) > self.max_items:
                old_seq, old = self._items.popitem(last=False)
                self.dropped += 1
                log.warning(
                    "alert queue full (%d items): dropped the oldest, %s %s (seq %d)",
                    self.max_items,
                    old.get("type"),
                    old.get("id"),
                    old_seq,
                )
            self._dirty = True
            self._save()
            return seq

    def take_all(self) -> list[dict]:
        """Empty the queue and return its events, oldest first (a sink that replaces this one takes them over)."""
        with self._lock:
            events = list(self._items.values())
            if events:
                self._items.clear()
                self._dirty = True
                self._save()
            return events

    def remove(self, seq: int, save: bool = True) -> bool:
        """Take out the entry ``seq``; False if it is not here.

        ``save`` False leaves the file as it is until the next save (a burst of removals then
        costs one write; a crash before it brings the removed entries back, never loses one).
        """
        with self._lock:
            if self._items.pop(seq, None) is None:
                if save and self._dirty:
                    self._save()
                return False
            self._dirty = True
            if save:
                self._save()
            return True

    def items(self) -> list[tuple[int, dict]]:
        """A copy of the entries, oldest first, as (seq, event)."""
        with self._lock:
            return [(seq, dict(event)) for seq, event in self._items.items()]

    def flush(self) -> None:
        """Write what is not yet on disk (removals saved later, a save that failed); nothing when nothing changed.

        A queue that was never used is never written: no file appears where there was none.
        """
        with self._lock:
            if self._dirty:
                self._save()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __contains__(self, seq: object) -> bool:
        with self._lock:
            return seq in self._items

    # -- file ---------------------------------------------------------------------------------

    def _check_path(self) -> None:
        assert self.path is not None
        self.check_path(self.path)

    @staticmethod
    def check_path(path: str | Path) -> None:
        """QueueFileError (one sentence) unless ``path`` can be this queue's file: a readable regular file or none, in a writable folder."""
        path = Path(path)
        kind = what_is(path)
        if kind == "a folder":
            raise QueueFileError(f"the alert queue file {path} is a folder; give a file name such as {path / 'alerts.jsonl'}")
        if kind is not None:  # a save renames over the path: it would replace a device, a FIFO or a socket
            raise QueueFileError(
                f"the alert queue file {path} is {kind}, not a regular file; give the name of a file such as {EXAMPLE_PATH}"
            )
        if path.exists() and not os.access(path, os.R_OK):  # found now, not once a reload has closed the sink it replaces
            raise QueueFileError(f"cannot read the alert queue file {path} (permission denied); fix its permissions or remove it")
        folder = path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise QueueFileError(
                f"cannot create the folder {folder} for the alert queue file ({exc.strerror}); choose a writable place"
            ) from exc
        if not os.access(folder, os.W_OK):
            raise QueueFileError(
                f"the folder {folder} of the alert queue file is not writable; choose a writable place or fix its permissions"
            )

    def _load(self) -> None:
        """Every readable entry of the file; an unreadable file is moved aside (its readable entries kept), never fatal."""
        assert self.path is not None
        try:
            data = read_regular(self.path, limit=MAX_FILE_BYTES)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise QueueFileError(f"cannot read the alert queue file {self.path} ({why(exc)}); fix its permissions or remove it") from exc
        bad = 0
        for line in data.splitlines():
            if not line.strip():
                continue
            entry = _entry(line)
            if entry is None:
                bad += 1
                continue
            seq, event = entry
            self._items[seq] = event
            self._next_seq = max(self._next_seq, seq + 1)
        # Entries were written oldest first; keep that order even if someone edited the file.
        self._items = OrderedDict(sorted(self._items.items()))
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)
            self.dropped += 1
        if bad:
            self._set_aside(bad)
        if self._items:
            log.info("alert queue: %d undelivered alert event(s) restored from %s", len(self._items), self.path)

    def _set_aside(self, bad: int) -> None:
        """Move the damaged file aside for a person to look at, and write what could be read in its place."""
        assert self.path is not None
        aside = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
        try:
            os.replace(self.path, aside)
        except OSError as exc:
            log.warning("alert queue file %s holds %d unreadable line(s) and cannot be moved aside (%s)", self.path, bad, why(exc))
            return
        log.warning(
            "alert queue file %s held %d unreadable line(s): its %d readable alert event(s) are kept and the file was moved to %s",
            self.path,
            bad,
            len(self._items),
            aside.name,
        )
        if self._items:
            self._save()

    def _save(self) -> None:
        """Atomically replace the file with the current entries (caller holds the lock)."""
        if self.path is None:
            self._dirty = False
            return
        data = "".join(json.dumps({"seq": seq, "event": event}, separators=(",", ":")) + "\n" for seq, event in self._items.items())
        try:
            write_atomically(self.path, data.encode())  # refuses whatever may have been put at the path since the start
            self._dirty = False
        except OSError as exc:
            # Keep running: the entries are still in memory and will be delivered if the
            # broker returns before a restart; only the guarantee across restarts is lost.
            log.error("cannot write the alert queue file %s (%s); undelivered alerts would be lost on restart", self.path, why(exc))


def _entry(line: bytes) -> tuple[int, dict] | None:
    """(seq, event) of one line of the file, or None when it cannot be read (not UTF-8, not JSON, a number JSON cannot hold)."""
    try:
        entry = json.loads(line.decode("utf-8"), parse_constant=_no_constant)
        seq, event = entry["seq"], entry["event"]
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, RecursionError):
        return None
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1 or not isinstance(event, dict):
        return None  # "seq": 1e400 is a float (inf), "seq": true a bool: neither orders alerts
    if not _finite(event):
        return None
    return seq, event


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")  # Python's json reads NaN and Infinity unless told not to


def _finite(value) -> bool:
    """No infinite number anywhere in an event (1e400 reads as inf, and would be published as invalid JSON)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True
