"""Corpus loaders on tiny files the tests write with each corpus's real naming, and the manifest's errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from training.corpora import (
    Clip,
    LoadReport,
    corpus_labels,
    corpus_of_folder,
    labels_of,
    load_ased,
    load_crema_d,
    load_data,
    load_esd,
    load_nemo,
    load_ravdess,
    load_savee,
    load_tess,
    load_turev,
)
from training.manifest import ManifestError, load_manifest, load_table, save_table

RATE = 16000


def _write(path: Path, seconds: float = 0.25, rate: int = RATE, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    if path.suffix == ".opus":  # the copies in ../shared/data: Ogg Opus at 16 kHz
        sf.write(str(path), 0.1 * np.sin(2 * np.pi * 220 * t), rate, format="OGG", subtype="OPUS")
    else:
        sf.write(str(path), 0.1 * np.sin(2 * np.pi * 220 * t), rate, format=fmt)
    return path


def _by_name(clips: list[Clip]) -> dict[str, Clip]:
    return {Path(c.path).name: c for c in clips}


def test_ravdess_original_wav_layout(tmp_path):
    _write(tmp_path / "Actor_01" / "03-01-05-02-01-01-01.wav", rate=48000)
    _write(tmp_path / "Actor_12" / "03-01-02-01-02-02-12.wav", seconds=0.5, rate=48000)
    _write(tmp_path / "Actor_12" / "03-02-03-01-01-01-12.wav")  # song: skipped, not an error
    _write(tmp_path / "Actor_12" / "03-01-09-01-01-01-12.wav")  # emotion 09 does not exist
    _write(tmp_path / "Actor_12" / "notes.wav")
    report = LoadReport()
    clips = _by_name(load_ravdess(tmp_path, report))
    angry = clips["03-01-05-02-01-01-01.wav"]
    assert (angry.label, angry.speaker, angry.gender, angry.corpus, angry.rate_hz) == ("angry", "ravdess_01", "male", "ravdess", 48000)
    calm = clips["03-01-02-01-02-02-12.wav"]
    assert (calm.label, calm.speaker, calm.gender) == ("calm", "ravdess_12", "female")
    assert calm.duration_s == pytest.approx(0.5)
    assert report.loaded == {"ravdess": 2} and report.skipped == {"ravdess": 1}
    assert sorted(Path(p).name for p in report.malformed["ravdess"]) == ["03-01-09-01-01-01-12.wav", "notes.wav"]


def test_crema_d_with_and_without_demographics(tmp_path):
    audio = tmp_path / "AudioWAV"
    for name in ("1001_DFA_ANG_XX", "1002_IEO_FEA_HI", "1091_TSI_NEU_XX", "1001_DFA_XXX_XX", "1001-DFA-ANG-XX"):
        _write(audio / f"{name}.wav")
    report = LoadReport()
    clips = _by_name(load_crema_d(audio, report))
    assert {n: (c.label, c.speaker, c.gender) for n, c in clips.items()} == {
        "1001_DFA_ANG_XX.wav": ("angry", "crema_d_1001", "unknown"),
        "1002_IEO_FEA_HI.wav": ("fearful", "crema_d_1002", "unknown"),
        "1091_TSI_NEU_XX.wav": ("neutral", "crema_d_1091", "unknown"),
    }
    assert len(report.malformed["crema_d"]) == 2

    (tmp_path / "VideoDemographics.csv").write_text(
        '"ActorID","Age","Sex","Race","Ethnicity"\n1001,51,Male,Caucasian,Not Hispanic\n1002,21,Female,Caucasian,Not Hispanic\n'
    )
    clips = _by_name(load_crema_d(audio))
    assert clips["1001_DFA_ANG_XX.wav"].gender == "male"
    assert clips["1002_IEO_FEA_HI.wav"].gender == "female"
    assert clips["1091_TSI_NEU_XX.wav"].gender == "unknown"  # not in the demographics file


def test_savee_flat_and_original_layouts(tmp_path):
    flat, original = tmp_path / "flat", tmp_path / "AudioData"
    _write(flat / "DC_a01.flac")
    _write(flat / "JK_su15.flac")
    _write(flat / "JE_sa03.flac")
    _write(flat / "JE_x01.flac")  # unknown emotion code
    _write(original / "KL" / "n30.wav", rate=44100)
    _write(original / "DC" / "f02.wav", rate=44100)
    _write(original / "info.txt.wav")  # not in a speaker folder
    report = LoadReport()
    clips = _by_name(load_savee(flat, report) + load_savee(original, report))
    assert {n: (c.label, c.speaker) for n, c in clips.items()} == {
        "DC_a01.flac": ("angry", "savee_DC"),
        "JK_su15.flac": ("surprised", "savee_JK"),
        "JE_sa03.flac": ("sad", "savee_JE"),
        "n30.wav": ("neutral", "savee_KL"),
        "f02.wav": ("fearful", "savee_DC"),
    }
    assert all(c.gender == "male" for c in clips.values())
    assert len(report.malformed["savee"]) == 2


def test_tess_folder_variants(tmp_path):
    files = {
        "OAF_Fear/OAF_back_fear.wav": ("fearful", "tess_OAF"),
        "YAF_fear/YAF_bar_fear.wav": ("fearful", "tess_YAF"),
        "OAF_Pleasant_surprise/OAF_base_ps.wav": ("surprised", "tess_OAF"),
        "YAF_pleasant_surprised/YAF_bath_ps.wav": ("surprised", "tess_YAF"),
        "OAF_Sad/OAF_bean_sad.flac": ("sad", "tess_OAF"),
        "YAF_neutral/YAF_beg_neutral.wav": ("neutral", "tess_YAF"),
    }
    for rel in files:
        _write(tmp_path / rel, rate=24414)
    _write(tmp_path / "YAF_disgust" / "YAF_bite_disgust.wav", rate=96000)  # the one 96 kHz file
    (tmp_path / "misc").mkdir()
    _write(tmp_path / "misc" / "readme.wav")
    report = LoadReport()
    clips = load_tess(tmp_path, report)
    got = {str(Path(c.path).relative_to(tmp_path.resolve())): (c.label, c.speaker) for c in clips}
    assert got == {**files, "YAF_disgust/YAF_bite_disgust.wav": ("disgust", "tess_YAF")}
    assert {c.gender for c in clips} == {"female"}
    assert {c.rate_hz for c in clips} == {24414, 96000}
    assert [Path(p).name for p in report.malformed["tess"]] == ["readme.wav"]


def test_tess_aiff_behind_a_wav_name_loads(tmp_path):
    # Two files of the original TESS are AIFF data with a .wav name; libsndfile reads the header.
    _write(tmp_path / "OAF_angry" / "OAF_youth_angry.wav", fmt="AIFF")
    (clip,) = load_tess(tmp_path)
    assert clip.label == "angry" and clip.duration_s == pytest.approx(0.25)


def test_unreadable_files_are_counted_not_fatal(tmp_path):
    _write(tmp_path / "Actor_02" / "03-01-04-01-01-01-02.wav")
    (tmp_path / "Actor_02" / "03-01-04-01-01-02-02.wav").write_bytes(b"not audio at all")
    report = LoadReport()
    clips = load_ravdess(tmp_path, report)
    assert len(clips) == 1 and len(report.unreadable["ravdess"]) == 1
    assert any("unreadable" in line for line in report.lines())


def test_load_data_finds_corpora_by_folder_name_and_table_round_trips(tmp_path):
    _write(tmp_path / "RAVDESS" / "Actor_03" / "03-01-08-01-01-01-03.wav")
    _write(tmp_path / "savee" / "JE_h07.flac")
    _write(tmp_path / "TESS Toronto emotional speech set data" / "OAF_happy" / "OAF_dog_happy.wav")
    _write(tmp_path / "CREMA-D" / "AudioWAV" / "1050_ITS_DIS_XX.wav")
    _write(tmp_path / "unrelated" / "03-01-08-01-01-01-03.wav")
    clips = load_data(tmp_path)
    assert sorted((c.corpus, c.label) for c in clips) == [
        ("crema_d", "disgust"),
        ("ravdess", "surprised"),
        ("savee", "happy"),
        ("tess", "happy"),
    ]
    assert {c.corpus for c in load_data(tmp_path, corpora=["savee"])} == {"savee"}
    save_table(clips, tmp_path / "table.csv")
    assert load_table(tmp_path / "table.csv") == clips


def test_nemo_names_speaker_emotion_and_take(tmp_path):
    for name in ("EB0_anger_10", "KS0_happiness_2", "MK0_surprised_14", "WR0_sadness_4", "EB0_boredom_1", "eb0_anger_1"):
        _write(tmp_path / f"{name}.opus")
    _write(tmp_path / "samples" / "TP0_fear_0.wav")  # the original distribution's WAV
    report = LoadReport()
    clips = _by_name(load_nemo(tmp_path, report))
    assert (clips["EB0_anger_10.opus"].label, clips["EB0_anger_10.opus"].speaker, clips["EB0_anger_10.opus"].gender) == (
        "angry",
        "nemo_EB0",
        "female",
    )
    assert (clips["KS0_happiness_2.opus"].label, clips["KS0_happiness_2.opus"].gender) == ("happy", "male")
    assert clips["TP0_fear_0.wav"].label == "fearful" and clips["TP0_fear_0.wav"].language == "pl"
    assert clips["MK0_surprised_14.opus"].rate_hz == 16000 and clips["WR0_sadness_4.opus"].label == "sad"
    assert sorted(Path(p).name for p in report.malformed["nemo"]) == ["EB0_boredom_1.opus", "eb0_anger_1.opus"]


def test_turev_folder_and_code_agree_and_calm_is_calm(tmp_path):
    _write(tmp_path / "Angry" / "1157_kz_acik.opus")
    _write(tmp_path / "Calm" / "1234_sk_beste.opus")
    _write(tmp_path / "Happy" / "7895_mt_algi.opus")
    _write(tmp_path / "Sad" / "1984_hl_deniz.opus")
    _write(tmp_path / "Sad" / "1984_kz_deniz.opus")  # the folder says sad, the code angry: not trusted
    _write(tmp_path / "Calm" / "sakin.opus")
    report = LoadReport()
    clips = _by_name(load_turev(tmp_path, report))
    assert {n: (c.label, c.speaker) for n, c in clips.items()} == {
        "1157_kz_acik.opus": ("angry", "turev_1157"),
        "1234_sk_beste.opus": ("calm", "turev_1234"),
        "7895_mt_algi.opus": ("happy", "turev_7895"),
        "1984_hl_deniz.opus": ("sad", "turev_1984"),
    }
    assert all(c.language == "tr" for c in clips.values())
    assert sorted(Path(p).name for p in report.malformed["turev"]) == ["1984_kz_deniz.opus", "sakin.opus"]


def test_esd_emotion_folders_with_and_without_the_train_test_level(tmp_path):
    _write(tmp_path / "0020" / "Angry" / "0020_000351.opus")
    _write(tmp_path / "0020" / "Surprise" / "0020_001401.opus")
    _write(tmp_path / "0013" / "Neutral" / "train" / "0013_000021.wav")  # the original layout has train/test/evaluation
    _write(tmp_path / "0003" / "Sad" / "evaluation" / "0003_001071.wav")  # a Mandarin speaker
    _write(tmp_path / "0020" / "Angry" / "0020_351.opus")
    _write(tmp_path / "0020" / "0020_000001.opus")  # no emotion folder
    report = LoadReport()
    clips = _by_name(load_esd(tmp_path, report))
    assert {n: (c.label, c.speaker, c.language) for n, c in clips.items()} == {
        "0020_000351.opus": ("angry", "esd_0020", "en"),
        "0020_001401.opus": ("surprised", "esd_0020", "en"),
        "0013_000021.wav": ("neutral", "esd_0013", "en"),
        "0003_001071.wav": ("sad", "esd_0003", "zh"),
    }
    assert clips["0020_000351.opus"].gender == "male"
    assert sorted(Path(p).name for p in report.malformed["esd"]) == ["0020_000001.opus", "0020_351.opus"]


def test_ased_speaker_is_the_last_field_and_the_code_may_be_upper_case(tmp_path):
    _write(tmp_path / "01Neutral" / "n1-01-01-01-01.opus")
    _write(tmp_path / "02Fearful" / "f2-03-02-02-29.opus")
    _write(tmp_path / "04Sad" / "S4-04-02-01-29.opus")  # one real file has an upper-case code
    _write(tmp_path / "05Angry" / "a5-01-01-02-65.opus")
    _write(tmp_path / "03Happy" / "a5-01-01-02-65.opus")  # the folder says happy, the code angry
    _write(tmp_path / "05Angry" / "a5-01-01.opus")
    report = LoadReport()
    clips = _by_name(load_ased(tmp_path, report))
    assert {(c.label, c.speaker, c.gender) for c in clips.values()} == {
        ("neutral", "ased_01", "female"),
        ("fearful", "ased_29", "male"),
        ("sad", "ased_29", "female"),  # gender as the file says; identity from the speaker number
        ("angry", "ased_65", "male"),
    }
    assert all(c.language == "am" for c in clips.values())
    assert sorted(Path(p).relative_to(tmp_path).as_posix() for p in report.malformed["ased"]) == [
        "03Happy/a5-01-01-02-65.opus",
        "05Angry/a5-01-01.opus",
    ]


@pytest.mark.parametrize(
    ("folder", "corpus"),
    [
        ("nEMO", "nemo"),
        ("nemo-main", "nemo"),
        ("TurEV-DB", "turev"),
        ("ESD", "esd"),
        ("Emotional Speech Dataset", "esd"),
        ("ASED_V1", "ased"),
        ("based", None),
        ("desk", None),
    ],
)
def test_new_corpora_are_recognised_by_folder_name(folder, corpus):
    assert corpus_of_folder(folder) == corpus


def test_label_sets_come_from_the_data():
    clips = [
        Clip("a", "nemo", "nemo_EB0", "female", "angry"),
        Clip("b", "nemo", "nemo_EB0", "female", "neutral"),
        Clip("c", "turev", "turev_1157", "unknown", "calm"),
        Clip("d", "mine", "mine_x", "unknown", "frustrated"),
    ]
    assert corpus_labels(clips) == {"mine": ("frustrated",), "nemo": ("neutral", "angry"), "turev": ("calm",)}
    assert labels_of(clips) == ("neutral", "calm", "angry", "frustrated")  # the eight emotions' order, then the rest


def test_manifest_loads_relative_paths_aliases_and_defaults(tmp_path):
    _write(tmp_path / "clips" / "a.wav")
    _write(tmp_path / "clips" / "b.flac")
    manifest = tmp_path / "mine.csv"
    manifest.write_text("path,label,speaker,corpus\nclips/a.wav,Fear,anna,home\nclips/b.flac,surprised,,\n")
    a, b = load_manifest(manifest)
    assert (a.label, a.speaker, a.corpus) == ("fearful", "home_anna", "home")
    assert (b.label, b.speaker, b.corpus) == ("surprised", "manifest_unknown", "manifest")
    headerless = tmp_path / "plain.csv"
    headerless.write_text(f"{tmp_path / 'clips' / 'a.wav'},sad\n")
    (c,) = load_manifest(headerless)
    assert c.label == "sad"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("path,label\nclips/a.wav,very happy\n", "row 2: label 'very happy' is not a name"),
        ("path,label\nclips/a.wav,sad\nclips/missing.wav,sad\n", "row 3: audio file 'clips/missing.wav' not found"),
        ("path,label\nclips/a.wav\n", "row 2: expected at least path and label"),
        ("path,label\nclips/bad.wav,sad\n", "row 2: 'clips/bad.wav' is not a readable audio file"),
        ("", "has no clips: one row per clip"),
        ("path,label,speaker,corpus\n\n", "has no clips: one row per clip"),
        ("file,emotion\nclips/a.wav,sad\n", r"row 1 looks like a header \(file,emotion\): the header must be path,label"),
        ("path,label\nclips/a.wav,sad\n./clips/a.wav,angry\n", "row 3: './clips/a.wav' is already row 2; give each clip once"),
    ],
)
def test_manifest_errors_name_row_and_value(tmp_path, body, message):
    _write(tmp_path / "clips" / "a.wav")
    (tmp_path / "clips" / "bad.wav").write_bytes(b"junk")
    manifest = tmp_path / "m.csv"
    manifest.write_text(body)
    with pytest.raises(ManifestError, match=message):
        load_manifest(manifest)


def test_manifest_from_a_spreadsheet_semicolons_and_another_encoding(tmp_path):
    _write(tmp_path / "a.wav")
    manifest = tmp_path / "excel.csv"
    manifest.write_bytes("\ufeffpath;label;speaker;corpus\r\na.wav;Anger;ayse;turev\r\n".encode())
    (clip,) = load_manifest(manifest)
    assert (clip.label, clip.speaker, clip.language) == ("angry", "turev_ayse", "tr"), "a known corpus's language by default"
    manifest.write_bytes("path,label\ncaf\xe9.wav,sad\n".encode("latin-1"))
    with pytest.raises(ManifestError, match='is not UTF-8 text: save it as "CSV UTF-8"'):
        load_manifest(manifest)


def test_manifest_missing_file():
    with pytest.raises(ManifestError, match="not found"):
        load_manifest("/nonexistent/manifest.csv")


def test_real_shared_data_loads_completely(data_dir):
    report = LoadReport()
    clips = load_data(data_dir, report=report)
    assert report.loaded == {"ravdess": 1200, "savee": 360, "tess": 2800, "nemo": 2246, "turev": 1735, "esd": 500, "ased": 1674}
    assert not report.malformed and not report.unreadable
    speakers = {c.speaker for c in clips}
    assert len(speakers) == 20 + 3 + 2 + 9 + 6 + 1 + 44  # 85
    assert {c.language for c in clips} == {"en", "pl", "tr", "am"}
    assert not any(int(s.split("_")[1]) % 3 == 0 for s in speakers if s.startswith("ased_"))  # kept for the independent evaluation
    per_corpus = corpus_labels(clips)
    assert per_corpus["nemo"] == ("neutral", "happy", "sad", "angry", "fearful", "surprised")
    assert per_corpus["turev"] == ("calm", "happy", "sad", "angry") and len(per_corpus["ravdess"]) == 8
    assert sum(c.label == "surprised" and c.corpus == "tess" for c in clips) == 400  # "ps" folders


def test_explore_shows_every_corpus_its_language_and_the_models_real_window(data_dir, tmp_path):
    from training.explore import explore
    from training.settings import TrainSettings

    clips = [c for c in load_data(data_dir) if c.speaker in ("ravdess_01", "tess_OAF", "turev_1234", "nemo_EB0", "ased_01", "esd_0020")]
    clips = [c for i, c in enumerate(clips) if i % 10 == 0]
    summary = explore(clips, tmp_path).read_text()
    for corpus, language in (("ravdess", "en"), ("turev", "tr"), ("nemo", "pl"), ("ased", "am")):
        assert f"| {corpus} | {language} |" in summary
    assert f"The model's window is {TrainSettings().window_s:g} s" in summary and "turev 100 %" in summary
    assert "| calm |" in summary and "| disgust |" in summary
    for png in ("counts.png", "durations.png", "examples.png"):
        assert (tmp_path / png).stat().st_size > 5000


def test_a_manifest_label_outside_the_eight_is_named_once(tmp_path, caplog):
    for name in ("a.wav", "b.wav", "c.wav"):
        _write(tmp_path / name)
    manifest = tmp_path / "m.csv"
    manifest.write_text("a.wav,angy\nb.wav,angy\nc.wav,sad\n")
    with caplog.at_level("WARNING"):
        clips = load_manifest(manifest)
    assert [c.label for c in clips] == ["angy", "angy", "sad"], "a label of one's own is allowed"
    said = [r.getMessage() for r in caplog.records if "is not one of the eight emotions" in r.getMessage()]
    assert len(said) == 1 and "m.csv row 1: label 'angy'" in said[0]
