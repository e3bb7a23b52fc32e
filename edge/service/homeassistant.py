"""Home Assistant MQTT discovery: the configs that make the device appear in Home Assistant by itself.

Two entities on one device, both shown unavailable while the device is offline:
- "Emotion", a sensor whose state is the smoothed state (an emotion or "silence") and whose
  attributes are the smoothed probabilities. With the model's labels it is an enum sensor,
  its options those labels and "silence", so Home Assistant offers exactly what the model can say.
- "Emotion alert", a binary sensor that is ON while any alert is active.

The MQTT sink publishes them, retained, on every connect.
"""

from __future__ import annotations

from collections.abc import Sequence

from edge import __version__
from edge.policy import SILENCE
from edge.settings import MqttSettings


def discovery_configs(settings: MqttSettings, labels: Sequence[str] = ()) -> dict[str, dict]:
    """{config topic: payload} for the emotion sensor and the alert binary sensor; ``labels`` are the model's."""
    s = settings
    device = {
        "identifiers": [f"ser_edge_{s.device_id}"],
        "name": f"Speech emotion {s.device_id}",
        "model": "ser-edge speech emotion recognition",
        "manufacturer": "ser-edge",
        "sw_version": __version__,
    }
    availability = {
        "availability_topic": s.topic("availability"),
        "payload_available": "online",
        "payload_not_available": "offline",
    }
    emotion = {
        "name": "Emotion",
        "unique_id": f"ser_edge_{s.device_id}_emotion",
        "state_topic": s.topic("state"),
        "value_template": "{{ value_json.state }}",
        "json_attributes_topic": s.topic("state"),
        "json_attributes_template": "{{ (value_json.probs or {}) | tojson }}",  # probs is null in silence
        "icon": "mdi:account-voice",
        **({"device_class": "enum", "options": [*labels, SILENCE]} if labels else {}),
        **availability,
        "device": device,
    }
    alert = {
        "name": "Emotion alert",
        "unique_id": f"ser_edge_{s.device_id}_alert",
        # Retained and current (not the alert stream, which a queue may deliver late): ON while any alert is active.
        "state_topic": s.topic("alert_active"),
        "value_template": "{{ value_json.state }}",
        "payload_on": "ON",
        "payload_off": "OFF",
        "json_attributes_topic": s.topic("alert_active"),
        "json_attributes_template": "{{ value_json.alerts | tojson }}",
        "device_class": "problem",
        **availability,
        "device": device,
    }
    return {
        f"{s.discovery_prefix}/sensor/{s.device_id}_emotion/config": emotion,
        f"{s.discovery_prefix}/binary_sensor/{s.device_id}_alert/config": alert,
    }
