"""The microphone through real PortAudio (sounddevice over libportaudio2), no fake module.

The machine needs no sound card: ALSA's file plugin, named in a private ~/.asoundrc, is a capture
device whose samples come from a raw PCM file, so what the microphone hears is known exactly.
Each check runs in its own process, since ALSA reads its configuration once per process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

DEVICE = "filemic"


@pytest.fixture
def alsa_home(tmp_path, data_dir):
    """A HOME whose .asoundrc defines DEVICE, playing 20 repeats of a RAVDESS clip as raw int16."""
    import soundfile as sf

    speech, _ = sf.read(data_dir / "ravdess/Actor_01/03-01-05-02-01-01-01.flac", dtype="int16")
    raw = tmp_path / "heard.raw"
    np.tile(speech, 20).astype("<i2").tofile(raw)
    (tmp_path / ".asoundrc").write_text(
        f'pcm.{DEVICE} {{\n  type file\n  slave.pcm "null"\n  file "/dev/null"\n  infile "{raw}"\n  format "raw"\n}}\n'
    )
    return tmp_path


def run_python(code: str, home) -> subprocess.CompletedProcess:
    env = {**os.environ, "HOME": str(home)}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=60)


def test_devices_lists_the_alsa_device_with_its_rate(alsa_home):
    out = subprocess.run(
        [sys.executable, "-m", "edge", "devices", "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "HOME": str(alsa_home)},
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    devices = [json.loads(line) for line in out.stdout.splitlines()]
    assert [(d["name"], d["default_rate_hz"]) for d in devices] == [(DEVICE, 44100)]


def test_the_microphone_hears_exactly_what_the_device_plays(alsa_home):
    code = f"""
        import threading
        import numpy as np
        from edge.service.sources import MicSource

        mic = MicSource({DEVICE!r})
        stop, chunks = threading.Event(), []
        for chunk, rate in mic.chunks(stop):
            assert rate == 44100, rate
            if chunk.size:
                chunks.append(chunk)
            if len(chunks) == 10:  # one second at the default 100 ms chunks
                stop.set()
        mic.close()
        heard = np.concatenate(chunks)
        played = np.fromfile({str(alsa_home / "heard.raw")!r}, "<i2")[: heard.size]
        print(heard.dtype, heard.size, bool(np.array_equal(heard, played)), int(np.abs(heard).max()))
    """
    out = run_python(code, alsa_home)
    assert out.returncode == 0, out.stderr
    dtype, size, equal, peak = out.stdout.split()
    assert (dtype, int(size), equal) == ("int16", 44100, "True")
    assert int(peak) > 1000  # speech, not silence
