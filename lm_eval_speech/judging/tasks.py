"""Judges as lm-eval tasks use them: set up (and their endpoints checked) at data loading, run once per task.

A judged task's ``custom_dataset`` calls :func:`register` with its metadata; its judging filter
(a ``custom`` filter, which sees every response of the task in this process at once) calls
:func:`for_docs` and :meth:`TaskJudging.run`, then :meth:`TaskJudging.finish`, which records the
judges, their accounting and the task's counts (summed over data-parallel ranks) in the task's
provenance (``configs.<task>.metadata.lm_eval_speech.judging`` in the results).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Sequence

from lm_eval_speech import provenance
from lm_eval_speech.calls import check_endpoint
from lm_eval_speech.calls.accounting import CallStats
from lm_eval_speech.calls.cache import open_cache
from lm_eval_speech.calls.caller import Caller, CallOutput, CallRequest, run_coroutine
from lm_eval_speech.calls.config import CallConfigError, template_sha256
from lm_eval_speech.calls.openai_chat import api_key, preload_sdk
from lm_eval_speech.judging.config import judge_cache_path, resolve_judges

_REGISTRY: dict[str, TaskJudging] = {}


class TaskJudging:
    """The judges of one task in this process, and the record of what they did."""

    def __init__(
        self, task: str, metadata: dict, templates: dict[str, str], max_judges: int | None = None, options: dict | None = None
    ) -> None:
        self.task = task
        self.options = dict(options or {})  # task-specific judging options (e.g. parsing mode)
        self.configs = resolve_judges(metadata, task=task)
        if max_judges is not None and len(self.configs) > max_judges:
            raise CallConfigError(f"{task}: this benchmark is scored by {max_judges} judge(s); got {len(self.configs)}")
        self.cache_path = judge_cache_path(metadata, task)
        cache = open_cache(self.cache_path)
        self.callers = [Caller(config, cache) for config in self.configs]
        for config in self.configs:
            if config.backend == "openai":
                api_key(config)  # a missing API key is reported now, not after hours of generation
                check_endpoint(config, user=f"{task} judge {config.name!r}")
        if any(config.backend == "openai" for config in self.configs):
            preload_sdk()
        self.templates = {name: template_sha256(text) for name, text in templates.items()}
        self.counts: Counter = Counter()

    @property
    def constrained(self) -> bool:
        return any(config.constrained for config in self.configs)

    def run(self, requests: Sequence[CallRequest], judge: int = 0) -> list[list[CallOutput]]:
        """``n`` outputs per request from one judge (by position in the task's judge list)."""
        return self.run_each({judge: requests})[judge]

    def run_each(self, requests_by_judge: dict[int, Sequence[CallRequest]]) -> dict[int, list[list[CallOutput]]]:
        """Several judges at once, each on its own requests (their endpoints' limiters keep each server's load right)."""

        async def all_judges():
            indexes = list(requests_by_judge)
            outputs = await asyncio.gather(
                *(self.callers[i].arun(requests_by_judge[i], desc=f"{self.task}: judge {self.configs[i].name}") for i in indexes)
            )
            return dict(zip(indexes, outputs))

        return run_coroutine(all_judges())

    def count(self, **counts: int) -> None:
        """Task-level counts for the results (parse failures, items left unscored, ...)."""
        self.counts.update(counts)

    def unparsable(self, judge: int, outputs: int = 1) -> None:
        """Judge outputs the benchmark's parser could not read: a failure of that judge, by kind."""
        self.callers[judge].stats.fail("unparsable", outputs)

    def finish(self, metrics: tuple[str, ...] = ()) -> dict:
        """Record the judges, their accounting summed over every rank, and the task's counts; when the
        counts say no item was scored (``scored_items``), ``metrics`` are recorded as missing, with why."""
        local = {"counts": dict(self.counts), "judges": [c.stats.as_dict() for c in self.callers]}
        gathered = _gather(local)
        per_judge, total = [], CallStats()
        for index, config in enumerate(self.configs):
            stats = CallStats()
            for rank in gathered:
                stats.add(CallStats.from_dict(rank["judges"][index]))
            total.add(stats)
            per_judge.append({**config.describe(), **stats.as_dict(config.prices())})
        counts: Counter = Counter()
        for rank in gathered:
            counts.update(rank["counts"])
        costs = [j["estimated_cost_usd"] for j in per_judge]
        summary = {
            "judges": per_judge,
            "prompt_templates_sha256": self.templates,
            "cache": str(self.cache_path) if self.cache_path else None,
            **total.as_dict(),
            "estimated_cost_usd": None if None in costs else sum(costs),
            **dict(sorted(counts.items())),
        }
        provenance.record(self.task, judging=summary)
        if metrics and counts.get("scored_items", 1) == 0:
            why = ", ".join(f"{k}={v}" for k, v in sorted(counts.items()) if v and k != "scored_items") or "no items"
            provenance.record(self.task, missing_metrics=dict.fromkeys(metrics, f"no item could be scored ({why})"))
        # The next use of this task in the process (e.g. a re-run in one Python session) starts afresh.
        for caller in self.callers:
            caller.stats = CallStats()
        self.counts = Counter()
        return summary


class Verdict(dict):
    """A doc's judging record (raw judge outputs included), kept in ``filtered_resps``; the plugin
    hook writes it into the logged sample as a JSON value (``judge_verdicts``)."""

    def __str__(self) -> str:  # where a sample is written without the hook: JSON text, not a repr
        return json.dumps(self, ensure_ascii=False)


def register(
    task: str, metadata: dict, templates: dict[str, str], max_judges: int | None = None, options: dict | None = None
) -> TaskJudging:
    """Set up a task's judges from its metadata (YAML ``default_judge`` + ``--metadata``)."""
    setup = TaskJudging(task, metadata, templates, max_judges=max_judges, options=options)
    _REGISTRY[task] = setup
    return setup


def registered(task: str) -> TaskJudging | None:
    return _REGISTRY.get(task)


def for_docs(docs: Sequence[dict]) -> TaskJudging:
    """The judges of the task the docs belong to (each judged doc carries its ``task`` name)."""
    name = docs[0]["task"]
    if name not in _REGISTRY:
        raise RuntimeError(f"{name}: judges were not set up; the task's dataset loader must call register()")
    return _REGISTRY[name]


def _gather(local: dict) -> list[dict]:
    """Every data-parallel rank's record (each rank judges its own share of the docs)."""
    try:
        import torch.distributed as dist
    except ImportError:
        return [local]
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [local]
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, local)
    return gathered
