"""OpenAI audio chat models (``gpt-4o-audio-preview``, ``gpt-4o-mini-audio-preview``, or any
endpoint speaking the same protocol) answering the project's audio requests.

``--model openai_audio --model_args model=gpt-4o-audio-preview[,base_url=...]``. Each request
becomes one user message whose content parts follow the prompt: text, and one ``input_audio``
part (base64 WAV, 16-bit PCM mono at ``sampling_rate``) per ``<audio>`` placeholder.

Calls go through the model-call layer (:mod:`lm_eval_speech.calls`): the endpoint's shared
adaptive limit (``max_concurrency`` caps it), retries that honour ``Retry-After``, the one cache of
outputs (``cache``: default on, a path, or ``false``), accounting of every HTTP attempt (in the
results' ``config.openai_audio.accounting``), and a preflight check of the endpoint before any
work (``preflight=false`` skips it). A request that still fails becomes a
:class:`~lm_eval_speech.outcomes.FailedGeneration`: left out of the scores and counted in
``failed_items``.

Speech output (see :mod:`lm_eval_speech.speech.output`): when a task asks for a spoken answer
(or ``speech_output=always``), the request adds ``modalities: ["text", "audio"]`` and
``audio: {"voice": voice, "format": "wav"}``; the reply's transcript is the text answer and its
audio is written under the run's output folder. ``voice`` defaults to ``alloy``. Each spoken
answer's latency is its own call's (the wall time of the attempt that succeeded; no stream, so
first audio = end of generation), and a reply served from the cache keeps the one it was made with.

The API key is read from the environment variable named by ``api_key_env`` (default
``OPENAI_API_KEY``); a key given as a model_arg is refused, because lm-eval writes model_args
into the results file. Being an API model, it does not shard by rank: run one process.
"""

from __future__ import annotations

import base64
import io
from collections import defaultdict
from typing import Any

import lm_eval.models  # noqa: F401  (fills the built-in registry first)
import numpy as np
from lm_eval.api.instance import Instance
from lm_eval.api.registry import register_model

from lm_eval_speech import outcomes
from lm_eval_speech.calls import Caller, CallRequest, CallStats, GenerationParams, check_endpoint, open_cache
from lm_eval_speech.calls.config import (
    DEFAULT_MAX_CONCURRENCY, DEFAULT_TIMEOUT, CallConfig, cache_file, canonical_json, config_from_settings, refuse_secrets,
)
from lm_eval_speech.calls.openai_chat import api_key
from lm_eval_speech.models._base import SpeechLM, request_where, split_audio_prompt
from lm_eval_speech.speech.audio import clip_array, clip_digest, encode_wav
from lm_eval_speech.speech.output import SpokenAnswer


