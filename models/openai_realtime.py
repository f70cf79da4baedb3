"""OpenAI's Realtime API (``gpt-realtime``, ``gpt-4o-realtime-preview``, or any server speaking its event
protocol) answering the project's audio requests, in speech or text.

``--model openai_realtime --model_args model=gpt-realtime[,base_url=...]``. Each request is one
Realtime session over the openai SDK's realtime client (:mod:`lm_eval_speech.calls.openai_realtime`):
the session's instructions (``system_prompt``; without one, the API's default), turn detection
off (whole clips are sent), the prompt in order (text as an ``input_text`` item, each clip as
24 kHz PCM16 appended and committed), then ``response.create``; audio, transcript and text deltas
are collected until ``response.done``.

When a task asks for a spoken answer (or ``speech_output=always``) the session's output
modalities are ``["audio"]`` (the transcript comes with the audio): the transcript is the text
answer and the audio is written by the speech-output convention (:mod:`lm_eval_speech.speech.output`).
Otherwise they are ``["text"]`` and the text is the answer. Each spoken answer's latency is
streamed (``speech_output[i]["latency"]``): seconds from sending ``response.create`` to the first
transcript delta, the first audio delta and ``response.done``; a reply served from the cache keeps
the latency it was made with.

Calls go through the model-call layer, as ``openai_audio``'s: the endpoint's shared adaptive limit
(``max_concurrency`` caps it), retries (a dropped connection, an ``error`` event, a failed or
cancelled response, a timeout), the one cache of outputs with their audio, accounting of every
attempt (in the results' ``config.openai_realtime.accounting``: calls, retries, failures by kind,
tokens from each ``response.done``), and a preflight check that something listens at the
endpoint. A request that still fails becomes a :class:`~lm_eval_speech.outcomes.FailedGeneration`
naming the doc and the reason: left out of the scores and counted in ``failed_items``.

model_args:

* ``model``: the Realtime model (default ``gpt-realtime``);
* ``base_url``: the API's base URL, ``wss://``/``ws://`` or ``https://``/``http://`` alike
  (``ws://127.0.0.1:8000/v1``; the SDK adds ``/realtime?model=...``); default ``$OPENAI_BASE_URL``,
  else OpenAI;
* ``api_key_env``: the environment variable holding the key (default ``OPENAI_API_KEY``); a key
  given as a model_arg is refused, because lm-eval writes model_args into the results file;
* ``max_concurrency`` (64), ``max_retries`` (8), ``timeout`` (600 s for a whole attempt,
  connection to ``response.done``), ``cache`` (default on: ``calls.sqlite`` in the cache folder; a
  path, or ``false``), ``preflight`` (true);
* ``voice`` (default ``alloy``), ``system_prompt`` (the session's instructions);
* ``speech_output``, ``speech_dir``, ``speech_asr``, ``speech_asr_language``: the speech-output convention.

The Realtime API takes no sampling settings: a task's ``max_gen_toks`` becomes the response's
``max_output_tokens`` (an answer cut there ends with finish reason ``length``), stop strings cut
the answer afterwards, and temperature or top_p are not sent. Being an API model, it does not
shard by rank: run one process.
"""

from __future__ import annotations

import base64
from typing import Any

import lm_eval.models  # noqa: F401  (fills the built-in registry first)
from lm_eval.api.instance import Instance
from lm_eval.api.registry import register_model

from lm_eval_speech.calls.config import DEFAULT_MAX_CONCURRENCY, DEFAULT_TIMEOUT, CallConfig, config_from_settings, refuse_secrets
from lm_eval_speech.calls.openai_realtime import RATE, pcm16
from lm_eval_speech.calls.params import GenerationParams
from lm_eval_speech.models.openai_audio import OpenAIAudioLM
from lm_eval_speech.options import check_known


@register_model("openai_realtime")
class OpenAIRealtimeLM(OpenAIAudioLM):
    NAME = "openai_realtime"

    def __init__(
        self,
        model: str = "gpt-realtime",
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        max_retries: int = 8,
        timeout: float = DEFAULT_TIMEOUT,
        cache: Any = True,
        preflight: Any = True,
        system_prompt: str | None = None,
        voice: str = "alloy",
        **kwargs: Any,
    ) -> None:
        refuse_secrets(kwargs, f"{self.NAME} model_args")
        check_known(kwargs, self.accepted_args(), f"{type(self).__name__} model_args")  # sampling_rate: the API's, fixed
        super().__init__(
            model=model, base_url=base_url, api_key_env=api_key_env, max_concurrency=max_concurrency,
            max_retries=max_retries, timeout=timeout, cache=cache, preflight=preflight, system_prompt=system_prompt,
            sampling_rate=RATE, voice=voice, **kwargs,
        )

    @classmethod
    def accepted_args(cls) -> set[str]:
        return super().accepted_args() - {"sampling_rate"}

    def _config(self, params: GenerationParams, speaks: bool) -> CallConfig:
        # laid over the session.update the backend sends: part of the cache key, as the chat API's modalities are
        session: dict = {"output_modalities": ["audio"] if speaks else ["text"]}
        if speaks:
            session["audio"] = {"output": {"voice": self.voice}}
        return config_from_settings({**self.base, "backend": "realtime", **params.given(), "extra_body": session}, where=self.NAME)

    def _messages(self, request: Instance) -> list[dict]:
        content = []
        for part in self._prompt(request):
            if isinstance(part, str):
                content.append({"type": "input_text", "text": part})
            else:
                content.append({"type": "input_audio", "audio": base64.b64encode(pcm16(part)).decode("ascii")})
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return messages + [{"role": "user", "content": content}]
