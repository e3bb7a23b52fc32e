"""The device's numpy MFCC frontend against python_speech_features and librosa, at equal settings.

All three get the same real speech and the same settings (the shipped model's frontend,
with psf's log floor so that digital silence maps to the same value). For each: the time
per second of audio (median over --repeats runs), once with the whole signal in one call and
once with one call per second of audio, and the largest difference of its MFCC from the
device's, frame by frame.

Equal settings for librosa take three steps that librosa does not do by itself, each the
documented way to get psf's numbers: pre-emphasis with a zero initial state, the signal
shifted by (n_fft - win) / 2 samples because librosa centres a short window inside the FFT
frame, and psf's sine lifter and log-energy c0 applied after librosa's DCT (librosa's own
lifter counts from 1, psf's from 0). The mel filterbank stays librosa's: it places filter
edges at exact frequencies where psf (and the device) round them down to FFT bins, which is
the one real difference left, and the table shows what it amounts to.

Run ``python -m benchmarks.frontend --help``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import (
    DEFAULT_DATA,
    ROOT,
    SHIPPED_MODEL,
    BenchError,
    above_zero,
    command_line,
    environment,
    environment_markdown,
    markdown_table,
    read_contract,
    speech_stream,
    version_of,
    write_text,
)
from edge.frontend import Frontend, FrontendSettings, StreamingFrontend, mel_filterbank

log = logging.getLogger("benchmarks.frontend")

WINDOW_FUNCTIONS = {"hamming": np.hamming, "hann": np.hanning, "rectangular": np.ones}
PSF_LOG_FLOOR = float(np.finfo(float).eps)  # psf replaces zero energies by float eps before the log
STREAM_CHUNK_S = 0.1  # the service's chunk
ONE_BLAS_THREAD = "edge Frontend (batch), BLAS on 1 thread"


def psf_mfcc(signal: np.ndarray, s: FrontendSettings) -> np.ndarray:
    from python_speech_features import mfcc

    return mfcc(
        signal,
        samplerate=s.sample_rate_hz,
        winlen=s.win_ms / 1000,
        winstep=s.hop_ms / 1000,
        numcep=s.n_ceps,
        nfilt=s.n_mels,
        nfft=s.n_fft,
        lowfreq=s.low_hz,
        highfreq=s.high_hz,
        preemph=s.preemph,
        ceplifter=s.lifter,
        appendEnergy=s.append_energy,
        winfunc=WINDOW_FUNCTIONS[s.window],
    )


class LibrosaMfcc:
    """librosa's STFT, mel filterbank (HTK mels, no area normalisation) and DCT, arranged to psf's conventions."""

    def __init__(self, s: FrontendSettings, filterbank: np.ndarray | None = None) -> None:
        import librosa

        self.s = s
        self.librosa = librosa
        high = s.sample_rate_hz / 2 if s.high_hz is None else s.high_hz
        # Built once, as the device's Frontend builds its filterbank once.
        if filterbank is None:
            filterbank = librosa.filters.mel(
                sr=s.sample_rate_hz, n_fft=s.n_fft, n_mels=s.n_mels, fmin=s.low_hz, fmax=high, htk=True, norm=None
            )
        self.mel = filterbank
        self.window = WINDOW_FUNCTIONS[s.window](s.win_samples)
        self.shift = (s.n_fft - s.win_samples) // 2  # librosa centres a short window in the n_fft frame
        n = np.arange(s.n_ceps)
        self.lift = 1.0 + (s.lifter / 2.0) * np.sin(np.pi * n / s.lifter) if s.lifter > 0 else None

    def __call__(self, signal: np.ndarray) -> np.ndarray:
        s, librosa = self.s, self.librosa
        y = librosa.effects.preemphasis(signal, coef=s.preemph, zi=0.0)
        y = np.concatenate((np.zeros(self.shift), y, np.zeros(s.n_fft)))
        spectrum = librosa.stft(y, n_fft=s.n_fft, hop_length=s.hop_samples, win_length=s.win_samples, window=self.window, center=False)
        power = np.abs(spectrum) ** 2 / s.n_fft
        log_mel = np.log(np.maximum(self.mel @ power, s.log_floor))
        ceps = librosa.feature.mfcc(S=log_mel, n_mfcc=s.n_ceps, dct_type=2, norm="ortho", lifter=0).T
        if self.lift is not None:
            ceps = ceps * self.lift
        if s.append_energy:
            ceps[:, 0] = np.log(np.maximum(power.sum(axis=0), s.log_floor))
        return ceps


def streaming(settings: FrontendSettings):
    frontend = Frontend(settings)  # filterbank and DCT built once, as the device does; each call is a new stream

    def run(signal: np.ndarray) -> np.ndarray:
        fe = StreamingFrontend(frontend=frontend)
        step = int(STREAM_CHUNK_S * settings.sample_rate_hz)
        return np.concatenate([fe.process(signal[i : i + step])[0] for i in range(0, signal.size, step)])

    return run


class OneBlasThread:
    """Hold numpy's BLAS to one thread (threadpoolctl) while timing: the batch frontend's two matrix products are
    large enough for OpenBLAS to go multi-threaded, which costs more than it gains on cores busy with other work.
    Used as a context around the timing loops, since entering the limit costs more than a second of audio."""

    def __enter__(self):
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            self.limits = None
        else:
            self.limits = threadpool_limits(limits=1, user_api="blas")
        return self

    def __exit__(self, *exc) -> None:
        if self.limits is not None:
            self.limits.restore_original_limits()


def time_it(fn, signal: np.ndarray, repeats: int) -> tuple[float, float, np.ndarray]:
    """Median and fastest seconds of ``repeats`` calls on the whole signal, and the output of the last."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn(signal)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), float(np.min(times)), np.asarray(out)


