"""The device path timed stage by stage, in a worker process per (model, runtime, threads) combination.

``run_worker`` starts ``python -m benchmarks.latency --worker SPEC`` with the combination's Python;
in there ``stream_worker`` feeds real speech through the device's own StreamingClassifier and
Policy chunk by chunk, every stage's method wrapped with a clock (resampling, the MFCC frontend,
the speech detector, inference, the policy). ``summarise`` turns the rows into per-window and
per-hop percentiles after the warm-up; ``stage_table`` and ``combo_table`` print them.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT, markdown_table, percentiles

STAGES = ("resample", "frontend", "speech", "inference", "policy")
WARMUP_HOPS = 5  # the first hops (interpreter warm-up, first allocations) are not counted
TIMEOUT_S = 900


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
