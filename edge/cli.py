"""``python -m edge``: classify files, inspect the model, and (see COMMANDS) run the service.

Each subcommand lives in its own module with ``add_parser(subparsers)`` that registers
it and sets ``func`` to a ``main(args) -> int``. Exit status: 0 success, 1 when some input
failed, 2 for usage errors (argparse's own convention).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys

from edge import __version__

log = logging.getLogger(__name__)

# Modules that contribute subcommands, in the order --help lists them.
COMMANDS = (
    "edge.commands.classify",
    "edge.commands.info",
    "edge.commands.serve",
    "edge.commands.run",
    "edge.commands.enroll",
    "edge.commands.profile",
    "edge.commands.history",
    "edge.commands.devices",
)

EPILOG = """\
examples:
  python -m edge classify samples/                  classify every audio file in a folder
  python -m edge classify --json clip.wav other.flac  one JSON line per file
  python -m edge info                               the shipped model, its metrics and runtime
  python -m edge enroll --out me.json --seconds 60  learn your usual voice (a voice profile; no audio kept)

Audio may be WAV, FLAC, OGG or AIFF at any rate, mono or multichannel; it is mixed
to mono and resampled to 16 kHz on the device. Nothing leaves the device.
"""


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": self.formatTime(record), "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(debug: bool, log_format: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.INFO)


def program_name() -> str:
    """What the user typed: the installed ``ser-edge`` command, or ``python -m edge`` in a checkout."""
    return "ser-edge" if os.path.basename(sys.argv[0]) == "ser-edge" else "python -m edge"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=program_name(),
        description="On-device speech emotion recognition: the speaker's emotion from the voice, computed locally.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="log debug detail to stderr")
    parser.add_argument("--log-format", choices=("text", "json"), default="text", help="log line format on stderr (default: text)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(name).add_parser(sub)
    for command in sub.choices.values():  # the global flags work after the command too; SUPPRESS keeps one given before it
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="log debug detail to stderr")
        command.add_argument("--log-format", choices=("text", "json"), default=argparse.SUPPRESS, help="log line format on stderr")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    setup_logging(args.debug, args.log_format)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. piped into `head`
        return 0
