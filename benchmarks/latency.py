"""Latency, CPU share and memory of the device path: per stage, end to end, and of the whole `run` process.

Three measurements, each in fresh processes so that one runtime's threads or caches never
colour another's figures:

1. Stages. Real speech from the corpora (whole clips end to end, resampled to --input-rate,
   48 kHz by default as a USB microphone delivers it) is fed to the device's own
   StreamingClassifier in --chunk-ms chunks, as the service feeds it, followed by the decision
   policy. Every stage's method is wrapped with a clock in the worker process: resampling,
   the MFCC frontend, the speech detector, inference (normalise, quantise, invoke), and the
   policy; "other" is what the classifier does between them. "Per window" is the time of the
   chunk call that completes a window (how late a verdict is); "per hop" adds up every chunk
   in one hop of audio (what the device spends per verdict). No sleeping: the chunks follow
   each other at once, so the figures are compute time, not pacing.
2. The same for every (model, runtime, threads) combination, as one table.
3. The whole `python -m edge run --source FILE --realtime --verbose` process on a 60 s file
   paced in real time: CPU share of one core (utime + stime over wall time), peak RSS
   (VmHWM, polled), and the time from starting the process to its first window result.

Run ``python -m benchmarks.latency --help``; ``--quick`` checks that it works in well under a minute.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
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
    percentiles,
    read_contract,
    resolve_keras,
    resolve_model,
    speech_stream,
    tflite_runtime_python,
    tflite_twin,
    version_of,
    write_text,
)

log = logging.getLogger("benchmarks.latency")

STAGES = ("resample", "frontend", "speech", "inference", "policy")
RUNTIMES = ("ai-edge-litert", "tflite-runtime", "tensorflow")
# Modules hidden from a `run` process so that edge.runtime falls through to the runtime wanted.
BLOCKED = {"ai-edge-litert": (), "tflite-runtime": ("ai_edge_litert",), "tensorflow": ("ai_edge_litert", "tflite_runtime")}
WARMUP_HOPS = 5  # the first hops (interpreter warm-up, first allocations) are not counted
TIMEOUT_S = 900
STAGGER_S = 8.0  # between the starts of paced `run` processes measured at the same time (TensorFlow's start-up takes ~4 s)

HELP = """\
Measures what the device path costs on this machine, as tables in markdown:

  stages      p50/p95/p99 of resampling, frontend, speech detector, inference and policy,
              per window and per hop, over --windows windows of real speech
  combos      inference and end to end for the int8 model and its float32 twin, with 1
              and 2 interpreter threads, on every runtime that imports here
  process     CPU share of one core, peak RSS and time to the first result of the real
              `python -m edge run --source FILE --realtime --verbose` on a 60 s file

examples:
  python -m benchmarks.latency --quick                     a quick check (int8, LiteRT, 1 thread)
  python -m benchmarks.latency --markdown cache/bench/latency.md
  python -m benchmarks.latency --runtimes ai-edge-litert --models int8 --threads 1 4   (a Pi)

tflite-runtime runs in its own environment (it needs numpy<2):
  python3 -m venv cache/bench/venv-tflite
  cache/bench/venv-tflite/bin/pip install "numpy<2" tflite-runtime soundfile
