"""Publishes handed to paho and not yet acknowledged, by message id, and what each one releases when it is.

An acknowledged alert leaves the persistent queue (its queue seq), an acknowledged config removal
leaves the discovery record (its topic). paho may report an acknowledgement before ``publish``
has returned its message id to us: such an early one is kept until the id is tracked. QoS 0 is
tracked too: paho reports it as well, and an untracked id would stay among the early ones until the
16-bit ids wrap, then pass a later alert with the same id as acknowledged.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Inflight:
    """Message id -> (queue seq, config topic) of every publish not yet acknowledged; thread-safe.

    ``release(seq, removes, save)`` is called, holding this object's lock, once a publish is acknowledged.
    """

    def __init__(self, release: Callable[..., None]) -> None:
        self._release = release
        self._cond = threading.Condition(threading.Lock())
        self._seqs: dict[int, int | None] = {}  # mid -> queue seq (None: nothing of the queue)
        self._early: set[int] = set()
        self._removing: dict[int, str] = {}  # mid -> config topic whose removal it publishes

    def __len__(self) -> int:
        return len(self._seqs)

    def track(self, mid: int, seq: int | None, removes: str | None) -> None:
        """A publish paho has taken, with what it releases once acknowledged."""
        with self._cond:
            if mid in self._early:  # the ack overtook us
                self._early.discard(mid)
                self._release(seq, removes)
            else:
                self._seqs[mid] = seq
                if removes is not None:
                    self._removing[mid] = removes

    def acknowledge(self, mid: int, current: Callable[[], bool]) -> None:
        """paho's acknowledgement of ``mid``; ignored unless ``current()`` (asked holding the lock) says its client is ours."""
        with self._cond:
            if not current():
                return
            if mid not in self._seqs:
                self._early.add(mid)
                return
            seq = self._seqs.pop(mid)
            # Persist queue removals once the burst of acknowledgements is over: a crash
            # in between costs a duplicate delivery, never a lost alert.
            burst_over = all(s is None for s in self._seqs.values())
            self._release(seq, self._removing.pop(mid, None), save=burst_over)
            if not self._seqs:
                self._cond.notify_all()

    def clear(self, wake: bool = False) -> None:
        """Forget every publish (a session ended or begins); ``wake`` anyone waiting in ``wait``."""
        with self._cond:
            self._seqs.clear()
            self._early.clear()
            self._removing.clear()
            if wake:
                self._cond.notify_all()

    def wait(self, timeout_s: float) -> int:
        """Wait up to ``timeout_s`` (at least 0.1 s) for every acknowledgement; how many are still missing."""
        deadline = time.monotonic() + max(timeout_s, 0.1)
        with self._cond:
            while self._seqs:
                left = deadline - time.monotonic()
                if left <= 0:
                    return len(self._seqs)
                self._cond.wait(left)
            return 0
