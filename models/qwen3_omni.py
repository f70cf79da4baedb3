"""Qwen3-Omni (transformers ``Qwen3OmniMoeForConditionalGeneration``): answers in text, and in speech when asked.

Thinker (MoE) + talker (MoE, multi-codebook) + code2wav; what it shares with Qwen2.5-Omni (text
from the thinker, batched speech, latency, voices, ``speech_output=never``) is :mod:`_omni`.

``--model_args`` keys: those of ``hf_audio`` (``pretrained``, default ``Qwen/Qwen3-Omni-30B-A3B-Instruct``;
``revision``, ``dtype``, ``device``, ``batch_size``, ``attn_implementation``, ...), and

* ``system_prompt``: none by default (the chat template's own default applies). Unlike
  Qwen2.5-Omni, speech output needs no particular system prompt, and Qwen's model card says to set
  none for evaluation benchmarks ("System Prompt: No system prompt should be set for any evaluation
  benchmark"). The card's voice-assistant prompt (recommended for audio-visual chat) can be given here.
* ``speaker``: the voice, ``Ethan`` (default, as in Qwen's examples), ``Chelsie`` or ``Aiden``: whatever
  the checkpoint's ``talker_config.speaker_id`` lists, in any case.
* ``talker_max_new_tokens`` (4096, at 12.5 codes per second of speech), ``talker_do_sample`` (true:
  Qwen's defaults sample the talker; the thinker follows the task's gen_kwargs, greedy for the
  Instruct model as the card evaluates it).
* ``speech_output``, ``speech_dir``, ``speech_asr``, ...: the speech-output convention
  (:mod:`lm_eval_speech.speech.output`). With ``speech_output=never`` only the thinker is loaded.

Audio inside video (``use_audio_in_video``) is off: requests carry audio clips only.
"""

from __future__ import annotations

from lm_eval.api.registry import register_model

from lm_eval_speech.models._omni import SPEECH_RATE, QwenOmniLM

__all__ = ["SPEECH_RATE", "Qwen3OmniLM"]


@register_model("qwen3_omni")
class Qwen3OmniLM(QwenOmniLM):
    PROCESSOR_CLASS = "Qwen3OmniMoeProcessor"

    def __init__(
        self,
        pretrained: str = "Qwen/Qwen3-Omni-30B-A3B-Instruct",
        model_class: str | None = "Qwen3OmniMoeForConditionalGeneration",
        system_prompt: str | None = None,
        speaker: str = "Ethan",
        **kwargs,
    ) -> None:
        super().__init__(pretrained=pretrained, model_class=model_class, system_prompt=system_prompt, speaker=speaker, **kwargs)

    def _voices(self) -> list[str]:
        return list(self.model.config.talker_config.speaker_id or {})  # lower case: generate() looks them up so

    def _family_generate_kwargs(self, thinker_eos: list[int]) -> dict:
        # generate() defaults the thinker's EOS to the 30B's <|im_end|> id: a checkpoint's own ids replace it.
        return {"thinker_eos_token_id": thinker_eos}
