"""Qwen2.5-Omni (transformers ``Qwen2_5OmniForConditionalGeneration``): answers in text, and in speech when asked.

Thinker + talker + token2wav; what it shares with Qwen3-Omni (text from the thinker, batched speech,
latency, voices, ``speech_output=never``) is :mod:`_omni`.

``--model_args`` keys: those of ``hf_audio`` (``pretrained``, default ``Qwen/Qwen2.5-Omni-7B``;
``revision``, ``dtype``, ``device``, ``batch_size``, ``attn_implementation``, ...), and

* ``system_prompt``: default Qwen's own, which its model card requires for speech output
  (:data:`OMNI_SYSTEM_PROMPT`); another one is used as given, with a warning when the model may
  speak; an empty one leaves the chat template's default.
* ``speaker``: the voice, ``Chelsie`` (default) or ``Ethan`` (the checkpoint's ``spk_dict.pt``).
* ``talker_max_new_tokens`` (4096, at 50 codes per second of speech), ``talker_do_sample`` (true: Qwen's
  defaults sample the talker; the thinker follows the task's gen_kwargs).
* ``speech_output``, ``speech_dir``, ``speech_asr``, ...: the speech-output convention
  (:mod:`lm_eval_speech.speech.output`). With ``speech_output=never`` only the thinker is loaded
  (about 2 GB less for the 7B).

Audio inside video (``use_audio_in_video``) is off: requests carry audio clips only.
"""

from __future__ import annotations

from lm_eval.api.registry import register_model

from lm_eval_speech.models._omni import SPEECH_RATE, QwenOmniLM

__all__ = ["OMNI_SYSTEM_PROMPT", "SPEECH_RATE", "Qwen25OmniLM"]

# Qwen's model card: "If users need audio output, the system prompt must be set as ..."
OMNI_SYSTEM_PROMPT = (
    "You are Qwen, a virtual human developed by the Qwen Team, Alibaba Group, capable of perceiving auditory and visual inputs, "
    "as well as generating text and speech."
)


@register_model("qwen2_5_omni")
class Qwen25OmniLM(QwenOmniLM):
    PROCESSOR_CLASS = "Qwen2_5OmniProcessor"
    SPEECH_SYSTEM_PROMPT = OMNI_SYSTEM_PROMPT

    def __init__(
        self,
        pretrained: str = "Qwen/Qwen2.5-Omni-7B",
        model_class: str | None = "Qwen2_5OmniForConditionalGeneration",
        system_prompt: str | None = OMNI_SYSTEM_PROMPT,
        speaker: str = "Chelsie",
        **kwargs,
    ) -> None:
        super().__init__(pretrained=pretrained, model_class=model_class, system_prompt=system_prompt, speaker=speaker, **kwargs)

    def _voices(self) -> list[str]:
        return list(getattr(self.model, "speaker_map", {}))  # loaded from the checkpoint's spk_dict.pt

    def _family_generate_kwargs(self, thinker_eos: list[int]) -> dict:
        # The talker stops at its pad or end code (Qwen's defaults are the 7B's ids; a checkpoint names its own).
        talker = self.model.config.talker_config
        return {"talker_eos_token_id": [talker.tts_codec_pad_token_id, talker.tts_codec_end_token_id]}
