"""Choosing the interpreter: LiteRT, else tflite-runtime, else tf.lite; threads reach it."""

from __future__ import annotations

import sys
import types

import pytest

from edge.model import Model
from edge.runtime import RUNTIMES, interpreter_class, load_interpreter


def block(monkeypatch, *packages: str) -> None:
    """Make ``import package`` (and its submodules) fail as if it were not installed."""
    for name in list(sys.modules):
        if name.split(".")[0] in packages:
            monkeypatch.delitem(sys.modules, name)
    for package in packages:
        monkeypatch.setitem(sys.modules, package, None)  # None in sys.modules: ImportError on import


def test_litert_is_preferred_when_installed():
    _, name = interpreter_class()
    assert name == "ai-edge-litert"


def test_without_litert_the_next_runtime_is_used(monkeypatch):
    block(monkeypatch, "ai_edge_litert", "tflite_runtime")
    cls, name = interpreter_class()
    assert name == "tensorflow"
    assert cls.__module__.startswith("tensorflow")


def test_a_model_loads_on_the_fallback_runtime(monkeypatch, tiny_model_path):
    block(monkeypatch, "ai_edge_litert", "tflite_runtime")
    assert Model(tiny_model_path).runtime == "tensorflow"


def test_no_runtime_at_all_says_what_to_install(monkeypatch):
    block(monkeypatch, "ai_edge_litert", "tflite_runtime", "tensorflow")
    with pytest.raises(ImportError, match=r"install ai-edge-litert .* Tried: ai-edge-litert .*; tflite-runtime .*; tensorflow"):
        interpreter_class()


def test_a_runtime_can_be_forced_and_an_unknown_one_is_refused():
    assert interpreter_class("tensorflow")[1] == "tensorflow"
    with pytest.raises(ValueError, match="unknown runtime 'tflite'; choose one of ai-edge-litert, tflite-runtime, tensorflow"):
        interpreter_class("tflite")


def test_the_thread_count_reaches_the_interpreter(monkeypatch, tmp_path):
    seen = {}

    class Recorder:
        def __init__(self, model_path, num_threads=None):
            seen.update(model_path=model_path, num_threads=num_threads)

        def allocate_tensors(self):
            seen["allocated"] = True

    fake = types.ModuleType("fake_interpreter")
    fake.Interpreter = Recorder
    monkeypatch.setitem(sys.modules, "fake_interpreter", fake)
    monkeypatch.setattr("edge.runtime.RUNTIMES", (("fake", "fake_interpreter", "Interpreter"), *RUNTIMES))
    interpreter, name = load_interpreter(tmp_path / "m.tflite", threads=3)
    assert name == "fake" and isinstance(interpreter, Recorder)
    assert seen == {"model_path": str(tmp_path / "m.tflite"), "num_threads": 3, "allocated": True}
