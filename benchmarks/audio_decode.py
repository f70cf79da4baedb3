"""Decode + resample speed of lm_eval_speech.speech.audio, as x real time on ONE core.

    python benchmarks/audio_decode.py [--data DIR] [--repeats N] [--cpu K]

Cases:
  (a) the real JASCO wavs (``--data``, default /work/shared/data/jasco/dataset/v0): decode only,
      and decode + resample to 16 kHz and to 24 kHz;
  (b) synthetic 44.1 kHz stereo clips of ~10 s (FLAC, MP3, Ogg vorbis), written to a temporary
      folder first: decode + downmix only, and decode + downmix + resample to 16 kHz (a format
      soundfile cannot write is skipped, with the reason).

The process is pinned to one CPU and every thread pool is limited to 1 before numpy loads.
libsoxr in python-soxr is built without OpenMP (no libgomp linked), so resampling is
single-threaded anyway; a run before pinning checks that (CPU time <= wall time). ``x RT wall``
is audio seconds over wall seconds; ``x RT cpu`` uses the process CPU time instead, which a busy
shared machine does not inflate. Files are read once before timing, so the figures are decode +
resample from the page cache, not disk speed. Each case runs ``--repeats`` times; the fastest
wall and CPU times are reported.
"""

from __future__ import annotations

import os

# Before numpy / soxr load: keep every thread pool to one thread.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import contextlib  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lm_eval_speech.speech.audio import load_audio  # noqa: E402

DEFAULT_JASCO = "/work/shared/data/jasco/dataset/v0"
COLUMNS = [
    ("files", 5),
    ("audio s", 9),
    ("wall s", 8),
    ("x RT wall", 10),
    ("cpu s", 8),
    ("x RT cpu", 10),
]
SYNTH_FORMATS = [
    ("FLAC", "FLAC", "PCM_16", "flac"),
    ("MP3", "MP3", "MPEG_LAYER_III", "mp3"),
    ("Ogg vorbis", "OGG", "VORBIS", "ogg"),
]


@contextlib.contextmanager
def quiet_stderr():
    """libmpg123 prints decoder warnings straight to fd 2; keep them out of the table."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "wb") as devnull:
        os.dup2(devnull.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def os_threads() -> int:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("Threads:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return threading.active_count()


def run_case(files: list[Path], target_sr: int | None, repeats: int) -> tuple[float, float, float]:
    """Return (audio seconds, best wall seconds, best CPU seconds) over ``repeats`` runs."""
    audio_s = 0.0
    for path in files:  # warm the page cache and count the audio
        info = sf.info(str(path))
        audio_s += info.frames / info.samplerate
    best_wall = best_cpu = float("inf")
    for _ in range(repeats):
        with quiet_stderr():
            cpu0, wall0 = time.process_time(), time.perf_counter()
            for path in files:
                load_audio(path, target_sr=target_sr)
            wall = time.perf_counter() - wall0
            cpu = time.process_time() - cpu0
        best_wall, best_cpu = min(best_wall, wall), min(best_cpu, cpu)
    return audio_s, best_wall, best_cpu


def check_soxr_single_threaded() -> str:
    """Resample 60 s of 48 kHz audio unpinned: CPU time above wall time would mean threads."""
    import soxr

    x = np.random.default_rng(1).standard_normal(48000 * 60).astype(np.float32)
    soxr.resample(x[:48000], 48000, 16000)  # warm up
    cpu0, wall0 = time.process_time(), time.perf_counter()
    soxr.resample(x, 48000, 16000)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    verdict = "single-threaded" if cpu <= wall * 1.05 else "MORE THAN ONE THREAD"
    return (
        f"soxr unpinned check: cpu {cpu:.3f} s / wall {wall:.3f} s = {cpu / wall:.2f} ({verdict})"
    )


def synth_signal(seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Speech-like test audio: a gliding harmonic tone with noise bursts, stereo."""
    t = np.arange(int(seconds * sr)) / sr
    f0 = 120 + 60 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3.0 * t) ** 2
    noise = rng.standard_normal(t.shape) * (np.sin(2 * np.pi * 0.5 * t) > 0.6)
    left = 0.25 * envelope * voiced + 0.05 * noise
    right = 0.8 * left + 0.02 * rng.standard_normal(t.shape)
    return np.stack([left, right], axis=1).astype(np.float32)


