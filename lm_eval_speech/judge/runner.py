"""Run a batch of judge requests: cache first, then bounded concurrent calls, failures recorded.

``Judge(config, cache).run(requests)`` returns, per request, ``n`` :class:`JudgeOutput` in
sample order. A sample comes from the cache when the same judge already answered the same
messages with the same sampling; otherwise it is requested (all missing samples of a request
in one call with ``n`` choices where the endpoint allows it) and stored as soon as it returns.
A call that still fails after the SDK's retries becomes a failed output carrying the reason:
never an empty string or a guess.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from typing import Sequence

from tqdm import tqdm

from lm_eval_speech.judge.backends import make_backend
from lm_eval_speech.judge.cache import JudgeCache, sample_key
from lm_eval_speech.judge.config import JudgeConfig

logger = logging.getLogger("lm_eval_speech.judge")
MAX_LOGGED_FAILURES = 20


@dataclass(frozen=True)
class JudgeRequest:
    messages: list[dict]
    label: str  # names the item in errors, logs and progress


@dataclass
class JudgeOutput:
    text: str | None
    error: str | None = None
    cached: bool = False
    finish_reason: str | None = None
    audio: str | None = None  # base64 audio of a spoken reply

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict:
        if self.error is not None:
            return {"error": self.error}
        return {"text": self.text, "cached": self.cached, "finish_reason": self.finish_reason}


@dataclass
class JudgeStats:
    """Counts over judge samples (one ``n`` choice each) and the calls that produced them."""

    samples: int = 0
    calls: int = 0  # requests sent to the backend (the SDK's own retries not counted)
    cache_hits: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, other: JudgeStats) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def run_coroutine(coroutine):
    """Run a coroutine to completion from synchronous code, even where a loop already runs (notebooks)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def estimated_cost(stats: JudgeStats, prices: tuple[float, float] | None) -> float | None:
    if prices is None:
        return None
    return (stats.prompt_tokens * prices[0] + stats.completion_tokens * prices[1]) / 1e6


