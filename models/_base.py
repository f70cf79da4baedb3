"""What every audio-in model of this project shares: model_args, device, data parallel, batching, speech.

A model file subclasses :class:`SpeechLM` and implements ``_generate_batch`` (and, for a model
that can answer in speech, ``_speak_batch``); requests arrive as lm-eval builds them for
multimodal tasks: ``(context, gen_kwargs, {"audio": [clip, ...]})`` with one ``<audio>``
placeholder in the context per clip, clips at their native rate. gen_kwargs become one
:class:`lm_eval_speech.calls.GenerationParams`; a model_arg that no class of the model takes is
an error listing those it takes. Local models run on ``device``; API models (``LOCAL = False``)
need no torch.
"""

from __future__ import annotations

import inspect
import logging
import os
import time
from datetime import timedelta
from typing import Any

from lm_eval.api.instance import Instance
from lm_eval.api.model import LM
from lm_eval.models.utils import Collator, postprocess_generated_text
from tqdm import tqdm

from lm_eval_speech.calls.params import GenerationParams
from lm_eval_speech.options import check_known
from lm_eval_speech.outcomes import is_failure
from lm_eval_speech.speech.audio import duration_seconds
from lm_eval_speech.speech.latency import Timing
from lm_eval_speech.speech.output import SpeechOutput, SpokenAnswer, split_speech_kwargs

logger = logging.getLogger("lm_eval_speech.models")

AUDIO_PLACEHOLDER = "<audio>"
# lm-eval's own defaults (gen_kwargs without max_gen_toks)
DEFAULT_MAX_GEN_TOKS = 256
# lm_eval hands every model these, whatever --model_args says
LM_EVAL_ARGS = ("batch_size", "max_batch_size", "device")


def resolve_device(device: str | None):
    """A torch device; lm_eval passes ``cuda:0`` by default, which falls back to CPU when there is no GPU."""
    import torch

    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        logger.warning("device %s requested but CUDA is not available: running on CPU", device)
        return torch.device("cpu")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        logger.warning("device %s requested but MPS is not available: running on CPU", device)
        return torch.device("cpu")
    return resolved


def resolve_dtype(dtype: str | None, device):
    """``auto``: the checkpoint's own dtype on accelerators, float32 on CPU (half precision is slow there)."""
    import torch

    if dtype in (None, "", "auto"):
        return "auto" if device.type != "cpu" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    value = getattr(torch, str(dtype), None)
    if not isinstance(value, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r} (use auto, float32, bfloat16 or float16)")
    return value


def split_audio_prompt(text: str, n_clips: int, *, where: str) -> list[dict]:
    """Chat content parts for a prompt with one ``<audio>`` per clip, in prompt order.

    A prompt without placeholders gets its clips first (the common speech-LLM layout).
    """
    pieces = text.split(AUDIO_PLACEHOLDER)
    n_placeholders = len(pieces) - 1
    if n_placeholders == 0 and n_clips:
        pieces = [""] * n_clips + [text]
        n_placeholders = n_clips
    if n_placeholders != n_clips:
        raise ValueError(f"{where}: the prompt has {n_placeholders} {AUDIO_PLACEHOLDER} placeholders but {n_clips} audio clips")
    parts: list[dict] = []
    for index, piece in enumerate(pieces):
        if index:
            # "audio_url" too: Qwen2-Audio's template tests for that key, not for the type.
            parts.append({"type": "audio", "audio_url": f"clip-{index}"})
        if piece:
            parts.append({"type": "text", "text": piece})
    return parts


def unsupported_requests(model: LM, request_type: str, requests: list[Instance]) -> str:
    tasks = sorted({str(r.task_name) for r in requests})
    return f"{type(model).__name__} generates text only; it cannot serve {request_type} requests (tasks: {', '.join(tasks)})"


def request_where(request: Instance) -> str:
    return f"task {request.task_name} doc {request.doc_id}"


