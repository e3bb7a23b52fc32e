"""The GPIO sink with gpiozero's own mock pin factory: on while any alert is active, off after, off on close."""

from __future__ import annotations

import pytest

gpiozero = pytest.importorskip("gpiozero")
from gpiozero.pins.mock import MockFactory  # noqa: E402

from edge.service.gpio_sink import GpioError, GpioSettings, GpioSink  # noqa: E402


@pytest.fixture
def mock_pins():
    previous = gpiozero.Device.pin_factory
    gpiozero.Device.pin_factory = MockFactory()
    yield gpiozero.Device.pin_factory
    gpiozero.Device.pin_factory.reset()
    gpiozero.Device.pin_factory = previous


def alert(alert_id, emotion="angry"):
    return {"type": "alert", "id": alert_id, "emotion": emotion}


def end(alert_id, emotion="angry"):
    return {"type": "alert_end", "id": alert_id, "emotion": emotion}


def test_pin_is_on_while_any_alert_is_active(mock_pins):
    sink = GpioSink(GpioSettings(enabled=True, pin="17"))
    pin = mock_pins.pin(17)
    assert pin.state is False
    sink.handle({"type": "state", "state": "angry"})
    sink.handle({"type": "window"})
    assert pin.state is False
    sink.handle(alert("a1"))
    assert pin.state is True
    sink.handle(alert("a2", "sad"))
    sink.handle(end("a1"))
    assert pin.state is True  # the sad alert is still on
    sink.handle(end("a2", "sad"))
    assert pin.state is False
    sink.close()


def test_close_turns_the_pin_off_and_releases_it(mock_pins):
    sink = GpioSink(GpioSettings(enabled=True, pin="GPIO27", kind="buzzer"))
    sink.handle(alert("a1"))
    assert mock_pins.pin(27).state is True
    sink.close()
    assert mock_pins.pin(27).state is False
    again = GpioSink(GpioSettings(enabled=True, pin="27"))  # the pin is free again
    again.close()


def test_active_low_boards_get_the_pin_low_during_an_alert(mock_pins):
    sink = GpioSink(GpioSettings(enabled=True, pin="22", kind="output", active_high=False))
    pin = mock_pins.pin(22)
    assert pin.state is True  # idle is high on an active-low board
    sink.handle(alert("a1"))
    assert pin.state is False and sink.is_on
    sink.close()
    assert pin.state is True


def test_an_unknown_end_does_not_turn_on_or_fail(mock_pins):
    sink = GpioSink(GpioSettings(enabled=True, pin="5"))
    sink.handle(end("never-started"))
    assert mock_pins.pin(5).state is False
    sink.close()


def test_a_pin_in_use_or_invalid_is_one_sentence(mock_pins):
    first = GpioSink(GpioSettings(enabled=True, pin="17"))
    with pytest.raises(GpioError, match="GPIO pin 17 cannot be used as a led"):
        GpioSink(GpioSettings(enabled=True, pin="17"))
    first.close()
    with pytest.raises(GpioError, match="GPIO pin NOPE cannot be used"):
        GpioSink(GpioSettings(enabled=True, pin="NOPE"))


def test_the_mock_factory_setting_selects_gpiozero_mock_pins():
    previous = gpiozero.Device.pin_factory
    try:
        sink = GpioSink(GpioSettings(enabled=True, pin="6", pin_factory="mock"))
        assert isinstance(gpiozero.Device.pin_factory, MockFactory)
        sink.handle(alert("a1"))
        assert gpiozero.Device.pin_factory.pin(6).state is True
        sink.close()
    finally:
        gpiozero.Device.pin_factory = previous


def test_a_sink_built_during_an_alert_is_told_and_turns_on(mock_pins):
    """After a reload the daemon tells the new sink which alerts are still on; their ends then turn it off."""
    sink = GpioSink(GpioSettings(enabled=True, pin="17"))
    sink.resume_alerts({"r-1": "angry"})
    assert mock_pins.pin(17).state is True
    sink.handle(end("r-1"))
    assert mock_pins.pin(17).state is False
    sink.close()
