"""`python -m edge` as a user runs it: real processes, real files, exit codes and JSON lines."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from tiny_model import EMOTIONS

KEYS = ["path", "label", "probs", "duration_s", "speech"]


def run(*args, cwd=None):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-m", "edge", *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


@pytest.fixture()
def mixed_folder(tmp_path, data_dir):
    """Two good files (one stereo 44.1 kHz WAV), one silent, one not audio, one empty."""
    speech, rate = sf.read(data_dir / "ravdess/Actor_09/03-01-04-02-01-01-09.flac")
    from scipy.signal import resample_poly

    stereo = resample_poly(speech, 441, 160)
    sf.write(tmp_path / "a_stereo.wav", np.stack([stereo, stereo], axis=1), 44100)
    sf.write(tmp_path / "b_tess.flac", *sf.read(data_dir / "tess/OAF_Sad/OAF_back_sad.flac"))
    sf.write(tmp_path / "c_silent.wav", np.zeros(16000), 16000)
    (tmp_path / "d_text.wav").write_text("hello, not audio")
    (tmp_path / "e_empty.flac").write_bytes(b"")
    return tmp_path


def test_json_lines_one_per_file_and_the_batch_continues(mixed_folder, tiny_model_path):
    out = run("classify", "--json", "--model", tiny_model_path, mixed_folder, mixed_folder / "missing.wav")
    assert out.returncode == 1, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [os.path.basename(d["path"]) for d in lines] == [
        "a_stereo.wav",
        "b_tess.flac",
        "c_silent.wav",
        "d_text.wav",
        "e_empty.flac",
        "missing.wav",
    ]
    for good in lines[:2]:
        assert list(good) == KEYS and list(good["probs"]) == list(EMOTIONS)
        assert good["label"] in EMOTIONS and good["speech"] is True
        assert sum(good["probs"].values()) == pytest.approx(1, abs=0.02)
    assert lines[0]["duration_s"] == pytest.approx(sf.info(mixed_folder / "a_stereo.wav").duration, abs=1e-3)
    for bad, fragment in zip(lines[2:], ["silent", "not an audio file", "empty", "no such file"], strict=True):
        assert list(bad) == ["path", "error"] and fragment in bad["error"]
    assert "Traceback" not in out.stderr
    assert re.fullmatch(r"6 files, 4 failed, \d+\.\d s", out.stderr.strip().splitlines()[-1])  # the batch's summary, on stderr


def test_all_good_exits_zero_with_a_table(tiny_model_path, data_dir):
    out = run("classify", "--model", tiny_model_path, data_dir / "savee/DC_h01.flac", data_dir / "savee/JE_n02.flac")
    assert out.returncode == 0, out.stderr
    rows = out.stdout.splitlines()
    assert rows[0].split() == ["file", "emotion", "p", "secs", "speech"]
    assert len(rows) == 3 and rows[1].split()[1] in EMOTIONS


def test_paths_are_echoed_as_given(tiny_model_path, data_dir):
    out = run("classify", "--json", "--model", tiny_model_path, "savee/DC_a01.flac", cwd=data_dir)
    assert json.loads(out.stdout)["path"] == "savee/DC_a01.flac"


def test_usage_and_model_errors_exit_two(tiny_model_path, tmp_path):
    assert run("classify").returncode == 2
    assert run("frobnicate").returncode == 2
    out = run("classify", "--model", tmp_path / "none.tflite", "x.wav")
    assert out.returncode == 2 and "not found" in out.stderr and "Traceback" not in out.stderr
    out = run("classify", "--threads", "0", "--model", tiny_model_path, "x.wav")
    assert out.returncode == 2


def test_version_help_and_info(tiny_model_path):
    from edge import __version__

    assert __version__ in run("--version").stdout
    helptext = run("classify", "--help").stdout
    assert "--json" in helptext and "exit status" in helptext
    info = json.loads(run("info", "--json", "--model", tiny_model_path).stdout)
    assert info["labels"] == list(EMOTIONS) and info["runtime"] and info["versions"]["numpy"] == np.__version__
    assert info["speech"]["detector"] in ("silero", "energy", "webrtc"), "the speech gate the device runs"


def test_shipped_model_classifies_the_bundled_samples():
    out = run("classify", "--json", "samples/", cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(lines) == 3
    for d in lines:
        # RAVDESS names carry the emotion in their third field (01 neutral ... 08 surprised);
        # these actors trained the model, so it must get them right.
        emotion = EMOTIONS[int(Path(d["path"]).name.split("-")[2]) - 1]
        assert d["label"] == emotion and d["speech"] is True, d


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_and_log_format_work_before_or_after_the_command(tiny_model_path, where):
    flags, command = ["--debug", "--log-format", "json"], ["classify", "--model", tiny_model_path, "samples/"]
    out = run(*(flags + command if where == "before" else command + flags), cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr
    logged = [json.loads(line) for line in out.stderr.splitlines()]
    assert any(entry["level"] == "DEBUG" and entry["logger"] == "edge.runtime" for entry in logged)
    assert "DEBUG" not in run(*command, cwd=Path(__file__).resolve().parents[1]).stderr
