"""End to end: `python -m edge run` with the shipped model publishes to a real mosquitto.

- angry speech (real RAVDESS and TESS clips joined) raises an alert that a real subscriber
  receives, with the Home Assistant discovery configs and the availability messages;
- neutral speech raises none;
- an outage: the broker stops while alerts are raised, the service is stopped with SIGTERM
  during the outage and started again, the broker returns, and every alert arrives, in order.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from mosquitto import Subscriber

from edge.audio import read_audio
from edge.resample import resample

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "edge" / "models" / "ser_cnn_int8.tflite"
RATE_HZ = 16000
WAIT_S = 30.0
"""Upper bound for the service to start, classify a file and publish; generous for a shared 2-core machine."""
ALERT_TYPES = ("alert", "alert_end")


def key(event: dict) -> tuple[str, str, str]:
    """What tells one alert event from another: its type, id and wall_time (the daemon stamps it before any sink)."""
    return (event["type"], str(event["id"]), event.get("wall_time", ""))


# Strong-intensity acted anger from a spread of RAVDESS actors (both sexes), then TESS anger;
# neutral the same way. RAVDESS neutral has only normal intensity.
RAVDESS_ACTORS = (2, 5, 11, 14, 17, 20)


def _ravdess(data: Path, emotion: str, intensity: str) -> list[Path]:
    paths = []
    for actor in RAVDESS_ACTORS:
        paths += sorted((data / "ravdess" / f"Actor_{actor:02d}").glob(f"03-01-{emotion}-{intensity}-*-*-{actor:02d}.flac"))[:2]
    return paths


def _tess(data: Path, emotion: str, count: int) -> list[Path]:
    folders = sorted(p for p in (data / "tess").iterdir() if p.is_dir() and p.name.lower().endswith("_" + emotion))
    return [path for folder in folders for path in sorted(folder.glob("*.flac"))[:count]]


def _join(paths: list[Path], seconds: float) -> np.ndarray:
    """Clips resampled to 16 kHz and joined until ``seconds`` of audio."""
    parts, total = [], 0
    for path in paths:
        x, rate = read_audio(path)
        x = resample(x, rate) if rate != RATE_HZ else x
        parts.append(x.astype(np.float32))
        total += x.size
        if total >= seconds * RATE_HZ:
            break
    return np.concatenate(parts)


def angry_speech(data: Path, seconds: float = 24.0) -> np.ndarray:
    return _join(_ravdess(data, "05", "02") + _tess(data, "angry", 6), seconds)


def neutral_speech(data: Path, seconds: float = 24.0) -> np.ndarray:
    return _join(_ravdess(data, "01", "01") + _tess(data, "neutral", 6), seconds)


def write_wav(path: Path, x: np.ndarray) -> Path:
    sf.write(path, x, RATE_HZ, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def model_args() -> list[str]:
    """The shipped model (or SER_E2E_MODEL, for trying the harness with another one)."""
    override = os.environ.get("SER_E2E_MODEL")
    if override:
        return ["--model", override]
    if not SHIPPED.is_file():
        pytest.fail(f"the shipped model {SHIPPED.relative_to(ROOT)} is missing; these tests need it (train and convert it first)")
    return []


class Service:
    """``python -m edge run ...`` as a child process; its stdout events are collected as they come."""

    def __init__(self, args: list[str], log_path: Path) -> None:
        self.events: list[dict] = []
        self._cond = threading.Condition()
        self._log = open(log_path, "a")  # noqa: SIM115 (closed in wait())
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge", "run", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=self._log, text=True
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            with self._cond:
                self.events.append(event)
                self._cond.notify_all()

    def alerts(self) -> list[tuple[str, str]]:
        """key() of every alert and alert_end printed so far, in order."""
        with self._cond:
            return [key(e) for e in self.events if e.get("type") in ALERT_TYPES]

    def wait_for_alerts(self, count: int, timeout_s: float = WAIT_S) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while sum(e.get("type") in ALERT_TYPES for e in self.events) < count:
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    return False
                self._cond.wait(min(left, 0.2))
            return True

    def stop(self) -> int:
        """SIGTERM, as systemd stops it; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait()

    def wait(self, timeout_s: float = WAIT_S) -> int:
        try:
            return self.proc.wait(timeout_s)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._reader.join(5)
            self._log.close()


