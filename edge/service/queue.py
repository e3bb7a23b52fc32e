"""A bounded, ordered queue of alert events that survives restarts: nothing raised is lost to an outage.

The MQTT sink puts every alert here first and takes it out only when the broker has acknowledged
it. With a file, every change is written to disk before the call returns, atomically: the new
content goes to a temporary file beside it, is flushed and fsynced, and replaces the old file
with ``os.replace``, so a power cut leaves either the old queue or the new one, never half of
each. The file is JSON lines, one ``{"seq": n, "event": {...}}`` per entry, oldest first, and
small: ``max_items`` alerts of a few hundred bytes each.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path

log = logging.getLogger(__name__)


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
            self._save()
            return seq

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
        """Write the queue to its file now (every change already does; this is for shutdown)."""
        with self._lock:
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
        if self.path.is_dir():
            raise QueueFileError(f"the alert queue file {self.path} is a folder; give a file name such as {self.path / 'alerts.jsonl'}")
        folder = self.path.parent
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
        assert self.path is not None
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        except OSError as exc:
            raise QueueFileError(f"cannot read the alert queue file {self.path} ({exc.strerror})") from exc
        bad = 0
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                seq, event = int(entry["seq"]), entry["event"]
                if not isinstance(event, dict):
                    raise TypeError("event is not an object")
            except (ValueError, KeyError, TypeError):
                bad += 1
                continue
            self._items[seq] = event
            self._next_seq = max(self._next_seq, seq + 1)
        if bad:
            log.warning("alert queue file %s: skipped %d unreadable line(s)", self.path, bad)
        # Entries were written oldest first; keep that order even if someone edited the file.
        self._items = OrderedDict(sorted(self._items.items()))
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)
            self.dropped += 1
        if self._items:
            log.info("alert queue: %d undelivered alert event(s) restored from %s", len(self._items), self.path)

    def _save(self) -> None:
        """Atomically replace the file with the current entries (caller holds the lock)."""
        self._dirty = False
        if self.path is None:
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        data = "".join(json.dumps({"seq": seq, "event": event}, separators=(",", ":")) + "\n" for seq, event in self._items.items())
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
            _fsync_folder(self.path.parent)
        except OSError as exc:
            # Keep running: the entries are still in memory and will be delivered if the
            # broker returns before a restart; only the guarantee across restarts is lost.
            log.error("cannot write the alert queue file %s (%s); undelivered alerts would be lost on restart", self.path, exc)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