class SpeechLM(LM):
    """lm-eval ``LM`` for audio-in models, with data parallelism as lm-eval's HFLM does it."""

    MULTIMODAL = True
    # Whether the model can answer in speech (it then implements ``_speak_batch``).
    SPEAKS = False
    # Whether the model runs here (device, data parallel); API models set False.
    LOCAL = True

    def __init__(
        self,
        device: str | None = None,
        batch_size: int | str = 1,
        speech_output: str = "auto",
        speech_dir: str | None = None,
        speech_asr: str | None = None,
        speech_asr_language: str | None = None,
        **unknown: Any,
    ) -> None:
        super().__init__()
        check_known(unknown, self.accepted_args(), f"{type(self).__name__} model_args")
        if str(batch_size).startswith("auto"):
            raise ValueError(f"{type(self).__name__}: batch_size=auto is not supported; give a number")
        self.batch_size = int(batch_size)
        self._rank, self._world_size, self.accelerator = 0, 1, None
        self._device = self._setup_parallel(device) if self.LOCAL else None
        self.speech = SpeechOutput(
            type(self).__name__, mode=speech_output, directory=speech_dir, asr=speech_asr,
            asr_language=speech_asr_language, device=self._device,
        )
        if speech_output == "always" and not self.SPEAKS:
            raise ValueError(f"{type(self).__name__} answers in text only: speech_output=always cannot be met")

    @classmethod
    def accepted_args(cls) -> set[str]:
        """Every model_arg some class of this model takes, and the ones lm_eval always passes."""
        names = set(LM_EVAL_ARGS)
        for klass in cls.__mro__:
            init = klass.__dict__.get("__init__")
            if init is not None:
                names |= {p.name for p in inspect.signature(init).parameters.values()
                          if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name != "self"}
        return names

    # -- data parallel (accelerate launch -m lm_eval ...) ---------------------------------
    def _setup_parallel(self, device: str | None):
        resolved = resolve_device(device)
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return resolved
        from accelerate import Accelerator, InitProcessGroupKwargs

        # On a machine without GPUs the processes talk over gloo (accelerate's MULTI_CPU).
        accelerator = Accelerator(
            cpu=resolved.type == "cpu", kwargs_handlers=[InitProcessGroupKwargs(timeout=timedelta(weeks=52))]
        )
        if accelerator.num_processes <= 1:
            return resolved
        self.accelerator = accelerator
        # The global index: lm_eval shards docs by rank over all processes, across machines too.
        self._rank = accelerator.process_index
        self._world_size = accelerator.num_processes
        logger.info("data parallel: rank %d of %d on %s", self._rank, self._world_size, accelerator.device)
        return accelerator.device

    @property
    def device(self):
        return self._device

    @property
    def rank(self) -> int:
        return self._rank

    @property
    def world_size(self) -> int:
        return self._world_size

    def all_gather(self, tensor):
        if self.world_size <= 1:
            return tensor
        return self.accelerator.gather(tensor)

    def gather_object(self, obj, dst=0):
        if self.world_size <= 1:
            return [obj]
        import torch.distributed

        result = [None] * self.world_size if self.rank == dst else None
        torch.distributed.gather_object(obj=obj, object_gather_list=result, dst=dst)
        return result

    def barrier(self):
        if self.world_size > 1:
            self.accelerator.wait_for_everyone()

    def get_model_info(self) -> dict:
        """Merged by lm_eval into the results' ``config``."""
        return {"data_parallel_processes": self.world_size}

    # -- request types ---------------------------------------------------------------------
    def loglikelihood(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError(unsupported_requests(self, "loglikelihood", requests))

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError(unsupported_requests(self, "loglikelihood_rolling", requests))

    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        if not requests:
            return []
        for request in requests:
            if len(request.args) < 3 or not request.args[2].get("audio"):
                raise ValueError(
                    f"{type(self).__name__}: {request_where(request)} carries no audio "
                    '(was the task run with --metadata \'{"load_audio": false}\'?)'
                )
            # Before any generation: a whole run should not end in this error.
            if not self.SPEAKS and self.speech.wants_audio(split_speech_kwargs(request.args[1])[1]):
                raise ValueError(
                    f"{type(self).__name__} answers in text only, but {request_where(request)} asks for a spoken "
                    "answer: use a speech-out model (cascade, qwen2_5_omni, qwen3_omni, moshi, openai_audio, "
                    "openai_realtime), or --model_args "
                    "speech_output=never to answer in text"
                )
        # Longest audio first: memory problems show at once, and batches hold similar lengths.
        collator = Collator(
            requests,
            sort_fn=lambda r: -sum(duration_seconds(c) for c in r.args[2]["audio"]),
            group_fn=lambda r: r.args[1],
            group_by="gen_kwargs",
        )
        results = []
        progress = tqdm(total=len(requests), disable=disable_tqdm or self.rank != 0, desc=f"{type(self).__name__}")
        for batch in collator.get_batched(n=self.batch_size):
            gen_kwargs, ask = split_speech_kwargs(batch[0].args[1])
            params = GenerationParams.from_gen_kwargs(
                gen_kwargs, default_max_tokens=DEFAULT_MAX_GEN_TOKS, where=f"{request_where(batch[0])} gen_kwargs"
            )
            if params.n != 1:
                raise ValueError(f"{request_where(batch[0])}: gen_kwargs n={params.n}: lm-eval takes one answer per "
                                 "request (a task asks for more with repeats)")
            if not self.speech.wants_audio(ask):
                outputs = self._generate_batch(batch, params)
                results.extend(o if is_failure(o) else postprocess_generated_text(o, list(params.stop), None) for o in outputs)
            else:
                started = time.perf_counter()
                answers = self._speak_batch(batch, params)
                batch_timing = Timing(total_s=time.perf_counter() - started)  # for models that do not time themselves
                for request, spoken in zip(batch, answers, strict=True):
                    if is_failure(spoken):
                        results.append(spoken)
                        continue
                    text = postprocess_generated_text(spoken.text, list(params.stop), None)
                    timing = spoken.timing or batch_timing
                    # an API model's requests are separate calls, run concurrently
                    generated_in = timing.batch_size or (len(batch) if self.LOCAL else 1)
                    results.append(self.speech.respond(request, text, spoken.audio, spoken.sampling_rate, ask,
                                                       timing=timing, batch_size=generated_in))
            progress.update(len(batch))
        progress.close()
        return collator.get_original(results)

    def _generate_batch(self, requests: list[Instance], params: GenerationParams) -> list:
        """Each request's text answer (or a FailedGeneration)."""
        raise NotImplementedError

    def _speak_batch(self, requests: list[Instance], params: GenerationParams) -> list:
        """Each request's SpokenAnswer (or a FailedGeneration), for models with ``SPEAKS``."""
        raise NotImplementedError
