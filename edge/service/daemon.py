"""The daemon: source ─▶ StreamingClassifier ─▶ Policy ─▶ sinks, plus signals, health and systemd.

It only wires parts together. Everything is built and checked before the first chunk is
read (``build``), so a bad setting never leaves a half-started service. The processing
loop runs in the main thread:

- SIGTERM and SIGINT set a stop flag; the loop sees it within one chunk (at most
  IDLE_POLL_S when the source is quiet), ends active alerts, closes the source and every
  sink (GPIO off, MQTT offline and queue saved) and returns 0.
- SIGHUP re-reads the configuration; the policy and the sinks are rebuilt from it. A bad
  new configuration is logged and the old one kept.
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

from edge.classifier import StreamingClassifier
from edge.model import Model
from edge.policy import Policy
from edge.service.events import Sink
from edge.service.gpio_sink import GpioSink
from edge.service.recorder import AlertRecorder
from edge.service.sd_notify import Notifier
from edge.service.sources import AudioSource, open_source
from edge.service.stdout_sink import StdoutSink
from edge.settings import ConfigError, ServiceSettings
from edge.signals import StopFlag
from edge.web.access import http_token

log = logging.getLogger(__name__)


class StartError(RuntimeError):
    """A part of the service could not start (model, source, a sink), with one sentence saying why."""


# --------------------------------------------------------------------------------------------- outputs


class Outputs:
    """The sinks built from one configuration, plus the web server when --http is on."""

    def __init__(self, sinks: list[Sink], recorder: AlertRecorder | None = None, web=None) -> None:
        self.sinks = sinks
        self.recorder = recorder
        self.web = web

    def close(self, keep_web: bool = False) -> None:
        for sink in self.sinks:
            if keep_web and self.web is not None and sink.name == "http":
                continue
            try:
                sink.close()
            except Exception as exc:  # one sink failing to close must not keep the others open
                log.warning("closing sink %s failed: %s", sink.name, exc)
        if self.web is not None and not keep_web:
            self.web.shutdown()


def build_outputs(settings: ServiceSettings, model: Model | None = None, web: tuple | None = None) -> Outputs:
    """Every sink the settings turn on; StartError (after closing what was built) if one cannot start.

    ``web`` is an existing (LiveFeed, server) pair to keep across a reload.
    """
    sinks: list[Sink] = []
    recorder = None
    server = None
    try:
        if settings.output.enabled:
            sinks.append(StdoutSink(settings.output))
        if settings.gpio.enabled:
            from edge.service.gpio_sink import GpioError

            try:
                sinks.append(GpioSink(settings.gpio))
            except GpioError as exc:
                raise StartError(str(exc)) from None
        if settings.mqtt.enabled:
            from edge.service.mqtt import MqttSink

            try:
                sinks.append(MqttSink(settings.mqtt, labels=model.labels if model is not None else ()))
            except ValueError as exc:  # MqttConfigError: unreadable password or CA file
                raise StartError(str(exc)) from None
        if settings.debug.record:
            try:
                recorder = AlertRecorder(settings.debug)
            except OSError as exc:
                raise StartError(f"debug.record_dir = {settings.debug.record_dir!r} cannot be used ({exc.strerror or exc})") from None
            sinks.append(recorder)
        if web is not None:
            feed, server = web
            sinks.append(feed)
        elif settings.http.enabled:
            feed, server = _start_web(settings, model)
            sinks.append(feed)
    except BaseException:
        Outputs(sinks, recorder, server).close()
        raise
    return Outputs(sinks, recorder, server)


def _start_web(settings: ServiceSettings, model: Model | None):
    try:
        from edge.web.app import create_app
        from edge.web.live import LiveFeed
        from edge.web.server import serve_in_thread
    except ImportError as exc:
        raise StartError(f"--http needs the web page (edge.web), which cannot be imported ({exc})") from None
    feed = LiveFeed()
    try:
        token = http_token(settings.http)
        app = create_app(model if model is not None else (settings.model.path or None), live=feed, token=token)
        server = serve_in_thread(app, settings.http.host, settings.http.port)
        server.token = token
    except (OSError, ValueError) as exc:  # ServerError is an OSError; ModelError and a bad token are ValueErrors
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
    ) -> None:
        self.settings = settings
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
        """Process audio until the source ends or a stop signal; always cleans up. Returns 0."""
        if threading.current_thread() is threading.main_thread():
            self.install_signal_handlers()
        self.notifier.send(f"READY=1\nSTATUS=listening to {self.source.name}")
        log.info("listening to %s; sinks: %s", self.source.name, ", ".join(s.name for s in self.outputs.sinks) or "none")
        reason = "stopped"
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
        finally:
            if self._stop_signal:
                log.info("%s received: stopping", self._stop_signal)
            self.notifier.send("STOPPING=1")
            self._shutdown(reason)
        return 0

    def _tick(self) -> None:
        now = time.monotonic()
        self.notifier.watchdog(now)
        if self._reload_requested:
            self._reload_requested = False
            self._reload()
        if now >= self._next_health:
            self._next_health = now + self.settings.health_interval_s
            self.dispatch(self.health(now))

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
            "sinks": {s.name: str(getattr(s, "status", "ok")) for s in self.outputs.sinks},
            "queue_length": sum(queues) if queues else 0,
            "cpu_percent": round(100.0 * (cpu - cpu0) / max(now - wall0, 1e-6), 1),
            "uptime_s": round(now - self._started, 1),
            "windows": self.windows,
            "alerts_active": sorted(self.policy.active_alerts),
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
        for part in ("audio", "model", "speech"):
            if getattr(new, part) != getattr(self.settings, part):
                log.warning("[%s] changed: it takes effect at the next restart, not on reload", part)
        # The same [http] may name a token file whose token was changed: a new token needs a new app.
        keep_web = self.outputs.web is not None and new.http == self.settings.http and _token_unchanged(new, self.outputs.web)
        web = (next(s for s in self.outputs.sinks if s.name == "http"), self.outputs.web) if keep_web else None
        self.outputs.close(keep_web=keep_web)  # first: a GPIO pin or a port can have only one owner
        try:
            outputs = build_outputs(new, self.classifier.model, web)
        except (StartError, OSError, ValueError) as exc:
            log.error("reload failed (%s); only stdout (and the kept web page) is on until the configuration is fixed and reloaded", exc)
            # The kept web server is still bound: keep it in the outputs, or it would outlive them unfed and hold its port.
            outputs = Outputs([StdoutSink(self.settings.output), *([web[0]] if web else [])], web=web[1] if web else None)
            new = self.settings
        self.outputs = outputs  # before the policy's events: the old sinks are closed
        self.settings = new
        for event in self.policy.reconfigure(new.policy):
            self.dispatch(event)
        # New sinks start knowing no alert (a dark GPIO pin, MQTT alert_active OFF): tell them which are still on.
        active = {alert_id: emotion for emotion, alert_id in self.policy.active_alerts.items()}
        for sink in outputs.sinks:
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
        self.outputs.close()
        log.info("stopped after %.1f s of audio, %d windows", self.seconds_seen, self.windows)


def _token_unchanged(settings: ServiceSettings, web) -> bool:
    try:
        return http_token(settings.http) == getattr(web, "token", None)
    except (OSError, ValueError):
        return False


def build(settings: ServiceSettings, reload: Callable[[], ServiceSettings] | None = None) -> Daemon:
    """Model, classifier, source and sinks from the settings, all or nothing; StartError or ModelError if one fails."""
    from edge.service.sources import SourceError

    model = Model(settings.model.path or None, threads=settings.model.threads)
    # [speech] replaces only the keys it writes; the others stay as the model was trained.
    classifier = StreamingClassifier(model, settings.speech.over(model.contract.speech))
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
    return Daemon(settings, classifier, source, outputs, reload=reload)
