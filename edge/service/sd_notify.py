"""sd_notify(3) in a few lines: READY, RELOADING, STOPPING and watchdog pings to systemd.

Datagrams go to $NOTIFY_SOCKET; without it nothing is sent, so the service runs the same
outside systemd. The watchdog period comes from $WATCHDOG_USEC (when $WATCHDOG_PID, if set, is us).
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)

WATCHDOG_FRACTION = 0.5  # ping at half the WatchdogSec period, as sd_watchdog_enabled(3) advises


class Notifier:
    """Datagrams to $NOTIFY_SOCKET, and the watchdog period."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.address = env.get("NOTIFY_SOCKET") or None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        enabled = usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid()))
        self.watchdog_s = int(usec) / 1e6 if enabled else None
        self._last_ping = 0.0

    def send(self, message: str) -> bool:
        if not self.address:
            return False
        address = "\0" + self.address[1:] if self.address.startswith("@") else self.address  # abstract namespace
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(address)
                sock.sendall(message.encode())
            return True
        except OSError as exc:
            log.debug("sd_notify %r failed: %s", message, exc)
            return False

    def watchdog(self, now: float) -> None:
        """Ping the watchdog if half its period has passed since the last ping."""
        if self.watchdog_s is not None and now - self._last_ping >= self.watchdog_s * WATCHDOG_FRACTION:
            self._last_ping = now
            self.send("WATCHDOG=1")
