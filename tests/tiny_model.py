"""Tiny int8 models with a real contract, for tests that must not depend on the shipped one.

Their weights are random (seeded): they exercise loading, quantisation and windowing, not accuracy.
Building one needs TensorFlow (the desk). So that device tests run on a device-only install, the
builds that tests use are committed in tests/models/ (a few KB each); on an install without
TensorFlow, ``build_tiny_model`` copies the committed build of the same labels and seed. A desk
test (tests/test_suite.py) keeps every committed build byte-equal to a fresh one.

    python tests/tiny_model.py OUT_DIR        # build one tiny model into OUT_DIR
    python tests/tiny_model.py --committed    # rebuild tests/models/ (after changing this file)
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

from edge.frontend import FrontendSettings
from edge.model import ModelContract, Normalization, write_model

# The shipped model's labels, for tests that check a verdict against them (the product reads them from the contract).
EMOTIONS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")

TINY_FRONTEND = FrontendSettings(n_mels=26, n_ceps=13)
WINDOW_S = 1.0
HOP_S = 0.5
SEED = 0

MODELS_DIR = Path(__file__).resolve().parent / "models"
# Committed builds: file stem -> (labels, seed). Add one here when a device test needs other labels.
COMMITTED = {
    "tiny": (EMOTIONS, SEED),
    "tiny_four": (("neutral", "happy", "sad", "angry"), SEED),
    "tiny_own_labels": (("bored", "frustrated", "neutral", "złość"), SEED),
}


def can_build() -> bool:
    """True where TensorFlow is installed (the desk); checked without importing it."""
    return importlib.util.find_spec("tensorflow") is not None


def build_tiny_model(out_dir: str | Path, name: str = "tiny", labels=EMOTIONS, seed: int = SEED) -> Path:
    """Write NAME.tflite and NAME.json into out_dir: built on the desk, else copied from tests/models/."""
    if can_build():
        return _build(out_dir, name, tuple(labels), seed)
    return copy_committed(out_dir, name, tuple(labels), seed)


def copy_committed(out_dir: str | Path, name: str, labels: tuple[str, ...], seed: int = SEED) -> Path:
    """The committed build of these labels and seed, written as a fresh build of that name would be."""
    stem = next((s for s, (lab, sd) in COMMITTED.items() if lab == labels and sd == seed), None)
    if stem is None:
        import pytest

        pytest.skip(f"building a tiny model with labels {list(labels)} needs TensorFlow (the desk), and tests/models/ has no build of them")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.tflite"
    path.write_bytes((MODELS_DIR / f"{stem}.tflite").read_bytes())
    contract = json.loads((MODELS_DIR / f"{stem}.json").read_text(encoding="utf-8"))
    contract["name"] = name  # write_model names the contract after its file
    path.with_suffix(".json").write_text(json.dumps(contract, indent=2) + "\n", encoding="utf-8")
    return path


def _build(out_dir: str | Path, name: str, labels: tuple[str, ...], seed: int) -> Path:
    import keras

    from convert.int8 import tensor_specs, to_int8_tflite

    keras.backend.clear_session()  # layer names (conv2d, conv2d_1, ...) count builds; they are in the bytes
    keras.utils.set_random_seed(seed)
    frames = TINY_FRONTEND.window_frames(WINDOW_S)
    model = keras.Sequential(
        [
            keras.Input((frames, TINY_FRONTEND.n_ceps, 1)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(len(labels), activation="softmax"),
        ]
    )
    rng = np.random.default_rng(seed)
    representative = rng.standard_normal((64, frames, TINY_FRONTEND.n_ceps, 1)).astype(np.float32)
    tflite = to_int8_tflite(model, representative)
    spec_in, spec_out = tensor_specs(tflite)
    contract = ModelContract(
        labels=labels,
        frontend=TINY_FRONTEND,
        window_s=WINDOW_S,
        hop_s=HOP_S,
        input=spec_in,
        output=spec_out,
        sha256="",
        normalization=Normalization("window"),
        training_data={"note": "random weights, for tests only"},
        licence="MIT (test fixture, no data)",
    )
    path = Path(out_dir) / f"{name}.tflite"
    write_model(path, tflite, contract)
    return path


def build_committed(out_dir: str | Path = MODELS_DIR) -> list[Path]:
    """Build every committed tiny model afresh into out_dir (tests/models/ by default)."""
    return [_build(out_dir, stem, labels, seed) for stem, (labels, seed) in COMMITTED.items()]


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # convert/ lives at the repository root
    if sys.argv[1:] == ["--committed"]:
        for built in build_committed():
            print(built)
    else:
        print(build_tiny_model(sys.argv[1] if len(sys.argv) > 1 else "."))
