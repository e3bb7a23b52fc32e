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
    assert set(profile) == {"format", "speech_s", "model_sha256", "created", "updated", "prior_s", "frontend", "mean", "std"}, (
        "statistics only"
    )
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
    assert done.stderr.strip() == f"error: --out {fifo}: it is a FIFO (named pipe), not a regular file; choose another path"
    assert fifo.is_fifo()


def test_info_and_profile_show_say_what_it_holds_and_reset_deletes_it(enrolled, tmp_path, tiny_model_path):
    info = edge("info", "--json", "--model", tiny_model_path, "--profile", enrolled)
    assert info.returncode == 0, info.stderr
    held = json.loads(info.stdout)["profile"]
    assert held["speech_s"] >= 20 and held["created"] and held["model_sha256"] == Model(tiny_model_path).contract.sha256
    text = edge("info", "--model", tiny_model_path, "--profile", enrolled).stdout
    assert "  updated: never (not adapted since enrolment)" in text and text.count("never (not adapted") == 1, "only the profile's"
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
    # The speech heard (under the clip's 3-4 s), apart from the population's statistics it started from (60 s of weight).
    assert saved.updated and 0 < saved.speech_s < 4.5 and 59 < saved.prior_s <= 60
    health = [json.loads(line) for line in first.stdout.splitlines() if '"health"' in line]
    assert all(h["profile"]["adapting"] for h in health)

    second = _run(config, tiny_model_path, clips(data_dir, "Actor_05", 2)[1])
    assert second.returncode == 0, second.stderr
    assert f"voice profile {profile}: {saved.speech_s:.0f} s of speech" in second.stderr, "the restart picks the saved profile up"
    again = VoiceProfile.load(profile)
    assert again.speech_s > saved.speech_s and again.created == saved.created and again.mean != saved.mean
    assert again.prior_s < saved.prior_s, "the population's share fades as the voice is heard"


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


def test_enrol_replaces_only_a_profile_and_never_a_recording_or_another_file(enrolled, tmp_path, tiny_model_path, data_dir):
    recording = tmp_path / "call.flac"
    recording.write_bytes(clips(data_dir)[0].read_bytes())
    notes = tmp_path / "notes.json"
    notes.write_text('{"mine": true}\n')
    for out, said in (
        (recording, "it is one of the recordings given"),
        (notes, "a file that is not a voice profile is there"),
        (tmp_path / "notes.json" / "p.json", "notes.json is a file, not a folder"),
    ):
        before = out.read_bytes() if out.is_file() else None
        done = edge("enroll", "--model", tiny_model_path, "--out", out, recording, *clips(data_dir)[1:])
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr  # refused before any audio is read
        assert done.stderr.startswith(f"error: --out {out}: ") and said in done.stderr
        assert before is None or out.read_bytes() == before
    old = tmp_path / "old.json"
    old.write_bytes(enrolled.read_bytes())
    assert edge("enroll", "--model", tiny_model_path, "--out", old, *clips(data_dir)).returncode == 0, "a profile is replaced"
    assert VoiceProfile.load(old).created != VoiceProfile.load(enrolled).created


def test_enrol_reads_folders_and_names_the_files_it_could_not_read(tmp_path, tiny_model_path, data_dir):
    folder = tmp_path / "calls"
    folder.mkdir()
    for clip in clips(data_dir, count=25):
        (folder / clip.name).write_bytes(clip.read_bytes())
    missing = tmp_path / "nope.wav"
    out = tmp_path / "me.json"
    done = edge("enroll", "--model", tiny_model_path, "--out", out, folder, missing)
    assert done.returncode == 1, "written, but a file could not be read"
    assert f"skipped: {missing}: no such file" in done.stderr and f"{missing}: skipped" not in done.stderr
    assert "(1 file(s) skipped)" in done.stderr and VoiceProfile.load(out).speech_s >= 20
    (tmp_path / "empty").mkdir()
    nothing = edge("enroll", "--model", tiny_model_path, "--out", tmp_path / "none.json", missing, tmp_path / "empty")
    assert nothing.returncode == 1 and not (tmp_path / "none.json").exists()
    assert nothing.stderr.splitlines()[-1] == "error: none of the 2 file(s) could be read (each is named above); no profile was written"


def test_enrol_from_a_microphone_that_is_not_there_or_stops_says_so_and_ends(tmp_path, tiny_model_path, capsys, monkeypatch):
    from test_sources import fake_sounddevice

    from edge.commands import enroll
    from edge.service import sources

    monkeypatch.setattr(enroll.time, "sleep", lambda s: None)
    monkeypatch.setattr(sources, "_sounddevice_module", lambda: fake_sounddevice([("Speaker", 48000, 0)]))
    args = types.SimpleNamespace(files=[], seconds=5.0, device=None, model=str(tiny_model_path), out=str(tmp_path / "me.json"))
    assert enroll.main(args) == 2
    err = capsys.readouterr().err
    assert "speak now" not in err, "refused before the countdown"
    assert err.splitlines()[-1] == "error: no microphone: input device default is not present; see python -m edge devices"

    class Silent(FakeMicrophone):
        def chunks(self, stop):
            while not stop.is_set():
                yield np.zeros(0, np.int16), 48000  # opening, again and again

    monkeypatch.setattr(enroll, "LATE_S", 0.2)
    mic = Silent(np.zeros(0), 48000)
    args.seconds = 0.1
    assert enroll.main(args, source=mic) == 2
    assert capsys.readouterr().err.splitlines()[-1].startswith("error: the microphone delivered 0.0 s of the 0.1 s asked for")
    assert mic.closed and not (tmp_path / "me.json").exists()


