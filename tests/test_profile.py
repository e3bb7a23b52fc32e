"""Voice profiles: statistics of a person's speech frames, and the normalisation against them."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from edge.model import Normalization
from edge.profile import SpeechStats


def test_speech_stats_count_only_speech_frames_and_merge_in_any_order():
    rng = np.random.default_rng(0)
    frames = rng.normal(2.0, 3.0, (1000, 4))
    speech = rng.random(1000) < 0.6
    frames[~speech] = 100.0  # silence must not count
    whole = SpeechStats(4)
    whole.add(frames, speech)
    parts = SpeechStats(4)
    for start in range(0, 1000, 137):
        parts.add(frames[start : start + 137], speech[start : start + 137])
    np.testing.assert_allclose(whole.mean, frames[speech].mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(whole.std, frames[speech].std(axis=0), rtol=1e-9)
    np.testing.assert_allclose(parts.mean, whole.mean, rtol=1e-12)
    assert whole.count == speech.sum()
    whole.decay(0.5)
    assert whole.count == pytest.approx(speech.sum() / 2)
    np.testing.assert_allclose(whole.mean, frames[speech].mean(axis=0), rtol=1e-12)  # decay weighs, it does not move


def test_a_profile_replaces_the_population_statistics():
    w = np.random.default_rng(1).normal(5.0, 2.0, (3, 20, 4)).astype(np.float32)
    pop = Normalization("global", (0.0,) * 4, (1.0,) * 4)
    mine = pop.with_profile(np.full(4, 5.0), np.full(4, 2.0))
    assert mine.kind == "global" and mine.mean == (5.0,) * 4
    np.testing.assert_allclose(mine.apply(w), (w - 5.0) / (2.0 + mine.eps), rtol=1e-5)
    both = Normalization("both", (0.0,) * 4, (1.0,) * 4).with_profile(np.full(4, 5.0), np.full(4, 2.0))
    np.testing.assert_allclose(both.apply(w)[..., :4], mine.apply(w), rtol=1e-6)
    assert Normalization("window").with_profile(np.zeros(4), np.ones(4)) == Normalization("window")  # nothing to replace


def _contract(tiny_model_path):
    from edge.model import Model

    return Model(tiny_model_path).contract


def test_a_profile_round_trips_and_refuses_another_model(tiny_model_path, tmp_path, data_dir):
    import dataclasses
    import json

    from edge.audio import audio_blocks
    from edge.profile import ProfileError, VoiceProfile, enough_speech, measure_speech

    contract = _contract(tiny_model_path)
    stats = SpeechStats(contract.frontend.n_ceps)
    for clip in sorted((data_dir / "ravdess" / "Actor_03").glob("*.flac"))[:12]:
        measure_speech(audio_blocks(clip), contract, stats=stats)
    enough_speech(stats, contract, 10.0)
    with pytest.raises(ProfileError, match=r"only \d+\.\d s of speech were heard; a profile needs at least 600 s"):
        enough_speech(stats, contract, 600.0)
    profile = VoiceProfile.from_stats(stats, contract)
    profile.save(tmp_path / "anna.json")
    text = (tmp_path / "anna.json").read_text()
    assert len(text) < 4096 and "ser-edge-profile/1" in text  # a few kilobytes: statistics, no audio
    loaded = VoiceProfile.load(tmp_path / "anna.json", contract)
    assert loaded == profile and loaded.speech_s == pytest.approx(stats.count / 100, abs=0.01)
    other = dataclasses.replace(contract, sha256="0" * 64)
    with pytest.raises(ProfileError, match="anna.json: the profile belongs to another model"):
        VoiceProfile.load(tmp_path / "anna.json", other)
    data = json.loads(text)
    data["frontend"]["n_mels"] = 40
    (tmp_path / "other.json").write_text(json.dumps(data))
    with pytest.raises(ProfileError, match="other.json: the profile was made with another frontend"):
        VoiceProfile.load(tmp_path / "other.json", contract)
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(ProfileError, match="junk.json: not a readable profile"):
        VoiceProfile.load(tmp_path / "junk.json")
    fifo = tmp_path / "fifo"
    import os

    os.mkfifo(fifo)
    with pytest.raises(ProfileError, match="is not a regular file"):
        profile.save(fifo)


def test_adaptation_follows_a_level_shift_slowly_and_survives_a_restart(tiny_model_path, tmp_path):
    from edge.classifier import StreamingClassifier
    from edge.model import Model
    from edge.profile import Adaptation, VoiceProfile

    model = Model(tiny_model_path)
    rate = 16000
    rng = np.random.default_rng(3)
    t = np.arange(rate) / rate

    def voice(gain: float, seconds: int) -> np.ndarray:
        """A buzzy vowel-like tone with syllable pauses: speech to the gate, of a fixed colour."""
        out = []
        for _ in range(seconds):
            tone = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((140, 280, 420, 700, 1100), start=1))
            envelope = (np.sin(2 * np.pi * 4 * t) > -0.3).astype(float)
            out.append(gain * 0.1 * tone * envelope + 1e-4 * rng.standard_normal(rate))
        return np.concatenate(out).astype(np.float32)

    adapt = Adaptation(time_constant_s=60.0, prior_s=5.0)
    energy_gate = dataclasses.replace(model.contract.speech, detector="energy")  # the tone is speech to the energy gate, not to Silero
    classifier = StreamingClassifier(model, energy_gate, adapt=adapt)
    classifier.process(voice(1.0, 30), rate)
    quiet = classifier.current_profile()
    assert quiet.speech_s > 0 and quiet.updated
    c0_quiet = quiet.mean[0]
    classifier.process(voice(4.0, 10), rate)  # 12 dB louder for 10 s: the mean moves, but only part of the way
    c0_mid = classifier.current_profile().mean[0]
    classifier.process(voice(4.0, 300), rate)  # five time constants later it has become the usual level
    c0_loud = classifier.current_profile().mean[0]
    assert c0_quiet < c0_mid < c0_loud
    assert (c0_mid - c0_quiet) < 0.4 * (c0_loud - c0_quiet)
    saved = tmp_path / "me.json"
    classifier.current_profile().save(saved)
    # A restart: the adapted statistics come back from the file and go on from there.
    again = StreamingClassifier(model, profile=VoiceProfile.load(saved, model.contract), adapt=adapt)
    assert again.current_profile().mean == pytest.approx(classifier.current_profile().mean, abs=1e-5)
    assert again.current_profile().speech_s == pytest.approx(classifier.current_profile().speech_s, abs=0.01)


def test_the_classifier_normalises_against_the_profile_it_is_given(tiny_model_path, tmp_path):
    """A model normalised globally: with a profile its windows are standardised by the person's statistics instead."""
    import dataclasses
    import json

    from edge.classifier import StreamingClassifier
    from edge.model import Model, sha256_of
    from edge.profile import VoiceProfile

    n = 13
    folder = tmp_path / "global"
    folder.mkdir()
    for suffix in (".tflite", ".json"):
        (folder / f"g{suffix}").write_bytes(tiny_model_path.with_suffix(suffix).read_bytes())
    data = json.loads((folder / "g.json").read_text())
    data["normalization"] = {"kind": "global", "mean": [0.0] * n, "std": [1.0] * n}
    data["sha256"] = sha256_of(folder / "g.tflite")
    (folder / "g.json").write_text(json.dumps(data))
    model = Model(folder / "g.tflite")
    stats = SpeechStats(n, 100.0, np.full(n, 300.0), np.full(n, 100.0 * 13.0))  # mean 3, std 2
    profile = VoiceProfile.from_stats(stats, model.contract)
    classifier = StreamingClassifier(model, profile=profile)
    assert classifier.normalization.mean == (3.0,) * n and classifier.normalization.std == pytest.approx((2.0,) * n)
    window = np.full((1, model.contract.window_frames, n), 5.0, np.float32)
    np.testing.assert_allclose(
        model.predict(window, classifier.normalization), model.predict(np.ones_like(window)), atol=1e-6
    )  # (5 - 3) / 2 = 1
    with pytest.raises(ValueError, match="belongs to another model"):
        StreamingClassifier(model, profile=dataclasses.replace(profile, model_sha256="f" * 64))
