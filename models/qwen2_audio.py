"""Qwen2-Audio (transformers ``Qwen2AudioForConditionalGeneration``): :mod:`hf_audio` plus its encoder window.

load → batch (longest audio first, left padding) → chat template → generate → cut at stop strings.

``--model_args`` keys: those of ``hf_audio`` (``pretrained``, default ``Qwen/Qwen2-Audio-7B-Instruct``;
``revision``, ``dtype``, ``device``, ``batch_size``, ``system_prompt``, ``attn_implementation``,
``trust_remote_code``, ...), and ``long_audio`` (``truncate`` or ``error`` for clips longer than the
encoder window).
"""

from __future__ import annotations

from lm_eval.api.registry import register_model

from lm_eval_speech.models._base import logger, request_where
from lm_eval_speech.models.hf_audio import HFAudioLM

LONG_AUDIO_POLICIES = ("truncate", "error")


@register_model("qwen2_audio")
class Qwen2AudioLM(HFAudioLM):
    def __init__(
        self,
        pretrained: str = "Qwen/Qwen2-Audio-7B-Instruct",
        long_audio: str = "truncate",
        model_class: str | None = "Qwen2AudioForConditionalGeneration",
        **kwargs,
    ) -> None:
        if long_audio not in LONG_AUDIO_POLICIES:
            raise ValueError(f"long_audio must be one of {LONG_AUDIO_POLICIES}, not {long_audio!r}")
        super().__init__(pretrained=pretrained, model_class=model_class, **kwargs)
        self.long_audio = long_audio
        # The Whisper-style encoder sees one fixed window (30 s for the released checkpoints).
        self.max_audio_seconds = float(self.processor.feature_extractor.chunk_length)
        self.audio_token = self.audio_token or "<|AUDIO|>"

    def _clips(self, request) -> list:
        arrays = []
        where = request_where(request)
        for array in super()._clips(request):
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
