"""lm_eval_speech.speech.audio: decoding, validation, downmix, resampling, error messages.

Fixtures are written with soundfile into tmp_path; the real JASCO / S2S-Arena files are used when
shared/ has them and the tests that need them skip with a reason otherwise.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from lm_eval_speech.speech.audio import (
    AudioError,
    audio_clip,
    clip_array,
    clip_digest,
    duration_seconds,
    encode_wav,
    load_audio,
    resample,
)

DATA = Path(os.environ.get("LM_EVAL_SPEECH_SHARED_DATA", "/work/shared/data"))
JASCO_47 = DATA / "jasco" / "dataset" / "v0" / "47.wav"
ARENA_MP3_DIR = DATA / "s2s-arena-samples" / "natural_audios"
ITEM = "speechinstruct_close_en_standard doc key=12"


def sine(freq: float, sr: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(sr * seconds))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(x: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[np.argmax(spectrum)])


def write(path: Path, data: np.ndarray, sr: int, fmt: str, subtype: str) -> Path:
    sf.write(str(path), data, sr, format=fmt, subtype=subtype)
    return path


def encoded(data: np.ndarray, sr: int, fmt: str, subtype: str) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, data, sr, format=fmt, subtype=subtype)
    return buffer.getvalue()


def can_write_mp3() -> bool:
    if "MP3" not in sf.available_formats():
        return False
    try:
        encoded(np.zeros(1152, np.float32), 16000, "MP3", "MPEG_LAYER_III")
    except (sf.SoundFileError, RuntimeError):
        return False
    return True


def assert_audio_error(excinfo: pytest.ExceptionInfo, file_label: str, *words: str) -> str:
    message = str(excinfo.value)
    assert message.startswith(ITEM + ": "), message
    assert file_label in message, message
    # Match the problem alone: tmp_path names echo the test's name ("test_directory_path0").
    problem = excinfo.value.problem
    assert message.endswith(problem), message
    for word in words:
        assert word.lower() in problem.lower(), message
    return message


# ------------------------------------------------------------------------------------------------
# formats


LOSSLESS = [
    ("WAV", "PCM_16", "wav", 1e-4),
    ("WAV", "PCM_24", "wav", 1e-6),
    ("WAV", "FLOAT", "wav", 0.0),
    ("FLAC", "PCM_16", "flac", 1e-4),
    ("AIFF", "PCM_16", "aiff", 1e-4),
]


@pytest.mark.parametrize(("fmt", "subtype", "ext", "tol"), LOSSLESS)
def test_lossless_formats_decode_exactly(tmp_path, fmt, subtype, ext, tol):
    x = sine(440, 22050, 0.5)
    path = write(tmp_path / f"clip.{ext}", x, 22050, fmt, subtype)
    array, sr = load_audio(path)
    assert sr == 22050
    assert array.dtype == np.float32 and array.ndim == 1 and array.flags.c_contiguous
    assert len(array) == len(x)
    assert np.max(np.abs(array - x)) <= tol


@pytest.mark.parametrize(
    ("fmt", "subtype", "ext", "sr"),
    [("OGG", "VORBIS", "ogg", 44100), ("OGG", "OPUS", "opus", 48000)],
)
def test_ogg_decodes(tmp_path, fmt, subtype, ext, sr):
    x = sine(440, sr, 1.0)
    path = write(tmp_path / f"clip.{ext}", x, sr, fmt, subtype)
    array, got_sr = load_audio(str(path))
    assert got_sr == sr and array.dtype == np.float32 and array.ndim == 1
    assert abs(len(array) - len(x)) <= sr // 100
    assert abs(peak_hz(array, sr) - 440) < 2
    # Lossy, but the level survives: RMS of a 0.5-amplitude sine is ~0.354.
    assert abs(np.sqrt(np.mean(array**2)) - 0.5 / np.sqrt(2)) < 0.03


def test_mp3_decodes(tmp_path):
    if can_write_mp3():
        x = sine(440, 44100, 1.0)
        path = write(tmp_path / "clip.mp3", x, 44100, "MP3", "MPEG_LAYER_III")
        array, sr = load_audio(path)
        assert sr == 44100 and array.dtype == np.float32 and array.ndim == 1
        assert abs(len(array) - len(x)) <= 1152  # one MPEG frame of slack
        assert abs(peak_hz(array, sr) - 440) < 2
        return
    real = sorted(ARENA_MP3_DIR.glob("*.mp3")) if ARENA_MP3_DIR.is_dir() else []
    if not real:
        pytest.skip(f"soundfile cannot write MP3 here and no real mp3 under {ARENA_MP3_DIR}")
    array, sr = load_audio(real[0])
    assert sr == sf.info(str(real[0])).samplerate and len(array) > 0


def test_real_s2s_arena_mp3_is_read_whole():
    real = sorted(ARENA_MP3_DIR.glob("*.mp3")) if ARENA_MP3_DIR.is_dir() else []
    if not real:
        pytest.skip(f"no S2S-Arena mp3 samples under {ARENA_MP3_DIR}")
    array, sr = load_audio(real[0])
    info = sf.info(str(real[0]))
    assert sr == info.samplerate == 24000
    assert len(array) == info.frames > 0
    assert np.all(np.isfinite(array)) and np.max(np.abs(array)) > 0.01


def test_stereo_is_downmixed_by_averaging(tmp_path):
    left = sine(440, 16000, 0.25, amp=0.5)
    right = np.full_like(left, -0.25)
    path = write(tmp_path / "stereo.wav", np.stack([left, right], axis=1), 16000, "WAV", "FLOAT")
    array, sr = load_audio(path)
    assert sr == 16000 and array.shape == left.shape
    np.testing.assert_allclose(array, (left + right) / 2, atol=1e-7)


def test_stereo_flac_downmix(tmp_path):
    left = sine(300, 16000, 0.25, amp=0.5)
    path = write(tmp_path / "st.flac", np.stack([left, -left], axis=1), 16000, "FLAC", "PCM_16")
    array, _ = load_audio(path)
    assert np.max(np.abs(array)) < 1e-4  # opposite channels cancel


def test_int16_pcm_is_scaled_to_unit_range(tmp_path):
    pcm = np.array([0, 16384, -16384, 32767, -32768, 1], dtype=np.int16)
    path = tmp_path / "int16.wav"
    sf.write(str(path), pcm, 8000, subtype="PCM_16")
    array, sr = load_audio(path)
    assert sr == 8000
    np.testing.assert_array_equal(array, pcm.astype(np.float32) / 32768.0)
    assert array.min() == -1.0 and array.max() < 1.0


def test_no_clipping_or_normalisation_of_float_wav(tmp_path):
    x = np.array([0.001, 1.5, -2.0, 0.25], dtype=np.float32)
    path = write(tmp_path / "hot.wav", x, 16000, "WAV", "FLOAT")
    np.testing.assert_array_equal(load_audio(path)[0], x)


# ------------------------------------------------------------------------------------------------
# resampling


def test_resample_48k_to_16k_keeps_frequency_and_length():
    x = sine(440, 48000, 1.0)
    y = resample(x, 48000, 16000)
    assert y.dtype == np.float32 and y.ndim == 1 and y.flags.c_contiguous
    assert abs(len(y) - round(len(x) * 16000 / 48000)) <= 1
    assert abs(peak_hz(y, 16000) - 440) <= 1.0
    # HQ resampling keeps the level (inner part avoids filter edges).
    inner = y[1000:-1000]
    assert abs(np.sqrt(np.mean(inner**2)) - 0.5 / np.sqrt(2)) < 0.005


def test_resample_odd_ratio_and_upsampling():
    x = sine(1000, 44100, 0.5)
    y = resample(x, 44100, 16000)
    assert abs(len(y) - round(len(x) * 16000 / 44100)) <= 1
    assert abs(peak_hz(y, 16000) - 1000) <= 2
    z = resample(sine(440, 16000, 0.5), 16000, 24000)
    assert abs(len(z) - 12000) <= 1 and abs(peak_hz(z, 24000) - 440) <= 2


def test_resample_same_rate_is_a_no_op_and_float32():
    x = sine(440, 16000, 0.1).astype(np.float64)
    y = resample(x, 16000, 16000)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, x.astype(np.float32))


def test_resample_refuses_integer_samples():
    with pytest.raises(AudioError, match="float"):
        resample(np.zeros(100, np.int16), 48000, 16000)


def test_load_audio_target_sr(tmp_path):
    x = sine(440, 48000, 0.5)
    path = write(tmp_path / "48k.flac", x, 48000, "FLAC", "PCM_24")
    array, sr = load_audio(path, target_sr=16000)
    assert sr == 16000 and abs(len(array) - 8000) <= 1
    assert abs(peak_hz(array, 16000) - 440) <= 2


@pytest.mark.parametrize("bad", [0, -16000, 16000.0, True, "16000"])
def test_bad_target_sr(tmp_path, bad):
    path = write(tmp_path / "a.wav", sine(440, 16000, 0.1), 16000, "WAV", "PCM_16")
    with pytest.raises(AudioError) as excinfo:
        load_audio(path, target_sr=bad, item=ITEM)
    assert_audio_error(excinfo, "a.wav", "target_sr", "positive int")


# ------------------------------------------------------------------------------------------------
# source kinds


def test_bytes_input_all_buffer_types():
    x = sine(440, 16000, 0.2)
    data = encoded(x, 16000, "WAV", "FLOAT")
    for source in (data, bytearray(data), memoryview(data)):
        array, sr = load_audio(source)
        assert sr == 16000
        np.testing.assert_array_equal(array, x)


def test_datasets_audio_dict_bytes_win_over_path(tmp_path):
    x = sine(440, 16000, 0.2)
    other = write(tmp_path / "other.wav", sine(880, 8000, 0.2), 8000, "WAV", "FLOAT")
    array, sr = load_audio({"bytes": encoded(x, 16000, "FLAC", "PCM_24"), "path": str(other)})
    assert sr == 16000 and np.max(np.abs(array - x)) < 1e-6
    # The path need not exist when the bytes are there (datasets keeps the original file name).
    array, sr = load_audio({"bytes": encoded(x, 16000, "WAV", "FLOAT"), "path": "orig/name.wav"})
    assert sr == 16000 and len(array) == len(x)


def test_datasets_audio_dict_path(tmp_path):
    x = sine(440, 22050, 0.2)
    path = write(tmp_path / "p.wav", x, 22050, "WAV", "FLOAT")
    array, sr = load_audio({"bytes": None, "path": str(path)})
    assert sr == 22050
    np.testing.assert_array_equal(array, x)


def test_decoded_dict_input_float64_list_and_2d():
    x = sine(440, 16000, 0.1)
    array, sr = load_audio({"array": x.astype(np.float64).tolist(), "sampling_rate": 16000})
    assert array.dtype == np.float32 and sr == 16000
    np.testing.assert_allclose(array, x, atol=1e-7)
    frames_first = np.stack([x, np.zeros_like(x)], axis=1)
    np.testing.assert_allclose(
        load_audio({"array": frames_first, "sampling_rate": 16000})[0], x / 2, atol=1e-7
    )
    # (channels, frames), as torch / librosa give it
    np.testing.assert_allclose(
        load_audio({"array": frames_first.T, "sampling_rate": 16000})[0], x / 2, atol=1e-7
    )


def test_decoded_dict_int16_is_scaled():
    pcm = np.array([0, 16384, -32768], dtype=np.int16)
    array, _ = load_audio({"array": pcm, "sampling_rate": 8000})
    np.testing.assert_array_equal(array, [0.0, 0.5, -1.0])


def test_decoded_dict_is_resampled():
    clip = {"array": sine(440, 48000, 0.5), "sampling_rate": 48000}
    array, sr = load_audio(clip, target_sr=16000)
    assert sr == 16000 and abs(len(array) - 8000) <= 1


def test_audio_clip_and_clip_array(tmp_path):
    x = sine(440, 48000, 0.5)
    path = write(tmp_path / "c.wav", x, 48000, "WAV", "PCM_16")
    clip = audio_clip(path, item=ITEM)
    assert set(clip) == {"array", "sampling_rate"}
    assert clip["sampling_rate"] == 48000 and clip["array"].dtype == np.float32
    out = clip_array(clip, 16000)
    assert out.dtype == np.float32 and out.ndim == 1 and abs(len(out) - 8000) <= 1
    stereo = {"array": np.stack([x, x], axis=1), "sampling_rate": 48000}
    np.testing.assert_allclose(clip_array(stereo, 48000), x, atol=1e-7)
    with pytest.raises(AudioError) as excinfo:
        clip_array([x], 16000, item=ITEM)
    assert_audio_error(excinfo, "<array>", "clip dict")


def test_duration_seconds():
    assert duration_seconds({"array": np.zeros(24000, np.float32), "sampling_rate": 16000}) == 1.5
    assert duration_seconds({"array": np.zeros((8000, 2)), "sampling_rate": 16000}) == 0.5
    assert duration_seconds({"array": np.zeros((2, 8000)), "sampling_rate": 16000}) == 0.5
    with pytest.raises(AudioError):
        duration_seconds({"array": np.zeros(10), "sampling_rate": 0})


def test_encode_wav_round_trip_and_refuses_to_clip():
    x = sine(440, 16000, 0.2)
    data = encode_wav(x, 16000)
    assert data[:4] == b"RIFF" and sf.info(io.BytesIO(data)).subtype == "PCM_16"
    array, sr = load_audio(data)
    assert sr == 16000 and np.max(np.abs(array - x)) < 1e-4
    hot = np.array([0.5, 1.25, -0.5], np.float32)
    with pytest.raises(AudioError, match="clip"):
        encode_wav(hot, 16000)
    np.testing.assert_array_equal(load_audio(encode_wav(hot, 16000, "FLOAT"))[0], hot)


def test_clip_digest_is_a_stable_content_hash():
    x = sine(440, 16000, 0.1)
    digest = clip_digest({"array": x, "sampling_rate": 16000})
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert digest == clip_digest({"array": x.astype(np.float64), "sampling_rate": 16000})
    assert digest == clip_digest({"array": np.stack([x, x], 1), "sampling_rate": 16000})
    assert digest != clip_digest({"array": x, "sampling_rate": 16001})
    y = x.copy()
    y[100] += 1e-3
    assert digest != clip_digest({"array": y, "sampling_rate": 16000})
    # Pinned: the hash must not drift between versions (caches depend on it). Layout: a version
    # tag, the rate as little-endian uint64, the mono samples as little-endian float32.
    samples = np.array([0.5, -0.25, 1.0], np.float32)
    expected = hashlib.sha256(
        b"lm_eval_speech.audio.v1\0" + struct.pack("<Q", 24000) + samples.astype("<f4").tobytes()
    ).hexdigest()
    assert expected == "854e42e32b9b638cc72320cae073fb71e53743f1382828d30b984e17e8c75ca6"
    assert clip_digest({"array": samples.tolist(), "sampling_rate": 24000}) == expected


# ------------------------------------------------------------------------------------------------
# errors: every message starts with the item and names the file


def test_missing_file(tmp_path):
    missing = tmp_path / "nope" / "missing.wav"
    with pytest.raises(AudioError) as excinfo:
        load_audio(missing, item=ITEM)
    assert_audio_error(excinfo, str(missing), "not found")
    with pytest.raises(AudioError) as excinfo:
        load_audio({"bytes": None, "path": str(missing)}, item=ITEM)
    assert_audio_error(excinfo, "missing.wav", "not found")


def test_directory_path(tmp_path):
    folder = tmp_path / "clips.wav"
    folder.mkdir()
    with pytest.raises(AudioError) as excinfo:
        load_audio(folder, item=ITEM)
    assert_audio_error(excinfo, str(folder), "directory")


def test_text_file_renamed_wav(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio\n" * 50)
    with pytest.raises(AudioError) as excinfo:
        load_audio(path, item=ITEM)
    assert_audio_error(excinfo, "notes.wav", "cannot decode")


def test_random_bytes():
    junk = np.random.default_rng(0).bytes(4096)
    with pytest.raises(AudioError) as excinfo:
        load_audio(junk, item=ITEM)
    assert_audio_error(excinfo, "<bytes>", "cannot decode")


def test_zero_byte_file_and_empty_bytes(tmp_path):
    path = tmp_path / "zero.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioError) as excinfo:
        load_audio(path, item=ITEM)
    assert_audio_error(excinfo, "zero.wav", "empty")
    with pytest.raises(AudioError) as excinfo:
        load_audio(b"", item=ITEM)
    assert_audio_error(excinfo, "<bytes>", "empty")
    with pytest.raises(AudioError) as excinfo:
        load_audio({"bytes": None, "path": None}, item=ITEM)
    assert_audio_error(excinfo, "<bytes>", "neither")


def test_empty_wav(tmp_path):
    path = write(tmp_path / "empty.wav", np.zeros(0, np.float32), 16000, "WAV", "PCM_16")
    assert sf.info(str(path)).frames == 0
    with pytest.raises(AudioError) as excinfo:
        load_audio(path, item=ITEM)
    assert_audio_error(excinfo, "empty.wav", "0 frames")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_float_wav(tmp_path, bad):
    x = sine(440, 16000, 0.1)
    x[123] = bad
    path = write(tmp_path / "nan.wav", x, 16000, "WAV", "FLOAT")
    with pytest.raises(AudioError) as excinfo:
        load_audio(path, item=ITEM)
    assert_audio_error(excinfo, "nan.wav", "NaN or infinite", "frame 123")


def test_non_finite_decoded_clip():
    x = sine(440, 16000, 0.1)
    x[5] = np.nan
    with pytest.raises(AudioError) as excinfo:
        clip_array({"array": x, "sampling_rate": 16000, "path": "a/b.wav"}, 16000, item=ITEM)
    assert_audio_error(excinfo, "a/b.wav", "NaN")


@pytest.mark.parametrize(
    ("fmt", "subtype", "ext"),
    [
        ("WAV", "PCM_16", "wav"),
        ("WAV", "FLOAT", "wav"),
        ("WAVEX", "PCM_24", "wav"),
        ("AIFF", "PCM_16", "aiff"),
        ("RF64", "PCM_16", "wav"),
        ("W64", "PCM_16", "w64"),
        ("AU", "PCM_16", "au"),
    ],
)
def test_truncated_pcm_files(tmp_path, fmt, subtype, ext):
    full = encoded(sine(440, 16000, 1.0), 16000, fmt, subtype)
    # libsndfile alone would decode the 0.7 s that are left without a word.
    cut = full[: len(full) * 7 // 10]
    assert 0 < sf.info(io.BytesIO(cut)).frames < 16000
    path = tmp_path / f"cut.{ext}"
    path.write_bytes(cut)
    with pytest.raises(AudioError) as excinfo:
        load_audio(path, item=ITEM)
    assert_audio_error(excinfo, "cut." + ext, "truncated", "16000 frames")
    with pytest.raises(AudioError) as excinfo:
        load_audio(cut, item=ITEM)
    assert_audio_error(excinfo, "<bytes>", "truncated")


def test_truncated_wav_by_a_few_bytes(tmp_path):
    full = encoded(sine(440, 16000, 1.0), 16000, "WAV", "PCM_16")
    path = tmp_path / "short.wav"
    path.write_bytes(full[:-3])
    with pytest.raises(AudioError) as excinfo:
        load_audio(path, item=ITEM)
    assert_audio_error(excinfo, "short.wav", "truncated", "15998")


def test_truncated_flac(tmp_path):
    full = encoded(sine(440, 16000, 1.0), 16000, "FLAC", "PCM_16")
    path = tmp_path / "cut.flac"
    path.write_bytes(full[: len(full) * 6 // 10])
    with pytest.raises(AudioError) as excinfo:
        load_audio(path, item=ITEM)
    assert_audio_error(excinfo, "cut.flac", "truncated", "16000 frames")


def test_truncated_ogg_vorbis_is_an_error_not_silence(tmp_path):
    full = encoded(sine(440, 16000, 2.0), 16000, "OGG", "VORBIS")
    path = tmp_path / "cut.ogg"
    path.write_bytes(full[: len(full) * 9 // 10])
    with pytest.raises(AudioError) as excinfo:
        load_audio(path, item=ITEM)
    assert_audio_error(excinfo, "cut.ogg", "0 frames")


def test_truncated_mp3_decodes_what_is_left(tmp_path):
    # mp3 counts are estimates in general (Xing header or bitrate), so a shortfall is not flagged.
    if not can_write_mp3():
        pytest.skip("soundfile cannot write MP3 here")
    full = encoded(sine(440, 16000, 2.0), 16000, "MP3", "MPEG_LAYER_III")
    array, sr = load_audio(full[: len(full) * 7 // 10])
    assert sr == 16000 and 0 < len(array) < 32000


def test_streamed_wav_with_unknown_size_is_not_truncated():
    # Writers that cannot seek back leave 0xFFFFFFFF in the RIFF and data sizes.
    x = sine(440, 16000, 0.5)
    data = bytearray(encoded(x, 16000, "WAV", "PCM_16"))
    data_at = data.index(b"data")
    struct.pack_into("<I", data, 4, 0xFFFFFFFF)
    struct.pack_into("<I", data, data_at + 4, 0xFFFFFFFF)
    array, sr = load_audio(bytes(data))
    assert sr == 16000 and len(array) == len(x)


def test_wav_with_chunk_after_data_is_not_truncated():
    x = sine(440, 16000, 0.25)
    data = bytearray(encoded(x, 16000, "WAV", "PCM_16"))
    data += b"LIST" + struct.pack("<I", 4) + b"INFO"
    struct.pack_into("<I", data, 4, len(data) - 8)
    array, _ = load_audio(bytes(data))
    assert len(array) == len(x)


@pytest.mark.parametrize("bad_sr", [0, -8000, 16000.5, 16000.0, "16000", None, True])
def test_decoded_clip_bad_sampling_rate(bad_sr):
    with pytest.raises(AudioError) as excinfo:
        load_audio(
            {"array": np.zeros(10, np.float32), "sampling_rate": bad_sr, "path": "x.wav"}, item=ITEM
        )
    assert_audio_error(excinfo, "x.wav", "sampling_rate", "positive int")


def test_decoded_clip_missing_sampling_rate():
    with pytest.raises(AudioError) as excinfo:
        load_audio({"array": np.zeros(10, np.float32)}, item=ITEM)
    assert_audio_error(excinfo, "<array>", "sampling_rate")


@pytest.mark.parametrize(
    ("array", "words"),
    [
        (np.array(["a", "b"]), ("numeric",)),
        (np.array([object(), object()], dtype=object), ("numeric",)),
        (np.array([1 + 2j, 0j]), ("numeric",)),
        ([[0.1, 0.2], [0.3]], ("numeric",)),
        (np.zeros((4, 4, 2), np.float32), ("1-D or 2-D", "(4, 4, 2)")),
        (np.float32(0.5), ("1-D or 2-D",)),
        (np.zeros(0, np.float32), ("0 frames",)),
        (np.zeros(10, np.int64), ("int64",)),
    ],
)
def test_decoded_clip_bad_array(array, words):
    with pytest.raises(AudioError) as excinfo:
        load_audio({"array": array, "sampling_rate": 16000, "path": "dir/clip.wav"}, item=ITEM)
    assert_audio_error(excinfo, "dir/clip.wav", *words)


def test_unsupported_source_type():
    with pytest.raises(AudioError) as excinfo:
        load_audio(12345, item=ITEM)
    assert str(excinfo.value).startswith(ITEM) and "int" in str(excinfo.value)
    with pytest.raises(AudioError) as excinfo:
        load_audio({"audio": b"x"}, item=ITEM)
    assert_audio_error(excinfo, "<array>", "keys")


def test_audio_error_is_a_value_error_without_item(tmp_path):
    missing = tmp_path / "m.wav"
    with pytest.raises(ValueError) as excinfo:
        load_audio(missing)
    assert str(excinfo.value).startswith(str(missing))
    assert excinfo.value.file == str(missing) and excinfo.value.item is None


# ------------------------------------------------------------------------------------------------
# real data


def test_real_jasco_clip_47_at_48k():
    if not JASCO_47.is_file():
        pytest.skip(f"JASCO clip 47 not present at {JASCO_47}")
    native = sf.info(str(JASCO_47))
    clip = audio_clip(JASCO_47, item="jasco doc 47")
    assert clip["sampling_rate"] == 48000 == native.samplerate
    assert len(clip["array"]) == native.frames > 48000
    array, sr = load_audio(JASCO_47, target_sr=16000)
    assert sr == 16000
    assert abs(len(array) - round(native.frames * 16000 / 48000)) <= 1
    assert np.all(np.isfinite(array)) and np.max(np.abs(array)) > 0.01
    assert (
        abs(duration_seconds({"array": array, "sampling_rate": sr}) - native.frames / 48000) < 1e-3
    )
