"""Stopping on a signal: a stop flag that a signal handler may set, for the service and the page's server."""

from __future__ import annotations

import time

STOP_POLL_S = 0.05  # how often a StopFlag.wait looks at the flag: the longest a stop can go unnoticed in a wait


class StopFlag:
    """threading.Event's is_set/set/wait, safe to set from a signal handler.

    Event.set takes a lock that the interrupted main thread may be holding inside Event.wait,
    and then the handler waits for itself forever. Here set() is a plain assignment and
    wait() sleeps in short slices.
    """

    def __init__(self) -> None:
        self._flag = False

    def set(self) -> None:
        self._flag = True

    def is_set(self) -> bool:
        return self._flag

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._flag:
            remaining = STOP_POLL_S if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                break
            time.sleep(min(remaining, STOP_POLL_S))
        return self._flag
