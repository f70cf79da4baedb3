"""Generation settings, once: read from lm-eval's gen_kwargs or a judge's settings, translated per backend.

:class:`GenerationParams` names each setting once (OpenAI's names). Each backend has one
translation, which refuses a setting it cannot express with an error listing what it accepts:
:meth:`~GenerationParams.to_transformers` (``model.generate``), :meth:`~GenerationParams.to_vllm`
(``vllm.SamplingParams``) and :meth:`~GenerationParams.to_openai` (a chat completions body).
A temperature of 0 (or lm-eval's ``do_sample: false``) is greedy decoding everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from lm_eval_speech.options import OptionError, as_bool, check_known

# lm-eval's aliases for the output budget, in its own priority order
MAX_TOKEN_ALIASES = ("max_gen_toks", "max_new_tokens", "max_tokens", "max_completion_tokens")
MAX_OPENAI_STOPS = 4  # the chat completions API takes four stop strings; callers cut at the rest
# Values that change nothing: a backend without the setting is not refused them (SIB's judge sets both penalties to 0).
NEUTRAL = {"frequency_penalty": 0, "presence_penalty": 0, "repetition_penalty": 1, "min_tokens": 0}
TRANSFORMERS_LACKS = ("frequency_penalty", "presence_penalty")
OPENAI_LACKS = ("top_k", "repetition_penalty", "min_tokens")


@dataclass(frozen=True)
class GenerationParams:
    max_tokens: int | None = None
    temperature: float | None = None  # None: the backend's default; 0: greedy
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    n: int = 1
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    repetition_penalty: float | None = None
    min_tokens: int | None = None

    def __post_init__(self) -> None:
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        object.__setattr__(self, "stop", tuple(s for s in stop if s))
        if not isinstance(self.n, int) or isinstance(self.n, bool) or self.n < 1:
            raise OptionError(f"n={self.n!r}: must be a positive integer")
        if self.max_tokens is not None and int(self.max_tokens) < 1:
            raise OptionError(f"max_tokens={self.max_tokens!r}: must be a positive integer")

    @property
    def greedy(self) -> bool:
        return self.temperature is not None and float(self.temperature) == 0.0

    def given(self) -> dict:
        """The settings that are set (n always), as sent: unset ones are left to the backend."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {k: (list(v) if k == "stop" else v) for k, v in values.items() if v is not None and v != ()}

    def cut(self, text: str) -> str:
        """``text`` up to its first stop string (a backend may honour only some of them)."""
        end = min((text.find(s) for s in self.stop if s in text), default=-1)
        return text[:end] if end >= 0 else text

    def with_n(self, n: int) -> GenerationParams:
        return replace(self, n=n)

    # -- from lm-eval ----------------------------------------------------------------------
    @classmethod
    def from_gen_kwargs(cls, gen_kwargs: dict, *, default_max_tokens: int, where: str = "gen_kwargs") -> GenerationParams:
        """lm-eval's request gen_kwargs, read as lm-eval's ``normalize_gen_kwargs`` reads them."""
        kwargs = dict(gen_kwargs or {})
        accepted = {"until", "do_sample", *MAX_TOKEN_ALIASES, *(f.name for f in fields(cls) if f.name not in ("stop", "max_tokens"))}
        check_known(kwargs, accepted, where)
        until = kwargs.pop("until", None) or []
        budget = next((kwargs.pop(a) for a in MAX_TOKEN_ALIASES if kwargs.get(a) is not None), default_max_tokens)
        for alias in MAX_TOKEN_ALIASES:
            kwargs.pop(alias, None)
        given_temperature = kwargs.pop("temperature", None)
        temperature = float(given_temperature or 0.0)
        do_sample = kwargs.pop("do_sample", None)
        sampling = temperature > 0.0 if do_sample is None else as_bool(do_sample, f"{where} do_sample")
        if sampling and given_temperature is None:
            temperature = None  # do_sample without a temperature: lm-eval leaves the backend's default
        return cls(
            max_tokens=int(budget), temperature=temperature if sampling else 0.0,
            stop=tuple([until] if isinstance(until, str) else until), **kwargs,
        )

    # -- per backend -----------------------------------------------------------------------
    def _refuse(self, backend: str, unsupported: tuple[str, ...]) -> None:
        used = [name for name in unsupported if getattr(self, name) not in (None, NEUTRAL.get(name))]
        if used:
            accepted = [f.name for f in fields(self) if f.name not in unsupported]
            raise OptionError(f"{backend}: cannot use {', '.join(used)}; it accepts {', '.join(accepted)}")

    def to_transformers(self) -> dict:
        """``model.generate`` arguments (seed: the caller seeds torch; stop: the caller cuts)."""
        self._refuse("transformers generate", TRANSFORMERS_LACKS)
        kwargs: dict[str, Any] = {"num_return_sequences": self.n}
        if self.max_tokens is not None:
            kwargs["max_new_tokens"] = int(self.max_tokens)
        sampling = self.temperature is None or not self.greedy
        kwargs["do_sample"] = sampling
        if sampling:
            kwargs["temperature"] = 1.0 if self.temperature is None else float(self.temperature)  # OpenAI's default
            if self.top_p is not None:
                kwargs["top_p"] = float(self.top_p)
            if self.top_k is not None:
                kwargs["top_k"] = int(self.top_k)
        if self.repetition_penalty is not None:
            kwargs["repetition_penalty"] = float(self.repetition_penalty)
        if self.min_tokens is not None:
            kwargs["min_new_tokens"] = int(self.min_tokens)
        return kwargs

    def to_vllm(self) -> dict:
        """``vllm.SamplingParams`` arguments: vLLM takes every setting."""
        kwargs = self.given()
        kwargs["temperature"] = 0.0 if self.greedy else (1.0 if self.temperature is None else float(self.temperature))
        return kwargs

    def to_openai(self) -> dict:
        """Chat completions body fields (only those set; ``stop`` at most four: cut the rest afterwards)."""
        self._refuse("the OpenAI chat API", OPENAI_LACKS)
        body = {k: v for k, v in self.given().items() if k not in OPENAI_LACKS}  # left: neutral values only
        if "stop" in body:
            body["stop"] = body["stop"][:MAX_OPENAI_STOPS]
        return body
