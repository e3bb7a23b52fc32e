"""The web page and its JSON API through Flask's test client, the live feed, the token rule, and a real server."""

from __future__ import annotations

import http.client
import io
import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from tiny_model import EMOTIONS

from edge.classifier import StreamingClassifier
from edge.cli import main as cli_main
from edge.model import Model
from edge.web import app as web_app
from edge.web.app import create_app
from edge.web.live import LiveFeed, LiveSettings
from edge.web.server import ServerError, serve_in_thread

TOKEN = "s3cret-token-for-tests-0123456789"
STATIC = Path(web_app.__file__).parent / "static"
TEMPLATES = Path(web_app.__file__).parent / "templates"


@pytest.fixture(autouse=True)
def keep_logging():
    """cli.main() points the root logger at the captured stderr; give the next test its own."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="module")
def clip(data_dir) -> Path:
    """A real RAVDESS clip: actor 1, angry (emotion 05), strong intensity."""
    return data_dir / "ravdess" / "Actor_01" / "03-01-05-02-01-01-01.flac"


@pytest.fixture(scope="module")
def app(tiny_model_path):
    return create_app(tiny_model_path)


@pytest.fixture()
def client(app):
    return app.test_client()


def upload(client, data: bytes, filename: str = "clip.flac", field: str = "file", **kwargs):
    return client.post("/api/classify", data={field: (io.BytesIO(data), filename)}, content_type="multipart/form-data", **kwargs)


def wav_bytes(x: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


# -- the page ------------------------------------------------------------------------------------


def test_page_offers_upload_and_recording_and_names_every_emotion(client):
    r = client.get("/")
    assert r.status_code == 200 and r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    assert 'id="upload-form"' in html and 'id="record"' in html
    assert all(f'data-emotion="{e}"' in html for e in EMOTIONS)
    assert 'id="live"' not in html  # no live view without the service
    assert "default-src 'self'" in r.headers["Content-Security-Policy"]


def test_page_says_when_uploads_are_judged_against_a_voice_profile(client, tiny_model_path):
    from edge.profile import VoiceProfile

    contract = Model(tiny_model_path).contract
    n = contract.frontend.n_ceps
    profile = VoiceProfile((0.0,) * n, (1.0,) * n, 42.4, contract.sha256, contract.frontend.to_dict(), "2026-11-30T00:00:00+00:00")
    html = create_app(tiny_model_path, profile=profile).test_client().get("/").get_data(as_text=True)
    assert "clips are judged against a voice profile (42 s of speech)" in html
    assert "voice profile" not in client.get("/").get_data(as_text=True)


def test_page_and_assets_load_nothing_from_elsewhere(client):
    html = client.get("/").get_data(as_text=True)
    assets = re.findall(r'(?:href|src|data-worklet)="([^"]+)"', html)
    assert assets and all(a.startswith("/") or a.startswith("data:") for a in assets), assets
    for name in ("style.css", "app.js", "recorder-worklet.js"):
        r = client.get(f"/static/{name}")
        assert r.status_code == 200
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", r.get_data(as_text=True)), f"{name} references another host"


# -- POST /api/classify ---------------------------------------------------------------------------


def test_classify_answers_what_classify_json_prints_plus_windows(client, clip, tiny_model_path, capsys):
    r = upload(client, clip.read_bytes(), filename=clip.name)
    assert r.status_code == 200
    answer = r.get_json()

    assert cli_main(["classify", "--json", "--model", str(tiny_model_path), str(clip)]) == 0
    printed = json.loads(capsys.readouterr().out.strip())
    windows = answer.pop("windows")
    assert answer == {**printed, "path": clip.name}
    assert list(answer["probs"]) == list(EMOTIONS)

    expected = StreamingClassifier(Model(tiny_model_path)).classify_file(str(clip))
    assert windows == [w.to_dict() for w in expected.windows]
    assert len(windows) >= 3  # a 3-4 s clip at a 0.5 s hop


def test_classify_accepts_stereo_wav_at_another_rate(client, clip, tiny_model_path):
    x, rate = sf.read(str(clip), dtype="float32")
    stereo = np.stack([x, 0.5 * x], axis=1)
    r = upload(client, wav_bytes(stereo, rate), filename="stereo.wav")
    assert r.status_code == 200, r.get_json()
    expected = StreamingClassifier(Model(tiny_model_path)).classify_clip(stereo.mean(axis=1), rate)
    assert r.get_json()["label"] == expected.label
    assert r.get_json()["duration_s"] == pytest.approx(x.size / rate, abs=1e-3)


def test_classify_shows_the_client_filename_but_never_as_a_path(client, clip, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = upload(client, clip.read_bytes(), filename="../../etc/\x07passwd.flac")
    assert r.status_code == 200
    assert r.get_json()["path"] == "passwd.flac"
    r = upload(client, clip.read_bytes(), filename="/home/me/clips/clip one.flac")
    assert r.get_json()["path"] == "clip one.flac"
    r = upload(client, clip.read_bytes(), filename="")
    assert r.get_json()["path"] == "upload"
    assert list(tmp_path.iterdir()) == []


def test_uploads_never_touch_the_disk(client, clip, monkeypatch):
    """Werkzeug spools uploads over 500 KB to a temporary file; this app keeps them in memory."""
    import werkzeug.formparser

    def no_disk(*args, **kwargs):
        raise AssertionError("the upload was spooled to a temporary file")

    monkeypatch.setattr(werkzeug.formparser, "SpooledTemporaryFile", no_disk)
    x, rate = sf.read(str(clip), dtype="float32")
    big = wav_bytes(np.tile(x, 6), rate)
    assert len(big) > 600_000
    r = upload(client, big, filename="big.wav")
    assert r.status_code == 200, r.get_json()


@pytest.mark.parametrize(
    ("make", "field", "status", "fragment"),
    [
        (lambda clip: b"", "file", 400, "empty (0 bytes)"),
        (lambda clip: b"this is not audio at all, just text\n" * 50, "file", 400, "not an audio file"),
        (lambda clip: (STATIC / "app.js").read_bytes(), "file", 400, "not an audio file"),
        (lambda clip: clip.read_bytes()[: len(clip.read_bytes()) // 50], "file", 400, "audio"),
        (lambda clip: wav_bytes(np.zeros(16000, np.float32), 16000), "file", 400, "silent"),
        (lambda clip: clip.read_bytes(), "audio", 400, "field 'file'"),
    ],
    ids=["empty", "text", "javascript", "truncated", "silent", "wrong-field"],
)
def test_bad_uploads_get_one_sentence_and_400(client, clip, make, field, status, fragment):
    r = upload(client, make(clip), filename="bad.flac", field=field)
    assert r.status_code == status
    body = r.get_json()
    assert set(body) == {"path", "error"}
    assert fragment in body["error"]
    assert "Traceback" not in body["error"] and "\n" not in body["error"]


def test_a_request_without_a_multipart_body_is_refused(client):
    r = client.post("/api/classify", json={"file": "clip.wav"})
    assert r.status_code == 400
    assert r.get_json() == {"path": None, "error": "send the audio as the multipart form field 'file' (fields received: none)"}


def test_an_upload_over_the_limit_gets_413(tiny_model_path, clip):
    small = create_app(tiny_model_path, max_upload_bytes=50_000).test_client()
    data = clip.read_bytes()
    assert len(data) > 50_000
    r = upload(small, data)
    assert r.status_code == 413
    assert "larger than the limit" in r.get_json()["error"]
    assert upload(small, data[:10_000]).status_code == 400  # under the limit: read, and found truncated


def test_a_clip_over_the_duration_limit_gets_413(client, clip, monkeypatch):
    monkeypatch.setattr(web_app, "MAX_CLIP_S", 1.0)
    r = upload(client, clip.read_bytes())
    assert r.status_code == 413
    assert "at most 1 s are accepted" in r.get_json()["error"]


def test_unknown_routes_and_methods_answer_json(client):
    assert client.get("/api/nothing").status_code == 404
    r = client.get("/api/classify")
    assert r.status_code == 405 and "method not allowed" in r.get_json()["error"]


def test_create_app_accepts_a_loaded_model_and_loads_its_own_copy(tiny_model_path, clip):
    model = Model(tiny_model_path)
    app = create_app(model)
    r = upload(app.test_client(), clip.read_bytes())
    assert r.status_code == 200
    assert r.get_json()["label"] == StreamingClassifier(model).classify_file(str(clip)).label


# -- the live view ---------------------------------------------------------------------------------


def window_event(i: int, label: str = "angry", speech: bool = True, hop_s: float = 0.5) -> dict:
    probs = dict.fromkeys(EMOTIONS, 0.02)
    probs[label] = 0.86
    return {
        "type": "window",
        "time_s": i * hop_s + 1.0,
        "start_s": i * hop_s,
        "end_s": i * hop_s + 1.0,
        "label": label,
        "probs": probs,
        "speech": speech,
    }


HEALTH = {
    "type": "health",
    "time_s": 9.0,
    "source": "file clip.flac",
    "sinks": {"stdout": "ok", "http": "ok"},
    "queue_length": 0,
    "cpu_percent": 3.5,
    "uptime_s": 12.0,
}


def test_live_endpoints_say_they_need_the_service(client):
    for path in ("/api/state", "/api/health", "/api/events"):
        r = client.get(path)
        assert r.status_code == 404
        assert "python -m edge run --http" in r.get_json()["error"]


def test_live_state_keeps_state_recent_windows_and_active_alerts(tiny_model_path):
    feed = LiveFeed(LiveSettings(history_s=10.0))
    client = create_app(tiny_model_path, live=feed).test_client()
    assert client.get("/api/state").get_json()["state"] is None
    assert 'id="live"' in client.get("/").get_data(as_text=True)

    for i in range(40):  # 20 s of windows at a 0.5 s hop
        feed.handle(window_event(i))
    feed.handle({"type": "state", "time_s": 20.0, "state": "angry", "probs": window_event(0)["probs"]})
    feed.handle(
        {
            "type": "alert",
            "time_s": 20.0,
            "id": "a1",
            "emotion": "angry",
            "score": 0.8,
            "started_s": 17.0,
            "wall_time": "2026-01-01T00:00:00Z",
        }
    )
    feed.handle(
        {
            "type": "alert",
            "time_s": 20.5,
            "id": "a2",
            "emotion": "fearful",
            "score": 0.6,
            "started_s": 18.0,
            "wall_time": "2026-01-01T00:00:01Z",
        }
    )
    feed.handle({"type": "alert_end", "time_s": 21.0, "id": "a1", "emotion": "angry", "ended_s": 21.0, "duration_s": 4.0})

    state = client.get("/api/state").get_json()
    assert state["state"]["state"] == "angry"
    assert [a["id"] for a in state["alerts"]] == ["a2"]
    ends = [w["end_s"] for w in state["windows"]]
    assert ends == sorted(ends) and ends[-1] == 20.5
    assert ends[0] >= 20.5 - 10.0 and len(ends) == 21  # only the last 10 s are kept

    health = client.get("/api/health").get_json()
    assert health["health"] is None and health["uptime_s"] >= 0
    feed.handle(HEALTH)
    health = client.get("/api/health").get_json()
    assert health["health"] == HEALTH and health["health_age_s"] >= 0


def test_live_windows_restart_when_a_new_stream_starts():
    feed = LiveFeed()
    for i in range(5):
        feed.handle(window_event(i + 100))
    feed.handle(window_event(0))
    assert [w["start_s"] for w in feed.snapshot()["windows"]] == [0.0]


def test_live_windows_are_bounded_whatever_their_times():
    feed = LiveFeed(LiveSettings(history_s=1e9, max_windows=50))
    for i in range(500):
        feed.handle(window_event(i))
    windows = feed.snapshot()["windows"]
    assert len(windows) == 50 and windows[-1]["start_s"] == 499 * 0.5


def test_a_feed_built_during_an_alert_shows_it_once():
    """After a reload (a new [http]) the daemon tells the new feed which alerts are still on."""
    feed = LiveFeed()
    feed.handle({"type": "alert", "id": "r-1", "emotion": "angry", "score": 0.8})
    feed.resume_alerts({"r-1": "angry", "r-2": "sad"})
    assert [(a["id"], a["emotion"]) for a in feed.snapshot()["alerts"]] == [("r-1", "angry"), ("r-2", "sad")]
    assert feed.snapshot()["alerts"][0]["score"] == 0.8  # a known alert keeps what it was announced with


def test_a_slow_browser_loses_its_backlog_but_never_blocks_the_daemon():
    feed = LiveFeed(LiveSettings(subscriber_queue_events=4))
    slow, fast = feed.subscribe(), feed.subscribe()
    for i in range(10):
        feed.handle(window_event(i))  # would block forever if handle() waited for the slow browser
        got = fast.get(0)
        assert got["start_s"] == i * 0.5
    assert slow.needs_snapshot and slow.dropped >= 4
    assert slow.events.qsize() <= 4
    assert not fast.needs_snapshot and fast.dropped == 0


def test_subscribers_are_limited_and_released(tiny_model_path):
    feed = LiveFeed(LiveSettings(max_subscribers=1))
    client = create_app(tiny_model_path, live=feed).test_client()
    sub = feed.subscribe()
    r = client.get("/api/events")
    assert r.status_code == 503 and "at most 1" in r.get_json()["error"]
    feed.unsubscribe(sub)
    assert feed.subscribe() is not None


def test_events_stream_through_the_test_client(tiny_model_path):
    feed = LiveFeed()
    feed.handle(window_event(0))
    client = create_app(tiny_model_path, live=feed).test_client()
    r = client.get("/api/events", buffered=False)
    assert r.status_code == 200 and r.mimetype == "text/event-stream"
    chunks = iter(r.response)
    first = next(chunks).decode()
    assert first.startswith("event: snapshot\n")
    assert json.loads(first.split("data: ", 1)[1])["windows"][0]["start_s"] == 0.0
    feed.handle({"type": "state", "time_s": 2.0, "state": "sad", "probs": window_event(0, "sad")["probs"]})
    second = next(chunks).decode()
    assert second.startswith("event: state\n") and '"state":"sad"' in second
    feed.close()
    assert next(chunks).decode().startswith("event: closed\n")
    r.close()


def test_a_browser_that_fell_behind_is_told_and_gets_a_fresh_snapshot(tiny_model_path):
    feed = LiveFeed(LiveSettings(subscriber_queue_events=2))
    client = create_app(tiny_model_path, live=feed).test_client()
    r = client.get("/api/events", buffered=False)
    chunks = iter(r.response)
    assert next(chunks).decode().startswith("event: snapshot\n")
    for i in range(5):  # the browser reads none of these in time
        feed.handle(window_event(i))
    dropped = next(chunks).decode()
    assert dropped.startswith("event: dropped\n") and json.loads(dropped.split("data: ", 1)[1])["dropped"] >= 3
    snapshot = next(chunks).decode()
    assert snapshot.startswith("event: snapshot\n")
    assert [w["start_s"] for w in json.loads(snapshot.split("data: ", 1)[1])["windows"]] == [0.0, 0.5, 1.0, 1.5, 2.0]
    feed.handle(window_event(5))
    assert '"start_s":2.5' in next(chunks).decode()  # and the stream goes on
    feed.close()
    r.close()


def test_a_browser_behind_when_the_service_stops_is_told_it_stopped(tiny_model_path, monkeypatch):
    """The catch-up after drops empties the queue, and with it the feed's closing word if it was there."""
    from edge.web import app as app_module

    monkeypatch.setattr(app_module, "SSE_KEEPALIVE_S", 0.05)
    feed = LiveFeed(LiveSettings(subscriber_queue_events=2))
    client = create_app(tiny_model_path, live=feed).test_client()
    r = client.get("/api/events", buffered=False)
    chunks = iter(r.response)
    assert next(chunks).decode().startswith("event: snapshot\n")
    for i in range(5):  # the browser falls behind...
        feed.handle(window_event(i))
    feed.close()  # ...and the service stops before it reads again
    kinds = []
    for chunk in chunks:
        kinds.append(chunk.decode().split("\n", 1)[0])
        if kinds[-1] == "event: closed" or len(kinds) == 5:
            break
    r.close()
    assert kinds[-1] == "event: closed", kinds  # not keepalives forever on a stopped feed


