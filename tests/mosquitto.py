"""A real mosquitto broker on a loopback port, and a subscriber that records what it receives.

Used by the ``mosquitto_broker`` fixture (tests/conftest.py) and the MQTT tests. The broker can
be stopped and started again on the same port, to make outages.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT_S = 10.0
"""Generous: the machine is shared and mosquitto may start slowly under load."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MosquittoBroker:
    """``mosquitto -c CONF`` with ``listener PORT 127.0.0.1``, anonymous access and persistence off.

    ``persistent`` True keeps sessions and retained messages across stop() and start() (in
    workdir), so a subscriber with a persistent session misses nothing published while it
    was reconnecting after an outage.
    """

    def __init__(self, workdir: Path, port: int | None = None, extra_config: str = "", persistent: bool = False) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config = self.workdir / "mosquitto.conf"
        self.log = self.workdir / "mosquitto.log"
        self.extra_config = extra_config
        self.persistent = persistent
        self._proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> MosquittoBroker:
        if self.running:
            return self
        exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
        if exe is None:
            raise RuntimeError("mosquitto is not installed: apt-get install mosquitto (CI does it in .ci/run)")
        # allow_anonymous unless the test's extra config brings its own rules.
        anonymous = "" if "allow_anonymous" in self.extra_config else "allow_anonymous true\n"
        # As root, mosquitto would switch to the "mosquitto" user, which cannot write in pytest's tmp.
        user = "user root\n" if os.geteuid() == 0 else ""
        persistence = f"persistence true\npersistence_location {self.workdir}/\n" if self.persistent else "persistence false\n"
        self.config.write_text(
            f"listener {self.port} {self.host}\n{user}{anonymous}{persistence}log_dest stderr\nlog_type all\n{self.extra_config}"
        )
        log = open(self.log, "ab")  # noqa: SIM115 (the broker process owns it until stop)
        self._proc = subprocess.Popen([exe, "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        self.starts += 1
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited with status {self._proc.returncode}:\n{self.log.read_text(errors='replace')[-2000:]}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"mosquitto did not accept connections on {self.address} within {START_TIMEOUT_S:.0f} s") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        self._proc = None


@dataclass
class Message:
    topic: str
    payload: bytes
    retain: bool
    qos: int

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8")

    def json(self):
        return json.loads(self.payload)


class Subscriber:
    """A real paho client subscribed to ``topics``; records every message it receives, in order.

    ``persistent`` True asks the broker to keep its session (and queue its QoS 1 messages)
    while it is disconnected; it reconnects by itself after an outage.
    """

    def __init__(
        self, host: str, port: int, topics: tuple[str, ...] = ("#",), client_id: str = "test-subscriber", persistent: bool = False
    ) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[Message] = []
        self._cond = threading.Condition()
        self._topics = topics
        self._client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=not persistent)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._subscribed = threading.Event()
        self._client.on_subscribe = lambda *a: self._subscribed.set()
        self._client.reconnect_delay_set(0.1, 0.5)
        self._client.connect(host, port, keepalive=10)
        self._client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError(f"the test subscriber could not subscribe on {host}:{port}")

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self._subscribed.clear()
        client.subscribe([(t, 1) for t in self._topics])

    def _on_message(self, client, userdata, msg) -> None:
        with self._cond:
            self.messages.append(Message(msg.topic, bytes(msg.payload), bool(msg.retain), msg.qos))
            self._cond.notify_all()

    def on(self, topic: str) -> list[Message]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def wait_for(self, predicate, timeout_s: float = 10.0) -> bool:
        """Wait until ``predicate(messages)`` is true; False when the time is up."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not predicate(self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def wait_for_topic(self, topic: str, count: int = 1, timeout_s: float = 10.0) -> list[Message]:
        self.wait_for(lambda msgs: sum(m.topic == topic for m in msgs) >= count, timeout_s)
        return self.on(topic)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
