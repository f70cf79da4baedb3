"""Any transformers audio-text-to-text model driven by ``AutoProcessor`` and its own chat template.

Qwen2-Audio, Voxtral, Qwen2.5-Omni (thinker), AudioFlamingo3, GLM-ASR, Qwen3-ASR, ...:
load → batch (longest audio first, left padding) → chat template → processor → generate → cut at stop strings.

``--model_args`` keys: ``pretrained`` (hub id or local path), ``revision``, ``dtype`` (``auto``: the
checkpoint's dtype on GPU, float32 on CPU), ``device``, ``batch_size``, ``system_prompt`` (None: the
chat template's default), ``attn_implementation``, ``trust_remote_code`` (off unless given),
``model_class`` (a transformers class name; default: the first auto class of
:data:`AUTO_CLASSES` that maps the checkpoint), ``audio_kwarg`` (the processor's keyword for the
clips; default ``audio``, or ``audios`` where the processor takes that), ``sampling_rate``
(default the processor's feature extractor's).

Architecture quirks live in small hooks (``_audio_part``, ``_messages``, ``_render``, ``_clips``,
``_processor_inputs``) that a specialisation such as ``qwen2_audio`` overrides. The prompt hooks
sit in :class:`ProcessorChatPrompt`, which ``vllm_audio`` shares, so both backends send a model
the same prompt text.
"""

from __future__ import annotations

import inspect

import lm_eval.models  # noqa: F401  (fills the built-in registry first; see lm-eval-notes §1.1)
from lm_eval.api.registry import register_model

from lm_eval_speech.speech.audio import clip_array
from lm_eval_speech.options import as_bool
from lm_eval_speech.calls.local import generate_text
from lm_eval_speech.models._base import AUDIO_PLACEHOLDER, SpeechLM, request_where, resolve_dtype, split_audio_prompt

# Tried in order; audio-text-to-text LLMs sit in the first two (AudioFlamingo3 only in the second).
AUTO_CLASSES = ("AutoModelForMultimodalLM", "AutoModelForSeq2SeqLM", "AutoModelForImageTextToText", "AutoModelForCausalLM")


def resolve_model_class(config, model_class: str | None = None):
    """The transformers class that loads ``config``: ``model_class`` by name, else the first fitting auto class."""
    import transformers

    if model_class:
        cls = getattr(transformers, model_class, None)
        if cls is None:
            raise ValueError(f"model_class {model_class!r} is not a transformers class")
        return cls
    remote = getattr(config, "auto_map", None) or {}
    for name in AUTO_CLASSES:
        cls = getattr(transformers, name, None)
        if cls is not None and (type(config) in cls._model_mapping or name in remote):
            return cls
    raise ValueError(
        f"no auto class of {', '.join(AUTO_CLASSES)} maps model type {getattr(config, 'model_type', '?')!r}; "
        "give model_class=<transformers class name>"
    )


class ProcessorChatPrompt:
    """Prompt text from the checkpoint's ``AutoProcessor`` and its own chat template.

    Shared by ``hf_audio`` and ``vllm_audio``, so both backends send a model the same prompt.
    :meth:`_load_processor` sets ``processor``, ``tokenizer``, ``sampling_rate``, ``audio_token``,
    ``pretrained`` and ``system_prompt``; the hooks ``_audio_part`` ... ``_render`` build the text.
    """

    def _load_processor(
        self, pretrained: str, revision: str | None, trust_remote_code: bool, system_prompt: str | None, sampling_rate: int | None
    ) -> None:
        self.pretrained = pretrained
        self.system_prompt = system_prompt
        self.processor = self._auto_processor(pretrained, revision, trust_remote_code)
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        extractor = getattr(self.processor, "feature_extractor", None)
        if sampling_rate is None:
            sampling_rate = getattr(extractor, "sampling_rate", None) or 16000
        self.sampling_rate = int(sampling_rate)
        self.audio_token = getattr(self.processor, "audio_token", None)

    def _auto_processor(self, pretrained: str, revision: str | None, trust_remote_code: bool):
        """The checkpoint's processor (a hook: a family may build it otherwise where ``AutoProcessor`` cannot)."""
        import transformers

        return transformers.AutoProcessor.from_pretrained(pretrained, revision=revision, trust_remote_code=trust_remote_code)

    # -- prompt (hooks) ----------------------------------------------------------------------
    def _audio_part(self, index: int) -> dict:
        """The chat content part of clip ``index`` (1-based); templates only see it, the array goes to the processor."""
        # "audio_url" too: Qwen2-Audio's template tests for either key, not for the type.
        return {"type": "audio", "audio": f"clip-{index}", "audio_url": f"clip-{index}"}

    def _content(self, text: str, n_clips: int, where: str) -> list[dict]:
        parts, index = [], 0
        for part in split_audio_prompt(text, n_clips, where=where):
            if part["type"] == "audio":
                index += 1
                part = self._audio_part(index)
            parts.append(part)
        return parts

    def _messages(self, context: str, n_clips: int, where: str) -> list[dict]:
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        messages.append({"role": "user", "content": self._content(context, n_clips, where)})
        return messages

    def _apply_template(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        return self.processor.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=False)

    def _render(self, context: str, n_clips: int, where: str) -> str:
        """The prompt text for one request; a prompt already rendered (``--apply_chat_template``) is kept."""
        token = self.audio_token
        if token and token != AUDIO_PLACEHOLDER and token in context:
            found = context.count(token)
            if found != n_clips:
                raise ValueError(f"{where}: the prompt holds {found} {token} tokens but {n_clips} clips")
            return context
        return self._apply_template(self._messages(context, n_clips, where))

    def apply_chat_template(self, chat_history: list[dict], add_generation_prompt: bool = True) -> str:
        """For ``--apply_chat_template``: the rendered prompt, audio placeholders made the model's own."""
        messages = []
        for message in chat_history:
            content = message["content"]
            n_clips = content.count(AUDIO_PLACEHOLDER)
            parts = self._content(content, n_clips, "chat template") if n_clips else content
            messages.append({"role": message["role"], "content": parts})
        return self._apply_template(messages, add_generation_prompt=add_generation_prompt)

    # -- reporting -------------------------------------------------------------------------------
    @property
    def tokenizer_name(self) -> str:
        return str(self.tokenizer.name_or_path).replace("/", "__")

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return getattr(self.processor, "chat_template", None) or getattr(self.tokenizer, "chat_template", None)


