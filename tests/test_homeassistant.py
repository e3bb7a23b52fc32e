"""Home Assistant discovery payloads against Home Assistant's documented MQTT discovery schema.

The schema below is written from Home Assistant's own documentation and validation code (the
MQTT sensor, binary sensor and event pages of home-assistant.io, and the voluptuous schemas of
homeassistant/components/mqtt: schemas.py MQTT_ENTITY_COMMON_SCHEMA with its device and origin
blocks, config.py MQTT_RO_SCHEMA, sensor.py validate_sensor_state_and_device_class_config,
event.py, discovery.py TOPIC_MATCHER, and the device and state classes of sensor/const.py and
binary_sensor). Home Assistant drops keys it does not know without a word (extra=REMOVE_EXTRA),
so a misspelt key would silently do nothing: every key here must be a documented one, written in
full (the abbreviations are allowed by Home Assistant; we do not use them, for readability).

The value templates are rendered with Jinja2, as Home Assistant renders them (``value`` and
``value_json``), on the events a real daemon emits, and the event payloads go through the same
steps as Home Assistant's MQTT event entity.
"""

from __future__ import annotations

import json
import re

import pytest

from edge.policy import AlertRule, PolicySettings
from edge.service.homeassistant import (
    ENTITY_GROUPS,
    Capabilities,
    DiscoveryRecord,
    Entity,
    capabilities,
    discovery_configs,
    event_payload,
    is_own_config,
    legacy_config_topics,
    own_configs_filter,
)
from edge.settings import ConfigError, MqttSettings, ProfileSettings, ServiceSettings

LABELS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
ALL = Capabilities(labels=LABELS, alerts=("sad", "angry", "fearful"), profile=True)

# -- the documented schema --------------------------------------------------------------------------

# discovery.py: <discovery_prefix>/<component>/[<node_id>/]<object_id>/config, ids from [a-zA-Z0-9_-].
# Home Assistant matches what follows its prefix and the slash.
TOPIC = re.compile(r"^(?P<component>\w+)/(?:(?P<node_id>[a-zA-Z0-9_-]+)/)?(?P<object_id>[a-zA-Z0-9_-]+)/config$")
# schemas.py MQTT_ENTITY_COMMON_SCHEMA (with availability), config.py MQTT_BASE_SCHEMA and MQTT_RO_SCHEMA.
COMMON = {
    "availability",
    "availability_mode",
    "availability_template",
    "availability_topic",
    "payload_available",
    "payload_not_available",
    "device",
    "origin",
    "enabled_by_default",
    "entity_category",
    "entity_picture",
    "icon",
    "json_attributes_topic",
    "json_attributes_template",
    "object_id",
    "unique_id",
    "name",
    "qos",
    "encoding",
    "state_topic",
    "value_template",
}
KEYS = {
    "sensor": COMMON
    | {
        "device_class",
        "expire_after",
        "force_update",
        "last_reset_value_template",
        "options",
        "suggested_display_precision",
        "state_class",
        "unit_of_measurement",
    },
    "binary_sensor": COMMON | {"device_class", "expire_after", "force_update", "off_delay", "payload_on", "payload_off"},
    "event": COMMON | {"device_class", "event_types"},
}
REQUIRED = {"sensor": {"state_topic"}, "binary_sensor": {"state_topic"}, "event": {"state_topic", "event_types"}}
DEVICE_KEYS = {
    "configuration_url",
    "connections",
    "hw_version",
    "identifiers",
    "manufacturer",
    "model",
    "model_id",
    "name",
    "serial_number",
    "suggested_area",
    "sw_version",
    "via_device",
}
ORIGIN_KEYS = {"name", "sw_version", "support_url"}  # name required
ENTITY_CATEGORIES = {"config", "diagnostic"}
SENSOR_STATE_CLASSES = {"measurement", "total", "total_increasing"}
SENSOR_DEVICE_CLASSES = {
    "date", "enum", "timestamp", "apparent_power", "aqi", "atmospheric_pressure", "battery", "carbon_monoxide",
    "carbon_dioxide", "current", "data_rate", "data_size", "distance", "duration", "energy", "energy_storage",
    "frequency", "gas", "humidity", "illuminance", "irradiance", "moisture", "monetary", "nitrogen_dioxide",
    "nitrogen_monoxide", "nitrous_oxide", "ozone", "ph", "pm1", "pm10", "pm25", "power_factor", "power",
    "precipitation", "precipitation_intensity", "pressure", "reactive_energy", "reactive_power", "signal_strength",
    "sound_pressure", "speed", "sulphur_dioxide", "temperature", "volatile_organic_compounds",
    "volatile_organic_compounds_parts", "voltage", "volume", "volume_storage", "water", "weight", "wind_speed",
}  # fmt: skip
SENSOR_UNITS = {"duration": {"d", "h", "min", "s", "ms"}, "battery": {"%"}, "humidity": {"%"}}  # the classes' units we could use
NO_STATE_CLASS = {"date", "enum", "timestamp"}  # sensor/const.py DEVICE_CLASS_STATE_CLASSES: none for these
BINARY_SENSOR_DEVICE_CLASSES = {
    "battery", "battery_charging", "carbon_monoxide", "cold", "connectivity", "door", "garage_door", "gas", "heat",
    "light", "lock", "moisture", "motion", "moving", "occupancy", "opening", "plug", "power", "presence", "problem",
    "running", "safety", "smoke", "sound", "tamper", "update", "vibration", "window",
}  # fmt: skip
EVENT_DEVICE_CLASSES = {"button", "doorbell", "motion"}
DEVICE_CLASSES = {"sensor": SENSOR_DEVICE_CLASSES, "binary_sensor": BINARY_SENSOR_DEVICE_CLASSES, "event": EVENT_DEVICE_CLASSES}


