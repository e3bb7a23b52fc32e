"""What makes the model judge voices and corpora it never heard: labels per corpus, restricted scores,
leave-one-corpus-out folds, channel colouring, and one speech rule for training, evaluation and the device."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tiny_model import EMOTIONS

from training.corpora import Clip, corpus_labels, load_data
from training.crossval import corpus_folds, speaker_folds, summarise
from training.manifest import save_table
from training.metrics import scores_by_corpus
from training.objective import label_masks, masked_crossentropy, targets
from training.settings import TrainSettings
from training.windows import WindowSet


@pytest.fixture(scope="module")
def clips(data_dir):
    return load_data(data_dir)


def _window_set(corpora_labels: list[tuple[str, str]]) -> WindowSet:
    clips = [Clip(f"/x/{i}.wav", corpus, f"{corpus}_1", "female", label) for i, (corpus, label) in enumerate(corpora_labels)]
    n = len(clips)
    y = np.array([EMOTIONS.index(label) for _, label in corpora_labels])
    return WindowSet(np.zeros((n, 2), np.float32), np.arange(n), 1, y, np.arange(n), np.ones(n, np.float32), clips, np.ones(n, bool))


def test_a_label_the_corpus_lacks_is_not_evidence_against_it():
    """nEMO has no calm: moving probability between calm and the other labels in proportion leaves a nEMO window's loss alone."""
    from keras import ops

    ws = _window_set([("nemo", "angry"), ("ravdess", "angry")])
    per_corpus = {"nemo": ("neutral", "happy", "sad", "angry", "fearful", "surprised"), "ravdess": EMOTIONS}
    masks = label_masks(ws, EMOTIONS, per_corpus)
    assert masks[0, EMOTIONS.index("calm")] == 0 and masks[0, EMOTIONS.index("disgust")] == 0 and masks[1].all()
    y_true = np.concatenate([targets(ws.y, masks, 0.1), masks], axis=1)
    assert y_true[0, EMOTIONS.index("calm")] == 0 and y_true[0, : len(EMOTIONS)].sum() == pytest.approx(1.0)
    loss = masked_crossentropy(len(EMOTIONS))
    base = np.full((2, 8), 0.1, np.float32)
    base[:, EMOTIONS.index("angry")] = 0.3
    calm_heavy = base.copy()
    calm_heavy[:, EMOTIONS.index("calm")] = 0.65  # the rest scaled down together below
    others = [i for i in range(8) if i != EMOTIONS.index("calm")]
    calm_heavy[:, others] *= 0.35 / calm_heavy[:, others].sum(axis=1, keepdims=True)
    a, b = (ops.convert_to_numpy(loss(y_true, p)) for p in (base, calm_heavy))
    assert a[0] == pytest.approx(b[0], rel=1e-5)  # nEMO: calm says nothing
    assert b[1] > a[1] + 0.5  # RAVDESS has calm: calling its angry clip calm is wrong
    # With every label allowed it is the ordinary cross-entropy.
    plain = np.concatenate([targets(ws.y, np.ones_like(masks), 0.0), np.ones_like(masks)], axis=1)
    assert ops.convert_to_numpy(loss(plain, base))[0] == pytest.approx(-np.log(0.3), rel=1e-5)


def test_restricted_scores_take_the_argmax_over_the_corpus_labels():
    labels = EMOTIONS
    probs = np.full((4, 8), 0.05)
    probs[:, EMOTIONS.index("calm")] = 0.4  # everything looks calm ...
    probs[0, EMOTIONS.index("angry")] = 0.3  # ... but among a corpus without calm these are right
    probs[1, EMOTIONS.index("sad")] = 0.3
    probs[2, EMOTIONS.index("angry")] = 0.3
    probs[3, EMOTIONS.index("happy")] = 0.3
    truth = [EMOTIONS.index(x) for x in ("angry", "sad", "angry", "sad")]
    corpora = ["nemo", "nemo", "ravdess", "ravdess"]
    per_corpus = {"nemo": ("neutral", "happy", "sad", "angry"), "ravdess": EMOTIONS}
    s = scores_by_corpus(corpora, truth, probs, labels, per_corpus)
    assert s["nemo"]["ua"] == 0.0 and s["nemo"]["ua_restricted"] == 1.0
    assert s["ravdess"]["ua"] == s["ravdess"]["ua_restricted"] == 0.0  # RAVDESS has calm: nothing changes
    assert s["mean"]["ua_restricted"] == 0.5 and s["mean"]["corpora"] == ["nemo", "ravdess"]
    assert s["all"]["wa_restricted"] == 0.5


