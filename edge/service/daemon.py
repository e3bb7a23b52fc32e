"""The daemon: source ─▶ StreamingClassifier ─▶ Policy ─▶ sinks, plus signals, health and systemd.

It only wires parts together. Everything is built and checked before the first chunk is
read (``build``), so a bad setting never leaves a half-started service. The processing
loop runs in the main thread:

- SIGTERM and SIGINT set a stop flag; the loop sees it within one chunk (at most
  IDLE_POLL_S when the source is quiet), ends active alerts, closes the source and every
  sink (GPIO off, MQTT offline and queue saved) and returns 0.
- SIGHUP re-reads the configuration; the policy and the sinks are rebuilt from it. Every new
  sink is built and checked before a running one is touched, and parts whose table did not
  change are kept as they are; a bad configuration, or a sink that cannot be built, is logged
  in one sentence and the running configuration and outputs go on, losing nothing.
- systemd (``sd_notify``): READY=1 once listening, WATCHDOG=1 from the loop itself (so a
  stalled loop is restarted), STOPPING=1 on the way out. Without $NOTIFY_SOCKET nothing is sent.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import signal
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from edge import voice
from edge.classifier import StreamingClassifier
from edge.history import database_path
from edge.model import Model
from edge.policy import Policy
from edge.profile import Adaptation, ProfileError, VoiceProfile
from edge.service.events import Sink
from edge.service.gpio_sink import GpioSink
from edge.service.homeassistant import capabilities
from edge.service.recorder import AlertRecorder
from edge.service.sd_notify import Notifier
from edge.service.sources import AudioSource, SourceError, open_source
from edge.service.stdout_sink import StdoutSink
from edge.settings import ConfigError, HttpSettings, ProfileSettings, ServiceSettings
from edge.signals import StopFlag
from edge.voice import ProfileKeeper, load_profile
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
            _close(sink)
        if self.web is not None:
            self.web.shutdown()


def _close(sink: Sink) -> None:
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
            raise StartError(f"debug.record_dir = {settings.debug.record_dir!r} cannot be used ({exc.strerror or exc})") from None
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
    try:
        for table in OUTPUT_TABLES:
            old = running.parts.get(table)
            if not _wanted(new, table):
                continue
            wanted = _part_key(new, table)
            if old is not None and old[0] == wanted and (table != "http" or _token_unchanged(new, running.web)):
                kept[table] = old
            elif table == "http" and old is not None and _same_address(old[0], wanted):
                _swap_token(running.web, new)  # the same server, a new token: nothing to rebind
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
                _close(sink)
        if "new-http" in servers:
            servers["new-http"].shutdown()
        raise
    # Everything new is ready: now the old parts that are not kept go, and the new ones start.
    kept_sinks = {id(sink) for _, sink in kept.values()} | {id(sink) for _, sink in fresh.values()}
    for sink in running.sinks:
        if id(sink) not in kept_sinks:
            _close(sink)
    if ("new-http" in servers or "http" not in kept) and running.web is not None:
        running.web.shutdown()
        servers.pop("http", None)
    if "new-http" in servers:
        servers["http"] = servers.pop("new-http")
    elif "http" in servers:  # the page goes on: it draws the days from the history the new settings keep
        from edge.web.app import set_history

        set_history(servers["http"].app, database_path(new))
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


def _swap_token(web, settings: ServiceSettings) -> None:
    """Give the running page the token of the new [http] (it checks the token on every request)."""
    from edge.web.access import is_loopback

    try:
        token = http_token(settings.http)
    except ValueError as exc:
        raise StartError(str(exc)) from None
    if token is None and not is_loopback(settings.http.host):
        raise StartError(f"refusing to serve {settings.http.host} without a token; set [http] token_file or token")
    web.set_token(token)


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


# --------------------------------------------------------------------------------------------- daemon


class Daemon:
    """Runs the loop; see the module doc. Build it with ``build(settings)`` or hand it the parts."""

    def __init__(
        self,
        settings: ServiceSettings,
        classifier: StreamingClassifier,
        source: AudioSource,
        outputs: Outputs,
        reload: Callable[[], ServiceSettings] | None = None,
        notifier: Notifier | None = None,
        keeper: ProfileKeeper | None = None,
    ) -> None:
        self.settings = settings
        self.keeper = keeper  # saves the voice profile that the classifier adapts
        self.classifier = classifier
        self.source = source
        self.outputs = outputs
        self.reload_settings = reload
        self.notifier = notifier or Notifier()
        # Alert ids stay unique across restarts (queued alerts outlive the process): a random
        # run id, then a counter. Start times alone collide for two starts in the same second.
        self.policy = Policy(settings.policy, self.classifier.labels, id_prefix=f"{uuid.uuid4().hex[:8]}-")
        self.stop = StopFlag()
        self._stop_signal: str | None = None
        self._reload_requested = False
        self._started = time.monotonic()
        self._cpu_mark = (time.monotonic(), time.process_time())
        self._next_health = self._started + settings.health_interval_s
        self.windows = 0
        self.events_sent = 0
        self._offset_s = 0.0  # audio of earlier streams (a microphone reopened at another rate), so time_s never goes back
        self._overflows_logged = 0

    # -- signals -------------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT stop, SIGHUP reloads (main thread only)."""
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, self._on_reload_signal)

    def _on_stop_signal(self, signum, frame) -> None:
        # No logging here: the handler may interrupt the loop inside a logging call.
        self.request_stop(signal.Signals(signum).name)

    def request_stop(self, reason: str) -> None:
        """Stop at the next chunk (or before the first one); ``reason`` is logged, e.g. SIGTERM."""
        self._stop_signal = reason
        self.stop.set()

    def _on_reload_signal(self, signum, frame) -> None:
        self._reload_requested = True

    def request_reload(self) -> None:
        self._reload_requested = True

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> int:
        """Process audio until the source ends or a stop signal; always cleans up. Returns 0, or 1 when the source failed part way."""
        if threading.current_thread() is threading.main_thread():
            self.install_signal_handlers()
        self.notifier.send(f"READY=1\nSTATUS=listening to {self.source.name}")
        log.info("listening to %s; sinks: %s", self.source.name, ", ".join(s.name for s in self.outputs.sinks) or "none")
        reason, status = "stopped", 0
        try:
            for chunk, rate in self.source.chunks(self.stop):
                self._tick()
                if chunk.size == 0:
                    continue
                if self.classifier.sample_rate_hz not in (None, rate):
                    self._new_stream(rate)
                if self.outputs.recorder is not None:
                    self.outputs.recorder.feed(chunk, rate)
                for result in self.classifier.process(chunk, rate):
                    self._on_window(result)
            if not self.stop.is_set():
                reason = "end_of_stream"
                for result in self.classifier.flush():
                    self._on_window(result)
                log.info("%s ended after %.1f s of audio", self.source.name, self.seconds_seen)
        except SourceError as exc:  # a file found damaged part way: what came before it was classified
            log.error("%s; stopping after %.1f s of audio", exc, self.seconds_seen)
            reason, status = "source_error", 1
        finally:
            if self._stop_signal:
                log.info("%s received: stopping", self._stop_signal)
            self.notifier.send("STOPPING=1")
            self._shutdown(reason)
        return status

    def _tick(self) -> None:
        now = time.monotonic()
        self.notifier.watchdog(now)
        if self.keeper is not None:
            self.keeper.tick(now)
        if self._reload_requested:
            self._reload_requested = False
            self._reload()
        if now >= self._next_health:
            self._next_health = now + self.settings.health_interval_s
            self.dispatch(self.health(now))
            self._send_summary()

    def _send_summary(self) -> None:
        """The history's daily summary, when its writer has a new one: MQTT keeps it retained on .../summary."""
        for sink in self.outputs.sinks:
            take = getattr(sink, "take_summary", None)
            summary = take() if take is not None else None
            if summary is not None:
                self.dispatch(summary)

    @property
    def seconds_seen(self) -> float:
        """Audio processed since the start, over every stream of the source."""
        return self._offset_s + self.classifier.seconds_seen

    def _new_stream(self, rate: int) -> None:
        """The source came back at another rate (another microphone): the classifier starts over, the clock goes on."""
        log.warning("%s now delivers %d Hz instead of %d Hz: starting a new stream", self.source.name, rate, self.classifier.sample_rate_hz)
        for result in self.classifier.flush():
            self._on_window(result)
        self._offset_s = self.seconds_seen
        self.classifier.reset()

    def _on_window(self, result) -> None:
        if self._offset_s:
            result = dataclasses.replace(result, start_s=result.start_s + self._offset_s, end_s=result.end_s + self._offset_s)
        self.windows += 1
        self.dispatch(
            {"type": "window", "time_s": round(result.end_s, 3), **result.to_dict(), "speech_ratio": round(result.speech_ratio, 3)}
        )
        for event in self.policy.process(result):
            self.dispatch(event)

    def dispatch(self, event: dict) -> None:
        """Give an event to every sink; a failing sink is logged and skipped, never fatal."""
        if event["type"] != "window":
            event.setdefault("wall_time", datetime.now(timezone.utc).isoformat(timespec="milliseconds"))
        self.events_sent += 1
        for sink in self.outputs.sinks:
            try:
                sink.handle(event)
            except Exception:
                log.exception("sink %s failed on a %s event", sink.name, event["type"])

    def health(self, now: float | None = None) -> dict:
        """The periodic health event; cpu_percent is this process's share of one core since the last one."""
        now = time.monotonic() if now is None else now
        cpu = time.process_time()
        wall0, cpu0 = self._cpu_mark
        self._cpu_mark = (now, cpu)
        queues = [q for q in (getattr(s, "queue_length", None) for s in self.outputs.sinks) if q is not None]
        event = {
            "type": "health",
            "time_s": round(self.seconds_seen, 3),
            "source": self.source.name,
            "listening": bool(getattr(self.source, "listening", True)),  # False while a microphone is being reopened
            "sinks": {s.name: str(getattr(s, "status", "ok")) for s in self.outputs.sinks},
            "queue_length": sum(queues) if queues else 0,
            "cpu_percent": round(100.0 * (cpu - cpu0) / max(now - wall0, 1e-6), 1),
            "uptime_s": round(now - self._started, 1),
            "windows": self.windows,
            "alerts_active": sorted(self.policy.active_alerts),
            "profile": voice.health(self.classifier),
        }
        overflows = getattr(self.source, "overflows", None)
        if overflows is not None:
            event["overflows"] = overflows
            if overflows > self._overflows_logged:
                log.warning("%d input overflow(s) since the last health report: audio was lost", overflows - self._overflows_logged)
                self._overflows_logged = overflows
        return event

    # -- reload and shutdown -------------------------------------------------------------------

    def _reload(self) -> None:
        if self.reload_settings is None:
            log.info("SIGHUP: no configuration file to reload")
            return
        self.notifier.send("RELOADING=1")
        try:
            new = self.reload_settings()
            Policy(new.policy, self.classifier.labels)  # refuses a rule for a label the model does not have
        except (ConfigError, ValueError) as exc:
            log.error("reload refused, keeping the running configuration: %s", exc)
            self.notifier.send("READY=1")
            return
        for part in ("audio", "model", "speech", "profile"):
            if getattr(new, part) != getattr(self.settings, part):
                log.warning("[%s] changed: it takes effect at the next restart, not on reload", part)
        try:
            outputs, fresh = rebuild_outputs(self.outputs, new, self.classifier.model)
        except (StartError, OSError, ValueError) as exc:
            log.error("reload failed, keeping the running configuration and outputs: %s", exc)
            self.notifier.send("READY=1")
            return
        self.outputs = outputs  # before the policy's events: the old sinks are closed
        self.settings = new
        for event in self.policy.reconfigure(new.policy):
            self.dispatch(event)
        offered = capabilities(new, self.classifier.labels)  # after the ends of removed rules: their event types go now
        for sink in outputs.sinks:
            if hasattr(sink, "offer"):
                sink.offer(offered)
        # New sinks start knowing no alert (a dark GPIO pin, MQTT alert_active OFF): tell them which are still on.
        active = {alert_id: emotion for emotion, alert_id in self.policy.active_alerts.items()}
        for sink in fresh:
            resume = getattr(sink, "resume_alerts", None)
            if active and resume is not None:
                resume(active)
        self.notifier.send("READY=1")
        log.info("configuration reloaded: %d alert rule(s); sinks: %s", len(new.policy.rules), ", ".join(s.name for s in outputs.sinks))

    def _shutdown(self, reason: str) -> None:
        for event in self.policy.finish(reason):
            self.dispatch(event)
        with contextlib.suppress(Exception):
            self.source.close()
        if self.keeper is not None:
            self.keeper.close()
        for sink in self.outputs.sinks:  # the history first: its last minutes written, the summary goes out while MQTT is up
            if hasattr(sink, "take_summary"):
                _close(sink)
                self._send_summary()
        self.outputs.close()
        log.info("stopped after %.1f s of audio, %d windows", self.seconds_seen, self.windows)


