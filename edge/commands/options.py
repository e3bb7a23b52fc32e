"""Flags several commands share (--model, --threads, --profile) and how each is checked, once."""

from __future__ import annotations

import sys

from edge.settings import THREADS


def add_model(p) -> None:
    p.add_argument("--model", metavar="PATH", help="a .tflite model with its .json beside it (default: the shipped model)")


def add_threads(p, default: int | None = 1) -> None:
    shown = default if default is not None else "[model] threads, 1"  # None: the config file's value stands
    p.add_argument("--threads", type=int, default=default, metavar="N", help=f"interpreter threads, 1 to 64 (default: {shown})")


def add_profile(p) -> None:
    p.add_argument(
        "--profile",
        metavar="FILE",
        help="normalise against this voice profile (`python -m edge enroll` makes one) instead of the population's",
    )


def threads_refused(threads: int | None) -> bool:
    """Print the one sentence and say True when --threads is out of range (as `run` refuses model.threads)."""
    if threads is None or THREADS.test(threads):
        return False
    print(f"error: --threads {threads} is not allowed: use {THREADS.says}", file=sys.stderr)
    return True


def shown(path: str) -> str:
    """A path as it can be printed and put in JSON: bytes that are not UTF-8 (kept by Python as lone surrogates) become U+FFFD."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
