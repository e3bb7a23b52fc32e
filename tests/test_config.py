"""Configuration: the example file documents every key, flags override, bad values give one sentence."""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

import pytest
import tomllib

from edge.service.config import ConfigError, ServiceSettings, keys_documented, load_settings, overrides_from_args, settings_from_dict
from edge.settings import AlertRule, GpioSettings, MqttSettings, SourceSettings, SpeechOverrides
from edge.speech import SpeechSettings
from edge.web.access import http_token

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "systemd" / "config.example.toml"


def run_args(*argv: str) -> argparse.Namespace:
    from edge.cli import build_parser

    return build_parser().parse_args(["run", *argv])


def test_the_example_file_loads_to_exactly_the_defaults():
    # But for the one value the installed service needs: a queue file in its state folder.
    installed = dataclasses.replace(MqttSettings(), queue_file="/var/lib/ser-edge/mqtt-queue.jsonl")
    assert load_settings(EXAMPLE) == dataclasses.replace(ServiceSettings(), mqtt=installed)


def test_the_example_file_documents_every_key():
    text = EXAMPLE.read_text()
    # Keys written as `key = ...` or commented out as `# key = ...`, per section.
    documented: dict[str, set[str]] = {}
    section = ""
    for line in text.splitlines():
        header = re.match(r"^\[([\w.]+)\]", line)
        if header:
            section = "policy.alerts.EMOTION" if header.group(1).startswith("policy.alerts.") else header.group(1)
            continue
        key = re.match(r"^#? ?(\w+) = ", line)
        if key:
            documented.setdefault(section, set()).add(key.group(1))
    for section, keys in keys_documented().items():
        missing = set(keys) - documented.get(section, set())
        assert not missing, f"[{section}] keys missing from {EXAMPLE.name}: {sorted(missing)}"


def test_the_example_enables_mqtt_with_only_host_and_enabled(tmp_path):
    data = tomllib.loads(EXAMPLE.read_text())
    data["mqtt"].update(enabled=True, host="broker.local", device_id="car1")
    settings = settings_from_dict(data)
    assert settings.mqtt.enabled and settings.mqtt.host == "broker.local" and settings.mqtt.device_id == "car1" and settings.mqtt.qos == 1
    assert settings.mqtt.queue_file == "/var/lib/ser-edge/mqtt-queue.jsonl"


def test_policy_tables_override_defaults_add_and_remove_alerts():
    settings = settings_from_dict(
        {
            "policy": {
                "smoothing_windows": 4,
                "cooldown_s": 30,
                "alerts": {"sad": {"enabled": False}, "angry": {"threshold": 0.7}, "happy": {"hold_s": 5}},
            }
        }
    )
    rules = {r.emotion: r for r in settings.policy.rules}
    assert list(rules) == ["angry", "fearful", "happy"]  # the defaults, then the file's own
    assert settings.policy.smoothing_windows == 4
    assert rules["angry"] == AlertRule("angry", threshold=0.7, hold_s=3.0, cooldown_s=30.0)
    assert rules["happy"] == AlertRule("happy", hold_s=5.0, cooldown_s=30.0)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"policy": {"alerts": {"angry": {"threshold": 1.5}}}},
            "policy.alerts.angry.threshold = 1.5 is not allowed: use a number above 0 and at most 1",
        ),
        ({"policy": {"smoothing_windows": 0}}, "policy.smoothing_windows = 0 is not allowed: use a whole number of windows from 1 to 1000"),
        ({"policy": {"smoothing_windows": 2.5}}, "policy.smoothing_windows = 2.5 is not allowed: use a whole number"),
        ({"policy": {"hold_s": "3"}}, "unknown key policy.hold_s"),
        ({"policy": {"alerts": {"angry": {"hold_s": "3"}}}}, 'policy.alerts.angry.hold_s = "3" is not allowed: use a number'),
        (
            {"policy": {"alerts": {"angry": {"hysteresis": 0.6}}}},
            "policy.alerts.angry.hysteresis = 0.6 is not allowed: use a number below the threshold 0.5",
        ),
        ({"policy": {"alerts": {"very angry": {}}}}, "[policy.alerts.very angry] does not name a label"),
        ({"audio": {"rate_hz": 100}}, "audio.rate_hz = 100 is not allowed: use a sample rate from 1000 to 384000 Hz"),
        ({"audio": {"realtime": "yes"}}, 'audio.realtime = "yes" is not allowed: use true or false'),
        ({"audio": {"source": "/no/such/clip.wav"}}, 'audio.source = "/no/such/clip.wav" is not allowed: no such file'),
        ({"audio": {"sorce": "mic"}}, "unknown key audio.sorce; [audio] takes source, device"),
        ({"speech": {"min_speech_ratio": 2}}, "speech.min_speech_ratio = 2 is not allowed: use a number from 0 to 1"),
        ({"gpio": {"enabled": True}}, "gpio.enabled = true is not allowed without a pin"),
        ({"gpio": {"pin": 99}}, "gpio.pin = 99 is not allowed: use a BCM pin number from 0 to 63"),
        ({"gpio": {"kind": "siren"}}, 'gpio.kind = "siren" is not allowed: use one of led, buzzer, output'),
        ({"http": {"port": 70000}}, "http.port = 70000 is not allowed: use a port number from 0 to 65535"),
        ({"debug": {"record": True}}, "debug.record = true is not allowed without a folder"),
        ({"service": {"health_interval_s": 0}}, "service.health_interval_s = 0 is not allowed"),
        ({"mqtt": {"enabled": True}}, "mqtt.enabled = true is not allowed without a broker"),
        ({"mqtt": {"port": "1883"}}, 'mqtt.port = "1883" is not allowed: use a whole number'),
        ({"sinks": {}}, "unknown section [sinks]"),
        ({"mqtt": {"host": "127.0.0.1:1883"}}, 'mqtt.host = "127.0.0.1:1883" is not allowed: use a host name or address such as'),
        ({"mqtt": {"host": "mqtt://broker"}}, "(no mqtt://, and the port in mqtt.port)"),
        ({"http": {"host": ""}}, 'http.host = "" is not allowed: use an address to listen on, such as 127.0.0.1'),
        ({"http": {"host": "not a host"}}, 'http.host = "not a host" is not allowed: use an address to listen on'),
        ({"audio": 5}, "audio = 5 is not allowed: [audio] must be a table"),
    ],
)
def test_bad_values_give_one_sentence_naming_key_value_and_what_is_allowed(data, message):
    with pytest.raises(ConfigError) as info:
        settings_from_dict(data)
    text = str(info.value)
    assert message in text
    assert "\n" not in text