def _token_unchanged(settings: ServiceSettings, web) -> bool:
    try:
        return web is not None and http_token(settings.http) == getattr(web, "token", None)
    except (OSError, ValueError):
        return False


def build(settings: ServiceSettings, reload: Callable[[], ServiceSettings] | None = None) -> Daemon:
    """Model, classifier, source and sinks from the settings, all or nothing; StartError or ModelError if one fails."""
    model = Model(settings.model.path or None, threads=settings.model.threads)
    profile, adapt = _voice_profile(settings.profile, model)
    # [speech] replaces only the keys it writes; the others stay as the model was trained.
    classifier = StreamingClassifier(model, settings.speech.over(model.contract.speech), profile=profile, adapt=adapt)
    keeper = ProfileKeeper(classifier, settings.profile.path, settings.profile.save_interval_s) if adapt is not None else None
    try:
        Policy(settings.policy, model.labels)  # refuses a rule for a label the model does not have, before anything opens
    except ValueError as exc:
        raise StartError(str(exc)) from None
    try:
        source = open_source(settings.audio)
    except SourceError as exc:
        raise StartError(str(exc)) from None
    try:
        outputs = build_outputs(settings, model)
    except BaseException:
        source.close()
        raise
    return Daemon(settings, classifier, source, outputs, reload=reload, keeper=keeper)


def _voice_profile(settings: ProfileSettings, model: Model) -> tuple[VoiceProfile | None, Adaptation | None]:
    """The [profile] to normalise with (None: the population's) and how to adapt it (None: not at all)."""
    adapt = Adaptation(time_constant_s=settings.time_constant_s) if settings.adapt else None
    if not settings.path:
        return None, adapt
    if adapt is not None and not Path(settings.path).exists():
        log.info(
            "voice profile %s does not exist yet: learning the voice from the speech heard, starting from the population's", settings.path
        )
        return None, adapt
    try:
        profile = load_profile(settings.path, model.contract)
    except ProfileError as exc:
        raise StartError(f"profile.path: {exc}") from None
    log.info(
        "voice profile %s: %.0f s of speech, made %s%s",
        settings.path,
        profile.speech_s,
        profile.created,
        f"; adapting (time constant {adapt.time_constant_s:.0f} s of speech)" if adapt else "",
    )
    return profile, adapt
