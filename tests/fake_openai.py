"""A real local HTTP server speaking the OpenAI chat-completions protocol, for testing judge clients.

It is a real ``ThreadingHTTPServer`` on 127.0.0.1 (not a patched client), so the whole client stack
(SDK, httpx connection pool, retries, timeouts, thread pools) is exercised::

    with FakeOpenAI(responder=scripted({"capital": "Paris"}), faults=fault_fraction(0.3)) as server:
        client = OpenAI(base_url=server.base_url, api_key="test")
        ...
        assert server.answered == 30 and server.max_in_flight >= 8

Endpoints: ``POST /v1/chat/completions`` (no streaming) and ``GET /v1/models``. Faults
(429/500/503, a hang the client should time out on, a dropped connection, a 200 that is not
JSON) are injected per request by a ``faults`` callable; ``fault_fraction`` and ``fault_always``
build common ones. Every chat request is recorded with its body, headers, status and attempt
number (how many times that exact body has been received).

Manual runs: ``python tests/fake_openai.py --port 0 --latency 0.25`` prints the base URL and serves until killed.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import socket
import socketserver
import sys
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterable, Mapping, Sequence

FAULT_KINDS = ("401", "429", "500", "503", "timeout", "disconnect", "bad_json")

Responder = Callable[[dict, int], str]


@dataclass(frozen=True)
class Fault:
    """How to misbehave for one request.

    kind: "429" | "500" | "503" (OpenAI-style JSON error with that status), "401" (invalid API key; the
    message echoes the Authorization header in full, as some proxies do: for secret-leak tests), "timeout" (wait ``hang``
    seconds, then answer normally: the client is expected to give up first), "disconnect" (close
    the socket without a response) or "bad_json" (200 whose body is not JSON).
    retry_after: sent as ``Retry-After`` on 429/503 when set.
    """

    kind: str
    retry_after: float | None = None
    hang: float = 5.0

    def __post_init__(self):
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {FAULT_KINDS}")


Faults = Callable[[dict, int], "Fault | None"]

# status, error type, error code: what api.openai.com sends for these
_ERROR_SHAPES = {
    "401": (401, "invalid_request_error", "invalid_api_key", "Incorrect API key provided: {authorization} (injected by FakeOpenAI)"),
    "429": (429, "rate_limit_error", "rate_limit_exceeded", "Rate limit reached (injected by FakeOpenAI)"),
    "500": (500, "server_error", "internal_error", "The server had an error (injected by FakeOpenAI)"),
    "503": (503, "server_error", "service_unavailable", "The server is overloaded (injected by FakeOpenAI)"),
}


def canonical_json(body: object) -> str:
    """The identity of a request body: equal bodies (whatever their key order) give equal strings."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def default_responder(body: dict, index: int) -> str:
    return "OK"


