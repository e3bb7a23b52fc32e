"""The MQTT sink's connection: one paho client at a time to the broker, opened again with backoff until stopped.

One thread per sink opens a fresh paho client per connection, with :func:`edge.service.backoff.retry`
between attempts (paho's own reconnect is switched off, so the backoff lives in one place), waits
for the broker's CONNACK, hands the session to the sink and waits for its end. A session the broker
ends within STABLE_SESSION_S is a drop, not an outage: the next connection waits with a backoff of its
own, and a few in a row are reported as another client using our id.

What a session publishes first and what its end means for the alerts belong to the sink
(:class:`edge.service.mqtt.MqttSink`): it is called with ``begin(client)`` once the broker has
accepted the connection, and with ``end(client)`` once the session is over.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable

from edge.service.backoff import Backoff, BackoffSettings, retry
from edge.service.mqtt_client import CONNECT_TIMEOUT_S, new_client
from edge.settings import MqttSettings

log = logging.getLogger(__name__)

JOIN_WAIT_S = 0.3
"""How long close() waits for the connection thread, which may sit in a blocking connect to a silent host."""
STABLE_SESSION_S = 10.0
"""A connection that ends sooner is a drop, not an outage: the next one waits with backoff. A broker
that ends sessions at once (another client with the same id, as two Pis left named raspberrypi are)
was otherwise hammered with hundreds of connections a second."""
SUSPECT_AFTER_SHORT_SESSIONS = 2
"""Short sessions in a row before another client with our id is suspected: one is just as likely the broker
going down (its end is logged as a lost connection, and the reconnection is then refused)."""


def drop(client) -> None:
    """Disconnect a paho client and stop its network thread."""
    client.disconnect()
    client.loop_stop()


class Connection:
    """The connection thread of one MQTT sink: connect, wait for CONNACK, begin the session, wait for its end, again.

    ``begin(client)`` runs in this thread once the broker has accepted a connection; ``end(client)`` once
    the session is over (the sink drops the client). ``on_publish`` and ``on_message`` are the sink's paho
    callbacks, set on every fresh client. Nothing starts before ``start``.
    """

    def __init__(
        self,
        settings: MqttSettings,
        client_id: str,
        password: str | None,
        tls: ssl.SSLContext | None,
        backoff: BackoffSettings | None,
        begin: Callable[[object], None],
        end: Callable[[object], None],
        on_publish: Callable,
        on_message: Callable,
    ) -> None:
        self.settings = settings
        self.client_id = client_id
        self.address = f"{settings.host}:{settings.port}"
        self._password = password
        self._tls = tls
        self._begin = begin
        self._end = end
        self._on_publish = on_publish
        self._on_message = on_message
        self._backoff = Backoff(backoff)
        self._drop_backoff = Backoff(backoff)  # grows while sessions keep ending within STABLE_SESSION_S
        self._stop = threading.Event()
        self._connack = threading.Event()
        self._attempt_pending = threading.Event()  # a connection attempt is under way and has not failed yet
        self._connack_reason: str | None = None
        self._session_over = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"mqtt-{self.address}", daemon=True)

    def start(self) -> None:
        """Start the connection thread."""
        self._thread.start()

    @property
    def stopping(self) -> bool:
        """``stop`` was called: no connection is opened again."""
        return self._stop.is_set()

    @property
    def attempt_pending(self) -> bool:
        """A connection attempt is under way and has not failed yet (a broker not reached yet, rather than one that is down)."""
        return self._attempt_pending.is_set()

    def stop(self) -> None:
        """Open no connection from now on; an attempt under way gives up."""
        self._stop.set()

    def close(self) -> None:
        """End the session (the sink has disconnected its client) and wait at most JOIN_WAIT_S for the thread."""
        self._session_over.set()
        self._thread.join(JOIN_WAIT_S)
        if self._thread.is_alive():
            log.warning("MQTT connection thread to %s still busy after %.1f s; leaving it", self.address, JOIN_WAIT_S)

    def _run(self) -> None:
        short_sessions = 0  # sessions in a row that the broker ended soon after accepting them
        while not self._stop.is_set():
            try:
                client = retry(self._open_session, f"MQTT connection to {self.address}", self._stop, self._backoff, errors=(OSError,))
            except Exception:  # a paho surprise must not end the thread: alerts would queue forever unseen
                log.exception("MQTT connection to %s failed unexpectedly; retrying", self.address)
                self._stop.wait(self._backoff.next_delay())
                continue
            if client is None:
                return
            began = time.monotonic()
            self._session_over.wait()
            self._end(client)
            if time.monotonic() - began >= STABLE_SESSION_S:
                self._drop_backoff.reset()
                short_sessions = 0
            elif not self._stop.is_set():
                short_sessions += 1
                delay = self._drop_backoff.next_delay()
                if short_sessions >= SUSPECT_AFTER_SHORT_SESSIONS:
                    # The broker keeps accepting us and ending us at once: a broker that died would refuse the connection.
                    log.warning(
                        "MQTT broker %s ended %d sessions in a row within %.0f s of connecting (is another client using %s?); "
                        "reconnecting in %.1f s",
                        self.address,
                        short_sessions,
                        STABLE_SESSION_S,
                        self.client_id,
                        delay,
                    )
                self._stop.wait(delay)

    def _new_client(self):
        client = new_client(self.settings, self.client_id, self._password, self._tls)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def _open_session(self):
        """Connect a fresh client, wait for CONNACK, then let the sink publish what the broker must see first."""
        self._attempt_pending.set()
        try:
            return self._connect_and_begin()
        finally:
            self._attempt_pending.clear()

    def _connect_and_begin(self):
        self._connack.clear()
        self._connack_reason = None
        self._session_over.clear()
        client = self._new_client()
        client.connect(self.settings.host, self.settings.port, self.settings.keepalive_s)  # OSError when unreachable
        client.loop_start()
        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while not self._connack.wait(0.05):
            if self._stop.is_set() or time.monotonic() > deadline or self._session_over.is_set():
                drop(client)
                if self._stop.is_set():
                    return None
                raise TimeoutError(f"no answer from the broker within {CONNECT_TIMEOUT_S:.0f} s")
        if self._connack_reason is not None:
            drop(client)
            raise ConnectionRefusedError(f"the broker refused the connection: {self._connack_reason}")
        self._begin(client)
        return client

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connack_reason = str(reason_code) if reason_code.is_failure else None
        self._connack.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._session_over.set()