def schema_problems(topic: str, config: dict, prefix: str = "homeassistant") -> list[str]:
    """Everything Home Assistant's discovery would refuse or silently drop in one config; [] when it is valid."""
    problems = []
    match = TOPIC.match(topic.removeprefix(prefix + "/")) if topic.startswith(prefix + "/") else None
    if match is None:
        return [f"{topic}: not a discovery topic"]
    component = match["component"]
    if component not in KEYS:
        return [f"{topic}: component {component} is not one we check"]
    problems += [f"{topic}: unknown key {k}" for k in set(config) - KEYS[component]]
    problems += [f"{topic}: missing required {k}" for k in REQUIRED[component] - set(config)]
    if not config.get("unique_id"):
        problems.append(f"{topic}: no unique_id (a device block only works with one)")
    if "availability" in config and "availability_topic" in config:
        problems.append(f"{topic}: availability and availability_topic are exclusive")
    device = config.get("device", {})
    problems += [f"{topic}: unknown device key {k}" for k in set(device) - DEVICE_KEYS]
    if not (device.get("identifiers") or device.get("connections")):
        problems.append(f"{topic}: the device needs identifiers or connections")
    origin = config.get("origin")
    if not isinstance(origin, dict) or not origin.get("name"):
        problems.append(f"{topic}: the origin block needs a name")
    else:
        problems += [f"{topic}: unknown origin key {k}" for k in set(origin) - ORIGIN_KEYS]
        if "support_url" in origin and not re.match(r"^https?://", origin["support_url"]):
            problems.append(f"{topic}: support_url must be an http(s) URL")
    if "entity_category" in config and config["entity_category"] not in ENTITY_CATEGORIES:
        problems.append(f"{topic}: entity_category {config['entity_category']} is not one of {ENTITY_CATEGORIES}")
    device_class = config.get("device_class")
    if device_class is not None and device_class not in DEVICE_CLASSES[component]:
        problems.append(f"{topic}: {component} device_class {device_class} is not documented")
    if component == "sensor":
        state_class, unit, options = config.get("state_class"), config.get("unit_of_measurement"), config.get("options")
        if state_class is not None and state_class not in SENSOR_STATE_CLASSES:
            problems.append(f"{topic}: state_class {state_class} is not documented")
        if options is not None and (not options or state_class or unit or device_class != "enum"):
            problems.append(f"{topic}: options need device_class enum, no state_class or unit, and at least one option")
        if device_class == "enum" and not options:
            problems.append(f"{topic}: an enum sensor lists its options")
        if device_class in NO_STATE_CLASS and state_class:
            problems.append(f"{topic}: device_class {device_class} takes no state_class")
        if device_class in SENSOR_UNITS and unit not in SENSOR_UNITS[device_class]:
            problems.append(f"{topic}: device_class {device_class} takes a unit of {SENSOR_UNITS[device_class]}, not {unit}")
    if component == "event":
        types = config.get("event_types", [])
        if not types or not all(isinstance(t, str) for t in types) or len(set(types)) != len(types):
            problems.append(f"{topic}: event_types must be distinct strings")
    return problems


