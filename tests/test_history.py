"""The history: minute rows from the real service, what a kill or a damaged file leaves, retention, deletion, the CLI and the API.

Real processes and real SQLite files throughout; the disk-full and read-only cases run the service
on a small tmpfs in a private mount namespace (root only, as CI runs).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from tiny_model import EMOTIONS

from edge import history, history_query
from edge.classifier import StreamingClassifier
from edge.history import Minute, Source
from edge.model import Model
from edge.service import history_sink
from edge.service.history_sink import HistorySink
from edge.settings import HistorySettings

ROOT = Path(__file__).resolve().parents[1]
SOURCE = Source("test-device", "ab" * 32, "tiny", tuple(EMOTIONS))
DAY_S = 86400


def run_edge(*args, cwd=None, timeout=300):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "edge", *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout
    )


def window(end_s: float, label: str, speech: bool = True, hop_s: float = 0.5) -> dict:
    probs = {e: (0.65 if e == label else 0.05) for e in EMOTIONS}
    return {"type": "window", "time_s": end_s, "start_s": end_s - 3.0, "end_s": end_s, "label": label, "probs": probs, "speech": speech}


def minutes_in(path) -> list[dict]:
    db = history.connect(path, readonly=True)
    try:
        rows = db.execute("SELECT id, start, device_id, model_sha256, heard_s, speech_s FROM minutes ORDER BY start, id").fetchall()
        labels = db.execute("SELECT minute_id, label, share, prob, raised, ended FROM labels").fetchall()
    finally:
        db.close()
    out = []
    for mid, start, device, sha, heard, speech in rows:
        mine = [r for r in labels if r[0] == mid]
        out.append(
            {
                "start": start,
                "device_id": device,
                "model_sha256": sha,
                "heard_s": heard,
                "speech_s": speech,
                "shares": {r[1]: r[2] for r in mine if r[2]},
                "probs": {r[1]: r[3] for r in mine},
                "raised": {r[1]: r[4] for r in mine if r[4]},
                "ended": {r[1]: r[5] for r in mine if r[5]},
            }
        )
    return out


def synthetic_minutes(first_day: date, days: int, per_day: int = 60) -> list[Minute]:
    """``per_day`` minutes of speech each day from 18:00 local, sad on even days, angry on odd ones, an alert a day."""
    out = []
    for d in range(days):
        evening = history_query.local_midnight(first_day + timedelta(days=d)) + 18 * 3600
        label = "sad" if d % 2 == 0 else "angry"
        for i in range(per_day):
            m = Minute(int(evening) + 60 * i, heard_s=60.0, speech_s=30.0)
            m.verdicts = {label: 45, "neutral": 15}
            m.prob_sums = {e: (36.0 if e == label else 3.0) for e in EMOTIONS}
            if i == 0:
                m.raised = {label: 1}
            if i == 5:
                m.ended = {label: 1}
            out.append(m)
    return out


def write_db(path: Path, minutes: list[Minute], source: Source = SOURCE) -> None:
    db = history.open_for_writing(path)
    try:
        history.write_minutes(db, source, minutes)
    finally:
        db.close()


@pytest.fixture()
def speech_file(data_dir, tmp_path) -> Path:
    """About 150 s of real speech (RAVDESS actors 15 and 16 end to end) as one 16 kHz WAV: three minute rows."""
    return real_speech(data_dir, tmp_path)


def real_speech(data_dir: Path, folder: Path) -> Path:
    clips, n = [], 0
    for path in sorted((data_dir / "ravdess").glob("Actor_1[56]/*.flac")):
        x, rate = sf.read(str(path), dtype="float32")
        clips.append(x)
        n += x.size
        if n > 150 * rate:
            break
    out = folder / "speech.wav"
    sf.write(str(out), np.concatenate(clips), rate, subtype="PCM_16")
    return out


# --------------------------------------------------------------------------------------------- the service writes minutes


def test_a_replayed_file_becomes_minute_rows_that_add_up_to_its_windows(speech_file, tiny_model_path, tmp_path):
    db_path = tmp_path / "state" / "history.sqlite"
    config = tmp_path / "config.toml"
    config.write_text(f'[mqtt]\ndevice_id = "kitchen"\n\n[history]\npath = "{db_path}"\n')
    proc = run_edge("run", "--config", config, "--source", speech_file, "--model", tiny_model_path, "--verbose")
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    windows = [e for e in events if e["type"] == "window"]
    alerts = [e for e in events if e["type"] in ("alert", "alert_end")]

    rows = minutes_in(db_path)
    model = Model(tiny_model_path)
    hop_s = model.contract.hop_s
    audio_s = sf.info(str(speech_file)).duration
    # Played as fast as possible, the file is stored as if heard live from the start: minutes of audio.
    assert len(rows) in (int(audio_s // 60) + 1, int(audio_s // 60) + 2)
    assert [r["start"] % 60 for r in rows] == [0] * len(rows)
    assert [b["start"] - a["start"] for a, b in zip(rows, rows[1:], strict=False)] == [60] * (len(rows) - 1)
    assert all(r["device_id"] == "kitchen" and r["model_sha256"] == model.contract.sha256 for r in rows)
    assert all(r["heard_s"] <= 60 for r in rows)
    # Heard: all the audio the windows covered, the first window's whole 3 s included (up to the last window's end).
    assert sum(r["heard_s"] for r in rows) == pytest.approx(windows[-1]["end_s"], abs=0.01)
    assert windows[-1]["end_s"] > len(windows) * hop_s + 0.4, "more than a hop per window: the first one covers a whole window"

    # Each label's speech time over the minutes is exactly its speech windows in the service's own output.
    speech = [w for w in windows if w["speech"]]
    assert sum(r["speech_s"] for r in rows) == pytest.approx(len(speech) * hop_s)
    for label in EMOTIONS:
        stored = sum(r["shares"].get(label, 0) * r["speech_s"] for r in rows)
        assert stored == pytest.approx(hop_s * sum(w["label"] == label for w in speech), abs=0.01 * len(rows))
        mean_prob = sum(r["probs"].get(label, 0) * r["speech_s"] for r in rows) / (len(speech) * hop_s)
        assert mean_prob == pytest.approx(np.mean([w["probs"][label] for w in speech]), abs=1e-3)
    for r in rows:
        if r["speech_s"]:
            assert sum(r["shares"].values()) == pytest.approx(1.0, abs=1e-3)
    assert sum(sum(r["raised"].values()) for r in rows) == sum(a["type"] == "alert" for a in alerts)
    assert sum(sum(r["ended"].values()) for r in rows) == sum(a["type"] == "alert_end" for a in alerts)

    labels = history.connect(db_path, readonly=True).execute("SELECT labels FROM models").fetchone()[0]
    assert json.loads(labels) == list(model.labels)  # the model's own labels, in its order
    assert "history: a per-minute history in" in proc.stderr


def test_minutes_follow_the_audio_and_alerts_count_in_their_minute(tmp_path):
    clock = [1_800_000_000.0 + 15]  # 15 s into a minute
    sink = HistorySink(HistorySettings(), str(tmp_path / "h.sqlite"), SOURCE, hop_s=0.5, clock=lambda: clock[0])
    for i in range(1, 241):  # 120 s of audio, as fast as a file plays: the wall clock hardly moves
        t = 0.5 * i
        sink.handle(window(t, "sad" if t <= 60 else "happy", speech=i % 4 != 0))
        if t == 30:
            sink.handle({"type": "alert", "time_s": t, "id": "x-1", "emotion": "sad"})
        if t == 50:
            sink.handle({"type": "alert_end", "time_s": t, "id": "x-1", "emotion": "sad"})
        if t == 60:
            sink.handle({"type": "alert", "time_s": t, "id": "x-2", "emotion": "not-a-label"})  # ignored
    sink.handle({"type": "health", "time_s": 120})
    sink.close()
    rows = minutes_in(tmp_path / "h.sqlite")
    assert [r["start"] - 1_800_000_000 for r in rows] == [0, 60, 120]
    # The first window (0.5 s of audio) came at 15 s past the minute: minutes end at 45.5 s and 105.5 s of audio.
    assert [r["heard_s"] for r in rows] == [45.0, 60.0, 15.0]  # 90, 120 and 30 windows of one hop each
    assert [r["speech_s"] for r in rows] == [34.0, 45.0, 11.0]  # every fourth window without speech
    assert rows[0]["shares"] == {"sad": 1.0}
    assert rows[1]["shares"] == pytest.approx({"sad": 22 / 90, "happy": 68 / 90}, abs=1e-4)
    assert rows[0]["raised"] == {"sad": 1} and rows[1]["ended"] == {"sad": 1}
    assert not any(r["raised"].get("not-a-label") for r in rows)
    assert rows[0]["probs"]["sad"] == pytest.approx(0.65)


def test_a_microphone_that_lost_audio_gets_back_to_the_clock(tmp_path):
    clock = [1_800_000_000.0]
    sink = HistorySink(HistorySettings(), str(tmp_path / "h.sqlite"), SOURCE, hop_s=0.5, clock=lambda: clock[0])
    sink.handle(window(3.0, "calm"))
    clock[0] += 600  # ten minutes of wall time, only a second of audio (a device that was reopened)
    sink.handle(window(4.0, "calm"))
    sink.close()
    assert [r["start"] - 1_800_000_000 for r in minutes_in(tmp_path / "h.sqlite")] == [0, 600]


def test_the_audio_loop_never_waits_for_a_writer_that_is_stuck(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(history_sink.HistoryWriter, "start", lambda self: None)  # a writer that never takes anything
    sink = HistorySink(HistorySettings(), str(tmp_path / "h.sqlite"), SOURCE, hop_s=0.5, clock=lambda: 1_800_000_000.0)
    with caplog.at_level(logging.WARNING, logger="edge.service.history_sink"):
        for i in range(1, 2 * 60 * (history_sink.QUEUE_MINUTES + 10)):  # 74 minutes of audio into a queue of 64
            sink.handle(window(0.5 * i, "calm"))
    assert sink._queue.qsize() == history_sink.QUEUE_MINUTES
    assert sink.dropped == 9  # 73 finished minutes, 64 queued: the loop went on and dropped the rest
    assert len([r for r in caplog.records if "writer is behind" in r.message]) == 1


# --------------------------------------------------------------------------------------------- nothing lost, nothing corrupt

KILL_WRITER = """
import sys, time
from edge import history, history_query
from edge.history import Minute, Source
src = Source("killed", "cd" * 32, "tiny", tuple(sys.argv[2].split(",")))
db = history.open_for_writing(sys.argv[1])
print("ready", flush=True)
start = 1_800_000_000
i = 0
while True:  # as fast as the disk goes, many minutes per transaction and one at a time
    batch = [Minute(start + 60 * (i + k), 60.0, 30.0, {"sad": 40, "calm": 20}, {"sad": 40.0, "calm": 20.0}) for k in range(1 + i % 7)]
    history.write_minutes(db, src, batch)
    i += len(batch)
