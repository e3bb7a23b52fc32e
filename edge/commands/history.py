"""``python -m edge history``: what the service's per-minute history holds, by hour, day or week; and forgetting it."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sqlite3
import sys

from edge.files import what_is

HELP = """\
The service keeps, per minute of listening, the seconds of speech, the share of that speech
each emotion was heard in, the mean probabilities and the alerts raised and ended (never
audio, never words), in an SQLite database: [history] path, or history.sqlite beside the
MQTT queue file. This command adds the minutes up by hour, day or week, in local time.

These are trends of one voice judged by a model trained on acted speech: they can show
that this week sounded sadder than the last, not why, and they are not a diagnosis.

Shares are of speech time; "heard" is time listened, "speech" the part of it with speech.

examples:
  python -m edge history --config /etc/ser-edge/config.toml         every day so far
  python -m edge history --db history.sqlite --since 2026-11-01 --by week
  python -m edge history --db history.sqlite --by hour --since 2026-11-30 --format csv
  python -m edge history --db history.sqlite --delete --before 2026-11-01   forget older days
  python -m edge history --db history.sqlite --delete-all                   forget everything

Exit status: 0 on success, 2 for a bad option, a configuration without a history, or a
database that cannot be read.
"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "history",
        help="the per-minute history of verdicts by hour, day or week; delete it",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument("--config", metavar="FILE", help="the service's TOML configuration: its database, as `run` finds it")
    where.add_argument("--db", metavar="PATH", help="the history database itself")
    p.add_argument("--since", metavar="DATE", help="from this day (YYYY-MM-DD, or YYYY-MM-DDTHH:MM), local time")
    p.add_argument("--until", metavar="DATE", help="up to and including this day (or up to this YYYY-MM-DDTHH:MM)")
    p.add_argument("--by", choices=("hour", "day", "week"), default="day", help="add the minutes up per hour, day or week (default: day)")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table", help="output (default: table)")
    forget = p.add_argument_group("forgetting")
    forget.add_argument("--delete", action="store_true", help="delete the minutes before --before DATE")
    forget.add_argument("--before", metavar="DATE", help="with --delete: the first day kept (YYYY-MM-DD)")
    forget.add_argument("--delete-all", action="store_true", help="delete every minute of history")
    p.set_defaults(func=main)


def main(args) -> int:
    from edge import history, history_query

    try:
        forgetting = bool(args.delete or args.delete_all or args.before)
        path = _database(args, forgetting)
        kind = what_is(path)
        if kind is not None:
            raise history.HistoryError(f"{path} is {kind}, not a history database; give the file [history] path names")
        if forgetting:
            return _forget(args, path)
        since = history_query.parse_when(args.since, "--since") if args.since else None
        until = history_query.parse_when(args.until, "--until", end=True) if args.until else None
        history_query.check_by(args.by)
        db = history.connect(path, readonly=True)
        try:
            answer = history_query.summary(db, args.by, since, until)
        finally:
            db.close()
    except history.HistoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except sqlite3.Error as exc:
        print(f"error: the history database {path} cannot be read ({exc}); is it a ser-edge history database?", file=sys.stderr)
        return 2
    if args.format == "json":
        print(json.dumps(answer))
    elif args.format == "csv":
        write_csv(answer, sys.stdout)
    else:
        print_table(answer)
    return 0


def _database(args, forgetting: bool = False) -> str:
    from edge import history
    from edge.service.config import ConfigError, load_settings

    if args.db:
        return args.db
    if not args.config:
        raise history.HistoryError(
            "give the history database with --db PATH, or the service's configuration with --config FILE (e.g. /etc/ser-edge/config.toml)"
        )
    try:
        path = history.database_path(load_settings(args.config), even_if_off=forgetting)  # history turned off may still be deleted
    except ConfigError as exc:
        raise history.HistoryError(str(exc)) from None
    if path is None:
        raise history.HistoryError(f"{args.config} keeps no history: set [history] path (or mqtt.queue_file) and enabled = true")
    return path


def _forget(args, path: str) -> int:
    from edge import history, history_query

    if args.delete_all and (args.delete or args.before):
        raise history.HistoryError("--delete-all deletes everything; leave out --delete and --before (or use them without it)")
    if args.delete and not args.before:
        raise history.HistoryError("--delete needs --before DATE, the first day to keep (or use --delete-all)")
    if args.before and not args.delete:
        raise history.HistoryError(f"--before {args.before} only says what --delete deletes; add --delete (nothing was deleted)")
    given = [flag for flag, value in (("--since", args.since), ("--until", args.until)) if value] + (
        ["--format"] if args.format != "table" else []
    )
    if given:  # deleting is forever: what it deletes is --before's alone, never what a reader might take --since to narrow
        raise history.HistoryError(
            f"{' and '.join(given)} only shape what is shown; deleting takes --before DATE or --delete-all alone (nothing was deleted)"
        )
    cutoff = float("inf") if args.delete_all else history_query.parse_when(args.before, "--before")
    if not os.path.isfile(path):
        raise history.HistoryError(f"there is no history database at {path}; nothing to delete")
    db = history.connect(path)
    try:
        n = history.delete_before(db, cutoff)
        if args.delete_all:
            db.execute("VACUUM")  # the file back to its empty size: nothing of the old pages is left in it
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.Error as exc:
        raise history.HistoryError(f"could not delete from {path} ({exc}); stop the service and try again") from None
    finally:
        db.close()
    what = f"all {n} minute(s) of history" if args.delete_all else f"{n} minute(s) of history before {args.before}"
    print(f"deleted {what} from {path}", file=sys.stderr)
    return 0


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 360 else f"{seconds / 60:.0f} min"


def print_table(answer: dict) -> None:
    """One line per period: time heard, time of speech, each label's share of the speech, the alerts."""
    labels = answer["labels"]
    head = [answer["by"], "heard", "speech", *labels, "alerts"]
    rows = []
    for p in answer["periods"]:
        shares = [f"{100 * p['shares'][label]:.0f} %" if label in p["shares"] else "-" for label in labels]
        alerts = ", ".join(f"{label} {n}" for label, n in p["alerts"].items()) or "-"
        rows.append([p["period"], _hours(p["heard_s"]), _hours(p["speech_s"]), *shares, alerts])
    if not rows:
        print(f"no history in this range (times are {answer['timezone']})", file=sys.stderr)
        return
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, *rows]:
        print(
            "  ".join(
                str(v).ljust(w) if i in (0, len(head) - 1) else str(v).rjust(w) for i, (v, w) in enumerate(zip(r, widths, strict=True))
            ).rstrip()
        )


def write_csv(answer: dict, out) -> None:
    """One row per period: seconds heard and of speech, then share_, prob_, alerts_ and alerts_ended_ per label."""
    labels = answer["labels"]
    groups = (("share", "shares"), ("prob", "probs"), ("alerts", "alerts"), ("alerts_ended", "alerts_ended"))
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([answer["by"], "heard_s", "speech_s", "minutes", *(f"{prefix}_{label}" for prefix, _ in groups for label in labels)])
    for p in answer["periods"]:
        values = [p[key].get(label, 0) for _, key in groups for label in labels]
        writer.writerow([p["period"], p["heard_s"], p["speech_s"], p["minutes"], *values])