class FakeOpenAI:
    """An OpenAI-compatible chat-completions server on 127.0.0.1, serving from a daemon thread.

    responder(body, i) -> content of choice i; latency: seconds slept before answering each chat
    request; faults(body, attempt) -> Fault | None, attempt being 1 the first time this exact body
    arrives; honour_n=False answers one choice whatever ``n`` asks (as llama.cpp does).

    Counters: ``calls`` (every chat POST), ``answered`` (normal 200 answers; a faulted request is
    counted in ``faulted`` only, even a "timeout" that answers late), ``faulted``, ``max_in_flight``
    (peak concurrent chat requests). ``requests`` is a snapshot of the records
    ``{"body", "headers", "status", "attempt", "time", "fault"}``; status is 0 while pending or when no
    response was sent, time is ``time.monotonic()`` at arrival, fault the injected kind or None.
    """

    def __init__(
        self,
        responder: Responder | None = None,
        latency: float = 0.0,
        faults: Faults | None = None,
        honour_n: bool = True,
        model_ids: Sequence[str] = ("judge",),
        port: int = 0,
    ):
        self.responder = responder or default_responder
        self.latency = latency
        self.faults = faults
        self.honour_n = honour_n
        self.model_ids = tuple(model_ids)
        self._lock = threading.Lock()
        self._closing = threading.Event()  # wakes sleeping handlers, so close() never waits on a hang
        self._connections: set[socket.socket] = set()
        self._completion_ids = itertools.count(1)
        self._clear_records()
        self._in_flight = 0
        self._httpd = _Server(("127.0.0.1", port), _Handler)
        self._httpd.fake = self
        self.port = self._httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._closed = False
        # a short poll interval keeps shutdown() quick
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"FakeOpenAI:{self.port}", daemon=True)
        self._thread.start()

    def __enter__(self) -> FakeOpenAI:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving now: hanging requests are dropped and open keep-alive connections closed."""
        if self._closed:
            return
        self._closed = True
        self._closing.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:  # handler threads blocked reading a keep-alive socket wake up and exit
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=2)

    # -- records ---------------------------------------------------------------------------------

    def _clear_records(self) -> None:
        self._calls = self._answered = self._faulted = 0
        self._max_in_flight = 0
        self._records: list[dict] = []
        self._attempts: Counter[str] = Counter()

    def reset_counters(self) -> None:
        """Forget every request seen, attempt numbers included (a fault_fraction run faults the same bodies again)."""
        with self._lock:
            self._clear_records()

    @property
    def calls(self) -> int:
        return self._calls

    @property
    def answered(self) -> int:
        return self._answered

    @property
    def faulted(self) -> int:
        return self._faulted

    @property
    def max_in_flight(self) -> int:
        return self._max_in_flight

    @property
    def requests(self) -> list[dict]:
        with self._lock:
            return [dict(record) for record in self._records]

    def distinct_bodies(self) -> int:
        with self._lock:
            return len(self._attempts)

    # -- serving (called from handler threads) ----------------------------------------------------

    def _sleep(self, seconds: float) -> bool:
        """Sleep unless the server closes first; True when the sleep ran its course."""
        return seconds <= 0 or not self._closing.wait(seconds)

    def _completion(self, body: dict) -> dict:
        requested_n = body.get("n") or 1
        n = requested_n if self.honour_n else 1
        contents = [self.responder(body, index) for index in range(n)]
        prompt_tokens = sum(len(m["content"].split()) for m in body["messages"] if isinstance(m.get("content"), str))
        completion_tokens = sum(len(content.split()) for content in contents)
        speaks = "audio" in (body.get("modalities") or [])
        return {
            "id": f"chatcmpl-{next(self._completion_ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {"index": index, "message": _spoken_message(content, index) if speaks else {"role": "assistant", "content": content},
                 "finish_reason": "stop", "logprobs": None}
                for index, content in enumerate(contents)
            ],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # close() never joins handler threads
    request_queue_size = 512  # the default backlog of 5 refuses connections from 64 concurrent clients
    fake: FakeOpenAI

    def server_bind(self):
        # HTTPServer.server_bind calls socket.getfqdn, a DNS lookup that can stall start-up for seconds
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request, client_address):
        # dropped connections are routine here (client timeouts, close()); anything else is a bug worth a traceback
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's connection pool expects
    server: _Server

    def log_message(self, format, *args):  # one stderr line per request would drown test output
        pass

    def setup(self):
        super().setup()
        with self.server.fake._lock:
            self.server.fake._connections.add(self.connection)

    def finish(self):
        with self.server.fake._lock:
            self.server.fake._connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    # -- responses -------------------------------------------------------------------------------

    def _send(self, status: int, payload: bytes, content_type: str = "application/json", headers: Mapping[str, str] = {}) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            # headers and body in one send: two small writes on a keep-alive connection meet Nagle's
            # algorithm and the client's delayed ACK, which adds 40 ms to every reused-connection request
            self._headers_buffer.extend([b"\r\n", payload])
            self.flush_headers()
        except OSError:  # the client gave up (e.g. its timeout fired); nothing left to tell it
            self.close_connection = True

    def _send_json(self, status: int, document: object, headers: Mapping[str, str] = {}) -> None:
        self._send(status, json.dumps(document).encode(), headers=headers)

    def _send_error(self, status: int, message: str, error_type: str, code: str | None, headers: Mapping[str, str] = {}) -> None:
        self._send_json(status, {"error": {"message": message, "type": error_type, "param": None, "code": code}}, headers)

    def _read_body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    # -- routes ----------------------------------------------------------------------------------

    def do_GET(self):
        fake = self.server.fake
        path = self.path.split("?", 1)[0].rstrip("/")
        models = {model_id: {"id": model_id, "object": "model", "created": 0, "owned_by": "fake-openai"} for model_id in fake.model_ids}
        if path == "/v1/models":
            return self._send_json(200, {"object": "list", "data": list(models.values())})
        if path.startswith("/v1/models/") and path[len("/v1/models/"):] in models:
            return self._send_json(200, models[path[len("/v1/models/"):]])
        self._send_error(404, f"Unknown path {self.path}", "invalid_request_error", "not_found")

    def do_POST(self):
        raw = self._read_body()
        if self.path.split("?", 1)[0].rstrip("/") != "/v1/chat/completions":
            return self._send_error(404, f"Unknown path {self.path}", "invalid_request_error", "not_found")
        fake = self.server.fake
        with fake._lock:
            fake._in_flight += 1
            fake._max_in_flight = max(fake._max_in_flight, fake._in_flight)
        try:
            self._chat_completion(fake, raw)
        finally:
            with fake._lock:
                fake._in_flight -= 1

    def _chat_completion(self, fake: FakeOpenAI, raw: bytes) -> None:
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        identity = canonical_json(body) if isinstance(body, dict) else raw.decode("utf-8", "replace")
        record = {
            "body": body if isinstance(body, dict) else {"raw": raw.decode("utf-8", "replace")},
            "headers": {name.lower(): value for name, value in self.headers.items()},
            "status": 0,
            "attempt": 0,
            "time": time.monotonic(),
            "fault": None,
        }
        with fake._lock:
            fake._calls += 1
            fake._attempts[identity] += 1
            record["attempt"] = fake._attempts[identity]
            fake._records.append(record)

        def reply_error(status: int, message: str, error_type: str, code: str | None, headers: Mapping[str, str] = {}) -> None:
            record["status"] = status  # set before sending: a client that got the answer sees the record final
            self._send_error(status, message, error_type, code, headers)

        problem = _invalid_request(body)
        if problem:
            return reply_error(400, problem, "invalid_request_error", None)
        try:
            fault = fake.faults(body, record["attempt"]) if fake.faults else None
        except Exception as exc:
            traceback.print_exc()
            return reply_error(500, f"faults callable raised {exc!r}", "server_error", "fake_openai_bug")
        if fault is not None:
            with fake._lock:
                fake._faulted += 1
                record["fault"] = fault.kind
        if not fake._sleep(fake.latency):
            self.close_connection = True
            return
        if fault is not None:
            return self._misbehave(fault, fake, body, record, reply_error)
        try:
            completion = fake._completion(body)
        except Exception as exc:  # a responder bug: say so loudly rather than answer something plausible
            traceback.print_exc()
            return reply_error(500, f"responder raised {exc!r}", "server_error", "fake_openai_bug")
        with fake._lock:
            fake._answered += 1
            record["status"] = 200
        self._send_json(200, completion)

    def _misbehave(self, fault: Fault, fake: FakeOpenAI, body: dict, record: dict, reply_error) -> None:
        if fault.kind in _ERROR_SHAPES:
            status, error_type, code, message = _ERROR_SHAPES[fault.kind]
            message = message.replace("{authorization}", self.headers.get("Authorization", ""))
            headers = {}
            if fault.retry_after is not None and fault.kind in ("429", "503"):
                headers["Retry-After"] = _decimal(fault.retry_after)
            return reply_error(status, message, error_type, code, headers)
        if fault.kind == "disconnect":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if fault.kind == "bad_json":
            record["status"] = 200
            return self._send(200, b'{"id": "chatcmpl-broken", "choices": [ <html>this is not JSON')
        # "timeout": answer normally, too late for a client with a shorter timeout
        if not fake._sleep(fault.hang):
            self.close_connection = True
            return
        completion = fake._completion(body)
        record["status"] = 200
        self._send_json(200, completion)


SPOKEN_RATE = 24000  # gpt-4o audio replies: 24 kHz, 16-bit mono WAV


def spoken_wav(text: str) -> bytes:
    """A stand-in for speech: 0.1 s of tone per word (a silent 0.1 s for no words), as a WAV file."""
    import io

    import numpy as np
    import soundfile as sf

    seconds = 0.1 * max(len(text.split()), 1)
    t = np.arange(int(seconds * SPOKEN_RATE)) / SPOKEN_RATE
    tone = (0.3 * np.sin(2 * np.pi * 220 * t) if text.split() else 0 * t).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, tone, SPOKEN_RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _spoken_message(content: str, index: int) -> dict:
    """An audio-modality reply as OpenAI sends it: no content; base64 audio and its transcript."""
    import base64

    data = base64.b64encode(spoken_wav(content)).decode("ascii")
    audio = {"id": f"audio_{index}", "data": data, "expires_at": int(time.time()) + 3600, "transcript": content}
    return {"role": "assistant", "content": None, "audio": audio}


def _invalid_request(body: object) -> str | None:
    """The 400 message OpenAI would send for this body, or None when it is servable."""
    if not isinstance(body, dict):
        return "We could not parse the JSON body of your request."
    if body.get("stream"):
        return "FakeOpenAI does not support stream=true."
    if not isinstance(body.get("model"), str):
        return "you must provide a model parameter"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        return "'messages' must be a non-empty list of message objects"
    if "audio" in (body.get("modalities") or []):
        audio = body.get("audio")
        if not isinstance(audio, dict) or not audio.get("voice") or not audio.get("format"):
            return "Missing required parameter: 'audio' (voice and format) when modalities include audio."
    n = body.get("n")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        return f"{n!r} is not a valid value for 'n': it must be an integer >= 1"
    return None


def _decimal(seconds: float) -> str:
    """0.2 -> "0.2", 2 -> "2": the SDK parses Retry-After with float()."""
    return f"{float(seconds):.6f}".rstrip("0").rstrip(".") or "0"


# -- fault factories ---------------------------------------------------------------------------


def _body_hash(body: dict, seed: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}\0{canonical_json(body)}".encode()).digest()[:16], "big")


def fault_fraction(
    fraction: float,
    kinds: Iterable[str] = ("429", "500", "timeout"),
    seed: int = 0,
    retry_after: float | None = 0.05,
    hang: float = 5.0,
) -> Faults:
    """Fault the first attempt of about ``fraction`` of the distinct request bodies; retries always succeed.

    Which bodies fault, and with which kind, depends only on the body and ``seed`` (a hash), not on
    arrival order, so concurrent runs fault the same requests every time.
    """
    kinds = tuple(kinds)
    for kind in kinds:
        Fault(kind)  # fail at construction on a typo, not inside a handler thread
    if not kinds:
        raise ValueError("fault_fraction needs at least one fault kind")

    def faults(body: dict, attempt: int) -> Fault | None:
        if attempt != 1:
            return None
        digest = _body_hash(body, seed)
        if (digest >> 64) / 2.0**64 >= fraction:  # high bits decide whether, low bits which kind
            return None
        return Fault(kinds[(digest & 0xFFFFFFFF) % len(kinds)], retry_after=retry_after, hang=hang)

    return faults


def fault_always(kind: str, **fault_kwargs) -> Faults:
    """Fault every attempt of every request the same way."""
    fault = Fault(kind, **fault_kwargs)
    return lambda body, attempt: fault


# -- responders --------------------------------------------------------------------------------


def message_text(content: object) -> str:
    """The text of a message's content, whether a string or a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text")
    return ""


