"""Run a batch of requests against one configured model: cache first, then the backend, failures recorded.

``Caller(config, cache).run(requests)`` returns, per request, ``n`` :class:`CallOutput` in sample
order. An output comes from the cache when the same model already answered the same messages
with the same settings; otherwise it is requested (all missing outputs of a request in one call
with ``n`` choices where the endpoint honours ``n``) and stored as soon as it returns, with its
timing where the backend measures one (a cached output reports the timing it was made with).
``backend: realtime`` calls OpenAI's Realtime API (:mod:`calls.openai_realtime`). A request
that still fails after the retries (:mod:`calls.openai_chat`) becomes failed outputs carrying the
reason and its kind: never an empty string or a guess. With ``mode: batch`` the missing requests
go through OpenAI's Batch API instead (:mod:`calls.batch`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Sequence

from tqdm import tqdm

from lm_eval_speech.calls.accounting import CallStats
from lm_eval_speech.calls.cache import CallCache, request_summary, sample_key
from lm_eval_speech.calls.config import CallConfig
from lm_eval_speech.calls.openai_chat import CallFailed, Completion
from lm_eval_speech.speech.latency import Timing

logger = logging.getLogger("lm_eval_speech.calls")
MAX_LOGGED_FAILURES = 20


@dataclass(frozen=True)
class CallRequest:
    messages: list[dict]
    label: str  # names the item in errors, logs and progress
    schema: dict | None = field(default=None, hash=False)  # the answer's JSON schema (used when the config is constrained)


@dataclass
class CallOutput:
    text: str | None
    error: str | None = None
    kind: str | None = None  # the failure's kind (calls.accounting.FAILURE_KINDS)
    cached: bool = False
    finish_reason: str | None = None
    audio: str | None = None  # base64 audio of a spoken reply
    timing: Timing | None = None  # how long the answer took when it was made (a cached one keeps it)

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict:
        if self.error is not None:
            return {"error": self.error, "kind": self.kind}
        return {"text": self.text, "cached": self.cached, "finish_reason": self.finish_reason}


def run_coroutine(coroutine):
    """Run a coroutine to completion from synchronous code, even where a loop already runs (notebooks)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def rewritten(output: CallOutput, render) -> CallOutput:
    """A constrained answer's JSON, written by ``render`` in the format a benchmark's parser reads;
    a failed or unreadable output as it is (the parser then treats it as any free-text answer)."""
    if not output.ok:
        return output
    try:
        text = render(json.loads(output.text))
    except (ValueError, TypeError, KeyError):
        return output
    return replace(output, text=text)


def response_format(schema: dict) -> dict:
    """The chat API's structured-output field for a JSON schema (vLLM and llama.cpp honour it too)."""
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}


def make_backend(config: CallConfig, stats: CallStats):
    if config.backend == "transformers":
        from lm_eval_speech.calls.local import LocalChat

        return LocalChat(config, stats)
    if config.backend == "realtime":
        from lm_eval_speech.calls.openai_realtime import OpenAIRealtime

        return OpenAIRealtime(config, stats)
    from lm_eval_speech.calls.openai_chat import OpenAIChat

    return OpenAIChat(config, stats)


