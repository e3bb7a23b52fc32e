"""Every setting of the service in one light module: frozen dataclasses, a docstring per field, each value checked once.

A value is checked when its dataclass is made, whoever makes it: the TOML file, a flag or code
(``edge.checks`` says how). A wrong one raises ConfigError with one sentence naming the key as
the config file writes it (``audio.rate_hz``), the value and what is allowed. The sinks, the
sources and the policy import their settings from here; this module imports only the standard
library, so reading and checking a configuration loads no paho, Flask, gpiozero or numpy.
Whatever needs the disk (does the audio file exist, can the token file be read) is checked by
``edge.service.config`` when it loads a file.

Each class is one table of systemd/config.example.toml, which documents every key.
"""

from __future__ import annotations

import dataclasses
import numbers
import re
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from edge.checks import NON_NEGATIVE, PORT, PROBABILITY, RATIO, Allowed, Checked, ConfigError, between, one_of, refuse, setting

if TYPE_CHECKING:
    from edge.speech import SpeechSettings

__all__ = [
    "AlertDefaults",
    "AlertRule",
    "ConfigError",
    "GpioSettings",
    "HistorySettings",
    "HttpSettings",
    "ModelSettings",
    "MqttSettings",
    "PolicySettings",
    "ProfileSettings",
    "RecordSettings",
    "ServiceSettings",
    "SourceSettings",
    "SpeechOverrides",
    "StdoutSettings",
]


# --------------------------------------------------------------------------------------------- audio and model


@dataclass(frozen=True)
class SourceSettings(Checked):
    """[audio]: which audio the service listens to."""

    SECTION = "audio"

    source: str = setting("mic", Allowed(lambda v: v != "", '"mic", "-" for stdin, or an audio file path'))
    """"mic" for a microphone, "-" for raw PCM on stdin, anything else is an audio file path."""
    device: str = ""
    """Microphone: an input device index, or part of its name; "" for the system default."""
    rate_hz: int = setting(16000, between(1000, 384_000, "a sample rate from 1000 to 384000 Hz"))
    """stdin: sample rate of the raw PCM."""
    channels: int = setting(1, between(1, 32, "a channel count from 1 to 32"))
    """stdin: interleaved channels in the raw PCM (mixed to mono)."""
    chunk_ms: int = setting(100, between(10, 1000, "a chunk length from 10 to 1000 ms"))
    """Length of the chunks read from the source."""
    realtime: bool = False
    """File: pace the file at the speed of real time instead of as fast as possible."""
    loop: bool = False
    """File: start over at the end, forever."""

    def __post_init__(self) -> None:
        if isinstance(self.device, int) and not isinstance(self.device, bool):  # device = 2: the index, as `devices` lists it
            object.__setattr__(self, "device", str(self.device))
        super().__post_init__()

    @property
    def kind(self) -> str:
        return "mic" if self.source == "mic" else "stdin" if self.source == "-" else "file"


THREADS = between(1, 64, "a thread count from 1 to 64")  # beyond the cores only contention; 100000 crashed the interpreter


@dataclass(frozen=True)
class ModelSettings(Checked):
    """[model]: which model classifies the audio."""

    SECTION = "model"

    path: str = ""
    """A .tflite file with its .json beside it; "" for the shipped model."""
    threads: int = setting(1, THREADS)
    """Interpreter threads."""


