"""Speech output: one convention for every model that answers in speech.

* The text answer stays the response (what every metric reads). It is a :class:`SpeechResponse`,
  a ``str`` that also carries the ``speech`` record of its audio.
* The audio goes to a WAV file under the run's output directory (``--output_path``):
  ``<output_path>/speech/<task>/doc<id>-<sha256[:12]>.wav``. The content hash in the name
  keeps runs of different models (and sampled repeats) in one output folder apart, and a
  replay from ``--use_cache`` keeps pointing at the file it made.
* Each logged sample gets a ``speech_output`` list (one record per response, ``None`` where a
  response has no audio): ``path``, ``sampling_rate``, ``duration`` (s), ``sha256``, ``latency``
  (:mod:`lm_eval_speech.speech.latency`: first text, first audio, total, real-time factor), and
  ``transcript`` (Whisper's reading of the audio) when the task asks for one.

A task asks through its ``generation_kwargs``: ``speech_output: true`` (answer in speech) and
``speech_transcript: true`` (transcribe the spoken answer). Models strip these keys before
generation. The model_arg ``speech_output`` is ``auto`` (speak when the task asks), ``always``
or ``never``; ``speech_dir`` overrides the folder; ``speech_asr`` (a Whisper checkpoint, default
the bundled tiny.en) and ``speech_asr_language`` set the transcriber.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lm_eval_speech.options import as_bool
from lm_eval_speech.speech import latency
from lm_eval_speech.speech.latency import Timing
from lm_eval_speech.paths import cache_root

logger = logging.getLogger("lm_eval_speech.speech.output")

ASK_AUDIO = "speech_output"
ASK_TRANSCRIPT = "speech_transcript"
MODES = ("auto", "always", "never")
SAMPLE_FIELD = "speech_output"


@dataclass(frozen=True)
class SpeechAsk:
    """What a task asked of a request: audio, and a transcript of that audio."""

    audio: bool = False
    transcript: bool = False


def split_speech_kwargs(gen_kwargs: dict | None) -> tuple[dict, SpeechAsk]:
    """The gen_kwargs without this module's keys, and what they asked."""
    rest = dict(gen_kwargs or {})
    audio = as_bool(rest.pop(ASK_AUDIO, False), f"gen_kwargs {ASK_AUDIO}")
    transcript = as_bool(rest.pop(ASK_TRANSCRIPT, False), f"gen_kwargs {ASK_TRANSCRIPT}")
    return rest, SpeechAsk(audio=audio, transcript=transcript)


@dataclass(frozen=True)
class SpokenAnswer:
    """What a speaking model produced for one request, before it is written out."""

    text: str
    audio: np.ndarray
    sampling_rate: int
    timing: Timing | None = None  # None: the model base times the batch (first audio at its end)


class SpeechResponse(str):
    """A text answer that also carries the record of its spoken audio."""

    speech: dict

    def __new__(cls, text: str, speech: dict) -> SpeechResponse:
        response = super().__new__(cls, text)
        response.speech = dict(speech)
        return response

    def __reduce__(self):
        return (SpeechResponse, (str(self), self.speech))

    def __repr__(self) -> str:
        return f"SpeechResponse({str(self)!r}, {self.speech!r})"


def speech_of(response: object) -> dict | None:
    """The speech record a response carries, or None."""
    return getattr(response, "speech", None) if isinstance(response, SpeechResponse) else None


def run_output_dir() -> Path | None:
    """The ``--output_path`` of the running ``lm_eval`` (a ``.json`` path means its folder)."""
    from lm_eval_speech import run

    path = run.output_path
    if not path:
        return None
    path = Path(path).expanduser()
    return path.parent if path.suffix == ".json" else path


def sample_records(sample: dict) -> list[dict | None] | None:
    """The ``speech_output`` field of a logged sample: one record per response, or None without audio."""
    records = [speech_of(r) for resps in sample.get("resps", []) for r in (resps if isinstance(resps, list) else [resps])]
    return records if any(r is not None for r in records) else None


