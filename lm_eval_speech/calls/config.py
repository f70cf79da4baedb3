"""One model to call, and how: the settings every caller (judges, the arena, API models) uses.

A :class:`CallConfig` is built from a flat settings dict (a judge's YAML defaults with
``--metadata`` laid over them, an arena ``--judge`` argument, a model's model_args) by
:func:`config_from_settings`, which refuses unknown names (listing the accepted ones) and
credentials: lm-eval copies settings into the results file, so a key is only ever read from the
environment variable named by ``api_key_env``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from lm_eval_speech.calls.params import GenerationParams
from lm_eval_speech.options import FALSE, TRUE, OptionError, as_bool, check_known
from lm_eval_speech.paths import cache_root

BACKENDS = ("openai", "transformers", "realtime")  # realtime: calls.openai_realtime
N_MODES = ("auto", "native", "repeat")
MODES = ("online", "batch")
OPENAI = "https://api.openai.com/v1"
PARAM_NAMES = tuple(f.name for f in fields(GenerationParams))
SECRET_HINTS = ("api_key", "apikey", "token", "secret", "password", "authorization")
# Inside extra_body only exact names: provider fields such as "min_tokens" are legitimate there.
NESTED_SECRET_NAMES = ("api_key", "apikey", "api-key", "authorization", "password", "secret", "access_token", "token")
# USD per million tokens (input, output), for the cost estimate; others: set the prices.
KNOWN_PRICES = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
}
DEFAULT_MAX_CONCURRENCY = 64  # the adaptive limiter's ceiling (calls.endpoints)
DEFAULT_INITIAL_CONCURRENCY = 4  # and its start: a one-slot local server queues 4 long generations without a timeout
DEFAULT_TIMEOUT = 600.0  # per HTTP attempt, as the OpenAI SDK's own default: long local generations fit


class CallConfigError(OptionError):
    """A call setting that is missing, unknown, out of range or unsafe."""


@dataclass(frozen=True)
class CallConfig:
    model: str
    backend: str = "openai"
    name: str = ""  # label in results; default: the model
    base_url: str | None = None  # default: $OPENAI_BASE_URL, else OpenAI
    api_key_env: str = "OPENAI_API_KEY"
    params: GenerationParams = field(default_factory=GenerationParams)
    n_mode: str = "auto"  # one request with n choices (falling back where ignored), or n requests of one
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    initial_concurrency: int = DEFAULT_INITIAL_CONCURRENCY  # where the adaptive limit starts (an endpoint's known capacity)
    max_retries: int = 8
    timeout: float = DEFAULT_TIMEOUT
    input_cost_per_1m: float | None = None
    output_cost_per_1m: float | None = None
    extra_body: dict = field(default_factory=dict)  # provider-specific request fields, sent as given
    constrained: bool = False  # answers forced into the caller's JSON schema (response_format, or a grammar in-process)
    mode: str = "online"  # "batch": OpenAI's Batch API (half price, hours)
    batch_poll_interval: float = 30.0  # seconds between polls of a submitted batch (mode batch)
    preflight: bool = True  # check the endpoint once before any work
    # the transformers backend
    batch_size: int = 8
    gguf_file: str | None = None
    dtype: str | None = None
    device: str | None = None

    def __post_init__(self) -> None:
        where = f"{self.name or 'call'} {self.model!r}"
        if not self.model or not isinstance(self.model, str):
            raise CallConfigError("a call needs a model name or path")
        for name, allowed in (("backend", BACKENDS), ("n_mode", N_MODES), ("mode", MODES)):
            if getattr(self, name) not in allowed:
                raise CallConfigError(f"{where}: {name} must be one of {', '.join(allowed)}, not {getattr(self, name)!r}")
        for name in ("max_concurrency", "initial_concurrency", "batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise CallConfigError(f"{where}: {name} must be a positive integer")
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise CallConfigError(f"{where}: max_retries must be a non-negative integer")
        try:  # settings from the command line may arrive as text
            poll = float(self.batch_poll_interval) if not isinstance(self.batch_poll_interval, bool) else 0.0
        except (TypeError, ValueError):
            poll = 0.0
        if not poll > 0 or poll == float("inf"):
            raise CallConfigError(f"{where}: batch_poll_interval must be a positive number of seconds, not {self.batch_poll_interval!r}")
        object.__setattr__(self, "batch_poll_interval", poll)
        if self.mode == "batch" and self.backend != "openai":
            raise CallConfigError(f"{where}: mode=batch needs an OpenAI-compatible endpoint (backend openai)")
        if self.backend == "transformers":
            self.params.to_transformers()  # refuses what generate cannot do, naming what it can
        else:
            self.params.to_openai()
        if not self.name:
            object.__setattr__(self, "name", self.model)

    @property
    def endpoint(self) -> str:
        if self.backend == "transformers":
            return "in-process"
        return (self.base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI).rstrip("/")

    def identity(self) -> dict:
        """What makes two configs the same model, for the cache key."""
        if self.backend == "transformers":
            return {"backend": self.backend, "model": self.model, "gguf_file": self.gguf_file, "dtype": self.dtype}
        return {"backend": self.backend, "endpoint": self.endpoint, "model": self.model, "extra_body": self.extra_body}

    def prices(self) -> tuple[float, float] | None:
        """USD per million (input, output) tokens; OpenAI's Batch API bills half."""
        if self.input_cost_per_1m is not None and self.output_cost_per_1m is not None:
            return self.input_cost_per_1m, self.output_cost_per_1m
        if self.backend != "openai" or self.endpoint != OPENAI or self.model not in KNOWN_PRICES:
            return None  # a local server or unknown model: no bill to estimate
        price = KNOWN_PRICES[self.model]
        return (price[0] / 2, price[1] / 2) if self.mode == "batch" else price

    def describe(self) -> dict:
        """Provenance for the results file: settings only, never a secret."""
        info = {
            "name": self.name, "backend": self.backend, "model": self.model, "endpoint": self.endpoint,
            "sampling": self.params.given(), "n_mode": self.n_mode, "mode": self.mode, "constrained": self.constrained,
            "max_concurrency": self.max_concurrency, "initial_concurrency": self.initial_concurrency,
            "max_retries": self.max_retries, "timeout_s": self.timeout,
        }
        if self.backend != "transformers":
            info["api_key_env"] = self.api_key_env
        if self.extra_body:
            info["extra_body"] = self.extra_body
        if self.backend == "transformers":
            info["batch_size"] = self.batch_size
        if self.mode == "batch":
            info["batch_poll_interval_s"] = self.batch_poll_interval
        if self.gguf_file:
            info["gguf_file"] = self.gguf_file
        return info


