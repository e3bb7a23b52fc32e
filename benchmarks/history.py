"""What the history costs: the audio loop's share (HistorySink.handle per window), the writer's, and the database per day.

Real windows: real speech from the corpora through the device's StreamingClassifier (the shipped
model), whose window events are then replayed, in order and over again, through the real
HistorySink and its writer thread into a real SQLite file, with a clock that follows the audio, so
minutes end as often as they would live. Every ``handle`` call is timed (the audio loop's cost);
every minute's transaction is timed in the writer (its own thread's cost); the file's size after a
simulated day of listening is the database per day. Two days are simulated: one with speech in every
window (the largest a day can be) and one with none (a quiet room: rows without labels).

Run ``python -m benchmarks.history --help``; ``--quick`` simulates two hours instead of a day.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import (
    DEFAULT_DATA,
    BenchError,
    above_zero,
    command_line,
    environment,
    environment_markdown,
    markdown_table,
    percentiles,
    resolve_model,
    speech_stream,
    write_text,
)

log = logging.getLogger("benchmarks.history")

HOP_S = 0.5
DAY_S = 86400
WINDOWS_PER_MINUTE = int(60 / HOP_S)


def _let_the_writer_take(sink) -> None:
    """Live, the writer has a minute for each minute; here the loop runs thousands of times faster, so
    after each minute it waits (untimed) until the writer has taken it, as it would have by then."""
    deadline = time.monotonic() + 10
    while not sink._queue.empty() and time.monotonic() < deadline:
        time.sleep(0.0002)


def real_windows(model_path: Path, data: str, seconds: float) -> tuple[list[dict], object]:
    """The window events the daemon would send for ``seconds`` of real speech."""
    from edge.classifier import StreamingClassifier
    from edge.model import Model

    model = Model(model_path)
    audio, clips = speech_stream(data, seconds)
    classifier = StreamingClassifier(model)
    results = classifier.process(audio, 16000) + classifier.flush()
    log.info("%d windows from %.0f s of %d clips", len(results), audio.size / 16000, clips)
    return [{"type": "window", "time_s": r.end_s, **r.to_dict()} for r in results], model


def simulate(windows: list[dict], model, seconds: float, speech: bool, folder: Path) -> dict:
    """``seconds`` of listening through HistorySink into a fresh database: per-call times, write times, size."""
    from edge import history
    from edge.history import Source
    from edge.service.history_sink import HistorySink
    from edge.settings import HistorySettings

    path = folder / f"history-{'speech' if speech else 'quiet'}.sqlite"
    source = Source("bench", model.contract.sha256, model.path.stem, tuple(model.labels))
    writes: list[float] = []
    real_write = history.write_minutes

    def timed_write(db, src, minutes):
        t0 = time.perf_counter_ns()
        try:
            return real_write(db, src, minutes)
        finally:
            writes.append((time.perf_counter_ns() - t0) / 1e3 / max(len(minutes), 1))

    history.write_minutes = timed_write
    start = 1_800_000_000.0  # a whole minute: the day starts on one
    clock = [start]
    sink = HistorySink(HistorySettings(), str(path), source, hop_s=HOP_S, clock=lambda: clock[0])
    n = int(seconds / HOP_S)
    calls = np.empty(n, dtype=np.int64)
    perf = time.perf_counter_ns
    try:
        for i in range(n):
            event = dict(windows[i % len(windows)])
            t = HOP_S * (i + 1)
            event["start_s"], event["end_s"], event["time_s"] = t - 3.0, t, t
            if not speech:
                event["speech"] = False
            clock[0] = start + t  # live: the wall clock moves with the audio
            t0 = perf()
            sink.handle(event)
            calls[i] = perf() - t0
            if (i + 1) % WINDOWS_PER_MINUTE == 0:
                _let_the_writer_take(sink)
        t0 = perf()
        sink.close()
        close_ms = (perf() - t0) / 1e6
    finally:
        history.write_minutes = real_write
    files = sum(p.stat().st_size for p in folder.glob(path.name + "*"))
    db = history.connect(path, readonly=True)
    rows = db.execute("SELECT count(*) FROM minutes").fetchone()[0]
    label_rows = db.execute("SELECT count(*) FROM labels").fetchone()[0]
    db.close()
    if abs(rows - seconds / 60) > 1:  # the last window ends on a minute boundary: one row of a single window
        raise BenchError(f"{rows} minute rows were written for {seconds / 60:.0f} minutes of listening")
    us = calls / 1e3
    return {
        "windows": n,
        "handle_us": percentiles(us),
        "handle_max_us": float(us.max()),
        "handle_mean_us": float(us.mean()),
        "loop_share": float(us.mean()) / 1e6 / HOP_S,  # one call per hop of audio
        "write_us": percentiles(writes) if writes else (float("nan"),) * 3,
        "writer_share": float(np.sum(writes)) / 1e6 / max(len(writes), 1) / 60.0 if writes else float("nan"),
        "rows": rows,
        "label_rows": label_rows,
        "bytes": files,
        "bytes_per_day": files * DAY_S / seconds,
        "close_ms": close_ms,
        "dropped": sink.dropped,
    }


def report(env: dict, model_path: Path, seconds: float, results: dict[str, dict], n_windows: int) -> str:
    lines = ["## History", "", environment_markdown(env, command_line()), ""]
    lines.append(
        f"Model: `{model_path.relative_to(Path.cwd()) if model_path.is_relative_to(Path.cwd()) else model_path}`; "
        f"{n_windows} real windows replayed for {seconds / 3600:.0f} h of listening per row, a window every {HOP_S} s, "
        "the clock following the audio (a minute ends every 120 windows, as live)."
    )
    lines.append("")
    rows = []
    for name, r in results.items():
        p50, p95, p99 = r["handle_us"]
        w50, _, w99 = r["write_us"]
        rows.append(
            [
                name,
                f"{p50:.1f} / {p95:.1f} / {p99:.1f} (max {r['handle_max_us']:.0f})",
                f"{100 * r['loop_share']:.4f} %",
                f"{w50 / 1e3:.2f} / {w99 / 1e3:.2f}",
                f"{100 * r['writer_share']:.4f} %",
                f"{r['rows']} / {r['label_rows']}",
                f"{r['bytes_per_day'] / 1e6:.2f} MB",
                f"{90 * r['bytes_per_day'] / 1e6:.0f} MB",
            ]
        )
    lines.append(
        markdown_table(
            [
                "day",
                "audio loop: handle() per window p50 / p95 / p99 µs",
                "audio loop, share of one core",
                "writer: ms per minute p50 / p99",
                "writer, share of one core",
                "minute / label rows",
                "database per day",
                "90 days (keep_days)",
            ],
            rows,
        )
    )
    lines.append("")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.history", description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", metavar="PATH", help="int8 .tflite with its .json (default: the shipped model)")
    p.add_argument("--data", default=str(DEFAULT_DATA), metavar="DIR", help="corpora folder (default: ../shared/data)")
    p.add_argument("--hours", type=above_zero(float), default=24.0, help="hours of listening simulated per day (default: 24)")
    p.add_argument(
        "--speech-s", type=above_zero(float), default=600.0, help="seconds of real speech classified for the windows (default: 600)"
    )
    p.add_argument("--quick", action="store_true", help="a check in well under a minute: 2 hours, 60 s of speech")
    p.add_argument("--markdown", metavar="PATH", help="also write the table to this file")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("edge").setLevel(logging.WARNING)
    if args.quick:
        args.hours, args.speech_s = 2.0, 60.0
    try:
        model_path = resolve_model(args.model)
        windows, model = real_windows(model_path, args.data, args.speech_s)
        seconds = args.hours * 3600
        with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp:
            results = {
                "speech in every window": simulate(windows, model, seconds, True, Path(tmp)),
                "no speech at all": simulate(windows, model, seconds, False, Path(tmp)),
            }
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = report(environment(), model_path, seconds, results, len(windows))
    print(text)
    write_text(args.markdown, text)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
