"""The decision policy alone, on plain sequences of probabilities: hold, hysteresis, release, cooldown, silence."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest
from tiny_model import EMOTIONS

from edge.policy import AlertRule, Policy, PolicySettings

HOP_S = 0.5


@dataclass(frozen=True)
class W:
    """A stand-in for WindowResult: what the policy reads."""

    end_s: float
    probs: np.ndarray
    speech: bool = True


def probs(**given: float) -> np.ndarray:
    """Probabilities with the given emotions and the rest spread evenly over the others."""
    p = np.zeros(len(EMOTIONS))
    for emotion, value in given.items():
        p[EMOTIONS.index(emotion)] = value
    rest = [i for i, e in enumerate(EMOTIONS) if e not in given]
    p[rest] = (1.0 - sum(given.values())) / len(rest)
    return p


def stream(segments: list[tuple[float, np.ndarray | None]], start_s: float = 0.0) -> list[W]:
    """Windows every HOP_S for each (seconds, probs) segment; probs None is silence."""
    out, t = [], start_s
    for seconds, p in segments:
        for _ in range(round(seconds / HOP_S)):
            t += HOP_S
            out.append(W(t, probs(neutral=1.0) if p is None else p, speech=p is not None))
    return out


def of_type(events: list[dict], kind: str) -> list[dict]:
    return [e for e in events if e["type"] == kind]


ANGRY = probs(angry=0.8)
CALM = probs(neutral=0.8)
ONE_RULE = PolicySettings(smoothing_windows=1, rules=(AlertRule("angry", threshold=0.5, hold_s=3.0, release_s=1.0, cooldown_s=20.0),))


def test_sustained_anger_alerts_once_after_the_hold_and_ends_after_release():
    policy = Policy(ONE_RULE, EMOTIONS)
    events = policy.process_all(stream([(2.0, CALM), (10.0, ANGRY), (5.0, CALM)]))
    alerts, ends = of_type(events, "alert"), of_type(events, "alert_end")
    assert len(alerts) == 1 and len(ends) == 1
    # Anger first seen at 2.5 s; present for hold_s = 3 s more -> the alert at 5.5 s.
    assert alerts[0]["emotion"] == "angry" and alerts[0]["time_s"] == pytest.approx(5.5)
    assert alerts[0]["score"] == pytest.approx(0.8)
    # Calm from 12.5 s; below threshold - hysteresis for release_s = 1 s -> ends at 13.5 s.
    assert ends[0]["id"] == alerts[0]["id"] and ends[0]["ended_s"] == pytest.approx(13.5)
    assert ends[0]["duration_s"] == pytest.approx(8.0) and ends[0]["reason"] == "released"
    assert policy.active_alerts == {}


def test_anger_shorter_than_the_hold_never_alerts():
    events = Policy(ONE_RULE, EMOTIONS).process_all(stream([(2.5, ANGRY), (1.0, CALM), (2.5, ANGRY), (5.0, CALM)]))
    assert of_type(events, "alert") == []


def test_hysteresis_keeps_an_alert_through_a_dip_above_threshold_minus_hysteresis():
    dip = probs(angry=0.4)  # below the 0.5 threshold, above 0.5 - 0.15
    events = Policy(ONE_RULE, EMOTIONS).process_all(stream([(4.0, ANGRY), (5.0, dip), (2.0, ANGRY)]))
    assert len(of_type(events, "alert")) == 1
    assert of_type(events, "alert_end") == []


def test_a_dip_shorter_than_release_does_not_end_the_alert():
    events = Policy(ONE_RULE, EMOTIONS).process_all(stream([(4.0, ANGRY), (0.5, CALM), (2.0, ANGRY)]))
    assert len(of_type(events, "alert")) == 1 and of_type(events, "alert_end") == []


def test_cooldown_blocks_a_new_alert_for_the_same_emotion_then_allows_it():
    policy = Policy(ONE_RULE, EMOTIONS)
    # Alert at 3.5 s, ends at 6.5 s (calm from 5.5 s + 1 s release); cooldown 20 s -> until 26.5 s.
    events = policy.process_all(stream([(5.0, ANGRY), (2.0, CALM), (10.0, ANGRY), (2.0, CALM), (20.0, ANGRY)]))
    alerts = of_type(events, "alert")
    assert len(alerts) == 2
    assert alerts[0]["time_s"] == pytest.approx(3.5)
    # Anger present again from 26.5 s once the cooldown is over; 3 s hold -> 29.5 s.
    assert alerts[1]["time_s"] == pytest.approx(29.5)
    assert alerts[0]["id"] != alerts[1]["id"]


def test_silence_neither_feeds_the_smoother_nor_breaks_a_short_pause():
    policy = Policy(PolicySettings(smoothing_windows=4, rules=(AlertRule("angry", hold_s=3.0, release_s=1.0),)), EMOTIONS)
    # Anger with 2 s pauses: the pauses are ignored, the smoothed anger stays, the hold runs through them.
    events = policy.process_all(stream([(2.0, ANGRY), (2.0, None), (2.0, ANGRY)]))
    assert len(of_type(events, "alert")) == 1
    assert policy.smoothed[EMOTIONS.index("angry")] == pytest.approx(0.8)


def test_one_angry_window_followed_by_silence_is_not_sustained_anger():
    """The smoothed score stands still in silence; a hold that ran out there would alert on a single shout."""
    policy = Policy(PolicySettings(rules=(AlertRule("angry", hold_s=3.0),)), EMOTIONS)  # 6 windows smoothed, but only one heard
    events = policy.process_all(stream([(0.5, ANGRY), (8.0, None)]))
    assert of_type(events, "alert") == []
    # Anger that goes on after the pause still alerts, on its first speech window past the hold.
    events = Policy(ONE_RULE, EMOTIONS).process_all(stream([(1.0, ANGRY), (4.0, None), (1.0, ANGRY)]))
    assert [a["time_s"] for a in of_type(events, "alert")] == [5.5]


def test_long_silence_resets_the_smoother_and_ends_the_alert():
    settings = PolicySettings(smoothing_windows=4, silence_s=3.0, reset_after_silence_s=10.0, rules=ONE_RULE.rules)
    policy = Policy(settings, EMOTIONS)
    events = policy.process_all(stream([(5.0, ANGRY), (15.0, None)]))
    assert len(of_type(events, "alert")) == 1
    ends = of_type(events, "alert_end")
    # Last speech at 5 s; smoother empty after > 10 s of silence (at 15.5 s); ended 1 s later.
    assert len(ends) == 1 and ends[0]["ended_s"] == pytest.approx(16.5)
    assert policy.smoothed is None


def test_state_changes_are_reported_once_each_and_silence_after_silence_s():
    settings = PolicySettings(smoothing_windows=1, silence_s=3.0, rules=())
    events = Policy(settings, EMOTIONS).process_all(stream([(2.0, CALM), (2.0, ANGRY), (2.0, ANGRY), (5.0, None), (1.0, ANGRY)]))
    states = [(e["state"], e["time_s"]) for e in of_type(events, "state")]
    assert states == [("neutral", 0.5), ("angry", 2.5), ("silence", 9.0), ("angry", 11.5)]
    assert of_type(events, "state")[1]["probs"]["angry"] == pytest.approx(0.8)
    assert of_type(events, "state")[2]["probs"] is None


def test_only_silence_reports_the_silence_state_once_and_no_alerts():
    events = Policy(labels=EMOTIONS).process_all(stream([(60.0, None)]))
    assert [e["state"] for e in events] == ["silence"]


def test_smoothing_averages_the_last_n_speech_windows():
    policy = Policy(PolicySettings(smoothing_windows=3, rules=()), EMOTIONS)
    policy.process_all(stream([(0.5, probs(angry=0.9)), (0.5, probs(angry=0.3)), (0.5, probs(angry=0.6)), (0.5, probs(angry=0.0))]))
    # The first window has left the 3-window history: mean(0.3, 0.6, 0.0).
    assert policy.smoothed[EMOTIONS.index("angry")] == pytest.approx(0.3)


def test_driver_defaults_sadness_needs_a_longer_hold_than_anger():
    sad = probs(sad=0.8)
    events = Policy(labels=EMOTIONS).process_all(stream([(8.0, sad)]))
    assert of_type(events, "alert") == []  # 10 s hold for sadness
    events = Policy(labels=EMOTIONS).process_all(stream([(15.0, sad)]))
    assert [a["emotion"] for a in of_type(events, "alert")] == ["sad"]
    events = Policy(labels=EMOTIONS).process_all(stream([(8.0, ANGRY)]))
    assert [a["emotion"] for a in of_type(events, "alert")] == ["angry"]


def test_emotions_without_a_rule_never_alert():
    events = Policy(labels=EMOTIONS).process_all(stream([(120.0, probs(happy=0.95))]))
    assert of_type(events, "alert") == []


def test_two_emotions_can_alert_independently():
    both = probs(angry=0.55, fearful=0.45)
    settings = PolicySettings(
        smoothing_windows=1, rules=(AlertRule("angry", threshold=0.5, hold_s=1.0), AlertRule("fearful", threshold=0.4, hold_s=1.0))
    )
    events = Policy(settings, EMOTIONS).process_all(stream([(3.0, both)]))
    assert sorted(a["emotion"] for a in of_type(events, "alert")) == ["angry", "fearful"]


def test_finish_ends_active_alerts_with_the_reason():
    policy = Policy(ONE_RULE, EMOTIONS, id_prefix="x-")
    events = policy.process_all(stream([(6.0, ANGRY)]))
    assert of_type(events, "alert")[0]["id"] == "x-1"
    ends = policy.finish("stopped")
    assert [(e["id"], e["reason"], e["ended_s"]) for e in ends] == [("x-1", "stopped", 6.0)]
    assert policy.finish() == []


def test_reconfigure_keeps_history_and_alerts_and_ends_alerts_whose_rule_is_gone():
    policy = Policy(PolicySettings(smoothing_windows=2, rules=(AlertRule("angry", hold_s=1.0), AlertRule("sad", hold_s=1.0))), EMOTIONS)
    policy.process_all(stream([(3.0, probs(angry=0.6, sad=0.3))]))
    assert set(policy.active_alerts) == {"angry"}
    events = policy.reconfigure(PolicySettings(smoothing_windows=4, rules=(AlertRule("sad", threshold=0.2, hold_s=0.0),)))
    assert [(e["type"], e["emotion"], e["reason"]) for e in events] == [("alert_end", "angry", "rule_removed")]
    assert policy.smoothed is not None  # what was heard is kept
    events = policy.process(W(3.5, probs(angry=0.6, sad=0.3)))
    assert [(e["type"], e["emotion"]) for e in events if e["type"] == "alert"] == [("alert", "sad")]


def test_settings_refuse_impossible_values():
    with pytest.raises(ValueError, match="threshold"):
        AlertRule("angry", threshold=1.5)
    with pytest.raises(ValueError, match="hysteresis"):
        AlertRule("angry", threshold=0.3, hysteresis=0.3)
    with pytest.raises(ValueError, match="needs an emotion"):
        AlertRule("")
    with pytest.raises(ValueError, match="smoothing_windows"):
        PolicySettings(smoothing_windows=0)
    with pytest.raises(ValueError, match="one rule per emotion"):
        PolicySettings(rules=(AlertRule("angry"), AlertRule("angry")))


def test_rules_follow_the_models_labels(caplog):
    """A model with labels of its own: its states are its labels, and a rule for a label it lacks is left out, said once."""
    labels = ("calm", "frustrated", "bored")
    settings = PolicySettings(smoothing_windows=1, rules=(AlertRule("frustrated", hold_s=1.0), AlertRule("angry")))
    with caplog.at_level("WARNING"):
        policy = Policy(settings, labels)
    assert [r.emotion for r in policy.settings.rules] == ["frustrated"]
    assert "alert rules for angry left out" in caplog.text
    window = SimpleNamespace(end_s=0.0, probs=np.array([0.1, 0.8, 0.1]), speech=True)
    events = [e for t in np.arange(0.5, 3.0, 0.5) for e in policy.process(SimpleNamespace(**{**vars(window), "end_s": t}))]
    assert events[0]["state"] == "frustrated" and list(events[0]["probs"]) == list(labels)
    assert any(e["type"] == "alert" and e["emotion"] == "frustrated" for e in events)