@dataclass(frozen=True)
class SpeechOverrides(Checked):
    """[speech]: the keys written here replace the model's own speech gate (its contract's ``speech``,
    the one it was trained and evaluated with); a key left out keeps the model's value."""

    SECTION = "speech"

    threshold_dbfs: float | None = setting(None, Allowed(lambda v: v <= 0, "a level of 0 dBFS (full scale) or below"))
    """Frames quieter than this (pre-emphasised level, dB re full scale) are never speech."""
    margin_db: float | None = setting(None, NON_NEGATIVE)
    """A speech frame is at least this far above the running noise floor, in dB."""
    floor_rise_db_per_s: float | None = setting(None, NON_NEGATIVE)
    """How fast the noise floor may rise; it falls to a quieter frame at once."""
    min_speech_ratio: float | None = setting(None, RATIO)
    """A window holds speech when at least this share of its frames are speech."""
    detector: str | None = setting(None, one_of(("silero", "energy", "webrtc")))  # edge.speech.DETECTORS (numpy-free here)
    """Which detector marks speech frames: "silero", "energy" or "webrtc"."""
    floor_window_s: float | None = setting(None, NON_NEGATIVE)
    """Energy detector: the noise floor is the quietest frame of the last this many seconds (0: the rising floor)."""

    def over(self, trained: SpeechSettings) -> SpeechSettings:
        """The model's speech settings (``trained``) with the keys written here replaced."""
        written = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}
        return dataclasses.replace(trained, **written)


# --------------------------------------------------------------------------------------------- decision policy


@dataclass(frozen=True, kw_only=True)
class AlertDefaults(Checked):
    """[policy] threshold, hysteresis, release and cooldown: what every [policy.alerts.EMOTION] table starts from."""

    SECTION = "policy"

    threshold: float = setting(0.5, PROBABILITY)
    """Smoothed probability at or above which the emotion counts as present."""
    hysteresis: float = setting(0.15, Allowed(lambda v: 0 <= v < 1, "a number from 0 to below 1 (and below the threshold)"))
    """An active alert counts as fading only below threshold minus this."""
    release_s: float = setting(2.0, NON_NEGATIVE)
    """Seconds the score must stay below threshold - hysteresis before the alert ends."""
    cooldown_s: float = setting(60.0, NON_NEGATIVE)
    """Seconds after an alert ends during which the same emotion cannot alert again."""

    def check(self) -> None:
        if self.hysteresis >= self.threshold:
            raise refuse(self.key("hysteresis"), self.hysteresis, f"use a number below the threshold {self.threshold}")


@dataclass(frozen=True)
class AlertRule(AlertDefaults):
    """[policy.alerts.EMOTION]: when one emotion raises an alert (threshold, hysteresis, release
    and cooldown are keyword-only and default to the [policy] values)."""

    emotion: str
    """A label of the model (its contract's ``labels``)."""
    hold_s: float = setting(3.0, NON_NEGATIVE)
    """Seconds of audio the emotion must stay present before the alert starts."""

    def __post_init__(self) -> None:
        if not isinstance(self.emotion, str) or not self.emotion:
            raise ConfigError(f"an alert rule needs an emotion, one of the model's labels, not {self.emotion!r}")
        super().__post_init__()

    def key(self, name: str) -> str:
        return f"policy.alerts.{self.emotion}.{name}"

    @property
    def release_below(self) -> float:
        return self.threshold - self.hysteresis


def driver_rules() -> tuple[AlertRule, ...]:
    """Defaults for driver monitoring: sustained anger or fear within seconds, sadness over a longer hold."""
    return (  # in the shipped model's label order, as the configuration builds them
        AlertRule("sad", hold_s=10.0),
        AlertRule("angry", hold_s=3.0),
        AlertRule("fearful", hold_s=3.0),
    )


