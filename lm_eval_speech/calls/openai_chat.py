"""Any OpenAI-compatible chat endpoint (OpenAI, vLLM, llama.cpp, ...), through the openai SDK.

The SDK sends each attempt (its own retries are off); this module decides what to retry, so
that every HTTP attempt is counted and the endpoint's shared limiter (:mod:`calls.endpoints`)
hears how each went. Retried: timeouts, dropped or refused connections, 408/409/429 and 5xx,
with exponential backoff and full jitter, or exactly the server's ``Retry-After``. Not retried:
other 4xx (a bad request stays bad). A request that still fails raises :class:`CallFailed`
naming the kind of failure (``refused`` is not ``timeout``: the aiohttp transport reports a
refused connection as a timeout, so the cause chain is read).

Each answer's timing (:class:`~lm_eval_speech.speech.latency.Timing`) is the wall time of the
attempt that succeeded, from taking its limiter slot to the parsed reply: no stream, so its first
text and audio are at the end (``first_audio_s`` None, ``streamed`` False); every choice of a
request shares it.
"""

from __future__ import annotations

import asyncio
import email.utils
import errno
import os
import random
import socket
import time
from dataclasses import dataclass

from lm_eval_speech.calls import endpoints
from lm_eval_speech.calls.accounting import CallStats
from lm_eval_speech.calls.config import OPENAI, CallConfig, CallConfigError
from lm_eval_speech.calls.params import GenerationParams
from lm_eval_speech.speech.latency import Timing

# Local servers (vLLM, llama.cpp) accept any key unless started with one.
LOCAL_SERVER_KEY = "no-key-needed"
RETRIED_STATUS = (408, 409, 429)
BACKOFF_BASE, BACKOFF_CAP = 0.5, 30.0


class CallFailed(Exception):
    """A request that failed for good; ``kind`` is one of :data:`calls.accounting.FAILURE_KINDS`."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class Completion:
    texts: list[str | None]
    finish_reasons: list[str | None]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    audios: list[str | None] | None = None  # base64 audio of spoken replies (modalities with "audio")
    timings: list[Timing | None] | None = None  # how long each choice took (speech.latency), where the backend measures it


def api_key(config: CallConfig) -> str:
    """The key from ``$api_key_env``; a local server needs none. Never part of any result or log."""
    key = os.environ.get(config.api_key_env, "")
    if key:
        return key
    if config.endpoint == OPENAI:
        raise CallConfigError(
            f"{config.name}: set the {config.api_key_env} environment variable, or point it at a local server with "
            '"base_url" (a re-run served wholly from the cache makes no call: any value then works)'
        )
    return LOCAL_SERVER_KEY


def failure_kind(error: BaseException) -> str:
    """``refused``, ``dns``, ``timeout``, ``connection``, ``4xx``, ``5xx`` or ``other``, from the error and its causes."""
    import openai

    chain = _causes(error)
    if any(_refused(c) for c in chain):
        return "refused"
    if any(isinstance(c, socket.gaierror) for c in chain):
        return "dns"
    if isinstance(error, openai.APITimeoutError):
        # the aiohttp transport says timeout for a dropped connection too: a real one has a TimeoutError among its causes
        dropped = any(_dropped(c) for c in chain) and not any(isinstance(c, TimeoutError) for c in chain)
        return "connection" if dropped else "timeout"
    if isinstance(error, openai.APIConnectionError):
        return "connection"
    if isinstance(error, openai.APIStatusError):
        return "5xx" if error.status_code >= 500 else "4xx"
    return "other"


def _causes(error: BaseException) -> list[BaseException]:
    chain, cause = [], error
    while cause is not None and len(chain) < 12:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    return chain


def _refused(error: BaseException) -> bool:
    return isinstance(error, ConnectionRefusedError) or getattr(error, "errno", None) == errno.ECONNREFUSED


def _dropped(error: BaseException) -> bool:
    if isinstance(error, ConnectionError):
        return True
    try:
        import aiohttp
    except ImportError:
        return False
    return isinstance(error, aiohttp.ClientConnectionError)


def retryable(error: BaseException, kind: str) -> bool:
    if kind in ("refused", "dns", "timeout", "connection", "5xx"):
        return True
    return kind == "4xx" and getattr(error, "status_code", None) in RETRIED_STATUS


def _overload(error: BaseException, kind: str) -> bool:
    return kind in ("timeout", "connection", "5xx", "refused") or getattr(error, "status_code", None) == 429


def retry_after(error: BaseException) -> float | None:
    """The server's ``Retry-After`` (seconds or an HTTP date; ``retry-after-ms`` too), if it sent one."""
    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None) or {}
    try:
        if headers.get("retry-after-ms"):
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        value = headers.get("retry-after")
        if not value:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def describe_error(error: BaseException, kind: str, endpoint: str) -> str:
    text = str(error).strip() or type(error).__name__
    if kind == "refused":  # the refusal itself: the aiohttp transport's outer error says "Request timed out"
        refusal = next(c for c in _causes(error) if _refused(c))
        return f"{endpoint}: connection refused ({str(refusal).strip() or type(refusal).__name__})"
    dropped = next((c for c in _causes(error)[1:] if _dropped(c)), None) if kind == "connection" else None
    if dropped is not None:  # as above: not the outer "Request timed out"
        return f"{endpoint}: connection dropped ({type(dropped).__name__}: {str(dropped).strip()})"
    return f"{type(error).__name__}: {text}"


