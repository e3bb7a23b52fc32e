"""What reads the history of verdicts: date ranges, groupings by hour, day or week, and the summaries.

``summary`` is what ``python -m edge history`` prints and the page's ``/api/history`` charts;
``daily_summary`` is today's and yesterday's figures the service publishes over MQTT (``…/summary``).
The database, its schema and its writing are :mod:`edge.history`. Every figure is grouped by the
device's local time (``localtime``), so "a day" and "an evening" are the person's own. Standard library only.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from datetime import date, datetime, timedelta

from edge.history import MINUTE_S, HistoryError

PERIODS = {
    # How each grouping names a period, in the device's local time. A week is named by its Monday.
    "hour": ("%Y-%m-%d %H:00", ()),
    "day": ("%Y-%m-%d", ()),
    "week": ("%Y-%m-%d", ("weekday 0", "-6 days")),
}


def local_midnight(day: date) -> float:
    """Unix time of the start of ``day`` in the device's local time."""
    return datetime(day.year, day.month, day.day).timestamp()


def parse_when(text: str, what: str, end: bool = False) -> float:
    """A date (YYYY-MM-DD, local) or a date and time (YYYY-MM-DDTHH:MM) as Unix time; ``end`` takes a
    date's following midnight, so "--until 2026-11-30" includes that day. HistoryError naming ``what``."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return local_midnight(day + timedelta(days=1) if end else day)
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise HistoryError(f"{what} {text} is not a date: use YYYY-MM-DD or YYYY-MM-DDTHH:MM, e.g. {date.today().isoformat()}") from None


def label_order(db: sqlite3.Connection, seen: Iterable[str]) -> list[str]:
    """The labels in the newest model's order (its contract's), then any other seen in the range."""
    order: list[str] = []
    for (labels,) in db.execute("SELECT labels FROM models ORDER BY rowid DESC"):
        order += [label for label in json.loads(labels) if label not in order]
    return [label for label in order if label in seen] + sorted(set(seen) - set(order))


def summary(db: sqlite3.Connection, by: str = "day", since: float | None = None, until: float | None = None) -> dict:
    """The history grouped by hour, day or week, and an hour-of-day by weekday table, as the page and `history --format json` give it.

    Each period: seconds heard and of speech, the share of speech time per label, the mean probability
    per label (both weighted by speech time), and the alerts raised and ended per label. Each cell of
    the heat map (weekday 0 = Monday, hour 0-23): the same for every such hour in the range.
    """
    check_by(by)
    fmt, modifiers = PERIODS[by]
    period = "strftime(?, m.start, 'unixepoch', 'localtime'" + "".join(f", '{m}'" for m in modifiers) + ")"
    where, args = _range(since, until)
    periods = _grouped(db, period, [fmt], where, args)
    weekday_hour = "((CAST(strftime('%w', m.start, 'unixepoch', 'localtime') AS INTEGER) + 6) % 7) || ' ' || strftime('%H', m.start, 'unixepoch', 'localtime')"
    cells = _grouped(db, weekday_hour, [], where, args)
    seen = {
        label for rows in (periods, cells) for p in rows.values() for k in ("shares", "probs", "alerts", "alerts_ended") for label in p[k]
    }
    labels = label_order(db, seen)
    first, last = db.execute(f"SELECT min(m.start), max(m.start) FROM minutes m {where}", args).fetchone()
    out = empty_summary(by, since, until)
    out.update(
        labels=labels,
        first_minute=_iso(first),
        last_minute=_iso(last + MINUTE_S if last is not None else None),
        periods=[{"period": key, **_ordered(p, labels)} for key, p in sorted(periods.items())],
        heatmap=[{"weekday": int(key.split()[0]), "hour": int(key.split()[1]), **_ordered(p, labels)} for key, p in sorted(cells.items())],
    )
    return out


def daily_summary(db: sqlite3.Connection, today: date | None = None) -> dict:
    """Today so far and yesterday, as the service publishes them (MQTT ``…/summary``): for each day the
    seconds heard and of speech, the share of speech per label and the alerts raised per label."""
    today = today or date.today()
    yesterday = today - timedelta(days=1)
    answer = summary(db, "day", local_midnight(yesterday), local_midnight(today + timedelta(days=1)))
    periods = {p["period"]: p for p in answer["periods"]}

    def day(d: date) -> dict:
        p = periods.get(d.isoformat(), {})
        return {
            "date": d.isoformat(),
            "heard_s": p.get("heard_s", 0.0),
            "speech_s": p.get("speech_s", 0.0),
            "shares": p.get("shares", {}),
            "alerts": p.get("alerts", {}),
        }

    return {"type": "summary", "date": today.isoformat(), "timezone": answer["timezone"], "today": day(today), "yesterday": day(yesterday)}


def check_by(by: str) -> None:
    if by not in PERIODS:
        raise HistoryError(f"by {by} is not a grouping: use one of {', '.join(PERIODS)}")


def empty_summary(by: str = "day", since: float | None = None, until: float | None = None) -> dict:
    """What ``summary`` answers for a database that does not exist yet."""
    check_by(by)
    return {
        "by": by,
        "since": _iso(since),
        "until": _iso(until),
        "timezone": time.strftime("%Z") or "local",
        "labels": [],
        "first_minute": None,
        "last_minute": None,
        "periods": [],
        "heatmap": [],
    }


def _range(since: float | None, until: float | None) -> tuple[str, list]:
    clauses, args = [], []
    if since is not None:
        clauses.append("m.start >= ?")
        args.append(int(since))
    if until is not None:
        clauses.append("m.start < ?")
        args.append(int(until))
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", args


def _grouped(db: sqlite3.Connection, key: str, key_args: list, where: str, args: list) -> dict[str, dict]:
    out: dict[str, dict] = {}
    query = f"SELECT {key} AS k, sum(m.heard_s), sum(m.speech_s), count(*) FROM minutes m {where} GROUP BY k"
    for k, heard, speech, minutes in db.execute(query, key_args + args):
        out[k] = {"heard_s": heard, "speech_s": speech, "minutes": minutes, "shares": {}, "probs": {}, "alerts": {}, "alerts_ended": {}}
    query = (
        f"SELECT {key} AS k, l.label, sum(l.share * m.speech_s), sum(l.prob * m.speech_s), sum(l.raised), sum(l.ended) "
        f"FROM minutes m JOIN labels l ON l.minute_id = m.id {where} GROUP BY k, l.label"
    )
    for k, label, share_s, prob_s, raised, ended in db.execute(query, key_args + args):
        p = out[k]
        if p["speech_s"] > 0:
            p["shares"][label] = share_s / p["speech_s"]
            p["probs"][label] = prob_s / p["speech_s"]
        if raised:
            p["alerts"][label] = raised
        if ended:
            p["alerts_ended"][label] = ended
    return out


def _ordered(p: dict, labels: list[str]) -> dict:
    """A period's figures, rounded, with its labels in the model's order."""

    def pick(values: dict, digits: int | None) -> dict:
        return {k: (round(values[k], digits) if digits is not None else values[k]) for k in labels if k in values}

    return {
        "heard_s": round(p["heard_s"], 1),
        "speech_s": round(p["speech_s"], 1),
        "minutes": p["minutes"],
        "shares": pick(p["shares"], 4),
        "probs": pick(p["probs"], 4),
        "alerts": pick(p["alerts"], None),
        "alerts_ended": pick(p["alerts_ended"], None),
    }


def _iso(unix: float | None) -> str | None:
    return None if unix is None else datetime.fromtimestamp(unix).astimezone().isoformat(timespec="minutes")
