"""Valid inputs get a verdict and unusable ones the right sentence."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
CLIP = "ravdess/Actor_01/03-01-05-02-01-01-01.flac"
TIMEOUT_S = 120
NOBODY = 65534  # a user without root's power to read any file


def edge(*args, user: int | None = None, cwd=ROOT):
    as_user = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] if user is not None else []
    command = [*as_user, sys.executable, "-m", "edge", *[a if isinstance(a, bytes) else str(a) for a in args]]
    return subprocess.run(command, capture_output=True, cwd=cwd, timeout=TIMEOUT_S)


def lines(stream: bytes) -> list[str]:
    return [line for line in stream.decode("utf-8").splitlines() if line.strip()]


@pytest.fixture()
def shared_folder():
    """A folder another user can reach (pytest's tmp is root's own), removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="ser-edge-test-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


def needs_root():
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("reading as another user needs root and setpriv (util-linux)")


# -- file names that are not UTF-8 ---------------------------------------------------------------


@pytest.fixture()
def latin1_named(tmp_path, data_dir) -> bytes:
    name = os.fsencode(tmp_path) + b"/caf\xe9.flac"  # "café" in Latin-1: not UTF-8
    with open(name, "wb") as f:
        f.write((data_dir / CLIP).read_bytes())
    return name


def test_json_output_for_a_name_that_is_not_utf8_is_valid_utf8_json(latin1_named, tiny_model_path):
    out = edge("classify", "--json", "--model", tiny_model_path, latin1_named)
    (line,) = lines(out.stdout)  # decodes as strict UTF-8
    answer = json.loads(line)
    assert answer["path"].endswith("caf\ufffd.flac"), "the undecodable byte is shown as U+FFFD, never a lone surrogate"
    answer["path"].encode("utf-8")  # a lone surrogate would raise here


def test_a_file_whose_name_is_not_utf8_is_classified(latin1_named, tiny_model_path):
    out = edge("classify", "--json", "--model", tiny_model_path, latin1_named)
    assert out.returncode == 0, out.stdout
    assert "label" in json.loads(out.stdout)


# -- permissions -----------------------------------------------------------------------------------


def test_run_names_a_source_it_may_not_read(shared_folder, data_dir):
    needs_root()
    clip = shared_folder / "locked.flac"
    clip.write_bytes((data_dir / CLIP).read_bytes())
    clip.chmod(0)
    out = edge("run", "--source", clip, user=NOBODY)
    assert out.returncode == 2
    assert lines(out.stderr) == [
        f'error: audio.source = "{clip}" is not allowed: this user cannot read it (permission denied); '
        "make it readable (chmod, chgrp) or choose another"
    ]


def test_classify_names_a_file_it_may_not_read(shared_folder, data_dir):
    needs_root()
    clip = shared_folder / "locked.flac"
    clip.write_bytes((data_dir / CLIP).read_bytes())
    clip.chmod(0)
    out = edge("classify", "--json", clip, user=NOBODY)
    assert "permission denied" in json.loads(out.stdout)["error"]


# -- folders and FIFOs given as a file ----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_run_names_a_folder_or_fifo_given_as_source(tmp_path, kind):
    path = tmp_path / "source.wav"
    path.mkdir() if kind == "folder" else os.mkfifo(path)
    out = edge("run", "--source", path)  # a wait on the FIFO would end in edge()'s timeout
    assert out.returncode == 2
    what = "a folder" if kind == "folder" else "a FIFO (named pipe)"
    assert lines(out.stderr) == [
        f'error: audio.source = "{path}" is not allowed: it is {what}, not a file; use "mic", "-" or an audio file'
    ]


@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_a_folder_or_fifo_given_as_model_is_named(tmp_path, kind):
    path = tmp_path / "model.tflite"
    path.mkdir() if kind == "folder" else os.mkfifo(path)
    out = edge("classify", "--model", path, ROOT / "samples")
    assert out.returncode == 2
    assert ("is a folder" if kind == "folder" else "is a FIFO") in out.stderr.decode()


# -- a FLAC whose header claims 2**36 samples ------------------------------------------------------


def flac_claiming(path: Path, seconds: float = 4.0) -> Path:
    """A real 16 kHz FLAC of ``seconds`` whose STREAMINFO says it holds 2**36 - 1 samples (about 50 days)."""
    rate = 16000
    t = np.arange(int(seconds * rate)) / rate
    x = (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    sf.write(path, x, rate, format="FLAC")
    data = bytearray(path.read_bytes())
    assert data[:4] == b"fLaC"
    at = 8 + 10  # STREAMINFO's block follows "fLaC" and a 4-byte header; rate, channels, bits and the 36-bit total start 10 bytes in
    fields = int.from_bytes(data[at : at + 8], "big") | ((1 << 36) - 1)
    data[at : at + 8] = fields.to_bytes(8, "big")
    path.write_bytes(bytes(data))
    assert sf.info(path).frames == (1 << 36) - 1
    return path


def test_run_on_a_flac_claiming_2_to_the_36_samples_says_so_in_one_sentence(tmp_path, tiny_model_path):
    path = flac_claiming(tmp_path / "liar.flac")
    out = edge("run", "--source", path, "--model", tiny_model_path, "-v")
    err = out.stderr.decode()
    assert "Traceback" not in err and out.returncode == 1
    (error,) = [line for line in err.splitlines() if " ERROR " in line]
    assert f"{path}: " in error and "truncated" in error
    windows = [json.loads(line) for line in lines(out.stdout) if '"window"' in line]
    assert windows, "what the file does hold is classified before the end"


# -- limits and warnings ---------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["classify", "serve"])
def test_threads_are_capped_as_run_caps_them(command, tiny_model_path):
    args = ["classify", ROOT / "samples"] if command == "classify" else ["serve", "--port", "0"]
    out = edge(*args, "--model", tiny_model_path, "--threads", "100000")
    assert out.returncode == 2
    assert lines(out.stderr) == ["error: --threads 100000 is not allowed: use a thread count from 1 to 64"]


def test_audio_under_8_khz_gets_a_verdict_with_a_warning(tmp_path, data_dir, tiny_model_path):
    from edge.audio import read_audio
    from edge.resample import resample

    speech, rate = read_audio(data_dir / CLIP)
    low = tmp_path / "phone.wav"
    sf.write(low, resample(speech, rate, 6000), 6000)
    out = edge("classify", "--json", "--model", tiny_model_path, low)
    assert out.returncode == 0
    answer = json.loads(out.stdout)
    assert answer["label"] and answer["warning"].startswith(f"{low}: recorded at 6000 Hz, under the 8000 Hz the model needs")
    ok = json.loads(edge("classify", "--json", "--model", tiny_model_path, data_dir / CLIP).stdout)
    assert "warning" not in ok
    run = edge("run", "--source", low, "--model", tiny_model_path)
    assert "recorded at 6000 Hz" in run.stderr.decode() and run.returncode == 0
