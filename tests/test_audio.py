"""Reading files: every format soundfile knows, and one clear sentence for every bad file."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from edge.audio import AudioError, check_signal, find_audio, read_audio


@pytest.fixture()
def speech(data_dir):
    signal, rate = sf.read(data_dir / "ravdess/Actor_04/03-01-05-02-01-01-04.flac", dtype="float32")
    return signal, rate


@pytest.mark.parametrize(
    ("name", "fmt", "subtype"),
    [
        ("a.wav", "WAV", "PCM_16"),
        ("a24.wav", "WAV", "PCM_24"),
        ("a32.wav", "WAV", "PCM_32"),
        ("u8.wav", "WAV", "PCM_U8"),
        ("f.wav", "WAV", "FLOAT"),
        ("a.flac", "FLAC", "PCM_16"),
        ("a.ogg", "OGG", "VORBIS"),
        ("a.aiff", "AIFF", "PCM_16"),
    ],
)
def test_formats_read_as_mono_float(tmp_path, speech, name, fmt, subtype):
    signal, rate = speech
    stereo = np.stack([signal, signal * 0.5], axis=1)
    path = tmp_path / name
    sf.write(path, stereo, rate, format=fmt, subtype=subtype)
    x, found_rate = read_audio(path)
    assert found_rate == rate and x.dtype == np.float32 and x.ndim == 1
    assert abs(x.size - signal.size) <= 1024  # Vorbis may pad its last packet
    if fmt != "OGG":  # lossy: compare only the lossless ones sample by sample
        np.testing.assert_allclose(x, signal * 0.75, atol=2e-2 if subtype == "PCM_U8" else 1e-3)


def test_aiff_behind_a_wav_name_reads(tmp_path, speech):
    # TESS's original distribution has AIFF data behind a .wav name; libsndfile sniffs the content.
    path = tmp_path / "OAF_x_angry.wav"
    sf.write(path, speech[0], speech[1], format="AIFF")
    assert read_audio(path)[1] == speech[1]


def write_bytes(tmp_path, name: str, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda d: d / "missing.wav", "no such file"),
        (lambda d: d, "is a folder"),
        (lambda d: write_bytes(d, "empty.wav", b""), r"empty \(0 bytes\)"),
        (lambda d: write_bytes(d, "notes.wav", b"these are not audio samples at all" * 10), "not an audio file"),
    ],
)
def test_unusable_paths_give_one_sentence(tmp_path, make, fragment):
    with pytest.raises(AudioError, match=fragment) as info:
        read_audio(make(tmp_path))
    assert "\n" not in str(info.value)


def test_truncated_flac_is_reported(tmp_path, data_dir):
    whole = (data_dir / "ravdess/Actor_04/03-01-05-02-01-01-04.flac").read_bytes()
    path = write_bytes(tmp_path, "cut.flac", whole[: len(whole) // 3])
    with pytest.raises(AudioError, match=r"cut\.flac: corrupt or truncated audio"):
        read_audio(path)


@pytest.mark.parametrize(("name", "fmt"), [("cut.wav", "WAV"), ("cut.aiff", "AIFF")])
def test_truncated_wav_and_aiff_are_reported(tmp_path, speech, name, fmt):
    # libsndfile reads a cut WAV or AIFF without an error; the header's size gives it away.
    whole = tmp_path / f"whole.{fmt.lower()}"
    sf.write(whole, speech[0], speech[1], format=fmt, subtype="PCM_16")
    data = whole.read_bytes()
    path = write_bytes(tmp_path, name, data[: len(data) // 3])
    with pytest.raises(AudioError, match=rf"{name}: the file is truncated \(its header promises \d+ bytes of audio, \d+ are there\)"):
        read_audio(path)


def test_wav_with_a_recorder_placeholder_size_reads(tmp_path, speech):
    # arecord and sox write 0x7FFFFFFF as the data size until they finish; a killed recorder
    # leaves it, and the audio that is there is still good.
    path = tmp_path / "unfinished.wav"
    sf.write(path, speech[0], speech[1], subtype="PCM_16")
    data = bytearray(path.read_bytes())
    at = data.index(b"data")
    data[at + 4 : at + 8] = (0x7FFFFFFF).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    x, _ = read_audio(path)
    assert x.size == speech[0].size


def test_header_only_wav_has_no_samples(tmp_path):
    path = tmp_path / "nothing.wav"
    sf.write(path, np.zeros(0, dtype=np.int16), 16000)
    with pytest.raises(AudioError, match="no samples"):
        read_audio(path)


def test_silence_nan_and_inf_are_refused(tmp_path):
    sf.write(tmp_path / "silent.wav", np.zeros(16000, dtype=np.int16), 16000)
    with pytest.raises(AudioError, match="silent"):
        read_audio(tmp_path / "silent.wav")
    bad = np.full(1000, 0.1, dtype=np.float32)
    bad[10] = np.nan
    sf.write(tmp_path / "nan.wav", bad, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="NaN or infinite"):
        read_audio(tmp_path / "nan.wav")
    bad[10] = np.inf
    with pytest.raises(AudioError, match="NaN or infinite"):
        check_signal(bad, 16000)


def test_int16_arrays_are_scaled():
    x, _ = check_signal(np.array([16384, -32768], dtype=np.int16), 8000)
    np.testing.assert_allclose(x, [0.5, -1.0])


def test_find_audio_walks_folders_and_reports_empty_ones(tmp_path, speech):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "empty").mkdir()
    sf.write(tmp_path / "a" / "b" / "x.wav", speech[0], speech[1])
    sf.write(tmp_path / "a" / "y.FLAC", speech[0], speech[1])
    (tmp_path / "a" / "readme.txt").write_text("not audio")
    found = find_audio([str(tmp_path / "a"), str(tmp_path / "empty"), "named.txt"])
    assert [p for p, _ in found[:2]] == [str(tmp_path / "a" / "b" / "x.wav"), str(tmp_path / "a" / "y.FLAC")]
    assert found[2][1] and "no audio files" in found[2][1]
    assert found[3] == ("named.txt", None)


def test_blocks_of_a_long_file_are_the_whole_file(tmp_path, speech):
    """audio_blocks decodes a second at a time; end to end the blocks are read_audio's samples, and mixing is per block."""
    from edge.audio import audio_blocks

    signal, rate = speech
    stereo = np.stack([np.tile(signal, 3), np.tile(signal, 3) * 0.5], axis=1)
    sf.write(tmp_path / "long.flac", stereo, rate)
    blocks = list(audio_blocks(tmp_path / "long.flac"))
    assert all(r == rate for _, r in blocks) and max(b.size for b, _ in blocks) == rate
    np.testing.assert_array_equal(np.concatenate([b for b, _ in blocks]), read_audio(tmp_path / "long.flac")[0])


