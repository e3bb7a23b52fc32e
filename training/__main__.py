"""python -m training: the desk stage, one subcommand per step.

    load      find the corpora, write the clip table (CSV) and say what could not be used
    explore   PNG plots and a markdown summary of the data
    features  fill the feature cache (the device's frontend over every clip and variant)
    train     train the CNN speaker-independently and score it on the held-out speakers
    crossval  compare settings: leave one corpus out (or RAVDESS speaker folds), mean restricted UA
    adapt     adapt a trained model to a few labelled clips of a new language or voice, then convert it
    curve     how adaptation grows with labelled clips per emotion, on a corpus the base never heard

Then `python -m convert RUN_DIR` makes the int8 model, its contract and its card.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import sys
from pathlib import Path

from training.corpora import CORPORA

log = logging.getLogger("training")

ADAPT_HELP = """\
Adapt the shipped model (or --base) to your own labelled clips, in any language, then convert it
to int8 with its contract and model card (in OUT/int8/).

The manifest is a CSV file, one clip per row:

  path,label,speaker,corpus
  clips/anna_01.wav,angry,anna,mine
  clips/anna_02.wav,neutral,anna,mine

- path: an audio file (WAV, FLAC, Ogg Opus), absolute or relative to the CSV's folder.
- label: one of neutral, calm, happy, sad, angry, fearful, disgust, surprised (case and spaces do
  not matter; fear, anger, joy, happiness, sadness, surprise are understood). Any subset: a corpus
  is judged among its own labels only, so each corpus column needs clips of two labels or more.
- speaker (optional): who speaks; --validation names it (bare, or CORPUS_SPEAKER).
- corpus (optional, default "manifest"): clips that share a recording set and label set.
- gender and language columns are read too when the header names them.
The header row is optional; commas, semicolons or tabs separate the columns; save as UTF-8.
Each clip once. Under 20 clips of some label only the last layer is refitted (seconds); from 20
of every label, every layer is fine-tuned first (--layers to choose). Either way the last layer
also learns from statistics of the window itself (--no-window-stats to leave them out).
"""

EXAMPLES = """examples:
  python -m training load --data ../shared/data --out runs/clips.csv
  python -m training explore --data ../shared/data --out runs/explore
  python -m training train --data ../shared/data --out runs/model --set arch=cnn2d --set epochs=20
  python -m training train --data ../shared/data --manifest my_clips.csv --out runs/mine
  python -m training crossval --out runs/cv-channel --set channel_db=12
  python -m training crossval --protocol speakers --out runs/cv-ravdess
  python -m training adapt --manifest mine.csv --out runs/adapted        # the shipped model, adapted, int8 in runs/adapted/int8
  python -m training curve --base runs/crossval/fold5 --corpus turev --out runs/curve-turev
  python -m training train --out runs/fold0 --validation ravdess_01,ravdess_02,ravdess_07,ravdess_08,ravdess_13,ravdess_14 --set ensemble=1
