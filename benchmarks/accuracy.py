"""Float Keras, float TFLite, dynamic-range and full-int8 TFLite side by side, clean and in car noise.

On the validation speakers named in the int8 model's contract (the speakers its training
never saw and its tuning was judged on), each of the four forms of the same network
classifies every clip the way the device does: the device's frontend and windows, then the
mean of the speech windows' probabilities (``training.windows.window_set`` and
``training.metrics.evaluate_clips``, imported, not copied). The table gives each form's file size, accuracy
(share of clips right), unweighted average recall over the emotions present, and how often
its top-1 label agrees with the float Keras model's.

Then the same clips with in-car noise at 20, 10, 5 and 0 dB SNR: engine hum and road rumble
from ``training.augment.write_car_noise``, synthesised with a different seed from the one
training used (new noise, same kind). The SNR is measured on active speech: the signal
power counts only the samples of frames the device's speech detector marks on the clean
clip, so leading and trailing silence do not make the noise look quieter than it sounds.
Each clip gets one noise segment (seeded by its path), scaled to each SNR in turn; the mix
saturates at full scale as a recording would. The PNG beside the table plots accuracy
against SNR.

Run ``python -m benchmarks.accuracy --help``.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import (
    CACHE,
    DEFAULT_DATA,
    ROOT,
    BenchError,
    above_zero,
    check_data,
    command_line,
    environment,
    environment_markdown,
    markdown_table,
    read_contract,
    resolve_keras,
    resolve_model,
    tflite_twin,
    write_text,
)

log = logging.getLogger("benchmarks.accuracy")

SNRS_DB = (None, 20.0, 10.0, 5.0, 0.0)  # None: the clean recording
NOISE_SEED = 2027  # training synthesised its car noise with seed 7; these are other clips of the same kind
NOISE_CLIPS = 6
VARIANTS = ("float Keras", "float32 TFLite", "dynamic-range TFLite", "full-int8 TFLite")
DEFAULT_PLOT = ROOT / "benchmarks" / "accuracy_snr.png"


def snr_name(snr: float | None) -> str:
    return "clean" if snr is None else f"{snr:g} dB"


def validation_speakers(contract) -> tuple[list[str], str]:
    """The validation speakers recorded in the contract's training_data, and where they were found."""
    td = contract.training_data or {}

    def speakers_in(value):
        if isinstance(value, dict):
            value = value.get("speakers")
        return [str(s) for s in value] if isinstance(value, list) and value else None

    split = td.get("split") if isinstance(td.get("split"), dict) else {}
    for where, value in (
        ("training_data.split.validation", split.get("validation")),
        ("training_data.validation", td.get("validation")),
        ("training_data.validation_speakers", td.get("validation_speakers")),
    ):
        speakers = speakers_in(value)
        if speakers:
            return speakers, where
    from training.split import Split

    return list(Split().validation), "training.split.Split() defaults (the contract names none)"


# ---------------------------------------------------------------- noise


class CarNoise:
    """In-car noise clips and the per-clip segment each validation clip is mixed with."""

    def __init__(self, folder: Path) -> None:
        from edge.audio import read_audio
        from training.augment import write_car_noise

        self.clips = [read_audio(p)[0].astype(np.float64) for p in write_car_noise(folder, count=NOISE_CLIPS, seed=NOISE_SEED)]

    def segment(self, key: str, n: int) -> np.ndarray:
        """``n`` samples of one noise clip from a seeded offset, repeated if the speech is longer."""
        seed = int.from_bytes(hashlib.sha256(f"{NOISE_SEED}:{key}".encode()).digest()[:4], "little")
        rng = np.random.default_rng(seed)
        clip = self.clips[rng.integers(len(self.clips))]
        start = int(rng.integers(clip.size))
        return np.resize(np.roll(clip, -start), n)  # np.resize repeats the clip


def active_speech_power(audio16k: np.ndarray, speech_flags: np.ndarray, frontend) -> float:
    """Mean square of the samples inside frames the speech detector marks (the whole clip if none)."""
    s = frontend.settings
    mask = np.zeros(audio16k.size, dtype=bool)
    for i in np.flatnonzero(speech_flags):
        mask[i * s.hop_samples : i * s.hop_samples + s.win_samples] = True
    chosen = audio16k[mask] if mask.any() else audio16k
    return float(np.mean(chosen.astype(np.float64) ** 2))