def time_per_second(fn, signal: np.ndarray, rate: int, repeats: int) -> float:
    """Median seconds to process the signal one second of audio per call."""
    slices = [signal[i : i + rate] for i in range(0, signal.size - rate + 1, rate)]
    totals = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for piece in slices:
            fn(piece)
        totals.append(time.perf_counter() - t0)
    return float(np.median(totals)) / len(slices)


def compare(ours: np.ndarray, other: np.ndarray) -> tuple[int, float, float]:
    """Frames compared, max |difference|, and max |difference| / max(|reference|, 1) as the frontend tests measure it."""
    n = min(ours.shape[0], other.shape[0])
    diff = np.abs(ours[:n].astype(np.float64) - other[:n])
    return n, float(diff.max()), float((diff / np.maximum(np.abs(other[:n]), 1.0)).max())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.frontend",
        description="The numpy MFCC frontend against python_speech_features and librosa: time per second of audio, largest difference.",
        epilog="examples:\n  python -m benchmarks.frontend --quick\n  python -m benchmarks.frontend --seconds 120 --markdown cache/bench/frontend.md",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", metavar="PATH", help="take the frontend settings from this model's JSON (default: the shipped model's)")
    p.add_argument("--data", default=str(DEFAULT_DATA), metavar="DIR", help="corpora folder (default: ../shared/data)")
    p.add_argument("--seconds", type=above_zero(float), default=60.0, metavar="S", help="seconds of real speech to process (default: 60)")
    p.add_argument("--repeats", type=above_zero(), default=7, metavar="N", help="runs per implementation; the median counts (default: 7)")
    p.add_argument("--quick", action="store_true", help="10 s of speech, 3 runs: a check that it works")
    p.add_argument("--markdown", metavar="PATH", help="also write the table to this file")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if args.quick:
        args.seconds, args.repeats = 10.0, 3
    try:
        return run(args)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def run(args) -> int:
    env = environment()
    model = args.model or (SHIPPED_MODEL if SHIPPED_MODEL.is_file() else None)
    base = read_contract(model if not str(model).endswith(".json") else model).frontend if model else FrontendSettings()
    shown = Path(model).resolve().relative_to(ROOT) if model and Path(model).resolve().is_relative_to(ROOT) else model
    source = f"the frontend of `{shown}`" if model else "FrontendSettings() defaults (no model found)"
    settings = dataclasses.replace(base, log_floor=PSF_LOG_FLOOR)
    audio, clips = speech_stream(args.data, args.seconds)
    signal = audio[: int(args.seconds * settings.sample_rate_hz)].astype(np.float64)
    seconds = signal.size / settings.sample_rate_hz

    implementations = [
        ("edge Frontend (numpy, batch)", Frontend(settings).mfcc, version_of("ser-edge")),
        (ONE_BLAS_THREAD, Frontend(settings).mfcc, version_of("ser-edge")),
        (f"edge StreamingFrontend ({STREAM_CHUNK_S * 1000:.0f} ms chunks)", streaming(settings), version_of("ser-edge")),
        ("python_speech_features mfcc", lambda x: psf_mfcc(x, settings), version_of("python_speech_features")),
        ("librosa (stft + mel + mfcc)", LibrosaMfcc(settings), version_of("librosa")),
        ("librosa with psf's bin-rounded filterbank", LibrosaMfcc(settings, mel_filterbank(settings)), version_of("librosa")),
    ]
    outputs, per_second, rows = {}, {}, []
    for name, fn, _ in implementations:
        log.info("timing %s", name)
        with OneBlasThread() if name == ONE_BLAS_THREAD else contextlib.nullcontext():
            fn(signal[: settings.sample_rate_hz])  # warm-up: imports, caches, FFT plans
            outputs[name] = time_it(fn, signal, args.repeats)
            per_second[name] = time_per_second(fn, signal, settings.sample_rate_hz, args.repeats)
    base_t, _, ours = outputs[implementations[0][0]]
    base_1s = per_second[implementations[0][0]]
    for name, _, version in implementations:
        t, fastest, out = outputs[name]
        frames, max_abs, max_rel = compare(ours, out)
        rows.append(
            [
                name,
                version,
                f"{1000 * t / seconds:.3f}",
                f"{1000 * fastest / seconds:.3f}",
                f"{t / base_t:.2f}x",
                f"{1000 * per_second[name]:.3f}",
                f"{per_second[name] / base_1s:.2f}x",
                frames,
                f"{max_abs:.2e}",
                f"{max_rel:.2e}",
            ]
        )

    headers = [
        "implementation",
        "version",
        "ms per s of audio (median)",
        "fastest run",
        "median vs edge batch",
        "ms per call on 1 s of audio (median)",
        "vs edge batch on 1 s",
        "frames compared",
        "max abs diff from edge",
        "max diff / max(abs ref, 1)",
    ]
    s = settings
    psf_t, stream_t = outputs[implementations[3][0]][0], outputs[implementations[2][0]][0]
    psf_1s, stream_1s = per_second[implementations[3][0]], per_second[implementations[2][0]]
    lines = [
        "## Frontend",
        "",
        environment_markdown(env, command_line()),
        "",
        f"Settings: {source}, with psf's log floor (float eps) so that silence maps alike: {s.sample_rate_hz} Hz, "
        f"{s.win_ms} ms {s.window} frames every {s.hop_ms} ms, n_fft {s.n_fft}, {s.n_mels} mels ({s.low_hz}-{s.high_hz or s.sample_rate_hz / 2} Hz), "
        f"{s.n_ceps} coefficients, pre-emphasis {s.preemph}, lifter {s.lifter}, energy as c0: {s.append_energy}. "
        f"Audio: {seconds:.0f} s of real speech ({clips} clips end to end), timed as the whole signal in one call and as "
        f"one call per second of audio (the streaming frontend fed that second in {STREAM_CHUNK_S * 1000:.0f} ms chunks); "
        f"median of {args.repeats} runs.",
        "",
        markdown_table(headers, rows),
        "",
        f"python_speech_features takes {psf_t / base_t:.1f}x the time of the edge batch frontend for the same output, "
        f"and {psf_t / stream_t:.1f}x the time of the streaming frontend the device runs (medians). "
        f"Called on one second of audio at a time, psf takes {psf_1s / base_1s:.1f}x the time of the batch frontend "
        f"and {psf_1s / stream_1s:.1f}x that of the streaming one (psf builds its filterbank on every call). "
        "librosa differs only by its mel filter edges (exact frequencies, not psf's rounded FFT bins): given psf's "
        "filterbank, its output matches too (last row).",
    ]
    text = "\n".join(lines)
    print(text)
    write_text(args.markdown, text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
