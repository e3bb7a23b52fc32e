"""Voice profiles from the command line and in the service: enrol, use, show, reset, adapt and keep across restarts and kills."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
from tiny_model import copy_committed

from edge.audio import audio_blocks
from edge.classifier import StreamingClassifier
from edge.model import Model
from edge.profile import VoiceProfile

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 300


def edge(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "edge", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=TIMEOUT_S)


def clips(data_dir: Path, actor: str = "Actor_03", count: int = 30) -> list[Path]:
    return sorted((data_dir / "ravdess" / actor).glob("*.flac"))[:count]


@pytest.fixture(scope="module")
def enrolled(tmp_path_factory, tiny_model_path, data_dir) -> Path:
    """A profile of RAVDESS actor 3 made by `python -m edge enroll` from 30 of their clips (about 40 s of speech)."""
    out = tmp_path_factory.mktemp("profile") / "actor3.json"
    done = edge("enroll", "--model", tiny_model_path, "--out", out, *clips(data_dir))
    assert done.returncode == 0, done.stderr
    assert "no audio is kept" in done.stderr
    return out


def test_enrol_then_classify_with_the_profile_round_trips(enrolled, tmp_path, tiny_model_path, data_dir):
    profile = json.loads(enrolled.read_text())
    assert profile["speech_s"] >= 20 and profile["model_sha256"] == Model(tiny_model_path).contract.sha256
    assert set(profile) == {"format", "speech_s", "model_sha256", "created", "updated", "frontend", "mean", "std"}, "statistics only"
    assert enrolled.stat().st_size < 16_000, "a few kilobytes"
    # With the shipped model, whose windows are normalised with statistics a profile replaces (the tiny one's are per window).
    shipped_profile = tmp_path / "actor3-shipped.json"
    assert edge("enroll", "--out", shipped_profile, *clips(data_dir)).returncode == 0
    clip = clips(data_dir, "Actor_03", 40)[-1]  # not one of the enrolment clips
    out = edge("classify", "--json", "--profile", shipped_profile, clip)
    assert out.returncode == 0, out.stderr
    line = json.loads(out.stdout)
    model = Model()
    expected = StreamingClassifier(model, profile=VoiceProfile.load(shipped_profile, model.contract)).classify_file(str(clip))
    np.testing.assert_allclose(list(line["probs"].values()), expected.probs, atol=1e-4)
    without = StreamingClassifier(model).classify_file(str(clip))
    assert not np.allclose(expected.probs, without.probs, atol=1e-3), "the profile changes what the model sees"


def test_too_little_speech_gets_the_one_sentence_and_no_file(tmp_path, tiny_model_path, data_dir):
    out_path = tmp_path / "short.json"
    done = edge("enroll", "--model", tiny_model_path, "--out", out_path, *clips(data_dir, count=3))
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1].startswith("error: only ") and "a profile needs at least 20 s" in done.stderr
    assert not out_path.exists()


@pytest.mark.parametrize("command", ["classify", "info", "run", "serve"])
def test_a_profile_for_another_model_is_refused_in_one_sentence(enrolled, tmp_path, data_dir, command):
    other = copy_committed(tmp_path, "other", ("neutral", "happy", "sad", "angry"))  # same frontend, another model
    clip = clips(data_dir)[0]
    args = {
        "classify": ["classify", clip],
        "info": ["info"],
        "run": ["run", "--source", clip],
        "serve": ["serve", "--port", "0"],
    }[command]
    done = edge(*args, "--model", other, "--profile", enrolled)
    assert done.returncode == 2
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert "the profile belongs to another model" in line and "enroll" in line


def test_enrol_refuses_to_write_over_what_is_not_a_regular_file(tmp_path, tiny_model_path, data_dir):
    fifo = tmp_path / "profile.json"
    os.mkfifo(fifo)
    done = edge("enroll", "--model", tiny_model_path, "--out", fifo, clips(data_dir)[0])
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: --out {fifo} is a FIFO (named pipe), not a regular file; choose another path"
    assert fifo.is_fifo()


def test_info_and_profile_show_say_what_it_holds_and_reset_deletes_it(enrolled, tmp_path, tiny_model_path):
    info = edge("info", "--json", "--model", tiny_model_path, "--profile", enrolled)
    assert info.returncode == 0, info.stderr
    held = json.loads(info.stdout)["profile"]
    assert held["speech_s"] >= 20 and held["created"] and held["model_sha256"] == Model(tiny_model_path).contract.sha256
    shown = edge("profile", "show", "--json", "--model", tiny_model_path, enrolled)
    assert shown.returncode == 0 and json.loads(shown.stdout)["fits_model"] is True
    copy = tmp_path / "copy.json"
    copy.write_bytes(enrolled.read_bytes())
    reset = edge("profile", "reset", "--model", tmp_path / "gone.tflite", copy)
    assert reset.returncode == 0 and not copy.exists(), "deleting a profile needs no model"
    missing = edge("profile", "show", copy)
    assert missing.returncode == 2 and "no such profile" in missing.stderr


def test_profile_reset_that_cannot_delete_says_so_in_one_sentence(enrolled, tmp_path, monkeypatch, capsys):
    from edge.commands import profile as command

    def refused(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(command.os, "remove", refused)  # as a profile in a folder of another user (root may delete anywhere)
    assert command.main(types.SimpleNamespace(action="reset", path=str(enrolled), model=None, json=False)) == 1
    assert enrolled.exists()
    assert capsys.readouterr().err.splitlines() == [
        f"error: cannot delete {enrolled} (permission denied); run this as the user who owns it"
    ]


class FakeMicrophone:
    """The source interface (edge.service.sources) with real speech in 100 ms int16 chunks at 48 kHz, and quiet gaps."""

    name = "mic:fake"

    def __init__(self, speech: np.ndarray, rate: int) -> None:
        self.speech, self.rate, self.closed = speech, rate, False

    def chunks(self, stop):
        step = self.rate // 10
        for i in range(0, self.speech.size, step):
            if stop.is_set():
                return
            if i % (step * 20) == 0:
                yield np.zeros(0, np.int16), self.rate  # the microphone had nothing ready
            yield (self.speech[i : i + step] * 32767).astype(np.int16), self.rate

    def close(self):
        self.closed = True


def test_enrol_from_the_microphone_counts_down_shows_a_level_and_writes_the_profile(
    tmp_path, tiny_model_path, data_dir, capsys, monkeypatch
):
    from edge.commands import enroll
    from edge.resample import resample

    monkeypatch.setattr(enroll.time, "sleep", lambda s: None)  # the countdown's seconds
    speech = np.concatenate([block for block, _ in (b for clip in clips(data_dir) for b in audio_blocks(clip))])
    mic = FakeMicrophone(resample(speech, 16000, 48000).astype(np.float32), 48000)
    out = tmp_path / "me.json"
    args = types.SimpleNamespace(files=[], seconds=60.0, device=None, model=str(tiny_model_path), out=str(out))
    assert enroll.main(args, source=mic) == 0
    err = capsys.readouterr().err
    assert "speak now" in err and "dBFS" in err and "s left" in err and mic.closed
    profile = VoiceProfile.load(out, Model(tiny_model_path).contract)
    assert profile.speech_s >= 20


def _service_config(tmp_path: Path, profile: Path, interval_s: float = 10.0) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(f'[profile]\npath = "{profile}"\nadapt = true\nsave_interval_s = {interval_s}\n[output]\nverbose = true\n')
    return config


def _run(config: Path, model: Path, source: Path) -> subprocess.CompletedProcess:
    return edge("run", "--config", config, "--model", model, "--source", source)


def test_run_adapts_saves_on_stop_and_a_restart_starts_from_what_was_saved(tmp_path, tiny_model_path, data_dir):
    profile = tmp_path / "state" / "voice.json"
    config = _service_config(tmp_path, profile)
    first = _run(config, tiny_model_path, clips(data_dir, "Actor_05", 1)[0])
    assert first.returncode == 0, first.stderr
    assert "does not exist yet: learning the voice" in first.stderr
    saved = VoiceProfile.load(profile, Model(tiny_model_path).contract)
    assert saved.updated and saved.speech_s > 60, "the population's 60 s, and the speech heard"
    health = [json.loads(line) for line in first.stdout.splitlines() if '"health"' in line]
    assert all(h["profile"]["adapting"] for h in health)

    second = _run(config, tiny_model_path, clips(data_dir, "Actor_05", 2)[1])
    assert second.returncode == 0, second.stderr
    assert f"voice profile {profile}: {saved.speech_s:.0f} s of speech" in second.stderr, "the restart picks the saved profile up"
    again = VoiceProfile.load(profile)
    assert again.speech_s > saved.speech_s and again.created == saved.created and again.mean != saved.mean


def test_sigkill_during_saving_always_leaves_a_readable_profile(tmp_path, tiny_model_path, enrolled, data_dir):
    """A process that saves an adapting profile as fast as it can, killed at ten moments: every time the file reads."""
    path = tmp_path / "voice.json"
    clip = clips(data_dir, "Actor_05", 1)[0]
    script = f"""