class SpeechOutput:
    """A model's side of the convention: decide when to speak, write the audio, transcribe it."""

    def __init__(self, owner: str, mode: str = "auto", directory: str | None = None, asr: str | None = None,
                 asr_language: str | None = None, device=None) -> None:
        if mode not in MODES:
            raise ValueError(f"{owner}: speech_output must be one of {', '.join(MODES)}, not {mode!r}")
        self.owner, self.mode = owner, mode
        self._directory = Path(directory).expanduser() if directory else None
        self._asr_path, self._asr_language, self._device = asr, asr_language, device
        self._asr = None

    def wants_audio(self, ask: SpeechAsk) -> bool:
        return self.mode == "always" or (self.mode == "auto" and ask.audio)

    @property
    def directory(self) -> Path:
        if self._directory is not None:
            return self._directory
        run = run_output_dir()
        if run is not None:
            return run / "speech"
        fallback = cache_root() / "speech"
        logger.warning("%s: no --output_path, so spoken answers go to %s (set speech_dir to choose)", self.owner, fallback)
        self._directory = fallback
        return fallback

    def write(self, audio: np.ndarray, sampling_rate: int, *, task: str, doc_id: int) -> dict:
        """Write one answer's audio; its record without a transcript."""
        import soundfile as sf

        from lm_eval_speech.speech.audio import encode_wav

        array = np.asarray(audio, dtype=np.float32).reshape(-1)
        if not np.all(np.isfinite(array)):
            raise ValueError(f"{self.owner}: task {task} doc {doc_id}: the spoken answer holds NaN or infinite samples")
        peak = float(np.max(np.abs(array))) if array.size else 0.0
        if peak > 1.0:  # 16-bit PCM cannot hold it: scale down rather than clip
            array = array / peak
        data = encode_wav(array, int(sampling_rate)) if array.size else _empty_wav(int(sampling_rate))
        digest = hashlib.sha256(data).hexdigest()
        folder = self.directory / _safe(task)
        folder.mkdir(parents=True, exist_ok=True)
        name = f"doc{doc_id}-{digest[:12]}.wav"
        path = folder / name
        if not path.exists():
            import os

            temporary = path.with_name(f".{name}.{os.getpid()}.tmp")
            temporary.write_bytes(data)
            temporary.replace(path)  # a reader never sees half a file
        frames = sf.info(str(path)).frames
        return {"path": str(path.resolve()), "sampling_rate": int(sampling_rate), "duration": round(frames / int(sampling_rate), 4),
                "sha256": digest}

    def transcribe(self, audio: np.ndarray, sampling_rate: int) -> str:
        from lm_eval_speech.speech.asr import WHISPER_RATE, WhisperASR
        from lm_eval_speech.speech.audio import resample

        if self._asr is None:
            import torch

            from lm_eval_speech.bundled import bundled_whisper_tiny_en

            path = Path(self._asr_path).expanduser() if self._asr_path else bundled_whisper_tiny_en()
            device = self._device if self._device is not None else torch.device("cpu")
            self._asr = WhisperASR(path, "auto", self._asr_language, 5, "default", device)
            logger.info("%s: spoken answers transcribed by %s", self.owner, path)
        array = np.asarray(audio, dtype=np.float32).reshape(-1)
        if array.size == 0:
            return ""
        return self._asr.transcribe(resample(array, int(sampling_rate), WHISPER_RATE))

    def respond(self, request, text: str, audio: np.ndarray, sampling_rate: int, ask: SpeechAsk, *,
                timing: Timing, batch_size: int = 1) -> SpeechResponse:
        """The response for one request: its text, with its audio written (and transcribed if asked)
        and how long it took (:mod:`lm_eval_speech.speech.latency`)."""
        record = self.write(audio, sampling_rate, task=str(request.task_name), doc_id=int(request.doc_id))
        device = str(self._device) if self._device is not None else "remote"  # an API model: its server's hardware
        record["latency"] = latency.record(timing, record["duration"], batch_size, device)
        if ask.transcript:
            record["transcript"] = self.transcribe(audio, sampling_rate)
        return SpeechResponse(text, record)


def _empty_wav(sampling_rate: int) -> bytes:
    """A WAV file of no samples: the audio of an empty answer."""
    import io

    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(0, dtype=np.float32), sampling_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "task"
