"""Audio sources: file (fast, paced, looped), raw PCM on a pipe, and the microphone through a fake sounddevice."""

from __future__ import annotations

import os
import threading
import types

import numpy as np
import pytest

from edge.audio import read_audio
from edge.service import sources
from edge.service.backoff import BackoffSettings
from edge.service.sources import FileSource, MicSource, SourceError, StdinSource, find_device, open_source

RAVDESS_ANGRY = "ravdess/Actor_01/03-01-05-02-01-01-01.flac"
TESS_CLIP = "tess/OAF_angry/OAF_back_angry.flac"  # 24,414 Hz


def collect(source, stop=None, limit=10_000):
    stop = stop or threading.Event()
    out = []
    for chunk, rate in source.chunks(stop):
        out.append((chunk, rate))
        if len(out) >= limit:
            stop.set()
    return out


def test_file_source_yields_the_whole_file_in_chunks_at_its_own_rate(data_dir):
    path = data_dir / TESS_CLIP
    audio, rate = read_audio(path)
    source = FileSource(str(path), chunk_ms=100)
    chunks = collect(source)
    assert rate == 24414 and {r for _, r in chunks} == {rate}
    assert all(c.size == rate // 10 for c, _ in chunks[:-1])
    np.testing.assert_array_equal(np.concatenate([c for c, _ in chunks]), audio)


def test_file_source_loops_until_stopped(data_dir):
    path = data_dir / RAVDESS_ANGRY
    audio, _ = read_audio(path)
    source = FileSource(str(path), chunk_ms=250, loop=True)
    per_pass = -(-audio.size // source.chunk_samples)
    chunks = collect(source, limit=per_pass * 2 + 3)
    joined = np.concatenate([c for c, _ in chunks])
    np.testing.assert_array_equal(joined[: audio.size], audio)
    np.testing.assert_array_equal(joined[audio.size : 2 * audio.size], audio)
    assert source.passes == 2


def test_realtime_file_source_waits_as_long_as_the_audio_lasts(data_dir, monkeypatch):
    """A fake clock that only the source's waits advance: the total wait equals the audio's duration."""
    clock = [1000.0]
    monkeypatch.setattr(sources.time, "monotonic", lambda: clock[0])

    class FakeStop:
        def is_set(self):
            return False

        def wait(self, seconds):
            clock[0] += seconds
            return False

    path = data_dir / RAVDESS_ANGRY
    audio, rate = read_audio(path)
    source = FileSource(str(path), chunk_ms=100, realtime=True)
    released = []
    for chunk, _ in source.chunks(FakeStop()):
        released.append((clock[0] - 1000.0, chunk.size))
    sent = np.cumsum([n for _, n in released])
    # Every chunk is released exactly when its last sample would have been captured.
    np.testing.assert_allclose([t for t, _ in released], sent / rate, atol=1e-9)
    assert clock[0] - 1000.0 == pytest.approx(audio.size / rate)


def test_file_source_refuses_a_missing_or_unreadable_file(tmp_path):
    with pytest.raises(SourceError, match="no such file"):
        FileSource(str(tmp_path / "nope.wav"))
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really")
    with pytest.raises(SourceError, match="bad.wav"):
        open_source(sources.SourceSettings(source=str(bad)))


def _pcm_pipe(payload: bytes, pieces: list[int]):
    """A pipe whose writer sends ``payload`` in pieces of the given sizes (odd ones split frames), then closes."""
    read_fd, write_fd = os.pipe()

    def writer():
        at = 0
        for size in pieces:
            os.write(write_fd, payload[at : at + size])
            at += size
        os.write(write_fd, payload[at:])
        os.close(write_fd)

    thread = threading.Thread(target=writer)
    thread.start()
    return read_fd, thread


def test_stdin_source_decodes_s16le_split_anywhere(data_dir):
    audio, _ = read_audio(data_dir / RAVDESS_ANGRY)
    pcm = np.round(audio * 32767).astype("<i2")
    read_fd, thread = _pcm_pipe(pcm.tobytes(), [1, 3, 4097, 10_001, 7])
    try:
        chunks = collect(StdinSource(rate_hz=16000, fd=read_fd))
    finally:
        thread.join()
        os.close(read_fd)
    assert {r for _, r in chunks} == {16000}
    np.testing.assert_array_equal(np.concatenate([c for c, _ in chunks]), pcm)


def test_stdin_source_mixes_interleaved_channels_to_mono():
    left = np.array([1000, -2000, 3000, 0], dtype="<i2")
    right = np.array([3000, 2000, -3000, 100], dtype="<i2")
    read_fd, thread = _pcm_pipe(np.stack([left, right], axis=1).tobytes(), [5])
    try:
        chunks = collect(StdinSource(rate_hz=8000, channels=2, fd=read_fd))
    finally:
        thread.join()
        os.close(read_fd)
    mono = np.concatenate([c for c, _ in chunks if c.size])
    np.testing.assert_allclose(mono, (left.astype(np.float32) + right) / 2 / 32768.0)


def test_stdin_source_yields_empty_chunks_while_the_pipe_is_quiet_and_stops_on_request():
    read_fd, write_fd = os.pipe()
    stop = threading.Event()
    got = []
    try:
        for chunk, _ in StdinSource(fd=read_fd).chunks(stop):
            got.append(chunk.size)
            if len(got) == 2:
                stop.set()
    finally:
        os.close(read_fd)
        os.close(write_fd)
    assert got == [0, 0]


# ------------------------------------------------------------------------------------------ microphone


class FakeStream:
    """Delivers chunks to the callback from its own thread, like PortAudio behind sounddevice."""

    def __init__(self, rate, frames, callback, chunks, overflow_at=()):
        self.rate, self.frames, self.callback = rate, frames, callback
        self.active = False
        self._chunks, self._overflow_at = chunks, overflow_at
        self._thread = threading.Thread(target=self._deliver, daemon=True)

    def start(self):
        self.active = True
        self._thread.start()

    def _deliver(self):
        for i in range(self._chunks):
            if not self.active:
                return
            data = (np.full(self.frames, i + 1, dtype=np.int16)).tobytes()
            self.callback(data, self.frames, None, types.SimpleNamespace(input_overflow=i in self._overflow_at))
        self.active = False  # the device went away (unplugged)

    def stop(self):
        self.active = False

    def close(self):
        self.active = False


def fake_sounddevice(devices, busy_opens=0, chunks_per_stream=3, overflow_at=()):
    """A stand-in for the sounddevice module: `devices` are (name, rate, input channels)."""
    state = types.SimpleNamespace(opens=0, failed_opens=0, streams=[], rescans=0)

    class PortAudioError(Exception):
        pass

    def query_devices(device=None, kind=None):
        listed = [{"name": n, "index": i, "max_input_channels": c, "default_samplerate": float(r)} for i, (n, r, c) in enumerate(devices)]
        if kind == "input":
            inputs = [d for d in listed if d["max_input_channels"] > 0]
            if not inputs:
                raise PortAudioError("Error querying device -1")
            return inputs[0]
        return listed

    def RawInputStream(samplerate, blocksize, device, channels, dtype, callback):  # noqa: N802 (sounddevice's name)
        assert (channels, dtype) == (1, "int16")
        if state.failed_opens < busy_opens:
            state.failed_opens += 1
            raise PortAudioError("Error opening RawInputStream: Device unavailable [PaErrorCode -9985]")
        state.opens += 1
        stream = FakeStream(samplerate, blocksize, callback, chunks_per_stream, overflow_at)
        state.streams.append(stream)
        return stream

    def _terminate():
        state.rescans += 1

    return types.SimpleNamespace(
        query_devices=query_devices,
        RawInputStream=RawInputStream,
        PortAudioError=PortAudioError,
        _terminate=_terminate,
        _initialize=lambda: None,
        state=state,
    )


FAST = BackoffSettings(initial_s=0.01, max_s=0.02, jitter=0.0)


def test_mic_opens_at_the_device_rate_counts_overflows_and_reopens_when_unplugged():
    module = fake_sounddevice([("HDMI out", 48000, 0), ("USB Mic", 44100, 1)], chunks_per_stream=3, overflow_at=(1,))
    mic = MicSource("usb", chunk_ms=100, sounddevice_module=module, backoff=FAST, stall_s=5.0)
    stop = threading.Event()
    audio = []
    for chunk, rate in mic.chunks(stop):
        assert rate == 44100
        if chunk.size:
            audio.append(chunk)
        if len(audio) == 6:  # two streams' worth: the first "unplugged" after 3 chunks
            stop.set()
    mic.close()
    assert [c.size for c in audio] == [4410] * 6
    assert [int(c[0]) for c in audio] == [1, 2, 3, 1, 2, 3]
    assert module.state.opens == 2 and mic.reopens == 1
    assert module.state.rescans == 2  # every open looks for devices afresh (one plugged in since)
    assert mic.overflows >= 1  # the flagged callback; overflows never end the stream


def test_mic_retries_a_busy_device_with_backoff(caplog):
    module = fake_sounddevice([("USB Mic", 16000, 1)], busy_opens=2, chunks_per_stream=1)
    mic = MicSource("", sounddevice_module=module, backoff=FAST)
    stop = threading.Event()
    with caplog.at_level("WARNING"):
        for chunk, _ in mic.chunks(stop):
            if chunk.size:
                stop.set()
    mic.close()
    assert module.state.failed_opens == 2 and module.state.opens == 1
    assert sum("retrying" in r.getMessage() for r in caplog.records) == 2


def test_mic_keeps_yielding_empty_chunks_while_it_waits_to_retry():
    """The daemon's loop must keep turning (watchdog pings, stop) while the microphone is missing."""
    module = fake_sounddevice([("USB Mic", 16000, 1)], busy_opens=1, chunks_per_stream=1)
    mic = MicSource("", sounddevice_module=module, backoff=BackoffSettings(initial_s=1.0, jitter=0.0))
    stop = threading.Event()
    empty_before_audio = 0
    for chunk, _ in mic.chunks(stop):
        if chunk.size:
            stop.set()
        else:
            empty_before_audio += 1
    mic.close()
    assert module.state.opens == 1
    assert empty_before_audio >= 2  # a 1 s wait, polled every IDLE_POLL_S


def test_mic_named_device_that_does_not_exist_is_refused_at_once():
    module = fake_sounddevice([("USB Mic", 16000, 1), ("Speaker", 48000, 0)])
    with pytest.raises(SourceError, match="no input device matches 'webcam'.*0: USB Mic"):
        MicSource("webcam", sounddevice_module=module)
    with pytest.raises(SourceError, match="'1'"):
        MicSource("1", sounddevice_module=module)  # index 1 exists but is not an input


@pytest.mark.parametrize(
    ("failure", "sentence"),
    [
        (
            ModuleNotFoundError("No module named 'sounddevice'"),
            "the microphone needs the Python package sounddevice: pip install 'ser-edge[mic]'",
        ),
        (OSError("PortAudio library not found"), "the microphone needs the PortAudio library: sudo apt-get install libportaudio2"),
    ],
)
def test_a_missing_microphone_library_is_named_in_one_sentence(monkeypatch, capsys, failure, sentence):
    import builtins

    from edge.commands import devices

    real_import = builtins.__import__

    def failing_import(name, *args, **kwargs):
        if name == "sounddevice":
            raise failure
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", failing_import)
    with pytest.raises(SourceError) as raised:
        MicSource("")
    assert str(raised.value) == sentence
    assert devices.main(types.SimpleNamespace(debug=False, json=False)) == 2
    assert capsys.readouterr().err == f"error: {sentence}\n"


def test_find_device_by_index_exact_or_unique_partial_name():
    devs = [sources.InputDevice(0, "USB Mic A", 44100, 1), sources.InputDevice(3, "USB Mic B", 48000, 2)]
    assert find_device(devs, "3", None).name == "USB Mic B"
    assert find_device(devs, "USB Mic A", None).index == 0
    assert find_device(devs, "mic b", None).index == 3
    assert find_device(devs, "usb", None) is None  # ambiguous
    assert find_device(devs, "", 3).index == 3
    assert find_device([], "", None) is None


def test_devices_command_lists_inputs_and_says_so_when_there_are_none(capsys):
    from edge.commands import devices

    args = types.SimpleNamespace(debug=False, json=False)
    assert devices.main(args, sounddevice_module=fake_sounddevice([("Speaker", 48000, 0), ("USB Mic", 44100, 2)])) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["index", "rate_hz", "channels", "name"]
    assert out[1].split() == ["1", "44100", "2", "USB", "Mic"]
    assert len(out) == 2
    assert devices.main(args, sounddevice_module=fake_sounddevice([])) == 0
    assert "no audio input devices found" in capsys.readouterr().out
    args.json = True
    assert devices.main(args, sounddevice_module=fake_sounddevice([])) == 0
    said = capsys.readouterr()
    assert said.out == "" and "no audio input devices found" in said.err, "no JSON lines, and the reason for the person"


def test_backoff_grows_to_its_ceiling_and_stays_there_through_a_long_outage():
    """A broker or microphone gone for a night: thousands of failures, the wait stays max_s."""
    from edge.service.backoff import Backoff

    backoff = Backoff(BackoffSettings(initial_s=0.5, max_s=30.0, jitter=0.0))
    assert [backoff.next_delay() for _ in range(8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    backoff.failures = 2000  # float 2.0**1024 overflows: the retry thread must not die of it
    assert backoff.next_delay() == 30.0
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_a_stop_does_not_wait_for_an_open_that_hangs_in_portaudio():
    """systemd allows the whole service 2 s to stop; an open stuck in the driver must not hold the loop."""
    module = fake_sounddevice([("USB Mic", 16000, 1)])
    release = threading.Event()
    events = []  # PortAudio calls in order, to see what happens while the open hangs
    open_stream, rescan = module.RawInputStream, module._terminate

    def hanging_open(**kwargs):
        events.append("open")
        release.wait(10)
        stream = open_stream(**kwargs)
        events.append("opened")
        close = stream.close
        stream.close = lambda: (events.append("closed"), close())
        return stream

    module.RawInputStream = hanging_open
    module._terminate = lambda: (events.append("rescan"), rescan())
    mic = MicSource("", sounddevice_module=module, backoff=FAST)
    stop = threading.Event()
    try:
        for chunk, _ in mic.chunks(stop):
            assert chunk.size == 0
            stop.set()
        # The loop has ended while the open still hangs: the stop did not wait for it.
        assert not release.is_set() and mic._opener.is_alive() and events == ["rescan", "open"]
        mic.close()  # as the daemon does next, while the attempt still hangs: PortAudio is left alone
        assert events == ["rescan", "open"]
    finally:
        release.set()
    mic._opener.join(10)
    # The opener closes what it opened once the open returns, since nobody else will.
    assert not mic._opener.is_alive() and events == ["rescan", "open", "opened", "closed"]
    assert module.state.opens == 1 and all(not s.active for s in module.state.streams)
