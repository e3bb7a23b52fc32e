"""Full-integer quantisation of a Keras model, calibrated on real windows."""

from __future__ import annotations

import contextlib
import io
import logging

import numpy as np

log = logging.getLogger(__name__)


def _quietly(convert):
    """Run a TFLite conversion without its export's listing of every tensor on stdout (kept in the debug log)."""
    with contextlib.redirect_stdout(io.StringIO()) as said:
        out = convert()
    log.debug("%s", said.getvalue())
    return out


def to_int8_tflite(keras_model, representative: np.ndarray, max_calibration: int = 500, seed: int = 0) -> bytes:
    """Full-int8 TFLite bytes (int8 input and output) from a Keras model.

    ``representative`` holds model inputs exactly as the device will feed them (normalised
    windows, shape (n, ...)); up to ``max_calibration`` of them, drawn with ``seed``, set
    every activation's range, so they should be real training windows, not noise.
    """
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    pick = rng.permutation(len(representative))[:max_calibration]
    samples = np.asarray(representative, dtype=np.float32)[pick]

    def calibration():
        for x in samples:
            yield [x[None, ...]]

    def convert() -> bytes:
        converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = calibration
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        return converter.convert()

    return _quietly(convert)


def to_float_tflite(keras_model) -> bytes:
    """The float32 TFLite twin, for parity checks and benchmarks."""
    import tensorflow as tf

    return _quietly(lambda: tf.lite.TFLiteConverter.from_keras_model(keras_model).convert())


def tensor_specs(tflite_bytes: bytes):
    """(input, output) TensorSpecs read from the model itself, for its contract."""
    from edge.model import TensorSpec
    from edge.runtime import interpreter_class

    cls, _ = interpreter_class()
    interpreter = cls(model_content=tflite_bytes)
    interpreter.allocate_tensors()
    specs = []
    for detail in (interpreter.get_input_details()[0], interpreter.get_output_details()[0]):
        scale, zero = detail["quantization"]
        specs.append(TensorSpec(tuple(int(d) for d in detail["shape"]), np.dtype(detail["dtype"]).name, float(scale), int(zero)))
    return tuple(specs)
