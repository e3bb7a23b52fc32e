"""The persistent alert queue and the MQTT sink, against a real mosquitto on a loopback port."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import wait_until
from mosquitto import MosquittoBroker, Subscriber, free_port

from edge.service.backoff import BackoffSettings
from edge.service.homeassistant import Capabilities, discovery_configs, legacy_config_topics
from edge.service.mqtt import MqttSink
from edge.service.mqtt_client import MqttConfigError, read_password
from edge.service.queue import AlertQueue, QueueFileError
from edge.settings import ConfigError, MqttSettings

ROOT = Path(__file__).resolve().parents[1]
FAST = BackoffSettings(initial_s=0.1, max_s=0.5)
"""Reconnect quickly in tests; the device uses the default (0.5 s growing to 30 s)."""
WAIT_S = 15.0
"""Upper bound for things that happen within a second; generous because the machine is shared."""


def alert(i: int) -> dict:
    return {"type": "alert", "time_s": float(i), "id": i, "emotion": "angry", "score": 0.9, "started_s": float(i)}


def alert_ids(sub: Subscriber, topic: str) -> list[int]:
    """Alert ids in order of first arrival: QoS 1 is at least once, so a message whose
    acknowledgement was cut by the outage may legitimately arrive twice."""
    ids = [m.json()["id"] for m in sub.on(topic)]
    return list(dict.fromkeys(ids))


@pytest.fixture
def sinks():
    """Make sinks that are closed after the test, whatever happens."""
    made: list[MqttSink] = []

    def make(settings: MqttSettings, **kw) -> MqttSink:
        sink = MqttSink(settings, backoff=FAST, **kw)
        made.append(sink)
        return sink

    yield make
    for sink in made:
        sink.close()


# -- the queue ------------------------------------------------------------------------------------


def test_queue_keeps_order_across_restarts(tmp_path):
    path = tmp_path / "alerts.jsonl"
    q = AlertQueue(path, max_items=10)
    seqs = [q.append(alert(i)) for i in range(5)]
    assert q.remove(seqs[1])
    assert not q.remove(seqs[1])

    again = AlertQueue(path, max_items=10)
    assert [e["id"] for _, e in again.items()] == [0, 2, 3, 4]
    assert again.append(alert(5)) > seqs[-1], "sequence numbers keep growing after a restart"
    assert [e["id"] for _, e in AlertQueue(path).items()] == [0, 2, 3, 4, 5]


def test_queue_drops_the_oldest_when_full(tmp_path, caplog):
    q = AlertQueue(tmp_path / "alerts.jsonl", max_items=3)
    for i in range(5):
        q.append(alert(i))
    assert [e["id"] for _, e in q.items()] == [2, 3, 4]
    assert q.dropped == 2
    assert sum("dropped the oldest" in r.getMessage() for r in caplog.records) == 2
    assert len(AlertQueue(tmp_path / "alerts.jsonl", max_items=3)) == 3


def test_queue_file_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    path = tmp_path / "alerts.jsonl"
    q = AlertQueue(path)
    q.append(alert(0))
    before = path.read_bytes()
    assert [json.loads(line)["event"]["id"] for line in before.splitlines()] == [0]

    def crash(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", crash)
    q.append(alert(1))  # logged, not raised: the alert is still in memory
    assert path.read_bytes() == before, "a failed write must leave the previous file intact"
    assert [e["id"] for _, e in q.items()] == [0, 1]
    monkeypatch.undo()
    q.flush()
    assert [e["id"] for _, e in AlertQueue(path).items()] == [0, 1]
    assert not list(tmp_path.glob("*.tmp")), "the temporary file is renamed into place"


def test_queue_skips_unreadable_lines(tmp_path, caplog):
    path = tmp_path / "alerts.jsonl"
    good = [json.dumps({"seq": i + 1, "event": alert(i)}) for i in range(3)]
    path.write_text(good[0] + "\n{not json\n" + good[1] + "\n" + '{"seq": 9}\n' + good[2][:20] + "\n")
    q = AlertQueue(path)
    assert [e["id"] for _, e in q.items()] == [0, 1]
    assert any("held 3 unreadable line(s)" in r.getMessage() for r in caplog.records)
    assert [e["id"] for _, e in AlertQueue(path).items()] == [0, 1], "the readable entries are written back"


def test_queue_removals_can_be_saved_in_one_write(tmp_path):
    path = tmp_path / "alerts.jsonl"
    q = AlertQueue(path)
    a, b = q.append(alert(0)), q.append(alert(1))
    q.remove(a, save=False)
    assert len(AlertQueue(path)) == 2, "not written yet"
    q.remove(b)
    assert len(AlertQueue(path)) == 0


def test_queue_in_memory_and_bad_paths(tmp_path):
    q = AlertQueue(None, max_items=2)
    q.append(alert(0))
    assert len(q) == 1
    with pytest.raises(QueueFileError, match="is a folder"):
        AlertQueue(tmp_path)
    with pytest.raises(ValueError, match="at least one"):
        AlertQueue(None, max_items=0)


# -- settings ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"port": 0}, "mqtt.port = 0 is not allowed: use a port number from 1 to 65535"),
        ({"device_id": "kitchen pi"}, 'mqtt.device_id = "kitchen pi" is not allowed'),
        ({"topic_prefix": "home/#"}, 'mqtt.topic_prefix = "home/#" is not allowed: use a topic without'),
        ({"qos": 3}, "mqtt.qos = 3 is not allowed: use 0, 1 or 2"),
        ({"password_file": "/x"}, "a password needs a user name"),
    ],
)
def test_settings_refuse_what_cannot_work(fields, message):
    with pytest.raises(ConfigError, match=message) as info:
        MqttSettings(host="h", **({"device_id": "d"} | fields))
    assert isinstance(info.value, ValueError), "the service's config turns ValueError into exit status 2"


def test_default_device_id_is_a_valid_topic_level():
    s = MqttSettings(host="h")
    assert s.device_id and "/" not in s.device_id


def test_password_file(tmp_path):
    f = tmp_path / "pw"
    f.write_text("s3cret word\n")
    assert read_password(f) == "s3cret word"
    with pytest.raises(MqttConfigError, match="does not exist"):
        read_password(tmp_path / "missing")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(MqttConfigError, match="is empty"):
        read_password(tmp_path / "empty")
    with pytest.raises(MqttConfigError, match="password file"):
        MqttSink(MqttSettings(host="127.0.0.1", device_id="d", username="u", password_file=str(tmp_path / "missing")))


def test_missing_ca_file_is_a_configuration_error(tmp_path):
    with pytest.raises(MqttConfigError, match="CA file"):
        MqttSink(MqttSettings(host="127.0.0.1", device_id="d", tls=True, ca_file=str(tmp_path / "ca.pem")))


# -- the sink against a real broker -------------------------------------------------------------------


def test_sink_publishes_availability_discovery_state_and_alerts(mosquitto_broker, sinks):
    b = mosquitto_broker
    sub = Subscriber(b.host, b.port)
    try:
        sink = sinks(MqttSettings(host=b.host, port=b.port, device_id="dev"))
        assert wait_until(lambda: sink.status == "connected")
        sink.handle({"type": "window", "time_s": 1.0, "label": "angry"})
        sink.handle({"type": "state", "time_s": 1.0, "state": "angry", "probs": {"angry": 0.8}})
        sink.handle(alert(1))
        sink.handle({"type": "alert_end", "time_s": 3.0, "id": 1, "emotion": "angry", "ended_s": 3.0, "duration_s": 2.0})
        sink.handle({"type": "health", "time_s": 3.0, "queue_length": 0})
        sub.wait_for_topic("ser-edge/dev/health")
        assert [m.json()["type"] for m in sub.on("ser-edge/dev/alert")] == ["alert", "alert_end"]
        assert [m.json()["state"] for m in sub.on("ser-edge/dev/alert_active")] == ["OFF", "ON", "OFF"]
        assert sub.on("ser-edge/dev/alert_active")[1].json()["alerts"] == {"1": "angry"}
        assert sub.on("ser-edge/dev/availability")[0].text == "online"
        assert sub.on("ser-edge/dev/state")[-1].json()["state"] == "angry"
        assert json.loads(sub.on("homeassistant/sensor/dev/emotion/config")[0].payload)["state_topic"] == "ser-edge/dev/state"
        assert sub.on("homeassistant/binary_sensor/dev/alert/config")
        assert not sub.on("ser-edge/dev/window"), "windows are not published unless asked"
        assert wait_until(lambda: sink.queue_length == 0), "acknowledged alerts leave the queue"
    finally:
        sub.close()

    # A subscriber that comes later sees the retained messages, and no stale alert.
    late = Subscriber(b.host, b.port, client_id="late")
    try:
        wanted = {"ser-edge/dev/availability", "ser-edge/dev/state", "ser-edge/dev/alert_active", "homeassistant/sensor/dev/emotion/config"}
        late.wait_for(lambda msgs: wanted <= {m.topic for m in msgs})
        retained = {m.topic: m for m in late.messages if m.retain}
        assert retained["ser-edge/dev/availability"].text == "online"
        assert retained["ser-edge/dev/state"].json()["state"] == "angry"
        assert "homeassistant/sensor/dev/emotion/config" in retained
        assert "homeassistant/binary_sensor/dev/alert/config" in retained
        assert not late.on("ser-edge/dev/alert"), "alerts are not retained"
        assert retained["ser-edge/dev/alert_active"].json() == {"state": "OFF", "alerts": {}}
        sink.close()
        offline = late.wait_for_topic("ser-edge/dev/availability")
        assert offline[-1].text == "offline"
        assert sink.status == "closed"
    finally:
        late.close()


def test_closing_right_after_start_still_delivers(mosquitto_broker):
    """A short file run may end before the first connection is made: close() lets it finish and deliver."""
    b = mosquitto_broker
    sub = Subscriber(b.host, b.port)
    try:
        sink = MqttSink(MqttSettings(host=b.host, port=b.port, device_id="dev"), backoff=FAST)
        sink.handle(alert(1))
        sink.close()
        assert sub.wait_for_topic("ser-edge/dev/alert")[0].json()["id"] == 1
        assert [m.text for m in sub.wait_for_topic("ser-edge/dev/availability", 2)] == ["online", "offline"]
        assert sink.queue_length == 0
    finally:
        sub.close()


def test_windows_are_published_when_asked(mosquitto_broker, sinks):
    b = mosquitto_broker
    sub = Subscriber(b.host, b.port)
    try:
        sink = sinks(MqttSettings(host=b.host, port=b.port, device_id="dev", publish_windows=True, discovery=False))
        assert wait_until(lambda: sink.status == "connected")
        sink.handle({"type": "window", "time_s": 1.0, "label": "sad"})
        assert sub.wait_for_topic("ser-edge/dev/window")[0].json()["label"] == "sad"
        assert not sub.on("homeassistant/sensor/dev/emotion/config"), "discovery off"
    finally:
        sub.close()


def test_alerts_raised_before_the_broker_exists_are_on_disk_and_leave_once_it_starts(tmp_path, sinks):
    # Their order on arrival is checked by the outage tests, whose subscriber is there first.
    broker = MosquittoBroker(tmp_path / "broker")  # not started yet
    queue_file = tmp_path / "alerts.jsonl"
    sink = sinks(MqttSettings(host=broker.host, port=broker.port, device_id="dev", queue_file=str(queue_file)))
    for i in range(4):
        sink.handle(alert(i))
    assert sink.status == "disconnected" and sink.queue_length == 4
    assert [json.loads(line)["event"]["id"] for line in queue_file.read_text().splitlines()] == [alert(i)["id"] for i in range(4)]
    broker.start()
    try:
        assert wait_until(lambda: sink.queue_length == 0)
        assert wait_until(lambda: queue_file.read_text() == "")
    finally:
        broker.stop()


@pytest.mark.parametrize("mosquitto_broker", [{"persistent": True}], indirect=True)
def test_outage_every_alert_arrives_in_order(mosquitto_broker, sinks):
    b = mosquitto_broker
    # A persistent session: the broker keeps what arrives while the subscriber itself reconnects.
    sub = Subscriber(b.host, b.port, topics=("ser-edge/dev/alert",), client_id="outage-sub", persistent=True)
    try:
        sink = sinks(MqttSettings(host=b.host, port=b.port, device_id="dev"))
        assert wait_until(lambda: sink.status == "connected")
        for i in range(3):
            sink.handle(alert(i))
        sub.wait_for_topic("ser-edge/dev/alert", 3)
        b.stop()
        assert wait_until(lambda: sink.status == "disconnected")
        for i in range(3, 9):
            sink.handle(alert(i))
        assert sink.queue_length == 6
        b.start()
        sub.wait_for(lambda msgs: len({m.json()["id"] for m in msgs}) >= 9, WAIT_S)
        assert alert_ids(sub, "ser-edge/dev/alert") == list(range(9))
        assert wait_until(lambda: sink.queue_length == 0)
    finally:
        sub.close()


@pytest.mark.parametrize("mosquitto_broker", [{"persistent": True}], indirect=True)
def test_queued_alerts_survive_a_restart_of_the_sink(mosquitto_broker, sinks, tmp_path):
    b = mosquitto_broker
    queue_file = tmp_path / "alerts.jsonl"
    settings = MqttSettings(host=b.host, port=b.port, device_id="dev", queue_file=str(queue_file))
    sub = Subscriber(b.host, b.port, topics=("ser-edge/dev/alert",), client_id="restart-sub", persistent=True)
    try:
        b.stop()
        first = sinks(settings)
        for i in range(5):
            first.handle(alert(i))
        first.close()
        assert [json.loads(line)["event"]["id"] for line in queue_file.read_text().splitlines()] == list(range(5))

        b.start()
        second = sinks(settings)
        second.handle(alert(5))
        sub.wait_for(lambda msgs: len({m.json()["id"] for m in msgs}) >= 6, WAIT_S)
        assert alert_ids(sub, "ser-edge/dev/alert") == list(range(6)), "the backlog first, then the new alert"
        assert wait_until(lambda: second.queue_length == 0 and queue_file.read_text() == "")
    finally:
        sub.close()


@pytest.mark.parametrize("mosquitto_broker", [{"persistent": True}], indirect=True)
def test_a_full_queue_loses_only_the_oldest(mosquitto_broker, sinks):
    b = mosquitto_broker
    sub = Subscriber(b.host, b.port, topics=("ser-edge/dev/alert",), client_id="full-sub", persistent=True)
    try:
        b.stop()
        sink = sinks(MqttSettings(host=b.host, port=b.port, device_id="dev", queue_max=3))
        for i in range(5):
            sink.handle(alert(i))
        b.start()
        sub.wait_for(lambda msgs: len({m.json()["id"] for m in msgs}) >= 3, WAIT_S)
        assert wait_until(lambda: sink.queue_length == 0)
        assert alert_ids(sub, "ser-edge/dev/alert") == [2, 3, 4]
    finally:
        sub.close()


def test_close_is_prompt_with_the_broker_down(tmp_path):
    sink = MqttSink(MqttSettings(host="127.0.0.1", port=free_port(), device_id="dev", queue_file=str(tmp_path / "q.jsonl")), backoff=FAST)
    sink.handle(alert(0))
    sink.close()
    assert sink.status == "closed"
    assert not sink._connection._thread.is_alive(), "the connection thread ends on close"
    assert len(AlertQueue(tmp_path / "q.jsonl")) == 1


def test_last_will_marks_a_killed_device_offline(mosquitto_broker):
    b = mosquitto_broker
    sub = Subscriber(b.host, b.port, topics=("ser-edge/dev/availability",))
    code = textwrap.dedent(f"""
        import sys, time
        from edge.service.mqtt import MqttSink
        from edge.settings import MqttSettings
        sink = MqttSink(MqttSettings(host="{b.host}", port={b.port}, device_id="dev", discovery=False))
        while sink.status != "connected":
            time.sleep(0.02)
        print("connected", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout.readline().strip() == "connected"
        sub.wait_for_topic("ser-edge/dev/availability", 1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        got = sub.wait_for_topic("ser-edge/dev/availability", 2)
        assert [m.text for m in got] == ["online", "offline"], "the broker publishes the will when the device vanishes"
    finally:
        proc.kill()
        proc.wait()
        sub.close()


def test_username_and_password_from_a_file(tmp_path, sinks):
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), "pi", "s3cret"], check=True, capture_output=True)
    passwd.chmod(0o644)
    broker = MosquittoBroker(tmp_path / "broker", extra_config=f"allow_anonymous false\npassword_file {passwd}\n").start()
    (tmp_path / "good").write_text("s3cret\n")
    (tmp_path / "bad").write_text("guess\n")
    try:
        good = sinks(
            MqttSettings(host=broker.host, port=broker.port, device_id="good", username="pi", password_file=str(tmp_path / "good"))
        )
        bad = sinks(MqttSettings(host=broker.host, port=broker.port, device_id="bad", username="pi", password_file=str(tmp_path / "bad")))
        assert wait_until(lambda: good.status == "connected")
        good.handle(alert(1))
        bad.handle(alert(2))
        assert wait_until(lambda: good.queue_length == 0)
        # The refusal is retried with backoff; the alert waits in the queue.
        assert wait_until(lambda: "refused" in broker.log.read_text() or "not authorised" in broker.log.read_text().lower())
        assert bad.status == "disconnected" and bad.queue_length == 1
    finally:
        broker.stop()


