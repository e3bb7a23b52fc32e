"""Finding a TFLite interpreter: LiteRT first, then tflite-runtime, then TensorFlow.

The device installs ``ai-edge-litert``; ``tflite-runtime`` serves older Pis (numpy<2) and
``tensorflow.lite`` the desk. Nothing is imported until a model is loaded.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
import tempfile

log = logging.getLogger(__name__)

# (name users pass, module, attribute holding the Interpreter class), in order of preference.
RUNTIMES = (
    ("ai-edge-litert", "ai_edge_litert.interpreter", "Interpreter"),
    ("tflite-runtime", "tflite_runtime.interpreter", "Interpreter"),
    # tf.lite.Interpreter is an API alias; the package folder "tensorflow.lite" has no
    # Interpreter attribute (TF 2.21), so the class is taken from the module that defines it.
    ("tensorflow", "tensorflow.lite.python.interpreter", "Interpreter"),
)


def interpreter_class(runtime: str | None = None):
    """The Interpreter class and the runtime's name; ``runtime`` forces one of RUNTIMES."""
    names = [r[0] for r in RUNTIMES]
    if runtime is not None and runtime not in names:
        raise ValueError(f"unknown runtime {runtime!r}; choose one of {', '.join(names)}")
    tried = []
    for name, module, attr in RUNTIMES:
        if runtime is not None and name != runtime:
            continue
        try:
            return getattr(importlib.import_module(module), attr), name
        except ImportError as exc:
            tried.append(f"{name} ({exc})")
    raise ImportError(
        "no TFLite interpreter could be imported; install ai-edge-litert (pip install -r requirements-edge.txt). Tried: " + "; ".join(tried)
    )


def load_interpreter(model_path: str | os.PathLike, threads: int | None = None, runtime: str | None = None):
    """An allocated interpreter for a .tflite file and the name of the runtime that runs it."""
    cls, name = interpreter_class(runtime)
    with _native_stderr_filtered():
        interpreter = cls(model_path=str(model_path), num_threads=threads)
        interpreter.allocate_tensors()
    log.debug("loaded %s with %s, %s thread(s)", model_path, name, threads or "default")
    return interpreter, name


# The runtimes' C++ core prints this on every start, straight to file descriptor 2, and no
# setting turns it off (TF_CPP_MIN_LOG_LEVEL does not reach LiteRT's logger).
_NATIVE_NOISE = ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",)


@contextlib.contextmanager
def _native_stderr_filtered():
    """Capture what native code writes to fd 2 meanwhile; pass on all but the known INFO line."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode(errors="replace")
            kept = [line for line in text.splitlines() if line.strip() and line.strip() not in _NATIVE_NOISE]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")


def runtime_version(name: str) -> str:
    """Installed version of a runtime's distribution, or 'not installed'."""
    from importlib import metadata

    dist = {"tensorflow": "tensorflow-cpu"}.get(name, name)
    for candidate in (dist, name):
        try:
            return metadata.version(candidate)
        except metadata.PackageNotFoundError:
            continue
    return "not installed"