def received_alerts(sub: Subscriber, topic: str) -> list[tuple[str, str]]:
    """key() in order of first arrival; QoS 1 may deliver twice what an outage interrupted."""
    return list(dict.fromkeys(key(m.json()) for m in sub.on(topic)))


def _log_tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:] if path.exists() else ""


# -- angry and neutral speech ---------------------------------------------------------------------------


def test_angry_speech_publishes_an_alert_with_discovery_and_availability(data_dir, model_args, mosquitto_broker, tmp_path):
    b = mosquitto_broker
    wav = write_wav(tmp_path / "angry.wav", angry_speech(data_dir))
    sub = Subscriber(b.host, b.port)
    log = tmp_path / "service.log"
    try:
        service = Service(["--source", str(wav), "--mqtt", b.address, "--device-id", "test", *model_args], log)
        assert service.wait() == 0, _log_tail(log)
        assert sub.wait_for(lambda msgs: any(m.topic == "ser-edge/test/alert" for m in msgs), 5.0), (
            f"no alert published; the service printed {service.alerts()}\n{_log_tail(log)}"
        )
        alerts = [m.json() for m in sub.on("ser-edge/test/alert")]
        assert alerts[0]["type"] == "alert" and alerts[0]["emotion"] == "angry"
        assert [m.text for m in sub.wait_for_topic("ser-edge/test/availability", 2)] == ["online", "offline"]
        sensor = sub.on("homeassistant/sensor/test/emotion/config")[0].json()
        assert sensor["state_topic"] == "ser-edge/test/state"
        assert sub.on("homeassistant/binary_sensor/test/alert/config")
        assert sub.on("ser-edge/test/state"), "the smoothed state is published"
        assert received_alerts(sub, "ser-edge/test/alert") == service.alerts(), "every printed alert was published, in order"
        # Home Assistant's event entity: a type per default rule, and the alert fired on .../event as it happened.
        event_config = sub.on("homeassistant/event/test/alert_event/config")[0].json()
        assert event_config["event_types"] == ["sad", "sad_end", "angry", "angry_end", "fearful", "fearful_end"]
        events = [m.json() for m in sub.on("ser-edge/test/event")]
        assert [(e["event_type"], e["id"]) for e in events] == [
            (a["emotion"] + ("_end" if a["type"] == "alert_end" else ""), a["id"]) for a in alerts
        ]
    finally:
        sub.close()

    # Retained: a subscriber that comes afterwards still finds the device, now offline.
    late = Subscriber(b.host, b.port, client_id="late")
    try:
        wanted = {"ser-edge/test/availability", "homeassistant/sensor/test/emotion/config", "homeassistant/binary_sensor/test/alert/config"}
        late.wait_for(lambda msgs: wanted <= {m.topic for m in msgs}, 5.0)
        retained = {m.topic: m for m in late.messages if m.retain}
        assert retained["ser-edge/test/availability"].text == "offline"
        assert retained["homeassistant/sensor/test/emotion/config"].json()["unique_id"] == "ser_edge_test_emotion"
        assert "homeassistant/binary_sensor/test/alert/config" in retained
    finally:
        late.close()


def test_neutral_speech_publishes_no_alert(data_dir, model_args, mosquitto_broker, tmp_path):
    b = mosquitto_broker
    wav = write_wav(tmp_path / "neutral.wav", neutral_speech(data_dir))
    sub = Subscriber(b.host, b.port)
    log = tmp_path / "service.log"
    try:
        service = Service(["--source", str(wav), "--mqtt", b.address, "--device-id", "test", *model_args], log)
        assert service.wait() == 0, _log_tail(log)
        assert [m.text for m in sub.wait_for_topic("ser-edge/test/availability", 2)] == ["online", "offline"]
        assert sub.on("homeassistant/sensor/test/emotion/config")
        # "offline" is published after every alert would have been: nothing more can come.
        assert service.alerts() == [], f"neutral speech raised {service.alerts()}"
        assert not sub.on("ser-edge/test/alert")
    finally:
        sub.close()


# -- outage and restart ---------------------------------------------------------------------------------

OUTAGE_CONFIG = """\
# Alerts every few seconds of audio: short hold, release and no cooldown.
[mqtt]
queue_file = "{queue_file}"

[policy]
smoothing_windows = 2

[policy.alerts.angry]
hold_s = 1.0
release_s = 0.5
cooldown_s = 0.0

[policy.alerts.fearful]
enabled = false

[policy.alerts.sad]
enabled = false
"""