def test_leaving_one_corpus_out_holds_each_corpus_out_whole_once_and_each_ravdess_fold_twice(clips):
    folds = corpus_folds(clips, 3)
    assert len(folds) == 6
    speakers_of = {corpus: {c.speaker for c in clips if c.corpus == corpus} for corpus in {c.corpus for c in clips}}
    held_whole = []
    for fold in folds:
        held = set(fold.validation)
        whole = [corpus for corpus, speakers in speakers_of.items() if corpus != "ravdess" and speakers <= held]
        assert len(whole) == 1 and not any(speakers_of[c] & held for c in speakers_of if c not in (*whole, "ravdess"))
        held_whole += whole
        actors = sorted(int(s.split("_")[1]) for s in held if s.startswith("ravdess_"))
        assert len(actors) == 6 and not {15, 16} & set(actors)
        assert fold.test == ("ravdess_15", "ravdess_16")
    assert sorted(held_whole) == ["ased", "esd", "nemo", "savee", "tess", "turev"]
    ravdess = [tuple(s for s in f.validation if s.startswith("ravdess_")) for f in folds]
    assert ravdess[:3] == ravdess[3:] and len(set(ravdess)) == 3  # every RAVDESS fold held out twice


def test_speaker_folds_pair_a_male_and_a_female_actor_and_keep_the_test_actors_out(clips):
    folds = speaker_folds(clips, 3)
    ravdess = [tuple(int(s.split("_")[1]) for s in f.validation if s.startswith("ravdess_")) for f in folds]
    assert ravdess == [(1, 2, 7, 8, 13, 14), (3, 4, 9, 10, 17, 18), (5, 6, 11, 12, 19, 20)]
    assert all(f.test == ("ravdess_15", "ravdess_16") and {"savee_JK", "tess_YAF"} <= set(f.validation) for f in folds)
    with pytest.raises(ValueError, match="at least 2 folds"):
        speaker_folds(clips, 1)
    assert all(any(s.startswith("ravdess_") for s in f.validation) for f in speaker_folds(clips, 9)), "nine pairs: nine folds"
    with pytest.raises(ValueError, match=r"18 RAVDESS actors outside the test speakers make 9 pairs, too few for 10 folds"):
        corpus_folds(clips, 10)


def test_the_summary_counts_a_corpus_only_where_it_was_held_out_whole():
    def fold(whole, ravdess_ua, **others):
        scores = {"ravdess": {"ua": ravdess_ua, "ua_restricted": ravdess_ua, "wa": ravdess_ua, "clips": 10}}
        scores.update({k: {"ua": v, "ua_restricted": v + 0.1, "wa": v, "clips": 5} for k, v in others.items()})
        return {"held_out_whole": whole, "float": {"validation": scores}}

    rows = [fold(["savee"], 0.5, savee=0.3), fold(["tess"], 0.7, tess=0.2, savee=0.9)]  # savee in fold 2 is a stray: ignored
    summary = summarise(rows, "corpora")
    assert summary["corpora"]["savee"]["ua_restricted"] == pytest.approx(0.4)
    assert summary["corpora"]["ravdess"]["per_fold_ua_restricted"] == [0.5, 0.7]
    assert summary["mean"]["ua_restricted"] == pytest.approx((0.6 + 0.4 + 0.3) / 3, abs=1e-4)


def test_channel_colourings_are_smooth_bounded_log_mel_curves():
    from edge.frontend import FrontendSettings, dct_matrix
    from training.augment import LN_PER_DB, channel_curves

    frontend = FrontendSettings(n_mels=40, n_ceps=40)
    offsets = channel_curves(500, 12.0, frontend, np.random.default_rng(0))
    curves_db = offsets @ dct_matrix(40, 40).T / LN_PER_DB  # back to dB per mel band
    assert np.abs(curves_db).max() <= 12.0 + 1e-3 and np.abs(curves_db).max(axis=1).mean() > 4.0
    # The fastest of the four cosines moves at most pi * 4 / 40 of its amplitude from one band to the next: a microphone, not noise.
    assert np.abs(np.diff(curves_db, axis=1)).max() <= 12.0 * np.pi * 4 / 40
    np.testing.assert_array_equal(
        channel_curves(3, 12.0, frontend, np.random.default_rng(1)), channel_curves(3, 12.0, frontend, np.random.default_rng(1))
    )
    with pytest.raises(ValueError, match="channel_db work on the mel axis"):
        TrainSettings(n_mels=40, n_ceps=13, vtlp_range=(1.0, 1.0), channel_db=6.0).check()


