"""The daemon: in process with a capturing sink, and as a real process (signals, stdin, sd_notify, exit codes)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edge.audio import read_audio
from edge.classifier import StreamingClassifier
from edge.model import Model
from edge.policy import AlertRule, PolicySettings
from edge.service.config import ConfigError, ServiceSettings, settings_from_dict
from edge.service.daemon import Daemon, build
from edge.service.outputs import Outputs
from edge.service.sd_notify import Notifier
from edge.service.sources import FileSource
from edge.settings import SourceSettings

ROOT = Path(__file__).resolve().parents[1]
CLIP = "ravdess/Actor_01/03-01-05-02-01-01-01.flac"  # angry, 16 kHz
TESS = "tess/OAF_angry/OAF_back_angry.flac"  # 24,414 Hz
# The tiny random model gives every label about 1/8; a low bar makes its top label alert at once.
EASY = PolicySettings(
    smoothing_windows=1, rules=tuple(AlertRule(e, threshold=0.12, hold_s=0.0, hysteresis=0.02) for e in ("surprised", "fearful", "happy"))
)


class ListSink:
    def __init__(self, name="list", fail=False):
        self.name, self.fail, self.events, self.closed = name, fail, [], False
        self.status = "ok"

    def handle(self, event):
        if self.fail:
            raise RuntimeError("boom")
        self.events.append(event)

    def close(self):
        self.closed = True

    def of(self, kind):
        return [e for e in self.events if e["type"] == kind]


def make_daemon(model_path, path, policy=EASY, sinks=None, **kw):
    settings = ServiceSettings(audio=SourceSettings(source=str(path)), policy=policy, **kw)
    sinks = sinks or [ListSink()]
    classifier = StreamingClassifier(Model(model_path))
    return Daemon(settings, classifier, FileSource(str(path), chunk_ms=37), Outputs(sinks), notifier=Notifier({})), sinks


def test_windows_match_the_batch_path_and_the_end_of_a_file_ends_alerts(tiny_model_path, data_dir):
    path = data_dir / TESS
    daemon, (sink,) = make_daemon(tiny_model_path, path)
    assert daemon.run() == 0
    expected = StreamingClassifier(Model(tiny_model_path)).classify_file(str(path)).windows
    windows = sink.of("window")
    assert [w["end_s"] for w in windows] == [round(r.end_s, 3) for r in expected]
    np.testing.assert_allclose([list(w["probs"].values()) for w in windows], [r.probs for r in expected], atol=1e-4)
    alerts, ends = sink.of("alert"), sink.of("alert_end")
    assert alerts, "the easy policy must alert on the tiny model"
    # Every alert that was still on when the file ended gets its end, with the reason.
    assert {e["id"] for e in ends} == {a["id"] for a in alerts}
    assert {e["reason"] for e in ends} <= {"released", "end_of_stream"}
    assert all("wall_time" in e for e in alerts + ends) and "wall_time" not in windows[0]
    assert sink.closed


def test_a_failing_sink_is_logged_and_the_others_still_get_every_event(tiny_model_path, data_dir, caplog):
    good = ListSink("good")
    daemon, _ = make_daemon(tiny_model_path, data_dir / CLIP, sinks=[ListSink("bad", fail=True), good])
    with caplog.at_level("ERROR"):
        assert daemon.run() == 0
    assert good.of("window") and good.of("state")
    assert any("sink bad failed" in r.getMessage() for r in caplog.records)


def test_health_reports_source_sinks_queue_and_cpu(tiny_model_path, data_dir):
    class Queued(ListSink):
        queue_length = 3

    daemon, _ = make_daemon(tiny_model_path, data_dir / CLIP, sinks=[ListSink(), Queued("mqtt")])
    daemon.run()
    health = daemon.health()
    assert health["type"] == "health" and health["source"].startswith("file:")
    assert health["sinks"] == {"list": "ok", "mqtt": "ok"}
    assert health["queue_length"] == 3
    assert health["cpu_percent"] >= 0 and health["uptime_s"] >= 0
    assert health["windows"] == daemon.windows > 0


def test_reload_swaps_policy_and_sinks_and_a_bad_config_keeps_the_old_one(tiny_model_path, data_dir, caplog):
    daemon, (sink,) = make_daemon(tiny_model_path, data_dir / CLIP)
    new_policy = PolicySettings(rules=(AlertRule("sad", hold_s=1.0),))
    daemon.reload_settings = lambda: ServiceSettings(audio=daemon.settings.audio, policy=new_policy)
    daemon.request_reload()
    daemon._tick()
    assert daemon.policy.settings == new_policy
    assert sink.closed and [s.name for s in daemon.outputs.sinks] == ["stdout"]

    def bad():
        raise ConfigError("policy.smoothing_windows = 0 is not allowed")

    daemon.reload_settings = bad
    daemon.request_reload()
    with caplog.at_level("ERROR"):
        daemon._tick()
    assert daemon.policy.settings == new_policy
    assert any("reload refused" in r.getMessage() for r in caplog.records)


def test_recording_is_off_by_default_and_writes_only_alert_audio_when_on(tiny_model_path, data_dir, tmp_path, caplog):
    from edge.service.daemon import StartError
    from edge.service.outputs import build_outputs
    from edge.settings import RecordSettings

    assert build_outputs(ServiceSettings()).recorder is None
    settings = settings_from_dict({"debug": {"record": True, "record_dir": str(tmp_path / "rec"), "record_s": 2.0}})
    with caplog.at_level("WARNING"):
        outputs = build_outputs(settings)
    assert any("DEBUG RECORDING IS ON" in r.getMessage() for r in caplog.records)
    assert outputs.recorder.settings == RecordSettings(True, str(tmp_path / "rec"), 2.0)
    daemon = Daemon(settings, StreamingClassifier(Model(tiny_model_path)), FileSource(str(data_dir / CLIP)), outputs, notifier=Notifier({}))
    daemon.settings = ServiceSettings(policy=EASY)
    daemon.policy.reconfigure(EASY)
    daemon.run()
    written = sorted((tmp_path / "rec").glob("alert_*.wav"))
    assert written
    audio, rate = read_audio(written[0])
    assert rate == 16000 and 0 < audio.size <= 2 * rate
    assert {oct(p.stat().st_mode & 0o777) for p in written} == {"0o600"}, "a voice: readable by this user only"
    assert oct((tmp_path / "rec").stat().st_mode & 0o777) == "0o700"
    (tmp_path / "afile").write_text("x")
    with pytest.raises(StartError, match=r'^debug.record_dir = ".*afile" is not allowed: it is a file, not a folder$'):
        build_outputs(settings_from_dict({"debug": {"record": True, "record_dir": str(tmp_path / "afile")}}))


# ------------------------------------------------------------------------------------------ the real process


def edge_cmd(*args):
    return [sys.executable, "-m", "edge", *args]


class NotifySocket:
    """A datagram socket standing in for systemd's $NOTIFY_SOCKET."""

    def __init__(self, folder: Path):
        self.path = str(folder / "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages: list[str] = []

    def wait_for(self, text: str, timeout_s: float = 60.0, after: int = 0) -> bool:
        """Wait for a message holding ``text`` among those from index ``after`` on."""
        deadline = time.monotonic() + timeout_s
        while not any(text in m for m in self.messages[after:]):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.sock.settimeout(remaining)
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                return False
        return True

    def close(self):
        self.sock.close()


def test_sigterm_stops_the_real_process_cleanly_with_sd_notify_and_sighup_reloads(tiny_model_path, data_dir, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(f'[audio]\nsource = "{data_dir / CLIP}"\nrealtime = true\nloop = true\n[service]\nhealth_interval_s = 0.5\n')
    notify = NotifySocket(tmp_path)
    env = {**os.environ, "NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "1000000"}
    proc = subprocess.Popen(
        edge_cmd("run", "--config", str(config), "--model", str(tiny_model_path), "-v"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,  # unbuffered bytes: readline() below must not read ahead lines that communicate() then never sees
        env=env,
        cwd=ROOT,
    )
    try:
        assert notify.wait_for("READY=1"), "no READY=1 from the service"
        assert notify.wait_for("WATCHDOG=1"), "no watchdog ping from the loop"
        first = [json.loads(proc.stdout.readline()) for _ in range(3)]  # the loop is classifying
        config.write_text(config.read_text() + "[policy.alerts.sad]\nenabled = false\n")
        proc.send_signal(signal.SIGHUP)
        assert notify.wait_for("RELOADING=1")
        reloading = next(i for i, m in enumerate(notify.messages) if "RELOADING=1" in m)
        assert notify.wait_for("READY=1", after=reloading + 1)
        proc.send_signal(signal.SIGTERM)
        out, err = (b.decode() for b in proc.communicate(timeout=30))
    finally:
        if proc.poll() is None:
            proc.kill()
        notify.wait_for("STOPPING=1", 5.0)
        notify.close()
    assert proc.returncode == 0, err
    assert "SIGTERM received: stopping" in err and "stopped after" in err
    assert "configuration reloaded: 2 alert rule(s)" in err
    assert "STOPPING=1" in " ".join(notify.messages)
    events = first + [json.loads(line) for line in out.splitlines()]
    assert {"window", "state", "health"} <= {e["type"] for e in events}
    assert all(e["sinks"] == {"stdout": "ok"} for e in events if e["type"] == "health")


def test_sigint_stops_the_real_process_cleanly_too(tiny_model_path, data_dir, tmp_path):
    notify = NotifySocket(tmp_path)
    proc = subprocess.Popen(
        edge_cmd("run", "--source", str(data_dir / CLIP), "--realtime", "--loop", "--model", str(tiny_model_path)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "NOTIFY_SOCKET": notify.path},
        cwd=ROOT,
    )
    try:
        assert notify.wait_for("READY=1"), "no READY=1 from the service"
        proc.send_signal(signal.SIGINT)
        # Generous: this catches a hang, not a slow stop (benchmarks measure the stop time).
        _, err = (b.decode() for b in proc.communicate(timeout=15))
    finally:
        if proc.poll() is None:
            proc.kill()
        notify.close()
    assert proc.returncode == 0, err
    assert "SIGINT received: stopping" in err and "stopped after" in err and "Traceback" not in err


def test_a_stop_signal_during_start_up_still_ends_in_a_clean_shutdown(tiny_model_path, data_dir, monkeypatch, caplog):
    """A SIGTERM while the model loads and the sinks connect is kept, then the daemon stops at once, cleaning up."""
    import edge.service.daemon as daemon_module
    from edge.cli import build_parser

    built = []

    def build_under_a_signal(settings, reload=None):
        os.kill(os.getpid(), signal.SIGTERM)  # arrives in the middle of start-up
        daemon = build(settings, reload)
        built.append(daemon)
        return daemon

    monkeypatch.setattr(daemon_module, "build", build_under_a_signal)

    def unhandled(signum, frame):
        raise AssertionError("the SIGTERM during start-up was not kept for the daemon")

    before = signal.signal(signal.SIGTERM, unhandled)  # stands in for the default action, which would end pytest
    try:
        args = build_parser().parse_args(["run", "--source", str(data_dir / CLIP), "--loop", "--model", str(tiny_model_path)])
        with caplog.at_level("INFO"):
            assert args.func(args) == 0  # a looped file never ends: only the kept SIGTERM can stop it
    finally:
        signal.signal(signal.SIGTERM, before)
    assert built and built[0].stop.is_set() and built[0].windows == 0
    assert "SIGTERM received: stopping" in caplog.text


def test_stdin_pcm_through_a_pipe_until_end_of_input(tiny_model_path, data_dir):
    audio, rate = read_audio(data_dir / CLIP)
    pcm = np.round(audio * 32767).astype("<i2").tobytes()
    proc = subprocess.run(
        edge_cmd("run", "--source", "-", "--rate", str(rate), "--model", str(tiny_model_path), "--verbose"),
        input=pcm,
        capture_output=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    windows = [json.loads(line) for line in proc.stdout.decode().splitlines() if '"window"' in line]
    expected = StreamingClassifier(Model(tiny_model_path)).classify_clip(np.frombuffer(pcm, "<i2"), rate).windows
    assert [w["end_s"] for w in windows] == [round(r.end_s, 3) for r in expected]
    assert "stdin ended after" in proc.stderr.decode()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--source", "/no/such.wav"], 'audio.source = "/no/such.wav" is not allowed: no such file'),
        (["--source", "-", "--rate", "12"], "audio.rate_hz = 12 is not allowed"),
        (["--config", "/no/such.toml"], "config file /no/such.toml not found"),
        (["--model", "/no/such.tflite"], "model file /no/such.tflite not found"),
        (["--source", "-", "--gpio-pin", "NOPE", "--model", "TINY"], "GPIO pin NOPE cannot be used"),
    ],
)
def test_bad_settings_exit_2_with_one_sentence_and_nothing_started(args, message, tmp_path, tiny_model_path):
    args = [str(tiny_model_path) if a == "TINY" else a for a in args]
    notify = NotifySocket(tmp_path)
    try:
        proc = subprocess.run(
            edge_cmd("run", *args),
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env={**os.environ, "NOTIFY_SOCKET": notify.path},
            stdin=subprocess.DEVNULL,
        )
        assert not notify.wait_for("READY=1", 0.1)
    finally:
        notify.close()
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if "XNNPACK" not in line]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr
    assert proc.stdout == ""


def test_an_alert_rule_for_a_label_the_model_lacks_is_refused_but_a_default_one_is_left_out(tmp_path, tiny_model_path, data_dir):
    from tiny_model import build_tiny_model

    config = tmp_path / "config.toml"
    config.write_text("[policy.alerts.frustrated]\nhold_s = 2.0\n")
    proc = subprocess.run(
        edge_cmd("run", "--config", str(config), "--model", str(tiny_model_path), "--source", "-"),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )
    lines = [line for line in proc.stderr.splitlines() if "XNNPACK" not in line]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "[policy.alerts.frustrated] names a label the model does not have; its labels are neutral, calm" in lines[0]
    # A model without fearful: the default rule for fearful is left out, and the service runs.
    four = build_tiny_model(tmp_path / "four", name="four", labels=("neutral", "happy", "sad", "angry"))
    daemon = build(
        ServiceSettings(audio=SourceSettings(source=str(data_dir / CLIP)), model=settings_from_dict({"model": {"path": str(four)}}).model)
    )
    try:
        assert sorted(r.emotion for r in daemon.policy.settings.rules) == ["angry", "sad"]
    finally:
        daemon.source.close()
        daemon.outputs.close()


def test_build_refuses_a_missing_model_before_opening_anything(data_dir):
    from edge.model import ModelError

    with pytest.raises(ModelError):
        build(
            ServiceSettings(
                audio=SourceSettings(source=str(data_dir / CLIP)), model=settings_from_dict({"model": {"path": "/x.tflite"}}).model
            )
        )


def test_http_serves_the_live_view_fed_by_the_daemon_and_stops_with_it(tiny_model_path, data_dir):
    import urllib.request

    from edge.service.outputs import build_outputs

    pytest.importorskip("edge.web.live")
    settings = settings_from_dict({"http": {"enabled": True, "host": "127.0.0.1", "port": 0}, "output": {"enabled": False}})
    model = Model(tiny_model_path)
    outputs = build_outputs(settings, model)
    assert [s.name for s in outputs.sinks] == ["http"]
    url = outputs.web.url
    daemon = Daemon(settings, StreamingClassifier(model), FileSource(str(data_dir / CLIP)), outputs, notifier=Notifier({}))
    daemon.settings = ServiceSettings(policy=EASY, http=settings.http, output=settings.output)
    daemon.policy.reconfigure(EASY)
    # Run the loop without its final close, so the page can be read while it is still up.
    outputs_close, outputs.close = outputs.close, lambda: None
    daemon.run()
    with urllib.request.urlopen(url + "api/state", timeout=10) as response:
        state = json.loads(response.read())
    assert len(state["windows"]) == daemon.windows > 0
    assert state["state"] is not None
    outputs_close()
    with pytest.raises(OSError):
        urllib.request.urlopen(url + "api/state", timeout=2)


class _Window:
    """What the policy reads of a WindowResult."""

    def __init__(self, end_s, probs, speech=True):
        self.end_s, self.probs, self.speech = end_s, probs, speech


class ResumableSink(ListSink):
    def __init__(self, name="new"):
        super().__init__(name)
        self.resumed = {}

    def resume_alerts(self, alerts):
        self.resumed.update(alerts)


def _daemon_with_active_alerts(tiny_model_path, data_dir, emotions):
    from tiny_model import EMOTIONS

    policy = PolicySettings(smoothing_windows=1, rules=tuple(AlertRule(e, threshold=0.3, hold_s=0.0, hysteresis=0.1) for e in emotions))
    daemon, (old,) = make_daemon(tiny_model_path, data_dir / CLIP, policy=policy)
    probs = np.zeros(len(EMOTIONS))
    for e in emotions:
        probs[EMOTIONS.index(e)] = 1.0 / len(emotions)
    for event in daemon.policy.process(_Window(1.0, probs)):
        daemon.dispatch(event)
    assert set(daemon.policy.active_alerts) == set(emotions)
    return daemon, old


def test_reload_sends_ends_of_removed_rules_to_the_new_sinks_and_tells_them_the_alerts_still_on(tiny_model_path, data_dir, monkeypatch):
    from edge.service import daemon as daemon_module

    daemon, old = _daemon_with_active_alerts(tiny_model_path, data_dir, ("angry", "fearful"))
    ids = dict(daemon.policy.active_alerts)
    new = ResumableSink()
    monkeypatch.setattr(daemon_module, "rebuild_outputs", lambda running, settings, model=None: (running.close() or Outputs([new]), [new]))
    kept = PolicySettings(smoothing_windows=1, rules=(AlertRule("fearful", threshold=0.3, hold_s=0.0, hysteresis=0.1),))
    daemon.reload_settings = lambda: ServiceSettings(audio=daemon.settings.audio, policy=kept)
    daemon.request_reload()
    daemon._tick()
    assert old.closed
    # The end of the alert whose rule went reaches the sinks that are open (MQTT would otherwise queue it nowhere).
    assert [(e["id"], e["reason"]) for e in new.of("alert_end")] == [(ids["angry"], "rule_removed")]
    assert old.of("alert_end") == []
    # The alert still on is not announced again, but the new sink learns of it (GPIO on, MQTT alert_active ON).
    assert new.of("alert") == [] and new.resumed == {ids["fearful"]: "fearful"}


def test_a_failed_reload_keeps_every_running_output_untouched(tiny_model_path, data_dir, monkeypatch, caplog):
    from edge.service import daemon as daemon_module
    from edge.service.daemon import StartError

    class Web:
        stopped = False

        def shutdown(self):
            self.stopped = True

    feed, web, other = ListSink("http"), Web(), ListSink()
    daemon, _ = make_daemon(tiny_model_path, data_dir / CLIP, sinks=[other, feed])
    daemon.outputs.web = web
    running, before = daemon.outputs, daemon.settings

    def broken(running, settings, model=None):
        raise StartError("GPIO pin 17 cannot be used as a led (PinInvalidPin: no such pin)")

    monkeypatch.setattr(daemon_module, "rebuild_outputs", broken)
    daemon.reload_settings = lambda: ServiceSettings(audio=before.audio, policy=PolicySettings(rules=()))
    daemon.request_reload()
    with caplog.at_level("ERROR"):
        daemon._tick()
    assert not feed.closed and not other.closed and not web.stopped
    assert daemon.outputs is running and daemon.settings is before, "the policy stays as it was too"
    (line,) = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert (
        line
        == "reload failed, keeping the running configuration and outputs: GPIO pin 17 cannot be used as a led (PinInvalidPin: no such pin)"
    )
    daemon.outputs.close()
    assert feed.closed and web.stopped


def test_a_source_that_comes_back_at_another_rate_starts_a_new_stream_on_the_same_clock(tiny_model_path, data_dir):
    """A microphone unplugged and reopened (or another default device) may run at another rate."""
    first, first_rate = read_audio(data_dir / CLIP)  # 16 kHz
    second, second_rate = read_audio(data_dir / TESS)  # 24,414 Hz

    class TwoDevices:
        name = "mic:default"

        def chunks(self, stop):
            for audio, rate in ((first, first_rate), (second, second_rate)):
                step = rate // 10
                for i in range(0, audio.size, step):
                    yield audio[i : i + step], rate

        def close(self):
            pass

    sink = ListSink()
    settings = ServiceSettings(policy=EASY)
    daemon = Daemon(settings, StreamingClassifier(Model(tiny_model_path)), TwoDevices(), Outputs([sink]), notifier=Notifier({}))
    assert daemon.run() == 0  # not a ValueError out of the classifier
    ends = [w["end_s"] for w in sink.of("window")]
    assert ends == sorted(ends) and len(set(ends)) == len(ends)  # time never goes back
    expected_second = StreamingClassifier(Model(tiny_model_path)).classify_clip(second, second_rate).windows
    offset = first.size / first_rate
    tail = ends[-len(expected_second) :]
    np.testing.assert_allclose(tail, [round(r.end_s + offset, 3) for r in expected_second], atol=2e-3)
    assert daemon.seconds_seen == pytest.approx(offset + second.size / second_rate, abs=0.01)


def test_reload_takes_a_new_token_from_the_same_token_file(tiny_model_path, data_dir, tmp_path):
    """Rotating the page's token means writing the file and reloading; the old token must stop working."""
    import urllib.error
    import urllib.request

    from edge.service.outputs import build_outputs

    pytest.importorskip("edge.web.live")
    token_file = tmp_path / "token"
    token_file.write_text("old-token-0123456789abcdef\n")
    token_file.chmod(0o600)
    data = {"http": {"enabled": True, "port": 0, "token_file": str(token_file)}, "output": {"enabled": False}}
    settings = settings_from_dict(data)
    model = Model(tiny_model_path)
    daemon = Daemon(
        settings, StreamingClassifier(model), FileSource(str(data_dir / CLIP)), build_outputs(settings, model), notifier=Notifier({})
    )

    def status(token):
        request = urllib.request.Request(daemon.outputs.web.url + "api/health", headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    try:
        assert status("old-token-0123456789abcdef") == 200
        token_file.write_text("new-token-0123456789abcdef\n")
        daemon.reload_settings = lambda: settings_from_dict(data)
        daemon.request_reload()
        daemon._tick()
        assert status("new-token-0123456789abcdef") == 200
        assert status("old-token-0123456789abcdef") == 401
    finally:
        daemon.outputs.close()


def test_a_reload_that_fails_after_the_page_leaves_the_page_its_old_token(tiny_model_path, data_dir, tmp_path, monkeypatch, caplog):
    """The new token is checked with the rest and given to the running page only once every new part is built."""
    from edge.service import outputs
    from edge.service.outputs import StartError, build_outputs

    pytest.importorskip("edge.web.live")
    token_file = tmp_path / "token"
    token_file.write_text("old-token-0123456789abcdef\n")
    token_file.chmod(0o600)
    http = {"enabled": True, "port": 0, "token_file": str(token_file)}
    settings = settings_from_dict({"http": http, "history": {"path": str(tmp_path / "h.sqlite")}, "output": {"enabled": False}})
    model = Model(tiny_model_path)
    daemon = Daemon(
        settings, StreamingClassifier(model), FileSource(str(data_dir / CLIP)), build_outputs(settings, model), notifier=Notifier({})
    )
    try:
        token_file.write_text("new-token-0123456789abcdef\n")
        changed = {"http": http, "history": {"path": str(tmp_path / "other.sqlite")}, "output": {"enabled": False}}

        def full_disk(settings, model):
            raise StartError("history.path: the disk is full")

        monkeypatch.setattr(outputs, "_history_sink", full_disk)  # the part built after the page's
        daemon.reload_settings = lambda: settings_from_dict(changed)
        daemon.request_reload()
        with caplog.at_level("ERROR"):
            daemon._tick()
        assert "reload failed, keeping the running configuration and outputs: history.path: the disk is full" in caplog.text
        assert daemon.outputs.web.token == "old-token-0123456789abcdef"
    finally:
        daemon.outputs.close()


def test_a_model_with_labels_of_its_own_flows_through_the_page_the_daemon_and_mqtt(tmp_path, data_dir, mosquitto_broker):
    """Nothing downstream keeps its own eight emotions: a 4-label model's labels reach every output."""
    from mosquitto import Subscriber
    from tiny_model import build_tiny_model

    from edge.web.app import create_app

    labels = ("bored", "frustrated", "neutral", "złość")
    model_path = build_tiny_model(tmp_path / "own", name="own", labels=labels)
    clip = data_dir / CLIP

    client = create_app(model_path).test_client()
    page = client.get("/").get_data(as_text=True)
    assert 'data-emotions="bored,frustrated,neutral,złość"' in page
    answer = client.post("/api/classify", data={"file": (clip.open("rb"), clip.name)}).get_json()
    assert list(answer["probs"]) == list(labels) and answer["label"] in labels
    assert answer["windows"] and all(list(w["probs"]) == list(labels) for w in answer["windows"])

    b = mosquitto_broker
    settings = settings_from_dict(
        {
            "audio": {"source": str(clip)},
            "model": {"path": str(model_path)},
            "policy": {"smoothing_windows": 1, "alerts": {"frustrated": {"threshold": 0.05, "hysteresis": 0.01, "hold_s": 0.0}}},
            "mqtt": {"enabled": True, "host": b.host, "port": b.port, "device_id": "own"},
        }
    )
    sub = Subscriber(b.host, b.port)
    daemon = build(settings)
    sink = ListSink()
    daemon.outputs.sinks.append(sink)
    try:
        assert daemon.run() == 0
        assert sub.wait_for_topic("ser-edge/own/alert", count=2)  # the alert and its end at the end of the file
        discovery = sub.wait_for_topic("homeassistant/sensor/own/emotion/config")[0].json()
        states = [m.json() for m in sub.on("ser-edge/own/state")]
    finally:
        sub.close()
    assert [r.emotion for r in daemon.policy.settings.rules] == ["frustrated"]  # sad, angry, fearful: not its labels
    assert all(list(w["probs"]) == list(labels) for w in sink.of("window"))
    assert {e["state"] for e in sink.of("state")} <= {*labels, "silence"}
    assert all(list(e["probs"]) == list(labels) for e in sink.of("state") if e["probs"])
    assert {e["emotion"] for e in sink.of("alert")} == {"frustrated"}
    assert discovery["options"] == [*labels, "silence"]
    assert states and states[-1]["state"] in {*labels, "silence"}


def test_the_speech_gate_is_the_models_own_but_for_the_keys_the_config_writes(tmp_path, data_dir):
    """[speech] replaces what it names; every other key stays as the model was trained (its contract's speech)."""
    from tiny_model import build_tiny_model

    from edge.speech import SpeechSettings

    model_path = build_tiny_model(tmp_path, name="gated")
    contract = json.loads(model_path.with_suffix(".json").read_text())
    contract["speech"] = {"threshold_dbfs": -55.0, "margin_db": 9.0, "floor_rise_db_per_s": 1.0, "min_speech_ratio": 0.4}
    model_path.with_suffix(".json").write_text(json.dumps(contract))
    data = {"audio": {"source": str(data_dir / CLIP)}, "model": {"path": str(model_path)}, "output": {"enabled": False}}
    for speech, expected in (
        ({}, SpeechSettings(threshold_dbfs=-55.0, margin_db=9.0, floor_rise_db_per_s=1.0, min_speech_ratio=0.4)),
        ({"margin_db": 6}, SpeechSettings(threshold_dbfs=-55.0, margin_db=6.0, floor_rise_db_per_s=1.0, min_speech_ratio=0.4)),
    ):
        daemon = build(settings_from_dict({**data, "speech": speech}))
        try:
            assert daemon.classifier.speech_settings == expected
        finally:
            daemon.source.close()
            daemon.outputs.close()


def test_flags_the_source_in_use_has_no_use_for_are_named_once(tiny_model_path, data_dir):
    clip = str(data_dir / CLIP)
    proc = subprocess.run(
        edge_cmd("run", "--source", clip, "--model", str(tiny_model_path), "--rate", "8000", "--device", "3"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("--rate is ignored: it applies to raw PCM on stdin, and the source is") == 1
    assert proc.stderr.count("--device is ignored: it applies to the microphone") == 1 and "--channels" not in proc.stderr
