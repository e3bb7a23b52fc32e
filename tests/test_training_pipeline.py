"""Features, cache and augmentation on real clips; a train -> convert -> classify smoke run on a tiny subset."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from tiny_model import EMOTIONS

from edge.classifier import StreamingClassifier, clip_windows, frame_windows
from edge.frontend import Frontend, FrontendSettings
from edge.model import Model
from training.augment import Augmenter, AugmentSettings
from training.corpora import load_data
from training.features import clip_audio16k, extract, frames_of
from training.metrics import scores
from training.objective import sample_weights
from training.settings import TrainSettings
from training.split import TRAIN, VALIDATION, Split
from training.train import train
from training.windows import window_set

SMALL = FrontendSettings(n_mels=26, n_ceps=13)


@pytest.fixture(scope="module")
def clips(data_dir):
    return load_data(data_dir)


def test_cached_frames_give_exactly_the_devices_windows(clips):
    from edge.speech import SpeechSettings

    for clip in (clips[0], next(c for c in clips if c.corpus == "tess")):  # 16 kHz and 24.4 kHz files
        audio = clip_audio16k(clip.path)
        mfcc, speech = frames_of(audio, Frontend(SMALL), SpeechSettings())
        expected_w, expected_r = clip_windows(audio, SMALL, 2.0, 0.5)
        windows, ratios = frame_windows(mfcc, speech, SMALL.window_frames(2.0), SMALL.hop_frames(0.5))
        np.testing.assert_array_equal(windows, expected_w)
        np.testing.assert_array_equal(ratios, expected_r)


def test_window_sets_cut_the_same_windows_as_the_device_without_copying_frames(clips):
    """window_set keeps frames once and cuts windows on demand; they must be frame_windows' windows."""
    from edge.speech import SpeechSettings
    from training.features import ClipFeatures
    from training.windows import fit_normalization

    wf, hf = SMALL.window_frames(2.0), SMALL.hop_frames(0.5)
    features = []
    for clip in (clips[0], next(c for c in clips if c.corpus == "tess")):
        mfcc, speech = frames_of(clip_audio16k(clip.path), Frontend(SMALL), SpeechSettings())
        features.append(ClipFeatures(clip, 0, mfcc, speech))
    short = features[0]
    features.append(ClipFeatures(short.clip, 1, short.mfcc[:120], short.speech[:120]))  # under one window: padded
    min_ratio = SpeechSettings().min_speech_ratio
    for speech_only in (False, True):
        ws = window_set(features, SMALL, 2.0, 0.5, EMOTIONS, speech_only=speech_only)
        expected_w, expected_r = [], []
        for f in features:
            w, r = frame_windows(f.mfcc, f.speech, wf, hf)
            keep = (r >= min_ratio) & (r > 0) if speech_only else np.ones(len(r), bool)
            keep = keep if keep.any() else np.ones(len(r), bool)
            expected_w.append(w[keep])
            expected_r.append(r[keep])
        expected = np.concatenate(expected_w)
        np.testing.assert_array_equal(ws.x, expected)
        np.testing.assert_array_equal(ws.speech_ratio, np.concatenate(expected_r))
        assert len(ws) == len(expected) and ws.frames.shape[0] < expected.shape[0] * expected.shape[1]
        np.testing.assert_array_equal(ws.take(np.array([2, 0])), expected[[2, 0]])
        # Normalisation statistics over the windows, as if every window were stored whole.
        norm = fit_normalization("global", ws)
        flat = expected.reshape(-1, expected.shape[-1]).astype(np.float64)
        np.testing.assert_allclose(norm.mean, flat.mean(axis=0), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(norm.std, flat.std(axis=0), rtol=1e-9)


def test_feature_cache_is_reused_and_keyed_by_settings(clips, tmp_path):
    few = clips[:3]
    first = extract(few, SMALL, tmp_path, workers=1, progress=False)
    stored = sorted((tmp_path / "features").glob("*.npz"))
    assert len(stored) == 3
    mtimes = [p.stat().st_mtime_ns for p in stored]
    again = extract(few, SMALL, tmp_path, workers=1, progress=False)
    assert [p.stat().st_mtime_ns for p in sorted((tmp_path / "features").glob("*.npz"))] == mtimes  # read, not rewritten
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a.mfcc, b.mfcc)
    extract(few, FrontendSettings(n_mels=26, n_ceps=20), tmp_path, workers=1, progress=False)
    assert len(list((tmp_path / "features").glob("*.npz"))) == 6  # other settings, other entries
    (other,) = extract(few[:1], SMALL, tmp_path, (1,), AugmentSettings(), workers=1, progress=False)
    assert other.mfcc.shape[1] == 13 and not np.array_equal(other.mfcc[:50], first[0].mfcc[:50])


