"""Which judges a task uses, and how they sample: the task's defaults, changed from ``--metadata``.

A judged task declares its default judge (the benchmark authors' settings) in its YAML metadata
under ``default_judge`` (JASCO: the list ``default_judges``). Users change it with ``--metadata``:

* ``{"judge": {"model": "Qwen/Qwen2.5-72B-Instruct", "base_url": "http://localhost:8000/v1"}}``:
  the listed fields replace the defaults, the rest stay (sampling included);
* ``{"judges": [{...}, {...}]}``: several judges (tasks that average over judges use them all);
* either as a mapping by benchmark (``{"judge": {"speechinstruct": {...}}}``), since one
  ``--metadata`` serves every task of a run;
* ``{"judge_cache": "/path/calls.sqlite"}`` or ``false``: where judge outputs are cached (on by
  default: the call layer's ``calls.sqlite`` in the cache folder; ``$LM_EVAL_SPEECH_JUDGE_CACHE``).

The settings are :data:`lm_eval_speech.calls.config.SETTING_NAMES`; an unknown one is an error.
"""

from __future__ import annotations

import os
from pathlib import Path

from lm_eval_speech import data
from lm_eval_speech.calls.config import CallConfig, CallConfigError, cache_file, config_from_settings

JUDGE_KEY = "judge"
JUDGES_KEY = "judges"
DEFAULT_JUDGE_KEY = "default_judge"
DEFAULT_JUDGES_KEY = "default_judges"
CACHE_KEY = "judge_cache"
CACHE_ENV = "LM_EVAL_SPEECH_JUDGE_CACHE"


def resolve_judges(metadata: dict, *, task: str) -> list[CallConfig]:
    """The judges of one task: its defaults (``default_judge``, or the list ``default_judges``),
    overridden by ``judge`` (one judge) or replaced by ``judges`` (a list), each laid over the
    first default so the benchmark's sampling settings stay unless named."""
    if isinstance(metadata.get(DEFAULT_JUDGES_KEY), list) and metadata[DEFAULT_JUDGES_KEY]:
        defaults = metadata[DEFAULT_JUDGES_KEY]
    elif isinstance(metadata.get(DEFAULT_JUDGE_KEY), dict):
        defaults = [metadata[DEFAULT_JUDGE_KEY]]
    else:
        raise CallConfigError(f"{task}: the task YAML declares no metadata.{DEFAULT_JUDGE_KEY} or {DEFAULT_JUDGES_KEY}")
    base = defaults[0]
    benchmark = data.benchmark_of(task)
    listed, single = data.option(metadata, JUDGES_KEY, benchmark), data.option(metadata, JUDGE_KEY, benchmark)
    if listed is not None:
        if not isinstance(listed, list) or not listed:
            raise CallConfigError(f"{task}: --metadata {JUDGES_KEY} must be a non-empty list of judge settings")
        judges = [config_from_settings(j, base=base, where=f"{task}: {JUDGES_KEY}[{i}]") for i, j in enumerate(listed)]
    elif single is not None:
        judges = [config_from_settings(single, base=base, where=f"{task}: {JUDGE_KEY}")]
    else:
        judges = [config_from_settings(d, where=f"{task}: {DEFAULT_JUDGES_KEY}[{i}]") for i, d in enumerate(defaults)]
    names = [j.name for j in judges]
    if len(set(names)) != len(names):
        raise CallConfigError(f"{task}: judges need distinct names (set \"name\"), got {names}")
    return judges


def judge_cache_path(metadata: dict, task: str) -> Path | None:
    """The cache file judges use; None when caching is off."""
    return cache_file(data.option(metadata, CACHE_KEY, data.benchmark_of(task), os.environ.get(CACHE_ENV, True)))
