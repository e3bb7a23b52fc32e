"""The model and its contract: ``NAME.tflite`` beside ``NAME.json``.

The JSON says everything the device needs to serve the model: labels, frontend settings,
window and hop, feature normalisation, the input and output tensors with their
quantisation, the sha256 of the .tflite, and where the model came from (training data,
metrics, licence). Loading checks the JSON against itself, the file against its sha256
and the interpreter's tensors against the JSON, and refuses with ``ModelError`` (one
sentence naming the problem) on any mismatch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from edge.files import read_regular, what_is
from edge.frontend import FrontendSettings
from edge.runtime import load_interpreter
from edge.speech import SpeechSettings

log = logging.getLogger(__name__)

CONTRACT_FORMAT = "ser-edge-model/1"
DEFAULT_MODEL = "ser_cnn_int8"  # edge/models/<name>.tflite and .json
NORMALIZATIONS = ("none", "window", "global", "window_mean", "both")
FITTED = ("global", "window_mean", "both")  # kinds that carry the training windows' mean and spread
# A label becomes an MQTT payload, a Home Assistant option, a config table name and a CSS-safe
# key on the page: letters (any script), digits, '_' and '-', at most 32 characters.
LABEL = re.compile(r"^[^\W\d][\w-]{0,31}$")


class ModelError(ValueError):
    """A model the device cannot serve, with a message that says why."""


@dataclass(frozen=True)
class TensorSpec:
    """Shape, dtype and affine quantisation of one model tensor."""

    shape: tuple[int, ...]
    """Tensor shape including the batch dimension of 1."""
    dtype: str
    """numpy dtype name: int8, uint8 or float32."""
    scale: float = 0.0
    """Real value = scale * (q - zero_point); 0 for a float tensor."""
    zero_point: int = 0
    """Quantised value that represents real 0."""

    @classmethod
    def from_dict(cls, data: dict) -> TensorSpec:
        return cls(tuple(int(d) for d in data["shape"]), str(data["dtype"]), float(data.get("scale", 0.0)), int(data.get("zero_point", 0)))


@dataclass(frozen=True)
class Normalization:
    """How MFCC windows are standardised before the model."""

    kind: str = "window"
    """none; window: each coefficient to zero mean and unit variance within the window; global: the training
    windows' mean and spread; window_mean: the window's own mean removed, the training spread divided out (a
    channel or a voice's average colour goes, its level changes within the window stay); both: the global and
    the window view side by side (twice the coefficients)."""
    mean: tuple[float, ...] = ()
    """Per-coefficient mean of the training windows (global, both)."""
    std: tuple[float, ...] = ()
    """Per-coefficient standard deviation of the training windows (global, window_mean, both)."""
    eps: float = 1e-5
    """Added to the standard deviation so a constant coefficient does not divide by zero."""

    def with_profile(self, mean, std) -> Normalization:
        """The same normalisation against one voice's statistics (``edge.profile``) instead of the training population's."""
        if self.kind not in FITTED:
            return self
        return dataclasses.replace(
            self, mean=() if self.kind == "window_mean" else tuple(float(v) for v in mean), std=tuple(float(v) for v in std)
        )

    def width(self, n_ceps: int) -> int:
        """Values per frame the model takes for frames of ``n_ceps`` coefficients."""
        return 2 * n_ceps if self.kind == "both" else n_ceps

    def apply(self, windows: np.ndarray) -> np.ndarray:
        """Standardise windows of shape (n, frames, coefficients); returns float32 (n, frames, width)."""
        w = np.asarray(windows, dtype=np.float32)
        if self.kind in ("window", "both"):
            mean = w.mean(axis=1, keepdims=True)
            per_window = (w - mean) / (w.std(axis=1, keepdims=True) + self.eps)
            if self.kind == "window":
                return per_window
        if self.kind == "window_mean":
            return (w - w.mean(axis=1, keepdims=True)) / (np.asarray(self.std, np.float32) + self.eps)
        if self.kind in ("global", "both"):
            pooled = (w - np.asarray(self.mean, np.float32)) / (np.asarray(self.std, np.float32) + self.eps)
            return np.concatenate([pooled, per_window], axis=-1) if self.kind == "both" else pooled
        return w

    @classmethod
    def from_dict(cls, data: dict) -> Normalization:
        mean, std = (_numbers(data.get(key, ()), f"normalization {key}") for key in ("mean", "std"))
        return cls(str(data.get("kind", "none")), mean, std, float(data.get("eps", 1e-5)))


def _numbers(values, what: str) -> tuple[float, ...]:
    """A JSON list of finite numbers as a tuple of floats; ValueError naming ``what`` otherwise."""
    if not isinstance(values, (list, tuple)):
        raise ValueError(f"{what} must be a list of numbers")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not np.isfinite(v):
            raise ValueError(f"{what} must be a list of finite numbers, found {v!r}")
        out.append(float(v))
    return tuple(out)


def _speech(data: dict) -> SpeechSettings:
    return SpeechSettings.from_dict(data)


def _object(data: dict, key: str, default: dict | None = None) -> dict:
    """The JSON object under ``key`` (``default`` when absent, KeyError when required)."""
    value = data[key] if default is None else data.get(key, default)
    if not isinstance(value, dict):
        raise ValueError(f"{key!r} must be a JSON object, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class ModelContract:
    """Everything in NAME.json."""

    labels: tuple[str, ...]
    frontend: FrontendSettings
    window_s: float
    """Length of one classified window in seconds."""
    hop_s: float
    """Step between window starts in seconds."""
    input: TensorSpec
    output: TensorSpec
    sha256: str
    normalization: Normalization = Normalization()
    speech: SpeechSettings = SpeechSettings()
    """The speech gate the model was trained and evaluated with; the device uses it unless told otherwise."""
    name: str = DEFAULT_MODEL
    training_data: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    licence: str = ""
    format: str = CONTRACT_FORMAT

    @property
    def hop_frames(self) -> int:
        return self.frontend.hop_frames(self.hop_s)

    @property
    def window_frames(self) -> int:
        return self.frontend.window_frames(self.window_s)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["labels"] = list(self.labels)
        return d

    @classmethod
    def from_dict(cls, data: dict, where: str = "model JSON") -> ModelContract:
        try:
            if data.get("format") != CONTRACT_FORMAT:
                raise ModelError(f"{where}: format is {data.get('format')!r}, this device serves {CONTRACT_FORMAT!r}")
            if not isinstance(data["labels"], list):
                raise ValueError("'labels' must be a list of names")
            contract = cls(
                labels=tuple(data["labels"]),
                frontend=FrontendSettings.from_dict(_object(data, "frontend")),
                window_s=float(data["window_s"]),
                hop_s=float(data["hop_s"]),
                input=TensorSpec.from_dict(_object(data, "input")),
                output=TensorSpec.from_dict(_object(data, "output")),
                sha256=str(data["sha256"]),
                normalization=Normalization.from_dict(_object(data, "normalization", {})),
                speech=_speech(_object(data, "speech", {})),
                name=str(data.get("name", DEFAULT_MODEL)),
                training_data=_object(data, "training_data", {}),
                metrics=_object(data, "metrics", {}),
                licence=str(data.get("licence", "")),
            )
        except ModelError:
            raise
        except KeyError as exc:
            raise ModelError(f"{where}: the required key {exc.args[0]!r} is missing") from None
        except (TypeError, ValueError) as exc:
            raise ModelError(f"{where}: {exc}") from None
        contract.validate(where)
        return contract

    def validate(self, where: str = "model JSON") -> None:
        bad = [label for label in self.labels if not isinstance(label, str) or not LABEL.match(label)]
        if bad or len(set(self.labels)) != len(self.labels) or len(self.labels) < 2:
            raise ModelError(
                f"{where}: labels must be at least two distinct names of letters, digits, '_' or '-' "
                f"(starting with a letter, at most 32 characters); got {list(self.labels)}"
            )
        if self.normalization.kind not in NORMALIZATIONS:
            raise ModelError(f"{where}: normalization kind must be one of {', '.join(NORMALIZATIONS)}, got {self.normalization.kind!r}")
        n_ceps = self.frontend.n_ceps
        norm = self.normalization
        if norm.kind in FITTED and not (
            len(norm.std) == n_ceps and len(norm.mean) in (0, n_ceps) and (norm.mean or norm.kind == "window_mean")
        ):
            raise ModelError(f"{where}: {norm.kind} normalization needs {n_ceps} means and standard deviations")
        hop_ms = self.hop_s * 1000
        if self.hop_s <= 0 or abs(hop_ms / self.frontend.hop_ms - self.hop_frames) > 1e-6:
            raise ModelError(f"{where}: hop_s ({self.hop_s}) must be a positive multiple of the frame hop ({self.frontend.hop_ms} ms)")
        if self.window_frames < 1:
            raise ModelError(f"{where}: window_s ({self.window_s}) is shorter than one frame")
        expected = (self.window_frames, norm.width(n_ceps))
        if _squeeze(self.input.shape) != expected:
            raise ModelError(
                f"{where}: input shape {list(self.input.shape)} does not hold a window of {expected[0]} frames x {expected[1]} values"
            )
        if int(np.prod(self.output.shape)) != len(self.labels):
            raise ModelError(f"{where}: output shape {list(self.output.shape)} does not match {len(self.labels)} labels")
        for spec, name in ((self.input, "input"), (self.output, "output")):
            if spec.dtype not in ("int8", "uint8", "float32"):
                raise ModelError(f"{where}: {name} dtype {spec.dtype} is not int8, uint8 or float32")
            if spec.dtype != "float32" and spec.scale <= 0:
                raise ModelError(f"{where}: {name} is {spec.dtype} but has no quantization scale")


def probs_dict(probs, labels) -> dict[str, float]:
    """{label: probability rounded to 4 places}, in the model's order: how results are shown and sent."""
    return {label: round(float(p), 4) for label, p in zip(labels, probs, strict=True)}


def _squeeze(shape: tuple[int, ...]) -> tuple[int, ...]:
    """(1, W, C, 1) or (1, W, C) -> (W, C): drop the batch and channel dimensions of size 1."""
    dims = list(shape)
    if dims and dims[0] == 1:
        dims = dims[1:]
    while len(dims) > 2 and dims[-1] == 1:
        dims = dims[:-1]
    return tuple(dims)


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_model(tflite_path: str | os.PathLike, tflite_bytes: bytes, contract: ModelContract) -> ModelContract:
    """Write NAME.tflite and NAME.json together; the sha256 is filled in from the bytes."""
    tflite_path = Path(tflite_path)
    tflite_path.parent.mkdir(parents=True, exist_ok=True)
    tflite_path.write_bytes(tflite_bytes)
    contract = dataclasses.replace(contract, sha256=hashlib.sha256(tflite_bytes).hexdigest(), name=tflite_path.stem)
    contract.validate(str(tflite_path.with_suffix(".json")))
    tflite_path.with_suffix(".json").write_text(json.dumps(contract.to_dict(), indent=2) + "\n")
    return contract


def shipped_model_path() -> Path:
    """The model that ships inside the package (edge/models/), found through importlib.resources."""
    ref = resources.files("edge") / "models" / f"{DEFAULT_MODEL}.tflite"
    return Path(str(ref))


class Model:
    """An interpreter with its contract: windows of MFCC in, label probabilities out."""

    def __init__(self, path: str | os.PathLike | None = None, threads: int | None = None, runtime: str | None = None) -> None:
        tflite = Path(path) if path is not None else shipped_model_path()
        if tflite.suffix == ".json":
            tflite = tflite.with_suffix(".tflite")
        meta = tflite.with_suffix(".json")
        for part, words in ((tflite, "a .tflite file"), (meta, "a JSON contract")):
            kind = what_is(part)
            if kind is not None:  # a folder, or a FIFO nobody writes: opening it would wait for ever
                raise ModelError(f"model file {part} is {kind}, not {words}")
        if not tflite.is_file():
            hint = " (the shipped model is made by `make model`)" if path is None else ""
            raise ModelError(f"model file {tflite} not found{hint}")
        if not meta.is_file():
            raise ModelError(f"{tflite}: its contract {meta.name} is missing beside it; a model is NAME.tflite plus NAME.json")
        try:
            data = json.loads(read_regular(meta, limit=16 << 20))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"{meta}: not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ModelError(f"{meta}: expected a JSON object")
        self.contract = ModelContract.from_dict(data, str(meta))
        actual = sha256_of(tflite)
        if actual != self.contract.sha256:
            raise ModelError(
                f"{tflite}: sha256 {actual[:12]}… does not match {self.contract.sha256[:12]}… in {meta.name}; the file is corrupt or belongs to another contract"
            )
        self.path = tflite
        try:
            self.interpreter, self.runtime = load_interpreter(tflite, threads=threads, runtime=runtime)
        except ImportError:
            raise
        except Exception as exc:  # the runtimes raise ValueError/RuntimeError with long texts
            raise ModelError(f"{tflite}: the interpreter cannot load it ({str(exc).splitlines()[0]})") from None
        self.threads = threads
        self._in = self.interpreter.get_input_details()[0]
        self._out = self.interpreter.get_output_details()[0]
        self._check_tensors()

    def _check_tensors(self) -> None:
        c = self.contract
        for detail, spec, name in ((self._in, c.input, "input"), (self._out, c.output, "output")):
            shape = tuple(int(d) for d in detail["shape"])
            dtype = np.dtype(detail["dtype"]).name
            scale, zero = detail["quantization"]
            if shape != spec.shape or dtype != spec.dtype:
                raise ModelError(
                    f"{self.path}: the {name} tensor is {dtype} {list(shape)} but the contract says {spec.dtype} {list(spec.shape)}"
                )
            if spec.dtype != "float32" and (not np.isclose(scale, spec.scale, rtol=1e-6) or zero != spec.zero_point):
                raise ModelError(f"{self.path}: the {name} quantization (scale {scale}, zero point {zero}) differs from the contract")

    @property
    def labels(self) -> tuple[str, ...]:
        return self.contract.labels

    def predict(self, windows: np.ndarray, normalization: Normalization | None = None) -> np.ndarray:
        """Probabilities over ``labels`` (the contract's order) for MFCC windows of shape (n, frames, coefficients).

        Normalises with the contract's method (or ``normalization``: the same against a voice profile),
        quantises with the input tensor's own scale and zero point (q = round(x / scale) + zero_point,
        as the converter calibrated them), invokes once per window, and dequantises the output the same way.
        """
        x = (normalization or self.contract.normalization).apply(windows)
        spec_in, spec_out = self.contract.input, self.contract.output
        probs = np.zeros((x.shape[0], len(self.contract.labels)), dtype=np.float32)
        for i in range(x.shape[0]):
            tensor = x[i].reshape(spec_in.shape)
            if spec_in.dtype != "float32":
                info = np.iinfo(spec_in.dtype)
                tensor = np.clip(np.round(tensor / spec_in.scale) + spec_in.zero_point, info.min, info.max)
            self.interpreter.set_tensor(self._in["index"], tensor.astype(spec_in.dtype))
            self.interpreter.invoke()
            out = self.interpreter.get_tensor(self._out["index"]).reshape(-1)
            if spec_out.dtype != "float32":
                out = spec_out.scale * (out.astype(np.float32) - spec_out.zero_point)
            probs[i] = out
        return probs
