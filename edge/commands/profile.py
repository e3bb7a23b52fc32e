"""``python -m edge profile show|reset``: what a voice profile holds, and starting it over."""

from __future__ import annotations

import argparse
import json
import os
import sys

from edge.commands import options

HELP = """\
show   what a voice profile holds: seconds of speech, when it was made and last adapted, the
       model it belongs to, and whether it fits the model given (--model; default the shipped one).
reset  delete the profile, so the voice is learnt afresh: enrol again, or let `run` with
       [profile] adapt = true start from the population's statistics. Stop the service first,
       or it saves the profile again.
"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "profile", help="show or reset a voice profile", description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("action", choices=("show", "reset"), help="show what it holds, or delete it to start over")
    p.add_argument("path", metavar="PROFILE", help="a profile written by `python -m edge enroll` (or by the service when it adapts)")
    options.add_model(p)  # show: whether the profile fits it
    p.add_argument("--json", action="store_true", help="show: one JSON object")
    p.set_defaults(func=main)


def main(args) -> int:
    from edge.files import why
    from edge.model import Model, ModelError
    from edge.profile import ProfileError
    from edge.voice import NEVER, describe, is_profile_file, load_profile

    try:
        profile = load_profile(args.path)  # reset too: only a profile is deleted, never another file given by mistake
    except ProfileError as exc:
        if args.action == "reset" and is_profile_file(args.path):
            profile = None  # it says it is one, but is broken (edited by hand, or a failing disk): reset is for this too
        else:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if args.action == "reset":
        try:
            os.remove(args.path)
        except OSError as exc:
            print(f"error: cannot delete {args.path} ({why(exc)}); run this as the user who owns it", file=sys.stderr)
            return 1
        held = f"{profile.speech_s:.0f} s of speech" if profile else "it was damaged"
        print(f"deleted {args.path} ({held}); the voice will be learnt afresh", file=sys.stderr)
        return 0
    try:
        contract = Model(args.model).contract
    except (ModelError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    info = {"path": args.path, **describe(profile, contract)}
    if args.json:
        print(json.dumps(info))
    else:
        for key, value in info.items():
            print(f"{key}: {json.dumps(value) if isinstance(value, (dict, list, bool)) else NEVER if value is None else value}")
    return 0