def test_mqtt_values_are_checked_like_every_other_key_even_when_mqtt_is_off():
    with pytest.raises(ConfigError, match=r'^mqtt.device_id = "car 1" is not allowed: use letters, digits, _ and - only'):
        settings_from_dict({"mqtt": {"enabled": True, "host": "b", "device_id": "car 1"}})
    with pytest.raises(ConfigError, match=r"^mqtt.keepalive_s = 2 is not allowed: use 5 s or more"):
        settings_from_dict({"mqtt": {"keepalive_s": 2}})
    with pytest.raises(ConfigError, match=r"^mqtt.port = 0 is not allowed: use a port number from 1 to 65535"):
        settings_from_dict({"mqtt": {"port": 0}})
    with pytest.raises(ConfigError, match='mqtt.password_file = "/nope" is not allowed: no such file'):
        settings_from_dict({"mqtt": {"enabled": True, "host": "b", "username": "u", "password_file": "/nope"}})


def test_file_errors_are_one_sentence(tmp_path):
    with pytest.raises(ConfigError, match="config file .*missing.toml not found"):
        load_settings(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[audio\nsource = 1\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_settings(bad)


def test_flags_override_the_file(tmp_path, data_dir):
    clip = str(data_dir / "ravdess/Actor_01/03-01-05-02-01-01-01.flac")
    config = tmp_path / "c.toml"
    config.write_text('[audio]\nsource = "-"\nrate_hz = 8000\n[output]\nverbose = false\n[policy]\nsmoothing_windows = 3\n')
    settings = load_settings(config, overrides_from_args(run_args("--source", clip, "--realtime", "-v", "--gpio-pin", "GPIO17")))
    assert settings.audio.source == clip and settings.audio.realtime and settings.audio.rate_hz == 8000
    assert settings.output.verbose
    assert settings.gpio.enabled and settings.gpio.pin == "GPIO17"
    assert settings.policy.smoothing_windows == 3
    numeric = load_settings(
        None, overrides_from_args(run_args("--gpio-pin", "17", "--http", "0.0.0.0:8080", "--record-dir", str(tmp_path)))
    )
    assert numeric.gpio.pin == "17"
    assert (numeric.http.enabled, numeric.http.host, numeric.http.port) == (True, "0.0.0.0", 8080)
    assert numeric.debug.record and numeric.debug.record_dir == str(tmp_path)


def test_bad_flag_values_are_reported_with_the_key_they_set():
    with pytest.raises(ConfigError, match="audio.rate_hz = 5 is not allowed"):
        load_settings(None, overrides_from_args(run_args("--source", "-", "--rate", "5")))
    with pytest.raises(ConfigError, match="--http localhost:http is not allowed: the port must be a number"):
        overrides_from_args(run_args("--http", "localhost:http"))


def test_mqtt_flags_build_mqtt_settings():
    settings = load_settings(
        None, overrides_from_args(run_args("--mqtt", "broker.local:1884", "--mqtt-prefix", "cars", "--device-id", "car1"))
    )
    m = settings.mqtt
    assert (m.enabled, m.host, m.port, m.topic_prefix, m.device_id) == (True, "broker.local", 1884, "cars", "car1")
    assert not load_settings(None, {}).mqtt.enabled
    assert load_settings(None, overrides_from_args(run_args("--mqtt", "[::1]"))).mqtt.host == "::1"
    with pytest.raises(ConfigError, match="--mqtt  is not allowed: use HOST or HOST:PORT"):
        overrides_from_args(run_args("--mqtt", ""))


def test_a_web_token_too_weak_to_guard_the_page_is_refused_without_showing_it(tmp_path):
    """`run --http` reads its token as `serve --token-file` does: the first line, at least 16 characters."""
    with pytest.raises(ConfigError, match=r"^http.token is not allowed: the \[http\] token has 6 characters; use at least 16") as info:
        settings_from_dict({"http": {"enabled": True, "host": "0.0.0.0", "token": "hunter"}})
    assert "hunter" not in str(info.value)  # the journal must not learn the token
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match=r'^http.token_file = ".*empty" is not allowed: the token file .* is empty'):
        settings_from_dict({"http": {"enabled": True, "token_file": str(empty)}})
    with pytest.raises(ConfigError, match=r'http.token_file = ".*missing" is not allowed: cannot read the token file'):
        settings_from_dict({"http": {"enabled": True, "token_file": str(tmp_path / "missing")}})
    good = tmp_path / "token"
    good.write_text("  0123456789abcdef-token  \nsecond line\n")
    good.chmod(0o600)
    assert http_token(settings_from_dict({"http": {"enabled": True, "token_file": str(good)}}).http) == "0123456789abcdef-token"
    assert http_token(settings_from_dict({"http": {"enabled": True, "token": " 0123456789abcdef "}}).http) == "0123456789abcdef"
    assert http_token(settings_from_dict({"http": {"enabled": True}}).http) is None


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[speech]\nthreshold_dbfs = 6.0", "speech.threshold_dbfs = 6.0 is not allowed: use a level of 0 dBFS (full scale) or below"),
        ("[speech]\nthreshold_dbfs = nan", "speech.threshold_dbfs = nan is not allowed: use a finite number"),
        ("[speech]\nmargin_db = inf", "speech.margin_db = inf is not allowed: use a finite number"),
        ("[policy]\nrelease_s = inf", "policy.release_s = inf is not allowed: use a finite number"),
        ("[policy.alerts.angry]\ncooldown_s = inf", "policy.alerts.angry.cooldown_s = inf is not allowed: use a finite number"),
    ],
)
def test_levels_above_full_scale_and_infinite_or_nan_numbers_are_refused(toml, message):
    """No window would ever be speech, or an alert would never end: silently, for the life of the service."""
    with pytest.raises(ConfigError) as info:
        settings_from_dict(tomllib.loads(toml))
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: SourceSettings(rate_hz=5), "audio.rate_hz = 5 is not allowed: use a sample rate from 1000 to 384000 Hz"),
        (lambda: AlertRule("angry", threshold=0.3, hysteresis=0.3), "policy.alerts.angry.hysteresis = 0.3 is not allowed"),
        (lambda: GpioSettings(pin_factory="wiringpi"), 'gpio.pin_factory = "wiringpi" is not allowed: use one of mock, lgpio'),
        (lambda: MqttSettings(host="a b"), 'mqtt.host = "a b" is not allowed: use a host name or address'),
        (lambda: MqttSettings(host="h", password_file="/p"), 'mqtt.password_file = "/p" is not allowed: a password needs a user name'),
    ],
)
def test_settings_made_in_code_are_checked_as_the_file_is(make, message):
    """One check per value, wherever the settings come from: the sinks never see a value the file could not hold."""
    with pytest.raises(ConfigError) as info:
        make()
    assert str(info.value).startswith(message)


