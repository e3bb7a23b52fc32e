"""The benchmark scripts run and print their tables (--quick), and their measuring parts measure the right thing.

No test here looks at how fast anything is: the figures are the scripts' business.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.accuracy import active_speech_power, mix
from benchmarks.common import markdown_table, percentiles
from benchmarks.stages import summarise

ROOT = Path(__file__).resolve().parents[1]


def run_script(module: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-m", module, "--quick", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{module} --quick failed:\n{proc.stderr[-3000:]}"
    return proc


def table_rows(text: str, first_cell: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines() if line.startswith(f"| {first_cell}")]


@pytest.mark.slow
def test_latency_quick_prints_every_table(data_dir, tmp_path):
    out = tmp_path / "latency.md"
    proc = run_script("benchmarks.latency", "--data", str(data_dir), "--markdown", str(out))
    for header in ("## Latency", "### Per stage", "### Models, runtimes and threads", "### The whole `run` process", "Command: `"):
        assert header in proc.stdout
    for stage in ("resampling", "MFCC frontend", "speech detector", "inference", "decision policy", "**end to end**"):
        assert table_rows(proc.stdout, stage), f"no row for {stage}"
    process = table_rows(proc.stdout, "int8")
    assert process and not any("did not run" in " ".join(r) for r in process)
    assert out.read_text() == proc.stdout


@pytest.mark.slow
def test_latency_with_an_adapting_voice_profile(data_dir):
    proc = run_script("benchmarks.latency", "--data", str(data_dir), "--voice", "adapt", "--process-combos", "none")
    assert "Voice profile: a profile of this speech that keeps adapting" in proc.stdout
    (end_to_end,) = table_rows(proc.stdout, "**end to end**")
    assert float(end_to_end[1]) > 0


@pytest.mark.slow
def test_frontend_quick_matches_python_speech_features(data_dir):
    proc = run_script("benchmarks.frontend", "--data", str(data_dir))
    assert "## Frontend" in proc.stdout and "| implementation |" in proc.stdout
    (header,) = table_rows(proc.stdout, "implementation")
    column = header.index("max abs diff from edge")
    (psf,) = table_rows(proc.stdout, "python_speech_features")
    (streaming,) = table_rows(proc.stdout, "edge StreamingFrontend")
    # Equal settings give equal output: the largest difference is float round-off, not a different feature.
    assert float(psf[column]) < 1e-3
    assert float(streaming[column]) == 0.0


@pytest.mark.slow
def test_accuracy_quick_prints_tables_and_draws_the_plot(data_dir, tmp_path):
    png = tmp_path / "snr.png"
    proc = run_script("benchmarks.accuracy", "--data", str(data_dir), "--plot", str(png))
    assert "## Accuracy" in proc.stdout and "### Accuracy against signal-to-noise ratio" in proc.stdout
    for variant in ("float Keras", "float32 TFLite", "dynamic-range TFLite", "full-int8 TFLite"):
        assert len(table_rows(proc.stdout, variant)) == 3  # main table, per corpus, per SNR
    assert "| model | clean | 20 dB | 10 dB | 5 dB | 0 dB |" in proc.stdout
    assert "| corpus (full-int8 TFLite) | clean | 20 dB | 10 dB | 5 dB | 0 dB |" in proc.stdout
    for corpus in ("ravdess", "savee", "tess"):
        (row,) = table_rows(proc.stdout, corpus)  # the int8 model's row for it against SNR
        assert len(row) == 6 and all("(" in cell for cell in row[1:])
    (passed,) = table_rows(proc.stdout, "windows passed, of those passed clean")  # the speech gate against SNR
    assert passed[1] == "100.0 %" and all(cell.endswith(" %") for cell in passed[2:])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_noise_is_mixed_at_the_snr_of_active_speech():
    from edge.frontend import Frontend

    frontend = Frontend()
    rng = np.random.default_rng(0)
    speech = np.zeros(32000)
    speech[8000:24000] = 0.1 * rng.standard_normal(16000)  # 1 s of "speech" between half-second silences
    flags = np.zeros(frontend.settings.frames_for(speech.size), dtype=bool)
    flags[50:148] = True  # frames 50..147 lie inside the active second
    power = active_speech_power(speech, flags, frontend)
    assert power == pytest.approx(0.01, rel=0.05)  # the silence does not dilute it
    noise = rng.standard_normal(32000)
    for snr in (20.0, 0.0):
        mixed = mix(speech, noise, power, snr).astype(np.float64)
        added = mixed - speech
        measured = 10 * np.log10(power / np.mean(added**2))
        assert measured == pytest.approx(snr, abs=0.05)


def test_summary_counts_windows_per_hop_after_the_warm_up():
    # 100 ms chunks, 0.5 s hop: a window completes in every fifth chunk, 1 ms per chunk, 3 ms more when a window completes.
    n = 200
    rows = np.zeros((n, 8))
    rows[:, 0] = 1e6
    rows[4::5, 0] += 3e6
    rows[4::5, 4] = 2e6  # inference
    rows[4::5, 6] = 1  # one window
    rows[4::5, 7] = 1  # with speech
    result = {"rows_ns": rows.tolist(), "chunk_s": 0.1, "hop_s": 0.5, "cpu_s": 0.4, "audio_s": 20.0}
    s = summarise(result)
    assert s["window:end to end"] == pytest.approx((4.0, 4.0, 4.0))
    assert s["hop:end to end"] == pytest.approx((8.0, 8.0, 8.0))  # four 1 ms chunks and one 4 ms chunk
    assert s["window:inference"][0] == pytest.approx(2.0)
    assert s["rtf"] == pytest.approx(8.0 / 500.0)
    assert s["windows"] == s["speech_windows"] == 40 - 5 - 1  # warm-up hops and the (possibly short) last hop left out
    assert s["cpu_share"] == pytest.approx(0.02)


def test_percentiles_and_tables():
    assert percentiles(list(range(101))) == pytest.approx((50.0, 95.0, 99.0))
    assert all(np.isnan(percentiles([])))
    table = markdown_table(["a", "b"], [["x", 1.23456], ["y", float("nan")]])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| x | 1.235 |", "| y | – |"]


@pytest.mark.slow
def test_memory_quick_prints_its_tables(data_dir, tmp_path):
    out = tmp_path / "memory.md"
    proc = run_script("benchmarks.memory", "--data", str(data_dir), "--markdown", str(out))
    assert "## Memory against the length of the audio" in proc.stdout and out.read_text() == proc.stdout.rstrip("\n") + "\n"
    rows = table_rows(proc.stdout, "16 kHz mono") + table_rows(proc.stdout, "48 kHz stereo")
    assert len(rows) == 4 and all(r[3].endswith(" MB") and float(r[3][:-3]) > 10 for r in rows)
    (upload,) = table_rows(proc.stdout, "2 min, 16 kHz mono")
    assert upload[2] == "200"


@pytest.mark.slow
def test_classify_memory_does_not_grow_with_the_length_of_the_file(data_dir, tmp_path):
    """A 20-minute file needs no more memory than a 1-minute one: classify reads and classifies it a second at a time."""
    from benchmarks.memory import long_wav, measure

    short = measure(["classify", str(long_wav(1, 16000, 1, data_dir, tmp_path))])
    long = measure(["classify", str(long_wav(20, 16000, 1, data_dir, tmp_path))])
    assert short["status"] == long["status"] == 0
    assert long["peak_mb"] < short["peak_mb"] + 15, (short, long)  # the file alone is 38 MB, its samples as float 77 MB


@pytest.mark.parametrize(
    ("module", "args", "said"),
    [
        ("frontend", ["--seconds", "0"], "argument --seconds: '0' is not a number above 0"),
        ("frontend", ["--repeats", "0"], "argument --repeats: '0' is not a whole number above 0"),
        ("history", ["--hours", "0"], "argument --hours: '0' is not a number above 0"),
        ("memory", ["--minutes", "abc"], "'abc' is not a comma-separated list of minutes above 0"),
        ("latency", ["--input-rate", "0"], "argument --input-rate: '0' is not a whole number above 0"),
        ("latency", ["--threads", "1", "0"], "argument --threads: '0' is not a whole number above 0"),
        ("accuracy", ["--max-clips", "-5"], "argument --max-clips: '-5' is not a whole number above 0"),
    ],
)
def test_benchmark_arguments_that_would_measure_nothing_are_refused_when_parsed(module, args, said, capsys):
    import importlib

    with pytest.raises(SystemExit) as refused:
        importlib.import_module(f"benchmarks.{module}").main(args)
    assert refused.value.code == 2 and said in capsys.readouterr().err