# -- the payloads ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "caps",
    [Capabilities(), Capabilities(labels=LABELS), ALL, Capabilities(labels=("bored", "złość"), alerts=("złość",))],
    ids=["nothing-known", "labels", "everything", "unusual-labels"],
)
def test_every_config_follows_the_documented_schema(caps):
    settings = MqttSettings(device_id="car-1", topic_prefix="ser", discovery_prefix="ha", support_url="https://example.org/help")
    configs = discovery_configs(settings, caps)
    for topic, config in configs.items():
        assert schema_problems(topic, config, prefix="ha") == []
        assert json.loads(json.dumps(config)) == config, "plain JSON"
        assert TOPIC.match(topic.removeprefix("ha/"))["node_id"] == "car-1", "the device id is the node id"
        assert config["availability_topic"] == "ser/car-1/availability"
        assert (config["payload_available"], config["payload_not_available"]) == ("online", "offline")
        assert config["state_topic"].startswith("ser/car-1/")
        assert config["origin"] == {
            "name": "ser-edge",
            "sw_version": config["device"]["sw_version"],
            "support_url": "https://example.org/help",
        }
    unique_ids = [c["unique_id"] for c in configs.values()]
    assert len(set(unique_ids)) == len(unique_ids)
    assert len({json.dumps(c["device"], sort_keys=True) for c in configs.values()}) == 1, "one device"


def test_the_checks_catch_what_home_assistant_refuses():
    """The schema check itself: each of these is a config Home Assistant refuses or silently ignores in part."""
    settings = MqttSettings(device_id="d")
    topic, good = next((t, c) for t, c in discovery_configs(settings, ALL).items() if "/sensor/d/emotion/" in t)
    assert schema_problems(topic, good) == []
    broken = [
        {**good, "stat_cla": "measurement"},  # an abbreviation (or a typo): not a key we write
        {**good, "state_class": "measurement"},  # options with a state_class
        {**good, "device_class": "mood"},
        {**good, "entity_category": "system"},
        {**good, "origin": {"sw_version": "1"}},
        {**good, "device": {"name": "x"}},
        {k: v for k, v in good.items() if k != "state_topic"},
        {k: v for k, v in good.items() if k != "unique_id"},
    ]
    for config in broken:
        assert schema_problems(topic, config), config
    assert schema_problems("ha/sensor/d/emo tion/config", good)


def test_the_entities_and_their_classes():
    configs = discovery_configs(MqttSettings(device_id="car1"), ALL)
    by_key = {t.split("/")[3]: (t.split("/")[1], c) for t, c in configs.items()}
    assert sorted(by_key) == sorted(
        ["emotion", "alert", "alert_sad", "alert_angry", "alert_fearful", "alert_event", "cpu", "queue", "audio_input", "profile_speech"]
    )
    component, emotion = by_key["emotion"]
    assert component == "sensor" and emotion["device_class"] == "enum" and emotion["options"] == [*LABELS, "silence"]
    component, event = by_key["alert_event"]
    assert component == "event" and event["state_topic"] == "ser-edge/car1/event"
    assert event["event_types"] == ["sad", "sad_end", "angry", "angry_end", "fearful", "fearful_end"]
    assert by_key["alert_angry"][1]["name"] == "Angry alert" and by_key["alert_angry"][0] == "binary_sensor"
    diagnostics = {k for k, (_, c) in by_key.items() if c.get("entity_category") == "diagnostic"}
    assert diagnostics == {"cpu", "queue", "audio_input", "profile_speech"}
    assert by_key["cpu"][1]["unit_of_measurement"] == "%" and by_key["cpu"][1]["state_class"] == "measurement"
    assert by_key["queue"][1]["state_class"] == "measurement"
    assert by_key["audio_input"][1]["device_class"] == "connectivity"
    profile = by_key["profile_speech"][1]
    assert (profile["device_class"], profile["unit_of_measurement"], profile["state_class"]) == ("duration", "s", "measurement")
    assert configs["homeassistant/sensor/car1/emotion/config"]["unique_id"] == "ser_edge_car1_emotion", "unique ids kept from 0.1"
    assert configs["homeassistant/binary_sensor/car1/alert/config"]["unique_id"] == "ser_edge_car1_alert"


