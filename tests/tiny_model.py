"""Build a tiny int8 model with a real contract, for tests that must not depend on the shipped one.

Its weights are random (seeded): it exercises loading, quantisation and windowing, not accuracy.
Run as a script to write one: python tests/tiny_model.py OUT_DIR
"""

from __future__ import annotations

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


def build_tiny_model(out_dir: str | Path, name: str = "tiny", labels=EMOTIONS, seed: int = 0) -> Path:
    import keras

    from convert.int8 import tensor_specs, to_int8_tflite

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
        labels=tuple(labels),
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


if __name__ == "__main__":
    print(build_tiny_model(sys.argv[1] if len(sys.argv) > 1 else "."))