def last_user_text(body: dict) -> str:
    users = [m for m in body.get("messages", []) if isinstance(m, dict) and m.get("role") == "user"]
    return message_text(users[-1].get("content")) if users else ""


def scripted(mapping: Mapping[str, str | Sequence[str]], default: str | Sequence[str] | None = "OK") -> Responder:
    """A responder answering by the first key of ``mapping`` found in the last user message.

    A value may be a string (every choice) or a list (choice i gets ``value[i % len(value)]``).
    With ``default=None`` an unmatched prompt gets a 500 naming it, so a typo in a key shows up
    as an error instead of as a plausible answer.
    """
    items = list(mapping.items())

    def pick(value: str | Sequence[str], index: int) -> str:
        return value if isinstance(value, str) else value[index % len(value)]

    def respond(body: dict, index: int) -> str:
        text = last_user_text(body)
        for key, value in items:
            if key in text:
                return pick(value, index)
        if default is None:
            raise LookupError(f"no scripted answer for the user message {text[:200]!r}")
        return pick(default, index)

    return respond


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a fake OpenAI chat-completions API on 127.0.0.1 until killed.")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds slept before each answer")
    parser.add_argument("--reply", default="OK", help="content of every choice")
    parser.add_argument("--ignore-n", action="store_true", help="always answer one choice, as llama.cpp does")
    parser.add_argument("--fault-fraction", type=float, default=0.0, help="fault the first attempt of this fraction of bodies")
    parser.add_argument("--fault-kinds", default="429,500,timeout", help="comma-separated kinds for --fault-fraction")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model-id", action="append", help="ids listed by GET /v1/models (repeatable; default: judge)")
    args = parser.parse_args(argv)
    faults = fault_fraction(args.fault_fraction, args.fault_kinds.split(","), seed=args.seed) if args.fault_fraction > 0 else None
    with FakeOpenAI(responder=lambda body, index: args.reply, latency=args.latency, faults=faults,
                    honour_n=not args.ignore_n, model_ids=args.model_id or ("judge",), port=args.port) as server:
        print(server.base_url, flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
