"""Where judge calls go: any OpenAI-compatible chat endpoint, or a local transformers model.

Both are async and answer one chat request with ``n`` choices. Retries live in the OpenAI SDK
(exponential backoff with jitter; honours ``Retry-After`` on 429/5xx; retries timeouts and
dropped connections), configured by the judge's ``max_retries`` and ``timeout``.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

from lm_eval_speech.judge.config import JudgeConfig, JudgeConfigError

# Local servers (vLLM, llama.cpp) accept any key unless started with one.
LOCAL_SERVER_KEY = "no-key-needed"


@dataclass
class Completion:
    texts: list[str | None]
    finish_reasons: list[str | None]
    prompt_tokens: int
    completion_tokens: int
    audios: list[str | None] | None = None  # base64 audio of spoken replies (modalities with "audio")


class OpenAIBackend:
    """The ``openai`` SDK against ``base_url`` (or ``$OPENAI_BASE_URL``, or OpenAI itself)."""

    def __init__(self, config: JudgeConfig) -> None:
        self.config = config
        key = os.environ.get(config.api_key_env, "")
        if not key:
            if config.endpoint == "https://api.openai.com/v1":
                raise JudgeConfigError(
                    f"judge {config.name!r}: set the {config.api_key_env} environment variable, "
                    "or point the judge at a local server with \"base_url\" (a re-run served wholly from "
                    "the judge cache makes no call: any value then works)"
                )
            key = LOCAL_SERVER_KEY
        self._key = key
        self._client = None

    @property
    def secrets(self) -> list[str]:
        return [self._key] if self._key != LOCAL_SERVER_KEY else []

    async def start(self) -> None:
        import openai

        self._client = openai.AsyncOpenAI(
            api_key=self._key, base_url=self.config.endpoint, max_retries=self.config.max_retries, timeout=self.config.timeout,
            **_http_client(openai),
        )

    async def complete(self, messages: list[dict], sampling: dict, seed_hint: int) -> Completion:
        extra = {"extra_body": self.config.extra_body} if self.config.extra_body else {}
        response = await self._client.chat.completions.create(model=self.config.model, messages=messages, **sampling, **extra)
        choices = sorted(response.choices or [], key=lambda c: c.index)
        usage = response.usage
        return Completion(
            texts=[_reply_text(c.message) for c in choices],
            audios=[_reply_audio(c.message) for c in choices],
            finish_reasons=[c.finish_reason for c in choices],
            prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
            completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()


def _reply_text(message) -> str | None:
    """The text of a reply; a spoken reply has no content, its text is the audio's transcript."""
    if message is None:
        return None
    if message.content is None and getattr(message, "audio", None) is not None:
        return message.audio.transcript
    return message.content


def _reply_audio(message) -> str | None:
    audio = getattr(message, "audio", None) if message is not None else None
    return getattr(audio, "data", None) if audio is not None else None


def _http_client(openai) -> dict:
    """The SDK's aiohttp transport where installed: a third of the default's CPU per request."""
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        return {}
    return {"http_client": openai.DefaultAioHttpClient()}


def preload_sdk() -> None:
    """Import the SDK on a background thread (about 1.3 s) while the model is still generating."""
    import threading

    threading.Thread(target=lambda: __import__("openai"), name="preload-openai", daemon=True).start()


class TransformersBackend:
    """A local causal LM (folder or ``.gguf``, or ``bundled:smollm2``), generating in-process.

    Requests waiting together are generated together (up to ``batch_size`` prompts, left padded,
    ``n`` choices each through ``num_return_sequences``), one batch at a time: on a CPU the
    per-token overhead, not the arithmetic, dominates. Sampling is seeded per batch from the
    requests' content, so a run repeats exactly.
    """

    def __init__(self, config: JudgeConfig) -> None:
        self.config = config
        self.lm = None
        self.secrets: list[str] = []
        self._pending: list[tuple] = []
        self._worker: asyncio.Task | None = None

    async def start(self) -> None:
        from lm_eval_speech.text_lm import load_text_lm

        dtype = None
        if self.config.dtype:
            import torch

            dtype = getattr(torch, self.config.dtype)
        self.lm = await asyncio.to_thread(
            load_text_lm, self.config.model, gguf_file=self.config.gguf_file, dtype=dtype, device=self.config.device
        )

    async def complete(self, messages: list[dict], sampling: dict, seed_hint: int) -> Completion:
        future = asyncio.get_running_loop().create_future()
        self._pending.append((messages, sampling, seed_hint, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        await asyncio.sleep(0)  # let every request submitted together join the first batch
        while self._pending:
            first_sampling = self._pending[0][1]
            batch = [item for item in self._pending if item[1] == first_sampling][: self.config.batch_size]
            for item in batch:
                self._pending.remove(item)
            try:
                completions = await asyncio.to_thread(self._generate, [item[0] for item in batch], first_sampling, batch[0][2])
            except Exception as err:  # every waiting request learns why
                for item in batch:
                    item[3].set_exception(err)
                continue
            for item, completion in zip(batch, completions):
                item[3].set_result(completion)

    def _generate(self, conversations: list[list[dict]], sampling: dict, seed_hint: int) -> list[Completion]:
        import torch

        tokenizer, model = self.lm.tokenizer, self.lm.model
        prompts = [tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in conversations]
        inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
        n = int(sampling.get("n", 1))
        temperature = sampling.get("temperature", 1.0)  # the OpenAI default
        kwargs = {"max_new_tokens": int(sampling.get("max_tokens") or 512), "num_return_sequences": n}
        if temperature and temperature > 0:
            kwargs.update(do_sample=True, temperature=float(temperature), top_p=float(sampling.get("top_p", 1.0)))
        else:
            kwargs["do_sample"] = False
        torch.manual_seed(int(sampling.get("seed", seed_hint)))
        with torch.inference_mode():
            output = model.generate(**inputs, **kwargs, pad_token_id=tokenizer.pad_token_id)
        start = inputs["input_ids"].shape[1]
        stops = sampling.get("stop") or []
        stops = [stops] if isinstance(stops, str) else stops
        completions = []
        for row, mask in enumerate(inputs["attention_mask"]):
            new_tokens = output[row * n : (row + 1) * n, start:]
            texts, finish, produced = [], [], 0
            for tokens in new_tokens:
                ended_at = (tokens == tokenizer.eos_token_id).nonzero()
                length = int(ended_at[0]) + 1 if len(ended_at) else len(tokens)
                produced += length
                text = tokenizer.decode(tokens[:length], skip_special_tokens=True)
                cut = min((text.find(s) for s in stops if s and s in text), default=-1)
                texts.append(text[:cut] if cut >= 0 else text)
                finish.append("stop" if cut >= 0 or len(ended_at) else "length")
            completions.append(Completion(texts, finish, prompt_tokens=int(mask.sum()), completion_tokens=produced))
        return completions

    async def close(self) -> None:
        if self._worker is not None:
            await self._worker


def make_backend(config: JudgeConfig):
    if config.backend == "transformers":
        return TransformersBackend(config)
    return OpenAIBackend(config)