"""


def check_consistent(path: Path) -> int:
    db = sqlite3.connect(path)  # as anyone would open it after the power came back
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        n = db.execute("SELECT count(*) FROM minutes").fetchone()[0]
        orphans = db.execute("SELECT count(*) FROM labels WHERE minute_id NOT IN (SELECT id FROM minutes)").fetchone()[0]
        bare = db.execute("SELECT count(*) FROM minutes WHERE speech_s > 0 AND id NOT IN (SELECT minute_id FROM labels)").fetchone()[0]
        assert (orphans, bare) == (0, 0), "a minute was kept without its labels, or labels without their minute"
        return n
    finally:
        db.close()


@pytest.mark.parametrize("kill_after_rows", [50, 2000, 20000])
def test_sigkill_during_writes_leaves_a_consistent_database(tmp_path, kill_after_rows):
    path = tmp_path / "history.sqlite"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", KILL_WRITER, str(path), ",".join(EMOTIONS)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True) as reader:
                if reader.execute("SELECT count(*) FROM minutes").fetchone()[0] >= kill_after_rows:
                    break
        proc.send_signal(signal.SIGKILL)  # mid-transaction, most likely: it writes without pause
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert check_consistent(path) >= kill_after_rows
    # And the service goes on writing to it.
    write_db(path, synthetic_minutes(date(2026, 1, 1), 1, per_day=3))
    assert check_consistent(path) >= kill_after_rows + 3


def test_sigkill_of_the_running_service_leaves_a_consistent_database(speech_file, tiny_model_path, tmp_path):
    path = tmp_path / "history.sqlite"
    config = tmp_path / "config.toml"
    config.write_text(f'[history]\npath = "{path}"\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "edge", "run", "--config", str(config), "--source", str(speech_file), "--loop"]
    proc = subprocess.Popen(command + ["--model", str(tiny_model_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if path.exists():
                with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True) as reader:
                    with_minutes = reader.execute("SELECT name FROM sqlite_master WHERE name = 'minutes'").fetchone()
                    if with_minutes and reader.execute("SELECT count(*) FROM minutes").fetchone()[0] >= 20:
                        break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert check_consistent(path) >= 20


def test_a_corrupt_database_is_moved_aside_and_a_new_one_started(tmp_path, caplog):
    path = tmp_path / "history.sqlite"
    path.write_bytes(b"these bytes are not an SQLite database\n" * 200)
    with caplog.at_level(logging.WARNING, logger="edge.history"):
        sink = HistorySink(HistorySettings(), str(path), SOURCE, hop_s=0.5, clock=lambda: 1_800_000_000.0)
        for i in range(1, 20):
            sink.handle(window(0.5 * i, "calm"))
        sink.close()
    aside = list(tmp_path.glob("history.sqlite.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"these bytes")  # kept for a person to look at
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and f"{path} is corrupt" in warnings[0] and aside[0].name in warnings[0]
    assert [r["heard_s"] for r in minutes_in(path)] == [9.5]


def test_a_database_damaged_inside_is_moved_aside(tmp_path):
    path = tmp_path / "history.sqlite"
    write_db(path, synthetic_minutes(date(2026, 1, 1), 20))
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    db.close()
    data = bytearray(path.read_bytes())
    for offset in range(3 * page_size, len(data) - page_size, 5 * page_size):  # scribble over pages after the header
        data[offset + 8 : offset + 200] = b"\xff" * 192
    path.write_bytes(bytes(data))
    history.open_for_writing(path).close()
    assert len(list(tmp_path.glob("history.sqlite.corrupt-*"))) == 1
    assert check_consistent(path) == 0


def test_a_database_locked_by_another_writer_at_start_is_moved_aside(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(history, "START_BUSY_TIMEOUT_MS", 300)  # the service waits 10 s before it calls a lock stuck
    path = tmp_path / "history.sqlite"
    write_db(path, synthetic_minutes(date(2026, 1, 1), 1, per_day=2))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA journal_mode = DELETE")
    holder.execute("BEGIN EXCLUSIVE")  # another process that never lets go
    try:
        with caplog.at_level(logging.WARNING, logger="edge.history"):
            db = history.open_for_writing(path)
        history.write_minutes(db, SOURCE, synthetic_minutes(date(2026, 1, 2), 1, per_day=1))
        db.close()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert len(list(tmp_path.glob("history.sqlite.locked-*"))) == 1
    assert any("is locked" in r.getMessage() and "started a new one" in r.getMessage() for r in caplog.records)
    assert check_consistent(path) == 1


@pytest.fixture(scope="module")
def mounts() -> None:
    """Skips unless this process may make a private mount namespace and mount a tmpfs in it (root, as CI runs)."""
    works = os.geteuid() == 0 and shutil.which("unshare") is not None
    if works:
        probe = ["unshare", "--mount", "--propagation", "private", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"]
        works = subprocess.run(probe, capture_output=True).returncode == 0
    if not works:
        pytest.skip("needs root and mount namespaces (unshare) to make a full or read-only disk")


def waited_minutes(stderr: str) -> int:
    """The minutes heard after the disk refused them: the service says how many it could not write when it stops."""
    found = re.search(r"history: (\d+) minute\(s\) could not be written before stopping", stderr)
    return int(found.group(1)) if found else 0


def _run_on_tmpfs(tmp_path, speech_file, tiny_model_path, setup: str) -> subprocess.CompletedProcess:
    """`run` on the speech file, with the history on a small tmpfs that ``setup`` (shell) prepares, in a mount namespace of its own."""
    disk = tmp_path / "disk"
    disk.mkdir()
    config = tmp_path / "config.toml"
    config.write_text(f'[history]\npath = "{disk}/history.sqlite"\n')
    run = f"{sys.executable} -m edge run --config {config} --source {speech_file} --loop --model {tiny_model_path} --verbose"
    # --loop and a stop after 15 s of wall time, so that well over a minute of audio wants writing.
    script = f"set -e; {setup.format(disk=disk, python=sys.executable)}; timeout --preserve-status -s TERM 15 {run}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script], capture_output=True, text=True, env=env, timeout=120
    )


def test_a_full_disk_is_reported_once_and_listening_goes_on(mounts, tmp_path, speech_file, tiny_model_path):
    # 128 KB: the database and its WAL take a few minutes, then the disk is full.
    proc = _run_on_tmpfs(tmp_path, speech_file, tiny_model_path, "mount -t tmpfs -o size=128k tmpfs {disk}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stderr.splitlines()
    errors = [line for line in lines if "history: cannot write" in line]
    assert len(errors) == 1, proc.stderr[-3000:]
    opened = next(i for i, line in enumerate(lines) if "history: a per-minute history in" in line)
    assert opened < lines.index(errors[0])  # it was writing when the disk filled
    assert "the disk is full" in errors[0] and "listening goes on" in errors[0]
    assert waited_minutes(proc.stderr) >= 2, proc.stderr[-3000:]  # minutes heard after the disk filled: listening went on


def test_a_read_only_disk_is_reported_once_and_listening_goes_on(mounts, tmp_path, speech_file, tiny_model_path):
    setup = (
        "mount -t tmpfs -o size=4m tmpfs {disk}; "
        "{python} -c \"from edge import history; history.open_for_writing('{disk}/history.sqlite').close()\"; "
        "mount -o remount,ro {disk}"
    )
    proc = _run_on_tmpfs(tmp_path, speech_file, tiny_model_path, setup)
    assert proc.returncode == 0, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if "history: cannot write" in line]
    assert len(errors) == 1, proc.stderr[-3000:]
    assert "read-only" in errors[0] and "listening goes on" in errors[0]
    assert waited_minutes(proc.stderr) >= 2, proc.stderr[-3000:]


def test_a_disk_that_comes_back_gets_the_minutes_that_waited(tmp_path, monkeypatch, caplog):
    """The writer keeps what the disk refused and writes it once the disk takes it again (here: a database made read-only and back)."""
    path = tmp_path / "h.sqlite"
    write_db(path, [])
    monkeypatch.setattr(history_sink, "RETRY_S", 0.05)
    real_open = history.open_for_writing
    refusing = [True]

    def open_for_writing(p, check=True):
        db = real_open(p, check)
        if refusing[0]:
            db.execute("PRAGMA query_only = ON")  # SQLite then refuses every write as a read-only database
        return db

    monkeypatch.setattr(history, "open_for_writing", open_for_writing)
    with caplog.at_level(logging.INFO, logger="edge.service.history_sink"):
        sink = HistorySink(HistorySettings(), str(path), SOURCE, hop_s=0.5, clock=lambda: 1_800_000_000.0)
        for i in range(1, 4 * 120):
            sink.handle(window(0.5 * i, "calm"))
        deadline = time.monotonic() + 30
        while sink.writer.problem is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert "not writing" in sink.status
        refusing[0] = False
        sink.close()
    assert len(minutes_in(path)) == 4
    messages = [r.getMessage() for r in caplog.records]
    assert sum("cannot write" in m for m in messages) == 1
    assert sum("writing to" in m and "again" in m for m in messages) == 1


def test_a_database_of_a_newer_ser_edge_is_left_alone_and_reported_in_one_sentence(tmp_path, caplog):
    path = tmp_path / "h.sqlite"
    write_db(path, [])
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    with caplog.at_level(logging.ERROR, logger="edge.service.history_sink"):
        sink = HistorySink(HistorySettings(), str(path), SOURCE, hop_s=0.5)
        sink.close()
    (line,) = [r.getMessage() for r in caplog.records]
    assert line == (
        f"history: cannot write {path} (history database {path} was written by a newer ser-edge (schema 99); upgrade, or move it away); "
        "listening goes on and up to a day of minutes waits in memory"
    )
    assert not list(tmp_path.glob("h.sqlite.*-*")), "not moved aside: a newer ser-edge may want it back"


# --------------------------------------------------------------------------------------------- retention, cap, forgetting


def test_retention_and_the_size_cap_are_kept_by_the_service(tmp_path):
    path = tmp_path / "h.sqlite"
    today = date.today()
    write_db(path, synthetic_minutes(today - timedelta(days=100), 101, per_day=30))
    sink = HistorySink(HistorySettings(keep_days=90), str(path), SOURCE, hop_s=0.5)
    sink.close()
    starts = [r["start"] for r in minutes_in(path)]
    assert min(starts) >= time.time() - 90 * DAY_S
    assert max(starts) >= history_query.local_midnight(today)  # today's minutes stay

    big = tmp_path / "big.sqlite"
    write_db(big, synthetic_minutes(today - timedelta(days=60), 60, per_day=300))
    assert big.stat().st_size > 4_000_000
    sink = HistorySink(HistorySettings(max_mb=1), str(big), SOURCE, hop_s=0.5)
    sink.close()
    assert big.stat().st_size <= 1_000_000  # the file itself shrank: the freed pages went back to the disk
    kept = [r["start"] for r in minutes_in(big)]
    assert kept and max(kept) >= history_query.local_midnight(today - timedelta(days=1))  # the newest minutes stay, the oldest went


def test_delete_before_a_date_and_delete_all_forget_for_real(tmp_path):
    path = tmp_path / "h.sqlite"
    first = date.today() - timedelta(days=10)
    marked = Source("forget-me-device", "ef" * 32, "tiny", tuple(EMOTIONS))
    write_db(path, synthetic_minutes(first, 10, per_day=20), marked)

    proc = run_edge("history", "--db", path, "--delete", "--before", (first + timedelta(days=4)).isoformat())
    assert proc.returncode == 0, proc.stderr
    assert f"deleted 80 minute(s) of history before {first + timedelta(days=4)} from {path}" in proc.stderr
    starts = [r["start"] for r in minutes_in(path)]
    assert len(starts) == 120 and min(starts) >= history_query.local_midnight(first + timedelta(days=4))

    proc = run_edge("history", "--db", path, "--delete-all")
    assert proc.returncode == 0, proc.stderr
    assert f"deleted all 120 minute(s) of history from {path}" in proc.stderr
    assert minutes_in(path) == []
    on_disk = b"".join(p.read_bytes() for p in tmp_path.glob("h.sqlite*"))
    assert b"forget-me-device" not in on_disk  # overwritten, not only unlinked


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--delete"], "--delete needs --before DATE, the first day to keep (or use --delete-all)"),
        (["--before", "2026-01-01"], "--before 2026-01-01 only says what --delete deletes; add --delete (nothing was deleted)"),
        (["--delete-all", "--delete", "--before", "2026-01-01"], "--delete-all deletes everything"),
        (["--delete", "--before", "yesterday"], "--before yesterday is not a date: use YYYY-MM-DD"),
        (["--since", "2026-02-30"], "--since 2026-02-30 is not a date"),
        (["--delete", "--before", "2026-12-01", "--since", "2026-11-30"], "--since only shape what is shown; deleting takes --before"),
        (["--delete-all", "--until", "2026-11-30", "--format", "json"], "--until and --format only shape what is shown"),
    ],
)
def test_cli_mistakes_get_one_sentence(tmp_path, args, message):
    path = tmp_path / "h.sqlite"
    write_db(path, [])
    proc = run_edge("history", "--db", path, *args)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and message in proc.stderr and proc.stderr.count("\n") == 1


def test_cli_without_a_database_or_with_a_config_without_history(tmp_path):
    proc = run_edge("history")
    assert proc.returncode == 2 and "give the history database with --db PATH" in proc.stderr
    config = tmp_path / "c.toml"
    config.write_text("[history]\nenabled = true\n")
    proc = run_edge("history", "--config", config)
    assert proc.returncode == 2 and "keeps no history: set [history] path" in proc.stderr
    proc = run_edge("history", "--db", tmp_path / "none.sqlite")
    assert proc.returncode == 2 and "there is no history database at" in proc.stderr
    proc = run_edge("history", "--db", tmp_path)
    assert proc.returncode == 2 and f"{tmp_path} is a folder, not a history database" in proc.stderr


def test_a_history_turned_off_can_still_be_deleted_through_the_config(tmp_path):
    path = tmp_path / "h.sqlite"
    write_db(path, synthetic_minutes(date.today() - timedelta(days=2), 2, per_day=5))
    config = tmp_path / "c.toml"
    config.write_text(f'[history]\nenabled = false\npath = "{path}"\n')
    assert run_edge("history", "--config", config).returncode == 2, "nothing to show: it is off"
    proc = run_edge("history", "--config", config, "--delete-all")
    assert proc.returncode == 0, proc.stderr
    assert "deleted all 10 minute(s)" in proc.stderr and minutes_in(path) == []
    (tmp_path / "text.sqlite").write_text("not a database\n" * 100)
    proc = run_edge("history", "--db", tmp_path / "text.sqlite")
    assert proc.returncode == 2 and "cannot be read" in proc.stderr and "Traceback" not in proc.stderr


# --------------------------------------------------------------------------------------------- reading it back


def test_cli_adds_minutes_up_by_day_week_and_hour_in_table_csv_and_json(tmp_path):
    path = tmp_path / "state" / "history.sqlite"
    first = date(2026, 11, 2)  # a Monday
    write_db(path, synthetic_minutes(first, 9, per_day=90))
    config = tmp_path / "c.toml"
    config.write_text(f'[mqtt]\nqueue_file = "{path.parent}/mqtt-queue.jsonl"\n')  # the history lies beside the queue file

    table = run_edge("history", "--config", config)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["day", "heard", "speech", *EMOTIONS, "alerts"]
    assert len(lines) == 1 + 9
    assert lines[1].split()[:5] == ["2026-11-02", "1.5", "h", "0.8", "h"]  # 90 minutes heard, 45 of speech
    assert lines[1].endswith("sad 1") and lines[2].endswith("angry 1")

    answer = json.loads(run_edge("history", "--db", path, "--by", "week", "--format", "json").stdout)
    assert [p["period"] for p in answer["periods"]] == ["2026-11-02", "2026-11-09"]  # weeks named by their Monday
    assert [p["minutes"] for p in answer["periods"]] == [7 * 90, 2 * 90]
    week = answer["periods"][0]
    assert week["alerts"] == {"sad": 4, "angry": 3} and week["alerts_ended"] == {"sad": 4, "angry": 3}
    assert week["shares"]["sad"] == pytest.approx(4 / 7 * 0.75, abs=1e-3)
    assert week["shares"]["neutral"] == pytest.approx(0.25, abs=1e-3)
    assert answer["labels"] == [e for e in EMOTIONS if e in week["probs"]]

    csv_text = run_edge("history", "--db", path, "--by", "hour", "--since", "2026-11-03", "--until", "2026-11-03", "--format", "csv").stdout
    rows = csv_text.splitlines()
    assert rows[0].startswith("hour,heard_s,speech_s,minutes,share_neutral,share_calm")
    assert [r.split(",")[0] for r in rows[1:]] == ["2026-11-03 18:00", "2026-11-03 19:00"]
    assert [r.split(",")[3] for r in rows[1:]] == ["60", "30"]


def test_the_heat_map_puts_each_minute_at_its_weekday_and_local_hour(tmp_path):
    path = tmp_path / "h.sqlite"
    write_db(path, synthetic_minutes(date(2026, 11, 2), 7, per_day=60))  # 18:00-19:00, Monday to Sunday
    db = history.connect(path, readonly=True)
    answer = history_query.summary(db, "day")
    db.close()
    cells = {(c["weekday"], c["hour"]): c for c in answer["heatmap"]}
    assert sorted(cells) == [(w, 18) for w in range(7)]
    assert cells[(0, 18)]["shares"]["sad"] == pytest.approx(0.75) and cells[(1, 18)]["shares"]["angry"] == pytest.approx(0.75)


def test_the_api_draws_from_the_database_and_is_protected_like_the_rest(tmp_path, tiny_model_path):
    from edge.web.app import create_app

    path = tmp_path / "h.sqlite"
    today = date.today()
    write_db(path, synthetic_minutes(today - timedelta(days=40), 41, per_day=10))
    token = "history-test-token-0123456789"
    client = create_app(tiny_model_path, history=str(path), token=token).test_client()
    auth = {"Authorization": f"Bearer {token}"}

    assert client.get("/api/history").status_code == 401
    answer = client.get("/api/history", headers=auth).get_json()
    assert answer["by"] == "day" and len(answer["periods"]) == 30  # the last 30 days by default
    assert answer["periods"][-1]["period"] == today.isoformat()
    since = (today - timedelta(days=6)).isoformat()
    week = client.get(f"/api/history?by=day&since={since}", headers=auth).get_json()
    assert [p["period"] for p in week["periods"]] == [(today - timedelta(days=d)).isoformat() for d in range(6, -1, -1)]
    assert client.get(f"/api/history?since={since}&token={token}").status_code == 200

    bad = client.get("/api/history?by=month", headers=auth)
    assert bad.status_code == 400 and bad.get_json() == {"error": "by month is not a grouping: use one of hour, day, week"}
    assert client.get("/api/history?since=last-week", headers=auth).status_code == 400
    page = client.get("/", headers=auth).get_data(as_text=True)
    assert 'id="history"' in page

    none = create_app(tiny_model_path).test_client()
    assert none.get("/api/history").status_code == 404
    assert 'id="history"' not in none.get("/").get_data(as_text=True)
    waiting = create_app(tiny_model_path, history=str(tmp_path / "not-yet.sqlite")).test_client().get("/api/history")
    assert waiting.status_code == 200 and waiting.get_json()["periods"] == []


def test_the_history_path_defaults_beside_the_queue_file_and_a_folder_is_refused(tmp_path):
    from edge.service.config import ConfigError, settings_from_dict

    settings = settings_from_dict({"mqtt": {"queue_file": "/var/lib/ser-edge/mqtt-queue.jsonl"}})
    assert history.database_path(settings) == "/var/lib/ser-edge/history.sqlite"
    assert history.database_path(settings_from_dict({})) is None
    assert history.database_path(settings_from_dict({"mqtt": {"queue_file": "/q.jsonl"}, "history": {"enabled": False}})) is None
    assert history.database_path(settings_from_dict({"history": {"path": "/x/h.sqlite"}})) == "/x/h.sqlite"
    with pytest.raises(
        ConfigError, match=r'^history.path = ".*" is not allowed: it is a folder, not a regular file; give a file name such as'
    ):
        settings_from_dict({"history": {"path": str(tmp_path)}})
    with pytest.raises(ConfigError, match=r"^history.keep_days = 0 is not allowed: use a number of days above 0"):
        settings_from_dict({"history": {"keep_days": 0}})
    with pytest.raises(ConfigError, match=r"^unknown key history.days; \[history\] takes enabled, path, keep_days, max_mb$"):
        settings_from_dict({"history": {"days": 3}})


def test_the_window_clock_is_the_minute_start_in_local_time_for_readers(tmp_path):
    """A minute written at 23:59 local belongs to that day, not the next, whatever UTC says."""
    path = tmp_path / "h.sqlite"
    late = datetime(2026, 11, 5, 23, 59).timestamp()
    write_db(path, [Minute(int(late), 60.0, 60.0, {"calm": 120}, {"calm": 120.0})])
    db = history.connect(path, readonly=True)
    assert [p["period"] for p in history_query.summary(db, "day")["periods"]] == ["2026-11-05"]
    db.close()


def test_hop_weighted_minutes_of_the_classifier_itself(data_dir, tiny_model_path, tmp_path):
    """The sink fed the classifier's own windows of a real clip: the minute's shares are the windows' labels."""
    clip = data_dir / "ravdess" / "Actor_15" / "03-01-05-02-01-01-15.flac"
    classifier = StreamingClassifier(Model(tiny_model_path))
    x, rate = sf.read(str(clip), dtype="float32")
    results = classifier.process(x, rate) + classifier.flush()
    sink = HistorySink(
        HistorySettings(), str(tmp_path / "h.sqlite"), SOURCE, hop_s=classifier.model.contract.hop_s, clock=lambda: 1_800_000_000.0
    )
    for r in results:
        sink.handle({"type": "window", "time_s": r.end_s, **r.to_dict()})
    sink.close()
    (row,) = minutes_in(tmp_path / "h.sqlite")
    speech = [r for r in results if r.speech]
    expected = {label: sum(r.label == label for r in speech) / len(speech) for label in EMOTIONS}
    assert row["shares"] == pytest.approx({k: round(v, 4) for k, v in expected.items() if v}, abs=1e-4)