class Judge:
    def __init__(self, config: JudgeConfig, cache: JudgeCache | None = None) -> None:
        self.config = config
        self.cache = cache
        self.stats = JudgeStats()
        self._endpoint_ignores_n = False
        self._logged_failures = 0

    def run(self, requests: Sequence[JudgeRequest], *, desc: str | None = None) -> list[list[JudgeOutput]]:
        if not requests:
            return []
        return run_coroutine(self.arun(requests, desc=desc))

    async def arun(self, requests: Sequence[JudgeRequest], *, desc: str | None = None) -> list[list[JudgeOutput]]:
        """As :meth:`run`, inside a running event loop (several judges can then work at once)."""
        if not requests:
            return []
        return await self._run(list(requests), desc)

    async def _run(self, requests: list[JudgeRequest], desc: str | None) -> list[list[JudgeOutput]]:
        n = self.config.n
        sampling = self.config.sampling
        identity = self.config.identity()
        keys = [[sample_key(identity, r.messages, sampling, j) for j in range(n)] for r in requests]
        results: list[list[JudgeOutput | None]] = [[None] * n for _ in requests]
        run_stats = JudgeStats(samples=n * len(requests))

        if self.cache is not None:
            found = self.cache.get_many([k for row in keys for k in row])
            for i, row in enumerate(keys):
                for j, key in enumerate(row):
                    if key in found:
                        text, finish, audio = found[key]
                        results[i][j] = JudgeOutput(text, cached=True, finish_reason=finish, audio=audio)
                        run_stats.cache_hits += 1

        todo = [(i, [j for j in range(n) if results[i][j] is None]) for i in range(len(requests))]
        todo = [(i, missing) for i, missing in todo if missing]
        bar = tqdm(
            total=run_stats.samples, initial=run_stats.cache_hits, desc=desc or f"judge {self.config.name}", unit="out",
            dynamic_ncols=True,
        )
        self._bar, self._run_stats = bar, run_stats
        self._update_bar()
        backend = make_backend(self.config) if todo else None  # a run served from the cache needs no key
        self._secrets = backend.secrets if backend else []
        try:
            if backend:
                await backend.start()
                semaphore = asyncio.Semaphore(self.config.concurrency)
                jobs = []
                for i, missing in todo:
                    if self.config.n_mode == "repeat" or len(missing) == 1:
                        jobs += [self._call(backend, semaphore, requests[i], keys[i], results[i], [j]) for j in missing]
                    else:
                        jobs.append(self._call(backend, semaphore, requests[i], keys[i], results[i], missing))
                await asyncio.gather(*jobs)
        finally:
            if backend:
                await backend.close()
            bar.close()
        self.stats.add(run_stats)
        return results  # every slot is filled: an output or a failure

    async def _call(self, backend, semaphore, request, keys, slots, indexes) -> None:
        if len(indexes) > 1 and self._endpoint_ignores_n:
            await asyncio.gather(*(self._call(backend, semaphore, request, keys, slots, [j]) for j in indexes))
            return
        sampling = dict(self.config.sampling)
        sampling["n"] = len(indexes)
        if self.config.seed is not None:
            # separate requests must not repeat one sample: a request starting at sample j is seeded seed + j
            # (a full request starts at 0 and keeps the seed; a top-up of samples 4, 5 must not redraw 0, 1)
            sampling["seed"] = self.config.seed + indexes[0]
        seed_hint = int(keys[indexes[0]][:8], 16)
        async with semaphore:
            self._run_stats.calls += 1
            try:
                completion = await backend.complete(request.messages, sampling, seed_hint)
            except Exception as err:  # the SDK has already retried what is worth retrying
                self._fail(request, slots, indexes, f"{type(err).__name__}: {err}")
                return
        self._run_stats.prompt_tokens += completion.prompt_tokens
        self._run_stats.completion_tokens += completion.completion_tokens
        audios = completion.audios or [None] * len(completion.texts)
        for j, text, finish, audio in zip(indexes, completion.texts, completion.finish_reasons, audios):
            if text is None:
                self._fail(request, slots, [j], f"the judge returned no text (finish_reason={finish!r})")
                continue
            if self.cache is not None:
                self.cache.put(keys[j], self.config.name, text, finish, audio)
            slots[j] = JudgeOutput(text, finish_reason=finish, audio=audio)
            self._bar.update(1)
        leftover = indexes[len(completion.texts):]
        if leftover:
            if self.config.n_mode == "native" or len(indexes) == 1:  # one sample asked, none came: asking again loops forever
                self._fail(request, slots, leftover, f"the endpoint returned {len(completion.texts)} of {len(indexes)} choices")
                return
            if not self._endpoint_ignores_n:
                logger.info("judge %s: the endpoint ignores n; sending one request per sample", self.config.name)
                self._endpoint_ignores_n = True
            await asyncio.gather(*(self._call(backend, semaphore, request, keys, slots, [j]) for j in leftover))
        self._update_bar()

    def _fail(self, request: JudgeRequest, slots: list, indexes: list[int], reason: str) -> None:
        for secret in self._secrets:
            reason = reason.replace(secret, "***")
        for j in indexes:
            slots[j] = JudgeOutput(None, error=reason)
        self._run_stats.failures += len(indexes)
        self._bar.update(len(indexes))
        if self._logged_failures < MAX_LOGGED_FAILURES:
            logger.warning("judge %s: %s: call failed: %s", self.config.name, request.label, reason)
        elif self._logged_failures == MAX_LOGGED_FAILURES:
            logger.warning("judge %s: more calls failed; the results count them all", self.config.name)
        self._logged_failures += 1
        self._update_bar()

    def _update_bar(self) -> None:
        stats = self._run_stats
        postfix = {
            "failed": stats.failures,
            "cached": stats.cache_hits,
            "tokens": stats.prompt_tokens + stats.completion_tokens,
        }
        cost = estimated_cost(stats, self.config.prices())
        if cost is not None:
            postfix["cost"] = f"${cost:.4f}"
        self._bar.set_postfix(postfix, refresh=False)
