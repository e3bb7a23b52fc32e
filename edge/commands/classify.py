"""``python -m edge classify``: emotions of audio files, as a table or JSON lines."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from edge.audio import AudioError, find_audio
from edge.model import ModelError

log = logging.getLogger(__name__)

HELP = """\
Classify audio files with the on-device model. Each file is read (any rate, any
channel count), resampled to 16 kHz, cut into windows, and the windows that hold
speech are averaged into one verdict per file.

Folders are searched recursively for audio files. A file that cannot be used is
reported and the batch goes on; the exit status is 0 when every file succeeded,
1 when any failed, 2 for usage or model errors.

With --json, exactly one line per file:
  {"path": ..., "label": ..., "probs": {"neutral": p, ...}, "duration_s": d, "speech": true}
or, for a file that failed:
  {"path": ..., "error": "<one sentence>"}
"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "classify", help="classify audio files or folders", description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="audio files or folders")
    p.add_argument("--json", action="store_true", help="print one JSON object per line instead of a table")
    p.add_argument("--model", metavar="PATH", help="a .tflite model with its .json beside it (default: the shipped model)")
    p.add_argument("--threads", type=int, default=1, metavar="N", help="interpreter threads (default: 1)")
    p.set_defaults(func=main)


def main(args) -> int:
    from edge.classifier import StreamingClassifier
    from edge.model import Model

    if args.threads < 1:
        print("error: --threads must be at least 1", file=sys.stderr)
        return 2
    try:
        classifier = StreamingClassifier(Model(args.model, threads=args.threads))
    except (ModelError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    failed = 0
    if not args.json:
        print(f"{'file':<48} {'emotion':<10} {'p':>5} {'secs':>6}  speech")
    for path, problem in find_audio(args.paths):
        try:
            if problem:
                raise AudioError(problem)
            result = classifier.classify_file(path)
        except AudioError as exc:
            failed += 1
            _emit_error(args.json, path, str(exc))
            continue
        except Exception as exc:  # one bad file must not end the batch
            log.debug("unexpected failure on %s", path, exc_info=True)
            failed += 1
            _emit_error(args.json, path, f"{path}: could not be classified ({type(exc).__name__}: {exc})")
            continue
        if args.json:
            print(json.dumps(result.to_dict(path)), flush=True)
        else:
            top = result.top_prob
            print(
                f"{_short(path, 48):<48} {result.label:<10} {top:5.2f} {result.duration_s:6.2f}  {'yes' if result.speech else 'no'}",
                flush=True,
            )
    return 1 if failed else 0


def _emit_error(as_json: bool, path: str, message: str) -> None:
    if as_json:
        print(json.dumps({"path": path, "error": message}), flush=True)
    else:
        print(f"{_short(path, 48):<48} error: {message}", flush=True)


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1) :]