The float32 twin is converted from models/ser_cnn.keras with TensorFlow (desk only); on a
device without TensorFlow, copy it from the desk and pass --float-model.
"""


VOICE = {
    "none": "none (the population's statistics)",
    "profile": "a profile of this speech (--voice profile)",
    "adapt": "a profile of this speech that keeps adapting (--voice adapt)",
}


@dataclass(frozen=True)
class Combo:
    """One (model, runtime, threads) to measure."""

    model: str  # "int8" or "float32"
    path: str
    runtime: str
    threads: int
    python: str

    @property
    def name(self) -> str:
        return f"{self.model}, {self.runtime}, {self.threads} thread{'s' if self.threads > 1 else ''}"


# ---------------------------------------------------------------- the worker (runs in its own process)


def stream_worker(spec: dict) -> dict:
    """Feed the speech through StreamingClassifier + Policy chunk by chunk, timing every stage of every chunk."""
    from edge.classifier import StreamingClassifier
    from edge.frontend import StreamingFrontend
    from edge.model import Model
    from edge.policy import Policy
    from edge.resample import Resampler
    from edge.speech import SpeechDetector

    rate = int(spec["input_rate"])
    audio = np.load(spec["audio"])  # already at the input rate

    spent = dict.fromkeys(STAGES, 0)
    clock = time.perf_counter_ns

    def timed(cls, method: str, stage: str) -> None:
        inner = getattr(cls, method)

        def wrapper(*args, **kwargs):
            t0 = clock()
            try:
                return inner(*args, **kwargs)
            finally:
                spent[stage] += clock() - t0

        setattr(cls, method, wrapper)

    # Wrapped on the classes, in this process only.
    timed(Resampler, "process", "resample")
    timed(StreamingFrontend, "process", "frontend")
    timed(SpeechDetector, "process", "speech")
    timed(Model, "predict", "inference")
    timed(Policy, "process", "policy")

    load0 = clock()
    model = Model(spec["model"], threads=int(spec["threads"]), runtime=spec["runtime"])
    load_ms = (clock() - load0) / 1e6
    profile, adapt = None, None
    if spec.get("voice", "none") != "none":  # a profile of this very speech, measured before the clock starts
        from edge.profile import Adaptation, VoiceProfile, measure_speech

        profile = VoiceProfile.from_stats(measure_speech([(audio, rate)], model.contract), model.contract)
        adapt = Adaptation() if spec["voice"] == "adapt" else None
    classifier = StreamingClassifier(model, profile=profile, adapt=adapt)
    policy = Policy(labels=model.labels)
    chunk = int(round(rate * spec["chunk_ms"] / 1000))
    n_chunks = audio.size // chunk
    # Columns: end to end, the five stages, windows completed, speech windows.
    rows = np.zeros((n_chunks, 3 + len(STAGES)), dtype=np.float64)
    cpu0, wall0 = time.process_time_ns(), clock()
    for k in range(n_chunks):
        for stage in STAGES:
            spent[stage] = 0
        t0 = clock()
        results = classifier.process(audio[k * chunk : (k + 1) * chunk], rate)
        for result in results:
            policy.process(result)
        rows[k, 0] = clock() - t0
        rows[k, 1 : 1 + len(STAGES)] = [spent[s] for s in STAGES]
        rows[k, -2] = len(results)
        rows[k, -1] = sum(r.speech for r in results)
    cpu_s, wall_s = (time.process_time_ns() - cpu0) / 1e9, (clock() - wall0) / 1e9
    return {
        "runtime": model.runtime,
        "rows_ns": rows.tolist(),
        "chunk_s": chunk / rate,
        "hop_s": model.contract.hop_s,
        "window_s": model.contract.window_s,
        "audio_s": n_chunks * chunk / rate,
        "cpu_s": cpu_s,
        "wall_s": wall_s,
        "load_ms": load_ms,
        "numpy": np.__version__,
    }


def run_worker(combo: Combo, audio_path: Path, args) -> dict:
    spec = {
        "model": combo.path,
        "runtime": combo.runtime,
        "threads": combo.threads,
        "audio": str(audio_path),
        "input_rate": args.input_rate,
        "chunk_ms": args.chunk_ms,
        "voice": args.voice,
    }
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(
        [combo.python, "-m", "benchmarks.latency", "--worker", json.dumps(spec)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        return {"error": lines[-1] if lines else f"exit status {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- summaries


def summarise(result: dict) -> dict:
    """Per-window and per-hop percentiles (ms) of each stage and end to end, after the warm-up."""
    rows = np.asarray(result["rows_ns"])
    rows[:, : 1 + len(STAGES)] /= 1e6  # ns to ms; the last two columns are counts
    chunk_s, hop_s = result["chunk_s"], result["hop_s"]
    hop_index = np.floor(np.arange(rows.shape[0]) * chunk_s / hop_s + 1e-9).astype(int)
    first_window = int(np.argmax(rows[:, -2] > 0))
    keep = hop_index >= hop_index[first_window] + WARMUP_HOPS
    rows, hop_index = rows[keep], hop_index[keep]
    hops = np.unique(hop_index)[:-1]  # the last hop may be cut short by the end of the audio
    keep = hop_index <= hops[-1]
    rows, hop_index = rows[keep], hop_index[keep]
    per_hop = np.stack([rows[hop_index == h].sum(axis=0) for h in hops])
    window_rows = rows[rows[:, -2] > 0]
    names = ("end to end", *STAGES)
    out = {"windows": int(window_rows[:, -2].sum()), "speech_windows": int(window_rows[:, -1].sum()), "hops": len(hops)}
    for i, name in enumerate(names):
        out[f"window:{name}"] = percentiles(window_rows[:, i])
        out[f"hop:{name}"] = percentiles(per_hop[:, i])
        out[f"hopmean:{name}"] = float(per_hop[:, i].mean())
    other = per_hop[:, 0] - per_hop[:, 1 : 1 + len(STAGES)].sum(axis=1)
    out["hop:other"] = percentiles(other)
    out["hopmean:other"] = float(other.mean())
    out["window:other"] = percentiles(window_rows[:, 0] - window_rows[:, 1 : 1 + len(STAGES)].sum(axis=1))
    out["rtf"] = float(per_hop[:, 0].mean() / 1000 / hop_s)
    out["cpu_share"] = result["cpu_s"] / result["audio_s"]
    return out


def stage_table(s: dict, hop_s: float) -> str:
    rows = []
    labels = {
        "resample": "resampling",
        "frontend": "MFCC frontend",
        "speech": "speech detector",
        "inference": "inference (normalise, quantise, invoke)",
        "policy": "decision policy",
        "other": "classifier bookkeeping",
        "end to end": "**end to end**",
    }
    for name in ("resample", "frontend", "speech", "inference", "policy", "other", "end to end"):
        w, h = s[f"window:{name}"], s[f"hop:{name}"]
        share = 100 * s[f"hopmean:{name}"] / 1000 / hop_s
        rows.append([labels[name], *w, *h, f"{share:.3f} %"])
    headers = ["stage", "per window p50 ms", "p95", "p99", "per hop p50 ms", "p95", "p99", "share of one core (mean per hop / hop)"]
    return markdown_table(headers, rows)


def combo_table(results: list[tuple[Combo, dict]]) -> str:
    rows = []
    for combo, r in results:
        if "error" in r:
            rows.append([combo.model, combo.runtime, combo.threads, f"did not run: {r['error']}", "", "", "", "", "", "", ""])
            continue
        s = r["summary"]
        inf, e2e = s["window:inference"], s["window:end to end"]
        rows.append(
            [
                combo.model,
                r.get("runtime_version", combo.runtime),
                combo.threads,
                *inf,
                *e2e,
                s["hop:end to end"][2],
                f"{s['rtf']:.4f}",
                f"{100 * s['cpu_share']:.2f} %",
            ]
        )
    headers = [
        "model",
        "runtime",
        "threads",
        "inference p50 ms",
        "p95",
        "p99",
        "end to end per window p50 ms",
        "p95",
        "p99",
        "per hop p99 ms",
        "real-time factor",
        "CPU share of one core",
    ]
    return markdown_table(headers, rows)


# ---------------------------------------------------------------- the whole `run` process


def _proc_cpu_s(pid: int) -> float:
    """utime + stime of a running process from /proc/<pid>/stat, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _relative(text: str) -> str:
    """Paths inside the repository as a user types them from its root."""
    return text.replace(str(ROOT) + os.sep, "")


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
        "command": _relative(
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


# ---------------------------------------------------------------- orchestration


def build_combos(args, int8: Path) -> tuple[list[Combo], list[str]]:
    notes = []
    models = {"int8": int8}
    if "float32" in args.models:
        try:
            models["float32"] = Path(args.float_model) if args.float_model else tflite_twin(int8, resolve_keras(args.keras), "float32")
        except (BenchError, ImportError) as exc:
            notes.append(f"float32 twin left out: {exc}")
    pythons = {}
    for runtime in args.runtimes:
        if runtime == "tflite-runtime":
            python, detail = tflite_runtime_python()
            if python is None:
                notes.append(f"tflite-runtime left out: {detail}")
                continue
            pythons[runtime] = str(python)
            notes.append(
                f"tflite-runtime {detail.split()[0]} ran in {_relative(str(python.parent.parent))} with numpy {detail.split()[-1]}"
            )
        else:
            module = "ai_edge_litert" if runtime == "ai-edge-litert" else "tensorflow"
            import importlib.util

            if importlib.util.find_spec(module) is None:
                notes.append(f"{runtime} left out: it is not installed in {sys.prefix}")
                continue
            pythons[runtime] = sys.executable
    combos = [
        Combo(name, str(models[name]), runtime, threads, pythons[runtime])
        for name in args.models
        if name in models
        for runtime in args.runtimes
        if runtime in pythons
        for threads in args.threads
    ]
    return combos, notes


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.latency",
        description="Latency per stage and end to end, CPU share and peak memory of the device path.",
        epilog=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", metavar="PATH", help="int8 .tflite with its .json (default: the shipped edge/models/ser_cnn_int8.tflite)")
    p.add_argument("--keras", metavar="PATH", help="float Keras model to convert the float32 twin from (default: models/ser_cnn.keras)")
    p.add_argument("--float-model", metavar="PATH", help="a ready float32 .tflite twin with its .json (skips the conversion)")
    p.add_argument(
        "--data", default=str(DEFAULT_DATA), metavar="DIR", help="corpora folder with ravdess/, savee/, tess/ (default: ../shared/data)"
    )
    p.add_argument("--windows", type=int, default=1000, metavar="N", help="windows to time after the warm-up (default: 1000)")
    p.add_argument(
        "--input-rate", type=int, default=48000, metavar="HZ", help="rate the audio arrives at (default: 48000, a USB microphone)"
    )
    p.add_argument(
        "--chunk-ms", type=int, default=100, metavar="MS", help="chunk size the audio arrives in (default: 100, as the service reads)"
    )
    p.add_argument("--models", nargs="+", choices=("int8", "float32"), default=["int8", "float32"], help="which models (default: both)")
    p.add_argument("--runtimes", nargs="+", choices=RUNTIMES, default=list(RUNTIMES), help="which runtimes (default: all that import)")
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2], metavar="N", help="interpreter threads (default: 1 2)")
    p.add_argument(
        "--process-seconds", type=float, default=60.0, metavar="S", help="length of the file `run` plays in real time (default: 60)"
    )
    p.add_argument(
        "--process-combos",
        choices=("first", "all", "none"),
        default="all",
        help="which combinations get the `run` process test (default: all)",
    )
    p.add_argument(
        "--process-jobs",
        type=int,
        default=1,
        metavar="N",
        help="paced `run` processes measured at the same time, started 8 s apart (default: 1; each uses a few %% of a core)",
    )
    p.add_argument(
        "--voice",
        choices=("none", "profile", "adapt"),
        default="none",
        help="classify against a voice profile (of the benchmark's own speech), or one that keeps adapting, as enroll and "
        "[profile] adapt do (default: none, the population's statistics)",
    )
    p.add_argument("--quick", action="store_true", help="a check in well under a minute: int8, LiteRT, 1 thread, 100 windows, a 5 s file")
    p.add_argument("--markdown", metavar="PATH", help="also write the tables to this file")
    p.add_argument("--run-config", metavar="FILE", help="a TOML configuration for the `run` processes (e.g. with [history]); default none")
    p.add_argument("--worker", metavar="JSON", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:
        print(json.dumps(stream_worker(json.loads(args.worker))))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if args.quick:
        args.windows, args.models, args.runtimes, args.threads = 100, ["int8"], ["ai-edge-litert"], [1]
        args.process_seconds, args.process_combos = 5.0, "first"
    try:
        return run(args)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def run(args) -> int:
    from edge.resample import resample

    env = environment()
    int8 = resolve_model(args.model)
    contract = read_contract(int8)
    combos, notes = build_combos(args, int8)
    if not combos:
        raise BenchError("nothing to measure: " + "; ".join(notes))

    # Real speech for (warm-up + windows) hops plus one window, stored once for every worker.
    seconds = (args.windows + WARMUP_HOPS + 2) * contract.hop_s + contract.window_s
    seconds = max(seconds, args.process_seconds)
    audio, clips = speech_stream(args.data, seconds)
    CACHE.mkdir(parents=True, exist_ok=True)
    log.info("%.0f s of real speech from %d clips; resampling it to %d Hz", audio.size / 16000, clips, args.input_rate)
    audio_in = audio if args.input_rate == 16000 else resample(audio, 16000, args.input_rate).astype(np.float32)
    audio_path = CACHE / f"latency_speech_{args.input_rate}hz.npy"
    np.save(audio_path, audio_in)

    results = []
    for combo in combos:
        log.info("stages: %s", combo.name)
        r = run_worker(combo, audio_path, args)
        if "error" not in r:
            r["summary"] = summarise(r)
            if combo.runtime == "tflite-runtime":
                r["runtime_version"] = f"tflite-runtime {_venv_version(combo.python)}"
            else:
                r["runtime_version"] = f"{combo.runtime} {version_of('tensorflow-cpu' if combo.runtime == 'tensorflow' else combo.runtime)}"
        else:
            log.warning("%s did not run: %s", combo.name, r["error"])
        results.append((combo, r))

    process_results = []
    if args.process_combos != "none":
        import soundfile as sf

        clip = audio_in[: int(args.process_seconds * args.input_rate)]
        audio_file = CACHE / f"latency_{args.process_seconds:.0f}s_{args.input_rate}hz.wav"
        sf.write(audio_file, clip, args.input_rate, subtype="PCM_16")
        chosen = combos[:1] if args.process_combos == "first" else combos
        process_results = measure_processes(chosen, audio_file, args.process_jobs, args.run_config)

    text = report(args, env, contract, int8, results, process_results, notes, audio.size / 16000, clips)
    print(text)
    write_text(args.markdown, text + "\n")
    failed = [c for c, r in results if "error" in r] + [c for c, p, _ in process_results if "error" in p]
    return 1 if failed and len(failed) == len(results) + len(process_results) else 0


def _venv_version(python: str) -> str:
    out = subprocess.run([python, "-c", "import tflite_runtime; print(tflite_runtime.__version__)"], capture_output=True, text=True)
    return out.stdout.strip() or "?"


def report(args, env, contract, int8: Path, results, process_results, notes, audio_s: float, clips: int) -> str:
    first = next(((c, r) for c, r in results if "error" not in r), None)
    lines = ["## Latency", "", environment_markdown(env, command_line())]
    lines += [
        "",
        f"Model: `{int8.relative_to(ROOT) if int8.is_relative_to(ROOT) else int8}` ({int8.stat().st_size} bytes), "
        f"window {contract.window_s} s, hop {contract.hop_s} s, {contract.frontend.n_ceps} coefficients. "
        f"Input: {audio_s:.0f} s of real speech ({clips} RAVDESS, SAVEE and TESS clips end to end) at {args.input_rate} Hz "
        f"in {args.chunk_ms} ms chunks; the first {WARMUP_HOPS} hops after the first window are warm-up and not counted. "
        f"Voice profile: {VOICE[args.voice]}.",
    ]
    if first is not None:
        combo, r = first
        s = r["summary"]
        lines += [
            "",
            f"### Per stage ({combo.name}; {s['windows']} windows, {s['speech_windows']} of them speech; {s['hops']} hops of {r['hop_s']} s)",
            "",
            stage_table(s, r["hop_s"]),
            "",
            f"Real-time factor (processing time / audio time): {s['rtf']:.4f}; CPU time of the worker over audio time: "
            f"{100 * s['cpu_share']:.2f} % of one core. Model load: {r['load_ms']:.0f} ms.",
        ]
    lines += ["", "### Models, runtimes and threads", "", combo_table(results)]
    if process_results:
        seconds = args.process_seconds
        lines += [
            "",
            f"### The whole `run` process ({seconds:.0f} s file at {args.input_rate} Hz, paced in real time)",
            "",
            f"Command: `{process_results[0][1].get('command', 'python -m edge run ...')}`; CPU share = (utime + stime) / wall time of "
            "the process (wait4), peak RSS = VmHWM of the process polled every 20 ms; first result = from starting the process to its first "
            "window line on stdout. The last column runs the same file without --realtime. "
            + (
                f"{args.process_jobs} paced runs were measured at a time, started {STAGGER_S:.0f} s apart; fast runs one at a time."
                if args.process_jobs > 1
                else "One process at a time."
            ),
            "",
            process_table(process_results),
        ]
    if notes:
        lines += ["", "Notes:", "", *[f"- {n}" for n in notes]]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
