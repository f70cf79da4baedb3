"""What Qwen's omni models share (Qwen2.5-Omni, Qwen3-Omni): a thinker that answers in text, a talker that speaks it.

The transformers model holds three parts: the thinker (audio in, text out: what :mod:`hf_audio`
runs), the talker (the thinker's hidden states → speech codes) and a vocoder (codes → 24 kHz
waveform: Qwen2.5-Omni's token2wav, Qwen3-Omni's code2wav). One ``generate`` runs all three.

* Text answers: the thinker alone, batched as in ``hf_audio``.
* Spoken answers (task gen_kwargs ``speech_output: true``, or ``speech_output=always``): thinker,
  talker and vocoder in one ``generate``, batched (transformers ≥ 5 returns one waveform per row);
  where transformers refuses batched audio output the batch goes one request at a time. The text
  is the thinker's answer cut at the stop strings; the speech is the talker's reading of the whole
  reply, up to where the thinker stopped.
* Latency (:mod:`lm_eval_speech.speech.latency`): the first text token is timed by a logits
  processor on the thinker (``thinker_logits_processor``); the waveform arrives only when
  ``generate`` returns, so the first audio is recorded at the end of generation (not streamed).
* ``speech_output=never`` loads the thinker alone (the config's ``enable_audio_output`` off): the
  talker and vocoder never take memory.
* Voices: those the checkpoint holds, matched without regard to case; another name is refused
  with the list.
* Without torchvision (which the processors' image and video parts need, and audio never uses)
  the processor is built from its audio and text parts: the same class, tokenizer, feature
  extractor and chat template, no vision processors.

A family file names its transformers classes, its default voice and system prompt, and what its
``generate`` needs besides (:meth:`QwenOmniLM._voices`, :meth:`QwenOmniLM._family_generate_kwargs`).
"""

from __future__ import annotations

import time

from lm_eval_speech.calls.local import FirstStepClock, generate_text
from lm_eval_speech.models._base import logger
from lm_eval_speech.models.hf_audio import HFAudioLM
from lm_eval_speech.options import as_bool
from lm_eval_speech.speech.latency import Timing
from lm_eval_speech.speech.output import SpokenAnswer

# Both vocoders write 24 kHz: Qwen2.5-Omni's BigVGAN 240 samples per mel frame at 100 frames/s,
# Qwen3-Omni's code2wav 1920 samples per code at 12.5 codes/s.
SPEECH_RATE = 24000
VISION_PARTS = ("image_processor", "video_processor")


def audio_only_processor(processor_class: str, pretrained: str, revision: str | None, trust_remote_code: bool):
    """``processor_class`` over the checkpoint's tokenizer, feature extractor and chat template, without vision parts."""
    import transformers

    base = getattr(transformers, processor_class)

    class AudioOnlyProcessor(base):
        def check_argument_for_proper_class(self, argument_name, argument):
            if argument is None and argument_name in VISION_PARTS:
                return None
            return super().check_argument_for_proper_class(argument_name, argument)

    AudioOnlyProcessor.__name__ = AudioOnlyProcessor.__qualname__ = f"AudioOnly{processor_class}"
    load = {"revision": revision, "trust_remote_code": trust_remote_code}
    tokenizer = transformers.AutoTokenizer.from_pretrained(pretrained, **load)
    extractor = transformers.AutoFeatureExtractor.from_pretrained(pretrained, **load)
    settings, _ = base.get_processor_dict(pretrained, revision=revision)
    return AudioOnlyProcessor(
        image_processor=None, video_processor=None, feature_extractor=extractor, tokenizer=tokenizer,
        chat_template=settings.get("chat_template") or tokenizer.chat_template,
    )


