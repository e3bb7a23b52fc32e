"""The streaming classifier: any chunking, sample-counter times, speech gating, clips and reset."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tiny_model import EMOTIONS

from edge.audio import AudioError
from edge.classifier import StreamingClassifier, clip_windows, make_windows
from edge.model import Model
from edge.resample import resample

ANGRY = "ravdess/Actor_07/03-01-05-02-01-01-07.flac"
TESS = "tess/YAF_fear/YAF_back_fear.flac"  # 24,414 Hz


@pytest.fixture(scope="module")
def classifier(tiny_model_path):
    return StreamingClassifier(Model(tiny_model_path))


@pytest.fixture(scope="module")
def angry(data_dir):
    return sf.read(data_dir / ANGRY, dtype="float32")


def stream(classifier, signal, rate, sizes):
    classifier.reset()
    out, start, i = [], 0, 0
    while start < signal.size:
        n = sizes[i % len(sizes)]
        out += classifier.process(signal[start : start + n], rate)
        start += n
        i += 1
    return out + classifier.flush()


@pytest.mark.parametrize("sizes", [[1], [37], [4096], [160000], [5, 3000, 17, 999]])
def test_chunk_size_does_not_change_results(classifier, angry, sizes):
    signal, rate = angry
    signal = signal[: rate * 2] if sizes == [1] else signal  # one sample at a time is slow in Python
    reference = stream(classifier, signal, rate, [signal.size])
    got = stream(classifier, signal, rate, sizes)
    assert [(r.start_s, r.end_s, r.speech) for r in got] == [(r.start_s, r.end_s, r.speech) for r in reference]
    np.testing.assert_array_equal(np.stack([r.probs for r in got]), np.stack([r.probs for r in reference]))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.integers(1, 30000), min_size=1, max_size=8))
def test_any_chunking_of_a_24k_clip(classifier, data_dir, sizes):
    signal, rate = sf.read(data_dir / TESS, dtype="float32")
    reference = stream(classifier, signal, rate, [signal.size])
    got = stream(classifier, signal, rate, sizes)
    np.testing.assert_array_equal(np.stack([r.probs for r in got]), np.stack([r.probs for r in reference]))


def test_times_come_from_the_sample_counter(classifier, angry):
    signal, rate = angry
    results = stream(classifier, signal, rate, [1000])
    c = classifier.model.contract
    hop, span = c.hop_s, (c.window_frames - 1) * c.frontend.hop_ms / 1000 + c.frontend.win_ms / 1000
    for i, r in enumerate(results):
        assert r.start_s == pytest.approx(i * hop)
        assert r.end_s == pytest.approx(i * hop + span)
    assert results[-1].end_s <= signal.size / rate
    assert len(results) == 1 + int((signal.size / rate - span) // hop)


def test_int16_and_float_chunks_agree(classifier, angry):
    signal, rate = angry
    pcm = np.round(signal * 32767).astype(np.int16)
    as_float = stream(classifier, pcm.astype(np.float32) / 32768.0, rate, [800])
    as_int = stream(classifier, pcm, rate, [800])
    np.testing.assert_array_equal(np.stack([r.probs for r in as_int]), np.stack([r.probs for r in as_float]))


def test_streaming_matches_the_batch_twin(classifier, data_dir):
    signal, rate = sf.read(data_dir / TESS, dtype="float32")
    c = classifier.model.contract
    windows, ratios = clip_windows(resample(signal, rate), c.frontend, c.window_s, c.hop_s)
    results = stream(classifier, signal, rate, [2048])
    assert len(results) == windows.shape[0]
    np.testing.assert_array_equal(np.stack([r.probs for r in results]), classifier.model.predict(windows))
    np.testing.assert_allclose([r.speech_ratio for r in results], ratios, atol=1e-6)


def test_silence_and_noise_are_not_speech(classifier, angry):
    rng = np.random.default_rng(0)
    quiet = (rng.standard_normal(16000 * 3) * 10 ** (-70 / 20)).astype(np.float32)  # -70 dBFS hiss
    assert not any(r.speech for r in stream(classifier, quiet, 16000, [1600]))
    # Steady noise well above the absolute threshold: learnt as the floor, so speech over it still counts.
    hum = (0.05 * np.sin(2 * np.pi * 120 * np.arange(16000 * 8) / 16000)).astype(np.float32)
    hum_results = stream(classifier, hum, 16000, [1600])
    assert not any(r.speech for r in hum_results[6:])
    signal, rate = angry
    with_speech = np.concatenate((hum, hum[: signal.size] + signal))
    assert any(r.speech for r in stream(classifier, with_speech, rate, [1600])[-4:])


def test_speech_windows_found_in_real_speech(classifier, angry):
    results = stream(classifier, *angry, [4000])
    flags = [r.speech for r in results]
    assert any(flags) and not flags[0], "RAVDESS clips open with silence, then speech"


def test_reset_clears_everything(classifier, angry):
    signal, rate = angry
    first = stream(classifier, signal, rate, [3000])
    classifier.process(np.ones(5000, np.float32) * 0.3, rate)
    classifier.reset()
    assert classifier.seconds_seen == 0 and classifier.sample_rate_hz is None
    again = stream(classifier, signal, rate, [3000])
    np.testing.assert_array_equal(np.stack([r.probs for r in again]), np.stack([r.probs for r in first]))


def test_rate_cannot_change_mid_stream(classifier):
    classifier.reset()
    classifier.process(np.zeros(100, np.float32), 16000)
    with pytest.raises(ValueError, match="cannot change to 48000 Hz"):
        classifier.process(np.zeros(100, np.float32), 48000)
    classifier.reset()


def test_bad_chunks_are_refused(classifier):
    with pytest.raises(TypeError, match="int16 or float32"):
        classifier.process(np.zeros(10, np.int32), 16000)
    with pytest.raises(ValueError, match="mono"):
        classifier.process(np.zeros((10, 2), np.float32), 16000)
    classifier.reset()


def test_clip_averages_its_speech_windows(classifier, angry):
    result = classifier.classify_clip(*angry)
    speech = [w for w in result.windows if w.speech]
    assert result.speech and speech
    np.testing.assert_allclose(result.probs, np.mean([w.probs for w in speech], axis=0))
    assert result.label == EMOTIONS[int(np.argmax(result.probs))]
    assert result.duration_s == pytest.approx(angry[0].size / angry[1])
    d = result.to_dict("x.wav")
    assert list(d) == ["path", "label", "probs", "duration_s", "speech"] and list(d["probs"]) == list(EMOTIONS)


def test_a_clip_shorter_than_a_window_is_padded_like_training(classifier, angry):
    signal, rate = angry
    c = classifier.model.contract
    short = signal[int(1.2 * rate) : int(1.2 * rate) + int(0.6 * c.window_s * rate)]
    result = classifier.classify_clip(short, rate)
    assert len(result.windows) == 1
    windows, _ = clip_windows(short, c.frontend, c.window_s, c.hop_s)
    np.testing.assert_array_equal(result.probs, classifier.model.predict(windows)[0])
    for samples in (100, int(0.49 * rate)):
        with pytest.raises(
            AudioError, match=rf"^bit\.wav: the clip lasts {samples / rate * 1000:.0f} ms; at least 0\.5 s of audio is needed"
        ):
            classifier.classify_clip(signal[int(1.2 * rate) : int(1.2 * rate) + samples], rate, "bit.wav")
    assert classifier.classify_clip(signal[int(1.2 * rate) : int(1.2 * rate) + int(0.5 * rate)], rate).windows


def test_make_windows_positions_and_padding():
    frames = np.arange(10, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)
    w = make_windows(frames, 4, 3)
    assert w.shape == (3, 4, 2) and w[1, 0, 0] == 3 and w[2, -1, 0] == 9
    padded = make_windows(frames[:3], 5, 2)
    assert padded.shape == (1, 5, 2) and list(padded[0, :, 0]) == [0, 1, 2, 0, 1]
    assert make_windows(frames[:3], 5, 2, pad=False).shape == (0, 5, 2)
