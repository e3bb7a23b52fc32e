"""The MQTT sink: state, alerts and availability to a broker, Home Assistant discovery, nothing lost.

Topics, under ``{topic_prefix}/{device_id}``:
- ``availability``: "online" (retained) once connected; "offline" (retained) on a clean stop, and
  as the last will the broker publishes if the device vanishes.
- ``state``: the smoothed state as JSON (``value_json.state`` is an emotion or "silence"), retained.
- ``alert``: "alert" and "alert_end" events as JSON, not retained, delivered at least once, in order.
- ``alert_active``: ``{"state": "ON"|"OFF", "alerts": {id: emotion}}`` now, retained (latest wins).
- ``event``: each alert and alert end as it happens, for Home Assistant's event entity
  (``{"event_type": "angry"|"angry_end", ...the alert}``), not retained and not queued: an alert that
  started while the broker was away is announced when it returns only if it is still active.
- ``summary``: with a history (``[history]``), today's and yesterday's speech, shares per label and
  alerts (``edge.history_query.daily_summary``), retained, renewed as minutes are written.
- ``health``: the periodic health event, QoS 0; ``window``: every window, only with ``publish_windows``.
Home Assistant discovery is :mod:`edge.service.homeassistant`. On every connect the sink publishes the
configs it wants (retained) and removes, with an empty retained payload, every config it published
before and no longer wants: the ones in its DiscoveryRecord, and the ones the broker still holds under
its own device id with its own unique_id (it subscribes to them). The settings are ``edge.settings.MqttSettings`` (the [mqtt] table).

Nothing lost: every alert event goes into the :class:`~edge.service.queue.AlertQueue` (written to its
file) before anything else, and leaves it only when the broker has acknowledged the publish.

Reconnection is :mod:`edge.service.mqtt_connection`: one thread per sink opens a fresh paho client
per connection, with backoff between attempts. A fresh client per connection means our queue is the
only store of undelivered alerts: on every connect the sink publishes availability, discovery, the
latest state and then the whole queue in order, while holding the lock ``handle`` takes, so an alert
raised meanwhile lands after the backlog and the broker sees alerts in the order they were raised.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time

from edge.service.backoff import BackoffSettings
from edge.service.homeassistant import (
    Capabilities,
    DiscoveryRecord,
    discovery_configs,
    event_payload,
    is_own_config,
    legacy_config_topics,
    own_configs_filter,
)
from edge.service.inflight import Inflight
from edge.service.mqtt_client import read_password, require_paho, tls_context
from edge.service.mqtt_connection import Connection, drop
from edge.service.queue import AlertQueue
from edge.settings import MqttSettings

__all__ = ["Capabilities", "MqttSettings", "MqttSink", "discovery_configs"]

log = logging.getLogger(__name__)

CLOSE_BUDGET_S = 1.0
"""Most time close() spends delivering what is pending: a first connection still under way (a short
file run can end before it completes), then the acknowledgements; the connection thread then gets
``edge.service.mqtt_connection.JOIN_WAIT_S``. A stop should take well under 2 s (the unit's
TimeoutStopSec=10 also covers a slow disk for the history and the voice profile)."""
QUEUED_TYPES = ("alert", "alert_end")
"""Events that go through the persistent queue: they must arrive, in order."""
RETAINED_TYPES = ("state", "summary")
"""Events kept retained on the topic of their type: the smoothed state, and the history's daily summary."""


