"""Voice profiles: statistics of a person's speech frames, and the normalisation against them."""

from __future__ import annotations

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
