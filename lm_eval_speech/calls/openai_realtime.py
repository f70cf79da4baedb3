"""OpenAI's Realtime API (or any server speaking its event protocol), through the openai SDK's realtime client.

A request is the layer's chat-shaped messages: an optional system message (the session's
``instructions``) and one user message whose parts are ``input_text`` and ``input_audio`` (base64
PCM16 mono at 24 kHz, the API's rate). Each attempt opens its own connection, then:

1. ``session.update`` (the GA session shape): the instructions, turn detection off (whole clips
   are sent), PCM16 24 kHz in and out, and the config's ``extra_body`` laid over it (the caller's
   output modalities and voice);
2. the parts in prompt order: a text part as a ``conversation.item.create`` user item, an audio
   part as ``input_audio_buffer.append`` chunks and one ``input_audio_buffer.commit``;
3. ``response.create`` (with ``max_output_tokens`` when the request sets a budget), then the
   events until ``response.done``: audio deltas, transcript deltas and text deltas, under their GA
   names (``response.output_audio.delta``, ...) or their beta ones (``response.audio.delta``, ...).

A connection per attempt, not one per worker: a Realtime session keeps its conversation, so a
reused one would show each answer the earlier requests (or need their items deleted); a fresh one
isolates a failure to its own request, and costs one handshake that is not part of the timing.
The SDK's own reconnection stays off: retries are this layer's, counted and limited as every call's.

Timing (:class:`~lm_eval_speech.speech.latency.Timing`, ``streamed=True``): seconds from sending
``response.create`` (every event of the request has been written to the socket by then) to the
first transcript or text delta, the first audio delta, and ``response.done``.

Failures are classified as the HTTP backend's (:mod:`calls.openai_chat`) and retried by the same
policy, each attempt taking a slot of the endpoint's shared limiter: a refused connection, a
dropped one (``connection``), a timeout (``timeout``: the whole attempt, connection to
``response.done``, within the config's ``timeout``), a handshake refused with an HTTP status
(``4xx`` / ``5xx``), an ``error`` event (``4xx`` for an invalid request: a bad request stays bad;
``4xx`` retried as a 429 for a rate limit; ``5xx`` otherwise) and a response that ends ``failed`` or
``cancelled`` (``5xx``). A response that ends ``incomplete`` keeps what it said, its reason as the
finish reason (``length`` for the token budget), as the chat API does.

The audio reply is handed back as a base64 16-bit WAV (24 kHz mono), the chat API's format, so
the cache and the models read both alike.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from lm_eval_speech.calls import endpoints
from lm_eval_speech.calls.accounting import CallStats
from lm_eval_speech.calls.config import CallConfig, CallConfigError
from lm_eval_speech.calls.openai_chat import (
    BACKOFF_BASE, BACKOFF_CAP, LOCAL_SERVER_KEY, CallFailed, Completion, api_key, failure_kind, retryable,
)
from lm_eval_speech.calls.params import GenerationParams
from lm_eval_speech.speech.latency import Timing

logger = logging.getLogger("lm_eval_speech.calls")

RATE = 24000  # the API's PCM16 rate, in and out
CHUNK_BYTES = 2 * RATE  # one second of PCM16 per append event (the API caps an event at 15 MiB)
AUDIO_DELTAS = ("response.output_audio.delta", "response.audio.delta")
TRANSCRIPT_DELTAS = ("response.output_audio_transcript.delta", "response.audio_transcript.delta")
TEXT_DELTAS = ("response.output_text.delta", "response.text.delta")
FAILED_STATUSES = ("failed", "cancelled")
# the Realtime API's error types that mean the request itself is wrong (not retried)
CLIENT_ERRORS = ("invalid_request_error", "authentication_error", "permission_error", "not_found_error")


_TOLD: set[str] = set()  # configs whose unsent sampling settings were logged


class ReplyFailed(Exception):
    """The server said no within the protocol (an ``error`` event, a failed response, a refused handshake)."""

    def __init__(self, kind: str, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.kind, self.status_code = kind, status_code


@dataclass
class Reply:
    """What one response said, as it streamed in."""

    text: list[str] = field(default_factory=list)
    transcript: list[str] = field(default_factory=list)
    audio: bytearray = field(default_factory=bytearray)
    first_text: float | None = None
    first_audio: float | None = None
    finish: str = "stop"
    input_tokens: int = 0
    output_tokens: int = 0


def urls(endpoint: str) -> tuple[str, str]:
    """The HTTP and WebSocket forms of an endpoint given as either (``ws://h:p/v1`` -> ``http://h:p/v1``)."""
    parts = urlsplit(endpoint)
    http = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    ws = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if http not in ("http", "https"):
        raise CallConfigError(f"realtime endpoint {endpoint!r}: expected a ws://, wss://, http:// or https:// URL")
    return urlunsplit(parts._replace(scheme=http)), urlunsplit(parts._replace(scheme=ws))


def pcm16(array: np.ndarray) -> bytes:
    """Float samples in [-1, 1] as little-endian 16-bit PCM, the API's input format."""
    array = np.clip(np.asarray(array, dtype=np.float32).reshape(-1), -1.0, 1.0)
    return (array * 32767).round().astype("<i2").tobytes()


class OpenAIRealtime:
    """Realtime requests to one endpoint, one answer each; retries, limiter and accounting as :class:`OpenAIChat`."""

    def __init__(self, config: CallConfig, stats: CallStats) -> None:
        if config.constrained:
            raise CallConfigError(f"{config.name}: the Realtime API has no structured output (constrained)")
        self.config, self.stats = config, stats
        self._key = api_key(config)
        self.limiter = endpoints.limiter(config.endpoint, config.model, config.max_concurrency, config.initial_concurrency)
        self._client = None
        unsent = sorted(set(config.params.given()) - {"max_tokens", "n", "stop"})
        if unsent and config.name not in _TOLD:
            _TOLD.add(config.name)
            logger.info("%s: the Realtime API takes no sampling settings; %s not sent", config.name, ", ".join(unsent))

    @property
    def secrets(self) -> list[str]:
        return [self._key] if self._key != LOCAL_SERVER_KEY else []

    async def start(self) -> None:
        import openai

        http, ws = urls(self.config.endpoint)
        # the SDK maps an http(s) base URL to ws(s) itself, but a ws:// one to wss://: give both forms
        self._client = openai.AsyncOpenAI(api_key=self._key, base_url=http, websocket_base_url=ws, max_retries=0,
                                          timeout=self.config.timeout)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def complete(self, messages: list[dict], params: GenerationParams, seed_hint: int,
                       response_format: dict | None = None) -> Completion:
        if response_format is not None:
            raise CallConfigError(f"{self.config.name}: the Realtime API has no structured output")
        attempt = 0
        while True:
            started = await self.limiter.acquire()
            self.stats.http_requests += 1
            try:
                async with asyncio.timeout(self.config.timeout):
                    reply, timing = await self._attempt(messages, params)
            except Exception as error:  # classified below: retried, or raised as CallFailed
                failure = self._failure(error)
                overload = failure.kind in ("timeout", "connection", "5xx", "refused") or failure.status_code == 429
                self.limiter.release(started, endpoints.OVERLOAD if overload else endpoints.ERROR)
                if not retryable(failure, failure.kind) or attempt >= self.config.max_retries:
                    raise CallFailed(failure.kind, str(failure)) from error
                attempt += 1
                self.stats.retries += 1
                await asyncio.sleep(random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** attempt)))
                continue
            except BaseException:  # cancelled: the slot belongs to the process-wide limiter, so it must come back
                self.limiter.release(started, endpoints.ERROR)
                raise
            self.limiter.release(started, endpoints.OK, tokens=reply.output_tokens or None)
            text = "".join(reply.transcript) if reply.audio or reply.transcript else "".join(reply.text)
            return Completion(
                texts=[params.cut(text)], finish_reasons=[reply.finish], prompt_tokens=reply.input_tokens,
                completion_tokens=reply.output_tokens, audios=[_wav_base64(reply.audio) if reply.audio else None],
                timings=[timing],
            )

    async def _attempt(self, messages: list[dict], params: GenerationParams) -> tuple[Reply, Timing]:
        system = [m["content"] for m in messages if m.get("role") == "system"]
        users = [m for m in messages if m.get("role") == "user"]
        session = {"type": "realtime", "audio": {
            "input": {"format": {"type": "audio/pcm", "rate": RATE}, "turn_detection": None},
            "output": {"format": {"type": "audio/pcm", "rate": RATE}}}}
        if system:
            session["instructions"] = "\n\n".join(system)
        _merge(session, self.config.extra_body)
        response = {"max_output_tokens": int(params.max_tokens)} if params.max_tokens else {}
        async with self._client.realtime.connect(model=self.config.model) as connection:
            await connection.session.update(session=session)
            for message in users:
                for part in _parts(message):
                    if part["type"] == "input_audio":
                        data = base64.b64decode(part["audio"])
                        for start in range(0, len(data), CHUNK_BYTES):
                            chunk = base64.b64encode(data[start : start + CHUNK_BYTES]).decode("ascii")
                            await connection.input_audio_buffer.append(audio=chunk)
                        await connection.input_audio_buffer.commit()
                    else:
                        await connection.conversation.item.create(item={"type": "message", "role": "user", "content": [part]})
            sent = time.perf_counter()  # the zero point: every part of the request is on its way
            await connection.response.create(response=response)
            reply = await _collect(connection, sent)
        total = time.perf_counter() - sent
        first_text = reply.first_text - sent if reply.first_text is not None else None
        first_audio = reply.first_audio - sent if reply.first_audio is not None else None
        return reply, Timing(total_s=total, first_text_s=first_text, first_audio_s=first_audio, streamed=True)

    def _failure(self, error: BaseException) -> ReplyFailed:
        """What an attempt raised, as the HTTP backend's failure kinds, with a message naming the endpoint."""
        import openai
        from websockets.exceptions import ConnectionClosed, InvalidStatus

        endpoint = self.config.endpoint
        if isinstance(error, ReplyFailed):
            return error
        kind = failure_kind(error)  # refused connections and unknown hosts, read from the cause chain
        if kind == "refused":
            return ReplyFailed(kind, f"{endpoint}: connection refused ({error})")
        if kind == "dns":
            return ReplyFailed(kind, f"{endpoint}: the host name does not resolve ({error})")
        if isinstance(error, InvalidStatus):  # the handshake answered with an HTTP error (401, 429, 503, ...)
            status = error.response.status_code
            return ReplyFailed("5xx" if status >= 500 else "4xx", f"{endpoint}: {error}", status_code=status)
        if isinstance(error, TimeoutError):
            return ReplyFailed("timeout", f"{endpoint}: no response.done within {self.config.timeout:g} s")
        if isinstance(error, (ConnectionClosed, openai.WebSocketConnectionClosedError, OSError)):
            return ReplyFailed("connection", f"{endpoint}: connection dropped mid-answer ({type(error).__name__}: {error})")
        return ReplyFailed("other", f"{type(error).__name__}: {str(error).strip() or 'no message'}")