class Caller:
    def __init__(self, config: CallConfig, cache: CallCache | None = None) -> None:
        self.config = config
        self.cache = cache
        self.stats = CallStats()
        self._logged_failures = 0

    def run(self, requests: Sequence[CallRequest], *, desc: str | None = None) -> list[list[CallOutput]]:
        if not requests:
            return []
        return run_coroutine(self.arun(requests, desc=desc))

    async def arun(self, requests: Sequence[CallRequest], *, desc: str | None = None) -> list[list[CallOutput]]:
        """As :meth:`run`, inside a running event loop (several callers can then work at once)."""
        if not requests:
            return []
        return await self._run(list(requests), desc)

    # -- the request as sent and keyed ------------------------------------------------------
    def _format(self, request: CallRequest) -> dict | None:
        return response_format(request.schema) if self.config.constrained and request.schema is not None else None

    def _key_sampling(self, request: CallRequest) -> dict:
        sampling = self.config.params.given()
        answer_format = self._format(request)
        return {**sampling, "response_format": answer_format} if answer_format else sampling

    async def _run(self, requests: list[CallRequest], desc: str | None) -> list[list[CallOutput]]:
        n = self.config.params.n
        identity = self.config.identity()
        sampling = [self._key_sampling(r) for r in requests]
        keys = [[sample_key(identity, r.messages, s, j) for j in range(n)] for r, s in zip(requests, sampling)]
        results: list[list[CallOutput | None]] = [[None] * n for _ in requests]
        self.stats.samples += n * len(requests)
        hits = 0
        if self.cache is not None:
            found = self.cache.get_many([k for row in keys for k in row])
            for i, row in enumerate(keys):
                for j, key in enumerate(row):
                    if key in found:
                        stored = found[key]
                        results[i][j] = CallOutput(stored.text, cached=True, finish_reason=stored.finish_reason,
                                                   audio=stored.audio, timing=stored.timing)
                        hits += 1
        self.stats.cache_hits += hits
        todo = [(i, [j for j in range(n) if results[i][j] is None]) for i in range(len(requests))]
        todo = [(i, missing) for i, missing in todo if missing]
        self._bar = tqdm(total=n * len(requests), initial=hits, desc=desc or self.config.name, unit="out", dynamic_ncols=True)
        self._summaries = {i: request_summary(identity, requests[i].messages, sampling[i]) for i, _ in todo}
        self._update_bar()
        try:
            if todo and self.config.mode == "batch":
                from lm_eval_speech.calls.batch import run_batch

                await run_batch(self, requests, keys, results, todo)
            elif todo:
                await self._online(requests, keys, results, todo)
        finally:
            self._bar.close()
        return results  # every slot is filled: an output or a failure

    async def _online(self, requests, keys, results, todo) -> None:
        backend = make_backend(self.config, self.stats)  # a run served from the cache needs no key
        self._secrets = backend.secrets
        await backend.start()
        try:
            jobs = []
            for i, missing in todo:
                if self.config.n_mode == "repeat" or len(missing) == 1:
                    jobs += [self._call(backend, requests[i], keys[i], results[i], [j], i) for j in missing]
                else:
                    jobs.append(self._call(backend, requests[i], keys[i], results[i], missing, i))
            await asyncio.gather(*jobs)
        finally:
            await backend.close()

    async def _call(self, backend, request: CallRequest, keys, slots, indexes: list[int], position: int) -> None:
        if len(indexes) > 1 and self.stats.n_honoured is False:
            await asyncio.gather(*(self._call(backend, request, keys, slots, [j], position) for j in indexes))
            return
        params = self.config.params.with_n(len(indexes))
        if self.config.params.seed is not None:
            # separate requests must not repeat one sample: a request starting at sample j is seeded seed + j
            # (a full request starts at 0 and keeps the seed; a top-up of samples 4, 5 must not redraw 0, 1)
            params = replace(params, seed=self.config.params.seed + indexes[0])
        seed_hint = int(keys[indexes[0]][:8], 16)
        try:
            completion = await backend.complete(request.messages, params, seed_hint, self._format(request))
        except CallFailed as failure:
            self._fail(request, slots, indexes, str(failure), failure.kind)
            return
        except Exception as error:  # an in-process backend's error: this request only
            self._fail(request, slots, indexes, f"{type(error).__name__}: {error}", "other")
            return
        self.record(request, keys, slots, indexes, completion, position)
        leftover = indexes[len(completion.texts):]
        if len(indexes) > 1:
            self.stats.n_honoured = not leftover if self.stats.n_honoured is None else self.stats.n_honoured and not leftover
        if leftover:
            if self.config.n_mode == "native" or len(indexes) == 1:  # one sample asked, none came: asking again loops forever
                self._fail(request, slots, leftover, f"the endpoint returned {len(completion.texts)} of {len(indexes)} choices", "other")
                return
            logger.info("%s: the endpoint ignores n; sending one request per sample", self.config.name)
            await asyncio.gather(*(self._call(backend, request, keys, slots, [j], position) for j in leftover))
        self._update_bar()

    def record(self, request: CallRequest, keys, slots, indexes: list[int], completion: Completion, position: int) -> None:
        """Store one answered request's outputs (also used by the batch mode)."""
        self.stats.calls += 1
        self.stats.prompt_tokens += completion.prompt_tokens
        self.stats.completion_tokens += completion.completion_tokens
        audios = completion.audios or [None] * len(completion.texts)
        timings = completion.timings or [None] * len(completion.texts)
        for j, text, finish, audio, timing in zip(indexes, completion.texts, completion.finish_reasons, audios, timings):
            if text is None:
                self._fail(request, slots, [j], f"the model returned no text (finish_reason={finish!r})", "other")
                continue
            if self.cache is not None:
                self.cache.put(keys[j], self.config.name, text, finish, audio, self._summaries.get(position), timing)
            slots[j] = CallOutput(text, finish_reason=finish, audio=audio, timing=timing)
            self._bar.update(1)

    def _fail(self, request: CallRequest, slots: list, indexes: list[int], reason: str, kind: str) -> None:
        for secret in getattr(self, "_secrets", []):
            reason = reason.replace(secret, "***")
        for j in indexes:
            slots[j] = CallOutput(None, error=reason, kind=kind)
        self.stats.fail(kind)
        self._bar.update(len(indexes))
        if self._logged_failures < MAX_LOGGED_FAILURES:
            logger.warning("%s: %s: call failed: %s", self.config.name, request.label, reason)
        elif self._logged_failures == MAX_LOGGED_FAILURES:
            logger.warning("%s: more calls failed; the results count them all", self.config.name)
        self._logged_failures += 1
        self._update_bar()

    def _update_bar(self) -> None:
        stats = self.stats
        postfix = {"failed": stats.failed, "cached": stats.cache_hits, "tokens": stats.prompt_tokens + stats.completion_tokens}
        cost = stats.cost(self.config.prices())
        if cost is not None:
            postfix["cost"] = f"${cost:.4f}"
        self._bar.set_postfix(postfix, refresh=False)