"""


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        default="../shared/data",
        help=f"folder holding the corpora in folders named {', '.join(CORPORA)} (original or copied layouts)",
    )
    p.add_argument("--manifest", action="append", default=[], help="CSV of path,label[,speaker][,corpus] for your own clips (repeatable)")
    p.add_argument("--corpora", default=",".join(CORPORA), help="comma-separated corpora to use from --data (default: all of them)")
    p.add_argument("--table", help="a clip table written by `load`, used instead of scanning --data")


def _clips(args):
    from training.corpora import LoadReport, load_data
    from training.manifest import load_manifest, load_table

    report = LoadReport()
    wanted = [c.strip().lower().replace("-", "_") for c in args.corpora.split(",") if c.strip()]
    unknown = [c for c in wanted if c not in CORPORA]
    if unknown:
        raise ValueError(f"--corpora {', '.join(unknown)}: not a corpus this loader knows; choose from {', '.join(CORPORA)}")
    if args.table:
        clips = load_table(args.table)
    else:
        clips = load_data(args.data, wanted, report) if args.data else []
    for manifest in args.manifest:
        clips += load_manifest(manifest, report)
    for line in report.lines():
        log.info("%s", line)
    if not clips:
        raise ValueError(f"no clips of {', '.join(wanted)} found in {args.data} (expected folders named like {', '.join(CORPORA)})")
    return clips, report


def cmd_load(args) -> int:
    from training.manifest import save_table

    clips, report = _clips(args)
    save_table(clips, args.out)
    print(f"{len(clips)} clips -> {args.out}")
    for line in report.lines():
        print(line)
    return 0


def cmd_explore(args) -> int:
    from training.explore import explore

    clips, report = _clips(args)
    summary = explore(clips, args.out, report)
    print(f"wrote plots and {summary}")
    return 0


def _settings(args):
    from training.settings import TrainSettings

    settings = TrainSettings()
    if args.config:
        try:
            settings = TrainSettings.from_dict(json.loads(Path(args.config).read_text(encoding="utf-8")))
        except (UnicodeDecodeError, json.JSONDecodeError, TypeError, AttributeError):
            raise ValueError(f"--config {args.config} is not a settings.json (a training run's, or written like one)") from None
    return settings.with_overrides(args.set)


def cmd_features(args) -> int:
    from training.features import extract
    from training.split import TRAIN, Split

    clips, _ = _clips(args)
    settings = _settings(args)
    split = Split()
    train = split.select(clips, TRAIN)
    variants = tuple(range(settings.augment_variants + 1))
    extract(train, settings.frontend, args.cache, variants, settings.augment, settings.speech, workers=args.workers)
    extract([c for c in clips if split.role(c) != TRAIN], settings.frontend, args.cache, (0,), None, settings.speech, workers=args.workers)
    print(f"features for {len(clips)} clips are in {args.cache}/features")
    return 0


def _split(args, clips):
    """The default split, or the speakers named by --validation and --test."""
    from training.split import Split

    default = Split()
    chosen = {}
    for role in ("validation", "test"):
        given = getattr(args, role)
        if given is None:
            chosen[role] = getattr(default, role)
            continue
        chosen[role] = _speakers(given, clips, f"--{role}")  # ravdess_17, or 17 when one corpus has it
    return Split(**chosen)


def cmd_train(args) -> int:
    from training.train import summary_line, train

    settings = _settings(args)  # wrong settings are refused before the corpora are read
    _check_run_out(Path(args.out))
    clips, _ = _clips(args)
    split = _split(args, clips)
    report = train(clips, settings, args.out, args.cache, split=split, workers=args.workers, threads=args.threads)
    for role, per_corpus in report["float"].items():
        print(f"{role}: {summary_line(per_corpus)}")
    print(f"model and report in {args.out} ({report['seconds']['total']:.0f} s)")
    return 0


def _check_run_out(out: Path) -> None:
    """A run folder may replace a run folder (said in the log), never a file or a folder of other things."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; training writes a run folder (model.keras, report.json, ...): give a folder")
    if out.is_dir() and any(out.iterdir()):
        if not (out / "report.json").is_file():
            raise ValueError(f"--out {out} holds other files and no training run; give a new or empty folder")
        log.warning(
            "replacing the run in %s%s", out, "; its int8/ is the old model's until you convert again" if (out / "int8").exists() else ""
        )


def cmd_crossval(args) -> int:
    from training.crossval import replace_ensemble, run

    clips, _ = _clips(args)
    settings = replace_ensemble(_settings(args), args.set)
    run(clips, settings, args.out, args.cache, args.protocol, args.folds, args.workers, args.threads)
    return 0


