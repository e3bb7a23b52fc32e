"""The outputs of the service: the sinks one configuration turns on, built all or nothing, and rebuilt on reload.

``build_outputs`` makes every sink the settings turn on ([output], [gpio], [mqtt], [debug], [http],
[history]), in the order events reach them; ``rebuild_outputs`` makes those of a reloaded
configuration while the running ones go on, keeping every part whose table did not change. A part
that cannot be made raises StartError with one sentence, and whatever was built is closed again.
"""

from __future__ import annotations

import dataclasses
import logging
import os

from edge.checks import show
from edge.files import what_is
from edge.history import database_path
from edge.model import Model
from edge.service.events import Sink
from edge.service.gpio_sink import GpioSink
from edge.service.homeassistant import capabilities
from edge.service.recorder import AlertRecorder
from edge.service.stdout_sink import StdoutSink
from edge.settings import HttpSettings, ServiceSettings
from edge.web.access import http_token

log = logging.getLogger(__name__)


class StartError(RuntimeError):
    """A part of the service could not start (model, source, a sink), with one sentence saying why."""


# --------------------------------------------------------------------------------------------- outputs


class Outputs:
    """The sinks built from one configuration, plus the web server when --http is on.

    ``parts`` maps each table that made a sink ([output], [gpio], [mqtt], [debug], [http]) to the
    settings it was made from and the sink, so a reload keeps what did not change.
    """

    def __init__(self, sinks: list[Sink], recorder: AlertRecorder | None = None, web=None, parts: dict | None = None) -> None:
        self.sinks = sinks
        self.recorder = recorder
        self.web = web
        self.parts: dict[str, tuple[object, Sink]] = dict(parts or {})

    def close(self) -> None:
        for sink in self.sinks:
            close_sink(sink)
        if self.web is not None:
            self.web.shutdown()


def close_sink(sink: Sink) -> None:
    """Close one sink; a failure is logged, never raised, so the others still close."""
    try:
        sink.close()
    except Exception as exc:  # one sink failing to close must not keep the others open
        log.warning("closing sink %s failed: %s", sink.name, exc)


OUTPUT_TABLES = ("output", "gpio", "mqtt", "debug", "http", "history")
"""The tables that make sinks, in the order events reach them."""


def _wanted(settings: ServiceSettings, table: str) -> bool:
    if table == "history":
        return database_path(settings) is not None
    part = getattr(settings, table)
    return bool(part.record if table == "debug" else part.enabled)


def _part_key(settings: ServiceSettings, table: str):
    """What a part is made from: a reload keeps the part while this stays equal."""
    if table == "history":  # its place may come from mqtt.queue_file, and each minute names the device
        return (settings.history, database_path(settings), settings.mqtt.device_id)
    return getattr(settings, table)


def _build_part(table: str, settings: ServiceSettings, model: Model | None, start: bool = True, feed=None):
    """The sink of one table (and the web server for [http]); StartError with one sentence if it cannot be made."""
    if table == "output":
        return StdoutSink(settings.output), None
    if table == "gpio":
        from edge.service.gpio_sink import GpioError

        try:
            return GpioSink(settings.gpio), None
        except GpioError as exc:
            raise StartError(str(exc)) from None
    if table == "mqtt":
        from edge.service.mqtt import MqttSink

        try:
            offered = capabilities(settings, model.labels if model is not None else ())  # Home Assistant's entities
            return MqttSink(settings.mqtt, start=start, capabilities=offered), None
        except ValueError as exc:  # MqttConfigError, QueueFileError: unreadable password, CA or queue file
            raise StartError(str(exc)) from None
    if table == "debug":
        try:
            return AlertRecorder(settings.debug), None
        except OSError as exc:
            raise StartError(
                f"debug.record_dir = {show(settings.debug.record_dir)} is not allowed: {_folder_problem(settings.debug.record_dir, exc)}"
            ) from None
    if table == "history":
        return _history_sink(settings, model), None
    return _start_web(settings, model, feed)


def _history_sink(settings: ServiceSettings, model: Model | None):
    """The per-minute history; its database is opened by its own thread, so nothing here waits on the disk."""
    from edge.history import Source
    from edge.service.history_sink import HistorySink

    if model is None:
        model = Model(settings.model.path or None, threads=settings.model.threads)
    source = Source(settings.mqtt.device_id, model.contract.sha256, model.path.stem, tuple(model.labels))
    return HistorySink(settings.history, database_path(settings), source, hop_s=model.contract.hop_s)


def _assemble(parts: dict[str, tuple[object, Sink]], servers: dict[str, object]) -> Outputs:
    sinks = [parts[t][1] for t in OUTPUT_TABLES if t in parts]
    recorder = parts["debug"][1] if "debug" in parts else None
    return Outputs(sinks, recorder, servers.get("http"), parts)


def build_outputs(settings: ServiceSettings, model: Model | None = None) -> Outputs:
    """Every sink the settings turn on; StartError (after closing what was built) if one cannot start."""
    parts: dict[str, tuple[object, Sink]] = {}
    servers: dict[str, object] = {}
    try:
        for table in OUTPUT_TABLES:
            if _wanted(settings, table):
                sink, server = _build_part(table, settings, model)
                parts[table] = (_part_key(settings, table), sink)
                if server is not None:
                    servers[table] = server
    except BaseException:
        _assemble(parts, servers).close()
        raise
    return _assemble(parts, servers)