def test_forgetting_works_while_the_service_writes(tmp_path):
    path = tmp_path / "h.sqlite"
    write_db(path, synthetic_minutes(date.today() - timedelta(days=3), 3))
    sink = HistorySink(HistorySettings(), str(path), SOURCE, hop_s=0.5, clock=lambda: 1_900_000_000.0)
    for i in range(1, 2 * 60 * 2 + 1):  # two whole minutes handed to the writer, its connection open
        sink.handle(window(0.5 * i, "calm"))
    proc = run_edge("history", "--db", path, "--delete-all")
    assert proc.returncode == 0, proc.stderr
    for i in range(2 * 60 * 2 + 1, 2 * 60 * 3 + 1):  # and it goes on writing into the emptied file
        sink.handle(window(0.5 * i, "calm"))
    sink.close()
    rows = minutes_in(path)
    assert rows and all(r["start"] >= 1_900_000_000 for r in rows) and check_consistent(path) == len(rows)


def test_the_history_benchmark_prints_its_table():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.history", "--quick"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = [
        line for line in proc.stdout.splitlines() if line.startswith("| speech in every window") or line.startswith("| no speech at all")
    ]
    assert len(table) == 2 and all("MB" in line for line in table)


def test_heard_counts_the_first_windows_whole_audio_and_starts_over_with_a_new_stream(tmp_path):
    """A 3 s window every 0.5 s: 20 windows have heard 3 + 19 x 0.5 s; a new stream (its time back at 0) counts afresh."""
    clock = [1_800_000_000.0]
    sink = HistorySink(HistorySettings(), str(tmp_path / "h.sqlite"), SOURCE, hop_s=0.5, clock=lambda: clock[0])
    for _stream in range(2):
        for i in range(20):
            end = 3.0 + 0.5 * i
            sink.handle({**window(end, "sad", speech=False), "start_s": end - 3.0})
    sink.close()
    (row,) = minutes_in(tmp_path / "h.sqlite")
    assert row["heard_s"] == pytest.approx(2 * (3.0 + 19 * 0.5)) and row["speech_s"] == 0


def test_a_first_window_across_a_minute_boundary_gives_no_minute_more_than_60_s(tmp_path):
    """A stream starting 2 s before a minute: its first 3 s window ends 1 s into it, counted there, up to the minute's 60 s."""
    clock = [1_800_000_000.0 + 1.0]
    sink = HistorySink(HistorySettings(), str(tmp_path / "h.sqlite"), SOURCE, hop_s=0.5, clock=lambda: clock[0])
    for i in range(120):
        end = 3.0 + 0.5 * i
        sink.handle({**window(end, "sad", speech=False), "start_s": end - 3.0})
    sink.close()
    assert [r["heard_s"] for r in minutes_in(tmp_path / "h.sqlite")] == [60.0, 1.0]  # not 62: 3 s + 118 hops
