"""The service's configuration: one TOML file, command-line flags on top, ``edge.settings`` out.

Every value is checked by its settings class in ``edge.settings``; this module reads the file,
maps the flags onto its keys, builds the tables, and checks what needs the disk (the audio file,
the MQTT password and CA files, the web token). A wrong key or value raises ConfigError with one
sentence naming the key, the value and what is allowed; the service then exits with status 2
without opening the microphone or any connection. Every key is documented in
systemd/config.example.toml (a test checks that the two agree).

Flags are applied to the parsed TOML as if they had been written in it, so a bad flag value
is reported with the key it sets.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from pathlib import Path

import tomllib

from edge.checks import Checked, ConfigError, checked, refuse, show
from edge.files import NotRegularFileError, read_regular, what_is, why
from edge.history import EXAMPLE_PATH as HISTORY_EXAMPLE
from edge.history import database_path
from edge.model import LABEL
from edge.service.queue import EXAMPLE_PATH
from edge.settings import (
    AlertDefaults,
    AlertRule,
    GpioSettings,
    HistorySettings,
    HttpSettings,
    ModelSettings,
    MqttSettings,
    PolicySettings,
    ProfileSettings,
    RecordSettings,
    ServiceSettings,
    SourceSettings,
    SpeechOverrides,
    StdoutSettings,
)
from edge.web.access import http_token

__all__ = ["ConfigError", "ServiceSettings", "keys_documented", "load_settings", "overrides_from_args", "settings_from_dict"]

# The tables of the file and the settings class each one makes; [policy] and [service] are assembled below.
TABLES: dict[str, type[Checked]] = {
    "audio": SourceSettings,
    "model": ModelSettings,
    "speech": SpeechOverrides,
    "output": StdoutSettings,
    "gpio": GpioSettings,
    "mqtt": MqttSettings,
    "http": HttpSettings,
    "debug": RecordSettings,
    "profile": ProfileSettings,
    "history": HistorySettings,
}
SECTIONS = ("audio", "model", "speech", "profile", "policy", "output", "gpio", "mqtt", "http", "debug", "history", "service")
RULE_KEYS = ("enabled", *(f.name for f in dataclasses.fields(AlertRule) if f.name != "emotion"))
RULE_DEFAULT_KEYS = tuple(f.name for f in dataclasses.fields(AlertDefaults))  # [policy] keys every alert starts from
POLICY_KEYS = ("smoothing_windows", "silence_s", "reset_after_silence_s", *RULE_DEFAULT_KEYS)  # and [policy.alerts.EMOTION] tables
# The driver-monitoring alerts that exist unless a table turns them off with enabled = false.
DEFAULT_ALERTS = {r.emotion: {"hold_s": r.hold_s} for r in PolicySettings().rules}


def read_toml(path: str | Path) -> dict:
    """The parsed file; ConfigError if it is missing, not a regular file, or not TOML (a FIFO is refused, never waited on)."""
    try:
        return tomllib.loads(read_regular(path).decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except NotRegularFileError:
        raise ConfigError(f"config file {path} is {what_is(path)}, not a file; give the path of a TOML file") from None
    except PermissionError:
        raise ConfigError(f"config file {path} cannot be read (permission denied); make it readable by this user") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read ({why(exc)}); check the path and the disk") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML ({exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text; save it as UTF-8") from None


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
    """Read the TOML file (if any), apply the flag overrides, check everything."""
    data = read_toml(path) if path else {}
    return settings_from_dict(merge(data, overrides or {}))


def settings_from_dict(data: dict) -> ServiceSettings:
    """Checked settings from parsed TOML; ConfigError on the first problem."""
    if not isinstance(data, dict):
        raise ConfigError("the configuration must be a TOML table")
    for section, value in data.items():
        if section not in SECTIONS:
            raise ConfigError(f"unknown section [{section}]; the sections are {', '.join(SECTIONS)}")
        if not isinstance(value, dict):
            raise ConfigError(f"{section} = {show(value)} is not allowed: [{section}] must be a table of keys")
    tables = {name: _table(name, data.get(name, {}), cls) for name, cls in TABLES.items()}
    service = _keys("service", data.get("service", {}), ("health_interval_s",))
    settings = ServiceSettings(**tables, policy=_policy(data.get("policy", {})), **service)
    _check_files(settings)
    return settings


def _keys(section: str, table: dict, known) -> dict:
    """``table`` itself, after refusing a key not in ``known``."""
    known = tuple(known)
    for key in table:
        if key not in known:
            raise ConfigError(f"unknown key {section}.{key}; [{section}] takes {', '.join(known)}")
    return table


def _table(section: str, table: dict, cls: type[Checked]) -> Checked:
    return cls(**_keys(section, table, (f.name for f in dataclasses.fields(cls))))


def _policy(table: dict) -> PolicySettings:
    """[policy] and its [policy.alerts.EMOTION] tables: the default alerts, changed, removed or added to by the file."""
    _keys("policy", table, (*POLICY_KEYS, "alerts"))
    written = {k: v for k, v in table.items() if k in RULE_DEFAULT_KEYS}
    _hysteresis_below_threshold("", {**dataclasses.asdict(AlertDefaults()), **written}, {}, table)
    defaults = AlertDefaults(**written)
    alerts = table.get("alerts", {})
    if not isinstance(alerts, dict):
        raise refuse("policy.alerts", alerts, "use tables [policy.alerts.EMOTION]")
    wanted = {e: dict(v) for e, v in DEFAULT_ALERTS.items()}
    for emotion, rule in alerts.items():
        if not LABEL.match(emotion):
            raise ConfigError(f"[policy.alerts.{emotion}] does not name a label (letters, digits, '_' or '-', as the model's labels)")
        if not isinstance(rule, dict):
            raise refuse(f"policy.alerts.{emotion}", rule, f"use a table [policy.alerts.{emotion}]")
        wanted[emotion] = {**wanted.get(emotion, {}), **_keys(f"policy.alerts.{emotion}", rule, RULE_KEYS)}
    rules = []
    for emotion, values in wanted.items():  # the defaults' order, then the file's
        values = dict(values)
        if checked(f"policy.alerts.{emotion}.enabled", values.pop("enabled", True), "bool"):
            merged = {**dataclasses.asdict(defaults), **values}
            _hysteresis_below_threshold(emotion, merged, alerts.get(emotion, {}), table)
            rules.append(AlertRule(emotion, **merged))
    return PolicySettings(
        **{k: v for k, v in table.items() if k in POLICY_KEYS and k not in RULE_DEFAULT_KEYS},
        rules=tuple(rules),
        named=tuple(alerts),
    )


def _hysteresis_below_threshold(emotion: str, merged: dict, rule: dict, policy: dict) -> None:
    """Refuse a hysteresis at or above its threshold naming the key the file wrote (the rule's own, or [policy]'s).

    Checked here, where it is known which table wrote which value; AlertRule only knows the values.
    """
    threshold, hysteresis = merged.get("threshold"), merged.get("hysteresis")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (threshold, hysteresis)) or hysteresis < threshold:
        return  # a wrong type is refused, naming its key, by AlertRule itself
    which = f" of the {emotion} alert" if emotion else ""
    if "hysteresis" in rule or ("threshold" not in rule and "hysteresis" in policy):
        key = f"policy.alerts.{emotion}.hysteresis" if "hysteresis" in rule else "policy.hysteresis"
        raise refuse(key, hysteresis, f"use a number below the threshold {threshold}{which}")
    key = f"policy.alerts.{emotion}.threshold" if "threshold" in rule else "policy.threshold"
    raise refuse(key, threshold, f"use a number above the hysteresis {hysteresis}{which} (or lower the hysteresis)")


def _check_files(settings: ServiceSettings) -> None:
    """What the values name on disk: the audio file, the MQTT files, the web token, the voice profile; nothing is opened."""
    if settings.audio.kind == "file":
        _need_file("audio.source", settings.audio.source, 'use "mic", "-" or an audio file')
    if settings.mqtt.enabled:
        for key in ("password_file", "ca_file"):
            path = getattr(settings.mqtt, key)
            if path:
                _need_file(f"mqtt.{key}", path, "give the path of a file")
        queue_file = settings.mqtt.queue_file
        kind = what_is(queue_file) if queue_file else None
        if kind is not None:  # the queue is saved by renaming over the path: that would replace a device or a FIFO
            raise refuse("mqtt.queue_file", queue_file, f"it is {kind}, not a regular file; give a file name such as {EXAMPLE_PATH}")
    profile = settings.profile
    if profile.path and not (profile.adapt and not os.path.exists(profile.path)):
        # Adapting may start a profile of its own where none is yet; anything else needs one made by enroll.
        _need_file("profile.path", profile.path, "make one with `python -m edge enroll --out PATH`")
    history = database_path(settings)
    kind = what_is(history) if history else None
    if kind is not None and settings.history.path:  # SQLite would fail on it at every write
        raise refuse("history.path", history, f"it is {kind}, not a regular file; give a file name such as {HISTORY_EXAMPLE}")
    if kind is not None:
        raise ConfigError(f"the history database beside mqtt.queue_file, {history}, is {kind}; move it away or set history.path to a file")
    if settings.http.enabled:
        try:
            http_token(settings.http)
        except ValueError as exc:  # never show the token itself: the message goes to the journal
            key = f"http.token_file = {show(settings.http.token_file)}" if settings.http.token_file else "http.token"
            raise ConfigError(f"{key} is not allowed: {exc}") from None


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
    put("profile", "path", getattr(args, "profile", None))
    put("output", "verbose", True if getattr(args, "verbose", False) else None)
    if getattr(args, "gpio_pin", None) is not None:
        put("gpio", "pin", int(args.gpio_pin) if args.gpio_pin.isdigit() else args.gpio_pin)
        put("gpio", "enabled", True)
    if getattr(args, "mqtt", None) is not None:  # "" too: refused below, not taken for "off"
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


def keys_documented() -> dict[str, tuple[str, ...]]:
    """Every key each section takes (for the example file's test)."""
    out = {name: tuple(f.name for f in dataclasses.fields(cls)) for name, cls in TABLES.items()}
    return {**out, "policy": POLICY_KEYS, "policy.alerts.EMOTION": RULE_KEYS, "service": ("health_interval_s",)}


def _need_file(key: str, path: str, fix: str) -> None:
    """ConfigError naming ``key`` unless ``path`` is a regular file (or a symlink to one)."""
    kind = what_is(path)
    if kind is not None:
        raise refuse(key, path, f"it is {kind}, not a file; {fix}")
    if not Path(path).exists():
        raise refuse(key, path, f"no such file; {fix}")
    if not os.access(path, os.R_OK):
        raise refuse(key, path, "this user cannot read it (permission denied); make it readable (chmod, chgrp) or choose another")


def split_host_port(text: str, what: str, default_port: int | None) -> tuple[str, int | None]:
    """'host', 'host:1883', '[::1]:1883' -> (host, port or ``default_port``); ConfigError naming ``what`` otherwise."""
    host, port = text, None
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else None
    elif text.count(":") == 1:
        host, port = text.split(":")
    if not host:
        raise ConfigError(f"{what} {text} is not allowed: use HOST or HOST:PORT")
    if port is None:
        return host, default_port
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{what} {text} is not allowed: the port must be a number from 0 to 65535")
    return host, int(port)
