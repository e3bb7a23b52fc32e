"""The page's server under a hostile crowd: idle sockets, slow requests and many uploads cost no threads and starve no one."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from pathlib import Path

import pytest
from conftest import wait_until

from edge.web import server as web_server
from edge.web.app import create_app
from edge.web.server import MAX_CONNECTIONS, WORKERS, serve_in_thread

DEADLINE_S = 20.0
IDLE_SOCKETS = 150  # what the hostile test opened: 161 threads under Werkzeug's development server


@pytest.fixture(scope="module")
def clip(data_dir) -> Path:
    return data_dir / "ravdess" / "Actor_01" / "03-01-05-02-01-01-01.flac"


def get(port: int, path: str = "/") -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=DEADLINE_S)
    try:
        conn.request("GET", path, headers={"Host": "localhost"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def multipart(name: str, data: bytes, boundary: str = "ser-edge-test") -> tuple[bytes, dict]:
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n\r\n'.encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def test_many_idle_and_slow_sockets_cost_no_threads_and_the_page_still_answers(tiny_model_path, caplog):
    server = serve_in_thread(create_app(tiny_model_path), "127.0.0.1", 0)
    socks = []
    try:
        threads = threading.active_count()
        with caplog.at_level("WARNING", logger="edge.web.server"):
            for i in range(IDLE_SOCKETS):
                s = socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE_S)
                if i % 3 == 0:  # a slow client: a request line and part of the headers, never the end
                    s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
                socks.append(s)
            assert get(server.port) == 200, "the page answers while the idle sockets stay open"
            assert get(server.port, "/static/app.js") == 200
        assert threading.active_count() == threads, "connections cost no thread: the workers are a fixed pool"
        assert threads <= 1 + WORKERS + 16, "one server thread and WORKERS workers beside the test's own"
        refusals = [r for r in caplog.records if "connections are open" in r.getMessage()]
        assert len(refusals) >= IDLE_SOCKETS - MAX_CONNECTIONS, "each connection closed for room is logged"
        assert all(r.exc_info is None and "\n" not in r.getMessage() for r in refusals), "one line each, no traceback"
        closed = sum(1 for s in socks if _closed_by_server(s))
        assert closed >= IDLE_SOCKETS - MAX_CONNECTIONS
    finally:
        for s in socks:
            s.close()
        server.shutdown()


def _closed_by_server(s: socket.socket) -> bool:
    s.settimeout(0.01)
    try:
        return s.recv(1) == b""
    except (TimeoutError, BlockingIOError):
        return False
    except OSError:
        return True


def test_a_connection_that_sends_nothing_is_closed_after_the_read_timeout(tiny_model_path, monkeypatch):
    monkeypatch.setattr(web_server, "IDLE_TIMEOUT_S", 1)
    monkeypatch.setattr(web_server, "CLEANUP_INTERVAL_S", 1)
    server = serve_in_thread(create_app(tiny_model_path), "127.0.0.1", 0)
    try:
        idle = socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE_S)
        idle.sendall(b"GET / HTTP/1.1\r\n")  # and then nothing
        assert idle.recv(1) == b"", "the server closes it"
        idle.close()
    finally:
        server.shutdown()


def test_uploads_beyond_the_memory_budget_get_503_in_one_sentence_and_the_budget_comes_back(tiny_model_path, clip, caplog):
    limit = 1024 * 1024
    server = serve_in_thread(create_app(tiny_model_path, max_upload_bytes=limit), "127.0.0.1", 0)
    held = []
    try:
        # Two uploads of the largest size whose bodies are still arriving hold the whole budget.
        for _ in range(web_server.UPLOADS_AT_ONCE):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE_S)
            s.sendall(
                f"POST /api/classify HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary=x\r\n"
                f"Content-Length: {limit + 60_000}\r\n\r\n".encode()
                + b"x" * 1000
            )
            held.append(s)
        time.sleep(0.3)  # let the server read their headers (no assertion on time: the next request checks the outcome)
        body, headers = multipart(clip.name, clip.read_bytes())
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=DEADLINE_S)
        with caplog.at_level("WARNING", logger="edge.web.server"):
            conn.request("POST", "/api/classify", body, {**headers, "Host": "localhost"})
            answer = conn.getresponse()
            assert answer.status == 503
            assert json.loads(answer.read())["error"] == "the device is busy with other uploads; try again in a minute"
        conn.close()
        assert [r.getMessage() for r in caplog.records if "refused a request" in r.getMessage()], "one log line per refusal"
        for s in held:
            s.close()

        def accepted() -> bool:
            c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=DEADLINE_S)
            c.request("POST", "/api/classify", body, {**headers, "Host": "localhost"})
            r = c.getresponse()
            ok = r.status == 200 and json.loads(r.read())["path"] == clip.name
            c.close()
            return ok

        assert wait_until(accepted), "closed uploads give their share of the budget back"
        # Too large for the limit: refused before the body is read, as JSON.
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=DEADLINE_S)
        conn.putrequest("POST", "/api/classify")
        conn.putheader("Host", "localhost")
        conn.putheader("Content-Type", "multipart/form-data; boundary=x")
        conn.putheader("Content-Length", str(50 * limit))
        conn.endheaders()
        answer = conn.getresponse()
        assert answer.status == 413 and json.loads(answer.read())["error"] == "the upload is larger than the limit of 1 MB"
        conn.close()
    finally:
        for s in held:
            s.close()
        server.shutdown()


def test_the_units_task_limit_leaves_room_for_the_page_and_the_service():
    from edge.settings import ModelSettings

    unit = (Path(__file__).resolve().parents[1] / "systemd" / "ser-edge.service").read_text()
    tasks_max = int(next(line.split("=", 1)[1] for line in unit.splitlines() if line.startswith("TasksMax=")))
    service_threads = 8  # main loop, MQTT manager and paho's loop, microphone callback and opener, spare
    interpreter = ModelSettings().threads
    assert 1 + WORKERS + service_threads + interpreter <= tasks_max


def test_shutting_down_twice_or_after_the_loop_closed_is_harmless(tiny_model_path, tmp_path):
    """A second shutdown never writes to the trigger's closed descriptor (its number may be another file's by then)."""
    server = serve_in_thread(create_app(tiny_model_path), "127.0.0.1", 0)
    server.shutdown()
    assert server._server.trigger._closed
    with open(tmp_path / "reused", "wb"):  # likely to take the freed descriptor number
        server.shutdown()
    assert (tmp_path / "reused").read_bytes() == b""
