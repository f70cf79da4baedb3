"""Decoding, validation and resampling of audio, for every task and model of this project.

Convention (lm-eval's): a task's ``doc_to_audio(doc)`` returns
``[{"array": float32 1-D mono, "sampling_rate": int}]`` at the file's native rate, built with
:func:`audio_clip`; a model turns each clip into samples at its own rate with :func:`clip_array`.

Decoding is libsndfile (through soundfile: wav, flac, ogg vorbis/opus, mp3, aiff, ...) and
resampling is soxr at its default "HQ" quality. Samples are never clipped or normalised.

Every problem is an :class:`AudioError` whose message starts with the item label (when given) and
names the file (``<bytes>`` or ``<array>`` when there is none).

How libsndfile 1.2 reports damage, per format (checked by hand; tests/test_audio.py pins it).
It never reads past the frame count it computed at open, so that count decides what is decoded.

* WAV / WAVEX / RF64 / W64 / AIFF / AU: a file cut short opens without error and libsndfile
  *lowers* its count to what the file holds (it only logs "data : N (should be M)"). So the
  declared count is read from the header here (:func:`_header_frames`) and compared with the
  frames decoded; these counts are exact, so any shortfall is truncation. A size of 0xFFFFFFFF
  (streaming writers) means unknown and is not checked.
* FLAC: STREAMINFO's total is exact and libsndfile keeps it; a stream cut at any byte fails
  while reading (the message varies: "flac decoder lost sync", "Internal psf_fseek() failed"),
  reported as truncated or corrupt. The count comparison stays as a backstop.
* MP3: the count is mpg123's: from the Xing/Info header when there is one (exact), otherwise
  estimated from bitrate and file size (for the CBR S2S-Arena files it equals MPEG frames x 576
  exactly). Not checked: a cut mp3 decodes what is left (mpg123 warns on stderr).
* Ogg: the count is the last page's granule position. Opus cut short reads as the shorter
  stream; vorbis whose last page is cut reads as 0 frames (reported as empty, with a hint).
  Not checked otherwise.
* CAF cut short, Ogg cut deep, a text file renamed .wav, random bytes: rejected at open.
"""

from __future__ import annotations

import hashlib
import io
import numbers
import os
import struct
from typing import Any, BinaryIO

import numpy as np
import soundfile as sf
import soxr

__all__ = [
    "AudioError",
    "audio_clip",
    "clip_array",
    "clip_digest",
    "duration_seconds",
    "encode_wav",
    "load_audio",
    "resample",
]

BYTES_LABEL = "<bytes>"
ARRAY_LABEL = "<array>"

# Bytes per sample of the subtypes whose header counts map exactly to frames.
_SAMPLE_BYTES = {
    "PCM_S8": 1,
    "PCM_U8": 1,
    "PCM_16": 2,
    "PCM_24": 3,
    "PCM_32": 4,
    "FLOAT": 4,
    "DOUBLE": 8,
    "ULAW": 1,
    "ALAW": 1,
}
# Formats whose header frame count _header_frames reads.
_HEADER_FORMATS = frozenset({"WAV", "WAVEX", "RF64", "W64", "AIFF", "AU"})
# Streaming writers leave this placeholder for "size unknown"; libsndfile then uses the file size.
_UNKNOWN_SIZE = 0xFFFFFFFF


class AudioError(ValueError):
    """Bad or missing audio; the message names the item and the file."""

    def __init__(self, problem: str, *, item: str | None = None, file: str | None = None):
        self.item = item
        self.file = file
        self.problem = problem
        parts = [p for p in (item, file) if p]
        super().__init__(": ".join([*parts, problem]))


def _fail(problem: str, item: str | None, file: str | None) -> AudioError:
    return AudioError(problem, item=item, file=file)


def _check_rate(value: Any, what: str, item: str | None, file: str | None) -> int:
    # bool is an int subclass; True Hz is a bug, not a rate.
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value <= 0:
        raise _fail(f"{what} must be a positive int, got {value!r}", item, file)
    return int(value)


# ----------------------------------------------------------------------------------------------
# public API