@dataclass(frozen=True)
class PolicySettings(Checked):
    """[policy]: how window verdicts become states and alerts."""

    SECTION = "policy"

    smoothing_windows: int = setting(6, between(1, 1000, "a whole number of windows from 1 to 1000"))
    """Speech windows averaged into the smoothed probabilities (6 at a 0.5 s hop is about 3 s)."""
    silence_s: float = setting(3.0, NON_NEGATIVE)
    """Seconds of audio without a speech window after which the state becomes "silence"."""
    reset_after_silence_s: float = setting(10.0, NON_NEGATIVE)
    """Seconds without speech after which the smoother forgets what it heard."""
    rules: tuple[AlertRule, ...] = setting(factory=driver_rules)
    """One rule per emotion that may raise an alert; emotions without a rule never alert."""
    named: tuple[str, ...] = field(default=(), compare=False)
    """Emotions the configuration names itself ([policy.alerts.X]): a model without one of these
    labels is refused, where a default rule for a label the model lacks is only left out."""

    def check(self) -> None:
        emotions = [r.emotion for r in self.rules]
        if len(set(emotions)) != len(emotions):
            raise ConfigError(f"[policy.alerts] holds one rule per emotion, not {', '.join(emotions)}")

    def rule(self, emotion: str) -> AlertRule | None:
        return next((r for r in self.rules if r.emotion == emotion), None)


# --------------------------------------------------------------------------------------------- sinks

GPIO_KINDS = ("led", "buzzer", "output")
PIN_FACTORIES = ("", "mock", "lgpio", "rpigpio", "pigpio", "native")
BCM_PINS = range(64)
PIN_NAME = 'a BCM pin number from 0 to 63 or a gpiozero pin name like "GPIO17"'


@dataclass(frozen=True)
class StdoutSettings(Checked):
    """[output]: what the service prints on stdout."""

    SECTION = "output"

    enabled: bool = True
    """Print events as JSON lines on stdout."""
    verbose: bool = False
    """Also print every classified window and the periodic health event."""


@dataclass(frozen=True)
class GpioSettings(Checked):
    """[gpio]: the pin that signals an active alert."""

    SECTION = "gpio"

    enabled: bool = False
    """Drive a pin while an alert is active."""
    pin: str = ""
    """BCM number ("17", or 17 in the file) or any gpiozero pin name ("GPIO17", "BOARD11")."""
    kind: str = setting("led", one_of(GPIO_KINDS))
    """led, buzzer or output (a plain digital output, e.g. a relay)."""
    active_high: bool = True
    """The pin is high while an alert is active (false: low, for active-low boards)."""
    pin_factory: str = setting("", one_of(PIN_FACTORIES))
    """gpiozero pin factory: "" for gpiozero's default, or mock, lgpio, rpigpio, pigpio, native."""

    def __post_init__(self) -> None:
        pin = self.pin
        if isinstance(pin, bool) or not isinstance(pin, (numbers.Integral, str)):
            raise refuse(self.key("pin"), pin, "use " + PIN_NAME)
        bcm = int(pin) if isinstance(pin, numbers.Integral) or pin.isdigit() else None
        if bcm is not None and bcm not in BCM_PINS:
            raise refuse(self.key("pin"), pin, "use " + PIN_NAME)
        object.__setattr__(self, "pin", str(pin))  # the file may write the BCM number as a number
        super().__post_init__()

    def check(self) -> None:
        if self.enabled and not self.pin:
            raise ConfigError('gpio.enabled = true is not allowed without a pin: set gpio.pin (e.g. 17 or "GPIO17")')


def default_device_id() -> str:
    """The host name, lowercased, with anything but letters, digits, _ and - replaced by _."""
    return re.sub(r"[^a-z0-9_-]", "_", socket.gethostname().lower()) or "ser-edge"


def _plain_host(value: str) -> bool:
    """A host name or address alone: no spaces, no scheme, no ":PORT" (an IPv6 address has two colons or more)."""
    return value != "" and not any(c.isspace() for c in value) and "/" not in value and value.count(":") != 1


DEVICE_ID = re.compile(r"^[A-Za-z0-9_-]+$")  # also what Home Assistant allows in a discovery topic's node id
HTTP_URL = re.compile(r"^https?://[^\s/]+\S*$")
TOPIC = Allowed(
    lambda v: bool(v) and not any(c in v for c in "+#") and v[0] != "/" and v[-1] != "/",
    "a topic without + or # and without a leading or trailing /",
)


