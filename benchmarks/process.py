"""The whole ``python -m edge run`` process on a file: CPU share of one core, peak RSS, time to the first result.

Each (model, runtime, threads) combination runs the real command once paced in real time
(``--realtime``) and once as fast as it goes. A runtime other than the preferred one is reached by
hiding the preferred modules from the process (BLOCKED); everything else is the real ``run``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from pathlib import Path

from benchmarks.common import CACHE, ROOT, PeakRss, markdown_table, relative
from benchmarks.stages import Combo

log = logging.getLogger(__name__)

# Modules hidden from a `run` process so that edge.runtime falls through to the runtime wanted.
BLOCKED = {"ai-edge-litert": (), "tflite-runtime": ("ai_edge_litert",), "tensorflow": ("ai_edge_litert", "tflite_runtime")}
STAGGER_S = 8.0  # between the starts of paced `run` processes measured at the same time (TensorFlow's start-up takes ~4 s)


def _proc_cpu_s(pid: int) -> float:
    """utime + stime of a running process from /proc/<pid>/stat, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_process(combo: Combo, audio_file: Path, realtime: bool, config: str | None = None) -> dict:
    """Start `python -m edge run` on a file; time to first window, CPU share and peak RSS of the process."""
    args = ["run", "--source", str(audio_file), "--model", combo.path, "--threads", str(combo.threads), "--verbose"]
    if config:  # e.g. a [history] table, to measure what a sink adds to the device path
        args += ["--config", config]
    if realtime:
        args.append("--realtime")
    blocked = BLOCKED[combo.runtime]
    if blocked:
        # Hide the preferred runtimes so that edge.runtime falls through to the wanted one (sys.modules[x] = None makes
        # `import x` raise ImportError); everything else is the real `run` command.
        code = f"import runpy, sys; sys.modules.update(dict.fromkeys({blocked!r})); sys.argv[0] = 'edge'; runpy.run_module('edge', run_name='__main__')"
        cmd = [combo.python, "-c", code, *args]
    else:
        cmd = [combo.python, "-m", "edge", *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    stderr_path = CACHE / f"run_stderr_{combo.model}_{combo.runtime}_{combo.threads}_{'paced' if realtime else 'fast'}.txt"
    t0 = time.monotonic()
    with open(stderr_path, "w") as stderr:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)
        peak = PeakRss(proc.pid)
        first_s = first_end_s = cpu_at_first = None
        windows, runtime_seen = 0, None
        for line in proc.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if event.get("type") != "window":
                continue
            windows += 1
            if first_s is None:
                first_s = time.monotonic() - t0
                first_end_s = float(event.get("end_s", float("nan")))
                try:
                    cpu_at_first = _proc_cpu_s(proc.pid)
                except OSError:
                    cpu_at_first = None
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - t0
        peak.stop()
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0 or first_s is None:
        lines = [line for line in stderr_path.read_text().splitlines() if line.strip()]
        return {"error": (lines[-1] if lines else f"exit status {proc.returncode}, no window printed")[:200]}
    for line in stderr_path.read_text().splitlines():
        if "loaded" in line and "thread" in line:
            runtime_seen = line
    cpu = usage.ru_utime + usage.ru_stime
    steady = None if cpu_at_first is None else (cpu - cpu_at_first) / max(wall - first_s, 1e-9)
    return {
        "command": relative(
            " ".join(cmd[:1] + ["-m", "edge"] + args) if not blocked else f"{cmd[0]} -c '<hide {', '.join(blocked)}>' " + " ".join(args)
        ),
        "first_result_s": first_s,
        "first_window_end_s": first_end_s,
        "wall_s": wall,
        "cpu_share": cpu / wall,
        "cpu_share_steady": steady,
        "peak_rss_mb": peak.kib / 1024,
        "windows": windows,
        "runtime_line": runtime_seen,
    }


def measure_processes(combos: list[Combo], audio_file: Path, jobs: int, config: str | None = None) -> list[tuple[Combo, dict, dict]]:
    """The paced and the as-fast-as-possible run of every combination, ``jobs`` paced runs at a time.

    With more than one job, paced runs start STAGGER_S apart, so that no two start-ups (the
    only busy part of a paced run) overlap, and each fast run happens alone afterwards.
    """
    from concurrent.futures import ThreadPoolExecutor

    def paced(combo: Combo, delay_s: float) -> dict:
        time.sleep(delay_s)
        log.info("`run` process, paced: %s", combo.name)
        return measure_process(combo, audio_file, realtime=True, config=config)

    with ThreadPoolExecutor(max(1, jobs)) as pool:
        futures = [pool.submit(paced, c, (i % max(1, jobs)) * STAGGER_S if jobs > 1 else 0.0) for i, c in enumerate(combos)]
        paced_results = [f.result() for f in futures]
    out = []
    for combo, p in zip(combos, paced_results, strict=True):
        log.info("`run` process, as fast as possible: %s", combo.name)
        out.append((combo, p, measure_process(combo, audio_file, realtime=False, config=config)))
    return out


def process_table(results: list[tuple[Combo, dict, dict]]) -> str:
    rows = []
    for combo, paced, fast in results:
        if "error" in paced:
            rows.append([combo.model, combo.runtime, combo.threads, f"did not run: {paced['error']}", "", "", "", "", ""])
            continue
        rows.append(
            [
                combo.model,
                combo.runtime,
                combo.threads,
                f"{100 * paced['cpu_share']:.2f} %",
                "–" if paced["cpu_share_steady"] is None else f"{100 * paced['cpu_share_steady']:.2f} %",
                f"{paced['peak_rss_mb']:.0f}",
                f"{paced['first_result_s']:.2f} (window ends at {paced['first_window_end_s']:.2f} s of audio)",
                f"{paced['first_result_s'] - paced['first_window_end_s']:.2f}",
                "–" if "error" in fast else f"{fast['first_result_s']:.2f}",
            ]
        )
    headers = [
        "model",
        "runtime",
        "threads",
        "CPU share of one core, whole run",
        "after the first result",
        "peak RSS MB",
        "first result s after start (paced)",
        "start-up s (first result minus its audio)",
        "first result s, file as fast as possible",
    ]
    return markdown_table(headers, rows)
