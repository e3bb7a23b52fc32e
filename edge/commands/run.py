"""``python -m edge run``: listen continuously, classify, decide, and tell other systems."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from edge.commands import options

log = logging.getLogger(__name__)

HELP = """\
Listen continuously and classify the speaker's emotion every half second; a decision
policy smooths the verdicts and raises an alert when anger or fear lasts a few seconds
(sadness: longer), then ends it with a clear event. Every event goes to the sinks that
are on: JSON lines on stdout (on unless [output] enabled = false), MQTT, a GPIO pin, the
web live view, and a per-minute history (`python -m edge history`).

Audio sources (--source):
  mic (default)   a microphone, at its own rate, resampled to 16 kHz; --device picks one
                  (see `python -m edge devices`); unplugged or busy devices are retried
  FILE            an audio file, as fast as possible, or --realtime; --loop repeats it
  -               raw signed 16-bit little-endian PCM on stdin at --rate, e.g.
                    arecord -f S16_LE -r 16000 -c 1 | python -m edge run --source -

stdout, one JSON object per line:
  {"type":"state","time_s":12.5,"state":"angry","probs":{...},"wall_time":...}
  {"type":"alert","id":"6560f1a2-1","emotion":"angry","score":0.71,"started_s":15.5,...}
  {"type":"alert_end","id":"6560f1a2-1","emotion":"angry","duration_s":8.0,"reason":"released",...}
and with --verbose also every window ("type":"window") and health every few seconds.
Times ("time_s") are seconds of audio since the start; "wall_time" is UTC.

Settings come from --config FILE (TOML; every key is documented in
systemd/config.example.toml); the flags here override it. A bad setting stops the
service before it starts, with one sentence naming the key. SIGHUP reloads the policy
and sinks; SIGTERM or Ctrl-C stop cleanly. No audio is written or sent anywhere unless
--record-dir (debug) is given.

With --profile FILE (or [profile] path) windows are judged against one person's voice
profile; with [profile] adapt = true the service keeps learning that voice from the speech it
hears and saves the profile atomically every few minutes and on stop.

Exit status: 0 after a stop signal or the end of a file or stdin; 1 when a file turned out
damaged part way; 2 for a bad setting, a missing file, an unknown device, a model that cannot
be served or a profile made for another model.

examples:
  python -m edge run                                   the default microphone, alerts on stdout
  python -m edge run --source drive.wav --realtime -v  replay a recording as if live, all windows
  python -m edge run --mqtt broker.local --device-id car1 --gpio-pin 17
  python -m edge run --http 127.0.0.1:8000             with the live view in a browser
  python -m edge run --config /etc/ser-edge/config.toml  as the systemd service does
"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "run",
        help="listen continuously and raise alerts (the service)",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", metavar="FILE", help="TOML configuration (see systemd/config.example.toml); flags override it")
    src = p.add_argument_group("audio source")
    src.add_argument("--source", metavar="mic|FILE|-", help='"mic" (default), an audio file, or "-" for raw 16-bit PCM on stdin')
    src.add_argument("--device", metavar="NAME|INDEX", help="microphone: input device index or part of its name (default: the system's)")
    src.add_argument("--rate", type=int, metavar="HZ", help="stdin: sample rate of the PCM (default: 16000)")
    src.add_argument("--channels", type=int, metavar="N", help="stdin: interleaved channels, mixed to mono (default: 1)")
    src.add_argument("--realtime", action="store_true", help="file: pace the file in real time instead of as fast as possible")
    src.add_argument("--loop", action="store_true", help="file: start over at the end, until stopped")
    mdl = p.add_argument_group("model")
    options.add_model(mdl)
    options.add_threads(mdl, default=None)
    mdl.add_argument(
        "--profile",
        metavar="FILE",
        help="normalise against this voice profile (`python -m edge enroll`); [profile] adapt = true keeps learning it",
    )
    out = p.add_argument_group("sinks")
    out.add_argument("-v", "--verbose", action="store_true", help="stdout: also every window and the health events")
    out.add_argument("--mqtt", metavar="HOST[:PORT]", help="publish to this MQTT broker (more in the [mqtt] config section)")
    out.add_argument("--mqtt-prefix", metavar="PREFIX", help="MQTT topic prefix (default: ser-edge)")
    out.add_argument("--device-id", metavar="ID", help="this device in MQTT topics and Home Assistant (default: the host name)")
    out.add_argument("--gpio-pin", metavar="PIN", help='drive an LED on this pin while an alert is active (BCM number or "GPIO17")')
    out.add_argument("--http", metavar="HOST:PORT", help="serve the web page with a live view (e.g. 127.0.0.1:8000)")
    out.add_argument("--record-dir", metavar="DIR", help="DEBUG: write the audio before each alert to DIR as WAV (off by default)")
    p.set_defaults(func=main)


_APPLIES = {"--rate": "raw PCM on stdin", "--channels": "raw PCM on stdin", "--device": "the microphone", "--realtime": "an audio file"}


def main(args) -> int:
    from edge.model import ModelError
    from edge.service.config import ConfigError, load_settings, overrides_from_args
    from edge.service.daemon import StartError, build

    try:
        overrides = overrides_from_args(args)
        settings = load_settings(args.config, overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    for flag, value, applies in (
        ("--rate", args.rate, settings.audio.kind == "stdin"),
        ("--channels", args.channels, settings.audio.kind == "stdin"),
        ("--device", args.device, settings.audio.kind == "mic"),
        ("--realtime", args.realtime or None, settings.audio.kind == "file"),
    ):
        if value is not None and not applies:  # given, but the source in use has no such thing: say so, once
            log.warning("%s is ignored: it applies to %s, and the source is %s", flag, _APPLIES[flag], settings.audio.source)

    def reload():
        return load_settings(args.config, overrides)

    # Loading the model and connecting the sinks takes a moment; a SIGTERM (or SIGHUP, whose
    # default action also ends the process) arriving meanwhile is kept and acted on once the
    # daemon exists, so even a stop during start-up goes through its clean shutdown.
    early: list[int] = []
    catchable = [s for s in (signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGHUP", None)) if s is not None]
    main_thread = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, lambda signum, frame: early.append(signum)) for s in catchable} if main_thread else {}
    try:
        daemon = build(settings, reload=reload if args.config else None)
    except (ConfigError, StartError, ModelError, ImportError) as exc:
        for s, handler in previous.items():
            signal.signal(s, handler)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if main_thread:
        daemon.install_signal_handlers()  # the daemon's own, with no gap after the keeping ones
    for signum in early:
        if signum == getattr(signal, "SIGHUP", None):
            daemon.request_reload()
        else:
            daemon.request_stop(signal.Signals(signum).name)
    return daemon.run()