import numpy as np
from edge.classifier import StreamingClassifier
from edge.model import Model
from edge.profile import Adaptation, VoiceProfile
from edge.voice import ProfileKeeper
model = Model({str(tiny_model_path)!r})
classifier = StreamingClassifier(model, profile=VoiceProfile.load({str(enrolled)!r}, model.contract), adapt=Adaptation())
keeper = ProfileKeeper(classifier, {str(path)!r}, interval_s=0.0)
from edge.audio import read_audio
speech, rate = read_audio({str(clip)!r})
print("ready", flush=True)
while True:
    for i in range(0, speech.size, rate // 10):
        classifier.process(speech[i : i + rate // 10], rate)
        keeper.tick()
"""
    for i in range(10):
        proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.05 + 0.03 * i)  # a moment somewhere in the save loop; the outcome, not the time, is checked
        proc.send_signal(signal.SIGKILL)
        proc.wait(TIMEOUT_S)
        proc.stdout.close()
        if path.exists():
            VoiceProfile.load(path, Model(tiny_model_path).contract)  # raises if half-written
    assert path.exists(), "at least one save happened"


def _profile(speech_s: float) -> VoiceProfile:
    return VoiceProfile(
        mean=(speech_s, 0.0), std=(1.0, 1.0), speech_s=speech_s, model_sha256="0" * 64, frontend={}, created="2026-11-30T00:00:00+00:00"
    )


def test_the_keeper_writes_from_its_own_thread_and_close_saves_the_last(tmp_path, monkeypatch):
    """The audio loop's tick only hands the profile over; the writes happen elsewhere, the last one on close."""
    import threading

    from edge.voice import ProfileKeeper

    writers, written = [], []
    monkeypatch.setattr(VoiceProfile, "save", lambda self, path: (writers.append(threading.current_thread()), written.append(self)))
    classifier = types.SimpleNamespace(profile=_profile(60.0))
    classifier.current_profile = lambda: classifier.profile
    keeper = ProfileKeeper(classifier, tmp_path / "voice.json", interval_s=300.0, clock=lambda: 0.0)
    keeper.tick(299.0)
    classifier.profile = _profile(61.0)
    keeper.tick(300.0)  # due: handed to the writer
    classifier.profile = _profile(62.0)
    keeper.close()
    assert threading.current_thread() not in writers, "nothing was written in the loop's thread"
    assert written[-1].speech_s == 62.0 and keeper.saves == len(written), "close saved the profile as it was at the stop"
    assert [p.speech_s for p in written] in ([61.0, 62.0], [62.0]), "an unchanged or superseded profile is not written again"