# -- the token rule -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def guarded(tiny_model_path):
    return create_app(tiny_model_path, live=LiveFeed(), token=TOKEN)


@pytest.mark.parametrize("path", ["/", "/static/app.js", "/api/state", "/api/health", "/api/events"])
def test_with_a_token_every_request_without_it_is_refused(guarded, path):
    client = guarded.test_client()
    r = client.get(path)
    assert r.status_code == 401
    assert "requires its token" in r.get_json()["error"]
    assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get(path + "?token=" + TOKEN[:-1]).status_code == 401


def test_with_a_token_the_header_or_query_opens_every_endpoint(guarded, clip):
    client = guarded.test_client()
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert upload(client, clip.read_bytes()).status_code == 401
    assert upload(client, clip.read_bytes(), headers=bearer).status_code == 200
    assert client.get("/api/state", headers=bearer).status_code == 200
    assert client.get("/api/health?token=" + TOKEN).status_code == 200
    page = client.get("/?token=" + TOKEN)
    assert page.status_code == 200
    # The page's own assets carry the token so the browser can load them.
    assert f"/static/style.css?token={TOKEN}" in page.get_data(as_text=True)
    assert page.headers["Referrer-Policy"] == "no-referrer"
    # Behind a token the server may be reached under any host name.
    assert client.get("/", headers={**bearer, "Host": "pi.local:8000"}).status_code == 200