def _self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    key.chmod(0o644)
    return key, cert


def test_tls_with_a_ca_file(tmp_path, sinks):
    key, cert = _self_signed_certificate(tmp_path)
    tls_port = free_port()
    # A plain listener for the test subscriber and a TLS one for the sink.
    broker = MosquittoBroker(tmp_path / "broker", extra_config=f"listener {tls_port} 127.0.0.1\ncertfile {cert}\nkeyfile {key}\n").start()
    try:
        assert wait_until(lambda: f"port {tls_port}" in broker.log.read_text())
        sub = Subscriber(broker.host, broker.port, topics=("ser-edge/tls/alert",))
        try:
            sink = sinks(MqttSettings(host="127.0.0.1", port=tls_port, device_id="tls", tls=True, ca_file=str(cert)))
            sink.handle(alert(7))
            assert sub.wait_for_topic("ser-edge/tls/alert")[0].json()["id"] == 7
            # Without the CA the broker's certificate cannot be verified: no connection.
            untrusting = sinks(MqttSettings(host="127.0.0.1", port=tls_port, device_id="tls2", tls=True))
            untrusting.handle(alert(8))
            time.sleep(1.0)
            assert untrusting.status == "disconnected" and untrusting.queue_length == 1
            assert [m.json()["id"] for m in sub.on("ser-edge/tls/alert")] == [7]
        finally:
            sub.close()
    finally:
        broker.stop()


