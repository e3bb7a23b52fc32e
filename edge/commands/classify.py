"""``python -m edge classify``: emotions of audio files, as a table or JSON lines."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from edge.audio import AudioError, audio_blocks, find_audio
from edge.commands import options
from edge.inputs import RateTap, rate_warning
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
plus "warning": "<one sentence>" for audio recorded under 8 kHz, or, for a file that failed:
  {"path": ..., "error": "<one sentence>"}
A file name that is not UTF-8 is shown with U+FFFD in place of its undecodable bytes.

--profile FILE normalises every window against one person's voice profile
(`python -m edge enroll`); a profile made for another model is refused (exit 2).
"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "classify", help="classify audio files or folders", description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="audio files or folders")
    p.add_argument("--json", action="store_true", help="print one JSON object per line instead of a table")
    options.add_model(p)
    options.add_threads(p)
    options.add_profile(p)
    p.set_defaults(func=main)


def main(args) -> int:
    from edge.classifier import StreamingClassifier
    from edge.model import Model
    from edge.profile import ProfileError
    from edge.voice import in_use, load_profile

    if options.threads_refused(args.threads):
        return 2
    try:
        model = Model(args.model, threads=args.threads)
        profile = load_profile(args.profile, model.contract) if args.profile else None
        classifier = StreamingClassifier(model, profile=profile)
    except (ModelError, ProfileError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    if profile is not None:  # on stderr, like the summary: --json's stdout stays one object per file
        _note(args, in_use(args.profile, profile))
    failed, done, started = 0, 0, time.monotonic()
    if not args.json:
        print(f"{'file':<48} {'emotion':<10} {'p':>5} {'secs':>6}  speech")
    for path, problem in find_audio(args.paths):
        done += 1
        name = options.shown(path)
        blocks = RateTap(audio_blocks(path, name) if not problem else ())
        try:
            if problem:
                raise AudioError(options.shown(problem))
            result = classifier.classify_blocks(blocks, name)
        except AudioError as exc:
            failed += 1
            _emit_error(args.json, name, str(exc))
            continue
        except Exception as exc:  # one bad file must not end the batch
            log.debug("unexpected failure on %s", name, exc_info=True)
            failed += 1
            _emit_error(args.json, name, f"{name}: could not be classified ({type(exc).__name__}: {exc})")
            continue
        warning = rate_warning(name, blocks.rate_hz)
        if warning:
            log.warning("%s", warning)
        if args.json:
            print(json.dumps({**result.to_dict(name), **({"warning": warning} if warning else {})}), flush=True)
        else:
            top = result.top_prob
            print(
                f"{_short(name, 48):<48} {result.label:<10} {top:5.2f} {result.duration_s:6.2f}  {'yes' if result.speech else 'no'}",
                flush=True,
            )
    # One line on stderr, so that --json's stdout stays one object per file (a log record when logs are JSON).
    _note(args, f"{done} file{'s' if done != 1 else ''}, {failed} failed, {time.monotonic() - started:.1f} s")
    return 1 if failed else 0


def _note(args, line: str) -> None:
    """A line for the person, on stderr (a log record when logs are JSON)."""
    if getattr(args, "log_format", "text") == "json":
        log.info("%s", line)
    else:
        print(line, file=sys.stderr)


def _emit_error(as_json: bool, path: str, message: str) -> None:
    if as_json:
        print(json.dumps({"path": path, "error": message}), flush=True)
    else:
        print(f"{_short(path, 48):<48} error: {message}", flush=True)


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1) :]
