"""The GPIO sink: an LED or buzzer on a pin, on while any alert is active.

gpiozero is imported only when the sink is built, so a service without GPIO never loads it.
On a Pi gpiozero picks its default pin factory (lgpio on current Raspberry Pi OS); tests and
machines without GPIO use ``pin_factory = "mock"`` (gpiozero's MockFactory).
"""

from __future__ import annotations

import logging
import os
import warnings

from edge.settings import GpioSettings

log = logging.getLogger(__name__)


class GpioError(RuntimeError):
    """The pin cannot be driven, with one sentence saying why."""


class GpioSink:
    """Turns the device on at the first active alert and off when the last one ends (and on close)."""

    name = "gpio"

    def __init__(self, settings: GpioSettings) -> None:
        self.settings = settings
        self._active: set[str] = set()
        try:
            self.device = _make_device(settings)
        except GpioError:
            raise
        except Exception as exc:  # gpiozero raises many kinds: BadPinFactory, PinInvalidPin, GPIOPinInUse, ...
            raise GpioError(f"GPIO pin {settings.pin} cannot be used as a {settings.kind} ({type(exc).__name__}: {exc})") from None
        self.device.off()
        self.status = "ok"
        log.info("GPIO %s on pin %s signals alerts", settings.kind, settings.pin)

    @property
    def is_on(self) -> bool:
        return bool(self.device.value)

    def handle(self, event: dict) -> None:
        kind = event.get("type")
        if kind == "alert":
            self._active.add(event["id"])
        elif kind == "alert_end":
            self._active.discard(event["id"])
        else:
            return
        try:
            self.device.on() if self._active else self.device.off()
            self.status = "ok"
        except Exception as exc:  # a pin can fail mid-run; alerts must still reach the other sinks
            self.status = f"error: {exc}"
            log.warning("GPIO pin %s could not be switched (%s)", self.settings.pin, exc)

    def resume_alerts(self, alerts: dict[str, str]) -> None:
        """Alerts already active when this sink was built (after a reload), as {id: emotion}: the pin goes on."""
        for alert_id, emotion in alerts.items():
            self.handle({"type": "alert", "id": alert_id, "emotion": emotion})

    def close(self) -> None:
        self._active.clear()
        try:
            self.device.off()
        finally:
            self.device.close()


def _make_device(settings: GpioSettings):
    if settings.pin_factory and settings.pin_factory != "mock":
        os.environ["GPIOZERO_PIN_FACTORY"] = settings.pin_factory  # read by gpiozero when it makes its first pin
    try:
        import gpiozero
    except ImportError as exc:
        raise GpioError(f"GPIO needs gpiozero, which cannot be imported ({exc}); pip install gpiozero") from None
    if settings.pin_factory == "mock":
        from gpiozero.pins.mock import MockFactory

        if not isinstance(gpiozero.Device.pin_factory, MockFactory):
            gpiozero.Device.pin_factory = MockFactory()
    pin = int(settings.pin) if settings.pin.isdigit() else settings.pin
    cls = {"led": gpiozero.LED, "buzzer": gpiozero.Buzzer, "output": gpiozero.OutputDevice}[settings.kind]
    # gpiozero warns once per pin factory it cannot load before finding one; that belongs in the debug log.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return cls(pin, active_high=settings.active_high, initial_value=False)
        finally:
            for w in caught:
                log.debug("gpiozero: %s", w.message)