def test_speech_overrides_only_the_keys_written_and_the_model_gives_the_rest():
    trained = SpeechSettings(threshold_dbfs=-55.0, margin_db=9.0, min_speech_ratio=0.4)
    assert load_settings(None, {}).speech.over(trained) == trained  # nothing written: the model's own gate
    written = settings_from_dict(tomllib.loads("[speech]\nmargin_db = 6\n")).speech
    assert written.over(trained) == SpeechSettings(threshold_dbfs=-55.0, margin_db=6.0, min_speech_ratio=0.4)
    assert [f.name for f in dataclasses.fields(SpeechOverrides)] == [f.name for f in dataclasses.fields(SpeechSettings)]


def test_an_int_written_for_a_number_becomes_a_float_and_a_bcm_pin_a_string():
    settings = settings_from_dict({"policy": {"cooldown_s": 30}, "gpio": {"pin": 17}, "audio": {"device": 2}})
    assert isinstance(settings.policy.rules[0].cooldown_s, float) and settings.gpio.pin == "17"
    assert settings.audio.device == "2", "a device index as `devices` lists it"
    ipv6 = settings_from_dict({"mqtt": {"host": "fe80::1"}, "http": {"host": "::"}})
    assert (ipv6.mqtt.host, ipv6.http.host) == ("fe80::1", "::")