@register_model("openai_audio")
class OpenAIAudioLM(SpeechLM):
    SPEAKS = True
    LOCAL = False
    NAME = "openai_audio"  # in the results' config, logs and failure reasons

    def __init__(
        self,
        model: str = "gpt-4o-audio-preview",
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        max_retries: int = 8,
        timeout: float = DEFAULT_TIMEOUT,
        cache: Any = True,
        preflight: Any = True,
        system_prompt: str | None = None,
        sampling_rate: int = 16000,
        voice: str = "alloy",
        **kwargs: Any,
    ) -> None:
        refuse_secrets(kwargs, f"{self.NAME} model_args")
        super().__init__(**kwargs)
        self.batch_size = 0  # every request with the same gen_kwargs in one concurrent run
        self.system_prompt = str(system_prompt) if system_prompt else None
        self.sampling_rate = int(sampling_rate)
        if self.sampling_rate < 1:
            raise ValueError(f"{self.NAME}: sampling_rate must be a positive integer, not {sampling_rate!r}")
        self.voice = str(voice)
        self.base = {
            "model": str(model), "name": f"{self.NAME} {model}", "base_url": str(base_url) if base_url else None,
            "api_key_env": str(api_key_env), "max_concurrency": int(max_concurrency), "max_retries": int(max_retries),
            "timeout": float(timeout), "n_mode": "repeat", "preflight": preflight,
        }
        config = self._config(GenerationParams(), speaks=False)  # every setting checked now, not at the first request
        api_key(config)
        check_endpoint(config, user=self.NAME)
        self.cache_path = cache_file(cache)
        self._cache = open_cache(self.cache_path)
        self._callers: list[Caller] = []

    def _config(self, params: GenerationParams, speaks: bool) -> CallConfig:
        modalities = {"modalities": ["text"]}
        if speaks:
            modalities = {"modalities": ["text", "audio"], "audio": {"voice": self.voice, "format": "wav"}}
        return config_from_settings({**self.base, **params.given(), "extra_body": modalities}, where=self.NAME)

    def get_model_info(self) -> dict:
        """Merged by lm_eval into the results' ``config``: settings and accounting, never the key."""
        config = self._config(GenerationParams(), speaks=False)
        stats = CallStats()
        for caller in self._callers:
            stats.add(caller.stats)
        return {
            **super().get_model_info(),
            self.NAME: {
                "model": config.model, "endpoint": config.endpoint, "api_key_env": config.api_key_env,
                "sampling_rate": self.sampling_rate, "system_prompt": self.system_prompt, "voice": self.voice,
                "speech_output": self.speech.mode, "cache": str(self.cache_path) if self.cache_path else None,
                "accounting": stats.as_dict(config.prices()),
            },
        }

    # -- generation ------------------------------------------------------------------------------
    def _generate_batch(self, requests: list[Instance], params: GenerationParams) -> list:
        return self._answers(requests, params, speaks=False)

    def _speak_batch(self, requests: list[Instance], params: GenerationParams) -> list:
        return self._answers(requests, params, speaks=True)

    def _answers(self, requests: list[Instance], params: GenerationParams, speaks: bool) -> list:
        """Identical requests share a call when greedy, or each take their own output of one n-output request."""
        same: dict[str, list[int]] = defaultdict(list)
        for index, request in enumerate(requests):
            identity = canonical_json([request.args[0], [clip_digest(c) for c in request.args[2]["audio"]]])
            same[identity].append(index)
        by_n: dict[int, list[list[int]]] = defaultdict(list)
        for indexes in same.values():
            by_n[1 if params.greedy else len(indexes)].append(indexes)
        results: list = [None] * len(requests)
        for n, groups in by_n.items():
            caller = Caller(self._config(params.with_n(n), speaks), self._cache)
            self._callers.append(caller)
            # messages are built a chunk at a time: base64 audio of a whole task would not fit in memory
            for start in range(0, len(groups), 64):
                part = groups[start : start + 64]
                batch = [CallRequest(self._messages(requests[g[0]]), request_where(requests[g[0]])) for g in part]
                for indexes, outputs in zip(part, caller.run(batch, desc=self.base["name"]), strict=True):
                    for occurrence, index in enumerate(indexes):
                        results[index] = self._answer(requests[index], outputs[occurrence % n], speaks)
        return results

    def _answer(self, request: Instance, output, speaks: bool):
        where, name = request_where(request), self.base["name"]
        if not output.ok:
            return outcomes.failed(request.task_name, where, f"{name}: {where}: {output.error}")
        if not speaks:
            return output.text
        if not output.audio:
            return outcomes.failed(request.task_name, where, f"{name}: {where}: the reply has no audio")
        import soundfile as sf

        try:
            audio, rate = sf.read(io.BytesIO(base64.b64decode(output.audio)), dtype="float32", always_2d=True)
        except (ValueError, RuntimeError, sf.LibsndfileError) as error:
            return outcomes.failed(request.task_name, where, f"{name}: {where}: unreadable reply audio ({error})")
        # the call's own timing (a cached reply keeps the one it was made with), not the concurrent batch's
        return SpokenAnswer(output.text, audio.mean(axis=1), rate, output.timing)

    def _prompt(self, request: Instance) -> list[str | np.ndarray]:
        """The prompt in order: text pieces, and each clip as float mono at ``sampling_rate`` (within [-1, 1])."""
        where = request_where(request)
        clips = request.args[2]["audio"]
        parts: list[str | np.ndarray] = []
        for part in split_audio_prompt(request.args[0], len(clips), where=where):
            if part["type"] == "text":
                parts.append(part["text"])
                continue
            array = clip_array(clips[int(part["audio_url"].rsplit("-", 1)[1]) - 1], self.sampling_rate, item=where)
            peak = float(np.max(np.abs(array))) if array.size else 0.0
            parts.append(array / peak if peak > 1.0 else array)  # 16-bit PCM cannot hold it: scale down rather than clip
        return parts

    def _messages(self, request: Instance) -> list[dict]:
        content = []
        for part in self._prompt(request):
            if isinstance(part, str):
                content.append({"type": "text", "text": part})
            else:
                data = base64.b64encode(encode_wav(part, self.sampling_rate)).decode("ascii")
                content.append({"type": "input_audio", "input_audio": {"data": data, "format": "wav"}})
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return messages + [{"role": "user", "content": content}]
