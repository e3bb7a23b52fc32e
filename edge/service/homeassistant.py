"""Home Assistant MQTT discovery: the configs that make the device and its entities appear by themselves.

Every entity belongs to one device ("Speech emotion {device_id}"), carries the same ``origin``
(ser-edge, its version and ``mqtt.support_url``) and is shown unavailable while the device is offline:

- ``sensor`` "Emotion": the smoothed state, an ``enum`` whose options are the model's labels and "silence";
  its attributes are the smoothed probabilities.
- ``binary_sensor`` "Emotion alert": ON while any alert is active; and one "{Emotion} alert" per alert
  rule (e.g. "Angry alert"), ON while that emotion's alert is active.
- ``event`` "Alert": one event type per alert rule ("angry") and one for its end ("angry_end"); each
  event carries the alert's attributes (id, score, started_s, wall_time, ...). This is what an automation
  triggers on ("when the driver is angry").
- diagnostic entities from the health event: "CPU share" (%), "Alerts waiting" (the queue), "Audio input"
  (listening or not, with the source's name and overflows) and, with a voice profile, "Voice profile speech" (s).
- with a history ([history]), from the daily summary: "{Emotion} today" per alert rule (its share of today's
  speech, %, with yesterday's share and both days' alerts as attributes) and "Speech today" (s).

Config topics are ``{discovery_prefix}/{component}/{device_id}/{key}/config``: the device id is the
topic's node id, which Home Assistant documents for exactly this, so the sink can subscribe to
``{discovery_prefix}/+/{device_id}/+/config`` and find every config it left retained there.

To add an entity: write a function of (MqttSettings, Capabilities) that yields :class:`Entity` and add
it to ENTITY_GROUPS; whatever it needs to know about the running service goes in a new field of
:class:`Capabilities` (set where the daemon builds it, ``capabilities``). The sink publishes it,
removes it once it is no longer yielded, and tests/test_homeassistant.py checks it against the schema.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edge import __version__
from edge.files import read_regular, why, write_atomically
from edge.history import database_path
from edge.policy import SILENCE
from edge.settings import MqttSettings, ServiceSettings

log = logging.getLogger(__name__)

ORIGIN_NAME = "ser-edge"
END_SUFFIX = "_end"
"""An alert's end is its own event type: "angry_end" after "angry"."""
LEGACY_KEYS = (("sensor", "emotion"), ("binary_sensor", "alert"))
"""The configs of ser-edge 0.1, at {discovery_prefix}/{component}/{device_id}_{key}/config (no node id)."""


@dataclass(frozen=True)
class Capabilities:
    """What the running service offers Home Assistant beyond its [mqtt] settings; a reload may change it."""

    labels: tuple[str, ...] = ()
    """The model's labels, in its order: the emotion sensor's options (with "silence"); () leaves it free text."""
    alerts: tuple[str, ...] = ()
    """Emotions with an alert rule in the running policy: the alert event's types and one binary sensor each."""
    profile: bool = False
    """A voice profile is in use: its speech seconds become a diagnostic sensor."""
    history: bool = False
    """A history is kept ([history]): the daily summary on .../summary, today's share of each alert label, speech today."""


def capabilities(settings: ServiceSettings, labels: Sequence[str]) -> Capabilities:
    """What a service running ``settings`` with a model of these ``labels`` offers (rules for other labels are left out)."""
    labels = tuple(labels)
    alerts = tuple(r.emotion for r in settings.policy.rules if not labels or r.emotion in labels)
    history = database_path(settings) is not None
    return Capabilities(labels=labels, alerts=alerts, profile=bool(settings.profile.path), history=history)


@dataclass(frozen=True)
class Entity:
    """One entity of the device, before the keys every config shares (unique_id, device, origin, availability)."""

    component: str
    """Home Assistant's MQTT component: "sensor", "binary_sensor", "event", ..."""
    key: str
    """Its id on this device (letters, digits, _): the config topic's object id and the end of its unique_id."""
    config: dict = field(default_factory=dict)
    """The component's own keys: name, state_topic, value_template, device_class, entity_category, ..."""


# --------------------------------------------------------------------------------------------- the entities


