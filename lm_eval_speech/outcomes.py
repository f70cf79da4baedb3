"""Responses that could not be produced, how tasks count them, and when a run has failed.

A model (or the ``responses`` replay) returns a :class:`FailedGeneration` in place of an answer
when a call failed for good. It is not a string: no filter or metric can read it as an (empty)
answer. Tasks leave that item out of every score and count it in their ``failed_items`` metric;
judged tasks count failed judge calls the same way.

After ``lm_eval`` has written its results (and samples), :func:`run_problems` reads them: a task
of ours that scored no item, or whose failed share exceeds the threshold (``--metadata
'{"fail_on_error": 0.05}'`` by default; 0 fails on any failure, ``false`` never), makes the
command exit non-zero with a summary naming the task, its counts and its first errors.
"""

from __future__ import annotations

import math
from collections import defaultdict

from lm_eval_speech.options import as_bool

FAIL_ON_ERROR_KEY = "fail_on_error"
DEFAULT_FAILED_SHARE = 0.05
FIRST_ERRORS = 3
# Metrics that count items (or judge rows) that failed, and whether they count judge rows.
FAILURE_METRICS = {"failed_items": False, "judge_failed_items": False, "judge_failed_rows": True}
COUNT_SUFFIXES = ("_items", "_rows", "_instructions", "_draw_min", "_draw_max")

_ERRORS: dict[str, list[str]] = defaultdict(list)


class FailedGeneration:
    """An answer that could not be produced, and why."""

    def __init__(self, reason: str) -> None:
        self.reason = str(reason)

    def __str__(self) -> str:  # how a logged sample shows it
        return f"[failed generation: {self.reason}]"

    def __repr__(self) -> str:
        return f"FailedGeneration({self.reason!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FailedGeneration) and other.reason == self.reason

    def __hash__(self) -> int:
        return hash(("FailedGeneration", self.reason))


def is_failure(response: object) -> bool:
    return isinstance(response, FailedGeneration)


def total(items: list) -> int:
    """Aggregation for count metrics such as ``failed_items``."""
    return int(sum(items))


def mean_scored(items: list) -> float:
    """Mean over the items that could be scored (None: not scored); NaN, never 0, when none could."""
    values = [float(v) for v in items if v is not None]
    return sum(values) / len(values) if values else float("nan")


def note_error(task: str, message: str) -> None:
    """Keep the first errors of a task for the end-of-run summary."""
    if len(_ERRORS[task]) < FIRST_ERRORS:
        _ERRORS[task].append(message)


def failed(task: str, where: str, reason: str) -> FailedGeneration:
    """A failed answer for a request of ``task``, noted for the summary."""
    note_error(task, f"{where}: {reason}")
    return FailedGeneration(reason)


# -- after the run ---------------------------------------------------------------------------
def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value)


def _threshold(results: dict) -> float | None:
    for config in results.get("configs", {}).values():
        setting = (config.get("metadata") or {}).get(FAIL_ON_ERROR_KEY)
        if setting is None:
            continue
        if isinstance(setting, (int, float)) and not isinstance(setting, bool):
            return float(setting)
        return DEFAULT_FAILED_SHARE if as_bool(setting, f"--metadata {FAIL_ON_ERROR_KEY}") else None
    return DEFAULT_FAILED_SHARE


def _task_problem(task: str, metrics: dict, items: int, judges: int, threshold: float) -> str | None:
    values: dict[str, float | None] = {}
    for key, value in metrics.items():
        name = key.split(",")[0]
        if "_stderr" in name or name in ("alias", "name", "sample_len"):
            continue
        values[name] = _number(value) if name not in values or values[name] is None else values[name]
    scores = [v for name, v in values.items() if not name.endswith(COUNT_SUFFIXES) and name not in ("spoken_items",)]
    counts = {name: int(values.get(name) or 0) for name in FAILURE_METRICS if values.get(name)}
    shares = [count / (items * (judges if rows else 1)) for name, count in counts.items() for rows in [FAILURE_METRICS[name]] if items]
    listed = ", ".join(f"{name}={count}" for name, count in counts.items()) or "no failures counted"
    if items == 0 or (scores and all(v is None for v in scores)):
        return f"{task}: scored no item of {items} ({listed})"
    share = max(shares, default=0.0)
    if share > threshold:
        return f"{task}: {share:.1%} of {items} items failed, over the {threshold:.0%} allowed ({listed})"
    return None


def run_problems(results: dict) -> list[str]:
    """Each task of ours that could not score what it was asked to, with its first errors."""
    from lm_eval_speech.data import BENCHMARKS

    threshold = _threshold(results)
    if threshold is None:
        return []
    problems = []
    for task, metrics in results.get("results", {}).items():
        # a group without aggregate metrics (s2s_arena) is listed in results but not in "groups"
        if task in results.get("groups", {}) or results.get("group_subtasks", {}).get(task) or not task.startswith(BENCHMARKS):
            continue
        items = int((results.get("n-samples", {}).get(task) or {}).get("effective", 0))
        judging = ((results.get("configs", {}).get(task, {}).get("metadata") or {}).get("lm_eval_speech") or {}).get("judging", {})
        problem = _task_problem(task, metrics, items, max(len(judging.get("judges", [])), 1), threshold)
        if problem:
            problems.append(problem + "".join(f"\n    {error}" for error in _ERRORS.get(task, [])))
    return problems