def test_blocks_check_as_they_go_and_a_stream_of_unknown_length_is_capped(tmp_path, speech):
    import io
    import os
    import subprocess

    from edge.audio import ClipTooLongError, audio_blocks

    signal, rate = speech
    bad = np.tile(signal, 4).astype(np.float32)
    bad[3 * rate + 5] = np.nan  # in the fourth block
    sf.write(tmp_path / "nan.wav", bad, rate, subtype="FLOAT")
    got = []
    with pytest.raises(AudioError, match="nan.wav: the audio contains NaN"):
        for block, _ in audio_blocks(tmp_path / "nan.wav"):
            got.append(block)
    assert len(got) == 3  # the good blocks came first: nothing was held back
    # A FLAC written to a pipe has no length in its header (libsndfile says 2**63 - 1 frames): read() on the whole
    # file cannot even allocate, the blocks read it all, and a cap applies to what was read.
    r, w = os.pipe()
    writer = subprocess.Popen(["sh", "-c", f"cat > '{tmp_path / 'piped.flac'}'"], stdin=r)
    os.close(r)
    with os.fdopen(w, "wb") as pipe, sf.SoundFile(pipe, "w", rate, 1, format="FLAC") as f:
        f.write(np.tile(signal, 3))
    writer.wait(timeout=30)
    assert sf.info(str(tmp_path / "piped.flac")).frames > 2**62
    blocks = list(audio_blocks(tmp_path / "piped.flac"))
    assert sum(b.size for b, _ in blocks) == 3 * signal.size
    with pytest.raises(ClipTooLongError, match="piped.flac: the clip lasts more than 5 s"):
        list(audio_blocks(tmp_path / "piped.flac", max_duration_s=5))
    buffer = io.BytesIO((tmp_path / "piped.flac").read_bytes())  # an upload held in memory
    assert sum(b.size for b, _ in audio_blocks(buffer, "upload")) == 3 * signal.size
