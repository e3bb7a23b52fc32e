"""Measure `python -m edge run` as the service runs: CPU share of one core, peak memory, time to stop.

    .venv/bin/python systemd/measure_service.py [--model PATH] [--data ../shared/data] [--seconds 60]

1. Joins RAVDESS clips into one file of --seconds (16 kHz), written to a temporary folder.
2. Runs `run --source FILE --realtime` on it to the end: CPU (user + system) over wall time,
   the process's peak RSS, and the steady-state CPU share from the service's own health events.
3. Runs it again with --loop, waits for READY=1 on a stand-in $NOTIFY_SOCKET, lets it work for
   a few seconds, sends SIGTERM and times the exit; then the same with the sinks that have
   most to do on a stop: MQTT towards a broker that is down (a closed local port) and a GPIO
   pin (gpiozero's mock pins).
Prints one JSON object. Nothing is asserted: the numbers are for the README.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def join_clips(data: Path, seconds: float, out: Path) -> float:
    import soundfile as sf

    clips, total = [], 0
    for path in sorted((data / "ravdess").glob("Actor_*/*.flac")):
        x, rate = sf.read(str(path), dtype="float32")
        if rate != 16000:
            continue
        clips.append(x)
        total += x.size
        if total >= seconds * 16000:
            break
    audio = np.concatenate(clips)[: int(seconds * 16000)]
    sf.write(str(out), audio, 16000, subtype="PCM_16")
    return audio.size / 16000


def run_to_end(cmd: list[str]) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"run failed ({proc.returncode}): {proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    health = [json.loads(line) for line in proc.stdout.splitlines() if '"health"' in line]
    steady = [h["cpu_percent"] for h in health[1:]]  # the first interval includes start-up
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "cpu_percent_of_one_core_overall": round(100 * cpu / wall, 1),
        "cpu_percent_of_one_core_steady_median": round(float(np.median(steady)), 1) if steady else None,
        "cpu_percent_of_one_core_steady_max": round(float(np.max(steady)), 1) if steady else None,
        "peak_rss_mb": round(after.ru_maxrss / 1024, 1),  # Linux reports KiB
        "windows": sum('"window"' in line for line in proc.stdout.splitlines()),
    }


def closed_port() -> int:
    """A local TCP port with nothing listening on it: a broker that is down."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def time_to_stop(cmd: list[str], folder: Path, settle_s: float = 5.0) -> float:
    path = str(folder / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(120)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT, env={**os.environ, "NOTIFY_SOCKET": path})
    try:
        while "READY=1" not in sock.recv(4096).decode():
            pass
        time.sleep(settle_s)
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        elapsed = time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()
    if code != 0:
        sys.exit(f"the service exited with {code} after SIGTERM")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model to run (default: the shipped one)")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"), help="corpus root (default: ../shared/data)")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the joined file (default: 60)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "joined.wav"
        duration = join_clips(Path(args.data), args.seconds, clip)
        base = [sys.executable, "-m", "edge", "run", "--source", str(clip), "--realtime"]
        if args.model:
            base += ["--model", args.model]
        config = Path(tmp) / "config.toml"
        config.write_text("[service]\nhealth_interval_s = 5.0\n")
        result = {"model": args.model or "shipped", "audio_s": round(duration, 2)}
        result["realtime_run"] = run_to_end([*base, "--verbose", "--config", str(config)])
        stops = [time_to_stop([*base, "--loop"], Path(tmp) / f"stop{i}") for i in range(3) if not (Path(tmp) / f"stop{i}").mkdir()]
        result["sigterm_to_exit_s"] = [round(s, 3) for s in stops]
        sinks_config = Path(tmp) / "sinks.toml"
        sinks_config.write_text('[gpio]\nenabled = true\npin = "17"\npin_factory = "mock"\n')
        sinks = [*base, "--loop", "--config", str(sinks_config), "--mqtt", f"127.0.0.1:{closed_port()}", "--device-id", "measure"]
        stops = [time_to_stop(sinks, Path(tmp) / f"sinks{i}") for i in range(3) if not (Path(tmp) / f"sinks{i}").mkdir()]
        result["sigterm_to_exit_s_mqtt_broker_down_gpio_mock"] = [round(s, 3) for s in stops]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
