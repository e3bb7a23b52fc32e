"""``python -m edge enroll``: learn one person's usual voice from recordings or the microphone, and write a voice profile."""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

from edge.commands import options
from edge.pcm import int16_to_float

log = logging.getLogger(__name__)

HELP = """\
Write a voice profile: the statistics of one person's ordinary speech that the model then
judges their voice against, so a naturally loud, low or quiet voice is not taken for an
emotion. Give recordings of the person speaking as they usually do (any format the device
reads, any language; the emotion in them does not matter much, ordinary talk is best), or
record from the microphone with --seconds.

Folders are searched recursively for audio files. Only speech counts (the model's own speech
gate picks it out); at least 20 s of it are needed, a minute or more is better. The profile
holds statistics only: no audio, no words, a few kilobytes. It belongs to the model it was made
with; another model refuses it.

--out replaces a profile that is there (any other file is refused) and makes missing folders.
The exit status is 0 when the profile was written from every file, 1 when it was written but
some files could not be read (each is named), or when it was not written (too little speech,
no file readable, nowhere to write), 2 for usage, model or microphone errors.

examples:
  python -m edge enroll --out me.json call1.wav call2.flac      from recordings
  python -m edge enroll --out me.json --seconds 60               from the microphone, speaking for a minute
  python -m edge run --profile me.json                           use it (also classify, serve, [profile] path)
"""

COUNTDOWN_S = 3
LATE_S = 10.0  # a recording that has not delivered its seconds this long after they should have come is given up
METER_WIDTH = 30
METER_FLOOR_DBFS = -60.0  # the meter's left edge: quieter than a normal voice at arm's length


def add_parser(sub) -> None:
    p = sub.add_parser(
        "enroll",
        help="learn one person's usual voice and write a voice profile",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "files", nargs="*", metavar="PATH", help="recordings of the person's ordinary speech, or folders of them (or use --seconds)"
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="PROFILE",
        help="where to write the profile (JSON); a profile there is replaced, any other file refused",
    )
    p.add_argument("--seconds", type=float, metavar="S", help="record this long from the microphone instead of reading files")
    p.add_argument("--device", metavar="NAME|INDEX", help="--seconds: the input device (default: the system's; see `devices`)")
    options.add_model(p)
    p.set_defaults(func=main)


