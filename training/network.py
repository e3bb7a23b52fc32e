"""Small Keras 3 CNNs over MFCC windows (frames x coefficients), sized for int8 on a Raspberry Pi.

Every layer here has an int8 TFLite kernel (Conv, depthwise Conv, BatchNorm folded into
the conv, ReLU, pooling, Dense, Softmax), so conversion needs no float fallback.
"""

from __future__ import annotations

ARCHITECTURES = ("cnn2d", "cnn1d", "cnn1d_deep", "dscnn")


POOLINGS = ("avg", "avgmax")


def build_model(arch: str, frames: int, coeffs: int, n_labels: int, width: int = 16, dropout: float = 0.3, pooling: str = "avg"):
    """A compiled-ready Keras model: input (frames, coeffs) float32, output softmax over n_labels.

    ``pooling`` is how the last feature maps become one vector: ``avg`` over time (and
    frequency), or ``avgmax``, the average and the maximum side by side, so that a short
    emotional peak in the window is not averaged away.
    """
    import keras
    from keras import layers

    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
    inputs = keras.Input((frames, coeffs), name="mfcc")
    if arch in ("cnn1d", "cnn1d_deep"):
        # MFCCs as channels, convolution along time only: cheap, and pitch-shift tolerant.
        # The deep variant adds a block and wider kernels: ~1 s of context before pooling, for prosody.
        x = inputs
        widths, kernel = ((4 * width, 6 * width, 8 * width), 5) if arch == "cnn1d" else ((4 * width, 6 * width, 8 * width, 8 * width), 7)
        for i, filters in enumerate(widths):
            x = layers.Conv1D(filters, kernel, padding="same", use_bias=False, name=f"conv{i}")(x)
            x = layers.BatchNormalization(name=f"bn{i}")(x)
            x = layers.ReLU(name=f"relu{i}")(x)
            x = layers.MaxPooling1D(2, name=f"pool{i}")(x)
        x = _pool(layers, x, pooling, layers.GlobalAveragePooling1D, layers.GlobalMaxPooling1D)
    else:
        x = layers.Reshape((frames, coeffs, 1), name="image")(inputs)
        widths = (width, 2 * width, 3 * width, 4 * width)
        for i, filters in enumerate(widths):
            if arch == "dscnn" and i > 0:
                x = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"dw{i}")(x)
                x = layers.BatchNormalization(name=f"dwbn{i}")(x)
                x = layers.ReLU(name=f"dwrelu{i}")(x)
                x = layers.Conv2D(filters, 1, use_bias=False, name=f"conv{i}")(x)
            else:
                x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
            x = layers.BatchNormalization(name=f"bn{i}")(x)
            x = layers.ReLU(name=f"relu{i}")(x)
            x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
        x = _pool(layers, x, pooling, layers.GlobalAveragePooling2D, layers.GlobalMaxPooling2D)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(n_labels, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name=f"ser_{arch}")


def _pool(layers, x, pooling: str, average, maximum):
    if pooling == "avg":
        return average(name="gap")(x)
    return layers.Concatenate(name="gap_gmp")([average(name="gap")(x), maximum(name="gmp")(x)])


def average_models(models, frames: int, coeffs: int):
    """One Keras model whose output is the mean of several trained models' probabilities (a seed ensemble)."""
    import keras
    from keras import layers

    if len(models) == 1:
        return models[0]
    inputs = keras.Input((frames, coeffs), name="mfcc")
    outputs = []
    for i, m in enumerate(models):
        m.name = f"member{i}"
        outputs.append(m(inputs))
    return keras.Model(inputs, layers.Average(name="probs_mean")(outputs), name="ser_ensemble")