def load_audio(
    source: Any, *, target_sr: int | None = None, item: str | None = None
) -> tuple[np.ndarray, int]:
    """Decode ``source`` to mono float32 (C-contiguous, 1-D) and return ``(array, sampling_rate)``.

    ``source`` is one of:

    * a path (``str`` or ``os.PathLike``);
    * raw encoded bytes (``bytes``, ``bytearray``, ``memoryview``);
    * a datasets ``Audio(decode=False)`` dict ``{"bytes": bytes | None, "path": str | None}``:
      non-empty bytes win, the path is read otherwise;
    * an already-decoded clip ``{"array": array-like, "sampling_rate": int}``: validated,
      downmixed and resampled like a file. A 2-D array is (frames, channels) as soundfile gives
      it; when its first axis is the shorter one it is taken as (channels, frames) (torch, librosa).
      Integer arrays of 8/16/32 bits are read as PCM and scaled to [-1, 1].

    ``target_sr``: resample with soxr to this rate (no-op when equal). ``item``: a label for error
    messages, e.g. ``"speechinstruct_close_en_standard doc key=12"``. Raises :class:`AudioError`.
    A decoded clip that is already float32 mono at ``target_sr`` comes back without a copy.
    """
    array, sr, label = _decode(source, item)
    if target_sr is not None:
        target = _check_rate(target_sr, "target_sr", item, label)
        array = resample(array, sr, target)
        sr = target
    return array, sr


def audio_clip(source: Any, *, item: str | None = None) -> dict:
    """One ``doc_to_audio`` entry: ``{"array": float32 mono, "sampling_rate": native int}``."""
    array, sr = load_audio(source, item=item)
    return {"array": array, "sampling_rate": sr}


def clip_array(clip: dict, target_sr: int, *, item: str | None = None) -> np.ndarray:
    """For models: validate one ``doc_to_audio`` clip dict, downmix if 2-D, return float32 mono
    at ``target_sr``."""
    if not isinstance(clip, dict):
        raise _fail(
            f"expected an audio clip dict {{'array', 'sampling_rate'}}, got {type(clip).__name__}",
            item,
            ARRAY_LABEL,
        )
    return load_audio(clip, target_sr=target_sr, item=item)[0]


