"""run's file source and the page's uploads read a second at a time: memory flat in the audio's length, FLAC of unknown length read.

Memory is measured in a subprocess (peak RSS, as benchmarks.memory does) on long files the test writes.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from benchmarks.memory import long_wav, measure, measure_upload

ROOT = Path(__file__).resolve().parents[1]
CLIP = "ravdess/Actor_01/03-01-05-02-01-01-01.flac"


@pytest.mark.slow
def test_run_source_memory_does_not_grow_with_the_length_of_the_file(data_dir, tmp_path):
    """It held the whole file: 497 MB for an hour at 16 kHz, 2.7 GB at 48 kHz stereo."""
    short = measure(["run", "--source", str(long_wav(1, 16000, 1, data_dir, tmp_path))])
    long = measure(["run", "--source", str(long_wav(20, 16000, 1, data_dir, tmp_path))])
    assert short["status"] == long["status"] == 0
    assert long["peak_mb"] < short["peak_mb"] + 15, (short, long)  # the file alone is 38 MB, its samples as float 77 MB


@pytest.mark.slow
def test_a_page_upload_needs_memory_for_its_bytes_only_not_its_samples(data_dir, tmp_path):
    """A 10-minute upload took the page from 65 MB to 1.15 GB (the whole clip decoded and framed at once)."""
    short = measure_upload(long_wav(1, 16000, 1, data_dir, tmp_path))
    long = measure_upload(long_wav(10, 16000, 1, data_dir, tmp_path))
    assert short["status"] == long["status"] == 200
    # The upload's 19 MB are held twice (the server's buffer and the form's copy); its samples never are at once.
    assert long["peak_mb"] < short["peak_mb"] + 2 * 19 + 15, (short, long)
    assert long["peak_mb"] < 150, long


@pytest.fixture()
def piped_flac(tmp_path, data_dir) -> tuple[Path, int]:
    """A FLAC written to a pipe: its header has no length (libsndfile reports 2**63 - 1 frames)."""
    from edge.audio import read_audio

    signal, rate = read_audio(data_dir / CLIP)
    path = tmp_path / "piped.flac"
    r, w = os.pipe()
    writer = subprocess.Popen(["sh", "-c", f"cat > '{path}'"], stdin=r)
    os.close(r)
    with os.fdopen(w, "wb") as pipe, sf.SoundFile(pipe, "w", rate, 1, format="FLAC") as f:
        f.write(np.tile(signal, 3))
    writer.wait(timeout=30)
    assert sf.info(str(path)).frames > 2**62
    return path, 3 * signal.size


def test_run_plays_a_flac_of_unknown_length(piped_flac, tiny_model_path):
    from edge.classifier import StreamingClassifier
    from edge.model import Model

    path, samples = piped_flac
    out = subprocess.run(
        [sys.executable, "-m", "edge", "run", "--source", str(path), "--model", str(tiny_model_path), "-v"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    windows = [json.loads(line) for line in out.stdout.splitlines() if '"window"' in line]
    expected = StreamingClassifier(Model(tiny_model_path)).classify_file(str(path)).windows
    assert len(windows) == len(expected) > 0
    assert f"ended after {samples / 16000:.1f} s of audio" in out.stderr


def test_the_page_classifies_an_upload_of_unknown_length(piped_flac, tiny_model_path):
    from edge.web.app import create_app

    path, samples = piped_flac
    client = create_app(tiny_model_path).test_client()
    answer = client.post("/api/classify", data={"file": (io.BytesIO(path.read_bytes()), "piped.flac")}, content_type="multipart/form-data")
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["duration_s"] == pytest.approx(samples / 16000, abs=1e-3)
