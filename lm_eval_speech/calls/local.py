"""In-process models: local transformers causal LMs (a folder or a ``.gguf`` file), and generation.

The cascade's answering LLM and the in-process judge both load through :func:`load_text_lm`, so
a run that uses the same checkpoint for both holds one copy in memory. transformers dequantises a
GGUF file on every load (20-60 s for SmolLM2-135M on 2 cores); the dequantised weights are kept in
the user's cache directory and later loads read them in about a second.

:func:`generate_text` is every local model's ``generate`` (audio LMs included): the settings
come from :class:`calls.params.GenerationParams`, stop strings are honoured, and an optional JSON
schema constrains the answers (:mod:`calls.constrained`). :class:`LocalChat` is the in-process
chat backend of a :class:`calls.caller.Caller` (an in-process judge).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from lm_eval_speech.calls.accounting import CallStats
from lm_eval_speech.calls.config import CallConfig
from lm_eval_speech.calls.openai_chat import Completion
from lm_eval_speech.calls.params import GenerationParams

from lm_eval_speech.bundled import resolve_bundled
from lm_eval_speech.paths import cache_root

logger = logging.getLogger("lm_eval_speech.calls.local")

_LOADED: dict[tuple, LocalTextLM] = {}
_LOAD_LOCK = threading.Lock()


@dataclass
class LocalTextLM:
    tokenizer: object
    model: object
    name: str  # folder, or folder/file.gguf


def split_gguf(path: str | Path, gguf_file: str | None = None) -> tuple[Path, str | None]:
    """(folder, gguf file name or None) for a folder, a folder + file name, or a ``.gguf`` path."""
    path = resolve_bundled(str(path))
    if path.suffix == ".gguf":
        return path.parent, path.name
    return path, gguf_file


def load_text_lm(path: str | Path, *, gguf_file: str | None = None, dtype=None, device=None) -> LocalTextLM:
    """Tokenizer (left padding, a pad token) and eval-mode model; shared by every caller in this process."""
    import torch
    import transformers

    folder, gguf_file = split_gguf(path, gguf_file)
    device = torch.device(device or "cpu")
    dtype = dtype if dtype is not None else torch.float32
    key = (str(folder.resolve()), gguf_file, str(dtype), str(device))
    with _LOAD_LOCK:
        if key in _LOADED:
            return _LOADED[key]
        if not folder.exists():
            raise FileNotFoundError(f"local LM {folder} does not exist")
        name = f"{folder}/{gguf_file}" if gguf_file else str(folder)
        load: dict = {}
        if gguf_file:
            folder = dequantized_copy(folder / gguf_file)
        logger.info("loading local LM %s on %s", name, device)
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), **load)
        tokenizer.padding_side = "left"  # decoder-only generation continues from the right edge
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model = transformers.AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype, **load)
        model.to(device).eval()
        _LOADED[key] = LocalTextLM(tokenizer, model, name)
        return _LOADED[key]


def dequantized_copy(gguf: Path) -> Path:
    """A transformers folder holding ``gguf`` dequantised to float32, made once and reused.

    Keyed by the file's path, size and mtime and the transformers version; written to a
    temporary folder and renamed, so concurrent processes never read a half-written copy.
    """
    import torch
    import transformers

    stat = gguf.stat()
    identity = f"{gguf.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{transformers.__version__}"
    target = cache_root() / "dequantized" / hashlib.sha256(identity.encode()).hexdigest()[:20]
    if (target / "config.json").is_file():
        return target
    logger.info("dequantising %s once (kept in %s)", gguf, target)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    quantized = transformers.AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    # A model loaded from GGUF refuses save_pretrained; a plain copy of its weights does not.
    plain = transformers.AutoModelForCausalLM.from_config(quantized.config, dtype=torch.float32)
    plain.load_state_dict(quantized.state_dict(), strict=True)
    if getattr(plain.config, "quantization_config", None) is not None:
        del plain.config.quantization_config  # the copy is plain float32: no GGUF loader on reload
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    try:
        plain.save_pretrained(scratch)
        tokenizer.save_pretrained(scratch)
        (scratch / "SOURCE").write_text(identity + "\n", encoding="utf-8")
        os.replace(scratch, target)
    except OSError:
        if not (target / "config.json").is_file():  # not a lost race with another process
            raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


class FirstStepClock:
    """A logits processor that only notes when generation produced its first token (the prompt is read)."""

    def __init__(self) -> None:
        self.first: float | None = None

    def __call__(self, input_ids, scores):
        if self.first is None:
            self.first = time.perf_counter()
        return scores


def generate_text(model, tokenizer, inputs, params: GenerationParams, schema: dict | None = None,
                  clock: FirstStepClock | None = None) -> list[list[str]]:
    """``model.generate`` on a left-padded batch: ``params.n`` new texts per row, each cut at the stop strings."""
    import torch
    from lm_eval.models.utils_hf import stop_sequences_criteria

    input_length = inputs["input_ids"].shape[1]
    rows = inputs["input_ids"].shape[0]
    kwargs = params.to_transformers()
    # generate refuses several greedy sequences: they are one answer, generated once and repeated
    copies = params.n if params.greedy else 1
    sequences = kwargs["num_return_sequences"] = params.n // copies
    if params.stop:
        kwargs["stopping_criteria"] = stop_sequences_criteria(tokenizer, list(params.stop), input_length, rows * sequences)
    if schema is not None:
        from lm_eval_speech.calls.constrained import constrained_generate_kwargs

        kwargs.update(constrained_generate_kwargs(tokenizer, schema, rows * sequences))
    if clock is not None:
        from transformers import LogitsProcessorList

        kwargs["logits_processor"] = LogitsProcessorList([*kwargs.get("logits_processor", []), clock])
    if params.seed is not None:
        torch.manual_seed(int(params.seed))
    with torch.inference_mode():
        output = model.generate(**inputs, **kwargs, pad_token_id=tokenizer.pad_token_id)
    texts = tokenizer.batch_decode(output[:, input_length:], skip_special_tokens=True)
    texts = [params.cut(text) for text in texts]
    return [texts[row * sequences : (row + 1) * sequences] * copies for row in range(rows)]


class LocalChat:
    """A local causal LM (folder or ``.gguf``, or ``bundled:smollm2``) answering chat requests in-process.

    Requests waiting together are generated together (up to ``batch_size`` prompts with the same
    settings and schema, left padded, ``n`` choices each), one batch at a time: on a CPU the
    per-token overhead, not the arithmetic, dominates. Sampling is seeded per batch from the
    requests' content, so a run repeats exactly.
    """

    def __init__(self, config: CallConfig, stats: CallStats) -> None:
        self.config, self.stats = config, stats
        self.lm = None
        self.secrets: list[str] = []
        self._pending: list[tuple] = []
        self._worker: asyncio.Task | None = None

    async def start(self) -> None:
        dtype = None
        if self.config.dtype:
            import torch

            dtype = getattr(torch, self.config.dtype)
        self.lm = await asyncio.to_thread(
            load_text_lm, self.config.model, gguf_file=self.config.gguf_file, dtype=dtype, device=self.config.device
        )

    async def complete(self, messages: list[dict], params: GenerationParams, seed_hint: int,
                       response_format: dict | None = None) -> Completion:
        future = asyncio.get_running_loop().create_future()
        schema = (response_format or {}).get("json_schema", {}).get("schema")
        self._pending.append((messages, params, schema, seed_hint, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        await asyncio.sleep(0)  # let every request submitted together join the first batch
        while self._pending:
            first = self._pending[0]
            batch = [item for item in self._pending if item[1] == first[1] and item[2] == first[2]][: self.config.batch_size]
            for item in batch:
                self._pending.remove(item)
            try:
                completions = await asyncio.to_thread(self._generate, [item[0] for item in batch], first[1], first[2], first[3])
            except Exception as err:  # every waiting request learns why
                for item in batch:
                    item[4].set_exception(err)
                continue
            for item, completion in zip(batch, completions):
                item[4].set_result(completion)

    def _generate(self, conversations: list[list[dict]], params: GenerationParams, schema, seed_hint: int) -> list[Completion]:
        import torch

        tokenizer, model = self.lm.tokenizer, self.lm.model
        prompts = [tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in conversations]
        inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        torch.manual_seed(int(params.seed if params.seed is not None else seed_hint))
        texts = generate_text(model, tokenizer, inputs, params, schema)
        completions = []
        for row, choices in enumerate(texts):
            counts = [len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in choices]
            budget = params.max_tokens or float("inf")
            completions.append(Completion(
                texts=choices, finish_reasons=["length" if count >= budget else "stop" for count in counts],
                prompt_tokens=int(inputs["attention_mask"][row].sum()), completion_tokens=sum(counts),
            ))
        return completions

    async def close(self) -> None:
        if self._worker is not None:
            await self._worker