def cmd_adapt(args) -> int:
    from convert.package import ConversionError, Gates, convert_run
    from training.adapt import SHIPPED, adapt, check_out, load_base
    from training.manifest import load_manifest

    if not args.manifest:
        raise ValueError("adapt needs your labelled clips: --manifest mine.csv (rows path,label[,speaker][,corpus])")
    check_out(args.out)
    base = load_base(args.base or SHIPPED, args.keras)
    if Path(args.out).resolve() == base.keras_path.parent.resolve():
        raise ValueError(f"--out {args.out} is the base model's own run folder; give the adapted model a folder of its own")
    stale = Path(args.out) / "int8"
    if stale.is_dir():  # an earlier adaptation's int8 model must not outlive a conversion refused below
        shutil.rmtree(stale)
    clips = [c for m in args.manifest for c in load_manifest(m)]
    settings = _adapt_settings(args)
    validation = _speakers(args.validation, clips)
    report = adapt(base, clips, args.out, settings, args.cache, validation, args.workers, args.threads)
    print(f"adapted on {report['windows']['train']} windows of {len(clips)} clips in {report['seconds']['total']:.0f} s")
    out = Path(args.out) / "int8" / "ser_cnn_int8.tflite"
    try:
        contract = convert_run(args.out, clips, out, args.cache, gates=Gates(), workers=args.workers)
    except ConversionError as exc:
        print(f"conversion refused: {exc}", file=sys.stderr)
        return 1
    before = report.get("base_float", {})
    for name, s in contract.metrics["validation"]["int8"].items():
        if name != "mean":
            was = f" (the base model, float: {before[name]['ua']:.3f})" if name in before else ""
            print(
                f"int8 on {'the adaptation clips' if contract.metrics.get('validation_is_training') else 'held-out speakers'}, {name}: UA {s['ua']:.3f}{was}"
            )
    print(f"wrote {out} and its contract; try it: python -m edge classify --model {out} FILE")
    return 0


def _speakers(given: str | None, clips, flag: str = "--validation") -> tuple[str, ...]:
    """Speakers named by ``flag`` as the clip table names them (CORPUS_SPEAKER); a bare SPEAKER is found when one corpus has it."""
    known = sorted({c.speaker for c in clips})
    bare = {c.speaker: c.speaker[len(c.corpus) + 1 :] for c in clips}  # crema_d_1001 -> 1001
    out = []
    for name in (s.strip() for s in (given or "").split(",") if s.strip()):
        matches = [k for k in known if k == name] or [k for k in known if bare[k] == name]
        if len(matches) != 1:
            why = "is in more than one corpus" if matches else "has no clips"
            shown = ", ".join(known) if len(known) <= 30 else f"{', '.join(known[:30])}, … ({len(known)} in all)"
            raise ValueError(f"{flag} {name} {why}; the speakers are {shown}")
        out.append(matches[0])
    return tuple(out)


def cmd_curve(args) -> int:
    from training.adapt import learning_curve, load_base

    base = load_base(args.base, args.keras)  # a wrong base is refused before the corpora are read
    clips, _ = _clips(args)
    result = learning_curve(
        base,
        clips,
        args.corpus,
        args.out,
        args.shots,
        _adapt_settings(args),
        args.cache,
        workers=args.workers,
        threads=args.threads,
        repeats=args.repeats,
    )
    tested = ", ".join(result["tested_on"]) if len(result["tested_on"]) <= 4 else f"{len(result['tested_on'])} new speakers"
    print(f"| labelled clips per emotion | clips | what moved | restricted UA on {tested} | each of them enrolled |")
    print("|---:|---:|---|---:|---:|")
    for row in result["rows"]:
        moved = row.get("layers", "nothing (zero-shot)")
        print(f"| {row['shots_per_label']} | {row['clips']} | {moved} | {row['ua_restricted']:.3f} | {row['ua_restricted_enrolled']:.3f} |")
    print(f"curve.json and curve.png in {args.out}")
    return 0


