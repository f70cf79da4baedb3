"""Which judge a task uses and how it samples: the task's defaults, overridden from ``--metadata``.

A judged task declares its default judge (the benchmark authors' settings) in its YAML metadata
under ``default_judge``. Users change it with ``--metadata``:

* ``{"judge": {"model": "Qwen/Qwen2.5-72B-Instruct", "base_url": "http://localhost:8000/v1"}}``:
  the listed fields replace the defaults, the rest stay (sampling included);
* ``{"judges": [{...}, {...}]}``: several judges (tasks that average over judges use them all);
* ``{"judge_cache": "/path/judge.sqlite"}`` or ``false``: where judge calls are cached (on by
  default: ``judge.sqlite`` in :func:`lm_eval_speech.paths.cache_root`; ``$LM_EVAL_SPEECH_JUDGE_CACHE``).

API keys are never accepted here (lm-eval copies ``--metadata`` into the results file): a judge
names the environment variable that holds its key (``api_key_env``, default ``OPENAI_API_KEY``).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from lm_eval_speech import data
from lm_eval_speech.paths import cache_root

JUDGE_KEY = "judge"
JUDGES_KEY = "judges"
DEFAULT_JUDGE_KEY = "default_judge"
DEFAULT_JUDGES_KEY = "default_judges"
CACHE_KEY = "judge_cache"
CACHE_ENV = "LM_EVAL_SPEECH_JUDGE_CACHE"

BACKENDS = ("openai", "transformers")
N_MODES = ("auto", "native", "repeat")
# Sampling fields sent to the backend exactly as given (None: not sent).
SAMPLING_FIELDS = ("n", "temperature", "top_p", "max_tokens", "seed", "frequency_penalty", "presence_penalty", "stop")
SECRET_HINTS = ("api_key", "apikey", "token", "secret", "password", "authorization")
# USD per million tokens (input, output), for the progress bar's estimate; others: set the prices.
KNOWN_PRICES = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
}


class JudgeConfigError(ValueError):
    """A judge setting is missing, unknown or unsafe."""


@dataclass(frozen=True)
class JudgeConfig:
    model: str
    backend: str = "openai"
    name: str = ""  # label in results; default: the model
    base_url: str | None = None  # default: $OPENAI_BASE_URL, else OpenAI
    api_key_env: str = "OPENAI_API_KEY"
    n: int = 1
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    stop: list[str] | str | None = None
    n_mode: str = "auto"  # one request with n choices, or n requests of one
    concurrency: int = 64
    max_retries: int = 8
    timeout: float = 120.0
    input_cost_per_1m: float | None = None
    output_cost_per_1m: float | None = None
    # transformers backend
    batch_size: int = 8  # prompts generated together
    gguf_file: str | None = None
    dtype: str | None = None
    device: str | None = None
    extra_body: dict = field(default_factory=dict)  # provider-specific request fields, sent as given

    def __post_init__(self) -> None:
        where = f"judge {self.model!r}"
        if not self.model or not isinstance(self.model, str):
            raise JudgeConfigError("a judge needs a model name or path")
        if self.backend not in BACKENDS:
            raise JudgeConfigError(f"{where}: backend must be one of {', '.join(BACKENDS)}, not {self.backend!r}")
        if self.n_mode not in N_MODES:
            raise JudgeConfigError(f"{where}: n_mode must be one of {', '.join(N_MODES)}, not {self.n_mode!r}")
        for name in ("n", "concurrency", "batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise JudgeConfigError(f"{where}: {name} must be a positive integer")
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise JudgeConfigError(f"{where}: max_retries must be a non-negative integer")
        if self.backend == "transformers":
            for name in ("frequency_penalty", "presence_penalty"):
                if getattr(self, name):
                    raise JudgeConfigError(f"{where}: {name} is not available with the transformers backend")
        if not self.name:
            object.__setattr__(self, "name", self.model)

    @property
    def sampling(self) -> dict:
        """Sampling parameters as sent (n included)."""
        return {k: getattr(self, k) for k in SAMPLING_FIELDS if getattr(self, k) is not None}

    @property
    def endpoint(self) -> str:
        if self.backend == "transformers":
            return "in-process"
        return (self.base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1").rstrip("/")

    def identity(self) -> dict:
        """What makes two judges the same judge, for the cache key."""
        if self.backend == "transformers":
            return {"backend": self.backend, "model": self.model, "gguf_file": self.gguf_file, "dtype": self.dtype}
        return {"backend": self.backend, "endpoint": self.endpoint, "model": self.model, "extra_body": self.extra_body}

    def prices(self) -> tuple[float, float] | None:
        if self.input_cost_per_1m is not None and self.output_cost_per_1m is not None:
            return self.input_cost_per_1m, self.output_cost_per_1m
        if self.backend == "openai" and self.endpoint == "https://api.openai.com/v1":
            return KNOWN_PRICES.get(self.model)
        return None  # a local server or unknown model: no bill to estimate

    def describe(self) -> dict:
        """Provenance for the results file: settings only, never a secret."""
        info = {
            "name": self.name,
            "backend": self.backend,
            "model": self.model,
            "endpoint": self.endpoint,
            "sampling": self.sampling,
            "n_mode": self.n_mode,
            "concurrency": self.concurrency,
            "max_retries": self.max_retries,
            "timeout_s": self.timeout,
        }
        if self.backend == "openai":
            info["api_key_env"] = self.api_key_env
        if self.extra_body:
            info["extra_body"] = self.extra_body
        if self.backend == "transformers":
            info["batch_size"] = self.batch_size
        if self.gguf_file:
            info["gguf_file"] = self.gguf_file
        return info


FIELD_NAMES = {f.name for f in fields(JudgeConfig)}


def judge_from_dict(settings: dict, *, base: dict | None = None, where: str = "judge") -> JudgeConfig:
    """A judge from ``base`` (the task's defaults) with ``settings`` laid over it."""
    if isinstance(settings, str):
        settings = {"model": settings}
    if not isinstance(settings, dict):
        raise JudgeConfigError(f"{where}: expected an object of judge settings, got {type(settings).__name__}")
    _refuse_secrets(settings, where)
    unknown = sorted(set(settings) - FIELD_NAMES)
    if unknown:
        raise JudgeConfigError(f"{where}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(FIELD_NAMES))}")
    merged = {**(base or {}), **settings}
    if base and "model" in settings and "name" not in settings:
        merged.pop("name", None)  # a new model gets its own label
    try:
        return JudgeConfig(**merged)
    except TypeError as err:
        raise JudgeConfigError(f"{where}: {err}") from None


def resolve_judges(metadata: dict, *, task: str) -> list[JudgeConfig]:
    """The judges of one task: its defaults (``default_judge``, or the list ``default_judges``),
    overridden by ``judge`` (one judge) or replaced by ``judges`` (a list), each laid over the
    first default so the benchmark's sampling settings stay unless named."""
    if isinstance(metadata.get(DEFAULT_JUDGES_KEY), list) and metadata[DEFAULT_JUDGES_KEY]:
        defaults = metadata[DEFAULT_JUDGES_KEY]
    elif isinstance(metadata.get(DEFAULT_JUDGE_KEY), dict):
        defaults = [metadata[DEFAULT_JUDGE_KEY]]
    else:
        raise JudgeConfigError(f"{task}: the task YAML declares no metadata.{DEFAULT_JUDGE_KEY} or {DEFAULT_JUDGES_KEY}")
    base = defaults[0]
    # --metadata serves every task of a run: a mapping by benchmark gives each its own judges.
    benchmark = data.benchmark_of(task)
    listed, single = data.option(metadata, JUDGES_KEY, benchmark), data.option(metadata, JUDGE_KEY, benchmark)
    if listed is not None:
        if not isinstance(listed, list) or not listed:
            raise JudgeConfigError(f"{task}: --metadata {JUDGES_KEY} must be a non-empty list of judge settings")
        judges = [judge_from_dict(j, base=base, where=f"{task}: {JUDGES_KEY}[{i}]") for i, j in enumerate(listed)]
    elif single is not None:
        judges = [judge_from_dict(single, base=base, where=f"{task}: {JUDGE_KEY}")]
    else:
        judges = [judge_from_dict(d, where=f"{task}: {DEFAULT_JUDGES_KEY}[{i}]") for i, d in enumerate(defaults)]
    names = [j.name for j in judges]
    if len(set(names)) != len(names):
        raise JudgeConfigError(f"{task}: judges need distinct names (set \"name\"), got {names}")
    return judges


def cache_path(metadata: dict) -> Path | None:
    """The judge cache file; None when caching is off."""
    return cache_file(metadata.get(CACHE_KEY, os.environ.get(CACHE_ENV, True)), "judge.sqlite")


def cache_file(value: Any, default_name: str) -> Path | None:
    """A cache setting (true/false, its string forms, or a path) as a file path; None when off."""
    if isinstance(value, str) and value.strip().lower() in ("", "0", "false", "off", "no", "none"):
        value = False
    if value is False or value is None:
        return None
    if value is True or (isinstance(value, str) and value.strip().lower() in ("1", "true", "on", "yes")):
        return cache_root() / default_name
    return Path(os.path.expanduser(str(value)))


def template_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


# Inside extra_body only exact names: provider fields such as "min_tokens" are legitimate there.
NESTED_SECRET_NAMES = ("api_key", "apikey", "api-key", "authorization", "password", "secret", "access_token", "token")


def is_secret_setting(name: str) -> bool:
    """A setting name that may hold a credential (``api_key_env`` names a variable, so it is fine)."""
    lowered = name.lower()
    return name != "api_key_env" and any(hint in lowered for hint in SECRET_HINTS) and "max_tokens" not in lowered


def _refuse_secrets(settings: dict, where: str) -> None:
    nested = settings.get("extra_body")
    if isinstance(nested, dict):
        for key in nested:
            if key.lower() in NESTED_SECRET_NAMES:
                raise JudgeConfigError(
                    f"{where}: extra_body[{key!r}] is not accepted, because --metadata is written into the results file. "
                    "Put the key in an environment variable and name it with \"api_key_env\"."
                )
    for key in settings:
        if is_secret_setting(key):
            raise JudgeConfigError(
                f"{where}: {key!r} is not accepted here, because --metadata is written into the results file. "
                "Put the key in an environment variable and name it with \"api_key_env\" (default OPENAI_API_KEY)."
            )