def test_what_is_offered_follows_the_running_service():
    nothing = discovery_configs(MqttSettings(device_id="d"), Capabilities())
    assert "options" not in nothing["homeassistant/sensor/d/emotion/config"], "without the model's labels: free text"
    assert not [t for t in nothing if "/event/" in t or "alert_" in t or "profile" in t], "no rules: no event entity"
    settings = ServiceSettings(
        policy=PolicySettings(rules=(AlertRule("angry"), AlertRule("bored"))), profile=ProfileSettings(path="/var/lib/ser-edge/me.json")
    )
    assert capabilities(settings, LABELS) == Capabilities(labels=LABELS, alerts=("angry",), profile=True), "bored is not a label"
    assert capabilities(ServiceSettings(), LABELS).alerts == ("sad", "angry", "fearful")
    assert not capabilities(ServiceSettings(), LABELS).profile


def test_support_url_is_checked_and_left_out_when_unset():
    assert "support_url" not in discovery_configs(MqttSettings(device_id="d"))["homeassistant/sensor/d/emotion/config"]["origin"]
    with pytest.raises(ConfigError, match=r"mqtt.support_url = \"example.org\" is not allowed: use an http:// or https:// address"):
        MqttSettings(support_url="example.org")


def test_a_new_entity_group_is_published_and_checked(monkeypatch):
    """How another module adds entities: a function of (settings, capabilities) listed in ENTITY_GROUPS."""

    def shares(s, caps):
        for emotion in caps.alerts:
            yield Entity(
                "sensor",
                f"today_{emotion}",
                {"name": f"Today {emotion}", "state_topic": s.topic("today"), "unit_of_measurement": "%", "state_class": "measurement"},
            )

    monkeypatch.setattr("edge.service.homeassistant.ENTITY_GROUPS", (*ENTITY_GROUPS, shares))
    configs = discovery_configs(MqttSettings(device_id="d"), ALL)
    topic = "homeassistant/sensor/d/today_angry/config"
    assert configs[topic]["unique_id"] == "ser_edge_d_today_angry" and schema_problems(topic, configs[topic]) == []
    monkeypatch.setattr("edge.service.homeassistant.ENTITY_GROUPS", (*ENTITY_GROUPS, lambda s, caps: [Entity("sensor", "cpu")]))
    with pytest.raises(ValueError, match="two Home Assistant entities share the config topic homeassistant/sensor/d/cpu/config"):
        discovery_configs(MqttSettings(device_id="d"), ALL)


def test_topics_for_finding_and_removing_our_configs():
    s = MqttSettings(device_id="car1", discovery_prefix="ha")
    ours = discovery_configs(s, ALL)
    assert all(is_own_config(s, json.dumps(c).encode()) for c in ours.values())
    assert is_own_config(s, b'{"unique_id": "ser_edge_car1_emotion", "name": "0.1"}'), "0.1's unique ids too"
    for foreign in (b'{"unique_id": "obd_car1_speed"}', b'{"unique_id": "ser_edge_car2_emotion"}', b"", b"\xff", b"[1]", b"{"):
        assert not is_own_config(s, foreign), foreign
    assert own_configs_filter(s) == "ha/+/car1/+/config"
    topic_filter = re.compile("^" + own_configs_filter(s).replace("+", "[^/]+") + "$")
    assert all(topic_filter.match(t) for t in discovery_configs(s, ALL)), "every config is found by the filter"
    assert legacy_config_topics(s) == {"ha/sensor/car1_emotion/config", "ha/binary_sensor/car1_alert/config"}


# -- rendered as Home Assistant renders them, on a real daemon's events ---------------------------------------


