"""Qwen2.5-Omni (transformers ``Qwen2_5OmniForConditionalGeneration``): answers in text, and in speech when asked.

The model is three parts: the thinker (audio in, text out: what :mod:`hf_audio` runs), the talker
(the thinker's hidden states → speech codes) and token2wav (codes → 24 kHz waveform).

* Text answers: the thinker alone, batched as in ``hf_audio``.
* Spoken answers (task gen_kwargs ``speech_output: true``, or ``speech_output=always``): thinker,
  talker and token2wav in one ``generate``, batched too (transformers ≥ 5 returns one waveform per
  row); older transformers refuse batched audio output, and the batch then goes one request at a
  time. The text is the thinker's answer cut at the stop strings; the speech is the talker's reading
  of the whole reply, up to where the thinker stopped.

``--model_args`` keys: those of ``hf_audio`` (``pretrained``, default ``Qwen/Qwen2.5-Omni-7B``;
``revision``, ``dtype``, ``device``, ``batch_size``, ``attn_implementation``, ...), and

* ``system_prompt``: default Qwen's own, which its model card requires for speech output
  (:data:`OMNI_SYSTEM_PROMPT`); another one is used as given, with a warning when the model may
  speak; an empty one leaves the chat template's default.
* ``speaker``: the voice, ``Chelsie`` (default) or ``Ethan`` (the checkpoint's ``spk_dict.pt``).
* ``talker_max_new_tokens`` (4096, at 50 codes per second of speech), ``talker_do_sample`` (true: Qwen's
  defaults sample the talker; the thinker follows the task's gen_kwargs).
* ``speech_output``, ``speech_dir``, ``speech_asr``, ...: the speech-output convention
  (:mod:`lm_eval_speech.speech.output`). With ``speech_output=never`` the talker and token2wav are
  dropped after loading, which frees their memory (about 2 GB for the 7B).

Audio inside video (``use_audio_in_video``) is off: requests carry audio clips only.
"""

from __future__ import annotations

from lm_eval.api.registry import register_model

from lm_eval_speech.options import as_bool
from lm_eval_speech.calls.local import generate_text
from lm_eval_speech.models._base import logger
from lm_eval_speech.models.hf_audio import HFAudioLM
from lm_eval_speech.speech.output import SpokenAnswer

# Qwen's model card: "If users need audio output, the system prompt must be set as ..."
OMNI_SYSTEM_PROMPT = (
    "You are Qwen, a virtual human developed by the Qwen Team, Alibaba Group, capable of perceiving auditory and visual inputs, "
    "as well as generating text and speech."
)
# token2wav's rate: 50 codes/s, 2 mel frames per code, 240 BigVGAN samples per frame (Qwen writes its output at 24000).
SPEECH_RATE = 24000


