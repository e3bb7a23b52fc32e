"""The streaming resampler against scipy.signal.resample_poly, and chunking invariance."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.resample import MAX_PHASES, Resampler, ratio, resample

RATES = [8000, 11025, 22050, 24000, 24414, 32000, 44100, 48000, 96000]
MIN_SNR_DB = 50.0


def passband_snr_db(reference: np.ndarray, ours: np.ndarray, rate: int, passband_hz: float) -> float:
    """SNR of ours against reference, counting only spectrum below passband_hz."""
    spectrum_ref = np.fft.rfft(reference)
    spectrum_err = np.fft.rfft(ours - reference)
    keep = np.fft.rfftfreq(reference.size, 1 / rate) < passband_hz
    return 10 * np.log10(np.sum(np.abs(spectrum_ref[keep]) ** 2) / max(np.sum(np.abs(spectrum_err[keep]) ** 2), 1e-300))


@pytest.mark.parametrize("rate", RATES)
def test_sines_match_scipy(rate):
    from scipy.signal import resample_poly  # the desk's reference; the other tests here run on the device

    t = np.arange(int(rate * 1.5)) / rate
    signal = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 3100 * t) + 0.1 * np.sin(2 * np.pi * 6900 * t)
    up, down = ratio(rate, 16000)
    reference = resample_poly(signal, up, down)
    ours = resample(signal, rate)
    assert ours.shape == reference.shape
    assert passband_snr_db(reference, ours, 16000, 7200) >= MIN_SNR_DB


@pytest.mark.parametrize(
    ("clip", "rate", "target"),
    [
        ("tess/OAF_angry/OAF_back_angry.flac", 24414, 16000),
        ("tess/YAF_sad/YAF_bath_sad.flac", 24414, 16000),
        ("ravdess/Actor_03/03-01-03-02-01-01-03.flac", 16000, 8000),
    ],
)
def test_real_speech_matches_scipy(data_dir, clip, rate, target):
    from scipy.signal import resample_poly

    signal, found = sf.read(data_dir / clip, dtype="float64")
    assert found == rate
    up, down = ratio(rate, target)
    assert passband_snr_db(resample_poly(signal, up, down), resample(signal, rate, target), target, 0.45 * target) >= MIN_SNR_DB


def test_real_44k1_speech_matches_scipy(data_dir):
    from scipy.signal import resample_poly

    # No 44.1 kHz file in the corpora here: bring RAVDESS up to 44.1 kHz with scipy, then down with ours.
    signal, _ = sf.read(data_dir / "ravdess/Actor_05/03-01-06-02-02-01-05.flac", dtype="float64")
    high = resample_poly(signal, 441, 160)
    assert passband_snr_db(resample_poly(high, 160, 441), resample(high, 44100), 16000, 7200) >= MIN_SNR_DB


@settings(max_examples=30, deadline=None)
@given(
    rate=st.sampled_from(RATES),
    chunks=st.lists(st.integers(min_value=1, max_value=9000), min_size=1, max_size=20),
    seed=st.integers(0, 2**16),
)
def test_any_chunking_gives_the_whole_signal_output(rate, chunks, seed):
    signal = np.random.default_rng(seed).standard_normal(sum(chunks))
    whole = resample(signal, rate)
    r = Resampler(rate)
    parts, start = [], 0
    for n in chunks:
        parts.append(r.process(signal[start : start + n]))
        start += n
    parts.append(r.flush())
    np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_reset_starts_a_new_stream():
    signal = np.random.default_rng(3).standard_normal(5000)
    r = Resampler(44100)
    first = np.concatenate((r.process(signal), r.flush()))
    r.reset()
    np.testing.assert_array_equal(np.concatenate((r.process(signal), r.flush())), first)


def test_16k_passes_through_untouched():
    signal = np.random.default_rng(4).standard_normal(1000)
    np.testing.assert_array_equal(resample(signal, 16000), signal)


def test_bad_rates_are_refused():
    with pytest.raises(ValueError, match="positive"):
        Resampler(0)


@pytest.mark.parametrize("rate", [44099, 199999, 7001])
def test_odd_rates_get_a_bounded_filter_and_a_near_exact_ratio(rate):
    up, down = ratio(rate, 16000)
    assert max(up, down) <= MAX_PHASES  # the exact ratio would need millions of taps
    assert abs(rate * up / down / 16000 - 1) < 1e-5
    x = np.sin(2 * np.pi * 440 * np.arange(rate) / rate).astype(np.float32)
    resampler = Resampler(rate)
    y = np.concatenate((resampler.process(x), resampler.flush()))
    assert abs(y.size - 16000) <= 2
    spectrum = np.abs(np.fft.rfft(y[:16000]))
    assert abs(int(np.argmax(spectrum)) - 440) <= 1  # the tone is still at 440 Hz


@pytest.mark.parametrize("rate", [8000, 24000, 32000, 48000, 96000])
def test_strided_fast_path_gives_the_gather_paths_samples(rate, monkeypatch):
    import edge.resample as resample_module

    signal = np.random.default_rng(rate).standard_normal(rate // 2 + 17)
    fast = resample(signal, rate)
    monkeypatch.setattr(resample_module, "_STRIDED_MAX_UP", 0)  # every rate through the general gather
    general = resample(signal, rate)
    np.testing.assert_allclose(fast, general, rtol=0, atol=1e-12)