def rebuild_outputs(running: Outputs, new: ServiceSettings, model: Model | None = None) -> tuple[Outputs, list[Sink]]:
    """The outputs of a reloaded configuration, and the sinks in them that are new.

    Everything new is built and checked while the running outputs go on: a part whose table did not
    change is kept as it is; an MQTT sink is checked but connects only once the old one has closed
    (one client id, one queue file), and takes over its undelivered alerts; a GPIO pin that stays the
    same pin is handed over last. If anything fails, what was built is closed, the running outputs
    are untouched and StartError says why in one sentence.
    """
    kept: dict[str, tuple[object, Sink]] = {}
    fresh: dict[str, tuple[object, Sink]] = {}
    servers: dict[str, object] = {"http": running.web} if running.web is not None else {}
    later: list[str] = []  # parts that need what the running one holds (the same GPIO pin)
    new_token: list[str | None] = []  # the running page's next token, given to it once everything else is built
    try:
        for table in OUTPUT_TABLES:
            old = running.parts.get(table)
            if not _wanted(new, table):
                continue
            wanted = _part_key(new, table)
            if old is not None and old[0] == wanted and (table != "http" or _token_unchanged(new, running.web)):
                kept[table] = old
            elif table == "http" and old is not None and _same_address(old[0], wanted):
                new_token.append(_page_token(new))  # the same server, a new token: nothing to rebind
                kept[table] = (wanted, old[1])
            elif table == "gpio" and old is not None and old[0].pin == wanted.pin:
                later.append(table)
            else:
                feed = old[1] if table == "http" and old is not None else None
                sink, server = _build_part(table, new, model, start=False, feed=feed)
                fresh[table] = (wanted, sink)
                if server is not None:
                    servers["new-http"] = server
    except BaseException:
        for table, (_, sink) in fresh.items():
            if table != "http":  # a kept live feed goes on feeding the running page
                close_sink(sink)
        if "new-http" in servers:
            servers["new-http"].shutdown()
        raise
    # Everything new is ready: now the old parts that are not kept go, and the new ones start.
    kept_sinks = {id(sink) for _, sink in kept.values()} | {id(sink) for _, sink in fresh.values()}
    for sink in running.sinks:
        if id(sink) not in kept_sinks:
            close_sink(sink)
    if ("new-http" in servers or "http" not in kept) and running.web is not None:
        running.web.shutdown()
        servers.pop("http", None)
    if "new-http" in servers:
        servers["http"] = servers.pop("new-http")
    elif "http" in servers:  # the page goes on: it draws the days from the history the new settings keep
        from edge.web.app import set_history

        set_history(servers["http"].app, database_path(new))
        if new_token:
            servers["http"].set_token(new_token[0])
    if "mqtt" in fresh:
        old = running.parts.get("mqtt")
        fresh["mqtt"][1].start(replacing=old[1] if old is not None else None)
    for table in later:  # the GPIO pin, free now that its old sink has closed
        old_settings = running.parts[table][0]
        try:
            fresh[table] = (getattr(new, table), _build_part(table, new, model)[0])
        except StartError as exc:
            log.error("[%s] could not take over its pin (%s); keeping the previous [%s] settings", table, exc, table)
            fresh[table] = (old_settings, _build_part(table, _with(new, table, old_settings), model)[0])
    return _assemble({**kept, **fresh}, servers), [sink for _, sink in fresh.values()]


def _with(settings: ServiceSettings, table: str, value) -> ServiceSettings:
    return dataclasses.replace(settings, **{table: value})


def _same_address(old: HttpSettings, new: HttpSettings) -> bool:
    return (old.host, old.port) == (new.host, new.port)


def _page_token(settings: ServiceSettings) -> str | None:
    """The token of the new [http] for the running page (it checks the token on every request); StartError if unusable."""
    from edge.web.access import is_loopback

    try:
        token = http_token(settings.http)
    except ValueError as exc:
        raise StartError(str(exc)) from None
    if token is None and not is_loopback(settings.http.host):
        raise StartError(f"refusing to serve {settings.http.host} without a token; set [http] token_file or token")
    return token


def _start_web(settings: ServiceSettings, model: Model | None, feed=None):
    try:
        from edge.web.app import create_app
        from edge.web.live import LiveFeed
        from edge.web.server import serve_in_thread
    except ImportError as exc:
        raise StartError(f"--http needs the web page (edge.web), which cannot be imported ({exc})") from None
    own_feed = feed is None
    feed = feed if feed is not None else LiveFeed()
    try:
        token = http_token(settings.http)
        app = create_app(
            model if model is not None else (settings.model.path or None), live=feed, token=token, history=database_path(settings)
        )
        server = serve_in_thread(app, settings.http.host, settings.http.port)
    except (OSError, ValueError) as exc:  # ServerError is an OSError; ModelError and a bad token are ValueErrors
        if own_feed:
            feed.close()
        raise StartError(str(exc)) from None
    log.info("web page with live view on %s", server.url)
    return feed, server


def _token_unchanged(settings: ServiceSettings, web) -> bool:
    try:
        return web is not None and http_token(settings.http) == getattr(web, "token", None)
    except (OSError, ValueError):
        return False


def _folder_problem(path: str, exc: OSError) -> str:
    """Why a folder could not be made or used, in words (FileExistsError alone would say "File exists")."""
    kind = what_is(path)
    if kind is None and os.path.exists(path):
        kind = "a file"
    return f"it is {kind}, not a folder" if kind else f"the folder cannot be made or written ({exc.strerror or exc})"
