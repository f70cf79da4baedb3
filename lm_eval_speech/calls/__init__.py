"""The model-call layer: one way to call a model, for models, judges and the arena alike.

* :class:`GenerationParams` (``params``): generation settings, one translation per backend;
* :class:`CallConfig` (``config``): the model to call and how, from a flat settings dict;
* :class:`Caller` (``caller``): cache first, then concurrent requests, ``n`` outputs each;
* endpoints are shared: one adaptive concurrency limit per (base URL, model) (``endpoints``);
* every HTTP attempt, retry, cache hit, failure (by kind) and token is counted (``accounting``);
* :func:`check_endpoint` checks an endpoint once, before any work (``preflight``);
* :class:`CallCache`: one SQLite cache of every output, with a readable request summary (``cache``);
* in-process models and generation (``local``), JSON-schema-constrained decoding (``constrained``),
  OpenAI's Batch API (``batch``), the Realtime API's sessions (``openai_realtime``);
* each output carries its call's timing (:class:`lm_eval_speech.speech.latency.Timing`), cached with it.
"""

from lm_eval_speech.calls.accounting import CallStats
from lm_eval_speech.calls.cache import CallCache, open_cache
from lm_eval_speech.calls.caller import Caller, CallOutput, CallRequest, run_coroutine
from lm_eval_speech.calls.config import CallConfig, CallConfigError, config_from_settings
from lm_eval_speech.calls.params import GenerationParams
from lm_eval_speech.calls.preflight import EndpointUnavailable
from lm_eval_speech.calls.preflight import check as check_endpoint

__all__ = [
    "CallCache", "CallConfig", "CallConfigError", "CallOutput", "CallRequest", "CallStats", "Caller",
    "EndpointUnavailable", "GenerationParams", "check_endpoint", "config_from_settings", "open_cache", "run_coroutine",
]
