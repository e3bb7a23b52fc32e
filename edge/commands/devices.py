"""``python -m edge devices``: the audio inputs PortAudio can open, with their native rates."""

from __future__ import annotations

import json
import sys

HELP = """\
List the audio input devices that `python -m edge run` can listen to: the index and the
name (either can be given to `run --device`), the device's own sample rate (the service
opens it at this rate and resamples to 16 kHz) and its input channels.
"""


def add_parser(sub) -> None:
    p = sub.add_parser("devices", help="list audio input devices and their rates", description=HELP)
    p.add_argument("--json", action="store_true", help="print one JSON object per device")
    p.set_defaults(func=main)


def main(args, sounddevice_module=None) -> int:
    from edge.service.sources import SourceError, input_devices

    try:
        devices = input_devices(quiet=not args.debug, sounddevice_module=sounddevice_module)
    except SourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    none = "no audio input devices found (is a microphone plugged in, and is this user in the audio group?)"
    if args.json:
        for d in devices:
            print(json.dumps({"index": d.index, "name": d.name, "default_rate_hz": d.default_rate_hz, "channels": d.channels}))
        if not devices:  # no lines on stdout, as JSON lines of nothing; the reason for the person on stderr
            print(none, file=sys.stderr)
        return 0
    if not devices:
        print(none)
        return 0
    print(f"{'index':>5}  {'rate_hz':>7}  {'channels':>8}  name")
    for d in devices:
        print(f"{d.index:>5}  {d.default_rate_hz:>7}  {d.channels:>8}  {d.name}")
    return 0