def test_without_a_token_only_loopback_host_names_are_served(client):
    assert client.get("/", headers={"Host": "127.0.0.1:8000"}).status_code == 200
    assert client.get("/", headers={"Host": "[::1]:8000"}).status_code == 200
    r = client.get("/", headers={"Host": "attacker.example:8000"})
    assert r.status_code == 403 and "localhost" in r.get_json()["error"]


def test_serving_off_loopback_needs_a_token(app, guarded):
    with pytest.raises(ServerError, match="without a token"):
        serve_in_thread(app, "0.0.0.0", 0)
    server = serve_in_thread(guarded, "0.0.0.0", 0)
    try:
        assert server.port > 0
    finally:
        server.shutdown()


def test_serve_command_refuses_a_public_address_without_a_token(capsys, tiny_model_path):
    assert cli_main(["serve", "--model", str(tiny_model_path), "--host", "0.0.0.0", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "without a token" in err and "--token-file" in err


@pytest.mark.parametrize(("content", "fragment"), [("", "is empty"), ("short\n", "at least 16")])
def test_serve_command_rejects_a_weak_token_file(tmp_path, capsys, tiny_model_path, content, fragment):
    token_file = tmp_path / "token"
    token_file.write_text(content)
    assert cli_main(["serve", "--model", str(tiny_model_path), "--token-file", str(token_file)]) == 2
    assert fragment in capsys.readouterr().err
    assert cli_main(["serve", "--model", str(tiny_model_path), "--token-file", str(tmp_path / "missing")]) == 2
    assert "cannot read the token file" in capsys.readouterr().err


def test_serve_help_teaches_the_token_and_the_api(capsys):
    with pytest.raises(SystemExit):
        cli_main(["serve", "--help"])
    out = capsys.readouterr().out
    assert "--token-file" in out and "/api/classify" in out and "127.0.0.1" in out


# -- a real server ---------------------------------------------------------------------------------


def test_real_server_classifies_and_pushes_live_events(tiny_model_path, clip):
    feed = LiveFeed()
    server = serve_in_thread(create_app(tiny_model_path, live=feed), "127.0.0.1", 0)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        boundary = "ser-edge-test"
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{clip.name}"\r\nContent-Type: audio/flac\r\n\r\n'
            ).encode()
            + clip.read_bytes()
            + f"\r\n--{boundary}--\r\n".encode()
        )
        conn.request("POST", "/api/classify", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        answer = conn.getresponse()
        assert answer.status == 200 and json.loads(answer.read())["path"] == clip.name

        events = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        events.request("GET", "/api/events")
        stream = events.getresponse()
        assert stream.status == 200
        assert stream.readline() == b"event: snapshot\n"
        stream.readline(), stream.readline()  # its data and the blank line
        # While a browser follows the events, uploads are still served (one thread per request).
        conn.request("GET", "/api/health")
        assert conn.getresponse().status == 200
        conn.close()
        assert feed.status == "ok, 1 viewer(s)"  # subscribed before the snapshot was sent
        feed.handle(window_event(3, "happy"))
        assert stream.readline() == b"event: window\n"
        assert json.loads(stream.readline().split(b"data: ", 1)[1])["label"] == "happy"
        stream.readline()
        feed.close()
        assert stream.readline() == b"event: closed\n"
        events.close()
    finally:
        server.shutdown()


def test_a_taken_port_gives_one_sentence(app):
    first = serve_in_thread(app, "127.0.0.1", 0)
    try:
        with pytest.raises(ServerError, match=rf"cannot listen on 127.0.0.1:{first.port} \("):
            serve_in_thread(app, "127.0.0.1", first.port)
    finally:
        first.shutdown()


def test_the_server_is_woken_to_stop_rather_than_noticing_on_its_next_poll(app, monkeypatch):
    """shutdown() wakes the server's thread to close everything: with its poll stretched to an hour, the thread has
    still ended by the time shutdown() returns (it waits at most 2 s for it), so a stop never waits on a poll."""
    from waitress.adjustments import Adjustments

    from edge.web import server as web_server

    def hour_long_poll(**kwargs):
        return Adjustments(**kwargs, asyncore_loop_timeout=3600)

    monkeypatch.setattr(web_server, "Adjustments", hour_long_poll)
    for _ in range(3):
        server = serve_in_thread(app, "127.0.0.1", 0)
        server.shutdown()
        assert not server._thread.is_alive()


def test_serve_command_serves_until_sigterm(tiny_model_path, clip):
    import signal
    import subprocess
    import sys
    import urllib.request

    command = [sys.executable, "-m", "edge", "serve", "--model", str(tiny_model_path), "--port", "0"]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        url = None
        for line in proc.stderr:  # logging lines first, then the address
            found = re.search(r"serving the page on (http://\S+/)", line)
            if found:
                url = found.group(1)
                break
        assert url, "serve did not say where it listens"
        with urllib.request.urlopen(url, timeout=10) as page:
            assert page.status == 200 and b'id="upload-form"' in page.read()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
