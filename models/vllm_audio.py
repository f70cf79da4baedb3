"""Audio-in chat models on vLLM's offline engine (Qwen2-Audio, Qwen2.5-Omni thinker, Voxtral, Ultravox, ...).

load (the checkpoint's ``AutoProcessor`` for the prompt, ``vllm.LLM`` for the model) → one
``generate`` call per gen_kwargs group (vLLM schedules its own batches) → cut at stop strings.
Prompts are rendered exactly as ``hf_audio`` renders them (:class:`ProcessorChatPrompt`), and
each clip goes to vLLM resampled to the processor's rate.

vLLM is an optional extra and needs Linux with a CUDA GPU: ``pip install "lm-eval-speech[vllm]"``.
Importing this module does not import vLLM; building the model does.

``--model_args`` keys: ``pretrained`` (hub id or local path, required), ``revision``, ``dtype``
(``auto``), ``tensor_parallel_size`` (1), ``gpu_memory_utilization`` (0.9), ``max_model_len`` and
``max_num_seqs`` (vLLM's defaults), ``limit_mm_per_prompt`` (4: the most audio clips one prompt
may carry; vLLM fixes it when the engine is built), ``trust_remote_code`` (off unless given),
``enforce_eager`` (off), ``seed`` (0), ``system_prompt`` (None: the chat template's default),
``sampling_rate`` (default the processor's feature extractor's, else 16000). ``batch_size`` is
accepted and ignored; so are ``device`` and ``max_batch_size``. The model_args every local model
shares (those of ``SpeechLM.__init__``) are passed on to it; any other key is refused.

Example::

    lm_eval --model vllm_audio --model_args pretrained=Qwen/Qwen2-Audio-7B-Instruct,tensor_parallel_size=2 --tasks jasco

Data parallel: under ``accelerate launch --num_processes N -m lm_eval ...`` each process builds its
own engine on its own GPU (its ``LOCAL_RANK``-th visible one) and lm_eval shards the docs by rank;
results are gathered over a CPU (gloo) process group, so no CUDA context is made outside vLLM.
Data parallel and ``tensor_parallel_size`` > 1 do not combine: use one or the other.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from typing import Any

import lm_eval.models  # noqa: F401  (fills the built-in registry first; see lm-eval-notes §1.1)
from lm_eval.api.instance import Instance
from lm_eval.api.registry import register_model

from lm_eval_speech.speech.audio import clip_array
from lm_eval_speech.options import as_bool, check_known
from lm_eval_speech.models._base import SpeechLM, logger, request_where
from lm_eval_speech.models.hf_audio import ProcessorChatPrompt

INSTALL_HINT = 'pip install "lm-eval-speech[vllm]" (vLLM runs on Linux with a CUDA GPU; without one use --model hf_audio)'


def require_vllm() -> None:
    """An ImportError that says how to install vLLM where it is missing; vLLM itself is not imported yet."""
    if importlib.util.find_spec("vllm") is None:
        raise ImportError(f"vllm_audio needs vLLM, which is not installed: {INSTALL_HINT}")


def rank_gpu(environ=os.environ) -> str | None:
    """The one GPU a data-parallel rank's engine should see, or None outside data parallel.

    vLLM puts a single-GPU engine on the first visible device, so every rank would share GPU 0.
    """
    local_rank = environ.get("LOCAL_RANK")
    if int(environ.get("WORLD_SIZE", "1")) <= 1 or local_rank is None:
        return None
    if "CUDA_VISIBLE_DEVICES" not in environ:
        return str(int(local_rank))
    visible = [d.strip() for d in environ["CUDA_VISIBLE_DEVICES"].split(",") if d.strip()]
    if int(local_rank) >= len(visible):
        raise ValueError(
            f"vllm_audio: rank with LOCAL_RANK={local_rank} has no GPU of its own "
            f"(CUDA_VISIBLE_DEVICES={environ['CUDA_VISIBLE_DEVICES']!r}); launch at most one process per GPU"
        )
    return visible[int(local_rank)]


@register_model("vllm_audio")
class VLLMAudioLM(ProcessorChatPrompt, SpeechLM):
    def __init__(
        self,
        pretrained: str | None = None,
        revision: str | None = None,
        dtype: str = "auto",
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        max_num_seqs: int | None = None,
        limit_mm_per_prompt: int = 4,
        trust_remote_code: bool = False,
        enforce_eager: bool = False,
        seed: int = 0,
        system_prompt: str | None = None,
        sampling_rate: int | None = None,
        **lm_eval_args: Any,
    ) -> None:
        require_vllm()  # first: a missing vLLM is the likeliest problem
        # vLLM places and batches by itself: lm_eval's device and batch sizes mean nothing here
        shared = {k: v for k, v in lm_eval_args.items() if k not in ("device", "batch_size", "max_batch_size")}
        check_known(shared, self.accepted_args() - {"device", "batch_size", "max_batch_size"}, "vllm_audio model_args")
        if not pretrained:
            raise ValueError("vllm_audio: give pretrained=<hub id or local path>")
        self.tensor_parallel_size = int(tensor_parallel_size)
        self.limit_mm_per_prompt = int(limit_mm_per_prompt)
        if self.tensor_parallel_size < 1 or self.limit_mm_per_prompt < 1:
            raise ValueError("vllm_audio: tensor_parallel_size and limit_mm_per_prompt must be positive integers")
        processes = int(os.environ.get("WORLD_SIZE", "1"))
        if processes > 1 and self.tensor_parallel_size > 1:
            raise ValueError(
                f"vllm_audio: tensor_parallel_size={self.tensor_parallel_size} does not combine with data parallel "
                f"({processes} processes under accelerate launch): run one process with tensor_parallel_size, "
                "or data parallel with tensor_parallel_size=1"
            )
        gpu = rank_gpu()
        if gpu is not None:
            # Before vLLM starts: its engine (and any worker process) reads this when it first touches CUDA.
            os.environ["CUDA_VISIBLE_DEVICES"] = gpu
            logger.info("vllm_audio: rank with LOCAL_RANK=%s runs its engine on GPU %s", os.environ["LOCAL_RANK"], gpu)
        self._vllm = importlib.import_module("vllm")
        trust_remote_code = as_bool(trust_remote_code, "model_args trust_remote_code")
        self._load_processor(pretrained, revision, trust_remote_code, system_prompt, sampling_rate)
        self.engine_args = {
            "model": pretrained, "dtype": dtype, "tensor_parallel_size": self.tensor_parallel_size,
            "gpu_memory_utilization": float(gpu_memory_utilization), "limit_mm_per_prompt": {"audio": self.limit_mm_per_prompt},
            "trust_remote_code": trust_remote_code, "enforce_eager": as_bool(enforce_eager, "model_args enforce_eager"), "seed": int(seed),
        }
        if revision:
            self.engine_args.update(revision=revision, tokenizer_revision=revision)
        if max_model_len is not None:
            self.engine_args["max_model_len"] = int(max_model_len)
        if max_num_seqs is not None:
            self.engine_args["max_num_seqs"] = int(max_num_seqs)
        self.llm = self._vllm.LLM(**self.engine_args)
        # The process group comes after the engine, so a forked engine process inherits none of it;
        # "cpu": lm_eval's rank bookkeeping tensors stay off the GPUs vLLM owns (gloo).
        super().__init__(device="cpu", batch_size=1, **shared)
        self.batch_size = 0  # Collator: each gen_kwargs group whole, in one generate call
        self._use_tqdm = True

    # -- generation ----------------------------------------------------------------------------
    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        for request in requests:
            clips = (request.args[2].get("audio") or []) if len(request.args) > 2 else []
            if len(clips) > self.limit_mm_per_prompt:
                raise ValueError(
                    f"vllm_audio: {request_where(request)} carries {len(clips)} audio clips but the engine takes at most "
                    f"limit_mm_per_prompt={self.limit_mm_per_prompt} per prompt; add limit_mm_per_prompt={len(clips)} to --model_args"
                )
        # vLLM's own progress bar counts the requests, on rank 0 only; SpeechLM's per-group one is off.
        self._use_tqdm = not disable_tqdm and self.rank == 0
        return super().generate_until(requests, disable_tqdm=True)

    def _prompt(self, request: Instance) -> dict:
        where = request_where(request)
        arrays = [clip_array(clip, self.sampling_rate, item=where) for clip in request.args[2]["audio"]]
        return {
            "prompt": self._render(request.args[0], len(arrays), where),
            "multi_modal_data": {"audio": [(array, self.sampling_rate) for array in arrays]},
        }

    def _generate_batch(self, requests: list[Instance], params) -> list[str]:
        prompts = [self._prompt(request) for request in requests]
        sampling = self._vllm.SamplingParams(**params.to_vllm())
        outputs = self.llm.generate(prompts, sampling_params=sampling, use_tqdm=self._use_tqdm)
        return [output.outputs[0].text for output in outputs]

    # -- reporting -------------------------------------------------------------------------------
    def get_model_info(self) -> dict:
        return {
            **super().get_model_info(),
            "model": self.pretrained,
            "tensor_parallel_size": self.tensor_parallel_size,
            "vllm_version": getattr(self._vllm, "__version__", None),
        }