def emotion_entities(s: MqttSettings, caps: Capabilities) -> Iterator[Entity]:
    """The smoothed state, and whether any alert is active."""
    yield Entity(
        "sensor",
        "emotion",
        {
            "name": "Emotion",
            "state_topic": s.topic("state"),
            "value_template": "{{ value_json.state }}",
            "json_attributes_topic": s.topic("state"),
            "json_attributes_template": "{{ (value_json.probs or {}) | tojson }}",  # probs is null in silence
            "icon": "mdi:account-voice",
            # enum: Home Assistant offers exactly what the model can say (it refuses options with a unit or state_class).
            **({"device_class": "enum", "options": [*caps.labels, SILENCE]} if caps.labels else {}),
        },
    )
    yield Entity(
        "binary_sensor",
        "alert",
        {
            "name": "Emotion alert",
            # Retained and current (not the alert stream, which a queue may deliver late): ON while any alert is active.
            "state_topic": s.topic("alert_active"),
            "value_template": "{{ value_json.state }}",
            "payload_on": "ON",
            "payload_off": "OFF",
            "json_attributes_topic": s.topic("alert_active"),
            "json_attributes_template": "{{ value_json.alerts | tojson }}",
            "device_class": "problem",
        },
    )


def alert_entities(s: MqttSettings, caps: Capabilities) -> Iterator[Entity]:
    """Per alert rule: a binary sensor while its alert is active, and the types of the one alert event entity."""
    for emotion in caps.alerts:
        yield Entity(
            "binary_sensor",
            f"alert_{emotion_key(emotion)}",
            {
                "name": f"{emotion.capitalize()} alert",
                "state_topic": s.topic("alert_active"),
                "value_template": "{{ 'ON' if " + json.dumps(emotion, ensure_ascii=False) + " in value_json.alerts.values() else 'OFF' }}",
                "payload_on": "ON",
                "payload_off": "OFF",
                "device_class": "problem",
            },
        )
    if caps.alerts:  # Home Assistant requires event_types: no rules, no event entity
        yield Entity(
            "event",
            "alert_event",
            {
                "name": "Alert",
                "state_topic": s.topic("event"),
                "event_types": [t for emotion in caps.alerts for t in (emotion, emotion + END_SUFFIX)],
                "icon": "mdi:alert-decagram",
            },
        )


def diagnostic_entities(s: MqttSettings, caps: Capabilities) -> Iterator[Entity]:
    """From the periodic health event (QoS 0, every health_interval_s): how the device itself is doing."""
    health = s.topic("health")
    diagnostic = {"state_topic": health, "entity_category": "diagnostic"}
    yield Entity(
        "sensor",
        "cpu",
        {
            "name": "CPU share",
            **diagnostic,
            "value_template": "{{ value_json.cpu_percent }}",
            "unit_of_measurement": "%",  # of one core: a busy service on a 4-core Pi can show more than 100
            "state_class": "measurement",
            "suggested_display_precision": 1,
            "icon": "mdi:cpu-64-bit",
        },
    )
    yield Entity(
        "sensor",
        "queue",
        {
            "name": "Alerts waiting",
            **diagnostic,
            "value_template": "{{ value_json.queue_length }}",
            "state_class": "measurement",
            "icon": "mdi:tray-full",
        },
    )
    yield Entity(
        "binary_sensor",
        "audio_input",
        {
            "name": "Audio input",
            **diagnostic,
            # ON while the source delivers audio; OFF while a microphone is missing and being reopened.
            "value_template": "{{ 'ON' if value_json.listening | default(true) else 'OFF' }}",
            "payload_on": "ON",
            "payload_off": "OFF",
            "device_class": "connectivity",
            "json_attributes_topic": health,
            "json_attributes_template": "{{ {'source': value_json.source, 'overflows': value_json.overflows | default(0)} | tojson }}",
        },
    )
    if caps.profile:
        yield Entity(
            "sensor",
            "profile_speech",
            {
                "name": "Voice profile speech",
                **diagnostic,
                # "None" is Home Assistant's word for no value (a profile that has not been learnt yet).
                "value_template": "{{ value_json.profile.speech_s if value_json.profile else 'None' }}",
                "device_class": "duration",
                "unit_of_measurement": "s",
                "state_class": "measurement",
                "suggested_display_precision": 0,
            },
        )


