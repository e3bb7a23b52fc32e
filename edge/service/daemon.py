"""The daemon: source ─▶ StreamingClassifier ─▶ Policy ─▶ sinks, plus signals, health and systemd.

It only wires parts together (the sinks are ``edge.service.outputs``). Everything is built and checked before the first chunk is
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
from edge.checks import show
from edge.classifier import StreamingClassifier
from edge.files import why_unwritable
from edge.model import Model
from edge.policy import Policy
from edge.profile import Adaptation, ProfileError, VoiceProfile
from edge.service.homeassistant import capabilities
from edge.service.outputs import Outputs, StartError, build_outputs, close_sink, rebuild_outputs
from edge.service.sd_notify import Notifier
from edge.service.sources import AudioSource, SourceError, open_source
from edge.settings import ConfigError, ProfileSettings, ServiceSettings
from edge.signals import StopFlag
from edge.voice import ProfileKeeper, load_profile

log = logging.getLogger(__name__)


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
                close_sink(sink)
                self._send_summary()
        self.outputs.close()
        log.info("stopped after %.1f s of audio, %d windows", self.seconds_seen, self.windows)


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
    problem = why_unwritable(settings.path) if adapt is not None else None
    if problem:  # found at start, not at the first save minutes later, with what was learnt lost at the stop
        raise StartError(
            f"profile.path = {show(settings.path)} is not allowed: adapting saves the profile there, but {problem}; give a path the service may write"
        )
    if adapt is not None and not Path(settings.path).exists():
        log.info(
            "voice profile %s does not exist yet: learning the voice from the speech heard, starting from the population's statistics",
            settings.path,
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