def render(template: str, payload: str) -> str:
    """Home Assistant's MqttValueTemplate: the template with ``value`` and ``value_json`` (sandboxed Jinja2)."""
    jinja2 = pytest.importorskip("jinja2", reason="Jinja2 renders the templates as Home Assistant does (it comes with flask)")
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(undefined=jinja2.Undefined)
    env.filters["tojson"] = lambda v: json.dumps(v)
    return env.from_string(template).render(value=payload, value_json=json.loads(payload)).strip()


def ha_event(config: dict, payload: str, retain: bool = False) -> tuple[str, dict] | None:
    """What Home Assistant's MQTT event entity does with a message (components/mqtt/event.py): (type, attributes) or None."""
    if retain or not payload:
        return None  # replayed retained payloads and empty ones are ignored
    attributes = json.loads(payload)
    event_type = str(attributes.pop("event_type"))
    if event_type not in config["event_types"]:
        return None  # "Invalid event type" warning
    assert not {"event_type", "event_types"} & set(attributes), "blocked attribute names"
    return event_type, attributes


@pytest.fixture(scope="module")
def daemon_events(tiny_model_path, data_dir):
    """Every event of a real daemon that classifies a real clip with the tiny model and an easy policy, health included."""
    from test_daemon import EASY, make_daemon

    daemon, (sink,) = make_daemon(tiny_model_path, data_dir / "ravdess/Actor_01/03-01-05-02-01-01-01.flac", policy=EASY)
    assert daemon.run() == 0
    events = list(sink.events) + [daemon.health()]
    labels = daemon.classifier.labels
    return events, Capabilities(labels=labels, alerts=tuple(r.emotion for r in EASY.rules), profile=True)


def test_templates_read_the_daemons_real_events(daemon_events):
    events, caps = daemon_events
    configs = discovery_configs(MqttSettings(device_id="d"), caps)
    by_key = {t.split("/")[3]: c for t, c in configs.items()}
    states = [e for e in events if e["type"] == "state"]
    assert states, "the daemon published its smoothed state"
    emotion = by_key["emotion"]
    for state in states:
        payload = json.dumps(state)
        assert render(emotion["value_template"], payload) in emotion["options"]
        attributes = json.loads(render(emotion["json_attributes_template"], payload))
        assert attributes == (state["probs"] or {})

    health = json.dumps(next(e for e in events if e["type"] == "health"))
    assert float(render(by_key["cpu"]["value_template"], health)) >= 0
    assert render(by_key["queue"]["value_template"], health) == "0"
    assert render(by_key["audio_input"]["value_template"], health) == "ON"
    assert json.loads(render(by_key["audio_input"]["json_attributes_template"], health))["source"].startswith("file:")
    assert render(by_key["profile_speech"]["value_template"], health) == "None", "no profile in use: no value"
    with_profile = json.dumps({**json.loads(health), "profile": {"speech_s": 42.5, "adapting": True, "updated": None}})
    assert render(by_key["profile_speech"]["value_template"], with_profile) == "42.5"
    reopening = json.dumps({**json.loads(health), "listening": False})
    assert render(by_key["audio_input"]["value_template"], reopening) == "OFF"


def test_alert_events_reach_the_event_entity_and_the_binary_sensors(daemon_events):
    events, caps = daemon_events
    configs = discovery_configs(MqttSettings(device_id="d"), caps)
    by_key = {t.split("/")[3]: c for t, c in configs.items()}
    alerts = [e for e in events if e["type"] in ("alert", "alert_end")]
    assert {e["type"] for e in alerts} == {"alert", "alert_end"}, "the easy policy alerts on the tiny model"
    fired = [ha_event(by_key["alert_event"], json.dumps(event_payload(e))) for e in alerts]
    assert [f[0] for f in fired] == [e["emotion"] + ("_end" if e["type"] == "alert_end" else "") for e in alerts]
    for (_, attributes), event in zip(fired, alerts, strict=True):
        assert (
            attributes["id"] == event["id"] and attributes["emotion"] == event["emotion"] and attributes["wall_time"] == event["wall_time"]
        )
    assert ha_event(by_key["alert_event"], json.dumps(event_payload(alerts[0])), retain=True) is None

    # alert_active as the sink publishes it while the first alert is on: only its emotion's binary sensor is ON.
    first = alerts[0]
    active = json.dumps({"state": "ON", "alerts": {first["id"]: first["emotion"]}})
    for emotion in caps.alerts:
        assert render(by_key[f"alert_{emotion}"]["value_template"], active) == ("ON" if emotion == first["emotion"] else "OFF")
    assert render(by_key["alert"]["value_template"], active) == "ON"