@dataclass(frozen=True)
class MqttSettings(Checked):
    """[mqtt]: where to publish and how; password and CA certificate are read from files, never given inline."""

    SECTION = "mqtt"

    enabled: bool = False
    """Publish to the broker (``--mqtt HOST[:PORT]`` turns it on)."""
    host: str = setting(
        "",
        Allowed(
            lambda v: _plain_host(v) or v == "",
            "a host name or address such as 127.0.0.1 or broker.local (no mqtt://, and the port in mqtt.port)",
        ),
    )
    """Broker host name or address; required when enabled."""
    port: int = setting(1883, between(1, 65535, "a port number from 1 to 65535 (1883, or 8883 with TLS)"))
    """Broker TCP port (usually 8883 with TLS)."""
    device_id: str = setting(
        allowed=Allowed(DEVICE_ID.match, "letters, digits, _ and - only, such as kitchen-pi"), factory=default_device_id
    )
    """This device in topic names and Home Assistant ids: letters, digits, _ and -."""
    topic_prefix: str = setting("ser-edge", TOPIC)
    """First level of every topic: {topic_prefix}/{device_id}/..."""
    username: str | None = None
    """User name for the broker, if it requires one."""
    password_file: str | None = None
    """File holding the broker password (one line; the trailing newline is ignored)."""
    tls: bool = False
    """Connect with TLS."""
    ca_file: str | None = None
    """CA certificate bundle (PEM) to verify the broker with TLS; None uses the system's."""
    keepalive_s: int = setting(30, Allowed(lambda v: v >= 5, "5 s or more (30 is usual)"))
    """MQTT keepalive: the broker declares the device gone (and publishes the will) after 1.5 times this."""
    discovery: bool = True
    """Publish Home Assistant MQTT discovery configs so the device appears by itself (false removes the ones published)."""
    discovery_prefix: str = setting("homeassistant", TOPIC)
    """Home Assistant's discovery prefix."""
    support_url: str = setting("", Allowed(lambda v: v == "" or HTTP_URL.match(v) is not None, 'an http:// or https:// address, or ""'))
    """Where a person gets help with this device, shown by Home Assistant (the configs' origin); "" leaves it out."""
    queue_file: str | None = None
    """File that keeps undelivered alerts across restarts; None keeps them in memory only."""
    queue_max: int = setting(1000, Allowed(lambda v: v >= 1, "a whole number of 1 or more"))
    """Most undelivered alert events kept; beyond it the oldest is dropped with a warning."""
    client_id: str | None = None
    """MQTT client id; None means ser-edge-{device_id}."""
    qos: int = setting(1, Allowed(lambda v: v in (0, 1, 2), "0, 1 or 2 (1, at least once, is what keeps alerts)"))
    """QoS of alerts, state and availability; 1 (at least once) is what makes alerts survive outages."""
    publish_windows: bool = False
    """Also publish every classified window (several a second) to {topic_prefix}/{device_id}/window."""

    def check(self) -> None:
        if self.enabled and not self.host:
            raise ConfigError("mqtt.enabled = true is not allowed without a broker: set mqtt.host (or pass --mqtt HOST[:PORT])")
        if self.password_file and not self.username:
            raise refuse("mqtt.password_file", self.password_file, "a password needs a user name: set mqtt.username too")

    @property
    def base_topic(self) -> str:
        return f"{self.topic_prefix}/{self.device_id}"

    def topic(self, leaf: str) -> str:
        """The topic {topic_prefix}/{device_id}/{leaf}."""
        return f"{self.base_topic}/{leaf}"


@dataclass(frozen=True)
class HttpSettings(Checked):
    """[http]: the web page with a live view, served by the running service."""

    SECTION = "http"

    enabled: bool = False
    """Serve the page."""
    host: str = setting(
        "127.0.0.1",
        Allowed(
            _plain_host,
            "an address to listen on, such as 127.0.0.1 (this device only) or 0.0.0.0 (the network, with a token); the port goes in http.port",
        ),
    )
    """Address to listen on; other than loopback needs a token."""
    port: int = setting(8000, PORT)
    """TCP port (0 picks a free one)."""
    token: str = ""
    """Every request must carry this token; "" for none (loopback only)."""
    token_file: str = ""
    """Read the token from this file instead (first line)."""