def write_synthetic(folder: Path, count: int, seconds: float) -> dict[str, list[Path] | str]:
    """Write ``count`` clips per format; a format that cannot be written maps to the reason."""
    rng = np.random.default_rng(0)
    signals = [synth_signal(seconds, 44100, rng) for _ in range(count)]
    out: dict[str, list[Path] | str] = {}
    for label, fmt, subtype, ext in SYNTH_FORMATS:
        if fmt not in sf.available_formats():
            out[label] = f"libsndfile {sf.__libsndfile_version__} has no {fmt} support"
            continue
        paths = []
        try:
            with quiet_stderr():
                for i, signal in enumerate(signals):
                    path = folder / f"synth_{i}.{ext}"
                    sf.write(str(path), signal, 44100, format=fmt, subtype=subtype)
                    paths.append(path)
        except (sf.SoundFileError, RuntimeError) as exc:
            out[label] = f"soundfile cannot write {fmt}/{subtype}: {exc}"
            continue
        out[label] = paths
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=DEFAULT_JASCO, help="folder of JASCO wavs")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--synthetic-count", type=int, default=6)
    parser.add_argument("--synthetic-seconds", type=float, default=10.0)
    parser.add_argument(
        "--cpu", type=int, default=None, help="CPU to pin to (default: first allowed)"
    )
    args = parser.parse_args(argv)

    soxr_check = check_soxr_single_threaded()
    if hasattr(os, "sched_setaffinity"):
        cpu = args.cpu if args.cpu is not None else min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        pinned = f"pinned to CPU {cpu}"
    else:
        pinned = "not pinned (no sched_setaffinity here)"
    import soxr

    print(
        f"lm_eval_speech.speech.audio decode benchmark: one core ({pinned}); numpy {np.__version__}, "
        f"soundfile {sf.__version__} / libsndfile {sf.__libsndfile_version__}, "
        f"soxr {soxr.__version__}"
    )

    rows: list[tuple[str, str]] = []  # (case, formatted figures or skip reason)

    def record(case: str, files: list[Path], target_sr: int | None) -> None:
        audio_s, wall, cpu = run_case(files, target_sr, args.repeats)
        figures = (
            len(files),
            f"{audio_s:.1f}",
            f"{wall:.3f}",
            f"{audio_s / wall:.0f}x",
            f"{cpu:.3f}",
            f"{audio_s / cpu:.0f}x",
        )
        rows.append(
            (case, " ".join(f"{v:>{w}}" for v, (_, w) in zip(figures, COLUMNS, strict=True)))
        )

    data = Path(args.data)
    jasco = sorted(data.glob("*.wav")) if data.is_dir() else []
    if jasco:
        rates = sorted({sf.info(str(p)).samplerate for p in jasco})
        tag = f"JASCO wav ({'/'.join(f'{r // 1000}k' for r in rates)})"
        record(f"{tag}, native", jasco, None)
        record(f"{tag} -> 16k", jasco, 16000)
        record(f"{tag} -> 24k", jasco, 24000)
    else:
        rows.append(("JASCO wav", f"skipped: no *.wav under {data}"))

    with tempfile.TemporaryDirectory(prefix="audio_bench_") as tmp:
        synthetic = write_synthetic(Path(tmp), args.synthetic_count, args.synthetic_seconds)
        for label, files in synthetic.items():
            case = f"44.1k stereo {label} -> 16k"
            if isinstance(files, str):
                rows.append((case, f"skipped: {files}"))
            else:
                record(f"44.1k stereo {label}, native", files, None)
                record(case, files, 16000)

    width = max(len(case) for case, _ in rows)
    print(f"{'case':<{width}} " + " ".join(f"{name:>{w}}" for name, w in COLUMNS))
    for case, figures in rows:
        print(f"{case:<{width}} {figures}")
    print(soxr_check)
    if hasattr(os, "getloadavg"):
        # Other work on the machine lowers "x RT wall"; "x RT cpu" is the steadier figure then.
        print(f"load average (1 min) {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"threads in process after the runs: {os_threads()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