def test_one_speech_rule_for_training_evaluation_and_the_device(tiny_model_path, data_dir, clips):
    """A changed min_speech_ratio reaches the training windows, the clip verdicts of evaluation and the device alike."""
    from edge.classifier import StreamingClassifier
    from edge.frontend import Frontend
    from edge.model import Model
    from edge.speech import SpeechSettings
    from training.features import ClipFeatures, clip_audio16k, frames_of
    from training.metrics import clip_probs
    from training.windows import window_set

    model = Model(tiny_model_path)
    c = model.contract
    clip = next(x for x in clips if x.corpus == "savee")  # pauses between words: ratios spread out
    for ratio in (0.25, 0.8):
        speech = SpeechSettings(min_speech_ratio=ratio)
        mfcc, flags = frames_of(clip_audio16k(clip.path), Frontend(c.frontend), speech)
        ws = window_set([ClipFeatures(clip, 0, mfcc, flags)], c.frontend, c.window_s, c.hop_s, model.labels, speech)
        device = StreamingClassifier(model, speech).classify_file(clip.path)
        assert ws.speech.tolist() == [w.speech for w in device.windows]
        evaluated = clip_probs(model.predict(ws.x), ws.clip, ws.speech, 1)[0]
        np.testing.assert_allclose(evaluated, device.probs, atol=1e-6)
        if ratio == 0.8:
            assert 0 < ws.speech.sum() < len(ws)  # the stricter gate drops some windows, not all
        trained = window_set([ClipFeatures(clip, 0, mfcc, flags)], c.frontend, c.window_s, c.hop_s, model.labels, speech, speech_only=True)
        assert len(trained) == ws.speech.sum()


