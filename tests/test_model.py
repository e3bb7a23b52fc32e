"""The model contract: what loads, and one clear refusal for everything that must not."""

from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
from tiny_model import EMOTIONS

from edge.model import Model, ModelContract, ModelError, Normalization, shipped_model_path


@pytest.fixture()
def model_copy(tiny_model_path, tmp_path):
    target = tmp_path / "m.tflite"
    shutil.copy(tiny_model_path, target)
    shutil.copy(tiny_model_path.with_suffix(".json"), target.with_suffix(".json"))
    return target


def edit_json(path, change):
    meta = path.with_suffix(".json")
    data = json.loads(meta.read_text())
    change(data)
    meta.write_text(json.dumps(data))


def test_loads_and_predicts_probabilities(tiny_model_path):
    model = Model(tiny_model_path)
    c = model.contract
    assert c.labels == EMOTIONS and model.runtime in ("ai-edge-litert", "tflite-runtime", "tensorflow")
    windows = np.random.default_rng(0).standard_normal((3, c.window_frames, c.frontend.n_ceps)).astype(np.float32)
    probs = model.predict(windows)
    assert probs.shape == (3, 8)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=0.02)  # int8 softmax steps of 1/256


def test_int8_model_agrees_with_its_float_twin(tiny_model_path, tmp_path):
    """Quantising the input with the contract's scale and zero point gives the float model's answer."""
    import keras
    from tiny_model import TINY_FRONTEND, WINDOW_S

    keras.utils.set_random_seed(0)  # build_tiny_model's seed: the same weights
    model = Model(tiny_model_path)
    frames = TINY_FRONTEND.window_frames(WINDOW_S)
    float_model = keras.Sequential(
        [
            keras.Input((frames, TINY_FRONTEND.n_ceps, 1)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(8, activation="softmax"),
        ]
    )
    windows = np.random.default_rng(5).standard_normal((20, frames, TINY_FRONTEND.n_ceps)).astype(np.float32)
    expected = float_model.predict(model.contract.normalization.apply(windows)[..., None], verbose=0)
    np.testing.assert_allclose(model.predict(windows), expected, atol=0.03)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda d: d.pop("labels"), "required key 'labels' is missing"),
        (lambda d: d.update(format="other/9"), "format is 'other/9'"),
        (lambda d: d.update(labels=["neutral", "neutral"] + list(EMOTIONS[2:])), "labels must be at least two distinct names"),
        (lambda d: d.update(labels=["very angry"] + list(EMOTIONS[1:])), r"labels must be .* got \['very angry'"),
        (lambda d: d.update(sha256="0" * 64), "does not match"),
        (lambda d: d.update(hop_s=0.123), "multiple of the frame hop"),
        (lambda d: d.update(window_s=2.0), "does not hold a window of 198 frames"),
        (lambda d: d["frontend"].update(window="triangle"), "window must be one of"),
        (lambda d: d["input"].update(scale=0.5), "quantization"),
        (lambda d: d["input"].update(dtype="uint8"), "the input tensor is int8"),
        (lambda d: d.update(normalization={"kind": "global", "mean": [0.0], "std": [1.0]}), "needs 13 means"),
        (lambda d: d.update(normalization=None), "'normalization' must be a JSON object, got NoneType"),
        (lambda d: d.update(frontend=[16000]), "'frontend' must be a JSON object, got list"),
        (lambda d: d.update(labels="neutral"), "'labels' must be a list"),
        (
            lambda d: d["normalization"].update(kind="global", mean=["x"] * 13, std=[1.0] * 13),
            "normalization mean must be a list of finite",
        ),
        (lambda d: d["normalization"].update(kind="global", mean=[0.0] * 13, std=[float("nan")] * 13), "finite numbers, found nan"),
        # A contract consistent with itself whose window the .tflite does not take.
        (lambda d: d.update(window_s=2.0, input={**d["input"], "shape": [1, 198, 13, 1]}), r"the input tensor is int8 \[1, 98, 13, 1\]"),
    ],
)
def test_bad_contracts_are_refused_with_the_reason(model_copy, change, fragment):
    edit_json(model_copy, change)
    with pytest.raises(ModelError, match=fragment) as info:
        Model(model_copy)
    assert "\n" not in str(info.value)


def test_missing_corrupt_and_unpaired_files(model_copy, tmp_path):
    with pytest.raises(ModelError, match="not found"):
        Model(tmp_path / "nothing.tflite")
    model_copy.with_suffix(".json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        Model(model_copy)
    model_copy.with_suffix(".json").unlink()
    with pytest.raises(ModelError, match="contract m.json is missing"):
        Model(model_copy)


def test_a_corrupt_tflite_fails_its_checksum(model_copy):
    data = bytearray(model_copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model_copy.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256"):
        Model(model_copy)


def test_a_model_with_labels_of_its_own_reports_them_in_its_order(tmp_path):
    from tiny_model import build_tiny_model

    from edge.classifier import StreamingClassifier

    four = ("bored", "frustrated", "neutral", "złość")  # not the eight emotions, one of them not English
    model = Model(build_tiny_model(tmp_path, name="four", labels=four))
    c = model.contract
    probs = model.predict(np.zeros((1, c.window_frames, c.frontend.n_ceps), np.float32))[0]
    assert model.labels == four and probs.shape == (4,)
    assert probs.sum() == pytest.approx(1.0, abs=0.02)
    tone = 0.3 * np.sin(2 * np.pi * 220 * np.arange(32000) / 16000)
    clip = StreamingClassifier(model).classify_clip(tone, 16000)
    assert list(clip.to_dict()["probs"]) == list(four) and clip.label in four


def test_normalization_per_window_standardises_each_coefficient():
    w = np.random.default_rng(2).normal(5.0, 3.0, (2, 50, 13)).astype(np.float32)
    out = Normalization("window").apply(w)
    np.testing.assert_allclose(out.mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=1), 1, atol=1e-3)


def test_contract_round_trips(tiny_model_path):
    data = json.loads(tiny_model_path.with_suffix(".json").read_text())
    contract = ModelContract.from_dict(data)
    assert ModelContract.from_dict(json.loads(json.dumps(contract.to_dict()))) == contract
    assert dataclasses.replace(contract, name="x").name == "x"


def test_shipped_model_is_package_data_with_a_contract():
    path = shipped_model_path()
    assert path.is_file(), "the shipped model is missing from edge/models (make model)"
    model = Model()
    assert model.path == path and set(model.contract.labels) == set(EMOTIONS)
    assert path.stat().st_size <= 1024 * 1024
    assert model.contract.licence and model.contract.training_data and model.contract.metrics