class OpenAIChat:
    """Chat requests to one endpoint, each with ``n`` choices; retries, limiter and accounting here."""

    def __init__(self, config: CallConfig, stats: CallStats) -> None:
        self.config, self.stats = config, stats
        self._key = api_key(config)
        self.limiter = endpoints.limiter(config.endpoint, config.model, config.max_concurrency, config.initial_concurrency)
        self._client = None

    @property
    def secrets(self) -> list[str]:
        return [self._key] if self._key != LOCAL_SERVER_KEY else []

    async def start(self) -> None:
        import openai
        from openai.types.chat import ChatCompletion

        self._completion_type = ChatCompletion

        self._client = openai.AsyncOpenAI(
            api_key=self._key, base_url=self.config.endpoint, max_retries=0, timeout=self.config.timeout,
            **http_client_kwargs(openai),
        )

    async def complete(self, messages: list[dict], params: GenerationParams, seed_hint: int,
                       response_format: dict | None = None) -> Completion:
        # The body as sent: the SDK's typed-dict transform of ``create`` costs ~1.7 ms a request on a
        # long prompt (a third of the client's CPU at 64 in flight); the messages are plain JSON already.
        body = {"model": self.config.model, "messages": messages, **params.to_openai(), **self.config.extra_body}
        if response_format is not None:
            body["response_format"] = response_format
        attempt = 0
        while True:
            started = await self.limiter.acquire()
            self.stats.http_requests += 1
            try:
                response = await self._client.post("/chat/completions", body=body, cast_to=self._completion_type)
            except Exception as error:  # classified below: retried, or raised as CallFailed
                kind = failure_kind(error)
                wait = retry_after(error)
                self.limiter.release(started, endpoints.OVERLOAD if _overload(error, kind) else endpoints.ERROR, retry_after=wait)
                if not retryable(error, kind) or attempt >= self.config.max_retries:
                    raise CallFailed(kind, describe_error(error, kind, self.config.endpoint)) from error
                attempt += 1
                self.stats.retries += 1
                await asyncio.sleep(wait if wait is not None else random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** attempt)))
                continue
            except BaseException:  # cancelled: the slot belongs to the process-wide limiter, so it must come back
                self.limiter.release(started, endpoints.ERROR)
                raise
            usage = response.usage
            completion_tokens = getattr(usage, "completion_tokens", 0) or 0
            self.limiter.release(started, endpoints.OK, tokens=completion_tokens or None)
            # the successful attempt, sent to answered: failed attempts and the wait for a slot are not the model's time
            timing = Timing(total_s=time.monotonic() - started)
            choices = sorted(response.choices or [], key=lambda c: c.index)
            return Completion(
                texts=[None if (t := _reply_text(c.message)) is None else params.cut(t) for c in choices],
                audios=[_reply_audio(c.message) for c in choices],
                finish_reasons=[c.finish_reason for c in choices],
                prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
                completion_tokens=completion_tokens,
                timings=[timing] * len(choices),
            )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()


def _reply_text(message) -> str | None:
    """The text of a reply; a spoken reply has no content, its text is the audio's transcript."""
    if message is None:
        return None
    if message.content is None and getattr(message, "audio", None) is not None:
        return message.audio.transcript
    return message.content


def _reply_audio(message) -> str | None:
    audio = getattr(message, "audio", None) if message is not None else None
    return getattr(audio, "data", None) if audio is not None else None


def http_client_kwargs(openai) -> dict:
    """The SDK's aiohttp transport where installed: a third of the default's CPU per request."""
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        return {}
    return {"http_client": openai.DefaultAioHttpClient()}


def preload_sdk() -> None:
    """Import the SDK on a background thread (about 1.3 s) while the model is still generating."""
    import threading

    threading.Thread(target=lambda: __import__("openai"), name="preload-openai", daemon=True).start()