def history_entities(s: MqttSettings, caps: Capabilities) -> Iterator[Entity]:
    """From the history's daily summary (retained on .../summary): today's share of speech per alert label, and speech today.

    Each share sensor carries yesterday's share and both days' alert counts as attributes, for a carer's trend card.
    """
    if not caps.history:
        return
    summary = s.topic("summary")
    for emotion in caps.alerts:
        label = json.dumps(emotion, ensure_ascii=False)
        yield Entity(
            "sensor",
            f"today_{emotion_key(emotion)}",
            {
                "name": f"{emotion.capitalize()} today",
                "state_topic": summary,
                # The share of today's speech the model heard as this emotion; 0 until there is speech.
                "value_template": "{{ (100 * (value_json.today.shares[" + label + "] | default(0))) | round(1) }}",
                "json_attributes_topic": summary,
                "json_attributes_template": "{{ {'yesterday': (100 * (value_json.yesterday.shares["
                + label
                + "] | default(0))) | round(1), 'alerts_today': value_json.today.alerts["
                + label
                + "] | default(0), 'alerts_yesterday': value_json.yesterday.alerts["
                + label
                + "] | default(0), 'date': value_json.date} | tojson }}",
                "unit_of_measurement": "%",
                "state_class": "measurement",
                "suggested_display_precision": 0,
                "icon": "mdi:chart-timeline-variant",
            },
        )
    yield Entity(
        "sensor",
        "speech_today",
        {
            "name": "Speech today",
            "state_topic": summary,
            "value_template": "{{ value_json.today.speech_s }}",
            "json_attributes_topic": summary,
            "json_attributes_template": "{{ {'heard_s': value_json.today.heard_s, 'yesterday_s': value_json.yesterday.speech_s} | tojson }}",
            "device_class": "duration",
            "unit_of_measurement": "s",
            "state_class": "measurement",
            "suggested_display_precision": 0,
            "icon": "mdi:account-voice",
        },
    )


ENTITY_GROUPS: tuple[Callable[[MqttSettings, Capabilities], Iterable[Entity]], ...] = (
    emotion_entities,
    alert_entities,
    diagnostic_entities,
    history_entities,
)
"""Every entity of the device comes from one of these, in this order."""


# --------------------------------------------------------------------------------------------- the configs


def emotion_key(emotion: str) -> str:
    """An emotion as it may stand in a config topic and a unique_id: letters, digits and _ (a label may be "złość")."""
    return "".join(c if c.isascii() and (c.isalnum() or c == "_") else f"u{ord(c):04x}" for c in emotion)


def config_topic(s: MqttSettings, component: str, key: str) -> str:
    return f"{s.discovery_prefix}/{component}/{s.device_id}/{key}/config"


def own_configs_filter(s: MqttSettings) -> str:
    """The subscription that finds every config this device id left retained under the discovery prefix."""
    return f"{s.discovery_prefix}/+/{s.device_id}/+/config"


def is_own_config(s: MqttSettings, payload: bytes) -> bool:
    """A retained config found under our node id is ours only if its unique_id says so: another integration may use that id."""
    try:
        config = json.loads(payload)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False
    return isinstance(config, dict) and str(config.get("unique_id", "")).startswith(f"ser_edge_{s.device_id}_")


def legacy_config_topics(s: MqttSettings) -> set[str]:
    """Where ser-edge 0.1 published its two configs; removed like any stale config."""
    return {f"{s.discovery_prefix}/{component}/{s.device_id}_{key}/config" for component, key in LEGACY_KEYS}


def device_block(s: MqttSettings) -> dict:
    return {
        "identifiers": [f"ser_edge_{s.device_id}"],
        "name": f"Speech emotion {s.device_id}",
        "model": "ser-edge speech emotion recognition",
        "manufacturer": "ser-edge",
        "sw_version": __version__,
    }