def resample(array: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample float samples (1-D, or 2-D frames x channels) with soxr "HQ"; float32 out."""
    orig = _check_rate(orig_sr, "orig_sr", None, None)
    target = _check_rate(target_sr, "target_sr", None, None)
    if np.asarray(array).dtype.kind != "f":  # ints would be cast unscaled
        raise _fail(f"resample needs float samples, got {np.asarray(array).dtype}", None, None)
    x = np.ascontiguousarray(array, dtype=np.float32)
    if orig == target or x.shape[0] == 0:
        return x
    # soxr keeps float32 in float32 out; libsoxr is built without OpenMP (one thread).
    return np.ascontiguousarray(soxr.resample(x, orig, target), dtype=np.float32)


def duration_seconds(clip: dict) -> float:
    """Length of a decoded clip dict in seconds."""
    sr = _check_rate(clip.get("sampling_rate"), "sampling_rate", None, ARRAY_LABEL)
    shape = np.shape(clip.get("array"))
    if len(shape) == 0:
        raise _fail("audio array is a scalar, not samples", None, ARRAY_LABEL)
    frames = shape[0] if len(shape) == 1 else _frames_channels(shape)[0]
    return frames / sr


def encode_wav(array: np.ndarray, sampling_rate: int, subtype: str = "PCM_16") -> bytes:
    """Encode samples as a WAV file in memory (for API models and hashing).

    Integer subtypes refuse samples outside [-1, 1] instead of clipping them: pass
    ``subtype="FLOAT"`` to keep such audio as it is.
    """
    sr = _check_rate(sampling_rate, "sampling_rate", None, ARRAY_LABEL)
    x = np.asarray(array)
    if x.dtype.kind != "f" or x.ndim not in (1, 2) or x.shape[0] == 0:
        raise _fail(
            f"encode_wav needs 1-D or 2-D float samples, got dtype {x.dtype} shape {x.shape}",
            None,
            ARRAY_LABEL,
        )
    _check_finite(x, sr, None, ARRAY_LABEL)
    if not subtype.upper().startswith(("FLOAT", "DOUBLE")):
        peak = float(np.max(np.abs(x)))
        if peak > 1.0:
            raise _fail(
                f"peak {peak:.4g} exceeds full scale and {subtype} would clip it; "
                "use subtype='FLOAT'",
                None,
                ARRAY_LABEL,
            )
    buffer = io.BytesIO()
    sf.write(buffer, x, sr, format="WAV", subtype=subtype)
    return buffer.getvalue()


def clip_digest(clip: dict) -> str:
    """sha256 hex of a clip's content (sampling rate + mono float32 samples), for cache keys.

    Hashes what a model receives at the native rate (any :func:`load_audio` source works): the
    same audio hashes alike in float64 or float32, and a stereo clip hashes as its downmix.
    """
    array, sr, _ = _decode(clip, None)
    digest = hashlib.sha256(b"lm_eval_speech.audio.v1\0")  # the old module name: renaming would orphan cached outputs
    digest.update(struct.pack("<Q", sr))
    digest.update(array.astype("<f4", copy=False).tobytes())
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------------
# sources


def _decode(source: Any, item: str | None) -> tuple[np.ndarray, int, str]:
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        array, sr = _decode_path(path, item)
        return array, sr, path
    if isinstance(source, (bytes, bytearray, memoryview)):
        return (*_decode_bytes(bytes(source), BYTES_LABEL, item), BYTES_LABEL)
    if isinstance(source, dict):
        path = source.get("path")
        label = os.fspath(path) if isinstance(path, (str, os.PathLike)) and path else None
        if "array" in source:
            array, sr = _from_decoded(source, item, label or ARRAY_LABEL)
            return array, sr, label or ARRAY_LABEL
        if "bytes" in source or "path" in source:
            data = source.get("bytes")
            if data is not None and not isinstance(data, (bytes, bytearray, memoryview)):
                raise _fail(
                    f"'bytes' must be bytes or None, got {type(data).__name__}",
                    item,
                    label or BYTES_LABEL,
                )
            if data:  # embedded bytes win over the path, as datasets does
                shown = f"{label} (embedded bytes)" if label else BYTES_LABEL
                return (*_decode_bytes(bytes(data), shown, item), shown)
            if label:
                return (*_decode_path(label, item), label)
            raise _fail("audio dict has neither 'bytes' nor 'path'", item, BYTES_LABEL)
        raise _fail(
            f"audio dict needs 'array' + 'sampling_rate' or 'bytes'/'path'; keys: {sorted(source)}",
            item,
            ARRAY_LABEL,
        )
    raise _fail(f"unsupported audio source type {type(source).__name__}", item, None)


def _decode_path(path: str, item: str | None) -> tuple[np.ndarray, int]:
    if not os.path.exists(path):
        raise _fail("audio file not found", item, path)
    if os.path.isdir(path):
        raise _fail("is a directory, not an audio file", item, path)
    if not os.path.isfile(path):
        raise _fail("not a regular file", item, path)
    try:
        size = os.path.getsize(path)
        if size == 0:
            raise _fail("empty file (0 bytes)", item, path)
        # soundfile reads a path natively (faster than through a Python file object).
        return _decode_file(path, path, item)
    except OSError as exc:
        raise _fail(f"cannot read: {exc.strerror or exc}", item, path) from exc


def _decode_bytes(data: bytes, label: str, item: str | None) -> tuple[np.ndarray, int]:
    if not data:
        raise _fail("empty data (0 bytes)", item, label)
    return _decode_file(io.BytesIO(data), label, item)


def _decode_file(source: str | io.BytesIO, label: str, item: str | None) -> tuple[np.ndarray, int]:
    """Decode a path or in-memory file; check truncation, emptiness and non-finite samples."""
    try:
        sound = sf.SoundFile(source)
    except (sf.SoundFileError, RuntimeError, TypeError) as exc:
        raise _fail(f"cannot decode audio: {_sf_message(exc)}", item, label) from exc
    with sound:
        sr = sound.samplerate
        fmt, subtype, channels, declared = sound.format, sound.subtype, sound.channels, sound.frames
        try:
            data = sound.read(dtype="float32", always_2d=True)
        except (sf.SoundFileError, RuntimeError) as exc:
            raise _fail(
                f"truncated or corrupt {fmt}/{subtype} data: decoding failed "
                f"({_sf_message(exc)}); header declares {declared} frames",
                item,
                label,
            ) from exc
        except MemoryError as exc:  # a corrupt header can declare billions of frames
            raise _fail(
                f"header declares {declared} frames x {channels} channels, too many to decode "
                "(corrupt header?)",
                item,
                label,
            ) from exc
    _check_rate(sr, "sampling_rate", item, label)
    frames = data.shape[0]
    if fmt == "FLAC":
        expected = declared
    elif fmt not in _HEADER_FORMATS:
        expected = None  # mp3/ogg counts are estimates; other formats: trust libsndfile
    elif isinstance(source, str):
        with open(source, "rb") as handle:
            expected = _header_frames(handle, fmt, subtype, channels)
    else:
        source.seek(0)
        expected = _header_frames(source, fmt, subtype, channels)
    if expected is not None and frames < expected:
        raise _fail(
            f"truncated {fmt} file: header declares {expected} frames ({expected / sr:.3f} s) "
            f"but only {frames} ({frames / sr:.3f} s) are present",
            item,
            label,
        )
    if frames == 0:
        hint = (
            " (an Ogg file whose last page is cut off also reads as empty)" if fmt == "OGG" else ""
        )
        raise _fail(f"no audio: 0 frames decoded{hint}", item, label)
    if channels == 1:
        mono = data[:, 0]
        # A short read leaves a view into a larger buffer; copy to free it.
        mono = np.ascontiguousarray(mono.copy() if frames < declared else mono)
    else:
        mono = _downmix(data)
    _check_finite(mono, sr, item, label)
    return mono, sr


def _from_decoded(clip: dict, item: str | None, label: str) -> tuple[np.ndarray, int]:
    if "sampling_rate" not in clip:
        raise _fail("decoded audio dict has no 'sampling_rate'", item, label)
    sr = _check_rate(clip["sampling_rate"], "sampling_rate", item, label)
    try:
        x = np.asarray(clip["array"])
    except (ValueError, TypeError) as exc:  # ragged lists and the like
        raise _fail(f"audio array is not numeric: {exc}", item, label) from exc
    kind = x.dtype.kind
    if kind not in "iuf":
        raise _fail(f"audio array must be numeric (int or float), got dtype {x.dtype}", item, label)
    if x.ndim == 0 or x.ndim > 2:
        raise _fail(f"audio array must be 1-D or 2-D, got shape {x.shape}", item, label)
    if kind in "iu":
        x = _pcm_to_float(x, item, label)
    if x.ndim == 2:
        frames, channels = _frames_channels(x.shape)
        if x.shape[0] != frames:
            x = x.T
        if channels == 0:
            raise _fail(f"audio array has no channels, shape {x.shape}", item, label)
        x = x[:, 0] if channels == 1 else _downmix(x)
    if x.shape[0] == 0:
        raise _fail("no audio: 0 frames", item, label)
    mono = np.ascontiguousarray(x, dtype=np.float32)
    _check_finite(mono, sr, item, label)
    return mono, sr


# ----------------------------------------------------------------------------------------------
# helpers


def _frames_channels(shape: tuple[int, ...]) -> tuple[int, int]:
    """(frames, channels) of a 2-D shape: the longer axis is time."""
    rows, cols = shape
    return (rows, cols) if rows >= cols else (cols, rows)


def _downmix(frames_by_channels: np.ndarray) -> np.ndarray:
    """Average the channels into float32 mono: keeps the level of correlated content, never clips.

    Column adds, not ``mean(axis=1)``: numpy's reduction over a short inner axis is ~20x slower.
    """
    channels = frames_by_channels.shape[1]
    mono = frames_by_channels[:, 0].astype(np.float32)  # always a fresh contiguous copy
    for c in range(1, channels):
        np.add(mono, frames_by_channels[:, c], out=mono, casting="same_kind")
    mono /= np.float32(channels)
    return mono


def _pcm_to_float(x: np.ndarray, item: str | None, label: str) -> np.ndarray:
    # Same scaling as libsndfile's integer PCM -> float (full scale = 2**(bits-1)).
    if x.dtype.kind == "i" and x.dtype.itemsize in (1, 2, 4):
        return x.astype(np.float64) / float(2 ** (8 * x.dtype.itemsize - 1))
    if x.dtype == np.uint8:
        return (x.astype(np.float64) - 128.0) / 128.0
    raise _fail(
        f"integer audio of dtype {x.dtype} has no PCM scale; pass float samples in [-1, 1]",
        item,
        label,
    )


def _check_finite(x: np.ndarray, sr: int, item: str | None, label: str) -> None:
    finite = np.isfinite(x)
    if not finite.all():
        bad = np.flatnonzero(~finite.reshape(finite.shape[0], -1).all(axis=1))
        first = int(bad[0])
        raise _fail(
            f"{bad.size} frame(s) hold NaN or infinite samples, first at frame {first} "
            f"({first / sr:.3f} s)",
            item,
            label,
        )


def _sf_message(exc: BaseException) -> str:
    # LibsndfileError's str() embeds a repr of the file object; the raw message is cleaner.
    return getattr(exc, "error_string", None) or str(exc) or type(exc).__name__


def _header_frames(handle: BinaryIO, fmt: str, subtype: str, channels: int) -> int | None:
    """Frame count the file's header declares, for formats where it is exact; None otherwise."""
    width = _SAMPLE_BYTES.get(subtype)
    if width is None or channels <= 0:
        return None  # compressed subtypes (ADPCM, GSM...): bytes do not map to frames simply
    block = width * channels
    head = handle.read(12)
    if len(head) < 12:
        return None
    magic = head[:4]
    if fmt in ("WAV", "WAVEX", "RF64") and magic in (b"RIFF", b"RIFX", b"RF64", b"BW64"):
        size = _riff_data_size(
            handle, "<" if magic != b"RIFX" else ">", magic in (b"RF64", b"BW64")
        )
        return None if size is None else size // block
    if fmt == "AIFF" and magic == b"FORM":
        return _aiff_frames(handle)
    if fmt == "W64" and magic == b"riff":
        size = _w64_data_size(handle)
        return None if size is None else size // block
    if fmt == "AU" and magic in (b".snd", b"dns."):
        order = ">" if magic == b".snd" else "<"
        size = struct.unpack(order + "I", head[8:12])[0]
        return None if size == _UNKNOWN_SIZE else size // block
    return None


def _chunks(handle: BinaryIO, order: str, start: int, limit: int = 256):
    """Yield (id, payload_offset, size) of RIFF/IFF chunks from ``start`` (sizes padded to even)."""
    pos = start
    for _ in range(limit):
        handle.seek(pos)
        header = handle.read(8)
        if len(header) < 8:
            return
        size = struct.unpack(order + "I", header[4:])[0]
        yield header[:4], pos + 8, size
        pos += 8 + size + (size & 1)


def _riff_data_size(handle: BinaryIO, order: str, is_rf64: bool) -> int | None:
    ds64_data: int | None = None
    for chunk_id, offset, size in _chunks(handle, order, 12):
        if chunk_id == b"ds64" and size >= 16:
            handle.seek(offset + 8)  # riffSize (8 bytes), then dataSize
            ds64_data = struct.unpack("<Q", handle.read(8))[0]
        elif chunk_id == b"data":
            if is_rf64 and size == _UNKNOWN_SIZE:
                return ds64_data
            return None if size == _UNKNOWN_SIZE else size
    return None


def _aiff_frames(handle: BinaryIO) -> int | None:
    for chunk_id, offset, size in _chunks(handle, ">", 12):
        if chunk_id == b"COMM" and size >= 6:
            handle.seek(offset + 2)  # numChannels (2 bytes), then numSampleFrames
            return struct.unpack(">I", handle.read(4))[0]
    return None


def _w64_data_size(handle: BinaryIO, limit: int = 256) -> int | None:
    # Sony Wave64: 16-byte GUID ids (data's starts b"data"), 64-bit sizes that include the
    # 24-byte header, chunks aligned to 8 bytes; the first chunk follows the 40-byte file header.
    pos = 40
    for _ in range(limit):
        handle.seek(pos)
        header = handle.read(24)
        if len(header) < 24:
            return None
        size = struct.unpack("<Q", header[16:])[0]
        if header[:4] == b"data":
            return size - 24 if size >= 24 else None
        if size < 24:
            return None
        pos += (size + 7) & ~7
    return None