@register_model("hf_audio")
class HFAudioLM(ProcessorChatPrompt, SpeechLM):
    def __init__(
        self,
        pretrained: str | None = None,
        revision: str | None = None,
        dtype: str | None = "auto",
        device: str | None = None,
        batch_size: int | str = 1,
        system_prompt: str | None = None,
        attn_implementation: str | None = None,
        trust_remote_code: bool = False,
        model_class: str | None = None,
        audio_kwarg: str | None = None,
        sampling_rate: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(device=device, batch_size=batch_size, **kwargs)
        import transformers

        if not pretrained:
            raise ValueError(f"{type(self).__name__}: give pretrained=<hub id or local path>")
        trust_remote_code = as_bool(trust_remote_code, "model_args trust_remote_code")
        self._load_processor(pretrained, revision, trust_remote_code, system_prompt, sampling_rate)
        self.tokenizer.padding_side = "left"  # decoder-only generation continues from the right edge
        model_kwargs = {"revision": revision, "dtype": resolve_dtype(dtype, self.device), "trust_remote_code": trust_remote_code}
        if attn_implementation:
            model_kwargs["attn_implementation"] = attn_implementation
        config = transformers.AutoConfig.from_pretrained(pretrained, revision=revision, trust_remote_code=trust_remote_code)
        config = self._adapt_config(config)
        cls = resolve_model_class(config, model_class)
        self.model = cls.from_pretrained(pretrained, config=config, **model_kwargs)
        self.model.to(self.device).eval()
        self.audio_kwarg = audio_kwarg or self._detect_audio_kwarg()

    def _adapt_config(self, config):
        """The checkpoint's config as this run loads it (a hook: e.g. leave out parts the run will not use)."""
        return config

    def _detect_audio_kwarg(self) -> str:
        parameters = inspect.signature(self.processor.__call__).parameters
        return "audios" if "audios" in parameters and "audio" not in parameters else "audio"

    # -- audio and processor (hooks) -----------------------------------------------------------
    def _clips(self, request) -> list:
        where = request_where(request)
        return [clip_array(clip, self.sampling_rate, item=where) for clip in request.args[2]["audio"]]

    def _processor_inputs(self, texts: list[str], clips: list):
        # Padding for the text only: audio padding is each processor's own (Whisper-style: the full window).
        return self.processor(
            text=texts, **{self.audio_kwarg: clips}, sampling_rate=self.sampling_rate, return_tensors="pt",
            text_kwargs={"padding": True},
        )

    # -- generation ----------------------------------------------------------------------------
    def _inputs(self, requests, dtype):
        """The processor's batch for ``requests`` (left padded), on the device, floats in ``dtype``."""
        import torch

        texts, clips = [], []
        for request in requests:
            arrays = self._clips(request)
            texts.append(self._render(request.args[0], len(arrays), request_where(request)))
            clips.extend(arrays)
        inputs = self._processor_inputs(texts, clips).to(self.device)
        for key, value in list(inputs.items()):
            if isinstance(value, torch.Tensor) and torch.is_floating_point(value):
                inputs[key] = value.to(dtype)
        return inputs

    def _generate_batch(self, requests, params):
        return [texts[0] for texts in generate_text(self.model, self.tokenizer, self._inputs(requests, self.model.dtype), params)]

    # -- reporting -------------------------------------------------------------------------------
    def get_model_info(self) -> dict:
        return {
            **super().get_model_info(),
            "model_class": type(self.model).__name__,
            "model_num_parameters": sum(p.numel() for p in self.model.parameters()),
            "model_dtype": str(self.model.dtype),
            "model_revision": getattr(self.model.config, "_commit_hash", None),
        }
