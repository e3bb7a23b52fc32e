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

The stage timing (1 and 2) lives in ``benchmarks.stages``, the `run` process (3) in
``benchmarks.process``; this module picks the combinations, runs them and writes the tables.

Run ``python -m benchmarks.latency --help``; ``--quick`` checks that it works in well under a minute.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np

from benchmarks.common import (
    CACHE,
    DEFAULT_DATA,
    ROOT,
    BenchError,
    above_zero,
    command_line,
    environment,
    environment_markdown,
    read_contract,
    relative,
    resolve_keras,
    resolve_model,
    speech_stream,
    tflite_runtime_python,
    tflite_twin,
    version_of,
    write_text,
)
from benchmarks.process import STAGGER_S, measure_processes, process_table
from benchmarks.stages import WARMUP_HOPS, Combo, combo_table, run_worker, stage_table, stream_worker, summarise

log = logging.getLogger("benchmarks.latency")

RUNTIMES = ("ai-edge-litert", "tflite-runtime", "tensorflow")

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
            notes.append(f"tflite-runtime {detail.split()[0]} ran in {relative(str(python.parent.parent))} with numpy {detail.split()[-1]}")
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
    p.add_argument("--windows", type=above_zero(), default=1000, metavar="N", help="windows to time after the warm-up (default: 1000)")
    p.add_argument(
        "--input-rate", type=above_zero(), default=48000, metavar="HZ", help="rate the audio arrives at (default: 48000, a USB microphone)"
    )
    p.add_argument(
        "--chunk-ms",
        type=above_zero(),
        default=100,
        metavar="MS",
        help="chunk size the audio arrives in (default: 100, as the service reads)",
    )
    p.add_argument("--models", nargs="+", choices=("int8", "float32"), default=["int8", "float32"], help="which models (default: both)")
    p.add_argument("--runtimes", nargs="+", choices=RUNTIMES, default=list(RUNTIMES), help="which runtimes (default: all that import)")
    p.add_argument("--threads", nargs="+", type=above_zero(), default=[1, 2], metavar="N", help="interpreter threads (default: 1 2)")
    p.add_argument(
        "--process-seconds",
        type=above_zero(float),
        default=60.0,
        metavar="S",
        help="length of the file `run` plays in real time (default: 60)",
    )
    p.add_argument(
        "--process-combos",
        choices=("first", "all", "none"),
        default="all",
        help="which combinations get the `run` process test (default: all)",
    )
    p.add_argument(
        "--process-jobs",
        type=above_zero(),
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
        quick = {
            "windows": 100,
            "models": ["int8"],
            "runtimes": ["ai-edge-litert"],
            "threads": [1],
            "process_seconds": 5.0,
            "process_combos": "first",
        }
        given = [f"--{k.replace('_', '-')}" for k, v in quick.items() if getattr(args, k) != build_parser().get_default(k)]
        if given:
            log.warning("--quick sets %s itself: %s ignored", ", ".join(given), "it is" if len(given) == 1 else "they are")
        for key, value in quick.items():
            setattr(args, key, value)
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
