"""Qwen2-Audio (transformers ``Qwen2AudioForConditionalGeneration``).

load → batch (longest audio first, left padding) → chat template → generate → cut at stop strings.

``--model_args`` keys: ``pretrained`` (hub id or local path), ``revision``, ``dtype``
(``auto``: the checkpoint's dtype on GPU, float32 on CPU), ``device``, ``batch_size``,
``system_prompt`` (None: the chat template's default), ``long_audio`` (``truncate`` or ``error``
for clips longer than the encoder window), ``attn_implementation``, ``trust_remote_code``.
"""

from __future__ import annotations

import lm_eval.models  # noqa: F401  (fills the built-in registry first; see lm-eval-notes §1.1)
from lm_eval.api.registry import register_model

from lm_eval_speech.audio import clip_array
from lm_eval_speech.models._base import (
    SpeechLM,
    hf_generate,
    logger,
    request_where,
    resolve_dtype,
    split_audio_prompt,
)

LONG_AUDIO_POLICIES = ("truncate", "error")


@register_model("qwen2_audio")
class Qwen2AudioLM(SpeechLM):
    def __init__(
        self,
        pretrained: str = "Qwen/Qwen2-Audio-7B-Instruct",
        revision: str | None = None,
        dtype: str | None = "auto",
        device: str | None = None,
        batch_size: int | str = 1,
        system_prompt: str | None = None,
        long_audio: str = "truncate",
        attn_implementation: str | None = None,
        trust_remote_code: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(device=device, batch_size=batch_size, **kwargs)
        import transformers

        if long_audio not in LONG_AUDIO_POLICIES:
            raise ValueError(f"long_audio must be one of {LONG_AUDIO_POLICIES}, not {long_audio!r}")
        self.pretrained = pretrained
        self.long_audio = long_audio
        self.system_prompt = system_prompt
        self.processor = transformers.AutoProcessor.from_pretrained(
            pretrained, revision=revision, trust_remote_code=trust_remote_code
        )
        self.tokenizer = self.processor.tokenizer
        self.tokenizer.padding_side = "left"  # decoder-only generation continues from the right edge
        model_kwargs = {"revision": revision, "dtype": resolve_dtype(dtype, self.device), "trust_remote_code": trust_remote_code}
        if attn_implementation:
            model_kwargs["attn_implementation"] = attn_implementation
        self.model = transformers.Qwen2AudioForConditionalGeneration.from_pretrained(pretrained, **model_kwargs)
        self.model.to(self.device).eval()
        extractor = self.processor.feature_extractor
        self.sampling_rate = int(extractor.sampling_rate)
        # The Whisper-style encoder sees one fixed window (30 s for the released checkpoints).
        self.max_audio_seconds = float(extractor.chunk_length)
        self.audio_token = getattr(self.processor, "audio_token", "<|AUDIO|>")

    # -- prompt ------------------------------------------------------------------------------
    def apply_chat_template(self, chat_history: list[dict], add_generation_prompt: bool = True) -> str:
        """For ``--apply_chat_template``: the rendered prompt, audio placeholders made the model's own."""
        messages = []
        for message in chat_history:
            content = message["content"]
            n_clips = content.count("<audio>")
            parts = split_audio_prompt(content, n_clips, where="chat template") if n_clips else content
            messages.append({"role": message["role"], "content": parts})
        return self.processor.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=False)

    def _render(self, context: str, n_clips: int, where: str) -> str:
        if self.audio_token in context:  # already rendered by apply_chat_template
            if context.count(self.audio_token) != n_clips:
                found = context.count(self.audio_token)
                raise ValueError(f"{where}: the prompt holds {found} {self.audio_token} tokens but {n_clips} clips")
            return context
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        messages.append({"role": "user", "content": split_audio_prompt(context, n_clips, where=where)})
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def _clips(self, request) -> list:
        arrays = []
        for clip in request.args[2]["audio"]:
            where = request_where(request)
            array = clip_array(clip, self.sampling_rate, item=where)
            seconds = len(array) / self.sampling_rate
            if seconds > self.max_audio_seconds:
                if self.long_audio == "error":
                    raise ValueError(
                        f"{where}: audio of {seconds:.1f} s exceeds the {self.max_audio_seconds:.0f} s encoder window (long_audio=error)"
                    )
                logger.warning(
                    "%s: audio of %.1f s truncated to the %.0f s encoder window (long_audio=truncate)",
                    where, seconds, self.max_audio_seconds,
                )
                array = array[: int(self.max_audio_seconds * self.sampling_rate)]
            arrays.append(array)
        return arrays

    # -- generation ----------------------------------------------------------------------------
    def _generate_batch(self, requests, settings):
        texts, audios = [], []
        for request in requests:
            clips = self._clips(request)
            texts.append(self._render(request.args[0], len(clips), request_where(request)))
            audios.extend(clips)
        inputs = self.processor(text=texts, audio=audios, sampling_rate=self.sampling_rate, return_tensors="pt", padding=True)
        inputs = inputs.to(self.device)
        if "input_features" in inputs:
            inputs["input_features"] = inputs["input_features"].to(self.model.dtype)
        return hf_generate(self.model, self.tokenizer, inputs, settings)

    # -- reporting -------------------------------------------------------------------------------
    @property
    def tokenizer_name(self) -> str:
        return str(self.tokenizer.name_or_path).replace("/", "__")

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return self.processor.chat_template

    def get_model_info(self) -> dict:
        return {
            **super().get_model_info(),
            "model_num_parameters": sum(p.numel() for p in self.model.parameters()),
            "model_dtype": str(self.model.dtype),
            "model_revision": getattr(self.model.config, "_commit_hash", None),
        }
