"""The history on MQTT and in Home Assistant: the retained daily summary and the sensors of today's shares.

Schema and templates are checked as tests/test_homeassistant.py checks every entity (Home Assistant's
documented schema, its Jinja2 rendering); then the real `run` publishes to a real mosquitto.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest
from mosquitto import Subscriber
from test_history import SOURCE, real_speech, synthetic_minutes, write_db
from test_homeassistant import render, schema_problems

from edge import history, history_query
from edge.service.homeassistant import Capabilities, capabilities, discovery_configs
from edge.settings import MqttSettings, ServiceSettings

ROOT = Path(__file__).resolve().parents[1]
LABELS = SOURCE.labels
WITH_HISTORY = Capabilities(labels=LABELS, alerts=("sad", "angry", "fearful"), history=True)


def test_the_summary_holds_today_so_far_and_yesterday(tmp_path):
    path = tmp_path / "h.sqlite"
    today = date.today()
    write_db(path, synthetic_minutes(today - timedelta(days=3), 4, per_day=40))  # 40 minutes from 18:00 each day
    db = history.connect(path, readonly=True)
    summary = history_query.daily_summary(db, today)
    db.close()
    assert summary["type"] == "summary" and summary["date"] == today.isoformat()
    assert summary["yesterday"]["date"] == (today - timedelta(days=1)).isoformat()
    # synthetic_minutes: day 3 (today) is angry, day 2 (yesterday) sad; 30 s of speech a minute, an alert a day.
    assert summary["today"]["speech_s"] == 40 * 30.0 and summary["today"]["heard_s"] == 40 * 60.0
    assert summary["today"]["shares"]["angry"] == pytest.approx(0.75) and summary["today"]["alerts"] == {"angry": 1}
    assert summary["yesterday"]["shares"]["sad"] == pytest.approx(0.75) and summary["yesterday"]["alerts"] == {"sad": 1}
    db = history.connect(path, readonly=True)
    empty = history_query.daily_summary(db, today + timedelta(days=30))
    db.close()
    assert empty["today"] == {"date": (today + timedelta(days=30)).isoformat(), "heard_s": 0.0, "speech_s": 0.0, "shares": {}, "alerts": {}}


def test_the_sensors_follow_the_documented_schema_and_read_the_summary(tmp_path):
    settings = MqttSettings(device_id="car-1", topic_prefix="ser", discovery_prefix="ha")
    configs = discovery_configs(settings, WITH_HISTORY)
    ours = {t: c for t, c in configs.items() if "/today_" in t or "/speech_today/" in t}
    assert sorted(t.split("/")[3] for t in ours) == ["speech_today", "today_angry", "today_fearful", "today_sad"]
    for topic, config in ours.items():
        assert schema_problems(topic, config, prefix="ha") == []
        assert config["state_topic"] == "ser/car-1/summary"
    assert configs["ha/sensor/car-1/today_angry/config"]["name"] == "Angry today"
    assert not [t for t in discovery_configs(settings, Capabilities(labels=LABELS, alerts=("angry",))) if "today" in t], (
        "no history, no sensors"
    )

    path = tmp_path / "h.sqlite"
    today = date.today()
    write_db(path, synthetic_minutes(today - timedelta(days=1), 2, per_day=40))
    db = history.connect(path, readonly=True)
    payload = json.dumps(history_query.daily_summary(db, today))
    db.close()
    angry = configs["ha/sensor/car-1/today_angry/config"]
    assert render(angry["value_template"], payload) == "75.0"  # today (odd day of the two): three quarters of the speech angry
    assert json.loads(render(angry["json_attributes_template"], payload)) == {
        "yesterday": 0.0,
        "alerts_today": 1,
        "alerts_yesterday": 0,
        "date": today.isoformat(),
    }
    sad = configs["ha/sensor/car-1/today_sad/config"]
    assert render(sad["value_template"], payload) == "0.0"  # no sad speech today: 0, not unknown
    assert json.loads(render(sad["json_attributes_template"], payload))["yesterday"] == 75.0
    speech = configs["ha/sensor/car-1/speech_today/config"]
    assert float(render(speech["value_template"], payload)) == 40 * 30.0


def test_history_sensors_are_offered_when_the_service_keeps_a_history():
    assert capabilities(ServiceSettings(), LABELS).history is False
    kept = ServiceSettings(mqtt=MqttSettings(queue_file="/var/lib/ser-edge/mqtt-queue.jsonl"))
    assert capabilities(kept, LABELS).history is True


def test_the_service_publishes_the_summary_retained_and_the_sensors(data_dir, tiny_model_path, mosquitto_broker, tmp_path):
    audio = real_speech(data_dir, tmp_path)
    state = tmp_path / "state"
    state.mkdir()
    host, port = mosquitto_broker.host, mosquitto_broker.port
    config = tmp_path / "config.toml"
    config.write_text(
        f'[mqtt]\nenabled = true\nhost = "{host}"\nport = {port}\ndevice_id = "hall"\nqueue_file = "{state}/mqtt-queue.jsonl"\n'
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "edge", "run", "--config", str(config), "--source", str(audio), "--model", str(tiny_model_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (state / "history.sqlite").is_file()  # beside the queue file

    # A dashboard that connects later gets the summary and the sensors' configs, retained.
    listener = Subscriber(host, port, topics=("ser-edge/hall/summary", "homeassistant/sensor/hall/+/config"), client_id="dashboard")
    try:
        (message,) = listener.wait_for_topic("ser-edge/hall/summary")
        wanted = {f"homeassistant/sensor/hall/{key}/config" for key in ("today_sad", "today_angry", "today_fearful", "speech_today")}
        listener.wait_for(lambda msgs: wanted <= {m.topic for m in msgs})
        configs = {m.topic: m.json() for m in listener.messages if m.topic.endswith("/config") and m.payload}
    finally:
        listener.close()
    assert message.retain
    summary = message.json()
    db = history.connect(state / "history.sqlite", readonly=True)
    expected = history_query.daily_summary(db, date.fromisoformat(summary["date"]))
    db.close()
    assert {k: v for k, v in summary.items() if k != "wall_time"} == expected  # every minute of the run is in it
    assert summary["today"]["speech_s"] > 0
    for emotion in ("sad", "angry", "fearful"):
        config = configs[f"homeassistant/sensor/hall/today_{emotion}/config"]
        shown = float(render(config["value_template"], message.text))
        assert shown == pytest.approx(round(100 * summary["today"]["shares"].get(emotion, 0), 1))