@register_model("qwen2_5_omni")
class Qwen25OmniLM(HFAudioLM):
    SPEAKS = True

    def __init__(
        self,
        pretrained: str = "Qwen/Qwen2.5-Omni-7B",
        model_class: str | None = "Qwen2_5OmniForConditionalGeneration",
        system_prompt: str | None = OMNI_SYSTEM_PROMPT,
        speaker: str = "Chelsie",
        talker_max_new_tokens: int = 4096,
        talker_do_sample: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(pretrained=pretrained, model_class=model_class, system_prompt=system_prompt, **kwargs)
        self.audio_token = self.audio_token or "<|AUDIO|>"
        self.speaker = str(speaker)
        self.talker_max_new_tokens = int(talker_max_new_tokens)
        self.talker_do_sample = as_bool(talker_do_sample, "model_args talker_do_sample")
        self.thinker = getattr(self.model, "thinker", self.model)
        self._batched_speech = True
        if self.speech.mode == "never":
            self._drop_talker()
        elif not getattr(self.model, "has_talker", False):
            if self.speech.mode == "always":
                raise ValueError(f"{type(self).__name__}: {pretrained} has no talker, so speech_output=always cannot be met")
            self.SPEAKS = False  # the base class then refuses spoken requests with its own message
        else:
            self._check_speaker()
            if self.system_prompt != OMNI_SYSTEM_PROMPT:
                logger.warning(
                    "%s: system_prompt differs from Qwen's own, which its model card requires for speech output: "
                    "the spoken answers may not work as expected", type(self).__name__,
                )

    def _drop_talker(self) -> None:
        """Text only: free the talker and token2wav (Qwen's ``enable_audio_output=False``, after loading)."""
        import torch

        if getattr(self.model, "has_talker", False):
            self.model.disable_talker()
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        self.SPEAKS = False

    def _check_speaker(self) -> None:
        voices = sorted(getattr(self.model, "speaker_map", {}))
        if self.speaker not in voices:
            raise ValueError(f"{type(self).__name__}: speaker {self.speaker!r} is not in {self.pretrained} (voices: {', '.join(voices)})")

    # -- prompt ------------------------------------------------------------------------------------
    def apply_chat_template(self, chat_history: list[dict], add_generation_prompt: bool = True) -> str:
        # --apply_chat_template renders here: keep Qwen's system prompt unless the task gives one.
        if self.system_prompt and not any(message["role"] == "system" for message in chat_history):
            chat_history = [{"role": "system", "content": self.system_prompt}, *chat_history]
        return super().apply_chat_template(chat_history, add_generation_prompt=add_generation_prompt)

    # -- generation --------------------------------------------------------------------------------
    def _generate_batch(self, requests, params):
        # The thinker alone: the talker would only add speech nobody asked for.
        return [texts[0] for texts in generate_text(self.thinker, self.tokenizer, self._inputs(requests, self.thinker.dtype), params)]

    def _speak_batch(self, requests, params):
        if len(requests) > 1 and self._batched_speech:
            try:
                return self._speak(requests, params)
            except NotImplementedError as error:  # transformers < 5: "does not support batched inference with audio output"
                logger.warning("%s: %s; speaking one request at a time", type(self).__name__, error)
                self._batched_speech = False
        return [answer for request in requests for answer in self._speak([request], params)]

    def _speak(self, requests, params) -> list[SpokenAnswer]:
        import torch
        from lm_eval.models.utils_hf import stop_sequences_criteria

        inputs = self._inputs(requests, self.thinker.dtype)
        input_length = inputs["input_ids"].shape[1]
        # generate() hands unprefixed keywords to the talker as well: the thinker's all carry "thinker_".
        thinker = {f"thinker_{key}": value for key, value in params.to_transformers().items() if key != "num_return_sequences"}
        stops = list(params.stop)
        if stops:
            thinker["thinker_stopping_criteria"] = stop_sequences_criteria(self.tokenizer, stops, input_length, len(requests))
        # Rows stopped by a stop string are padded with EOS, so the talker sees where each reply ends.
        thinker["thinker_pad_token_id"] = self._thinker_eos()
        talker = self.model.config.talker_config
        with torch.inference_mode():
            sequences, audio = self.model.generate(
                **inputs, **thinker, speaker=self.speaker, use_audio_in_video=False,
                talker_max_new_tokens=self.talker_max_new_tokens, talker_do_sample=self.talker_do_sample,
                talker_eos_token_id=[talker.tts_codec_pad_token_id, talker.tts_codec_end_token_id],
            )
        texts = self.tokenizer.batch_decode(sequences[:, input_length:], skip_special_tokens=True)
        # One (samples,) tensor for a single row, a list of them (each its own length) for a batch.
        waves = audio if isinstance(audio, (list, tuple)) else [audio]
        return [
            SpokenAnswer(text, wave.detach().reshape(-1).float().cpu().numpy(), SPEECH_RATE)
            for text, wave in zip(texts, waves, strict=True)
        ]

    def _thinker_eos(self) -> int:
        eos = self.thinker.generation_config.eos_token_id
        if isinstance(eos, (list, tuple)):
            eos = eos[0] if eos else None
        for candidate in (eos, self.tokenizer.eos_token_id, self.tokenizer.pad_token_id):
            if candidate is not None:
                return int(candidate)
        raise ValueError(f"{type(self).__name__}: {self.pretrained} defines no EOS or pad token")

    # -- reporting ---------------------------------------------------------------------------------
    def get_model_info(self) -> dict:
        return {**super().get_model_info(), "speaker": self.speaker if self.SPEAKS else None, "talker": self.SPEAKS}