SETTING_NAMES = tuple(sorted({f.name for f in fields(CallConfig) if f.name != "params"} | set(PARAM_NAMES)))
_BOOLEANS = ("constrained", "preflight")


def config_from_settings(settings: dict | str, *, base: dict | None = None, where: str = "call") -> CallConfig:
    """A config from ``base`` (defaults, e.g. the benchmark authors' judge) with ``settings`` laid over it."""
    if isinstance(settings, str):
        settings = {"model": settings}
    if not isinstance(settings, dict):
        raise CallConfigError(f"{where}: expected an object of settings, got {type(settings).__name__}")
    refuse_secrets(settings, where)
    merged = {**(base or {}), **settings}
    if base and "model" in settings and "name" not in settings:
        merged.pop("name", None)  # a new model gets its own label
    try:  # callers catch CallConfigError: the shared option checks raise its base class
        check_known(settings, SETTING_NAMES, where)
        for name in _BOOLEANS:
            if name in merged:
                merged[name] = as_bool(merged[name], f"{where} {name}")
    except OptionError as err:
        raise CallConfigError(str(err)) from None
    params = {k: merged.pop(k) for k in PARAM_NAMES if k in merged}
    try:
        return CallConfig(params=GenerationParams(**params), **merged)
    except TypeError as err:
        raise CallConfigError(f"{where}: {err}") from None
    except OptionError as err:
        raise CallConfigError(f"{where}: {err}") from None


def cache_file(value: Any, default_name: str = "calls.sqlite") -> Path | None:
    """A cache setting (true/false, its string forms, or a path) as a file path; None when off."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return None
    if isinstance(value, bool) or (isinstance(value, str) and value.strip().lower() in TRUE + FALSE):
        return cache_root() / default_name if as_bool(value, "cache") else None
    return Path(os.path.expanduser(str(value)))


def template_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def is_secret_setting(name: str) -> bool:
    """A setting name that may hold a credential (``api_key_env`` names a variable, so it is fine)."""
    lowered = name.lower()
    return name != "api_key_env" and any(hint in lowered for hint in SECRET_HINTS) and "max_tokens" not in lowered


def refuse_secrets(settings: dict, where: str) -> None:
    nested = settings.get("extra_body")
    if isinstance(nested, dict):
        for key in nested:
            if key.lower() in NESTED_SECRET_NAMES:
                raise CallConfigError(
                    f"{where}: extra_body[{key!r}] is not accepted, because settings are written into the results file. "
                    "Put the key in an environment variable and name it with \"api_key_env\"."
                )
    for key in settings:
        if is_secret_setting(key):
            raise CallConfigError(
                f"{where}: {key!r} is not accepted, because settings are written into the results file. "
                "Put the key in an environment variable and name it with \"api_key_env\" (default OPENAI_API_KEY)."
            )