def test_classify_says_which_profile_judged_the_files(enrolled, tiny_model_path, data_dir):
    done = edge("classify", "--json", "--model", tiny_model_path, "--profile", enrolled, clips(data_dir)[0])
    assert done.returncode == 0, done.stderr
    assert f"judged against the voice profile {enrolled} (" in done.stderr and len(done.stdout.splitlines()) == 1


@pytest.mark.parametrize(
    "change, said",
    [
        (lambda d: d.update(std=[0.0] * len(d["std"])), '"std" must be above 0 everywhere'),
        (lambda d: d.update(speech_s=-5), '"speech_s" must be a number of 0 or more'),
        (lambda d: d.update(speech_s="x"), '"speech_s" must be a number of 0 or more'),
        (lambda d: d.update(mean=[1.0, True]), '"mean" must be a list of finite numbers'),
        (lambda d: d.pop("speech_s"), 'it has no "speech_s"'),
    ],
)
def test_a_profile_with_impossible_statistics_is_refused_as_damaged(enrolled, tmp_path, change, said):
    from edge.profile import ProfileError

    data = json.loads(enrolled.read_text())
    change(data)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(ProfileError) as refused:
        VoiceProfile.load(bad)
    assert str(refused.value) == f"{bad}: the profile is damaged ({said}); delete it and enrol again (`python -m edge enroll`)"


def test_what_is_not_a_profile_is_named_in_words(tmp_path, data_dir):
    from edge.profile import ProfileError

    for content, said in (
        (b"[1, 2]", 'not a ser-edge voice profile (it has no "format": "ser-edge-profile/1")'),
        (clips(data_dir)[0].read_bytes(), "not a voice profile (it is not text; a profile is the JSON `enroll` writes)"),
    ):
        path = tmp_path / "p.json"
        path.write_bytes(content)
        with pytest.raises(ProfileError) as refused:
            VoiceProfile.load(path)
        assert str(refused.value) == f"{path}: {said}"


def test_reset_deletes_a_damaged_profile_but_no_other_file(enrolled, tmp_path, tiny_model_path):
    broken = tmp_path / "broken.json"
    broken.write_bytes(enrolled.read_bytes()[:300])  # a profile cut short
    shown = edge("profile", "show", "--model", tiny_model_path, broken)
    assert shown.returncode == 2 and "not a readable profile (broken JSON at line" in shown.stderr and "delete it" in shown.stderr
    reset = edge("profile", "reset", broken)
    assert reset.returncode == 0 and not broken.exists() and "(it was damaged)" in reset.stderr
    notes = tmp_path / "notes.json"
    notes.write_text('{"format": "mine"}\n')
    assert edge("profile", "reset", notes).returncode == 2 and notes.exists()


def test_profile_show_checks_the_coefficients_too_and_updated_is_null_in_json(enrolled, tmp_path, tiny_model_path):
    data = json.loads(enrolled.read_text())
    data["mean"], data["std"] = data["mean"][:10], data["std"][:10]
    short = tmp_path / "short.json"
    short.write_text(json.dumps(data))
    shown = json.loads(edge("profile", "show", "--json", "--model", tiny_model_path, short).stdout)
    assert shown["fits_model"] is False and shown["does_not_fit"].startswith("the profile holds 10 coefficients")
    assert shown["updated"] is None and "prior_s" not in shown, "an enrolled profile holds only the person's speech"
    text = edge("profile", "show", "--model", tiny_model_path, enrolled).stdout
    assert "updated: never (not adapted since enrolment)" in text and "fits_model: true" in text


def test_the_service_refuses_at_start_a_profile_it_could_not_save(tmp_path, tiny_model_path, data_dir):
    blocker = tmp_path / "state"
    blocker.write_text("a file where the state folder should be\n")
    config = _service_config(tmp_path, blocker / "voice.json")
    done = _run(config, tiny_model_path, clips(data_dir, "Actor_05", 1)[0])
    assert done.returncode == 2
    (line,) = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert "profile.path" in line and "adapting saves the profile there, but" in line and "is a file, not a folder" in line


def test_why_unwritable_names_a_read_only_folder(tmp_path, monkeypatch):
    from edge import files

    assert files.why_unwritable(tmp_path / "new" / "deeper" / "p.json") is None, "missing folders are made"
    monkeypatch.setattr(files.os, "access", lambda path, mode: False)  # as a read-only mount (root passes mode bits)
    assert files.why_unwritable(tmp_path / "p.json") == (
        f"the folder {tmp_path} cannot be written by this user (or is on a read-only file system)"
    )