def _same_file(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and os.path.realpath(a) == os.path.realpath(b)


def _dumps(event: dict) -> str:
    return json.dumps(event, separators=(",", ":"))


class MqttSink:
    """Publishes events to an MQTT broker; a down broker at start-up or later is not fatal.

    Construction reads the password and CA files (MqttConfigError if they cannot be used),
    opens the alert queue and starts the connection thread. ``handle`` never blocks on the
    network; ``close`` returns within about 1.3 s even when the broker is unreachable.
    """

    name = "mqtt"

    def __init__(
        self,
        settings: MqttSettings,
        backoff: BackoffSettings | None = None,
        start: bool = True,
        capabilities: Capabilities | None = None,
    ) -> None:
        """Check everything the sink needs (paho, the password and CA files, the queue file) and, with ``start``, connect.

        ``start=False`` only checks: a reload builds its new sinks this way while the running ones go on,
        and calls ``start`` once the old sink has closed (one client id, one queue file). ``capabilities``
        (the model's labels, the alert rules) decide the Home Assistant entities; ``offer`` changes them.
        """
        require_paho()
        self.settings = settings
        self.capabilities = capabilities or Capabilities()
        password = read_password(settings.password_file) if settings.password_file else None
        tls = tls_context(settings)
        if settings.queue_file:
            AlertQueue.check_path(settings.queue_file)
        self._queue: AlertQueue | None = None
        self._client_id = settings.client_id or f"ser-edge-{settings.device_id}"
        self._connection = Connection(
            settings,
            self._client_id,
            password,
            tls,
            backoff,
            begin=self._begin_session,
            end=self._end_session,
            on_publish=self._on_publish,
            on_message=self._on_message,
        )
        self._address = self._connection.address

        self._closed = False
        # _lock orders publishes and guards the connection state; paho callbacks never take it
        # (paho calls on_publish holding its own message lock, which publish() also takes).
        self._lock = threading.Lock()
        self._client = None
        self._connected = False
        self._latest: dict[str, dict] = {}  # the last state and daily summary, re-sent on every connect
        self._active: dict[str, str] = {}  # alert id -> emotion, for alert_active
        # Publishes not yet acknowledged, with its own lock; on_publish takes only that one.
        self._inflight = Inflight(self._acknowledged)
        self._record: DiscoveryRecord | None = None  # opened by start(), like the queue
        self._wanted: frozenset[str] = frozenset()  # the config topics of this session; paho's thread reads it
        self._up = threading.Event()  # connected, and the backlog handed over
        if start:
            self.start()

    def start(self, replacing: MqttSink | None = None) -> None:
        """Open the queue and connect; ``replacing`` is a closed sink whose undelivered alerts this one takes over, in order."""
        self._queue = AlertQueue(self.settings.queue_file, self.settings.queue_max)
        self._record = DiscoveryRecord(DiscoveryRecord.for_queue(self.settings.queue_file), first=legacy_config_topics(self.settings))
        if replacing is not None and replacing._record is not None:
            for topic in replacing._record.topics:  # its device id or prefix may differ from ours: its configs go
                self._record.add(topic)
        if (
            replacing is not None
            and replacing._queue is not None
            and not _same_file(replacing.settings.queue_file, self.settings.queue_file)
        ):
            # Into this queue (and its file) first, then out of the old one: a crash in between repeats, never loses.
            for _, event in replacing._queue.items():
                self._queue.append(event)
            replacing._queue.take_all()
        self._connection.start()

    # -- the Sink interface ---------------------------------------------------------------------

    @property
    def queue_length(self) -> int:
        """Alert events not yet acknowledged by the broker."""
        return len(self._queue) if self._queue is not None else 0

    @property
    def status(self) -> str:
        """One word for the health event: connected, disconnected (alerts are queued meanwhile) or closed."""
        if self._closed:
            return "closed"
        return "connected" if self._connected else "disconnected"

    def handle(self, event: dict) -> None:
        kind = event.get("type")
        if kind in QUEUED_TYPES:
            with self._lock:
                seq = self._queue.append(event)
                if kind == "alert":
                    self._active[str(event.get("id"))] = str(event.get("emotion"))
                else:
                    self._active.pop(str(event.get("id")), None)
                if self._connected and not self._closed:
                    self._publish(self.settings.topic("alert"), _dumps(event), self.settings.qos, retain=False, seq=seq)
                    self._publish_alert_active()
                    self._publish_event(event)
                else:
                    log.info(
                        "MQTT broker %s not connected: %s %s queued (%d waiting)", self._address, kind, event.get("id"), len(self._queue)
                    )
        elif kind in RETAINED_TYPES:  # the latest of each, retained, and again on every connect
            with self._lock:
                self._latest[kind] = dict(event)
                if self._connected and not self._closed:
                    self._publish(self.settings.topic(kind), _dumps(event), self.settings.qos, retain=True)
        elif kind == "health":
            self._publish_if_connected(self.settings.topic("health"), event)
        elif kind == "window" and self.settings.publish_windows:
            self._publish_if_connected(self.settings.topic("window"), event)

    def resume_alerts(self, alerts: dict[str, str]) -> None:
        """Alerts already active when this sink was built (after a reload), as {id: emotion}.

        They were announced by the sink before this one, so they only join alert_active: not queued, not published again.
        """
        with self._lock:
            self._active.update(alerts)
            if self._connected and not self._closed:
                self._publish_alert_active()

    def offer(self, capabilities: Capabilities) -> None:
        """What the service offers changed (a reload changed the alert rules): publish the new configs, remove the old."""
        with self._lock:
            if capabilities == self.capabilities:
                return
            self.capabilities = capabilities
            if self._connected and not self._closed:
                self._sync_discovery(self._client)

    def close(self) -> None:
        """Publish "offline", wait briefly for acknowledgements, save the queue and disconnect."""
        if self._closed:
            return
        if self._queue is None:  # checked, never started (a reload that was given up)
            self._closed = True
            return
        deadline = time.monotonic() + CLOSE_BUDGET_S
        if not self._up.is_set() and self._connection.attempt_pending:
            # Not a broker that is down (then no attempt is pending), just one not reached yet.
            self._up.wait(CLOSE_BUDGET_S / 2)
        self._connection.stop()
        with self._lock:
            self._closed = True
            client = self._client if self._connected else None
            if client is not None:
                self._publish(self.settings.topic("availability"), "offline", self.settings.qos, retain=True)
        if client is not None:
            self._wait_for_acks(deadline - time.monotonic())
            client.disconnect()
        self._connection.close()
        self._queue.flush()
        if len(self._queue):
            where = f"kept in {self.settings.queue_file}" if self.settings.queue_file else "lost (no queue_file is set)"
            log.warning("MQTT: %d undelivered alert event(s) %s", len(self._queue), where)

    # -- publishing -----------------------------------------------------------------------------

    def _publish_alert_active(self) -> None:
        payload = {"state": "ON" if self._active else "OFF", "alerts": dict(self._active)}
        self._publish(self.settings.topic("alert_active"), _dumps(payload), self.settings.qos, retain=True)

    def _publish_event(self, event: dict) -> None:
        """The alert or its end, as Home Assistant's event entity reads it (caller holds _lock)."""
        self._publish(self.settings.topic("event"), _dumps(event_payload(event)), self.settings.qos, retain=False)

    def _sync_discovery(self, client) -> None:
        """Publish the wanted configs, after removing the recorded ones no longer wanted (caller holds _lock).

        Removals go first: a config that moved (another layout) must leave before one with its unique_id arrives.
        Then subscribe to this device id's configs: the broker sends the retained ones, and ``_on_message``
        removes any that is not wanted (one published by an earlier run with other rules, or before discovery was off).
        """
        s = self.settings
        wanted = discovery_configs(s, self.capabilities) if s.discovery else {}
        self._wanted = frozenset(wanted)
        stale = self._record.topics - self._wanted
        self._record.replace(stale | self._wanted)  # one save, before the broker hears of any of them
        for topic in sorted(stale):
            self._remove_config(client, topic)
        for topic, config in wanted.items():
            self._publish(topic, _dumps(config), s.qos, retain=True)
        client.subscribe(own_configs_filter(s), qos=s.qos)

    def _remove_config(self, client, topic: str) -> None:
        """An empty retained payload: the broker forgets the config and Home Assistant removes the entity."""
        self._record.add(topic)  # until the broker acknowledges the removal
        self._send(client, topic, "", self.settings.qos, retain=True, removes=topic)

    def _on_message(self, client, userdata, msg) -> None:
        # paho's thread, holding paho's callback lock: never take _lock here (a publisher holding it waits for paho).
        if msg.retain and msg.topic not in self._wanted and client is self._client and is_own_config(self.settings, msg.payload):
            log.info("MQTT: removing the Home Assistant config %s, which this device no longer offers", msg.topic)
            self._remove_config(client, msg.topic)

    def _publish_if_connected(self, topic: str, event: dict) -> None:
        with self._lock:
            if self._connected and not self._closed:
                self._publish(topic, _dumps(event), 0, retain=False)

    def _publish(self, topic: str, payload: str, qos: int, retain: bool, seq: int | None = None) -> None:
        """Hand one message to paho (caller holds _lock); tracked until acknowledged (QoS 0 too, see edge.service.inflight)."""
        self._send(self._client, topic, payload, qos, retain, seq)

    def _send(self, client, topic: str, payload: str, qos: int, retain: bool, seq: int | None = None, removes: str | None = None) -> None:
        """``_publish`` without the ordering lock: for config removals, which paho's own thread may publish.

        ``seq`` leaves the queue and ``removes`` (a config topic) leaves the discovery record once acknowledged.
        """
        info = client.publish(topic, payload, qos=qos, retain=retain)
        self._inflight.track(info.mid, seq, removes)

    def _acknowledged(self, seq: int | None, removes: str | None, save: bool = True) -> None:
        if seq is not None:
            self._queue.remove(seq, save=save)
        if removes is not None:
            self._record.discard(removes)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self._inflight.acknowledge(mid, lambda: client is self._client)

    def _wait_for_acks(self, timeout_s: float) -> None:
        missing = self._inflight.wait(timeout_s)
        if missing:
            log.warning("MQTT: %d publish(es) not acknowledged when closing", missing)

    # -- sessions (edge.service.mqtt_connection calls these from its thread) ------------------------

    def _begin_session(self, client) -> None:
        """The broker accepted a connection: publish availability, discovery, the latest state and the queued alerts, in order."""
        s = self.settings
        with self._lock:
            if self._closed:
                drop(client)
                return
            self._inflight.clear()
            self._client = client
            self._publish(s.topic("availability"), "online", s.qos, retain=True)
            self._sync_discovery(client)
            for kind, latest in self._latest.items():
                self._publish(s.topic(kind), _dumps(latest), s.qos, retain=True)
            backlog = self._queue.items()
            for seq, event in backlog:
                self._publish(s.topic("alert"), _dumps(event), s.qos, retain=False, seq=seq)
            self._publish_alert_active()
            for _, event in backlog:  # Home Assistant hears of an alert that began while away only if it is still on
                if event.get("type") == "alert" and str(event.get("id")) in self._active:
                    self._publish_event(event)
            self._connected = True
            self._up.set()
        if backlog:
            log.info("MQTT connected to %s; delivering %d queued alert event(s)", self._address, len(backlog))
        else:
            log.info("MQTT connected to %s as %s", self._address, self._client_id)

    def _end_session(self, client) -> None:
        """The session is over: alerts queue until the next one."""
        with self._lock:
            self._connected = False
            self._up.clear()
        drop(client)
        self._inflight.clear(wake=True)
        if not self._connection.stopping:
            log.warning("MQTT connection to %s lost; %d alert event(s) waiting; reconnecting", self._address, len(self._queue))