def main(args, source=None) -> int:
    """``source`` replaces the microphone (tests); it is an audio source of edge.service.sources."""
    from edge.audio import AudioError, audio_blocks, find_audio
    from edge.model import Model, ModelError
    from edge.profile import ProfileError, SpeechStats, VoiceProfile, enough_speech, measure_speech, speech_seconds
    from edge.service.sources import SourceError

    if bool(args.files) == (args.seconds is not None):
        print("error: give recordings (FILE ...) or --seconds S for the microphone, not both or neither", file=sys.stderr)
        return 2
    if args.seconds is not None and not (math.isfinite(args.seconds) and 0 < args.seconds <= 3600):
        print(f"error: --seconds {args.seconds:g} is not allowed: use a number of seconds above 0 and at most 3600", file=sys.stderr)
        return 2
    refused = _refuse_out(args.out, args.files)
    if refused:
        print(f"error: --out {args.out}: {refused}", file=sys.stderr)
        return 2
    try:
        model = Model(args.model)
    except (ModelError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    contract = model.contract
    stats = SpeechStats(contract.frontend.n_ceps)
    failed, read = 0, 0
    if args.files:
        for path, problem in find_audio(args.files):
            name = options.shown(path)
            before = stats.count
            try:
                if problem:
                    raise AudioError(options.shown(problem))
                measure_speech(audio_blocks(path, name), contract, stats=stats)
            except AudioError as exc:
                failed += 1
                print(f"skipped: {exc}", file=sys.stderr)
                continue
            read += 1
            print(f"{name}: {(stats.count - before) * contract.frontend.hop_ms / 1000:.1f} s of speech", file=sys.stderr)
        if not read:
            print(f"error: none of the {failed} file(s) could be read (each is named above); no profile was written", file=sys.stderr)
            return 1
    else:
        try:
            recorded = _microphone(args, contract, stats, source)
        except SourceError as exc:  # no microphone library, no such device, no microphone at all
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if recorded is None:
            return 130
    try:
        enough_speech(stats, contract)
        profile = VoiceProfile.from_stats(stats, contract)
        profile.save(args.out)
    except ProfileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: cannot write the profile {args.out} ({exc.strerror or exc}); choose a writable place", file=sys.stderr)
        return 1
    print(
        f"wrote {args.out}: {speech_seconds(stats, contract):.1f} s of speech"
        + (f" ({failed} file(s) skipped)" if failed else "")
        + "; no audio is kept",
        file=sys.stderr,
    )
    return 1 if failed else 0


def _refuse_out(out: str, inputs: list[str]) -> str | None:
    """Why the profile cannot go to ``out``, before any audio is read; None when it can.

    Only a profile is replaced: a recording (one of the inputs, say) or any other file given by
    mistake is never overwritten.
    """
    from edge.files import why_unwritable
    from edge.voice import is_profile_file

    problem = why_unwritable(out)
    if problem:
        return f"{problem}; choose another path"
    target = Path(out)
    if any(Path(given).exists() and target.exists() and os.path.samefile(given, target) for given in inputs):
        return "it is one of the recordings given; write the profile elsewhere"
    if target.exists() and not is_profile_file(out):
        return "a file that is not a voice profile is there; choose another path (only a profile is replaced)"
    return None


def _microphone(args, contract, stats, source):
    """Record ``args.seconds`` from the microphone into ``stats``, with a countdown and a level meter on stderr; None if interrupted."""
    from edge.profile import measure_speech, speech_seconds
    from edge.service.sources import MicSource, SourceError

    if source is None:
        source = MicSource(args.device or "")
        source.require_device()
    out = sys.stderr
    stop = threading.Event()
    try:
        for left in range(COUNTDOWN_S, 0, -1):
            print(f"\rspeak as you usually do in {left}…   ", end="", file=out, flush=True)
            time.sleep(1)
        print("\rspeak now" + " " * 30, file=out, flush=True)

        def blocks():
            heard, deadline = 0, time.monotonic() + args.seconds + LATE_S
            for chunk, rate in source.chunks(stop):
                if time.monotonic() > deadline:  # lost, or never delivering: the source keeps trying to reopen it
                    raise SourceError(
                        f"the microphone delivered {heard / rate if heard else 0:.1f} s of the {args.seconds:g} s asked for; "
                        "check it with `python -m edge devices` and try again"
                    )
                if chunk.size == 0:
                    continue
                audio = int16_to_float(chunk) if chunk.dtype == np.int16 else np.asarray(chunk, np.float32)
                heard += audio.size
                left_s = max(0.0, args.seconds - heard / rate)
                _meter(out, audio, left_s, speech_seconds(stats, contract))
                yield audio, rate
                if heard >= args.seconds * rate:
                    return

        measure_speech(blocks(), contract, stats=stats)
    except KeyboardInterrupt:
        print("\nstopped", file=out)
        return None
    except SourceError:
        print(file=out)  # end the meter's line before the error
        raise
    finally:
        stop.set()
        source.close()
    print(file=out)
    return stats


def _meter(out, audio: np.ndarray, left_s: float, speech_s: float) -> None:
    """One line, redrawn in place: time left, the level as a bar and in dBFS, and the speech heard so far."""
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0
    dbfs = 20 * math.log10(max(rms, 1e-10))
    filled = int(round(METER_WIDTH * min(max((dbfs - METER_FLOOR_DBFS) / -METER_FLOOR_DBFS, 0.0), 1.0)))
    bar = "#" * filled + "." * (METER_WIDTH - filled)
    print(f"\r{left_s:4.0f} s left  [{bar}] {max(dbfs, -99):5.0f} dBFS  speech {speech_s:5.1f} s", end="", file=out, flush=True)
