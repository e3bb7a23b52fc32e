"""The numpy frontend against python_speech_features, and streaming against batch."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.frontend import Frontend, FrontendSettings, StreamingFrontend, dct_matrix, mel_filterbank

CLIPS = [
    "ravdess/Actor_01/03-01-05-02-01-01-01.flac",  # angry, male
    "ravdess/Actor_02/03-01-04-01-02-02-02.flac",  # sad, female
    "savee/JK_sa05.flac",
]

# psf's defaults where they have an equal here, with a Hamming window (psf defaults to none)
# and psf's own log floor (float eps) so that digital silence maps to the same value.
PSF_EQUIVALENTS = [
    pytest.param(FrontendSettings(n_mels=26, n_ceps=13, lifter=22, append_energy=True, log_floor=np.finfo(float).eps), id="psf-defaults"),
    pytest.param(FrontendSettings(n_mels=40, n_ceps=40, log_floor=np.finfo(float).eps), id="40-mel-40-ceps"),
    pytest.param(
        FrontendSettings(n_mels=40, n_ceps=20, low_hz=60, high_hz=7600, window="hann", log_floor=np.finfo(float).eps),
        id="band-limited-hann",
    ),
]


def psf_mfcc(signal: np.ndarray, s: FrontendSettings) -> np.ndarray:
    from python_speech_features import mfcc

    window = {"hamming": np.hamming, "hann": np.hanning, "rectangular": np.ones}[s.window]
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
        winfunc=window,
    )


@pytest.mark.parametrize("settings_", PSF_EQUIVALENTS)
@pytest.mark.parametrize("clip", CLIPS)
def test_matches_python_speech_features_on_real_speech(data_dir, clip, settings_):
    signal, rate = sf.read(data_dir / clip, dtype="float64")
    assert rate == 16000
    ours = Frontend(settings_)(signal)
    reference = psf_mfcc(signal, settings_)
    # psf zero-pads a last partial frame; the complete frames must agree.
    assert ours.shape[0] == settings_.frames_for(signal.size) and reference.shape[0] - ours.shape[0] <= 1
    # Relative to each value itself, with no floor: the two agree to float32 rounding (~6e-8).
    np.testing.assert_allclose(ours, reference[: ours.shape[0]], rtol=1e-3, atol=0)


def test_filterbank_and_dct_match_psf_and_scipy():
    from python_speech_features.base import get_filterbanks
    from scipy.fftpack import dct

    s = FrontendSettings(n_mels=26, n_ceps=13, low_hz=100, high_hz=7000)
    np.testing.assert_allclose(mel_filterbank(s), get_filterbanks(26, 512, 16000, 100, 7000), atol=1e-12)
    x = np.random.default_rng(0).standard_normal((5, 26))
    np.testing.assert_allclose(x @ dct_matrix(26, 13), dct(x, type=2, axis=1, norm="ortho")[:, :13], atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    # from single samples to 5 s chunks (80,000 samples), mixed in one stream
    chunks=st.lists(st.one_of(st.integers(1, 400), st.integers(1, 80000)), min_size=1, max_size=20),
    seed=st.integers(0, 2**16),
)
def test_any_chunking_gives_the_batch_frames(chunks, seed):
    rng = np.random.default_rng(seed)
    signal = rng.standard_normal(sum(chunks)) * 0.1
    batch, batch_energy = Frontend().features(signal)
    stream = StreamingFrontend()
    parts, energies, start = [], [], 0
    for n in chunks:
        mfcc, energy = stream.process(signal[start : start + n])
        parts.append(mfcc)
        energies.append(energy)
        start += n
    streamed = np.concatenate(parts)
    assert streamed.shape == batch.shape
    np.testing.assert_array_equal(streamed, batch)
    np.testing.assert_array_equal(np.concatenate(energies), batch_energy)
    assert stream.frames_emitted == batch.shape[0] and stream.samples_seen == signal.size


def test_single_samples_and_reset(data_dir):
    signal, _ = sf.read(data_dir / CLIPS[0], dtype="float32")
    signal = signal[:4000]
    stream = StreamingFrontend()
    first = np.concatenate([stream.process(signal[i : i + 1])[0] for i in range(signal.size)])
    stream.reset()
    again = stream.process(signal)[0]
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(again, Frontend()(signal))


def test_int16_input_is_scaled_to_full_scale():
    rng = np.random.default_rng(1)
    pcm = (rng.standard_normal(8000) * 3000).astype(np.int16)
    np.testing.assert_allclose(Frontend()(pcm), Frontend()(pcm / 32768.0), rtol=1e-6, atol=1e-5)


def test_digital_silence_is_finite_at_the_log_floor():
    out = Frontend()(np.zeros(1600))
    assert np.all(np.isfinite(out))


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"window": "blackman"}, "window must be one of"),
        ({"n_ceps": 50, "n_mels": 40}, "n_ceps must be between"),
        ({"high_hz": 9000}, "high_hz"),
        ({"win_ms": 40, "n_fft": 512}, "does not fit n_fft"),
        ({"preemph": 1.2}, "preemph"),
    ],
)
def test_bad_settings_are_refused_with_a_reason(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        FrontendSettings(**kwargs)


def test_settings_round_trip_through_a_dict():
    s = FrontendSettings(n_mels=32, n_ceps=20, high_hz=7600.0)
    assert FrontendSettings.from_dict(s.to_dict()) == s
    with pytest.raises(ValueError, match="unknown frontend settings: colour"):
        FrontendSettings.from_dict({**s.to_dict(), "colour": 1})


def test_short_signals_give_no_frames():
    assert Frontend()(np.zeros(399)).shape == (0, 40)
    assert Frontend()(np.zeros(400)).shape == (1, 40)