async def _collect(connection, sent: float) -> Reply:
    """Read events until ``response.done``: the reply, with when its first text and audio arrived."""
    reply = Reply()
    while True:
        event = await connection.recv()
        kind = getattr(event, "type", None)
        if kind in AUDIO_DELTAS:
            if reply.first_audio is None:
                reply.first_audio = time.perf_counter()
            reply.audio += base64.b64decode(event.delta)
        elif kind in TRANSCRIPT_DELTAS or kind in TEXT_DELTAS:
            if reply.first_text is None:
                reply.first_text = time.perf_counter()
            (reply.transcript if kind in TRANSCRIPT_DELTAS else reply.text).append(event.delta)
        elif kind == "error":
            raise _error_event(event)
        elif kind == "response.done":
            _finish(reply, event.response)
            return reply


def _finish(reply: Reply, response) -> None:
    status = getattr(response, "status", None) or "completed"
    details = getattr(response, "status_details", None)
    if status in FAILED_STATUSES:
        error = getattr(details, "error", None)
        said = getattr(error, "message", None) or getattr(details, "reason", None) or ""
        raise ReplyFailed("5xx", f"the response ended {status}" + (f": {said}" if said else ""))
    if status == "incomplete":
        reason = getattr(details, "reason", None) or "incomplete"
        reply.finish = "length" if reason == "max_output_tokens" else reason
    usage = getattr(response, "usage", None)
    reply.input_tokens = getattr(usage, "input_tokens", 0) or 0
    reply.output_tokens = getattr(usage, "output_tokens", 0) or 0
    if not reply.text and not reply.transcript:  # a server that sends no deltas: the text is in the output items
        for item in getattr(response, "output", None) or []:
            for part in getattr(item, "content", None) or []:
                said = getattr(part, "transcript", None) or getattr(part, "text", None)
                if said:
                    reply.transcript.append(said)


def _error_event(event) -> ReplyFailed:
    error = getattr(event, "error", None)
    kind, code = getattr(error, "type", None) or "", getattr(error, "code", None) or ""
    message = f"error event ({kind or 'unknown'}{', ' + code if code else ''}): {getattr(error, 'message', None) or ''}".rstrip(": ")
    if "rate_limit" in kind or "rate_limit" in code:
        return ReplyFailed("4xx", message, status_code=429)
    if kind in CLIENT_ERRORS:
        return ReplyFailed("4xx", message, status_code=400)
    return ReplyFailed("5xx", message)


def _parts(message: dict) -> list[dict]:
    content = message.get("content")
    return [{"type": "input_text", "text": content}] if isinstance(content, str) else list(content or [])


def _merge(into: dict, update: dict) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _wav_base64(pcm: bytes) -> str:
    """The streamed PCM16 as a WAV file, sample for sample."""
    import io

    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, np.frombuffer(bytes(pcm[: len(pcm) // 2 * 2]), dtype="<i2"), RATE, format="WAV", subtype="PCM_16")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