def mix(audio16k: np.ndarray, noise: np.ndarray, speech_power: float, snr_db: float) -> np.ndarray:
    noise_power = float(np.mean(noise**2))
    gain = np.sqrt(speech_power / (noise_power * 10 ** (snr_db / 10)))
    return np.clip(audio16k + gain * noise, -1.0, 1.0).astype(np.float32)  # a recording saturates at full scale


# ---------------------------------------------------------------- features per condition


def condition_features(clips, contract, snrs, noise: CarNoise):
    """{snr: [ClipFeatures]} through the device's frontend and speech detector (training.features.frames_of)."""
    from edge.frontend import Frontend
    from edge.speech import SpeechSettings
    from training.features import ClipFeatures, clip_audio16k, frames_of

    frontend, speech = Frontend(contract.frontend), SpeechSettings()
    out = {snr: [] for snr in snrs}
    for k, clip in enumerate(clips):
        audio = clip_audio16k(clip.path)
        mfcc, flags = frames_of(audio, frontend, speech)
        power = active_speech_power(audio, flags, frontend)
        segment = noise.segment(clip.path, audio.size) if any(s is not None for s in snrs) else None
        for snr in snrs:
            if snr is None:
                out[snr].append(ClipFeatures(clip, 0, mfcc, flags))
            else:
                out[snr].append(ClipFeatures(clip, 0, *frames_of(mix(audio, segment, power, snr), frontend, speech)))
        if (k + 1) % 200 == 0:
            log.info("features: %d of %d clips", k + 1, len(clips))
    return out


# ---------------------------------------------------------------- the four forms of the model


def predictors(int8: Path, keras_path: Path) -> tuple[dict, dict, dict]:
    """{variant: predict(windows) -> probs in the contract's label order}, {variant: file size in bytes} and {variant: file}."""
    import keras

    from edge.model import Model

    contract = read_contract(int8)
    float_path, dynamic_path = tflite_twin(int8, keras_path, "float32"), tflite_twin(int8, keras_path, "dynamic")
    net = keras.models.load_model(keras_path, compile=False)
    shape = tuple(int(d) for d in net.input_shape[1:])

    def keras_predict(windows: np.ndarray) -> np.ndarray:
        x = contract.normalization.apply(windows).reshape((-1, *shape))
        if not len(x):
            return np.zeros((0, len(contract.labels)), dtype=np.float32)
        return net.predict(x, batch_size=512, verbose=0)

    models = {
        "float32 TFLite": Model(float_path, threads=1),
        "dynamic-range TFLite": Model(dynamic_path, threads=1),
        "full-int8 TFLite": Model(int8, threads=1),
    }
    predict = {"float Keras": keras_predict, **{name: m.predict for name, m in models.items()}}
    sizes = {"float Keras": keras_path.stat().st_size, **{name: m.path.stat().st_size for name, m in models.items()}}
    paths = {"float Keras": keras_path, **{name: m.path for name, m in models.items()}}
    return predict, sizes, paths


# ---------------------------------------------------------------- report


