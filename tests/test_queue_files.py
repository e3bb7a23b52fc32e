"""The alert queue's file: never anything but a regular file, never waited on, never written unused, and a damaged one set aside.

Paths that are not regular files are made in a temporary folder (a FIFO, a socket, a symlink to a
character device, a character device node when the test runs as root); /dev/null itself is never used.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from edge.service.config import ConfigError, settings_from_dict
from edge.service.queue import AlertQueue, QueueFileError

ROOT = Path(__file__).resolve().parents[1]
DEADLINE_S = 20.0  # generous on a loaded machine; a start-up step that blocks on a file never ends at all


def alert(i: int) -> dict:
    return {"type": "alert", "id": f"a-{i}", "emotion": "angry", "score": 0.7}


def run_service(config: Path, model: Path, data_dir: Path) -> subprocess.CompletedProcess:
    """`python -m edge run` with this config on one RAVDESS clip, to its end."""
    clip = data_dir / "ravdess/Actor_01/03-01-05-02-01-01-01.flac"
    command = [sys.executable, "-m", "edge", "run", "--config", str(config), "--source", str(clip), "--model", str(model)]
    return subprocess.run(command, capture_output=True, text=True, timeout=DEADLINE_S * 3, cwd=ROOT)


def make(kind: str, folder: Path) -> Path:
    """A path of ``kind`` in ``folder`` that is not a regular file."""
    path = folder / f"queue-{kind}.jsonl"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(path))
        s.close()  # the socket file stays
    elif kind == "symlink-to-char-device":
        path.symlink_to("/dev/null")  # only the link in tmp is ever at risk, never /dev/null
    elif kind == "symlink-to-fifo":
        os.mkfifo(folder / "target-fifo")
        path.symlink_to(folder / "target-fifo")
    elif kind == "char-device":
        if os.geteuid() != 0:
            pytest.skip("making a device node needs root")
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))  # a node like /dev/null's, in tmp
    elif kind == "folder":
        path.mkdir()
    return path


KINDS = ["fifo", "socket", "symlink-to-char-device", "symlink-to-fifo", "char-device", "folder"]


def in_time(fn):
    """fn() in a thread; fails the test if it has not returned by the deadline (it would block forever)."""
    outcome = {}

    def call():
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # handed to the test
            outcome["error"] = exc

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(DEADLINE_S)
    assert not thread.is_alive(), "blocked on the file"
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


@pytest.mark.parametrize("kind", KINDS)
def test_a_queue_file_that_is_not_a_regular_file_is_refused_and_left_alone(tmp_path, kind):
    path = make(kind, tmp_path)
    before = os.lstat(path)
    with pytest.raises(QueueFileError, match=r"not a regular file|is a folder"):
        in_time(lambda: AlertQueue(path))
    with pytest.raises(ConfigError) as refused:
        in_time(lambda: settings_from_dict({"mqtt": {"enabled": True, "host": "127.0.0.1", "queue_file": str(path)}}))
    message = str(refused.value)
    assert message.startswith(f'mqtt.queue_file = "{path}" is not allowed: it is ') and "\n" not in message
    after = os.lstat(path)
    assert (after.st_mode, after.st_ino) == (before.st_mode, before.st_ino), "the path must not be replaced"


def test_the_service_refuses_a_fifo_queue_at_start_in_one_sentence_and_exits(tmp_path, tiny_model_path, data_dir):
    fifo = make("fifo", tmp_path)
    config = tmp_path / "config.toml"
    config.write_text(f'[mqtt]\nenabled = true\nhost = "127.0.0.1"\nqueue_file = "{fifo}"\n')
    proc = run_service(config, tiny_model_path, data_dir)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [
        f'error: mqtt.queue_file = "{fifo}" is not allowed: it is a FIFO (named pipe), not a regular file; '
        "give a file name such as /var/lib/ser-edge/mqtt-queue.jsonl"
    ]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


@pytest.mark.parametrize("what", ["config", "token_file", "password_file", "ca_file"])
def test_no_file_read_at_start_up_can_block_on_a_fifo(tmp_path, what):
    from edge.service.config import load_settings

    fifo = make("fifo", tmp_path)
    if what == "config":
        call = lambda: load_settings(fifo)  # noqa: E731
    elif what == "token_file":
        call = lambda: settings_from_dict({"http": {"enabled": True, "token_file": str(fifo)}})  # noqa: E731
    else:
        mqtt = {"enabled": True, "host": "127.0.0.1", "username": "u", "tls": True, what: str(fifo)}
        call = lambda: settings_from_dict({"mqtt": mqtt})  # noqa: E731
    with pytest.raises(ConfigError, match="FIFO") as refused:
        in_time(call)
    assert "\n" not in str(refused.value)


def test_a_queue_never_used_is_never_written(tmp_path):
    path = tmp_path / "state" / "queue.jsonl"
    q = AlertQueue(path)
    q.flush()
    assert not path.exists(), "an empty queue that was never used leaves no file"
    seq = q.append(alert(0))
    q.remove(seq)
    assert path.read_text() == "", "a used queue is kept, empty, once its alert is delivered"


def test_the_mqtt_sink_with_the_broker_down_writes_no_queue_when_no_alert_was_raised(tmp_path):
    from mosquitto import free_port

    from edge.service.mqtt import MqttSink
    from edge.settings import MqttSettings

    path = tmp_path / "queue.jsonl"
    sink = MqttSink(MqttSettings(enabled=True, host="127.0.0.1", port=free_port(), queue_file=str(path)))
    sink.handle({"type": "state", "state": "calm"})
    sink.close()
    assert not path.exists()


CORRUPT = [
    pytest.param(b'{"seq": 2, "event": {"type": "alert", "id": "caf\xe9"}}\n', id="non-UTF-8 bytes"),
    pytest.param(b'{"seq": Infinity, "event": {"type": "alert", "id": "x"}}\n', id="seq Infinity"),
    pytest.param(b'{"seq": 1e400, "event": {"type": "alert", "id": "x"}}\n', id="seq 1e400"),
    pytest.param(b'{"seq": NaN, "event": {"type": "alert", "id": "x"}}\n', id="seq NaN"),
    pytest.param(b'{"seq": 2, "event": {"type": "alert", "score": 1e400}}\n', id="an event with 1e400"),
    pytest.param(b'{"seq": true, "event": {"type": "alert"}}\n', id="seq true"),
    pytest.param(b"\xff\xfe\x00garbage\n", id="binary"),
]


@pytest.mark.parametrize("bad", CORRUPT)
def test_a_damaged_queue_keeps_every_readable_entry_moves_the_file_aside_and_says_so(tmp_path, bad, caplog):
    path = tmp_path / "mqtt-queue.jsonl"
    good = [json.dumps({"seq": i, "event": alert(i)}).encode() + b"\n" for i in (1, 3, 4)]
    original = good[0] + bad + good[1] + good[2]
    path.write_bytes(original)
    with caplog.at_level("WARNING"):
        q = AlertQueue(path)
    assert [e["id"] for _, e in q.items()] == ["a-1", "a-3", "a-4"]
    (aside,) = tmp_path.glob("mqtt-queue.jsonl.corrupt-*")
    assert aside.read_bytes() == original, "the damaged file is kept, untouched, for a person to look at"
    assert [e["id"] for _, e in AlertQueue(path).items()] == ["a-1", "a-3", "a-4"], "the readable entries are saved in its place"
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and str(path) in warnings[0] and aside.name in warnings[0]
    assert q.append(alert(5)) == 5, "numbering goes on after the highest readable entry"


def test_the_service_starts_on_a_damaged_queue_file(tmp_path, tiny_model_path, data_dir):
    from mosquitto import free_port

    path = tmp_path / "mqtt-queue.jsonl"
    path.write_bytes(b'{"seq": 1e400, "event": {}}\n\xff\xfe\n' + json.dumps({"seq": 7, "event": alert(7)}).encode() + b"\n")
    config = tmp_path / "config.toml"
    config.write_text(f'[mqtt]\nenabled = true\nhost = "127.0.0.1"\nport = {free_port()}\nqueue_file = "{path}"\n')
    proc = run_service(config, tiny_model_path, data_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "held 2 unreadable line(s)" in proc.stderr and "Traceback" not in proc.stderr
    assert list(tmp_path.glob("mqtt-queue.jsonl.corrupt-*"))
    assert '"a-7"' in path.read_text(), "the readable alert is still waiting for the broker"


def test_an_atomic_write_that_fails_leaves_the_old_file_and_no_temporary_one(tmp_path, monkeypatch):
    from edge.files import NotRegularFileError, write_atomically

    path = tmp_path / "state.json"
    write_atomically(path, b"old\n")

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        write_atomically(path, b"new\n")
    monkeypatch.undo()
    assert path.read_bytes() == b"old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]
    fifo = make("fifo", tmp_path)
    with pytest.raises(NotRegularFileError, match="FIFO"):
        write_atomically(fifo, b"new\n")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode), "the FIFO is left as it was"


def test_an_unreadable_queue_file_is_refused_by_the_check_a_reload_makes_before_closing_the_running_sink(tmp_path, monkeypatch):
    """MqttSink(start=False) checks the path while the old sink still runs; an unreadable file found only at start() was too late."""
    from edge.service.mqtt import MqttSink
    from edge.settings import MqttSettings

    path = tmp_path / "mqtt-queue.jsonl"
    path.write_text(json.dumps({"seq": 1, "event": alert(1)}) + "\n")
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: not (Path(p) == path and mode & os.R_OK) and real_access(p, mode))  # root reads all
    settings = MqttSettings(enabled=True, host="127.0.0.1", queue_file=str(path))
    with pytest.raises(QueueFileError) as refused:
        MqttSink(settings, start=False)
    assert str(refused.value) == f"cannot read the alert queue file {path} (permission denied); fix its permissions or remove it"
