"""What produced each task's numbers, recorded once per task and written beside them in the results.

Tasks, judges and aggregations call :func:`record` with what they know (data source and hashes,
judges and their accounting, readings chosen, metrics left missing and why). The plugin hook
(``_lmeval_hook``) adds each task's record to the results file when lm-eval dumps the task's
config, as ``configs.<task>.metadata.lm_eval_speech``.
"""

from __future__ import annotations

import copy

RESULTS_KEY = "lm_eval_speech"
_RECORDS: dict[str, dict] = {}


def record(task: str, **entries) -> None:
    """Set entries of ``task``'s record (a later value for the same entry replaces the earlier)."""
    _RECORDS.setdefault(task, {}).update(copy.deepcopy(entries))


def of(task: str) -> dict:
    """A copy of ``task``'s record ({} when nothing was recorded)."""
    return copy.deepcopy(_RECORDS.get(task, {}))


def add_to_config(config: dict) -> dict:
    """``config`` (a task's dumped config) with its record under ``metadata.lm_eval_speech``."""
    task = config.get("task")
    if isinstance(task, str) and task in _RECORDS:
        metadata = dict(config.get("metadata") or {})
        metadata[RESULTS_KEY] = of(task)
        config = {**config, "metadata": metadata}
    return config
