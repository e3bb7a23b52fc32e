"""Shared fixtures (the real corpora, a tiny int8 model, a broker) and the split of the suite.

Tests run where the code runs. Device tests need only the device install (numpy, ai-edge-litert,
soundfile, the service's I/O libraries) and the committed tiny model in tests/models/; `make test`
runs them in the device-only venv .venv-edge. Desk tests need TensorFlow and the training libraries;
they are marked ``desk`` (by the lists below, or by ``@pytest.mark.desk``) and, where TensorFlow is
not installed, skipped with one reason instead of failing.

Keep this small; fixtures used by one test module belong in that module.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import subprocess
import sys
import time
from fnmatch import fnmatch
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SER_DATA", ROOT.parent / "shared" / "data"))
sys.path.insert(0, str(ROOT / "tests"))  # for tiny_model and mosquitto

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HAVE_DESK = importlib.util.find_spec("tensorflow") is not None  # looked up, not imported (that takes seconds)
NO_DESK = "desk test: needs TensorFlow and the training libraries (`make setup` puts them in .venv); this is a device-only install"

# Whole modules that test the desk: training, conversion, benchmarks, building and checking the wheel.
DESK_MODULES = ("test_training_*.py", "test_benchmarks.py", "test_packaging.py")
# Single tests in device modules that compare against a desk library (scipy, python_speech_features,
# Keras, tf.lite). tests/test_suite.py checks that every name here still exists.
DESK_TESTS = {
    "test_frontend.py": ("test_matches_python_speech_features_on_real_speech", "test_filterbank_and_dct_match_psf_and_scipy"),
    "test_resample.py": ("test_sines_match_scipy", "test_real_speech_matches_scipy", "test_real_44k1_speech_matches_scipy"),
    "test_model.py": ("test_int8_model_agrees_with_its_float_twin",),
    "test_runtime.py": (
        "test_without_litert_the_next_runtime_is_used",
        "test_a_model_loads_on_the_fallback_runtime",
        "test_a_runtime_can_be_forced_and_an_unknown_one_is_refused",
    ),
    "test_cli.py": ("test_json_lines_one_per_file_and_the_batch_continues",),  # scipy makes its 44.1 kHz clip
}


def is_desk_module(path: Path) -> bool:
    return any(fnmatch(path.name, pattern) for pattern in DESK_MODULES)


class DeskModule(pytest.Module):
    """A desk module on a device-only install: reported as one skip, never imported (it would fail to)."""

    def collect(self):
        pytest.skip(f"{self.path.name}: {NO_DESK}", allow_module_level=True)


def pytest_pycollect_makemodule(module_path, parent):
    if not HAVE_DESK and is_desk_module(module_path):
        return DeskModule.from_parent(parent, path=module_path)
    return None


def pytest_collection_modifyitems(config, items):
    for item in items:
        if is_desk_module(item.path) or getattr(item, "originalname", item.name) in DESK_TESTS.get(item.path.name, ()):
            item.add_marker(pytest.mark.desk)
        if not HAVE_DESK and item.get_closest_marker("desk") is not None:
            item.add_marker(pytest.mark.skip(reason=NO_DESK))


def find_python(version: str) -> str | None:
    """An interpreter of this version ("3.12") on this machine, on PATH or under pyenv; None if there is none."""
    wanted = str(tuple(map(int, version.split("."))))
    candidates = [
        sys.executable,
        shutil.which(f"python{version}"),
        *sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python{version}"))),
    ]
    for candidate in filter(None, candidates):
        probe = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout.strip() == wanted:
            return candidate
    return None


def wait_until(predicate, timeout_s: float = 30.0) -> bool:
    """Whether ``predicate()`` came true within ``timeout_s`` (generous: the machine is shared), looking every 20 ms."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """../shared/data: real RAVDESS, SAVEE and TESS clips (CI has it beside the clone)."""
    if not (DATA / "ravdess").is_dir():
        pytest.fail(f"the corpora are missing: expected them at {DATA} (set SER_DATA to their folder)")
    return DATA


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> Path:
    """A tiny random int8 model with a valid contract: the committed tests/models/tiny (no TensorFlow needed)."""
    from tiny_model import EMOTIONS, copy_committed

    return copy_committed(tmp_path_factory.mktemp("tiny_model"), "tiny", EMOTIONS)


@pytest.fixture
def mosquitto_broker(tmp_path_factory, request):
    """A real mosquitto on a free loopback port; .stop() and .start() again on the same port make an outage.

    Parametrize indirectly with {"persistent": True} to keep sessions across restarts.
    """
    from mosquitto import MosquittoBroker

    options = getattr(request, "param", None) or {}
    try:
        broker = MosquittoBroker(tmp_path_factory.mktemp("mosquitto"), **options).start()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    yield broker
    broker.stop()