@pytest.mark.slow
def test_crossval_leaves_each_corpus_out_and_resumes(clips, tmp_path):
    from training.__main__ import main

    rng = np.random.default_rng(1)
    wanted = {"ravdess_01": 6, "ravdess_02": 6, "ravdess_03": 6, "ravdess_04": 6, "savee_DC": 8, "nemo_EB0": 8, "nemo_KS0": 8}
    chosen = [c for s, n in wanted.items() for c in rng.permutation([c for c in clips if c.speaker == s])[:n].tolist()]
    save_table(chosen, tmp_path / "clips.csv")
    tiny = ["n_mels=26", "n_ceps=26", "window_s=1.0", "augment_variants=0", "width=4", "epochs=1", "batch_size=16"]
    args = [
        "crossval",
        "--table",
        str(tmp_path / "clips.csv"),
        "--folds",
        "2",
        "--out",
        str(tmp_path / "cv"),
        "--cache",
        str(tmp_path / "cache"),
    ]
    args += [f"--set={s}" for s in tiny] + ["--workers", "1", "--threads", "1"]
    assert main(args) == 0
    report = json.loads((tmp_path / "cv" / "crossval.json").read_text())
    assert report["protocol"] == "corpora" and report["settings"]["ensemble"] == 1
    assert [f["held_out_whole"] for f in report["folds"]] == [["nemo"], ["savee"]]
    assert [f["validation"][-2:] for f in report["folds"]] == [["ravdess_01", "ravdess_02"], ["ravdess_03", "ravdess_04"]]
    assert set(report["corpora"]) == {"nemo", "ravdess", "savee"}
    nemo = report["folds"][0]["float"]["validation"]["nemo"]
    assert report["corpora"]["nemo"]["ua_restricted"] == nemo["ua_restricted"] and nemo["clips"] == 16
    assert report["mean"]["ua_restricted"] == pytest.approx(np.mean([c["ua_restricted"] for c in report["corpora"].values()]), abs=1e-4)
    assert set(nemo["recall_restricted"]) == set(corpus_labels(chosen)["nemo"])  # scored on the labels its clips have
    # A second run with the same settings reads the folds instead of training them again.
    stamp = (tmp_path / "cv" / "fold0" / "model.keras").stat().st_mtime_ns
    assert main(args) == 0
    assert (tmp_path / "cv" / "fold0" / "model.keras").stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_adapt_fine_tunes_on_a_manifest_and_converts_and_the_curve_runs(clips, tmp_path, capsys):
    """A tiny base that never heard Polish, adapted on a manifest of nEMO clips with four labels: an int8 model with its card."""
    from edge.classifier import StreamingClassifier
    from edge.model import Model
    from training.__main__ import main
    from training.split import Split
    from training.train import train

    rng = np.random.default_rng(4)
    base_clips = [c for s in ("ravdess_01", "ravdess_02") for c in rng.permutation([c for c in clips if c.speaker == s])[:12].tolist()]
    settings = TrainSettings(
        n_mels=26, n_ceps=26, window_s=1.0, augment_variants=0, width=4, epochs=1, batch_size=16, ensemble=1, vtlp_range=(0.9, 1.1)
    )
    train(base_clips, settings, tmp_path / "base", tmp_path / "cache", Split(validation=("ravdess_02",), test=()), 1, 1, False)
    four = ("neutral", "happy", "sad", "angry")
    polish = [c for s in ("nemo_EB0", "nemo_KS0") for label in four for c in [c for c in clips if c.speaker == s and c.label == label][:3]]
    manifest = tmp_path / "mine.csv"
    manifest.write_text("path,label,speaker,corpus\n" + "".join(f"{c.path},{c.label},{c.speaker[5:]},pl\n" for c in polish))
    args = ["adapt", "--manifest", str(manifest), "--base", str(tmp_path / "base"), "--out", str(tmp_path / "adapted")]
    args += [
        "--validation",
        "pl_KS0",
        "--variants",
        "1",
        "--head-l2",
        "0.5",
        "--cache",
        str(tmp_path / "cache"),
        "--workers",
        "1",
        "--threads",
        "1",
    ]
    assert main(args) == 0
    said = capsys.readouterr().out
    assert "int8 on held-out speakers, pl: UA " in said and "(the base model, float: " in said, "what adapting bought"
    assert "Saved artifact" not in said and len(said.splitlines()) == 4, "the tool's own lines, not TensorFlow's export listing"
    report = json.loads((tmp_path / "adapted" / "report.json").read_text())
    assert report["corpus_labels"] == {"pl": list(four)} and report["data"]["train"]["speakers"] == ["pl_EB0"]
    # The default with 3 clips per label (auto, under 20): the last layer refitted.
    assert report["adapt"]["layers_asked"] == "auto" and report["adapt"]["layers"] == "head" and report["adapt"]["head_l2"] == 0.5
    fit = report["history"]
    assert all(a < b for a, b in zip(fit["loss_after"], fit["loss_before"], strict=True))
    # Each window seen twice: against the population's statistics and against its speaker's (pl_EB0's 12 clips).
    assert fit["profiled_speakers"] == 1 and fit["windows"] == 2 * report["windows"]["train"]
    keras = __import__("keras")
    base_net = keras.models.load_model(tmp_path / "base" / "model.keras")
    adapted_net = keras.models.load_model(tmp_path / "adapted" / "model.keras")
    # The trained layers stay as they were but the last; a window-statistics branch joins it (fitted, not zero).
    for layer in base_net.layers[:-1]:
        for a, b in zip(layer.get_weights(), adapted_net.get_layer(layer.name).get_weights(), strict=True):
            assert np.array_equal(a, b), layer.name
    head = adapted_net.get_layer("probs_embedding").get_weights()
    assert not np.array_equal(head[0], base_net.layers[-1].get_weights()[0]) and fit["window_stats"] == 3 * base_net.inputs[0].shape[-1]
    assert np.abs(adapted_net.get_layer("probs_window_stats").get_weights()[0]).max() > 0
    model = Model(tmp_path / "adapted" / "int8" / "ser_cnn_int8.tflite")
    assert model.labels == tuple(report["labels"]) and model.contract.metrics["adapted"]["head_l2"] == 0.5
    card = (tmp_path / "adapted" / "int8" / "MODEL_CARD.md").read_text()
    assert "last layer refitted" in card and "statistics of the window itself" in card
    # It still derives from its base's corpora: they stay in its data, its licence and its card, beside the new clips.
    assert model.contract.training_data["corpora"] == ["pl", "ravdess"] and "RAVDESS" in model.contract.licence
    assert model.contract.training_data["adapted_from"]["name"] == str(tmp_path / "base")
    assert f"Adapted from {tmp_path / 'base'}, which was trained on 1 speakers" in card and "| RAVDESS | English | 1 | 02 |" in card
    assert "then adapted on 12 labelled clips of 1 speaker(s), with pl_KS0 held out to score it" in card
    assert "- RAVDESS: " in card and "Rebuild: `python -m training adapt`" in card
    assert StreamingClassifier(model).classify_file(polish[0].path).label in model.labels
    bad = tmp_path / "bad.csv"
    bad.write_text(f"path,label\n{polish[0].path},frustrated\n")
    capsys.readouterr()
    assert main(["adapt", "--manifest", str(bad), "--base", str(tmp_path / "base"), "--out", str(tmp_path / "x")]) == 2
    assert "the clips have labels the base model does not: frustrated" in capsys.readouterr().err
    bad.write_text(f"path,label,speaker,corpus\n{polish[0].path},angry,EB0,pl\n{polish[1].path},angry,EB0,pl\n")
    assert main(["adapt", "--manifest", str(bad), "--base", str(tmp_path / "base"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "each corpus needs clips of two labels or more" in err and "pl (angry) has one" in err
    nemo = [
        c
        for s in ("nemo_EB0", "nemo_KS0", "nemo_IC0", "nemo_MP0")
        for label in four
        for c in [c for c in clips if c.speaker == s and c.label == label][:4]
    ]
    (tmp_path / "nemo.csv").write_text("path,label,speaker,corpus\n" + "".join(f"{c.path},{c.label},{c.speaker[5:]},pl\n" for c in nemo))
    capsys.readouterr()
    # Through the command line, as a user runs it; --all-from 2: every layer by Adam. 99 clips per label takes all 8 of each.
    args = ["curve", "--data", "", "--manifest", str(tmp_path / "nemo.csv"), "--base", str(tmp_path / "base"), "--corpus", "pl"]
    args += ["--shots", "0,2,99", "--repeats", "2", "--all-from", "2", "--epochs", "1", "--variants", "0", "--out", str(tmp_path / "curve")]
    assert main(args + ["--cache", str(tmp_path / "cache"), "--workers", "1", "--threads", "1"]) == 0
    assert "| 2 | 8 | all |" in capsys.readouterr().out
    curve = json.loads((tmp_path / "curve" / "curve.json").read_text())
    assert [r["shots_per_label"] for r in curve["rows"]] == [0, 2, 99] and [r["clips"] for r in curve["rows"]] == [0, 8, 32]
    assert len(curve["rows"][1]["draws"]) == 2 and curve["rows"][1]["ua_restricted"] == pytest.approx(
        np.mean(curve["rows"][1]["draws"]), abs=1e-4
    )
    assert len(curve["rows"][2]["draws"]) == 1  # every clip of the pool: another draw would be the same
    assert len(curve["tested_on"]) == 2 and not set(curve["tested_on"]) & set(curve["adapted_on"])
    assert all(0 <= r["ua_restricted_enrolled"] <= 1 for r in curve["rows"]) and len(curve["rows"][1]["draws_enrolled"]) == 2
    assert curve["rows"][1]["layers"] == "all"
    # Adam, then the last layer refitted with the window statistics, whose fixed kernel (-1, 1) stays out of training.
    tuned = __import__("keras").models.load_model(tmp_path / "curve" / "shots2-0" / "model.keras")
    assert np.abs(tuned.get_layer("probs_window_stats").get_weights()[0]).max() > 0 and not tuned.get_layer("window_steps").trainable
    assert np.array_equal(
        tuned.get_layer("window_steps").get_weights()[0][:, :, 0], np.repeat([[-1.0], [1.0]], tuned.inputs[0].shape[-1], axis=1)
    )
    assert (tmp_path / "curve" / "curve.png").stat().st_size > 1000


def test_the_refitted_head_learns_the_clips_within_their_labels_and_stays_near_the_trained_one():
    """fit_softmax_head: a weak pull fits separable clips; labels no clip allows keep their weights; a strong pull keeps all."""
    from training.adapt import fit_softmax_head

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 30)
    embeddings = rng.normal(size=(90, 6)) + 3.0 * np.eye(6)[y]
    masks = np.zeros((90, 5), bool)
    masks[:, :3] = True  # a corpus with three of the model's five labels
    W0, b0 = rng.normal(size=(6, 5)), rng.normal(size=5)
    W, b, fit = fit_softmax_head(embeddings, y, masks, np.ones(90), W0, b0, l2=1e-3)
    assert (np.argmax(embeddings @ W[:, :3] + b[:3], axis=1) == y).mean() > 0.95 and fit["loss_after"] < fit["loss_before"]
    assert np.array_equal(W[:, 3:], W0[:, 3:]) and np.array_equal(b[3:], b0[3:])
    held, _, _ = fit_softmax_head(embeddings, y, masks, np.ones(90), W0, b0, l2=1e4)
    assert np.abs(held - W0).max() < 1e-2 and np.abs(W - W0).max() > 0.5
    weighted, _, _ = fit_softmax_head(embeddings, y, masks, np.where(y == 2, 0.0, 1.0), W0, b0, l2=1e-3)
    assert not np.allclose(weighted, W)  # the windows' weights count


def test_the_window_statistics_branch_learns_what_the_frozen_network_cannot_and_converts_to_int8():
    """A window's level decides its label and a network that cannot see it (its kernel is zero) is refitted: the
    head alone stays near chance, head and branch learn it; a model adapted twice refits its branch in place, and
    refuses to be refitted without it; int8 converts."""
    import keras

    from convert.int8 import to_int8_tflite
    from edge.model import Normalization
    from training.adapt import _refit_heads, with_window_stats
    from training.network import average_models, build_model

    frames, coeffs, n_labels = 40, 6, 4
    members = []
    for _ in range(2):
        m = build_model("cnn1d", frames, coeffs, n_labels, width=2)
        m.get_layer("conv0").set_weights([np.zeros_like(w) for w in m.get_layer("conv0").get_weights()])  # sees nothing
        members.append(m)
    model = average_models(members, frames, coeffs)
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 60)  # two of the four labels
    x = rng.normal(size=(120, frames, coeffs)).astype(np.float32)
    x[:, :, 2] += np.where(y == 1, 1.0, -1.0)[:, None]  # class 1 is louder in one coefficient
    ws = WindowSet(
        x.reshape(-1, coeffs),
        np.arange(120) * frames,
        frames,
        y,
        np.arange(120),
        np.ones(120, np.float32),
        [Clip(f"/x/{i}.wav", "x", "x_1", "female", EMOTIONS[y[i]]) for i in range(120)],
        np.ones(120, bool),
    )
    masks = np.zeros((120, n_labels), bool)
    masks[:, :2] = True
    plain = Normalization("none")

    def accuracy(m):
        return float((m.predict(x, verbose=0)[:, :2].argmax(axis=1) == y).mean())

    alone, fit = _refit_heads(model, ws, plain, {}, masks, np.ones(120), 0.3, None)
    assert accuracy(alone) < 0.7 and "window_stats" not in fit
    both, fit = _refit_heads(model, ws, plain, {}, masks, np.ones(120), 0.3, 0.01)
    assert accuracy(both) > 0.95 and fit["window_stats"] == 3 * coeffs and len(fit["loss_after"]) == 2
    assert [layer.name for layer in both.layers if isinstance(layer, keras.Model)] == ["member0", "member1"]
    assert both.get_layer("member0").get_layer("window_steps").trainable is False
    # The statistics the branch sees: the mean of each coefficient, of its positive part and of its steps' positive part.
    stats = keras.Model(both.get_layer("member0").inputs, both.get_layer("member0").get_layer("window_stats").output).predict(
        x[:3], verbose=0
    )
    steps = np.diff(x[:3], axis=1)
    expected = [x[:3].mean(axis=1), np.maximum(x[:3], 0).mean(axis=1), np.maximum(steps, 0).mean(axis=1)]
    np.testing.assert_allclose(stats, np.concatenate(expected, axis=1), atol=1e-5)
    # A new branch starts at zero: the network answers as before until it is fitted.
    net = members[0]
    np.testing.assert_allclose(with_window_stats(net).predict(x[:5], verbose=0), net.predict(x[:5], verbose=0), atol=1e-6)
    # Adapting the adapted model again refits the same branch, and keeps what it learned under a strong pull.
    again, _ = _refit_heads(both, ws, plain, {}, masks, np.ones(120), 1e4, 1e4)
    assert again.get_layer("member0") is both.get_layer("member0") and accuracy(again) > 0.95
    with pytest.raises(ValueError, match="already has window statistics"):
        _refit_heads(both, ws, plain, {}, masks, np.ones(120), 0.3, None)
    tflite = to_int8_tflite(both, x)
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=tflite)
    interpreter.allocate_tensors()
    (i,), (o,) = interpreter.get_input_details(), interpreter.get_output_details()
    right = 0
    for n in range(0, 120, 4):
        scale, zero = i["quantization"]
        interpreter.set_tensor(i["index"], np.clip(np.round(x[n : n + 1] / scale + zero), -128, 127).astype(np.int8))
        interpreter.invoke()
        right += int(interpreter.get_tensor(o["index"])[0, :2].argmax() == y[n])
    assert right >= 28  # of 30


