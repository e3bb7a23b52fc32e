"""The service's configuration: one TOML file, command-line flags on top, frozen settings out.

Everything is checked before anything starts. A wrong key or value raises ConfigError with
one sentence naming the key, the value and what is allowed; the service then exits with
status 2 without opening the microphone or any connection. Every key is documented in
systemd/config.example.toml (a test checks that the two agree).

Flags are applied to the parsed TOML as if they had been written in it, so a bad flag value
is reported with the key it sets.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import tomllib

from edge.model import LABEL
from edge.service.gpio_sink import GPIO_KINDS, GpioSettings
from edge.service.policy import AlertRule, PolicySettings
from edge.service.recorder import RecordSettings
from edge.service.sources import SourceSettings
from edge.service.stdout_sink import StdoutSettings
from edge.speech import SpeechSettings

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A configuration the service refuses, with one sentence naming the key, the value and what is allowed."""


@dataclass(frozen=True)
class ModelSettings:
    """Which model classifies the audio."""

    path: str = ""
    """A .tflite file with its .json beside it; "" for the shipped model."""
    threads: int = 1
    """Interpreter threads."""


@dataclass(frozen=True)
class HttpSettings:
    """The web page with a live view, served by the running service."""

    enabled: bool = False
    """Serve the page."""
    host: str = "127.0.0.1"
    """Address to listen on; other than loopback needs a token."""
    port: int = 8000
    """TCP port."""
    token: str = ""
    """Every request must carry this token; "" for none (loopback only)."""
    token_file: str = ""
    """Read the token from this file instead (first line)."""


