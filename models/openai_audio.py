"""OpenAI audio chat models (``gpt-4o-audio-preview``, ``gpt-4o-mini-audio-preview``, or any
endpoint speaking the same protocol) answering the project's audio requests.

``--model openai_audio --model_args model=gpt-4o-audio-preview[,base_url=...]``. Each request
becomes one user message whose content parts follow the prompt: text, and one ``input_audio``
part (base64 WAV, 16-bit PCM mono at ``sample_rate``) per ``<audio>`` placeholder.

Calls go through the judge layer (:mod:`lm_eval_speech.judge`): bounded concurrency, the SDK's
retries, a persistent SQLite cache and failures recorded as :class:`FailedGeneration` (left out
of the scores and counted in ``failed_items``). The cache is its own file,
``openai_audio.sqlite`` in :func:`lm_eval_speech.paths.cache_root` (``cache=PATH`` elsewhere,
``cache=false`` off); a re-run with the same model, endpoint, prompt, audio and sampling is
answered from it without a call.

Speech output (see :mod:`lm_eval_speech.speech_output`): when a task asks for a spoken answer
(or ``speech_output=always``), the request adds ``modalities: ["text", "audio"]`` and
``audio: {"voice": voice, "format": "wav"}``; the reply's transcript is the text answer and its
audio is written under the run's output folder. ``voice`` defaults to ``alloy``. Spoken
replies are cached with their audio.

The API key is read from the environment variable named by ``api_key_env`` (default
``OPENAI_API_KEY``); a key given as a model_arg is refused, because lm-eval writes model_args
into the results file. Being an API model, it does not shard by rank: run one process.
"""

from __future__ import annotations

import base64
import logging
from collections import defaultdict
from typing import Any

import lm_eval.models  # noqa: F401  (fills the built-in registry first)
import numpy as np
from lm_eval.api.instance import Instance
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from lm_eval.models.utils import normalize_gen_kwargs, postprocess_generated_text

from lm_eval_speech.audio import clip_array, clip_digest, encode_wav
from lm_eval_speech.judge import Judge, JudgeConfig, JudgeRequest
from lm_eval_speech.judge.cache import JudgeCache
from lm_eval_speech.judge.config import cache_file, canonical_json, is_secret_setting
from lm_eval_speech.models._base import DEFAULT_MAX_GEN_TOKS, request_where, split_audio_prompt, unsupported_requests
from lm_eval_speech.outcomes import FailedGeneration
from lm_eval_speech.speech_output import SpeechAsk, SpeechOutput, split_speech_kwargs

logger = logging.getLogger("lm_eval_speech.models")

CACHE_FILE = "openai_audio.sqlite"
MAX_STOP_STRINGS = 4  # the chat completions API accepts at most four; the rest are cut afterwards
# gen_kwargs sent as they are; normalize_gen_kwargs' own keys are mapped, anything else is ignored
PASSTHROUGH = ("top_p", "seed", "frequency_penalty", "presence_penalty")
HANDLED = ("until", "max_gen_toks", "do_sample", "temperature")
# lm_eval adds these for every model; they mean nothing to an API
LM_EVAL_EXTRAS = ("batch_size", "max_batch_size", "device")


class OpenAIAudioError(ValueError):
    """A model_arg or a request the model cannot use."""


def _refuse_secrets(args: dict) -> None:
    for key in args:
        if is_secret_setting(key):
            raise OpenAIAudioError(
                f"openai_audio: model_arg {key!r} is not accepted, because lm-eval writes model_args into the results "
                "file. Put the key in an environment variable and name it with api_key_env (default OPENAI_API_KEY)."
            )


