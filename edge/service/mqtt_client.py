"""Reaching an MQTT broker: paho checked, the password and CA files read, a fresh paho client per connection.

Everything here is checked when the sink is built, so a wrong file or a missing paho is one
sentence (MqttConfigError) at start-up, not a traceback in the connection thread later. paho is
imported only when MQTT is on: the service runs without it otherwise.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

from edge.files import NotRegularFileError, read_regular, refuse_unless_regular, why
from edge.settings import ConfigError, MqttSettings

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
"""How long to wait for the TCP connection and then for the broker's CONNACK."""


class MqttConfigError(ConfigError):
    """A file of the MQTT sink (password, CA certificate) or paho itself cannot be used; one sentence naming it and the fix."""


def read_password(path: str | Path) -> str:
    """The password in ``path`` without its trailing newline; MqttConfigError if it cannot be read."""
    try:
        text = read_regular(path).decode("utf-8")
    except FileNotFoundError:
        raise MqttConfigError(f"the MQTT password file {path} does not exist; create it with the password on one line") from None
    except OSError as exc:
        raise MqttConfigError(f"cannot read the MQTT password file {path} ({why(exc)}); check its permissions") from None
    except UnicodeDecodeError:
        raise MqttConfigError(f"the MQTT password file {path} is not UTF-8 text; put the password on its first line") from None
    password = text.rstrip("\r\n")
    if not password:
        raise MqttConfigError(f"the MQTT password file {path} is empty; put the password on its first line")
    return password


def tls_context(settings: MqttSettings) -> ssl.SSLContext | None:
    """An SSL context verifying the broker with ``ca_file`` (or the system's CAs); None without TLS."""
    if not settings.tls:
        if settings.ca_file:
            log.warning("MQTT ca_file %s is ignored because tls is off", settings.ca_file)
        return None
    try:
        if settings.ca_file:
            refuse_unless_regular(settings.ca_file)  # ssl would wait forever on a FIFO
        return ssl.create_default_context(cafile=settings.ca_file)
    except NotRegularFileError as exc:
        raise MqttConfigError(f"the MQTT CA file {exc}; give the broker's CA certificate in PEM form") from None
    except FileNotFoundError:
        raise MqttConfigError(f"the MQTT CA file {settings.ca_file} does not exist; give the broker's CA certificate in PEM form") from None
    except (OSError, ssl.SSLError) as exc:
        raise MqttConfigError(f"the MQTT CA file {settings.ca_file} is not a usable PEM certificate ({exc})") from None


def require_paho() -> None:
    """paho-mqtt 2.x, imported only when MQTT is on; MqttConfigError naming the fix if it is missing or 1.x."""
    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        raise MqttConfigError("MQTT needs paho-mqtt, which is not installed: pip install 'paho-mqtt>=2.1,<3'") from None
    if not hasattr(mqtt, "CallbackAPIVersion"):
        raise MqttConfigError("MQTT needs paho-mqtt 2.x, but an older one is installed: pip install 'paho-mqtt>=2.1,<3'")


def new_client(settings: MqttSettings, client_id: str, password: str | None, tls: ssl.SSLContext | None):
    """A fresh paho client for one connection: clean session, no reconnecting of its own, "offline" as its last will."""
    import paho.mqtt.client as mqtt  # imported here so the service runs without paho when MQTT is off

    client = mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=True,
        reconnect_on_failure=False,  # reconnecting is the sink's, with the shared backoff
    )
    client.connect_timeout = CONNECT_TIMEOUT_S
    if settings.username:
        client.username_pw_set(settings.username, password)
    if tls is not None:
        client.tls_set_context(tls)
    client.will_set(settings.topic("availability"), "offline", qos=settings.qos, retain=True)
    return client
