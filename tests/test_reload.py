"""SIGHUP with a real broker: a reload whose new outputs cannot be built changes nothing, and no alert is lost across reloads."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import wait_until
from mosquitto import Subscriber

from edge.service.config import load_settings
from edge.service.daemon import build

CLIP = "ravdess/Actor_01/03-01-05-02-01-01-01.flac"


def alert(i: int, kind: str = "alert") -> dict:
    return {"type": kind, "id": f"r-{i}", "emotion": "angry", "time_s": float(i)}


def config(path: Path, broker, clip: Path, model: Path, queue_file: str | None, extra: str = "") -> Path:
    queue = f'queue_file = "{queue_file}"\n' if queue_file else ""
    path.write_text(
        f'[audio]\nsource = "{clip}"\n[model]\npath = "{model}"\n[output]\nenabled = false\n'
        f'[mqtt]\nenabled = true\nhost = "{broker.host}"\nport = {broker.port}\ndevice_id = "car1"\ndiscovery = false\n{queue}{extra}'
    )
    return path


def received(sub: Subscriber) -> list[tuple[str, str]]:
    """(type, id) of every alert message in order of first arrival (QoS 1 may repeat one)."""
    return list(dict.fromkeys((m.json()["type"], m.json()["id"]) for m in sub.on("ser-edge/car1/alert")))


@pytest.mark.parametrize("queue", ["memory", "file"])
@pytest.mark.parametrize("mosquitto_broker", [{"persistent": True}], indirect=True)
def test_alerts_survive_a_failed_and_then_a_good_reload_with_the_broker_down(
    mosquitto_broker, tiny_model_path, data_dir, tmp_path, caplog, queue
):
    broker = mosquitto_broker
    bad_ca = tmp_path / "ca.pem"
    bad_ca.write_text("not a certificate\n")
    queue_file = str(tmp_path / "queue.jsonl") if queue == "file" else None
    path = config(tmp_path / "config.toml", broker, data_dir / CLIP, tiny_model_path, queue_file)
    sub = Subscriber(broker.host, broker.port, topics=("ser-edge/car1/alert",), client_id=f"reload-{queue}", persistent=True)
    daemon = build(load_settings(path), reload=lambda: load_settings(path))
    try:
        (first,) = [s for s in daemon.outputs.sinks if s.name == "mqtt"]
        assert wait_until(lambda: first.status == "connected")
        sent = []

        def raise_alerts(start: int, count: int) -> None:
            for i in range(start, start + count):
                for kind in ("alert", "alert_end"):
                    daemon.dispatch(alert(i, kind))
                    sent.append((kind, f"r-{i}"))

        raise_alerts(0, 2)
        # A reload whose MQTT sink cannot be built (a CA file that is no certificate): nothing changes.
        config(path, broker, data_dir / CLIP, tiny_model_path, queue_file, f'tls = true\nca_file = "{bad_ca}"\n')
        daemon.request_reload()
        with caplog.at_level("ERROR"):
            daemon._tick()
        errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert len(errors) == 1 and errors[0].startswith("reload failed, keeping the running configuration and outputs: ")
        assert "ca.pem" in errors[0] and "\n" not in errors[0]
        assert [s for s in daemon.outputs.sinks if s.name == "mqtt"] == [first] and first.status == "connected"
        raise_alerts(2, 2)
        assert wait_until(lambda: len(received(sub)) == 8), received(sub)

        # The broker goes away; alerts queue in the running sink; a good reload replaces the sink meanwhile.
        broker.stop()
        assert wait_until(lambda: first.status == "disconnected")
        raise_alerts(4, 2)
        assert first.queue_length == 4
        config(path, broker, data_dir / CLIP, tiny_model_path, queue_file, "keepalive_s = 20\n")
        daemon.request_reload()
        daemon._tick()
        (second,) = [s for s in daemon.outputs.sinks if s.name == "mqtt"]
        assert second is not first and second.settings.keepalive_s == 20 and first.status == "closed"
        assert second.queue_length == 4, "the new sink took over what the old one had not delivered"
        raise_alerts(6, 1)
        broker.start()
        raise_alerts(7, 1)
        assert wait_until(lambda: len(received(sub)) == len(sent)), received(sub)
        assert received(sub) == sent, "every alert and alert end, once each, in the order raised"
        assert wait_until(lambda: second.queue_length == 0)
    finally:
        daemon.outputs.close()
        sub.close()


def test_a_reload_moves_the_page_to_its_new_port_with_the_same_live_feed_or_keeps_it_when_it_cannot(tmp_path, tiny_model_path, data_dir):
    import http.client
    import socket

    from mosquitto import free_port

    def answers(port: int) -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/api/health", headers={"Host": "localhost"})
            ok = conn.getresponse().status == 200
            conn.close()
            return ok
        except OSError:
            return False

    first_port, second_port = free_port(), free_port()
    path = tmp_path / "config.toml"

    def write(port: int, extra: str = "") -> None:
        path.write_text(
            f'[audio]\nsource = "{data_dir / CLIP}"\n[model]\npath = "{tiny_model_path}"\n[output]\nenabled = false\n'
            f"[http]\nenabled = true\nport = {port}\n{extra}"
        )

    write(first_port)
    daemon = build(load_settings(path), reload=lambda: load_settings(path))
    try:
        feed = daemon.outputs.parts["http"][1]
        assert answers(first_port)
        write(second_port)
        daemon.request_reload()
        daemon._tick()
        assert answers(second_port) and not answers(first_port)
        assert daemon.outputs.parts["http"][1] is feed, "the live view keeps its history"
        # A port that is taken: the reload fails and the page stays where it is.
        with socket.create_server(("127.0.0.1", 0)) as taken:
            write(taken.getsockname()[1])
            daemon.request_reload()
            daemon._tick()
            assert answers(second_port) and daemon.outputs.parts["http"][1] is feed and not feed.closed
    finally:
        daemon.outputs.close()