@dataclass(frozen=True)
class RecordSettings(Checked):
    """[debug]: recording of the audio behind alerts (off by default: no audio leaves memory)."""

    SECTION = "debug"

    record: bool = False
    """Write the audio before each alert to record_dir."""
    record_dir: str = ""
    """Folder for the WAV files, one per alert."""
    record_s: float = setting(15.0, Allowed(lambda v: 0 < v <= 120, "a number of seconds above 0 and at most 120"))
    """Seconds of audio before each alert to write."""

    def check(self) -> None:
        if self.record and not self.record_dir:
            raise ConfigError("debug.record = true is not allowed without a folder: set debug.record_dir (or pass --record-dir)")


@dataclass(frozen=True)
class ProfileSettings(Checked):
    """[profile]: the user's voice profile (``python -m edge enroll``), and whether the service keeps learning it."""

    SECTION = "profile"

    path: str = ""
    """A profile written by ``python -m edge enroll``; "" normalises against the training population."""
    adapt: bool = False
    """Keep learning the voice from the speech heard, and save the profile to ``path`` every ``save_interval_s`` and on stop."""
    time_constant_s: float = setting(7200.0, Allowed(lambda v: 60 <= v <= 10_000_000, "a number of seconds from 60 up (hours are usual)"))
    """Seconds of speech over which older speech fades to 1/e of its weight: hours, so a long angry spell is not the new normal."""
    save_interval_s: float = setting(300.0, between(10, 86_400, "a number of seconds from 10 to 86400"))
    """Seconds between saves of the adapted profile (it is also saved on stop); each save replaces the file atomically."""

    def check(self) -> None:
        if self.adapt and not self.path:
            raise ConfigError("profile.adapt = true is not allowed without a file to keep it in: set profile.path (or pass --profile)")


@dataclass(frozen=True)
class HistorySettings(Checked):
    """[history]: a per-minute record of the verdicts (never audio) in an SQLite database, for trends over days."""

    SECTION = "history"

    enabled: bool = True
    """Keep the history; it needs a place: ``path``, or else the folder of ``mqtt.queue_file``."""
    path: str = ""
    """The SQLite database; "" puts history.sqlite beside mqtt.queue_file (without one, no history is kept)."""
    keep_days: float = setting(90.0, Allowed(lambda v: v > 0, "a number of days above 0 (90 is about three months)"))
    """Minutes older than this many days are deleted (checked at start and every hour)."""
    max_mb: float = setting(100.0, Allowed(lambda v: v >= 1, "a size in MB of 1 or more"))
    """The database is kept under this many MB: beyond it the oldest minutes are deleted (a day of listening takes 0.2-0.6 MB)."""


# --------------------------------------------------------------------------------------------- the service


@dataclass(frozen=True)
class ServiceSettings(Checked):
    """Everything `python -m edge run` needs: one field per table of the config file, and [service]'s own keys."""

    SECTION = "service"

    audio: SourceSettings = field(default_factory=SourceSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    speech: SpeechOverrides = field(default_factory=SpeechOverrides)
    policy: PolicySettings = field(default_factory=PolicySettings)
    output: StdoutSettings = field(default_factory=StdoutSettings)
    gpio: GpioSettings = field(default_factory=GpioSettings)
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    debug: RecordSettings = field(default_factory=RecordSettings)
    profile: ProfileSettings = field(default_factory=ProfileSettings)
    history: HistorySettings = field(default_factory=HistorySettings)
    health_interval_s: float = setting(5.0, between(0.5, 3600, "a number of seconds from 0.5 to 3600"))
    """Seconds between health events."""