def test_feature_cache_follows_the_bytes_not_the_file_times(clips, tmp_path):
    """A copy of the corpora (new times, same bytes) still hits the cache; changed bytes miss it."""
    copy = tmp_path / "clip.wav"
    copy.write_bytes(Path(clips[0].path).read_bytes())
    clip = dataclasses.replace(clips[0], path=str(copy))
    extract([clip], SMALL, tmp_path, workers=1, progress=False)
    os.utime(copy, (1_000_000_000, 1_000_000_000))
    extract([clip], SMALL, tmp_path, workers=1, progress=False)
    assert len(list((tmp_path / "features").glob("*.npz"))) == 1
    audio, rate = sf.read(copy, dtype="float32")
    sf.write(copy, audio * 0.5, rate, subtype="PCM_16")
    extract([clip], SMALL, tmp_path, workers=1, progress=False)
    assert len(list((tmp_path / "features").glob("*.npz"))) == 2


def test_augmentation_is_seeded_per_clip_and_variant(clips, tmp_path):
    augmenter = Augmenter(AugmentSettings(), tmp_path / "noise")
    audio = clip_audio16k(clips[0].path)
    a = augmenter(audio, clips[0].path, 1)
    np.testing.assert_array_equal(a, augmenter(audio, clips[0].path, 1))
    assert not np.array_equal(a[: audio.size // 2], augmenter(audio, clips[0].path, 2)[: audio.size // 2])
    assert np.max(np.abs(a)) <= 1.0
    assert sorted(p.name for p in (tmp_path / "noise").glob("*.wav"))[0] == "car_00.wav"


def test_in_car_noise_is_low_frequency(tmp_path):
    import soundfile as sf

    from training.augment import write_car_noise

    noise, rate = sf.read(str(write_car_noise(tmp_path, count=1)[0]))
    power = np.abs(np.fft.rfft(noise)) ** 2
    freqs = np.fft.rfftfreq(noise.size, 1 / rate)
    assert power[freqs < 500].sum() > 0.9 * power.sum()  # engine hum and road rumble live below 500 Hz


def test_scores_weighted_and_unweighted():
    truth = [0, 0, 0, 0, 1, 1]
    predicted = [0, 0, 0, 0, 0, 1]
    s = scores(truth, predicted, EMOTIONS)
    assert s["wa"] == pytest.approx(5 / 6, abs=1e-4)
    assert s["ua"] == pytest.approx((1.0 + 0.5) / 2)  # only labels present count
    assert s["recall"] == {"neutral": 1.0, "calm": 0.5}


def test_class_weights_balance_labels(clips):
    features = extract([c for c in clips if c.speaker == "ravdess_01"], SMALL, "cache", workers=1, progress=False)
    ws = window_set(features, SMALL, 2.0, 0.5, EMOTIONS, speech_only=True)
    w = sample_weights(ws, TrainSettings(), len(EMOTIONS))
    per_label = [w[ws.y == k].sum() for k in np.unique(ws.y)]
    assert np.allclose(per_label, per_label[0], rtol=1e-4)  # neutral has half the clips but the same total weight


def test_class_weights_per_corpus_balance_labels_inside_each_corpus():
    """RAVDESS-like corpus with calm and half the neutral; a second corpus with plenty of neutral and no calm."""
    from training.corpora import Clip
    from training.windows import WindowSet

    labels = {"a": ["neutral"] * 2 + ["calm"] * 4 + ["angry"] * 4, "b": ["neutral"] * 12 + ["angry"] * 4}
    clips_, y, clip_index = [], [], []
    for corpus, names in labels.items():
        for name in names:
            clip_index.append(len(clips_))
            clips_.append(Clip(f"/x/{corpus}{len(clips_)}.wav", corpus, f"{corpus}_1", "female", name))
            y.append(EMOTIONS.index(name))
    n = len(clips_)
    ws = WindowSet(np.zeros((n, 2), np.float32), np.arange(n), 1, np.array(y), np.array(clip_index), np.ones(n, np.float32), clips_)
    corpus = np.array([c.corpus for c in clips_])
    y = np.array(y)

    w = sample_weights(ws, TrainSettings(class_weights="corpus"), len(EMOTIONS))
    for c in ("a", "b"):
        inside = corpus == c
        totals = [w[inside & (y == k)].sum() for k in np.unique(y[inside])]
        np.testing.assert_allclose(totals, totals[0], rtol=1e-6)  # labels equal within the corpus
    np.testing.assert_allclose(w[corpus == "a"].sum() / w[corpus == "b"].sum(), 10 / 16, rtol=1e-6)  # corpora keep their share
    neutral_a = w[(corpus == "a") & (y == EMOTIONS.index("neutral"))].sum()
    calm = w[y == EMOTIONS.index("calm")].sum()
    assert neutral_a == pytest.approx(calm)

    g = sample_weights(ws, TrainSettings(class_weights="global"), len(EMOTIONS))
    assert g[y == EMOTIONS.index("calm")].sum() > 2 * g[(corpus == "a") & (y == EMOTIONS.index("neutral"))].sum()  # what "corpus" fixes
    np.testing.assert_array_equal(sample_weights(ws, TrainSettings(class_weights="none"), len(EMOTIONS)), np.ones(n, np.float32))
    with pytest.raises(ValueError, match="class_weights='yes' is not one of none, global, corpus"):
        TrainSettings(class_weights="yes").check()
    assert TrainSettings.from_dict({"class_weights": True}).class_weights == "global"  # settings.json of older runs
    assert TrainSettings.from_dict({"class_weights": False}).class_weights == "none"


def test_avgmax_pooling_keeps_a_short_peak_that_averaging_dilutes():
    import keras

    from training.network import build_model

    model = build_model("cnn1d", 100, 8, len(EMOTIONS), width=2, pooling="avgmax")
    pooled = keras.Model(model.input, model.get_layer("gap_gmp").output)
    quiet = np.zeros((1, 100, 8), np.float32)
    peak = quiet.copy()
    peak[0, 50:52] = 5.0  # 20 ms of something loud in a 1 s window
    a, b = pooled.predict(np.concatenate([quiet, peak]), verbose=0)
    channels = a.size // 2
    assert channels == 8 * 2  # average and maximum of the last block's 8 * width maps
    avg_change = np.abs(b[:channels] - a[:channels]).max()
    max_change = np.abs(b[channels:] - a[channels:]).max()
    assert max_change > 3 * avg_change  # the maximum branch sees the peak at full size
    with pytest.raises(ValueError, match="pooling one of avg, avgmax"):
        TrainSettings(pooling="sum").check()


def test_split_is_speaker_independent(clips):
    split = Split()
    train_speakers = {c.speaker for c in split.select(clips, TRAIN)}
    assert not train_speakers & set(split.validation) and not train_speakers & set(split.test)
    described = split.describe(clips)
    assert described[VALIDATION]["clips"] == {"ased": 132, "nemo": 133, "ravdess": 240, "savee": 120, "tess": 1400, "turev": 273}
    assert described[TRAIN]["clips"]["esd"] == 500 and described[TRAIN]["clips"]["nemo"] == 2246 - 133


@pytest.mark.slow
def test_smoke_train_convert_classify(clips, tmp_path):
    import keras

    from convert.package import ConversionError, Gates, convert_run

    rng = np.random.default_rng(0)
    speakers = {"ravdess_01": 16, "ravdess_02": 16, "ravdess_17": 8}
    subset = [c for s, n in speakers.items() for c in rng.permutation([c for c in clips if c.speaker == s])[:n].tolist()]
    settings = TrainSettings(
        n_mels=26, n_ceps=26, window_s=1.0, hop_s=0.5, augment_variants=1, width=4, epochs=2, batch_size=16, vtlp_range=(0.9, 1.1),
        pooling="avgmax", class_weights="corpus",
    )  # fmt: skip
    split = Split(validation=("ravdess_17",), test=())
    report = train(subset, settings, tmp_path / "run", tmp_path / "cache", split, workers=1, threads=1, progress=False)
    assert report["data"][TRAIN]["speakers"] == ["ravdess_01", "ravdess_02"]
    assert set(report["float"][VALIDATION]) == {"ravdess", "all", "mean"}
    assert report["labels"] == list(EMOTIONS) and set(report["validation_ua_per_epoch"]) == {"ravdess", "mean"}
    assert (tmp_path / "run" / "confusion.png").stat().st_size > 1000

    # The same command gives the same model: seeds, per-clip augmentation, VTLP and mixup draws.
    again = train(subset, settings, tmp_path / "again", tmp_path / "cache", split, workers=1, threads=1, progress=False)
    assert again["float"] == report["float"]
    first, second = (keras.models.load_model(tmp_path / d / "model.keras", compile=False) for d in ("run", "again"))
    for a, b in zip(first.get_weights(), second.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)

    out = tmp_path / "models" / "smoke.tflite"
    with pytest.raises(ConversionError, match="agree on only"):
        convert_run(tmp_path / "run", subset, out, tmp_path / "cache", gates=Gates(min_agreement=1.01))
    assert not out.exists()  # a refused model is never written
    others = [c for c in clips if c.corpus == "savee"][:4]  # --data holds more than the run used: they stay out
    gates = Gates(min_agreement=0.0, max_accuracy_drop_points=100)
    contract = convert_run(tmp_path / "run", subset + others, out, tmp_path / "cache", gates=gates)
    assert contract.training_data["corpora"] == ["ravdess"] and "SAVEE" not in contract.licence
    assert contract.input.dtype == "int8" and contract.output.dtype == "int8"
    assert contract.training_data["split"][VALIDATION]["speakers"] == ["ravdess_17"]
    card = (out.parent / "MODEL_CARD.md").read_text()
    assert "| RAVDESS | English | 2 | 17 |" in card and "CC BY-NC-SA 4.0" in card and "Livingstone & Russo (2018)" in card
    assert "`cnn1d` with `avgmax` pooling" in card and "equally within each corpus" in card
    assert "50 % of the training windows were normalised with their own speaker's statistics" in card

    model = Model(out)
    result = StreamingClassifier(model).classify_file(subset[-1].path)
    assert result.probs.shape == (len(EMOTIONS),) and abs(result.probs.sum() - 1) < 0.05
    stored = json.loads(out.with_suffix(".json").read_text())["metrics"]
    assert stored["validation"]["int8"]["all"]["clips"] == 8


def _shipped():
    path = Path(__file__).resolve().parents[1] / "edge" / "models" / "ser_cnn_int8.tflite"
    if not path.exists():
        pytest.fail("the shipped model is missing: run `make model`")
    return Model(path)


def test_shipped_model_meets_its_budget():
    model = _shipped()
    assert model.path.stat().st_size <= 1024 * 1024
    m = model.contract.metrics
    assert m["parameters"] <= 1_000_000
    assert m["int8_float_agreement"]["validation"] >= 0.95
    assert set(model.contract.training_data["split"][VALIDATION]["speakers"]).isdisjoint(
        model.contract.training_data["split"][TRAIN]["speakers"]
    )


@pytest.mark.slow
def test_shipped_model_reaches_its_stated_validation_figures(clips):
    """Recompute int8 WA/UA per corpus on the validation speakers through the device's classifier."""
    model = _shipped()
    stated = model.contract.metrics["validation"]["int8"]
    validation = set(model.contract.training_data["split"][VALIDATION]["speakers"])
    classifier = StreamingClassifier(model)
    labels = model.labels
    chosen = [c for c in clips if c.speaker in validation]
    predicted = [labels.index(classifier.classify_file(c.path).label) for c in chosen]
    truth = [labels.index(c.label) for c in chosen]
    for corpus in {c.corpus for c in chosen}:
        mine = [i for i, c in enumerate(chosen) if c.corpus == corpus]
        got = scores([truth[i] for i in mine], [predicted[i] for i in mine], labels)
        assert got["wa"] == pytest.approx(stated[corpus]["wa"], abs=0.005), corpus
        assert got["ua"] == pytest.approx(stated[corpus]["ua"], abs=0.005), corpus


def test_train_cli_takes_the_held_out_speakers_and_refuses_unknown_ones(clips):
    from training.__main__ import _split, build_parser

    fold = "ravdess_01,ravdess_02,savee_JK"
    args = build_parser().parse_args(["train", "--validation", fold, "--test", ""])
    split = _split(args, clips)
    assert split.validation == ("ravdess_01", "ravdess_02", "savee_JK") and split.test == ()
    assert _split(build_parser().parse_args(["train"]), clips) == Split()
    with pytest.raises(ValueError, match="--test ravdess_24 has no clips; the speakers are "):
        _split(build_parser().parse_args(["train", "--test", "ravdess_24"]), clips)
    bare = _split(build_parser().parse_args(["train", "--validation", "JK,YAF"]), clips)
    assert bare.validation == ("savee_JK", "tess_YAF"), "a speaker only one corpus has needs no corpus prefix"


def test_vtlp_warps_the_mel_axis_of_mfcc_frames_and_needs_every_coefficient():
    from edge.frontend import dct_matrix
    from training.augment import vtlp_matrices

    frontend = FrontendSettings(n_mels=40, n_ceps=40)
    same, up, down = vtlp_matrices(np.array([1.0, 1.15, 0.85]), frontend)
    np.testing.assert_allclose(same, np.eye(40), atol=1e-6)
    dct = dct_matrix(40, 40)
    log_mel = np.zeros(40)
    log_mel[20] = 1.0  # one band: a formant
    peak = [int(np.argmax(log_mel @ dct @ m @ dct.T)) for m in (up, down)]
    assert peak[0] > 20 > peak[1]  # a shorter vocal tract moves it up, a longer one down
    with pytest.raises(ValueError, match="needs every cepstral coefficient"):
        vtlp_matrices(np.ones(1), FrontendSettings(n_mels=40, n_ceps=13))


def test_vtlp_with_fewer_coefficients_is_refused_before_any_work(clips, tmp_path):
    settings = TrainSettings(n_mels=26, n_ceps=13)  # VTLP is on by default
    with pytest.raises(ValueError, match=r"vtlp_range work on the mel axis, .* n_ceps=13, n_mels=26.*vtlp_range=\[1,1\]"):
        train(clips[:4], settings, tmp_path / "run", tmp_path / "cache", Split(validation=(), test=()), progress=False)
    assert not (tmp_path / "cache").exists()  # refused before extracting anything
    TrainSettings(n_mels=26, n_ceps=13, vtlp_range=(1.0, 1.0)).check()  # off: fine


def test_settings_read_back_lists_as_tuples():
    s = TrainSettings().with_overrides(["vtlp_range=[0.9,1.1]", "augment.snr_db=[0,20]"])
    assert s.vtlp_range == (0.9, 1.1) and s.augment.snr_db == (0, 20)
    assert TrainSettings.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    # [-4, 4] from the command line is the default (-4.0, 4.0): the same feature-cache entries.
    given = AugmentSettings(pitch_semitones=[-4, 4])
    assert given == AugmentSettings(pitch_semitones=(-4.0, 4.0)) and json.dumps(given.to_dict()) == json.dumps(AugmentSettings().to_dict())


def test_profile_sampler_draws_each_windows_own_speakers_statistics(clips):
    """profile_p's windows are normalised with their speaker's enrolment statistics over k of their clips."""
    from edge.profile import SpeechStats
    from edge.speech import SpeechSettings
    from training.features import ClipFeatures
    from training.profiles import ProfileSampler, speaker_stats

    chosen = [c for s in ("ravdess_01", "ravdess_02") for c in [c for c in clips if c.speaker == s][:3]]
    features = [ClipFeatures(c, 0, *frames_of(clip_audio16k(c.path), Frontend(SMALL), SpeechSettings())) for c in chosen]
    ws = window_set(features, SMALL, 1.0, 0.5, EMOTIONS)
    by_key = {(f.clip.path, 0): f for f in features}
    speakers = np.array([ws.clips[i].speaker for i in ws.clip])
    rng = np.random.default_rng(0)

    stats = speaker_stats(features)  # what enrolling each speaker on all three clips measures
    mean, std = ProfileSampler(ws, by_key, (3, 3)).draw(np.arange(len(ws)), rng)
    for speaker in ("ravdess_01", "ravdess_02"):
        mine = speakers == speaker
        np.testing.assert_allclose(mean[mine], np.broadcast_to(stats[speaker].mean, mean[mine].shape), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(std[mine], np.broadcast_to(stats[speaker].std, std[mine].shape), rtol=1e-4, atol=1e-4)

    per_clip = {}
    for f in features:
        one = SpeechStats(SMALL.n_ceps)
        one.add(f.mfcc, f.speech)
        per_clip[f.clip.path] = (f.clip.speaker, one.mean)
    mean, _ = ProfileSampler(ws, by_key, (1, 1)).draw(np.arange(len(ws)), rng)
    for j, speaker in enumerate(speakers):  # one clip's statistics, always one of the window's own speaker's clips
        assert any(s == speaker and np.allclose(mean[j], m, atol=1e-4) for s, m in per_clip.values())
    assert len({tuple(np.round(m, 3)) for m in mean[speakers == "ravdess_01"]}) > 1  # drawn per window


def test_convert_refuses_to_replace_the_shipped_model_unless_asked(capsys):
    from convert.__main__ import main

    assert main(["runs/never-made"]) == 2  # refused before anything is read
    assert "this would replace the shipped model edge/models/ser_cnn_int8.tflite" in capsys.readouterr().err
    root = Path(__file__).resolve().parents[1]
    assert main(["runs/never-made", "--out", "x.tflite", "--keras-out", str(root / "models" / "ser_cnn.keras")]) == 2
    assert "this would replace the shipped float model models/ser_cnn.keras" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["runs/x", "--out", "x.tflite", "--min-agreement", "1.01"])
    assert "'1.01' is not a share from 0 to 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("pair", "said"),
    [
        ("corpus_labels=no", "--set corpus_labels=no: use true or false"),  # "no" would have been read as true
        ("labels=[angry,sad]", 'use a JSON list, such as \'labels=["angry","sad"]\''),
        ("epochs=abc", "--set epochs=abc: use a whole number"),
        ("epochs=0", "epochs=0 is not allowed: use 1 or more"),
        ("ensemble=0", "ensemble=0 is not allowed: use 1 or more"),
        ("augment_variants=-1", "augment_variants=-1 is not allowed: use 0 or more"),
        ("speech=foo", "speech is a table; set its keys one by one"),
        ("augment.snr_db=20", "use a JSON list, such as 'augment.snr_db=[5.0, 30.0]'"),
        ("augment.pitch_p=abc", "--set augment.pitch_p=abc: use a number"),
        ("hop_s=0.333", "hop_s=0.333 is not allowed: use a positive multiple of 0.01 s"),
        ("dropout=1.5", "dropout=1.5 is not allowed: use from 0 up to, not including, 1"),
        ("window_s=0", "window_s=0.0 is not allowed: use at least 0.1 s"),
    ],
)
def test_set_values_of_the_wrong_type_or_range_are_refused_in_one_sentence(pair, said):
    with pytest.raises(ValueError) as refused:
        TrainSettings().with_overrides([pair])
    assert said in str(refused.value) and "\n" not in str(refused.value)


def test_the_training_cli_checks_corpora_and_out_before_reading_anything(tmp_path, capsys):
    from training.__main__ import main

    assert main(["load", "--corpora", "savee,bogus", "--out", str(tmp_path / "c.csv")]) == 2
    assert "--corpora bogus: not a corpus this loader knows; choose from" in capsys.readouterr().err
    (tmp_path / "afile").write_text("x")
    assert main(["train", "--out", str(tmp_path / "afile")]) == 2
    assert "is a file; training writes a run folder" in capsys.readouterr().err
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    assert main(["train", "--out", str(tmp_path / "mine")]) == 2
    assert "holds other files and no training run" in capsys.readouterr().err
    assert main(["train", "--config", str(tmp_path / "afile"), "--out", str(tmp_path / "r")]) == 2
    assert "is not a settings.json" in capsys.readouterr().err
