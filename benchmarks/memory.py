"""Peak memory against the length of the audio: `classify` on a long file, `run` on a long file, a page upload.

Each command runs as its own process on a WAV written here from real speech (clips end to end,
repeated), 16 kHz mono and 48 kHz stereo, of each length asked for; its peak resident set (VmHWM,
polled every 20 ms) and wall time are printed as a table. Memory that does not grow with the length
is the point: a 1-hour file must not need more than a 1-minute one.

    python -m benchmarks.memory                       # 1, 10 and 60 minutes (writes up to 691 MB of WAV)
    python -m benchmarks.memory --quick               # 0.5 and 2 minutes
"""

from __future__ import annotations

import argparse
import http.client
import logging
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np

from benchmarks.common import (
    CACHE,
    DEFAULT_DATA,
    ROOT,
    BenchError,
    PeakRss,
    command_line,
    environment,
    environment_markdown,
    markdown_table,
    speech_stream,
    write_text,
)

log = logging.getLogger("benchmarks.memory")

FORMATS = {"16 kHz mono": (16000, 1), "48 kHz stereo": (48000, 2)}


def long_wav(minutes: float, rate: int, channels: int, data_root, folder: Path = CACHE / "memory") -> Path:
    """A WAV of ``minutes`` of real speech (a minute of clips repeated), written block by block; reused if present."""
    import soundfile as sf

    from edge.resample import resample

    path = folder / f"speech_{minutes:g}min_{rate}hz_{channels}ch.wav"
    if path.exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    minute16, _ = speech_stream(data_root, 60.0)
    minute = resample(minute16[: 60 * 16000], 16000, rate).astype(np.float32) if rate != 16000 else minute16[: 60 * 16000]
    block = np.repeat(minute[:, None], channels, axis=1) if channels > 1 else minute
    tmp = path.with_suffix(".tmp.wav")
    with sf.SoundFile(tmp, "w", rate, channels, subtype="PCM_16") as f:
        whole, rest = divmod(minutes, 1.0)
        for _ in range(int(whole)):
            f.write(block)
        if rest:
            f.write(block[: int(rest * len(block))])
    os.replace(tmp, path)
    return path


def measure(args: list[str], stdin=subprocess.DEVNULL) -> dict:
    """Run ``python -m edge ARGS`` to the end; its peak RSS (MB), wall seconds and exit status."""
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "edge", *args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=stdin)
    peak = PeakRss(proc.pid)
    _, err = proc.communicate()
    peak.stop()
    if proc.returncode not in (0, 1):
        raise BenchError(f"python -m edge {' '.join(args)} failed ({proc.returncode}): {err.decode(errors='replace').strip()[-300:]}")
    return {"peak_mb": peak.kib / 1024, "seconds": time.monotonic() - start, "status": proc.returncode}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure_upload(path: Path, timeout_s: float = 1800.0) -> dict:
    """Start `python -m edge serve`, upload ``path`` to /api/classify, and read the server's peak and its size afterwards."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge", "serve", "--port", str(port), "--max-upload-mb", "2000"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    peak = PeakRss(proc.pid)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise BenchError("python -m edge serve did not start listening within 60 s") from None
                time.sleep(0.2)
        idle_kib = peak.kib
        boundary = uuid.uuid4().hex
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\nContent-Type: audio/wav\r\n\r\n'.encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        size = path.stat().st_size
        start = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
        conn.putrequest("POST", "/api/classify")
        conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
        conn.putheader("Content-Length", str(len(head) + size + len(tail)))
        conn.endheaders()
        conn.send(head)
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                conn.send(chunk)
        conn.send(tail)
        response = conn.getresponse()
        body = response.read()
        seconds = time.monotonic() - start
        time.sleep(1.0)
        after_kib = _rss_kib(proc.pid)
        return {
            "status": response.status,
            "answer": body[:120].decode(errors="replace"),
            "idle_mb": idle_kib / 1024,
            "peak_mb": peak.kib / 1024,
            "after_mb": after_kib / 1024,
            "seconds": seconds,
        }
    finally:
        peak.stop()
        proc.terminate()
        proc.wait(timeout=30)


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.memory", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data", default=str(DEFAULT_DATA), help="the corpora (default ../shared/data)")
    p.add_argument("--minutes", type=_lengths, default="1,10,60", help="lengths of audio to try, comma-separated (default 1,10,60)")
    p.add_argument(
        "--upload-minutes", type=_lengths, default="10", help="lengths to upload to the page (default 10; the page accepts at most 10)"
    )
    p.add_argument("--quick", action="store_true", help="0.5 and 2 minutes only, uploads of 2 minutes: a check that it works")
    p.add_argument("--markdown", help="also write the tables to this file")
    return p


def _lengths(text: str) -> str:
    """Comma-separated minutes above 0, checked when parsed (kept as text: the code below splits it)."""
    import argparse

    try:
        ok = all(0 < float(m) < float("inf") for m in text.split(","))
    except ValueError:
        ok = False
    if not ok:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of minutes above 0, like 1,10,60")
    return text


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return run(args)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def run(args) -> int:
    minutes = [0.5, 2.0] if args.quick else [float(m) for m in args.minutes.split(",")]
    uploads = [2.0] if args.quick else [float(m) for m in args.upload_minutes.split(",") if m]
    env = environment()
    rows = []
    for fmt, (rate, channels) in FORMATS.items():
        for m in minutes:
            path = long_wav(m, rate, channels, args.data)
            log.info("%s, %g min: classify", fmt, m)
            c = measure(["classify", str(path)])
            log.info("%s, %g min: run --source", fmt, m)
            r = measure(["run", "--source", str(path)])
            rows.append(
                [
                    fmt,
                    f"{m:g} min",
                    f"{path.stat().st_size / 1e6:.0f} MB",
                    f"{c['peak_mb']:.0f} MB",
                    f"{c['seconds']:.0f} s",
                    f"{r['peak_mb']:.0f} MB",
                    f"{r['seconds']:.0f} s",
                ]
            )
    table = markdown_table(
        ["input", "length", "file", "classify: peak RSS", "classify: wall", "run --source: peak RSS", "run --source: wall"], rows
    )
    upload_rows = []
    for m in uploads:
        path = long_wav(m, 16000, 1, args.data)
        log.info("upload of %g min to the page", m)
        u = measure_upload(path)
        upload_rows.append(
            [
                f"{m:g} min, 16 kHz mono",
                f"{path.stat().st_size / 1e6:.0f} MB",
                u["status"],
                f"{u['idle_mb']:.0f} MB",
                f"{u['peak_mb']:.0f} MB",
                f"{u['after_mb']:.0f} MB",
                f"{u['seconds']:.0f} s",
            ]
        )
    upload_table = markdown_table(
        ["upload to `serve`", "file", "HTTP", "server idle", "server peak", "server after", "answer in"], upload_rows
    )
    text = "\n".join(
        [
            "## Memory against the length of the audio",
            "",
            environment_markdown(env, command_line()),
            "",
            "Each command is a process of its own (`python -m edge ...` with the shipped model); peak RSS = VmHWM polled every 20 ms. "
            "The audio is real speech (a minute of clips repeated) written as 16-bit WAV.",
            "",
            table,
            "",
            upload_table,
            "",
        ]
    )
    print(text)
    write_text(args.markdown, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