def _shots(text: str) -> tuple[int, ...]:
    try:
        shots = tuple(int(k) for k in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of whole numbers, like 0,5,10") from None
    if any(k < 0 for k in shots):
        raise argparse.ArgumentTypeError(f"{text!r}: clips per emotion cannot be negative")
    return shots


def _at_least(minimum: int):
    """An argparse type: a whole number of ``minimum`` or more, or one sentence saying so."""

    def whole(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            n = minimum - 1
        if n < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of {minimum} or more")
        return n

    return whole


_count, _positive = _at_least(0), _at_least(1)


def _pull(text: str) -> float:
    """An argparse type: a finite number of 0 or more (an L2 weight), or one sentence saying so."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of 0 or more")
    return value


def _add_adapt_args(p: argparse.ArgumentParser) -> None:
    """How adaptation fine-tunes (training.adapt.AdaptSettings), the same for adapt and curve."""
    p.add_argument(
        "--layers",
        choices=("auto", "head", "all", "top"),
        default="auto",
        help="what moves: only each network's last dense layer, refitted on the frozen networks' embeddings (head; "
        "seconds), every layer fine-tuned by Adam (all), all but the first block (top), or auto (default): all when "
        "every label has --all-from clips, else head",
    )
    p.add_argument(
        "--all-from",
        type=_positive,
        default=20,
        metavar="N",
        help="--layers auto: clips per label from which every layer is fine-tuned (default 20)",
    )
    p.add_argument(
        "--head-l2",
        type=_pull,
        default=0.3,
        help="how strongly the refitted last layer is held to the one it starts from (default 0.3; smaller follows your clips more)",
    )
    p.add_argument(
        "--stats-l2",
        type=_pull,
        default=0.3,
        help="how strongly the window-statistics input to the last layer is held to where it starts: zero, or an adapted model's own (default 0.3)",
    )
    p.add_argument(
        "--no-window-stats",
        dest="window_stats",
        action="store_false",
        help="do not give the last layer a new input, the window's own statistics (level, spread and movement of each "
        "coefficient), refitted with it after any fine-tuning",
    )
    p.add_argument(
        "--no-profiles",
        dest="profiles",
        action="store_false",
        help="learn only from windows normalised with the population's statistics, not also with each speaker's own "
        "(the view a voice profile gives on the device)",
    )
    p.add_argument("--epochs", type=_positive, default=12, help="--layers all/top: passes over the clips (default 12)")
    p.add_argument("--learning-rate", type=float, default=3e-4, help="--layers all/top: Adam's learning rate (default 3e-4)")
    p.add_argument("--variants", type=_count, default=4, help="augmented copies per clip (default 4; 0 for none)")


def _adapt_settings(args):
    from training.adapt import AdaptSettings

    return AdaptSettings(
        epochs=args.epochs,
        learning_rate=args.learning_rate,
        augment_variants=args.variants,
        layers=args.layers,
        auto_all_from=args.all_from,
        head_l2=args.head_l2,
        window_stats=args.window_stats,
        stats_l2=args.stats_l2,
        profiles=args.profiles,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training", description=__doc__, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--debug", action="store_true", help="log everything")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("load", help="write the clip table (path, corpus, speaker, gender, label, duration_s, rate_hz)")
    _add_data_args(p)
    p.add_argument("--out", default="runs/clips.csv", help="CSV to write")
    p.set_defaults(func=cmd_load)

    p = sub.add_parser("explore", help="plots and a summary table of the data")
    _add_data_args(p)
    p.add_argument("--out", default="runs/explore", help="folder for the PNGs and summary.md")
    p.set_defaults(func=cmd_explore)

    for name, func, text in (
        ("features", cmd_features, "fill the feature cache for the given settings"),
        ("train", cmd_train, "train and score a model into a run folder"),
        ("crossval", cmd_crossval, "leave one corpus out (or RAVDESS speaker folds): one network per fold, the mean restricted UA"),
    ):
        p = sub.add_parser(name, help=text, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
        _add_data_args(p)
        p.add_argument("--config", help="JSON of TrainSettings (e.g. a run's settings.json); defaults otherwise")
        p.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override one setting, e.g. window_s=3.0 or augment.snr_db=[0,20]",
        )
        p.add_argument("--cache", default="cache", help="feature cache folder (safe to delete)")
        p.add_argument("--workers", type=int, default=2, help="processes for feature extraction")
        if name == "crossval":
            p.add_argument("--out", default="runs/crossval", help="folder for one run folder per fold and crossval.json")
            p.add_argument(
                "--protocol",
                choices=("corpora", "speakers"),
                default="corpora",
                help="corpora: hold out each corpus whole in turn and RAVDESS by speaker folds (default); "
                "speakers: RAVDESS speaker folds with SAVEE JK and TESS YAF",
            )
            p.add_argument("--folds", type=int, default=3, help="RAVDESS speaker folds (default 3: six actors each)")
            p.add_argument("--threads", type=int, default=2, help="TensorFlow threads")
        if name == "train":
            p.add_argument("--out", default="runs/model", help="run folder to write")
            p.add_argument(
                "--validation",
                metavar="SPEAKERS",
                help="comma-separated speakers held out to validate on (default: ravdess_17..20, savee_JK, tess_YAF, nemo_MP0, turev_7895, "
                "ased_05, ased_10); "
                "e.g. one fold of a cross-validation",
            )
            p.add_argument("--test", metavar="SPEAKERS", help='comma-separated test speakers (default: ravdess_15,ravdess_16; "" for none)')
            p.add_argument("--threads", type=int, default=2, help="TensorFlow threads")
        p.set_defaults(func=func)
    p = sub.add_parser(
        "adapt",
        help="adapt a model to a few labelled clips (its last layer, or every layer from 20 clips per label), then convert it to int8",
        description=ADAPT_HELP,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--manifest", action="append", default=[], help="CSV of path,label[,speaker][,corpus]: your labelled clips (repeatable)")
    p.add_argument(
        "--base",
        default=None,
        help="the model to adapt: the shipped one (default), a training run folder, or an adapted model's .tflite (its run folder holds its float twin)",
    )
    p.add_argument("--keras", default=None, help="the float twin of --base when it is a .tflite and not beside its run folder")
    p.add_argument("--out", default="runs/adapted", help="run folder to write; the int8 model goes to OUT/int8/")
    p.add_argument("--validation", metavar="SPEAKERS", help="speakers of the manifest held out to score the result (default: none)")
    _add_adapt_args(p)
    p.add_argument("--cache", default="cache", help="feature cache folder (safe to delete)")
    p.add_argument("--workers", type=int, default=2, help="processes for feature extraction")
    p.add_argument("--threads", type=int, default=2, help="TensorFlow threads")
    p.set_defaults(func=cmd_adapt)

    p = sub.add_parser(
        "curve",
        help="adaptation's learning curve on a corpus the base model never heard",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_data_args(p)
    p.add_argument("--base", required=True, help="a training run folder whose model never heard --corpus (a leave-one-corpus-out fold)")
    p.add_argument("--keras", default=None, help="the float twin of --base when it is a .tflite")
    p.add_argument("--corpus", required=True, help="the new corpus: half its speakers give labelled clips, the other half are tested")
    p.add_argument(
        "--shots",
        type=_shots,
        default=(0, 5, 10, 20, 50),
        help="labelled clips per emotion to try, comma-separated (default 0,5,10,20,50; a number over what a label has takes all its clips)",
    )
    p.add_argument("--repeats", type=_positive, default=3, help="draws of clips per point, averaged (default 3)")
    _add_adapt_args(p)
    p.add_argument("--out", default="runs/curve", help="folder for curve.json, curve.png and one run per point")
    p.add_argument("--cache", default="cache", help="feature cache folder (safe to delete)")
    p.add_argument("--workers", type=int, default=2, help="processes for feature extraction")
    p.add_argument("--threads", type=int, default=2, help="TensorFlow threads")
    p.set_defaults(func=cmd_curve)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # an --out that is a file, a folder where a file goes, no permission
        print(f"error: {exc.filename or ''}: {exc.strerror or exc}; choose another path", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
