"""Check an endpoint once, before any model or judge work: a dead or refusing endpoint stops the run at once.

``GET /models`` (one request, no retries, 10 s): a refused connection, an unknown host, a 401/403
or a timeout raise :class:`EndpointUnavailable` naming the endpoint (host:port), the error as it
is, and what to check. When the list does not name the model, one 1-token chat request decides
(llama.cpp serves any name; OpenAI and vLLM answer 404 for a model they do not have). Each
(endpoint, model) is checked once per process. A Realtime endpoint (``backend: realtime``) speaks
WebSocket, not these HTTP routes: one TCP connection to its host and port is the check there.
"""

from __future__ import annotations

import logging
import socket
from urllib.parse import urlsplit

from lm_eval_speech.calls.config import CallConfig
from lm_eval_speech.calls.openai_chat import api_key, failure_kind

logger = logging.getLogger("lm_eval_speech.calls")
TIMEOUT = 10.0
_CHECKED: set[tuple[str, str]] = set()


class EndpointUnavailable(RuntimeError):
    """An endpoint that cannot serve the run; the message says which and why."""


def host_port(endpoint: str) -> str:
    parts = urlsplit(endpoint)
    port = parts.port or (443 if parts.scheme in ("https", "wss") else 80)
    return f"{parts.hostname}:{port}"


def check(config: CallConfig, *, user: str) -> None:
    """Stop here if ``config``'s endpoint cannot serve ``user`` (a judge's or model's name, for the message)."""
    if config.backend == "transformers" or not config.preflight:
        return
    key = (config.endpoint, config.model)
    if key in _CHECKED:
        return
    where = f"{user}: endpoint {config.endpoint} ({host_port(config.endpoint)}), model {config.model!r}"
    if config.backend == "realtime":
        _check_socket(config, where)
        _CHECKED.add(key)
        return
    import openai

    client = openai.OpenAI(api_key=api_key(config), base_url=config.endpoint, max_retries=0, timeout=TIMEOUT)
    try:
        listed = {model.id for model in client.models.list()}
    except openai.NotFoundError:
        listed = None  # a server without /models: the chat request below decides
    except Exception as error:
        raise EndpointUnavailable(_explain(error, where, config)) from None
    if listed is None or config.model not in listed:
        try:
            client.chat.completions.create(model=config.model, messages=[{"role": "user", "content": "ok"}], max_tokens=1)
        except Exception as error:
            raise EndpointUnavailable(_explain(error, where, config, listed)) from None
    client.close()
    _CHECKED.add(key)
    logger.info("%s: reachable", where)


def _check_socket(config: CallConfig, where: str) -> None:
    host, _, port = host_port(config.endpoint).rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=TIMEOUT).close()
    except OSError as error:
        raise EndpointUnavailable(_explain(error, where, config)) from None
    logger.info("%s: reachable", where)


def _explain(error: BaseException, where: str, config: CallConfig, listed: set[str] | None = None) -> str:
    import openai

    kind = "timeout" if isinstance(error, TimeoutError) else failure_kind(error)
    text = f"{type(error).__name__}: {error}"
    if kind == "refused":
        return f"{where}: connection refused. Is the server running, and on that port? Check base_url. ({text})"
    if kind == "dns":
        return f"{where}: the host name does not resolve. Check base_url. ({text})"
    if kind == "timeout":
        return f"{where}: no answer within {TIMEOUT:.0f} s. Is the server up and reachable from here? ({text})"
    if isinstance(error, openai.APIStatusError) and error.status_code in (401, 403):
        return f"{where}: the key was refused ({error.status_code}). Check ${config.api_key_env}. ({text})"
    if isinstance(error, openai.NotFoundError):
        known = f"; the endpoint serves {', '.join(sorted(listed))}" if listed else ""
        return f"{where}: unknown model{known}. Check the model name. ({text})"
    return f"{where}: the endpoint cannot serve this run. ({text})"
