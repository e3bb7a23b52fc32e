"""python -m convert RUN_DIR: full-int8 TFLite, its JSON contract and MODEL_CARD.md from a training run.

The int8 model is calibrated on real training windows and must agree with its float twin
on the validation speakers (top-1 agreement >= 95 % of clips, accuracy within 1.5
points); otherwise nothing is written and the exit status is 1.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

SHIPPED = "edge/models/ser_cnn_int8.tflite"
SHIPPED_FLOAT = "models/ser_cnn.keras"  # the shipped model's float twin: `training adapt` adapts it
EXAMPLES = """examples:
  python -m convert runs/try --out runs/try/int8/ser_cnn_int8.tflite --no-keras-copy
  python -m convert runs/model --replace-shipped --reports training/reports   # what `make model` does: the shipped model
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m convert", description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("run_dir", help="a folder written by `python -m training train` (model.keras, report.json)")
    p.add_argument("--data", default="../shared/data", help="the corpora the run was trained on (for calibration and checking)")
    p.add_argument("--manifest", action="append", default=[], help="manifests the run also used (repeatable)")
    p.add_argument(
        "--out",
        default=SHIPPED,
        help=f"where the .tflite goes; the .json and MODEL_CARD.md go beside it (default {SHIPPED}: needs --replace-shipped)",
    )
    p.add_argument(
        "--replace-shipped", action="store_true", help="let this run replace the shipped model and its float copy (otherwise refused)"
    )
    p.add_argument(
        "--keras-out",
        default=None,
        help=f"copy of the float Keras model, for float-vs-int8 benchmarks and `training adapt` (default: {SHIPPED_FLOAT} with "
        "--replace-shipped, else none)",
    )
    p.add_argument("--no-keras-copy", action="store_true", help="do not copy the Keras model")
    p.add_argument("--reports", default=None, help="folder for the int8 confusion matrix and training curves PNGs")
    p.add_argument(
        "--crossval",
        default=None,
        help="crossval.json of `python -m training crossval` run with the same settings: its leave-one-corpus-out table goes into the card",
    )
    p.add_argument("--cache", default="cache", help="feature cache folder shared with training")
    p.add_argument(
        "--min-agreement", type=_share, default=0.95, help="least int8/float top-1 agreement on validation clips, 0 to 1 (default 0.95)"
    )
    p.add_argument("--max-drop", type=float, default=1.5, help="largest validation accuracy drop from float to int8, in points")
    p.add_argument("--debug", action="store_true", help="log everything")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from pathlib import Path

    from convert.package import ConversionError, Gates, convert_run
    from training.corpora import load_data
    from training.manifest import load_manifest

    root = Path(__file__).resolve().parents[1]
    keras_out = None if args.no_keras_copy else args.keras_out or (SHIPPED_FLOAT if args.replace_shipped else None)
    for path, what in ((args.out, SHIPPED), (keras_out, SHIPPED_FLOAT)):
        # The shipped pair is replaced together or not at all: an int8 model with another run's float twin would adapt wrongly.
        if path and Path(path).resolve() == (root / what).resolve() and (root / what).exists() and not args.replace_shipped:
            print(
                f"error: this would replace the shipped {'model' if what == SHIPPED else 'float model'} {what}; give another path, "
                "or --replace-shipped to make this run the shipped model (as `make model` does)",
                file=sys.stderr,
            )
            return 2
    try:
        crossval = _json(args.crossval, "--crossval") if args.crossval else None
        clips = load_data(args.data) if args.data else []
        for manifest in args.manifest:
            clips += load_manifest(manifest)
        contract = convert_run(
            args.run_dir,
            clips,
            args.out,
            cache_dir=args.cache,
            keras_out=keras_out,
            reports_dir=args.reports,
            gates=Gates(min_agreement=args.min_agreement, max_accuracy_drop_points=args.max_drop),
            crossval=crossval,
        )
    except ConversionError as exc:
        print(f"conversion refused: {exc}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    m = contract.metrics
    for role in ("validation", "test"):
        if role in m:
            for kind in ("float", "int8"):
                parts = "; ".join(
                    f"{n} UA {s['ua']:.3f} restricted {s['ua_restricted']:.3f}" for n, s in m[role][kind].items() if n != "mean"
                )
                print(f"{role} {kind}: {parts}")
    print(f"agreement {m['int8_float_agreement']}, {m['size_bytes']} bytes, {m['latency_ms_per_window_1_thread']:.2f} ms/window (1 thread)")
    print(f"wrote {args.out} and {os.path.splitext(args.out)[0]}.json")
    return 0


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a share from 0 to 1, such as 0.95")
    return value


def _json(path: str, flag: str) -> dict:
    """A JSON file named by ``flag``; ValueError naming it when it is not one."""
    import json

    try:
        return json.loads(open(path, encoding="utf-8").read())
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError(f"{flag} {path} is not a JSON file (give the crossval.json `python -m training crossval` wrote)") from None


if __name__ == "__main__":
    sys.exit(main())
