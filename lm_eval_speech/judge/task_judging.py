"""The judge layer as lm-eval tasks use it: judges set up at data loading, run once per task.

A judged task's ``custom_dataset`` calls :func:`register` with its metadata; its judging filter
(a ``custom`` filter, which sees every response of the task in this process at once) calls
:func:`for_docs` and :meth:`TaskJudging.run`, then :meth:`TaskJudging.finish`, which writes the
judge provenance and counts (summed over data-parallel ranks) into the task's results metadata.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Sequence

from lm_eval_speech import data
from lm_eval_speech.judge.backends import make_backend, preload_sdk
from lm_eval_speech.judge.cache import JudgeCache
from lm_eval_speech.judge.config import JudgeConfigError, cache_path, resolve_judges, template_sha256
from lm_eval_speech.judge.runner import Judge, JudgeOutput, JudgeRequest, JudgeStats, estimated_cost, run_coroutine

_REGISTRY: dict[str, TaskJudging] = {}
_CACHES: dict[str, JudgeCache] = {}


class TaskJudging:
    """The judges of one task in this process, and the record of what they did."""

    def __init__(
        self, task: str, metadata: dict, templates: dict[str, str], max_judges: int | None = None, options: dict | None = None
    ) -> None:
        self.task = task
        self.options = dict(options or {})  # task-specific judging options (e.g. parsing mode)
        self.configs = resolve_judges(metadata, task=task)
        if max_judges is not None and len(self.configs) > max_judges:
            raise JudgeConfigError(f"{task}: this benchmark is scored by {max_judges} judge(s); got {len(self.configs)}")
        path = cache_path(metadata)
        cache = _open_cache(path) if path is not None else None
        self.cache_path = path
        self.judges = [Judge(config, cache) for config in self.configs]
        for config in self.configs:
            make_backend(config)  # a missing API key is reported now, not after hours of generation
        if any(config.backend == "openai" for config in self.configs):
            preload_sdk()
        self.templates = {name: template_sha256(text) for name, text in templates.items()}
        self.provenance = metadata.get(data.PROVENANCE_KEY)
        self.counts: Counter = Counter()

    def run(self, requests: Sequence[JudgeRequest], judge: int = 0) -> list[list[JudgeOutput]]:
        """``n`` outputs per request from one judge (by position in the task's judge list)."""
        return self.run_each({judge: requests})[judge]

    def run_each(self, requests_by_judge: dict[int, Sequence[JudgeRequest]]) -> dict[int, list[list[JudgeOutput]]]:
        """Several judges at once, each on its own requests (judges usually sit on different servers)."""

        async def all_judges():
            indexes = list(requests_by_judge)
            outputs = await asyncio.gather(
                *(self.judges[i].arun(requests_by_judge[i], desc=f"{self.task}: judge {self.configs[i].name}") for i in indexes)
            )
            return dict(zip(indexes, outputs))

        return run_coroutine(all_judges())

    def count(self, **counts: int) -> None:
        """Task-level counts for the results (parse failures, items left unscored, ...)."""
        self.counts.update(counts)

    def finish(self) -> dict:
        """Write provenance, with every rank's judge work summed, into the task's results metadata."""
        local = {"counts": dict(self.counts), "judges": [j.stats.as_dict() for j in self.judges]}
        gathered = _gather(local)
        per_judge = []
        total = JudgeStats()
        for index, (config, judge) in enumerate(zip(self.configs, self.judges)):
            stats = JudgeStats()
            for rank in gathered:
                stats.add(JudgeStats(**rank["judges"][index]))
            total.add(stats)
            cost = estimated_cost(stats, config.prices())
            per_judge.append({**config.describe(), **stats.as_dict(), "estimated_cost_usd": cost})
        counts: Counter = Counter()
        for rank in gathered:
            counts.update(rank["counts"])
        summary = {
            "judges": per_judge,
            "prompt_templates_sha256": self.templates,
            "cache": str(self.cache_path) if self.cache_path else None,
            **total.as_dict(),
            **dict(sorted(counts.items())),
        }
        costs = [j["estimated_cost_usd"] for j in per_judge]
        summary["estimated_cost_usd"] = None if None in costs else sum(costs)
        if isinstance(self.provenance, dict):
            self.provenance["judging"] = summary
        # The next use of this task in the process (e.g. a re-run in one Python session) starts afresh.
        for judge in self.judges:
            judge.stats = JudgeStats()
        self.counts = Counter()
        return summary


class Verdict(dict):
    """A doc's judging record (raw judge outputs included), kept in ``filtered_resps``.

    lm-eval writes ``str()`` of each filtered response into the samples file; this makes that
    string JSON rather than a Python repr.
    """

    def __str__(self) -> str:
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


def _open_cache(path) -> JudgeCache:
    key = str(path)
    if key not in _CACHES:
        _CACHES[key] = JudgeCache(path)
    return _CACHES[key]


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