def plot(results: dict, snrs, path: Path, title: str, n_labels: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = sorted(snrs, key=lambda s: float("inf") if s is None else s)  # 0 dB ... clean, left to right
    x = np.arange(len(order))
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=110)
    styles = {"float Keras": "-o", "float32 TFLite": "--s", "dynamic-range TFLite": "-.^", "full-int8 TFLite": "-D"}
    for variant in VARIANTS:
        ys = [100 * results[(variant, s)]["all"]["wa"] for s in order]
        ax.plot(x, ys, styles[variant], label=variant, linewidth=1.6, markersize=5, alpha=0.9)
    ua = [100 * results[("full-int8 TFLite", s)]["all"]["ua"] for s in order]
    ax.plot(x, ua, ":", color="black", label="full-int8 TFLite, UAR")
    corpora = [c for c in results[("full-int8 TFLite", order[0])] if c not in ("all", "mean")]
    for corpus, colour in zip(corpora, ("#7b3294", "#008837", "#a6611a", "#5e3c99"), strict=False):
        ys = [100 * results[("full-int8 TFLite", s)][corpus]["wa"] for s in order]
        ax.plot(x, ys, "-", color=colour, linewidth=0.9, alpha=0.55, label=f"full-int8, {corpus} only")
    ax.axhline(100 / n_labels, color="black", linewidth=0.8, alpha=0.5)
    ax.annotate(
        f"chance, {n_labels} labels", (x[-1], 100 / n_labels), textcoords="offset points", xytext=(0, 3), ha="right", fontsize=7, alpha=0.7
    )
    ax.set_xticks(x, [snr_name(s) for s in order])
    ax.set_xlabel("signal-to-noise ratio on active speech (in-car noise: engine hum + road rumble)")
    ax.set_ylabel("accuracy on validation clips (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7, loc="upper left", ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.accuracy",
        description="Float Keras vs float, dynamic-range and int8 TFLite on the validation speakers, clean and in car noise.",
        epilog="examples:\n  python -m benchmarks.accuracy --quick\n  python -m benchmarks.accuracy --markdown cache/bench/accuracy.md\n\n"
        "Needs TensorFlow (desk only) to convert the float and dynamic-range twins from models/ser_cnn.keras.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", metavar="PATH", help="full-int8 .tflite with its .json (default: the shipped model)")
    p.add_argument("--keras", metavar="PATH", help="its float Keras model (default: models/ser_cnn.keras)")
    p.add_argument("--data", default=str(DEFAULT_DATA), metavar="DIR", help="corpora folder (default: ../shared/data)")
    p.add_argument(
        "--max-clips", type=above_zero(), metavar="N", help="use at most N validation clips, picked with a fixed seed (default: all)"
    )
    p.add_argument(
        "--plot",
        default=str(DEFAULT_PLOT),
        metavar="PNG",
        help=f"where to draw accuracy against SNR (default: {DEFAULT_PLOT.relative_to(ROOT)})",
    )
    p.add_argument("--quick", action="store_true", help="48 clips and the plot in cache/bench/: a check that it works")
    p.add_argument("--markdown", metavar="PATH", help="also write the tables to this file")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if args.quick:
        args.max_clips = args.max_clips or 48
        if args.plot == str(DEFAULT_PLOT):
            args.plot = str(CACHE / "accuracy_snr_quick.png")  # a quick run never overwrites the committed plot
    try:
        return run(args)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def run(args) -> int:
    from training.corpora import corpus_labels, label_order, load_data
    from training.metrics import evaluate_clips
    from training.windows import window_set

    env = environment()
    int8, keras_path = resolve_model(args.model), resolve_keras(args.keras)
    contract = read_contract(int8)
    speakers, where = validation_speakers(contract)
    every = load_data(check_data(args.data))
    per_corpus = {**corpus_labels(every), **{k: tuple(v) for k, v in contract.training_data.get("corpus_labels", {}).items()}}
    clips = [c for c in every if c.speaker in speakers and c.label in contract.labels]
    if not clips:
        raise BenchError(f"none of the validation speakers ({', '.join(speakers)}) is in {args.data}")
    if args.max_clips and len(clips) > args.max_clips:
        pick = np.random.default_rng(0).permutation(len(clips))[: args.max_clips]
        clips = [clips[i] for i in sorted(pick)]
    log.info("%d validation clips of %s", len(clips), ", ".join(speakers))

    t0 = time.monotonic()
    predict, sizes, paths = predictors(int8, keras_path)
    features = condition_features(clips, contract, SNRS_DB, CarNoise(CACHE / "car_noise_eval"))
    results, top1, gate = {}, {}, {}
    for snr in SNRS_DB:
        ws = window_set(features[snr], contract.frontend, contract.window_s, contract.hop_s, contract.labels, contract.speech)
        gate[snr] = ws.speech
        for variant in VARIANTS:
            per_clip, scores = evaluate_clips(predict[variant], ws, contract.labels, per_corpus)
            results[(variant, snr)] = scores
            top1[(variant, snr)] = per_clip.argmax(axis=1)
        log.info("%s: %s", snr_name(snr), ", ".join(f"{v} {results[(v, snr)]['all']['wa']:.3f}" for v in VARIANTS))
    elapsed = time.monotonic() - t0

    def agreement(variant, snr) -> float:
        return float(np.mean(top1[(variant, snr)] == top1[("float Keras", snr)]))

    rows = []
    for variant in VARIANTS:
        s = results[(variant, None)]["all"]
        rel = paths[variant].relative_to(ROOT) if paths[variant].is_relative_to(ROOT) else paths[variant]
        rows.append(
            [
                variant,
                f"`{rel}`",
                sizes[variant],
                f"{100 * s['wa']:.1f} %",
                f"{100 * s['ua']:.1f} %",
                f"{100 * agreement(variant, None):.1f} %",
            ]
        )
    main_table = markdown_table(
        ["model", "file", "size bytes", "accuracy", "unweighted average recall", "top-1 agreement with float Keras"], rows
    )

    corpora = [k for k in results[("float Keras", None)] if k not in ("all", "mean")]
    corpus_rows = [
        [variant, *[f"{100 * results[(variant, None)][c]['wa']:.1f} / {100 * results[(variant, None)][c]['ua']:.1f}" for c in corpora]]
        for variant in VARIANTS
    ]
    corpus_table = markdown_table(
        ["model", *[f"{c} ({results[('float Keras', None)][c]['clips']} clips) acc / UAR %" for c in corpora]], corpus_rows
    )

    snr_rows = [
        [variant, *[f"{100 * results[(variant, s)]['all']['wa']:.1f} ({100 * results[(variant, s)]['all']['ua']:.1f})" for s in SNRS_DB]]
        for variant in VARIANTS
    ]
    snr_rows.append(["int8 top-1 agreement with float Keras", *[f"{100 * agreement('full-int8 TFLite', s):.1f}" for s in SNRS_DB]])
    snr_table = markdown_table(["model", *[snr_name(s) for s in SNRS_DB]], snr_rows)
    int8_rows = [
        [
            f"{c} ({results[('full-int8 TFLite', None)][c]['clips']} clips)",
            *[
                f"{100 * results[('full-int8 TFLite', s)][c]['wa']:.1f} ({100 * results[('full-int8 TFLite', s)][c]['ua']:.1f})"
                for s in SNRS_DB
            ],
        ]
        for c in corpora
    ]
    corpus_snr_table = markdown_table(["corpus (full-int8 TFLite)", *[snr_name(s) for s in SNRS_DB]], int8_rows)
    # The speech gate against noise: of the windows it passes in the clean clips, the share it still passes in noise.
    clean = gate[None]
    gate_row = [f"{100 * np.mean(gate[s][clean]):.1f} %" if clean.any() else "-" for s in SNRS_DB]
    gate_table = markdown_table(
        [f"speech gate ({contract.speech.detector})", *[snr_name(s) for s in SNRS_DB]],
        [
            ["windows passed, of those passed clean", *gate_row],
            ["windows passed, of all", *[f"{100 * np.mean(gate[s]):.1f} %" for s in SNRS_DB]],
        ],
    )

    plot_path = Path(args.plot)
    title = f"{int8.stem}: accuracy in car noise, {len(clips)} clips of {len(speakers)} validation speakers"
    plot(results, SNRS_DB, plot_path, title, len(contract.labels))

    int8_size, float_size = sizes["full-int8 TFLite"], sizes["float32 TFLite"]
    drop = 100 * (results[("float Keras", None)]["all"]["wa"] - results[("full-int8 TFLite", None)]["all"]["wa"])
    labels_present = label_order(c.label for c in clips)
    lines = [
        "## Accuracy",
        "",
        environment_markdown(env, command_line()),
        "",
        f"Models: `{int8.relative_to(ROOT) if int8.is_relative_to(ROOT) else int8}` and the float Keras model "
        f"`{keras_path.relative_to(ROOT) if keras_path.is_relative_to(ROOT) else keras_path}` it was converted from; "
        f"the float32 and dynamic-range twins are converted here from the Keras model. Validation speakers (from {where}): "
        f"{', '.join(speakers)}; {len(clips)} clips, labels {', '.join(labels_present)}. Clip verdict = mean of the speech "
        f"windows' probabilities ({contract.window_s} s windows every {contract.hop_s} s), as on the device. Took {elapsed:.0f} s.",
        "",
        main_table,
        "",
        f"int8 file / float32 TFLite file = 1 / {float_size / int8_size:.3f}; int8 accuracy {drop:.1f} points below float Keras"
        if drop >= 0
        else f"int8 file / float32 TFLite file = 1 / {float_size / int8_size:.3f}; int8 accuracy {-drop:.1f} points above float Keras",
        "",
        "Per corpus (clean):",
        "",
        corpus_table,
        "",
        "### Accuracy against signal-to-noise ratio (in-car noise)",
        "",
        "Accuracy % (unweighted average recall % in brackets) on the same clips with engine hum and road rumble added at each SNR "
        f"(noise seed {NOISE_SEED}; training's augmentation used other clips of the same generator).",
        "",
        snr_table,
        "",
        "The int8 model per corpus (pooled rows weigh each corpus by its clips; TESS's YAF has the most):",
        "",
        corpus_snr_table,
        "",
        "The speech gate in the same noise: the share of windows it still passes (a clip's verdict averages only those):",
        "",
        gate_table,
        "",
        f"![accuracy against SNR]({plot_path.name})" if plot_path.parent == DEFAULT_PLOT.parent else f"Plot: `{plot_path}`",
    ]
    text = "\n".join(lines)
    print(text)
    write_text(args.markdown, text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