def origin_block(s: MqttSettings) -> dict:
    """Who published the config: Home Assistant logs it when it discovers an entity."""
    return {"name": ORIGIN_NAME, "sw_version": __version__, **({"support_url": s.support_url} if s.support_url else {})}


def discovery_configs(settings: MqttSettings, caps: Capabilities | None = None) -> dict[str, dict]:
    """{config topic: payload} for every entity of ENTITY_GROUPS, with the keys they all share."""
    s, caps = settings, caps or Capabilities()
    shared = {
        "availability_topic": s.topic("availability"),
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": device_block(s),
        "origin": origin_block(s),
    }
    configs: dict[str, dict] = {}
    for group in ENTITY_GROUPS:
        for entity in group(s, caps):
            topic = config_topic(s, entity.component, entity.key)
            if topic in configs:
                raise ValueError(f"two Home Assistant entities share the config topic {topic}; give one another key")
            configs[topic] = {**entity.config, "unique_id": f"ser_edge_{s.device_id}_{entity.key}", **shared}
    return configs


def event_type(event: dict) -> str:
    """The alert event entity's type for an "alert" or "alert_end" event: "angry" or "angry_end"."""
    emotion = str(event.get("emotion"))
    return emotion + END_SUFFIX if event.get("type") == "alert_end" else emotion


def event_payload(event: dict) -> dict:
    """What the event entity receives: its event_type and the alert's attributes (all but "type")."""
    return {"event_type": event_type(event), **{k: v for k, v in event.items() if k != "type"}}


# --------------------------------------------------------------------------------------------- the record


class DiscoveryRecord:
    """The config topics this installation published and has not yet seen removed.

    The sink removes a config (an empty retained payload) when it is no longer wanted: discovery turned
    off, an alert rule gone, or another device id or discovery prefix. The broker tells it what is left
    under its own device id (``own_configs_filter``); what was published under an earlier id or prefix
    only this record knows. It is kept in a file beside the queue file (``for_queue``), replaced
    atomically, so a restart with a new device id still removes the old one's configs; without a queue
    file it lives in memory, which covers a reload. A fresh record starts with the 0.1 layout's topics.
    Thread-safe: paho's thread discards a topic when its removal is acknowledged.
    """

    def __init__(self, path: str | Path | None, first: Iterable[str] = ()) -> None:
        self.path = Path(path) if path is not None else None
        self._lock = threading.Lock()
        self._topics: set[str] = self._load(set(first))

    @staticmethod
    def for_queue(queue_file: str | None) -> Path | None:
        """``mqtt-queue.jsonl`` -> ``mqtt-queue.discovery.json`` beside it; None without a queue file."""
        return Path(queue_file).with_suffix(".discovery.json") if queue_file else None

    @property
    def topics(self) -> set[str]:
        with self._lock:
            return set(self._topics)

    def replace(self, topics: Iterable[str]) -> None:
        with self._lock:
            topics = set(topics)
            if topics != self._topics:
                self._topics = topics
                self._save()

    def add(self, topic: str) -> None:
        with self._lock:
            if topic not in self._topics:
                self._topics.add(topic)
                self._save()

    def discard(self, topic: str) -> None:
        with self._lock:
            if topic in self._topics:
                self._topics.discard(topic)
                self._save()

    def _load(self, first: set[str]) -> set[str]:
        if self.path is None:
            return first
        try:
            data = json.loads(read_regular(self.path).decode("utf-8"))
            topics = data["config_topics"]
            if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
                raise TypeError
            return set(topics)
        except FileNotFoundError:
            return first
        except OSError as exc:
            log.warning("cannot read %s (%s): configs published under an earlier device id stay in Home Assistant", self.path, why(exc))
        except (UnicodeDecodeError, ValueError, KeyError, TypeError):
            log.warning("%s is not a record of discovery configs; starting a new one (delete the file to silence this)", self.path)
        return first

    def _save(self) -> None:
        if self.path is None:
            return
        data = json.dumps({"config_topics": sorted(self._topics)}, indent=1) + "\n"
        try:
            write_atomically(self.path, data.encode())
        except OSError as exc:
            log.warning("cannot write %s (%s): a later device id could not remove these configs", self.path, exc)