@register_model("openai_audio")
class OpenAIAudioLM(LM):
    MULTIMODAL = True

    def __init__(
        self,
        model: str = "gpt-4o-audio-preview",
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 16,
        max_retries: int = 8,
        timeout: float = 120.0,
        cache: Any = True,
        system_prompt: str | None = None,
        sample_rate: int = 16000,
        voice: str = "alloy",
        speech_output: str = "auto",
        speech_dir: str | None = None,
        speech_asr: str | None = None,
        speech_asr_language: str | None = None,
        **unused: Any,
    ) -> None:
        super().__init__()
        _refuse_secrets(unused)
        unused = {k: v for k, v in unused.items() if k not in LM_EVAL_EXTRAS}
        if unused:
            raise OpenAIAudioError(
                f"openai_audio: unknown model_args {', '.join(sorted(unused))}; known: model, base_url, api_key_env, "
                "concurrency, max_retries, timeout, cache, system_prompt, sample_rate, voice, speech_output, speech_dir, "
                "speech_asr, speech_asr_language"
            )
        self.model = str(model)
        self.base_url = str(base_url) if base_url else None
        self.api_key_env = str(api_key_env)
        self.concurrency = int(concurrency)
        self.max_retries = int(max_retries)
        self.timeout = float(timeout)
        self.system_prompt = str(system_prompt) if system_prompt else None
        self.sample_rate = int(sample_rate)
        if self.sample_rate < 1:
            raise OpenAIAudioError(f"openai_audio: sample_rate must be a positive integer, not {sample_rate!r}")
        self.voice = str(voice)
        self.speech = SpeechOutput(
            "openai_audio", mode=speech_output, directory=speech_dir, asr=speech_asr, asr_language=speech_asr_language
        )
        self._config(sampling={}, n=1)  # every setting checked now, not at the first request
        self.cache_path = cache_file(cache, CACHE_FILE)
        self._cache = JudgeCache(self.cache_path) if self.cache_path else None
        self._warned: set[str] = set()  # gen_kwargs already reported as not sent

    def _config(self, sampling: dict, n: int, speaks: bool = False) -> JudgeConfig:
        modalities = {"modalities": ["text"]}
        if speaks:
            modalities = {"modalities": ["text", "audio"], "audio": {"voice": self.voice, "format": "wav"}}
        return JudgeConfig(
            model=self.model, name=f"openai_audio {self.model}", base_url=self.base_url, api_key_env=self.api_key_env,
            n=n, n_mode="repeat", concurrency=self.concurrency, max_retries=self.max_retries, timeout=self.timeout,
            extra_body=modalities, **sampling,
        )

    def get_model_info(self) -> dict:
        """Merged by lm_eval into the results' ``config``: settings only, never the key."""
        config = self._config(sampling={}, n=1)
        return {
            "openai_audio": {
                "model": self.model, "endpoint": config.endpoint, "api_key_env": self.api_key_env,
                "sample_rate": self.sample_rate, "system_prompt": self.system_prompt, "voice": self.voice,
                "speech_output": self.speech.mode,
                "cache": str(self.cache_path) if self.cache_path else None,
            }
        }

    # -- request types ---------------------------------------------------------------------
    def loglikelihood(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError(unsupported_requests(self, "loglikelihood", requests))

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError(unsupported_requests(self, "loglikelihood_rolling", requests))

    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        for request in requests:
            if len(request.args) < 3 or not request.args[2].get("audio"):
                raise OpenAIAudioError(
                    f"openai_audio: {request_where(request)} carries no audio "
                    '(was the task run with --metadata \'{"load_audio": false}\'?)'
                )
        # Requests with the same sampling share one judge config; identical requests share a call
        # (greedy), or each take their own sample of one n-sample request (sampling, e.g. repeats).
        groups: dict[tuple, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
        settings: dict[tuple, tuple[dict, list[str], SpeechAsk]] = {}
        for index, request in enumerate(requests):
            gen_kwargs, ask = split_speech_kwargs(request.args[1])
            sampling, stops = self._sampling(gen_kwargs)
            key = (canonical_json(sampling), tuple(stops), ask)
            settings[key] = (sampling, stops, ask)
            identity = canonical_json([request.args[0], [clip_digest(c) for c in request.args[2]["audio"]]])
            groups[key][identity].append(index)
        results: list[str | None] = [None] * len(requests)
        for key, same in groups.items():
            sampling, stops, ask = settings[key]
            by_n: dict[int, list[list[int]]] = defaultdict(list)
            for indexes in same.values():
                by_n[len(indexes) if sampling.get("temperature") else 1].append(indexes)
            for n, items in by_n.items():
                self._run(requests, items, sampling, stops, n, results, ask)
        return results

    def _sampling(self, gen_kwargs: dict) -> tuple[dict, list[str]]:
        settings = normalize_gen_kwargs(gen_kwargs, default_max_gen_toks=DEFAULT_MAX_GEN_TOKS)
        stops = [s for s in settings["until"] if s]
        sampling = {"max_tokens": settings["max_gen_toks"], "temperature": float(settings["temperature"]) if settings["do_sample"] else 0.0}
        if stops:
            sampling["stop"] = stops[:MAX_STOP_STRINGS]
        sampling.update({k: settings[k] for k in PASSTHROUGH if settings.get(k) is not None})
        ignored = sorted(set(settings) - set(PASSTHROUGH) - set(HANDLED) - self._warned)
        if ignored:
            self._warned.update(ignored)
            logger.warning("openai_audio: gen_kwargs %s have no chat-completions equivalent and are not sent", ignored)
        return sampling, stops

    def _run(self, requests, items: list[list[int]], sampling: dict, stops: list[str], n: int, results: list,
             ask: SpeechAsk) -> None:
        speaks = self.speech.wants_audio(ask)
        judge = Judge(self._config(sampling, n, speaks), self._cache)
        # messages are built a chunk at a time: base64 audio of a whole task would not fit in memory
        chunk = max(4 * self.concurrency, 64)
        for start in range(0, len(items), chunk):
            part = items[start : start + chunk]
            batch = [JudgeRequest(self._messages(requests[indexes[0]]), request_where(requests[indexes[0]])) for indexes in part]
            outputs = judge.run(batch, desc=f"openai_audio {self.model}")
            for indexes, samples in zip(part, outputs, strict=True):
                for occurrence, index in enumerate(indexes):
                    output = samples[occurrence % n]
                    if output.error is not None:
                        results[index] = FailedGeneration(f"openai_audio {self.model}: {output.error}")
                    elif speaks:
                        results[index] = self._spoken(requests[index], output, stops, ask)
                    else:
                        results[index] = postprocess_generated_text(output.text, stops, None)
        stats = judge.stats
        logger.info("openai_audio %s: %d responses, %d calls, %d from the cache, %d failed",
                    self.model, stats.samples, stats.calls, stats.cache_hits, stats.failures)

    def _spoken(self, request: Instance, output, stops: list[str], ask: SpeechAsk) -> str:
        import io

        import soundfile as sf

        text = postprocess_generated_text(output.text, stops, None)
        if not output.audio:
            return FailedGeneration(f"openai_audio {self.model}: {request_where(request)}: the reply has no audio")
        try:
            audio, rate = sf.read(io.BytesIO(base64.b64decode(output.audio)), dtype="float32", always_2d=True)
        except (ValueError, RuntimeError, sf.LibsndfileError) as error:
            return FailedGeneration(f"openai_audio {self.model}: {request_where(request)}: unreadable reply audio ({error})")
        return self.speech.respond(request, text, audio.mean(axis=1), rate, ask)

    def _messages(self, request: Instance) -> list[dict]:
        where = request_where(request)
        clips = request.args[2]["audio"]
        content = []
        for part in split_audio_prompt(request.args[0], len(clips), where=where):
            if part["type"] == "text":
                content.append({"type": "text", "text": part["text"]})
                continue
            clip = clips[int(part["audio_url"].rsplit("-", 1)[1]) - 1]
            array = clip_array(clip, self.sample_rate, item=where)
            peak = float(np.max(np.abs(array))) if array.size else 0.0
            if peak > 1.0:  # 16-bit PCM cannot hold it: scale down rather than clip
                array = array / peak
            data = base64.b64encode(encode_wav(array, self.sample_rate)).decode("ascii")
            content.append({"type": "input_audio", "input_audio": {"data": data, "format": "wav"}})
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return messages + [{"role": "user", "content": content}]
