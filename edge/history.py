"""The history of verdicts: one row per minute of listening in an SQLite database, opened, written and pruned.

What is kept (never audio, never words), per minute of listening: the seconds heard and the seconds
of speech; for each of the model's labels the share of that speech time the label was the verdict,
its mean probability over the speech windows, and the alerts raised and ended; the device id and
the sha256 of the model that judged. The service writes it (``edge.service.history_sink``) and keeps
it within its days and size, the ``history`` command and the page's charts read it (through
:mod:`edge.history_query`), and both delete from it. Standard library only.

The database is in WAL mode with ``synchronous = NORMAL``: every minute is one transaction, so a
power cut or a SIGKILL loses at most the minutes not yet committed and never leaves half a minute
or a damaged file. ``secure_delete`` overwrites what is deleted, so a forgotten day is gone from the
file, not just unlinked. Times are Unix seconds (UTC); the readers group them by the device's local
time. A database that is corrupt or held by another writer is moved aside and started anew.

Schema (``PRAGMA user_version`` = SCHEMA_VERSION):

    minutes(id, start, device_id, model_sha256, heard_s, speech_s)   start: the minute's first second
    labels(minute_id, label, share, prob, raised, ended)             one row per label of that minute
    models(sha256, name, labels)                                     the labels in the model's order (JSON)
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
FILE_NAME = "history.sqlite"
EXAMPLE_PATH = "/var/lib/ser-edge/history.sqlite"
MINUTE_S = 60
BUSY_TIMEOUT_MS = 3000  # a `history --delete` or a reader holds the lock for milliseconds; 3 s is patience, not a hang
START_BUSY_TIMEOUT_MS = 10_000  # at start (in the writer's thread): outlasts a `--delete-all` rebuilding a full database

_SCHEMA = """
CREATE TABLE IF NOT EXISTS minutes (
    id INTEGER PRIMARY KEY,
    start INTEGER NOT NULL,
    device_id TEXT NOT NULL,
    model_sha256 TEXT NOT NULL,
    heard_s REAL NOT NULL,
    speech_s REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS minutes_by_start ON minutes (start);
CREATE TABLE IF NOT EXISTS labels (
    minute_id INTEGER NOT NULL REFERENCES minutes (id),
    label TEXT NOT NULL,
    share REAL NOT NULL,
    prob REAL NOT NULL,
    raised INTEGER NOT NULL,
    ended INTEGER NOT NULL,
    PRIMARY KEY (minute_id, label)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS models (
    sha256 TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    labels TEXT NOT NULL
);
"""

# SQLite's primary result codes (https://sqlite.org/rescode.html) that decide what a failure means.
SQLITE_BUSY, SQLITE_LOCKED, SQLITE_CORRUPT, SQLITE_NOTADB = 5, 6, 11, 26
SQLITE_READONLY, SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN = 8, 10, 13, 14
MOVED_ASIDE = {SQLITE_CORRUPT: "corrupt", SQLITE_NOTADB: "corrupt", SQLITE_BUSY: "locked", SQLITE_LOCKED: "locked"}
CANNOT_WRITE = {
    SQLITE_READONLY: "the disk or file is read-only",
    SQLITE_FULL: "the disk is full",
    SQLITE_IOERR: "a disk I/O error",
    SQLITE_CANTOPEN: "the file cannot be opened or created",
}


class HistoryError(RuntimeError):
    """The history cannot be read or changed, with one sentence naming the database and the fix."""


def database_path(settings, even_if_off: bool = False) -> str | None:
    """Where the service keeps its history (a ServiceSettings): [history] path, else history.sqlite beside
    mqtt.queue_file; None when the history is off (unless ``even_if_off``: where it was kept, to delete it) or has no place."""
    history = settings.history
    if not history.enabled and not even_if_off:
        return None
    if history.path:
        return history.path
    if settings.mqtt.queue_file:
        return str(Path(settings.mqtt.queue_file).parent / FILE_NAME)
    return None


@dataclass
class Minute:
    """One minute of listening as the service adds it up; one row of ``minutes`` with its ``labels`` rows."""

    start: int
    """Unix time (UTC) of the minute's first second."""
    heard_s: float = 0.0
    """Seconds of audio heard in the minute (60 for a whole one)."""
    speech_s: float = 0.0
    """Seconds of it that held speech."""
    verdicts: dict[str, int] = field(default_factory=dict)
    """Speech windows per top label."""
    prob_sums: dict[str, float] = field(default_factory=dict)
    """Sum of each label's probability over the speech windows."""
    raised: dict[str, int] = field(default_factory=dict)
    ended: dict[str, int] = field(default_factory=dict)

    @property
    def speech_windows(self) -> int:
        return sum(self.verdicts.values())

    def label_rows(self, labels: Iterable[str]) -> Iterator[tuple[str, float, float, int, int]]:
        """(label, share, mean prob, raised, ended) for each label the minute says anything about."""
        n = self.speech_windows
        for label in labels:
            share = self.verdicts.get(label, 0) / n if n else 0.0
            prob = self.prob_sums.get(label, 0.0) / n if n else 0.0
            raised, ended = self.raised.get(label, 0), self.ended.get(label, 0)
            if share or prob or raised or ended:
                yield label, round(share, 4), round(prob, 4), raised, ended


@dataclass(frozen=True)
class Source:
    """Who judged: written on every minute row, and the model's labels (in its order) once."""

    device_id: str
    model_sha256: str
    model_name: str
    labels: tuple[str, ...]


# --------------------------------------------------------------------------------------------- the file


def error_code(exc: sqlite3.Error) -> int | None:
    """SQLite's primary result code of an error (e.g. SQLITE_FULL), or None when it has none."""
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def connect(path: str | os.PathLike, readonly: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit); ``readonly`` opens without creating anything."""
    if readonly:
        if not Path(path).is_file():
            raise HistoryError(f"there is no history database at {path}; the service writes one once [history] has a place")
        uri = Path(path).resolve().as_uri() + "?mode=ro"
        db = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
    else:
        db = sqlite3.connect(str(path), isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return db


class CorruptDatabaseError(sqlite3.DatabaseError):
    """SQLite opened the file, but its own check found damage."""


def open_for_writing(path: str | os.PathLike, check: bool = True) -> sqlite3.Connection:
    """The database, checked and ready: created if missing, moved aside and started anew if corrupt or locked.

    A database that is corrupt (or not a database) or locked by another writer is renamed, with its
    -wal and -shm files, to NAME.corrupt-TIMESTAMP or NAME.locked-TIMESTAMP, one warning names it, and
    a new one is started. A folder that is read-only or full raises sqlite3.Error for the caller to report.
    ``check`` runs SQLite's quick_check, which reads the whole file: at start, not on every reopen.
    """
    try:
        return _prepare(path, check)
    except sqlite3.DatabaseError as exc:
        why = "corrupt" if isinstance(exc, CorruptDatabaseError) else MOVED_ASIDE.get(error_code(exc))
        if why is None:
            raise
        moved = move_aside(path, why)
        log.warning("history database %s is %s (%s): moved it aside as %s and started a new one", path, why, exc, moved)
        return _prepare(path, check)


def _prepare(path: str | os.PathLike, check: bool = True) -> sqlite3.Connection:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = connect(path)
    try:
        db.execute(f"PRAGMA busy_timeout = {START_BUSY_TIMEOUT_MS}")  # a lock held longer than this at start is a fault
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise HistoryError(f"history database {path} was written by a newer ser-edge (schema {version}); upgrade, or move it away")
        problems = [row[0] for row in db.execute("PRAGMA quick_check")] if check else ["ok"]
        if problems != ["ok"]:
            raise CorruptDatabaseError("; ".join(problems[:3]))
        if version == 0:
            db.execute("PRAGMA auto_vacuum = INCREMENTAL")  # before the first table: lets the size cap shrink the file
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")  # in WAL a commit is kept whole or not at all; a power cut may lose the last ones
        db.execute("PRAGMA secure_delete = ON")
        with transaction(db):  # takes the write lock: a database another writer holds fails here
            if version == 0:
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        return db
    except BaseException:
        db.close()
        raise


def move_aside(path: str | os.PathLike, why: str) -> Path | None:
    """Rename the database and its -wal, -shm and -journal files to NAME.WHY-TIMESTAMP...; the new name, or None."""
    path = Path(path)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    target = path.with_name(f"{path.name}.{why}-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.{why}-{stamp}-{n}")
    moved = None
    for suffix in ("", "-wal", "-shm", "-journal"):
        src = Path(f"{path}{suffix}")
        if src.exists():
            os.replace(src, f"{target}{suffix}")
            moved = moved or target
    return moved


# --------------------------------------------------------------------------------------------- writing


def write_minutes(db: sqlite3.Connection, source: Source, minutes: list[Minute]) -> None:
    """Add minutes, each with its label rows, in one transaction: all of them or none."""
    with transaction(db):
        db.execute(
            "INSERT INTO models (sha256, name, labels) VALUES (?, ?, ?) ON CONFLICT (sha256) DO UPDATE SET labels = excluded.labels",
            (source.model_sha256, source.model_name, json.dumps(list(source.labels))),
        )
        for m in minutes:
            cursor = db.execute(
                "INSERT INTO minutes (start, device_id, model_sha256, heard_s, speech_s) VALUES (?, ?, ?, ?, ?)",
                (int(m.start), source.device_id, source.model_sha256, round(m.heard_s, 3), round(m.speech_s, 3)),
            )
            rows = [(cursor.lastrowid, *row) for row in m.label_rows(source.labels)]
            db.executemany("INSERT INTO labels (minute_id, label, share, prob, raised, ended) VALUES (?, ?, ?, ?, ?, ?)", rows)


@contextlib.contextmanager
def transaction(db: sqlite3.Connection):
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def delete_before(db: sqlite3.Connection, cutoff_unix: float) -> int:
    """Delete every minute that started before ``cutoff_unix`` (with its label rows); how many went.

    The freed pages are overwritten (secure_delete) and given back to the file system, and the WAL
    is emptied, so what was deleted is gone from the disk as far as SQLite can tell.
    """
    db.execute("PRAGMA secure_delete = ON")
    with transaction(db):
        db.execute("DELETE FROM labels WHERE minute_id IN (SELECT id FROM minutes WHERE start < ?)", (cutoff_unix,))
        n = db.execute("DELETE FROM minutes WHERE start < ?", (cutoff_unix,)).rowcount
    if n:
        shrink(db)
    return n


def shrink(db: sqlite3.Connection) -> None:
    """Give free pages back to the file system and empty the WAL (no reader is kept waiting for it)."""
    db.executescript("PRAGMA incremental_vacuum;")  # a page per step: executescript steps it to the end, execute only once
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def size_bytes(db: sqlite3.Connection) -> int:
    """The bytes the database's pages take (without the WAL, which checkpoints keep to a few MB)."""
    pages = db.execute("PRAGMA page_count").fetchone()[0] - db.execute("PRAGMA freelist_count").fetchone()[0]
    return pages * db.execute("PRAGMA page_size").fetchone()[0]


def keep_under(db: sqlite3.Connection, max_bytes: int) -> int:
    """Delete the oldest minutes until the database takes at most ``max_bytes`` (down to 90 % of it, so this
    runs now and then rather than every minute); how many minutes went."""
    deleted = 0
    for _ in range(8):  # rows are about the same size, so the first estimate is close; a few more rounds at most
        size = size_bytes(db)
        total = db.execute("SELECT count(*) FROM minutes").fetchone()[0]
        if size <= max_bytes or not total:
            break
        n = min(total, max(1, math.ceil(total * (1 - 0.9 * max_bytes / size))))
        cutoff = db.execute("SELECT start FROM minutes ORDER BY start LIMIT 1 OFFSET ?", (n - 1,)).fetchone()[0] + 1
        deleted += delete_before(db, cutoff)
    return deleted