class QwenOmniLM(HFAudioLM):
    """The omni behaviour on top of ``hf_audio``; a family subclass sets the class attributes below."""

    SPEAKS = True
    PROCESSOR_CLASS: str = ""  # the transformers processor class, for the audio-only build
    # The system prompt the model card requires for speech output (None: none is required).
    SPEECH_SYSTEM_PROMPT: str | None = None

    def __init__(
        self,
        pretrained: str | None = None,
        model_class: str | None = None,
        system_prompt: str | None = None,
        speaker: str = "",
        talker_max_new_tokens: int = 4096,
        talker_do_sample: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(pretrained=pretrained, model_class=model_class, system_prompt=system_prompt, **kwargs)
        self.talker_max_new_tokens = int(talker_max_new_tokens)
        self.talker_do_sample = as_bool(talker_do_sample, "model_args talker_do_sample")
        self.thinker = getattr(self.model, "thinker", self.model)
        self._batched_speech = True
        self.speaker = None
        if not getattr(self.model, "has_talker", False):
            if self.speech.mode == "always":
                raise ValueError(f"{type(self).__name__}: {pretrained} has no talker, so speech_output=always cannot be met")
            self.SPEAKS = False  # the base class then refuses spoken requests with its own message
            return
        self.speaker = self._voice(str(speaker))
        if self.SPEECH_SYSTEM_PROMPT and self.system_prompt != self.SPEECH_SYSTEM_PROMPT:
            logger.warning(
                "%s: system_prompt differs from Qwen's own, which its model card requires for speech output: "
                "the spoken answers may not work as expected", type(self).__name__,
            )

    # -- loading (hooks of hf_audio) ---------------------------------------------------------------
    def _auto_processor(self, pretrained, revision, trust_remote_code):
        from transformers.utils import is_torchvision_available

        if is_torchvision_available():
            return super()._auto_processor(pretrained, revision, trust_remote_code)
        logger.info("%s: torchvision is absent: building %s from its audio and text parts", type(self).__name__, self.PROCESSOR_CLASS)
        return audio_only_processor(self.PROCESSOR_CLASS, pretrained, revision, trust_remote_code)

    def _adapt_config(self, config):
        # Text only: Qwen's enable_audio_output=False, before loading, so the talker never takes memory.
        if self.speech.mode == "never" and hasattr(config, "enable_audio_output"):
            config.enable_audio_output = False
        return config

    # -- voices (family hook) ----------------------------------------------------------------------
    def _voices(self) -> list[str]:
        """The voices the loaded checkpoint offers, as it names them."""
        raise NotImplementedError

    def _voice(self, speaker: str) -> str:
        voices = sorted(self._voices())
        for voice in voices:
            if voice.lower() == speaker.lower():
                return voice
        raise ValueError(f"{type(self).__name__}: speaker {speaker!r} is not in {self.pretrained} (voices: {', '.join(voices)})")

    # -- prompt ------------------------------------------------------------------------------------
    def apply_chat_template(self, chat_history: list[dict], add_generation_prompt: bool = True) -> str:
        # --apply_chat_template renders here: keep the system prompt unless the task gives one.
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
        from transformers import LogitsProcessorList

        inputs = self._inputs(requests, self.thinker.dtype)
        input_length = inputs["input_ids"].shape[1]
        # generate() hands unprefixed keywords to the talker as well: the thinker's all carry "thinker_".
        thinker = {f"thinker_{key}": value for key, value in params.to_transformers().items() if key != "num_return_sequences"}
        stops = list(params.stop)
        if stops:
            thinker["thinker_stopping_criteria"] = stop_sequences_criteria(self.tokenizer, stops, input_length, len(requests))
        # Rows stopped by a stop string are padded with EOS, so the talker sees where each reply ends.
        eos = self._thinker_eos()
        thinker["thinker_pad_token_id"] = eos[0]
        clock = FirstStepClock()
        thinker["thinker_logits_processor"] = LogitsProcessorList([clock])
        if params.seed is not None:
            torch.manual_seed(int(params.seed))
        started = time.perf_counter()
        with torch.inference_mode():
            sequences, audio = self.model.generate(
                **inputs, **thinker, speaker=self.speaker, use_audio_in_video=False,
                talker_max_new_tokens=self.talker_max_new_tokens, talker_do_sample=self.talker_do_sample,
                **self._family_generate_kwargs(eos),
            )
        # The waveform comes with the end of generate: first_audio_s stays None (recorded as at the end).
        timing = Timing(total_s=time.perf_counter() - started, first_text_s=None if clock.first is None else clock.first - started,
                        batch_size=len(requests))
        texts = self.tokenizer.batch_decode(sequences[:, input_length:], skip_special_tokens=True)
        # One tensor for a single row, a list of them (each its own length) for a batch.
        waves = audio if isinstance(audio, (list, tuple)) else [audio]
        return [
            SpokenAnswer(text, wave.detach().reshape(-1).float().cpu().numpy(), SPEECH_RATE, timing)
            for text, wave in zip(texts, waves, strict=True)
        ]

    def _family_generate_kwargs(self, thinker_eos: list[int]) -> dict:
        """What this family's ``generate`` needs besides the shared arguments (family hook)."""
        return {}

    def _thinker_eos(self) -> list[int]:
        """The thinker's end-of-reply tokens (its generation config's, else the tokenizer's EOS or pad)."""
        eos = self.thinker.generation_config.eos_token_id
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        for candidate in (self.tokenizer.eos_token_id, self.tokenizer.pad_token_id):
            if not eos and candidate is not None:
                eos = [candidate]
        if not eos:
            raise ValueError(f"{type(self).__name__}: {self.pretrained} defines no EOS or pad token")
        return [int(token) for token in eos]

    # -- reporting ---------------------------------------------------------------------------------
    def get_model_info(self) -> dict:
        return {**super().get_model_info(), "speaker": self.speaker if self.SPEAKS else None, "talker": self.SPEAKS}