def test_the_window_statistics_are_folded_into_the_layers_exactly():
    """The fit works on standardised statistics (far from zero and narrow here, as a level is); the Keras model it
    writes gives the same probabilities as the fit itself, the standardisation folded into the weights and bias."""
    import keras

    from edge.model import Normalization
    from training.adapt import STATS_SPREAD_FLOOR, _refit_heads, fit_softmax_head
    from training.network import build_model

    frames, coeffs, n_labels = 30, 4, 3
    net = build_model("cnn1d", frames, coeffs, n_labels, width=2)
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1, 2], 20)
    x = rng.normal(size=(60, frames, coeffs)).astype(np.float32)
    x[:, :, 1] = 40.0 + 0.5 * x[:, :, 1] + 0.3 * y[:, None]  # a level far from zero, a small spread
    clips = [Clip(f"/x/{i}.wav", "x", "x_1", "female", EMOTIONS[y[i]]) for i in range(60)]
    ws = WindowSet(
        x.reshape(-1, coeffs), np.arange(60) * frames, frames, y, np.arange(60), np.ones(60, np.float32), clips, np.ones(60, bool)
    )
    masks = np.ones((60, n_labels), bool)
    embed = keras.Model(net.inputs, net.layers[-1].input).predict(x, verbose=0)
    W0, b0 = net.layers[-1].get_weights()
    refitted, _ = _refit_heads(net, ws, Normalization("none"), {}, masks, np.ones(60), 0.3, 0.01)
    S = keras.Model(refitted.inputs, refitted.get_layer("window_stats").output).predict(x, verbose=0).astype(np.float64)
    mu, sd = S.mean(axis=0), np.maximum(S.std(axis=0), STATS_SPREAD_FLOOR)
    assert np.abs(mu).max() > 30 and sd.min() < 1, "the case the fold-back must get right"
    E = np.concatenate([embed, (S - mu) / sd], axis=1)
    W_init = np.concatenate([W0, np.zeros((S.shape[1], n_labels))])
    l2 = np.concatenate([np.full(len(W0), 0.3), np.full(S.shape[1], 0.01)])
    W, b, _ = fit_softmax_head(E, y, masks, np.ones(60), W_init, b0, l2)
    z = E @ W + b
    expected = np.exp(z - z.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(refitted.predict(x, verbose=0), expected, atol=2e-4)
    assert np.abs(W[len(W0) :]).max() > 0.1, "the statistics were used"


def test_the_card_says_how_a_model_was_adapted():
    from convert.card import adaptation_text

    tuned = {"layers": "all", "epochs": 12, "learning_rate": 3e-4, "head_l2": 0.3, "stats_l2": 0.3}
    assert adaptation_text({**tuned, "window_stats": True}) == (
        "all layers fine-tuned, 12 epochs at learning rate 0.0003, then the last layer refitted jointly with a new input "
        "to it, statistics of the window itself (level, spread and movement of each coefficient; weight 0.3)"
    )
    assert adaptation_text({**tuned, "window_stats": False}) == "all layers fine-tuned, 12 epochs at learning rate 0.0003"
    head = adaptation_text({"layers": "head", "head_l2": 0.5, "window_stats": False, "profiled_speakers": 2})
    assert head == (
        "each network's last layer refitted on its frozen embeddings, held to the trained one with weight 0.5, "
        "from windows with and without their speaker's own statistics (2 speakers)"
    )


def test_curve_refuses_shots_and_repeats_it_cannot_use(capsys):
    """--shots and --repeats are checked when parsed, with one sentence, not a traceback from deep inside."""
    from training.__main__ import build_parser

    base = ["curve", "--base", "runs/x", "--corpus", "nemo"]
    assert build_parser().parse_args([*base, "--shots", "0,10,50", "--repeats", "1"]).shots == (0, 10, 50)
    for bad, said in ((["--shots", "0,ten"], "is not a comma-separated list"), (["--shots", "5,-1"], "cannot be negative")):
        with pytest.raises(SystemExit):
            build_parser().parse_args([*base, *bad])
        assert said in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser().parse_args([*base, "--repeats", "0"])
    assert "'0' is not a whole number of 1 or more" in capsys.readouterr().err
    for flag, value in (("--head-l2", "-1"), ("--stats-l2", "nan")):
        with pytest.raises(SystemExit):
            build_parser().parse_args([*base, flag, value])
        assert f"argument {flag}: '{value}' is not a number of 0 or more" in capsys.readouterr().err
    settings = build_parser().parse_args([*base, "--stats-l2", "0", "--no-window-stats"])
    assert settings.stats_l2 == 0.0 and settings.window_stats is False


def test_adapt_refuses_what_it_must_not_write_over_or_start_from(tmp_path):
    """--out, --base and --validation are checked before any clip is read, each in one sentence."""
    from training.__main__ import _speakers, build_parser
    from training.adapt import SHIPPED, SHIPPED_FLOAT, check_out, load_base
    from training.corpora import Clip

    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match="is a file; adapt writes a run folder"):
        check_out(tmp_path / "afile")
    fold = tmp_path / "fold5"
    fold.mkdir()
    (fold / "report.json").write_text('{"settings": {}}')
    with pytest.raises(ValueError, match="holds other files and no earlier adaptation; give a new or empty folder"):
        check_out(fold)
    earlier = tmp_path / "adapted"
    earlier.mkdir()
    (earlier / "report.json").write_text('{"adapt": {}}')
    check_out(earlier)  # an earlier adaptation is replaced
    check_out(tmp_path / "new")
    with pytest.raises(ValueError, match="is not a training run folder"):
        load_base(fold)
    with pytest.raises(FileNotFoundError, match="no such model or run folder"):
        load_base(tmp_path / "gone.tflite")
    other = tmp_path / "other.tflite"
    other.write_bytes(SHIPPED.read_bytes())
    other.with_suffix(".json").write_bytes(SHIPPED.with_suffix(".json").read_bytes())
    with pytest.raises(ValueError, match="its float model is not beside it; give it with --keras"):
        load_base(other)  # never the shipped weights under another model's name
    shipped = load_base(SHIPPED)
    assert shipped.keras_path == SHIPPED_FLOAT and shipped.provenance["name"].startswith("the shipped model ser_cnn_int8.tflite")
    assert "turev_1157" in shipped.provenance["data"]["train"]["speakers"] and shipped.provenance["leave_one_corpus_out"]["mean"]
    clips = [Clip("a", "nemo", "nemo_KS0", "f", "sad"), Clip("b", "mine", "mine_anna", "f", "sad"), Clip("c", "x", "x_KS0", "f", "sad")]
    assert _speakers("anna, nemo_KS0", clips) == ("mine_anna", "nemo_KS0")
    with pytest.raises(ValueError, match="--validation KS0 is in more than one corpus; the speakers are mine_anna, nemo_KS0, x_KS0"):
        _speakers("KS0", clips)
    for bad in (["--variants", "-1"], ["--epochs", "0"], ["--all-from", "0"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["adapt", "--manifest", "m.csv", *bad])


def test_curve_refuses_a_base_that_heard_the_corpus(tmp_path):
    from training.adapt import SHIPPED, learning_curve, load_base
    from training.corpora import Clip

    clips = [Clip("a", "turev", "turev_1157", "f", "sad")]
    with pytest.raises(ValueError, match=r"the base model was trained on 5 turev speaker\(s\) .*give the leave-one-corpus-out fold"):
        learning_curve(load_base(SHIPPED), clips, "turev", tmp_path)
    base = load_base(SHIPPED)
    base.provenance = {}
    with pytest.raises(ValueError, match="no clips of 'turkish': the corpora loaded are turev"):
        learning_curve(base, clips, "turkish", tmp_path)


def test_a_model_adapted_twice_keeps_both_adaptations_in_its_provenance(tmp_path):
    from training.adapt import load_base
    from training.settings import TrainSettings

    def data(speakers: dict[str, list[str]]) -> dict:
        train = {"speakers": [s for v in speakers.values() for s in v], "clips": {c: 10 * len(v) for c, v in speakers.items()}}
        return {"train": train, "validation": {"speakers": [], "clips": {}}, "test": {"speakers": [], "clips": {}}}

    base = {"name": "base", "data": data({"ravdess": ["ravdess_01"], "crema_d": ["crema_d_1001"]}), "corpus_labels": {}}
    run = tmp_path / "a1"
    run.mkdir()
    (run / "model.keras").write_bytes(b"")
    report = {
        "settings": TrainSettings().to_dict(),
        "labels": ["sad", "angry"],
        "normalization": {"kind": "window"},
        "data": data({"my_pl": ["my_pl_anna"]}),
        "corpus_labels": {"my_pl": ["sad", "angry"]},
        "adapt": {"base_data": base},
    }
    (run / "report.json").write_text(json.dumps(report))
    chained = load_base(run).provenance
    assert chained["name"] == f"{run}, adapted from base"
    assert chained["data"]["train"]["speakers"] == ["crema_d_1001", "my_pl_anna", "ravdess_01"]
    assert sorted(chained["data"]["train"]["clips"]) == ["crema_d", "my_pl", "ravdess"], "corpus names with _ stay whole"
