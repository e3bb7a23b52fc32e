"""Shared fixtures: the real corpora, a tiny int8 model, and the repository root.

Keep this small; fixtures used by one test module belong in that module.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SER_DATA", ROOT.parent / "shared" / "data"))
sys.path.insert(0, str(ROOT / "tests"))  # for tiny_model

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """../shared/data: real RAVDESS, SAVEE and TESS clips (CI has it beside the clone)."""
    if not (DATA / "ravdess").is_dir():
        pytest.fail(f"the corpora are missing: expected them at {DATA} (set SER_DATA to their folder)")
    return DATA


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory) -> Path:
    """A tiny random int8 model with a valid contract (built once per session with TensorFlow)."""
    from tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"))


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
