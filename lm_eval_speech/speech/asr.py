"""Whisper speech recognition, shared by the cascade (its input) and speech output (transcripts).

A local checkpoint in CTranslate2 (faster-whisper) or transformers format, decoded at
temperature 0 only so that runs repeat.
"""

from __future__ import annotations

from pathlib import Path

WHISPER_RATE = 16000


class WhisperASR:
    """One Whisper checkpoint, CTranslate2 or transformers, transcribing 16 kHz float32 arrays."""

    def __init__(self, path: Path, backend: str, language: str | None, beam_size: int, compute_type: str, device) -> None:
        if backend == "auto":
            backend = "faster_whisper" if (path / "model.bin").is_file() else "transformers"
        self.backend, self.language, self.beam_size = backend, language, int(beam_size)
        if backend == "faster_whisper":
            from faster_whisper import WhisperModel

            ct2_device = "cuda" if device.type == "cuda" else "cpu"
            index = device.index or 0
            self.model = WhisperModel(str(path), device=ct2_device, device_index=index, compute_type=compute_type)
        elif backend == "transformers":
            import transformers

            self.processor = transformers.WhisperProcessor.from_pretrained(str(path))
            self.model = transformers.WhisperForConditionalGeneration.from_pretrained(str(path)).to(device).eval()
            self.device = device
        else:
            raise ValueError(f"asr_backend must be auto, faster_whisper or transformers, not {backend!r}")

    def transcribe(self, array) -> str:
        if self.backend == "faster_whisper":
            # temperature 0 only: Whisper's sampling fallback would make runs differ.
            segments, _ = self.model.transcribe(array, language=self.language, beam_size=self.beam_size, temperature=0.0, vad_filter=False)
            return " ".join(segment.text.strip() for segment in segments).strip()
        import torch

        window = self.processor.feature_extractor.n_samples
        # Past one 30 s window, Whisper's own long-form decoding (sequential windows, timestamps).
        long_form = len(array) > window
        features = self.processor(
            array, sampling_rate=WHISPER_RATE, return_tensors="pt", return_attention_mask=True,
            **({"truncation": False, "padding": "longest"} if long_form else {}),
        ).to(self.device)
        kwargs = {"num_beams": self.beam_size, "return_timestamps": long_form}
        if self.language:
            kwargs["language"] = self.language
        with torch.inference_mode():
            ids = self.model.generate(features.input_features, attention_mask=features.attention_mask, **kwargs)
        return self.processor.batch_decode(ids, skip_special_tokens=True)[0].strip()