@pytest.mark.parametrize("mosquitto_broker", [{"persistent": True}], indirect=True)
def test_alerts_raised_during_an_outage_survive_a_restart_and_arrive_in_order(data_dir, model_args, mosquitto_broker, tmp_path):
    b = mosquitto_broker
    angry, neutral = angry_speech(data_dir, 8.0), neutral_speech(data_dir, 8.0)
    wav = write_wav(tmp_path / "alternating.wav", np.concatenate([angry, neutral]))
    queue_file = tmp_path / "queue.jsonl"
    config = tmp_path / "config.toml"
    config.write_text(OUTAGE_CONFIG.format(queue_file=queue_file))
    args = ["--source", str(wav), "--loop", "--config", str(config), "--mqtt", b.address, "--device-id", "test", *model_args]
    topic = "ser-edge/test/alert"
    # A persistent session, so the subscriber misses nothing while it reconnects after the outage.
    sub = Subscriber(b.host, b.port, topics=(topic,), client_id="e2e-outage", persistent=True)
    log = tmp_path / "service.log"
    try:
        first = Service(args, log)
        assert sub.wait_for(lambda msgs: len(msgs) >= 2, WAIT_S), f"no alerts while the broker was up\n{_log_tail(log)}"

        b.stop()
        raised_before_outage = len(first.alerts())
        assert first.wait_for_alerts(raised_before_outage + 4), f"no alerts during the outage\n{_log_tail(log)}"
        assert first.stop() == 0, _log_tail(log)
        run1 = first.alerts()

        queued = [key(line["event"]) for line in map(json.loads, queue_file.read_text().splitlines())]
        assert len(queued) >= 4, "alerts raised during the outage are in the queue file"
        assert run1[-len(queued) :] == queued, "the queue holds the undelivered tail of what was raised, in order"

        b.start()
        second = Service(args, log)
        try:
            delivered = sub.wait_for(lambda msgs: len({key(m.json()) for m in msgs}) >= len(run1) + 2, WAIT_S)
        finally:
            assert second.stop() == 0, _log_tail(log)
        assert delivered, f"the queued alerts did not arrive\n{_log_tail(log)}"
        got = received_alerts(sub, topic)
        raised = run1 + second.alerts()
        assert got[: len(run1)] == run1, "every alert of the first run arrives, in the order raised"
        assert got == raised[: len(got)], "then those of the second run, in order, with nothing in between"
    finally:
        sub.close()


@pytest.mark.parametrize("mosquitto_broker", [{"persistent": True}], indirect=True)
def test_the_running_service_delivers_its_queue_when_the_broker_returns_and_says_offline_on_sigterm(
    data_dir, model_args, mosquitto_broker, tmp_path
):
    b = mosquitto_broker
    wav = write_wav(tmp_path / "alternating.wav", np.concatenate([angry_speech(data_dir, 8.0), neutral_speech(data_dir, 8.0)]))
    config = tmp_path / "config.toml"
    config.write_text(OUTAGE_CONFIG.format(queue_file=tmp_path / "queue.jsonl"))
    args = ["--source", str(wav), "--loop", "--config", str(config), "--mqtt", b.address, "--device-id", "test", *model_args]
    topic, availability = "ser-edge/test/alert", "ser-edge/test/availability"
    sub = Subscriber(b.host, b.port, topics=(topic, availability), client_id="e2e-return", persistent=True)
    log = tmp_path / "service.log"
    try:
        service = Service(args, log)
        try:
            assert sub.wait_for(lambda msgs: len(received_alerts(sub, topic)) >= 2, WAIT_S), f"no alerts\n{_log_tail(log)}"
            b.stop()
            during = len(service.alerts()) + 4
            assert service.wait_for_alerts(during), f"no alerts during the outage\n{_log_tail(log)}"
            b.start()  # the same process reconnects by itself and sends what it queued
            delivered = sub.wait_for(lambda msgs: len(received_alerts(sub, topic)) >= during, WAIT_S)
        finally:
            assert service.stop() == 0, _log_tail(log)
        assert delivered, f"the alerts queued during the outage did not arrive\n{_log_tail(log)}"
        got, raised = received_alerts(sub, topic), service.alerts()
        assert got == raised[: len(got)], "every alert arrives, in the order raised"
        assert sub.wait_for(lambda msgs: [m.text for m in sub.on(availability)][-1:] == ["offline"], 5.0), (
            f"no 'offline' after SIGTERM: {[m.text for m in sub.on(availability)]}"
        )
    finally:
        sub.close()