def test_paho_is_needed_only_when_mqtt_is_on(monkeypatch):
    out = subprocess.run(
        [sys.executable, "-c", "import sys, edge.service.mqtt, edge.service.queue; print('paho' in ' '.join(sys.modules))"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "False", "importing the sink module must not import paho"
    monkeypatch.setitem(sys.modules, "paho.mqtt.client", None)  # as if it were not installed
    with pytest.raises(MqttConfigError, match="pip install"):
        MqttSink(MqttSettings(host="127.0.0.1", device_id="d"))


def test_a_sink_built_during_an_alert_keeps_alert_active_on_without_a_second_alert(mosquitto_broker, sinks):
    """After a reload the new sink is told the alerts still on: alert_active stays ON, nothing is queued or re-sent."""
    b = mosquitto_broker
    sub = Subscriber(b.host, b.port)
    try:
        sink = sinks(MqttSettings(host=b.host, port=b.port, device_id="dev", discovery=False))
        sink.resume_alerts({"r-1": "angry"})  # as the daemon does right after building it, usually before it connects
        assert wait_until(lambda: sink.status == "connected")
        assert wait_until(lambda: sub.on("ser-edge/dev/alert_active"))
        time.sleep(0.3)
        assert [m.json() for m in sub.on("ser-edge/dev/alert_active")][-1] == {"state": "ON", "alerts": {"r-1": "angry"}}
        assert sink.queue_length == 0 and not sub.on("ser-edge/dev/alert")
        sink.handle({"type": "alert_end", "time_s": 3.0, "id": "r-1", "emotion": "angry", "ended_s": 3.0, "duration_s": 2.0})
        assert wait_until(lambda: sub.on("ser-edge/dev/alert_active")[-1].json()["state"] == "OFF")
    finally:
        sub.close()


def test_an_alert_leaves_the_queue_only_when_acknowledged_even_after_mids_wrap(mosquitto_broker, sinks):
    """paho numbers every publish, QoS 0 health included, with a 16-bit mid that wraps after 65,535."""
    b = mosquitto_broker
    sink = sinks(MqttSettings(host=b.host, port=b.port, device_id="dev", discovery=False))
    assert wait_until(lambda: sink.status == "connected")
    for i in range(5):
        sink.handle({"type": "health", "time_s": float(i), "queue_length": 0})
    assert wait_until(lambda: not sink._inflight)
    health_mids = sorted(sink._client._last_mid - k for k in range(5))
    sink._client._last_mid = health_mids[0] - 1  # as if 65,535 messages later: the alert gets a health message's mid
    b._proc.send_signal(signal.SIGSTOP)  # the broker hears but cannot acknowledge
    try:
        sink.handle(alert(7))
        time.sleep(0.3)
        assert sink.queue_length == 1, "an alert the broker never acknowledged left the queue"
    finally:
        b._proc.send_signal(signal.SIGCONT)
    assert wait_until(lambda: sink.queue_length == 0)


def test_sessions_the_broker_ends_at_once_are_retried_with_backoff_not_in_a_storm(mosquitto_broker, caplog):
    """Two devices with one client id (two Pis left named raspberrypi) make the broker drop each in turn."""
    b = mosquitto_broker
    settings = MqttSettings(host=b.host, port=b.port, device_id="raspberrypi", discovery=False)
    with caplog.at_level("INFO", logger="edge.service"):  # the sink and its connection (edge.service.mqtt_connection)
        first, second = MqttSink(settings, backoff=FAST), MqttSink(settings, backoff=FAST)
        try:
            time.sleep(3.0)
        finally:
            first.close()
            second.close()
    connects = sum("MQTT connected" in r.getMessage() for r in caplog.records)
    # Backoff of 0.1 s growing to 0.5 s: a handful each in 3 s (it was hundreds a second).
    assert connects <= 30, connects
    assert any("another client using ser-edge-raspberrypi" in r.getMessage() for r in caplog.records)


def test_a_broker_that_died_is_not_taken_for_another_client_using_the_id(mosquitto_broker, caplog):
    b = mosquitto_broker
    with caplog.at_level("INFO", logger="edge.service"):  # the sink and its connection (edge.service.mqtt_connection)
        sink = MqttSink(MqttSettings(host=b.host, port=b.port, device_id="car1", discovery=False), backoff=FAST)
        try:
            assert wait_until(lambda: sink.status == "connected")
            b.stop()  # soon after connecting: a session that ends early, as another client with our id would end it
            assert wait_until(lambda: sink.status == "disconnected")
            b.start()
            assert wait_until(lambda: sink.status == "connected")
        finally:
            sink.close()
    messages = [r.getMessage() for r in caplog.records]
    assert any("MQTT connection to" in m and "lost" in m for m in messages)
    assert not any("another client" in m for m in messages), messages


# -- Home Assistant discovery on a real broker: configs appear, change and vanish ---------------------------

LABELS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
DRIVER = Capabilities(labels=LABELS, alerts=("sad", "angry", "fearful"))


def retained_configs(b, device_id: str, prefix: str = "homeassistant") -> dict[str, dict]:
    """The configs the broker holds retained for ``device_id`` now (either layout).

    A fresh subscriber gets them right after subscribing; a marker published once it has subscribed
    arrives after them, so no wait on the clock decides what is there.
    """
    from paho.mqtt import publish

    sub = Subscriber(b.host, b.port, topics=(f"{prefix}/#", "test/marker"), client_id=f"retained-{device_id}")
    try:
        publish.single("test/marker", "x", qos=1, hostname=b.host, port=b.port)
        assert sub.wait_for_topic("test/marker"), "the marker did not come back"
        return {
            m.topic: m.json()
            for m in sub.messages
            if m.retain and m.payload and (f"/{device_id}/" in m.topic or f"/{device_id}_" in m.topic)
        }
    finally:
        sub.close()


def removed(sub: Subscriber, topics) -> bool:
    """Wait until ``sub`` has seen an empty retained payload (a removal) on every one of ``topics``."""
    return sub.wait_for(lambda msgs: set(topics) <= {m.topic for m in msgs if not m.payload}, WAIT_S)


def test_discovery_configs_appear_change_with_the_rules_and_vanish_when_discovery_is_off(mosquitto_broker, sinks):
    from paho.mqtt import publish

    b = mosquitto_broker
    settings = MqttSettings(host=b.host, port=b.port, device_id="car1", support_url="https://example.org/car1")
    watcher = Subscriber(b.host, b.port, topics=("homeassistant/#",), client_id="watcher")
    try:
        sink = sinks(settings, capabilities=DRIVER)
        assert wait_until(lambda: sink.status == "connected")
        assert retained_configs(b, "car1") == discovery_configs(settings, DRIVER), "every config, retained, as built"

        # A reload removes the rule for sad: its binary sensor goes, the event entity loses sad and sad_end.
        fewer = Capabilities(labels=LABELS, alerts=("angry", "fearful"))
        sink.offer(fewer)
        assert removed(watcher, ["homeassistant/binary_sensor/car1/alert_sad/config"])
        now = retained_configs(b, "car1")
        assert now == discovery_configs(settings, fewer)
        assert now["homeassistant/event/car1/alert_event/config"]["event_types"] == ["angry", "angry_end", "fearful", "fearful_end"]
        sink.close()

        # Another integration that happens to use our device id as its node id: not ours, never removed.
        foreign = {"homeassistant/sensor/car1/speed/config": {"name": "Speed", "unique_id": "obd_car1_speed", "state_topic": "obd/speed"}}
        for topic, config in foreign.items():
            publish.single(topic, json.dumps(config), qos=1, retain=True, hostname=b.host, port=b.port)

        # A later run with discovery off (and no record: no queue file) finds ours on the broker and removes every one.
        off = sinks(MqttSettings(host=b.host, port=b.port, device_id="car1", discovery=False), capabilities=fewer)
        assert wait_until(lambda: off.status == "connected")
        assert removed(watcher, discovery_configs(settings, fewer))
        assert retained_configs(b, "car1") == foreign
        assert off.status == "connected" and off._record.topics <= legacy_config_topics(off.settings)
    finally:
        watcher.close()


def test_a_new_device_id_removes_the_old_ones_configs_after_a_restart_and_leaves_other_devices_alone(mosquitto_broker, sinks, tmp_path):
    b = mosquitto_broker
    queue_file = str(tmp_path / "mqtt-queue.jsonl")
    record = tmp_path / "mqtt-queue.discovery.json"
    other = sinks(MqttSettings(host=b.host, port=b.port, device_id="car3"), capabilities=DRIVER)  # another device, its own state folder
    first = sinks(MqttSettings(host=b.host, port=b.port, device_id="car1", queue_file=queue_file), capabilities=DRIVER)
    assert wait_until(lambda: first.status == "connected" and other.status == "connected")
    old = discovery_configs(first.settings, DRIVER)
    assert retained_configs(b, "car1") == old
    assert wait_until(lambda: set(json.loads(record.read_text())["config_topics"]) == set(old)), "recorded beside the queue"
    first.close()

    watcher = Subscriber(b.host, b.port, topics=("homeassistant/#",), client_id="watcher")
    try:
        second = sinks(MqttSettings(host=b.host, port=b.port, device_id="car2", queue_file=queue_file), capabilities=DRIVER)
        assert removed(watcher, old)
        assert retained_configs(b, "car1") == {}
        assert retained_configs(b, "car2") == discovery_configs(second.settings, DRIVER)
        assert retained_configs(b, "car3") == discovery_configs(other.settings, DRIVER), "another device's configs stay"
        new = set(discovery_configs(second.settings, DRIVER))
        assert wait_until(lambda: set(json.loads(record.read_text())["config_topics"]) == new), (
            "removals leave the record once acknowledged"
        )
    finally:
        watcher.close()


def test_a_new_device_id_on_reload_removes_the_old_ones_configs_without_a_queue_file(mosquitto_broker, sinks):
    b = mosquitto_broker
    first = sinks(MqttSettings(host=b.host, port=b.port, device_id="car1"), capabilities=DRIVER)
    assert wait_until(lambda: first.status == "connected")
    old = discovery_configs(first.settings, DRIVER)
    assert retained_configs(b, "car1") == old
    watcher = Subscriber(b.host, b.port, topics=("homeassistant/#",), client_id="watcher")
    try:
        second = MqttSink(MqttSettings(host=b.host, port=b.port, device_id="car2"), backoff=FAST, start=False, capabilities=DRIVER)
        first.close()
        second.start(replacing=first)  # as a reload does: the record in memory goes to the new sink
        try:
            assert removed(watcher, old)
            assert retained_configs(b, "car1") == {}
            assert retained_configs(b, "car2") == discovery_configs(second.settings, DRIVER)
        finally:
            second.close()
    finally:
        watcher.close()


def test_the_configs_of_ser_edge_0_1_are_removed_before_the_new_ones_arrive(mosquitto_broker, sinks):
    """0.1 published {prefix}/sensor/{id}_emotion/config with the unique_id the new layout keeps: it must go first."""
    from paho.mqtt import publish

    b = mosquitto_broker
    settings = MqttSettings(host=b.host, port=b.port, device_id="car1")
    for topic in sorted(legacy_config_topics(settings)):
        publish.single(topic, json.dumps({"name": "old", "state_topic": "x"}), qos=1, retain=True, hostname=b.host, port=b.port)
    assert set(retained_configs(b, "car1")) == legacy_config_topics(settings)
    watcher = Subscriber(b.host, b.port, topics=("homeassistant/#",), client_id="watcher")
    try:
        sink = sinks(settings, capabilities=DRIVER)
        assert removed(watcher, legacy_config_topics(settings))
        emotion = "homeassistant/sensor/car1/emotion/config"
        assert watcher.wait_for(lambda msgs: emotion in {m.topic for m in msgs})
        order = [m.topic for m in watcher.messages if not m.retain]
        assert order.index("homeassistant/sensor/car1_emotion/config") < order.index(emotion), "the old unique_id leaves first"
        assert retained_configs(b, "car1") == discovery_configs(settings, DRIVER)
        assert wait_until(lambda: sink._record.topics == set(discovery_configs(settings, DRIVER)))
    finally:
        watcher.close()


def test_alerts_reach_the_event_topic_as_home_assistant_reads_them(mosquitto_broker, sinks):
    b = mosquitto_broker
    sub = Subscriber(b.host, b.port, topics=("ser-edge/car1/event",))
    try:
        sink = sinks(MqttSettings(host=b.host, port=b.port, device_id="car1"), capabilities=DRIVER)
        assert wait_until(lambda: sink.status == "connected")
        sink.handle(alert(1))
        sink.handle(
            {"type": "alert_end", "time_s": 3.0, "id": 1, "emotion": "angry", "ended_s": 3.0, "duration_s": 2.0, "reason": "released"}
        )
        events = sub.wait_for_topic("ser-edge/car1/event", 2)
        assert [m.json()["event_type"] for m in events] == ["angry", "angry_end"]
        assert events[0].json() == {"event_type": "angry", **{k: v for k, v in alert(1).items() if k != "type"}}
        assert events[1].json()["duration_s"] == 2.0 and events[1].json()["reason"] == "released"
        assert not any(m.retain for m in events), "events are not retained (Home Assistant ignores replayed ones anyway)"
    finally:
        sub.close()


@pytest.mark.parametrize("mosquitto_broker", [{"persistent": True}], indirect=True)
def test_after_an_outage_only_alerts_still_active_fire_the_event(mosquitto_broker, sinks):
    b = mosquitto_broker
    sub = Subscriber(b.host, b.port, topics=("ser-edge/car1/event", "ser-edge/car1/alert"), client_id="event-sub", persistent=True)
    try:
        sink = sinks(MqttSettings(host=b.host, port=b.port, device_id="car1"), capabilities=DRIVER)
        assert wait_until(lambda: sink.status == "connected")
        b.stop()
        assert wait_until(lambda: sink.status == "disconnected")
        sink.handle(alert(1))  # begins and ends while the broker is away: only the record (…/alert) hears of it
        sink.handle({"type": "alert_end", "time_s": 2.0, "id": 1, "emotion": "angry", "ended_s": 2.0, "duration_s": 1.0})
        sink.handle({**alert(2), "emotion": "fearful"})  # still on when the broker returns
        b.start()
        assert sub.wait_for(lambda msgs: len({m.json()["id"] for m in msgs if m.topic.endswith("/alert")}) == 2, WAIT_S)
        assert wait_until(lambda: sink.queue_length == 0)
        sink.handle(alert(3))  # a live one after the backlog: a sync point for what the backlog published
        events = sub.wait_for(lambda msgs: any(m.topic.endswith("/event") and m.json()["id"] == 3 for m in msgs), WAIT_S)
        assert events
        fired = [(m.json()["event_type"], m.json()["id"]) for m in sub.on("ser-edge/car1/event")]
        assert list(dict.fromkeys(fired)) == [("fearful", 2), ("angry", 3)]
    finally:
        sub.close()


def test_a_reload_that_removes_a_rule_removes_its_entity_and_keeps_the_sink(mosquitto_broker, tiny_model_path, data_dir, tmp_path):
    """The daemon's own reload (SIGHUP) path: the running MQTT sink is kept and told the new rules."""
    from edge.service.config import load_settings
    from edge.service.daemon import build

    b = mosquitto_broker
    path = tmp_path / "config.toml"

    def write(rules: str) -> None:
        path.write_text(
            f'[audio]\nsource = "{data_dir / "ravdess/Actor_01/03-01-05-02-01-01-01.flac"}"\n[model]\npath = "{tiny_model_path}"\n'
            f'[output]\nenabled = false\n[mqtt]\nenabled = true\nhost = "{b.host}"\nport = {b.port}\ndevice_id = "car1"\n{rules}'
        )

    write("")  # the default rules: sad, angry, fearful
    daemon = build(load_settings(path), reload=lambda: load_settings(path))
    watcher = Subscriber(b.host, b.port, topics=("homeassistant/#",), client_id="watcher")
    try:
        (sink,) = [s for s in daemon.outputs.sinks if s.name == "mqtt"]
        assert wait_until(lambda: sink.status == "connected")
        assert "homeassistant/binary_sensor/car1/alert_sad/config" in retained_configs(b, "car1")
        write("[policy.alerts.sad]\nenabled = false\n")
        daemon.request_reload()
        daemon._tick()
        assert [s for s in daemon.outputs.sinks if s.name == "mqtt"] == [sink], "[mqtt] did not change: the sink is kept"
        assert removed(watcher, ["homeassistant/binary_sensor/car1/alert_sad/config"])
        event = retained_configs(b, "car1")["homeassistant/event/car1/alert_event/config"]
        assert event["event_types"] == ["angry", "angry_end", "fearful", "fearful_end"]
    finally:
        daemon.outputs.close()
        watcher.close()
