"""What the three benchmarks share: the machine's description, real speech, the models and markdown tables.

Nothing here imports TensorFlow at module level: the latency workers import this module
inside a tflite-runtime environment that has numpy<2 and no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import logging
import os
import platform
import random
import shlex
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
CACHE = ROOT / "cache" / "bench"  # gitignored: float twins, test audio, the tflite-runtime venv
SHIPPED_MODEL = ROOT / "edge" / "models" / "ser_cnn_int8.tflite"
KERAS_MODEL = ROOT / "models" / "ser_cnn.keras"
TFLITE_VENV = CACHE / "venv-tflite"
CORPORA = ("ravdess", "savee", "tess")


class BenchError(RuntimeError):
    """A benchmark that cannot run (no model, no data), with one sentence saying why."""


# ---------------------------------------------------------------- the machine


def above_zero(kind: type = int):
    """An argparse type: a number of ``kind`` above 0, or one sentence saying so (0 windows or 0 Hz measure nothing)."""

    def parse(text: str):
        import argparse

        try:
            value = kind(text)
        except ValueError:
            value = 0
        if not 0 < value < float("inf"):
            raise argparse.ArgumentTypeError(f"{text!r} is not a {'whole ' if kind is int else ''}number above 0")
        return value

    return parse


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.system()


def version_of(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def environment() -> dict:
    """Machine, software and load, for the header of every table."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "os": f"{_os_name()}, kernel {platform.release()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "ai-edge-litert": version_of("ai-edge-litert"),
        "tensorflow": version_of("tensorflow-cpu") if version_of("tensorflow-cpu") != "not installed" else version_of("tensorflow"),
        "load_avg": " / ".join(f"{x:.2f}" for x in load),
        **{name: os.environ.get(name, "unset") for name in ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")},
    }


def environment_markdown(env: dict, command: str, extra: dict | None = None) -> str:
    """The block above a table: when, where, with what, and the command that made it."""
    items = {**env, **(extra or {})}
    lines = [f"- {k}: {v}" for k, v in items.items()]
    return "\n".join([f"Command: `{command}`", "", *lines])


def command_line() -> str:
    """How this script was started, as a user would type it."""
    args = " ".join(shlex.quote(a) for a in sys.argv[1:])
    module = Path(sys.argv[0]).stem
    return f".venv/bin/python -m benchmarks.{module} {args}".strip()


def relative(text: str) -> str:
    """Paths inside the repository as a user types them from its root."""
    return text.replace(str(ROOT) + os.sep, "")


# ---------------------------------------------------------------- tables


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    def cell(v) -> str:
        if isinstance(v, float):
            if v != v:  # nan
                return "–"
            return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
        return str(v)

    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(out)


def percentiles(values: Sequence[float]) -> tuple[float, float, float]:
    """(p50, p95, p99) by linear interpolation; nan for no values."""
    if len(values) == 0:
        return (float("nan"),) * 3
    p = np.percentile(np.asarray(values, dtype=np.float64), [50, 95, 99])
    return float(p[0]), float(p[1]), float(p[2])


def write_text(path: str | os.PathLike | None, text: str) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
        log.info("wrote %s", path)


# ---------------------------------------------------------------- real speech


def check_data(data_root: str | os.PathLike) -> Path:
    root = Path(data_root)
    if not (root / "ravdess").is_dir():
        raise BenchError(f"the corpora are not at {root}; pass --data with the folder that holds ravdess/, savee/ and tess/")
    return root


def speech_files(data_root: str | os.PathLike, seed: int = 0, corpora: Sequence[str] = CORPORA) -> list[Path]:
    """Every FLAC clip of the corpora, in a seeded order that mixes corpora, speakers and emotions."""
    root = check_data(data_root)
    files = sorted(p for c in corpora for p in (root / c).rglob("*.flac"))
    random.Random(seed).shuffle(files)
    return files


def speech_stream(data_root: str | os.PathLike, seconds: float, seed: int = 0) -> tuple[np.ndarray, int]:
    """At least ``seconds`` of real speech at 16 kHz: whole clips end to end, and the number of clips used."""
    from edge.audio import read_audio
    from edge.resample import resample

    parts, total, need = [], 0, int(seconds * 16000)
    for path in speech_files(data_root, seed):
        x, rate = read_audio(path)
        y = resample(x, rate).astype(np.float32)
        parts.append(y)
        total += y.size
        if total >= need:
            break
    if total < need:
        raise BenchError(f"the corpora hold only {total / 16000:.0f} s of audio, {seconds:.0f} s were asked for")
    return np.concatenate(parts), len(parts)


class PeakRss:
    """Polls VmHWM (the peak resident set) of a process every 20 ms until it exits.

    wait4's ru_maxrss would be simpler, but Linux carries it across fork and exec, so a child
    of this (large) benchmark process would report the benchmark's own peak. VmHWM belongs
    to the child's address space alone; polling misses at most the last 20 ms.
    """

    def __init__(self, pid: int) -> None:
        import threading

        self.kib = 0
        self._status = Path(f"/proc/{pid}/status")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                for line in self._status.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        self.kib = max(self.kib, int(line.split()[1]))
            except (OSError, ValueError, IndexError):
                pass  # not started yet or already gone
            self._stop.wait(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


# ---------------------------------------------------------------- models


def resolve_model(path: str | os.PathLike | None) -> Path:
    p = Path(path) if path else SHIPPED_MODEL
    if p.suffix == ".json":
        p = p.with_suffix(".tflite")
    if not p.is_file() or not p.with_suffix(".json").is_file():
        raise BenchError(f"no model at {p} (a model is NAME.tflite with NAME.json beside it); train one with `make model` or pass --model")
    return p


def resolve_keras(path: str | os.PathLike | None) -> Path:
    p = Path(path) if path else KERAS_MODEL
    if not p.is_file():
        raise BenchError(f"no float Keras model at {p}; it comes with the shipped model (`make model`), or pass --keras")
    return p


def _sha_short(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def tflite_twin(int8_model: Path, keras_model: Path, kind: str, out_dir: Path = CACHE / "models") -> Path:
    """The float32 or dynamic-range TFLite twin of an int8 model, converted from its Keras model, with a contract.

    The contract is the int8 model's with the twin's own tensors; the file is cached by the
    Keras model's hash, so a second run does not convert again. Needs TensorFlow (desk only).
    """
    from edge.model import write_model

    if kind not in ("float32", "dynamic"):
        raise ValueError(f"kind must be float32 or dynamic, got {kind!r}")
    out = out_dir / f"{int8_model.stem}_{kind}_{_sha_short(keras_model)}.tflite"
    if out.is_file() and out.with_suffix(".json").is_file():
        return out
    import keras
    import tensorflow as tf

    from convert.int8 import tensor_specs

    model = keras.models.load_model(keras_model, compile=False)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if kind == "dynamic":
        # Dynamic-range quantisation: int8 weights, float activations, no calibration data.
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    data = converter.convert()
    spec_in, spec_out = tensor_specs(data)
    contract = read_contract(int8_model)
    twin = dataclasses.replace(contract, input=spec_in, output=spec_out, metrics={}, training_data=dict(contract.training_data))
    write_model(out, data, twin)
    log.info("wrote the %s twin %s (%d bytes)", kind, out, len(data))
    return out


def read_contract(model: Path):
    """The ModelContract in NAME.json beside a .tflite, without loading an interpreter."""
    import json

    from edge.model import ModelContract

    meta = model.with_suffix(".json")
    return ModelContract.from_dict(json.loads(meta.read_text()), str(meta))


# ---------------------------------------------------------------- other Python environments


def tflite_runtime_python() -> tuple[Path | None, str]:
    """The Python of the tflite-runtime venv (cache/bench/venv-tflite), or None and why not."""
    python = TFLITE_VENV / "bin" / "python"
    if not python.is_file():
        return (
            None,
            f"no venv at {TFLITE_VENV}; create it with: python3 -m venv {TFLITE_VENV} && {TFLITE_VENV}/bin/pip install 'numpy<2' tflite-runtime soundfile",
        )
    probe = subprocess.run(
        [str(python), "-c", "import tflite_runtime, numpy; print(tflite_runtime.__version__, numpy.__version__)"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if probe.returncode != 0:
        return None, (probe.stderr.strip().splitlines() or ["tflite-runtime does not import"])[-1]
    return python, probe.stdout.strip()