def test_an_unusual_label_stays_a_string_in_its_template():
    caps = Capabilities(labels=("złość", 'o"k'), alerts=("złość", 'o"k'))
    configs = discovery_configs(MqttSettings(device_id="d"), caps)
    for emotion, key in (("złość", "alert_zu0142ou015bu0107"), ('o"k', "alert_ou0022k")):
        config = configs[f"homeassistant/binary_sensor/d/{key}/config"]
        assert render(config["value_template"], json.dumps({"state": "ON", "alerts": {"1": emotion}})) == "ON"
        assert render(config["value_template"], json.dumps({"state": "ON", "alerts": {"1": "calm"}})) == "OFF"


# -- the record -----------------------------------------------------------------------------------------


def test_the_record_lives_beside_the_queue_and_survives_a_restart(tmp_path):
    queue = tmp_path / "mqtt-queue.jsonl"
    path = DiscoveryRecord.for_queue(str(queue))
    assert path == tmp_path / "mqtt-queue.discovery.json" and DiscoveryRecord.for_queue(None) is None
    record = DiscoveryRecord(path, first={"legacy"})
    assert record.topics == {"legacy"} and not path.exists(), "nothing written until something changes"
    record.replace({"a", "b"})
    record.discard("a")
    assert DiscoveryRecord(path, first={"legacy"}).topics == {"b"}, "a record on disk replaces the fresh start"
    assert json.loads(path.read_text()) == {"config_topics": ["b"]}


def test_a_damaged_record_is_started_afresh_with_one_warning(tmp_path, caplog):
    path = tmp_path / "q.discovery.json"
    for content in (b"\xff\xfe", b"[1, 2]", b'{"config_topics": [1]}', b"{"):
        path.write_bytes(content)
        caplog.clear()
        assert DiscoveryRecord(path, first={"x"}).topics == {"x"}
        assert [r.getMessage() for r in caplog.records] == [
            f"{path} is not a record of discovery configs; starting a new one (delete the file to silence this)"
        ]


def test_a_record_that_cannot_be_written_is_one_warning_not_a_failure(tmp_path, caplog):
    (tmp_path / "ro").mkdir()
    path = tmp_path / "ro" / "q.discovery.json"
    path.mkdir()  # a folder where the file belongs
    record = DiscoveryRecord(path)
    record.add("t")
    assert record.topics == {"t"}
    assert any("a later device id could not remove these configs" in r.getMessage() for r in caplog.records)


def test_a_record_path_that_is_a_fifo_is_not_waited_on(tmp_path, caplog):
    """Like every file the service reads at start: a FIFO where the record belongs cannot hold it up."""
    import os

    path = tmp_path / "q.discovery.json"
    os.mkfifo(path)
    assert DiscoveryRecord(path, first={"x"}).topics == {"x"}
    assert any("configs published under an earlier device id stay in Home Assistant" in r.getMessage() for r in caplog.records)


def test_the_audio_input_entity_follows_the_microphone():
    """The health event's "listening": False while a microphone is being opened, True while it delivers audio."""
    import threading

    from test_sources import fake_sounddevice

    from edge.service.backoff import BackoffSettings
    from edge.service.sources import MicSource

    module = fake_sounddevice([("USB Mic", 16000, 1)], busy_opens=1, chunks_per_stream=2)
    mic = MicSource("", sounddevice_module=module, backoff=BackoffSettings(initial_s=0.3, jitter=0.0))
    assert not mic.listening
    stop = threading.Event()
    seen = []
    for chunk, _ in mic.chunks(stop):
        seen.append((chunk.size > 0, mic.listening))
        if chunk.size:
            stop.set()
    mic.close()
    assert seen[-1] == (True, True)
    assert (False, False) in seen, "the empty chunks while it waits to retry: not listening"