@dataclass(frozen=True)
class ServiceSettings:
    """Everything `python -m edge run` needs, validated."""

    audio: SourceSettings = field(default_factory=SourceSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    speech: SpeechSettings = field(default_factory=SpeechSettings)
    policy: PolicySettings = field(default_factory=PolicySettings)
    output: StdoutSettings = field(default_factory=StdoutSettings)
    gpio: GpioSettings = field(default_factory=GpioSettings)
    mqtt: object | None = None
    """edge.service.mqtt.MqttSettings when [mqtt] is enabled, else None."""
    http: HttpSettings = field(default_factory=HttpSettings)
    debug: RecordSettings = field(default_factory=RecordSettings)
    health_interval_s: float = 5.0
    """Seconds between health events."""

    def http_token(self) -> str | None:
        """The web token from [http] token_file (its first line) or token, or None for no token.

        ValueError with one sentence if the file cannot be read or the token is too short to guard a page.
        """
        if self.http.token_file:
            return read_token(self.http.token_file)
        if not self.http.token:
            return None
        return _strong_token(self.http.token.strip(), "the [http] token")


MIN_TOKEN_CHARS = 16  # 16 characters of base64 are 96 bits: beyond guessing over a network


def read_token(path: str) -> str:
    """The web token in a file (its first line, surrounding whitespace ignored); ValueError with one sentence if unusable."""
    try:
        info = os.stat(path)
        with open(path, encoding="utf-8") as f:
            lines = f.read().strip().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read the token file {path} ({getattr(exc, 'strerror', None) or exc})") from None
    if not lines:
        raise ValueError(f"the token file {path} is empty; put a long random string in it")
    token = _strong_token(lines[0].strip(), f"the token in {path}")
    if info.st_mode & (stat.S_IRGRP | stat.S_IROTH):
        log.warning("the token file %s is readable by other users; chmod 600 it", path)
    return token


def _strong_token(token: str, what: str) -> str:
    if len(token) < MIN_TOKEN_CHARS:
        raise ValueError(f"{what} has {len(token)} characters; use at least {MIN_TOKEN_CHARS} (e.g. head -c 24 /dev/urandom | base64)")
    return token


# Rules for the values a key may take: (test, what is allowed). Keys not listed need only the right type.
POSITIVE = (lambda v: v > 0, "a number above 0")
NON_NEGATIVE = (lambda v: v >= 0, "a number of 0 or more")
PROBABILITY = (lambda v: 0 < v <= 1, "a number above 0 and at most 1")
RATIO = (lambda v: 0 <= v <= 1, "a number from 0 to 1")
PORT = (lambda v: 0 <= v <= 65535, "a port number from 0 to 65535")
CHECKS: dict[str, dict[str, tuple]] = {
    "audio": {
        "source": (lambda v: v != "", '"mic", "-" for stdin, or an audio file path'),
        "rate_hz": (lambda v: 1000 <= v <= 384000, "a sample rate from 1000 to 384000 Hz"),
        "channels": (lambda v: 1 <= v <= 32, "a channel count from 1 to 32"),
        "chunk_ms": (lambda v: 10 <= v <= 1000, "a chunk length from 10 to 1000 ms"),
    },
    "model": {"threads": (lambda v: 1 <= v <= 64, "a thread count from 1 to 64")},
    "speech": {
        "threshold_dbfs": (lambda v: v <= 0, "a level of 0 dBFS (full scale) or below"),
        "min_speech_ratio": RATIO,
        "margin_db": NON_NEGATIVE,
        "floor_rise_db_per_s": NON_NEGATIVE,
    },
    "policy": {
        "smoothing_windows": (lambda v: 1 <= v <= 1000, "a whole number of windows from 1 to 1000"),
        "silence_s": NON_NEGATIVE,
        "reset_after_silence_s": NON_NEGATIVE,
        "threshold": PROBABILITY,
        "hysteresis": (lambda v: 0 <= v < 1, "a number from 0 to below 1 (and below the threshold)"),
        "release_s": NON_NEGATIVE,
        "cooldown_s": NON_NEGATIVE,
        "hold_s": NON_NEGATIVE,
    },
    "gpio": {"kind": (lambda v: v in GPIO_KINDS, "one of " + ", ".join(GPIO_KINDS))},
    "mqtt": {"port": PORT, "qos": (lambda v: v in (0, 1, 2), "0, 1 or 2"), "keepalive_s": POSITIVE, "queue_max": POSITIVE},
    "http": {"port": PORT},
    "debug": {"record_s": (lambda v: 0 < v <= 120, "a number of seconds above 0 and at most 120")},
    "service": {"health_interval_s": (lambda v: 0.5 <= v <= 3600, "a number of seconds from 0.5 to 3600")},
}

# [policy] keys that are defaults for every [policy.alerts.EMOTION] table.
RULE_KEYS = ("threshold", "hold_s", "hysteresis", "release_s", "cooldown_s")
POLICY_KEYS = (
    "smoothing_windows",
    "silence_s",
    "reset_after_silence_s",
    "threshold",
    "hysteresis",
    "release_s",
    "cooldown_s",
)  # plus the [policy.alerts.EMOTION] tables
# The driver-monitoring alerts that exist unless a table turns them off with enabled = false.
DEFAULT_ALERTS = {r.emotion: {"hold_s": r.hold_s} for r in PolicySettings().rules}
SECTIONS = ("audio", "model", "speech", "policy", "output", "gpio", "mqtt", "http", "debug", "service")


def read_toml(path: str | Path) -> dict:
    """The parsed file; ConfigError if it is missing or not TOML."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a folder, not a file") from None
    except PermissionError:
        raise ConfigError(f"config file {path} cannot be read (permission denied)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML ({exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None


def merge(base: dict, overrides: dict) -> dict:
    """A copy of ``base`` with ``overrides`` (nested tables) written over it."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_settings(path: str | Path | None = None, overrides: dict | None = None) -> ServiceSettings:
    """Read the TOML file (if any), apply the flag overrides, validate everything."""
    data = read_toml(path) if path else {}
    return settings_from_dict(merge(data, overrides or {}))


def settings_from_dict(data: dict) -> ServiceSettings:
    """Validated settings from parsed TOML; ConfigError on the first problem."""
    if not isinstance(data, dict):
        raise ConfigError("the configuration must be a TOML table")
    for section, value in data.items():
        if section not in SECTIONS:
            raise ConfigError(f"unknown section [{section}]; the sections are {', '.join(SECTIONS)}")
        if not isinstance(value, dict):
            raise ConfigError(f"{section} = {_show(value)} is not allowed: [{section}] must be a table of keys")
    service = _build("service", data.get("service", {}), None, {"health_interval_s": 5.0})
    speech = _build("speech", data.get("speech", {}), SpeechSettings)
    settings = ServiceSettings(
        audio=_build("audio", data.get("audio", {}), SourceSettings),
        model=_build("model", data.get("model", {}), ModelSettings),
        speech=speech,
        policy=_policy(data.get("policy", {})),
        output=_build("output", data.get("output", {}), StdoutSettings),
        gpio=_gpio(data.get("gpio", {})),
        mqtt=_mqtt(data.get("mqtt", {})),
        http=_build("http", data.get("http", {}), HttpSettings),
        debug=_build("debug", data.get("debug", {}), RecordSettings),
        health_interval_s=service["health_interval_s"],
    )
    if settings.http.enabled:
        try:
            settings.http_token()
        except ValueError as exc:  # never show the token itself: the message goes to the journal
            key = f"http.token_file = {_show(settings.http.token_file)}" if settings.http.token_file else "http.token"
            raise ConfigError(f"{key} is not allowed: {exc}") from None
    if settings.debug.record and not settings.debug.record_dir:
        raise ConfigError("debug.record = true is not allowed without a folder: set debug.record_dir (or pass --record-dir)")
    if settings.audio.kind == "file" and not Path(settings.audio.source).is_file():
        raise ConfigError(f'audio.source = {_show(settings.audio.source)} is not allowed: no such file (use "mic", "-" or an audio file)')
    return settings


def _defaults(cls) -> dict:
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
        else:
            out[f.name] = None  # a required field: TOML has no null, so it takes a string
    return out


def _check_value(key: str, value, default, check: tuple | None):
    """Type by the default's type (bool strict, int accepted for float, None accepts str), then the range check."""
    kind = type(default)
    if default is None:
        ok, allowed = isinstance(value, str), "a string"
    elif kind is bool:
        ok, allowed = isinstance(value, bool), "true or false"
    elif kind is int:
        ok, allowed = isinstance(value, int) and not isinstance(value, bool), "a whole number"
    elif kind is float:
        ok, allowed = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
        if ok and not math.isfinite(value):  # TOML has inf and nan: unchecked keys take nan, "0 or more" takes inf
            ok, allowed = False, "a finite number"
    elif kind is str:
        ok, allowed = isinstance(value, str), "a string"
    else:
        ok, allowed = True, ""
    if ok and check is not None:
        ok, allowed = bool(check[0](value)), check[1]
    if not ok:
        raise ConfigError(f"{key} = {_show(value)} is not allowed: use {allowed}")
    return float(value) if kind is float else value


def _show(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def _build(section: str, table: dict, cls, defaults: dict | None = None, checks: dict | None = None):
    """Check a table against the fields of ``cls`` (or ``defaults``) and construct it."""
    defaults = _defaults(cls) if defaults is None else defaults
    checks = CHECKS.get(section, {}) if checks is None else checks
    values = {}
    for key, value in table.items():
        if key not in defaults:
            raise ConfigError(f"unknown key {section}.{key}; [{section}] takes {', '.join(defaults)}")
        values[key] = _check_value(f"{section}.{key}", value, defaults[key], checks.get(key))
    if cls is None:
        return {**defaults, **values}
    try:
        return cls(**values)
    except ValueError as exc:
        raise ConfigError(f"[{section}]: {exc}") from None


def _policy(table: dict) -> PolicySettings:
    base = PolicySettings()
    defaults = {
        "smoothing_windows": base.smoothing_windows,
        "silence_s": base.silence_s,
        "reset_after_silence_s": base.reset_after_silence_s,
        **{k: getattr(AlertRule("angry"), k) for k in RULE_KEYS if k != "hold_s"},
        "alerts": {},
    }
    common = _build("policy", {k: v for k, v in table.items() if k != "alerts"}, None, defaults)
    alerts = table.get("alerts", {})
    if not isinstance(alerts, dict):
        raise ConfigError(f"policy.alerts = {_show(alerts)} is not allowed: use tables [policy.alerts.EMOTION]")
    wanted = {e: dict(v) for e, v in DEFAULT_ALERTS.items()}
    for emotion, rule in alerts.items():
        if not LABEL.match(emotion):
            raise ConfigError(f"[policy.alerts.{emotion}] does not name a label (letters, digits, '_' or '-', as the model's labels)")
        if not isinstance(rule, dict):
            raise ConfigError(f"policy.alerts.{emotion} = {_show(rule)} is not allowed: use a table [policy.alerts.{emotion}]")
        wanted[emotion] = {**wanted.get(emotion, {}), **rule}
    rule_defaults = {"enabled": True, "hold_s": AlertRule("angry").hold_s, **{k: common[k] for k in RULE_KEYS if k != "hold_s"}}
    rules = []
    for emotion in wanted:  # the defaults' order, then the file's
        values = _build(f"policy.alerts.{emotion}", wanted[emotion], None, rule_defaults, CHECKS["policy"])
        if not values.pop("enabled"):
            continue
        if values["hysteresis"] >= values["threshold"]:
            raise ConfigError(
                f"policy.alerts.{emotion}.hysteresis = {values['hysteresis']} is not allowed: "
                f"use a number below the threshold {values['threshold']}"
            )
        rules.append(AlertRule(emotion, **values))
    try:
        return PolicySettings(
            smoothing_windows=common["smoothing_windows"],
            silence_s=common["silence_s"],
            reset_after_silence_s=common["reset_after_silence_s"],
            rules=tuple(rules),
            named=tuple(alerts),
        )
    except ValueError as exc:
        raise ConfigError(f"[policy] is not allowed: {exc}") from None


def _gpio(table: dict) -> GpioSettings:
    table = dict(table)
    pin = table.pop("pin", "")
    if isinstance(pin, bool) or not isinstance(pin, (int, str)) or (isinstance(pin, int) and not 0 <= pin <= 63):
        raise ConfigError(f'gpio.pin = {_show(pin)} is not allowed: use a BCM pin number from 0 to 63 or a gpiozero pin name like "GPIO17"')
    settings = _build("gpio", table, GpioSettings)
    settings = dataclasses.replace(settings, pin=str(pin))
    if settings.enabled and not settings.pin:
        raise ConfigError('gpio.enabled = true is not allowed without a pin: set gpio.pin (e.g. 17 or "GPIO17")')
    return settings


def _mqtt(table: dict):
    """MqttSettings (from part B's edge.service.mqtt) when enabled, else None after checking the keys."""
    table = dict(table)
    enabled = table.pop("enabled", False)
    if not isinstance(enabled, bool):
        raise ConfigError(f"mqtt.enabled = {_show(enabled)} is not allowed: use true or false")
    try:
        from edge.service.mqtt import MqttSettings
    except ImportError as exc:
        if enabled:
            raise ConfigError(f"mqtt.enabled = true is not allowed: the MQTT sink cannot be imported ({exc})") from None
        return None
    if not enabled:
        _build("mqtt", table, None, _defaults(MqttSettings))  # still check the keys and their types
        return None
    if not table.get("host"):
        raise ConfigError("mqtt.enabled = true is not allowed without a broker: set mqtt.host (or pass --mqtt HOST[:PORT])")
    for key in ("password_file", "ca_file"):
        if table.get(key) and not Path(table[key]).is_file():
            raise ConfigError(f"mqtt.{key} = {_show(table[key])} is not allowed: the file does not exist")
    return _build("mqtt", table, MqttSettings)


def overrides_from_args(args) -> dict:
    """The TOML keys that command-line flags set (only flags that were given)."""
    out: dict[str, dict] = {}

    def put(section: str, key: str, value) -> None:
        if value is not None:
            out.setdefault(section, {})[key] = value

    put("audio", "source", getattr(args, "source", None))
    put("audio", "device", getattr(args, "device", None))
    put("audio", "rate_hz", getattr(args, "rate", None))
    put("audio", "channels", getattr(args, "channels", None))
    put("audio", "realtime", True if getattr(args, "realtime", False) else None)
    put("audio", "loop", True if getattr(args, "loop", False) else None)
    put("model", "path", getattr(args, "model", None))
    put("model", "threads", getattr(args, "threads", None))
    put("output", "verbose", True if getattr(args, "verbose", False) else None)
    if getattr(args, "gpio_pin", None) is not None:
        pin = args.gpio_pin
        put("gpio", "pin", int(pin) if pin.isdigit() else pin)
        put("gpio", "enabled", True)
    if getattr(args, "mqtt", None):
        host, port = split_host_port(args.mqtt, "--mqtt", None)
        put("mqtt", "enabled", True)
        put("mqtt", "host", host)
        put("mqtt", "port", port)
    put("mqtt", "topic_prefix", getattr(args, "mqtt_prefix", None))
    put("mqtt", "device_id", getattr(args, "device_id", None))
    if getattr(args, "http", None):
        host, port = split_host_port(args.http, "--http", 8000)
        put("http", "enabled", True)
        put("http", "host", host)
        put("http", "port", port)
    if getattr(args, "record_dir", None):
        put("debug", "record", True)
        put("debug", "record_dir", args.record_dir)
    return out


def split_host_port(text: str, flag: str, default_port: int | None) -> tuple[str, int | None]:
    """'host', 'host:1883', '[::1]:1883' -> (host, port or default); ConfigError if the port is not a number."""
    host, port = text, None
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else None
    elif text.count(":") == 1:
        host, port = text.split(":")
    if not host:
        raise ConfigError(f"{flag} {text} is not allowed: use HOST or HOST:PORT")
    if port is None:
        return host, default_port
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{flag} {text} is not allowed: the port must be a number from 0 to 65535")
    return host, int(port)


def keys_documented() -> dict[str, tuple[str, ...]]:
    """Every key each section takes (for the example file's test and for --help)."""
    out = {
        "audio": tuple(_defaults(SourceSettings)),
        "model": tuple(_defaults(ModelSettings)),
        "speech": tuple(_defaults(SpeechSettings)),
        "policy": POLICY_KEYS,
        "policy.alerts.EMOTION": ("enabled", *RULE_KEYS),
        "output": tuple(_defaults(StdoutSettings)),
        "gpio": tuple(_defaults(GpioSettings)),
        "http": tuple(_defaults(HttpSettings)),
        "debug": tuple(_defaults(RecordSettings)),
        "service": ("health_interval_s",),
    }
    try:
        from edge.service.mqtt import MqttSettings

        out["mqtt"] = ("enabled", *_defaults(MqttSettings))
    except ImportError:
        out["mqtt"] = ("enabled",)
    return out
