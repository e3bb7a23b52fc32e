"""Reconnect with exponential backoff, in one place for every sink and the microphone."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class BackoffSettings:
    """How long to wait between attempts to reach something that is down."""

    initial_s: float = 0.5
    """Wait after the first failure."""
    max_s: float = 30.0
    """Longest wait between attempts."""
    factor: float = 2.0
    """Each failure multiplies the wait by this."""
    jitter: float = 0.1
    """Random spread of each wait, as a fraction of it, so many devices do not retry in step."""


class Backoff:
    """Delays that grow on each failure and start over after a success."""

    def __init__(self, settings: BackoffSettings | None = None, rng: random.Random | None = None) -> None:
        self.settings = settings or BackoffSettings()
        self._rng = rng or random.Random()
        self.failures = 0

    def next_delay(self) -> float:
        """Record a failure and return how long to wait before the next attempt."""
        s = self.settings
        try:
            delay = min(s.max_s, s.initial_s * s.factor**self.failures)
        except OverflowError:  # factor**failures passes the float range after ~1000 failures (8 h at 30 s)
            delay = s.max_s
        self.failures += 1
        return max(0.0, delay * (1.0 + self._rng.uniform(-s.jitter, s.jitter)))

    def reset(self) -> None:
        """Record a success."""
        self.failures = 0


def retry(
    attempt: Callable[[], T],
    what: str,
    stop: threading.Event,
    backoff: Backoff | None = None,
    errors: tuple[type[BaseException], ...] = (OSError,),
) -> T | None:
    """Call ``attempt`` until it succeeds or ``stop`` is set; None if stopped first.

    Failures of the listed types are logged once per attempt with the wait before the next.
    """
    backoff = backoff or Backoff()
    while not stop.is_set():
        try:
            result = attempt()
        except errors as exc:
            delay = backoff.next_delay()
            log.warning("%s failed (%s); retrying in %.1f s", what, exc, delay)
            stop.wait(delay)
            continue
        if backoff.failures:
            log.info("%s succeeded after %d failed attempt(s)", what, backoff.failures)
        backoff.reset()
        return result
    return None
