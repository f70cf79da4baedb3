"""A real local HTTP server speaking the OpenAI chat-completions protocol, for testing judge clients.

It is a real ``ThreadingHTTPServer`` on 127.0.0.1 (not a patched client), so the whole client stack
(SDK, httpx connection pool, retries, timeouts, thread pools) is exercised::

    with FakeOpenAI(responder=scripted({"capital": "Paris"}), faults=fault_fraction(0.3)) as server:
        client = OpenAI(base_url=server.base_url, api_key="test")
        ...
        assert server.answered == 30 and server.max_in_flight >= 8

Endpoints: ``POST /v1/chat/completions`` (no streaming), ``GET /v1/models``, and the Batch API:
``POST /v1/files`` (multipart upload, purpose "batch"), ``GET /v1/files/{id}`` and
``/v1/files/{id}/content``, ``POST /v1/batches``, ``GET /v1/batches/{id}``, ``POST
/v1/batches/{id}/cancel`` (see :class:`FakeOpenAI` for how a batch progresses and fails). Faults
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
    request (slots: how many requests it works on at once, the rest wait their turn, as a llama.cpp
    server started with that many slots; None: no limit);
    request; faults(body, attempt) -> Fault | None, attempt being 1 the first time this exact body
    arrives; honour_n=False answers one choice whatever ``n`` asks (as llama.cpp does);
    model_ids: what ``GET /v1/models`` lists; strict_models=True answers 404 (model_not_found) to a chat
    for any other model, as OpenAI and vLLM do (else any model is served, as llama.cpp does);
    required_key: when set, every request without ``Authorization: Bearer <it>`` gets a 401.

    The Batch API: an uploaded JSONL file is validated when a batch is created (as OpenAI does:
    unique custom_ids, method POST, the batch's url, one model, valid chat bodies, at most
    ``batch_max_requests`` lines); an invalid one ends "failed" with per-line errors. A valid batch
    is "validating" on creation, "in_progress" for the first ``batch_pending_polls`` retrieves, then
    ends as ``batch_outcome`` says: "completed" (every line answered by the responder into the output
    file; a line that ``faults(body, attempt)`` faults gets that fault's HTTP status, and an error
    body, in the error file, as OpenAI reports a failed line), "failed" (no files), "expired" (every
    line in the error file with code ``batch_expired``) or "cancelled". Batch counters: ``uploads``,
    ``batches_created``, ``polls`` (retrieves), ``downloads`` (file contents) and ``batch_http``
    (every request to ``/v1/files`` and ``/v1/batches``, whatever its answer).

    A preflight probe (a 1-token chat whose only message is the user text "ok", as
    ``lm_eval_speech.calls.preflight`` sends) is answered "ok" without the responder or the faults,
    and counted in ``probes``, not in ``calls``.

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
        slots: int | None = None,
        faults: Faults | None = None,
        honour_n: bool = True,
        model_ids: Sequence[str] = ("judge",),
        port: int = 0,
        strict_models: bool = False,
        required_key: str | None = None,
        batch_pending_polls: int = 1,
        batch_outcome: str = "completed",
        batch_max_requests: int = 50_000,
    ):
        if batch_outcome not in BATCH_OUTCOMES:
            raise ValueError(f"unknown batch_outcome {batch_outcome!r}; expected one of {BATCH_OUTCOMES}")
        self.strict_models, self.required_key = strict_models, required_key
        self.batch_pending_polls, self.batch_outcome, self.batch_max_requests = batch_pending_polls, batch_outcome, batch_max_requests
        self._files: dict[str, dict] = {}
        self._batches: dict[str, dict] = {}
        self._batch_attempts: Counter[str] = Counter()
        self._file_ids = itertools.count(1)
        self._batch_ids = itertools.count(1)
        self.uploads = self.batches_created = self.polls = self.downloads = self.batch_http = 0
        self.probes = 0
        self.responder = responder or default_responder
        self.latency = latency
        self._slots = threading.Semaphore(slots) if slots else None
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

    @property
    def batches(self) -> dict[str, dict]:
        """Every batch created: id -> {"status", "lines" (the parsed input lines), "polls"}."""
        with self._lock:
            return {bid: {"status": b["status"], "lines": list(b["lines"]), "polls": b["polls"]} for bid, b in self._batches.items()}

    # -- the Batch API (called from handler threads) ------------------------------------------------

    def _add_file(self, data: bytes, filename: str, purpose: str) -> dict:
        """Store a file (the caller holds the lock) and return its object."""
        file_id = f"file-{next(self._file_ids)}"
        info = {"id": file_id, "object": "file", "bytes": len(data), "created_at": int(time.time()), "filename": filename,
                "purpose": purpose, "status": "processed", "expires_at": None, "status_details": None}
        self._files[file_id] = {"info": info, "data": data}
        return info

    def _create_batch(self, request: dict) -> tuple[int, dict]:
        if request.get("endpoint") != "/v1/chat/completions":
            return 400, _error_document(f"FakeOpenAI batches serve /v1/chat/completions only, not {request.get('endpoint')!r}")
        if request.get("completion_window") != "24h":
            return 400, _error_document(f"completion_window must be '24h', not {request.get('completion_window')!r}")
        with self._lock:
            stored = self._files.get(request.get("input_file_id"))
            if stored is None or stored["info"]["purpose"] != "batch":
                return 400, _error_document(f"no file with purpose 'batch' has the id {request.get('input_file_id')!r}")
            lines, errors = _batch_lines(stored["data"], request["endpoint"], self.batch_max_requests)
            batch_id = f"batch_{next(self._batch_ids)}"
            now = int(time.time())
            self._batches[batch_id] = {
                "status": "validating", "lines": lines, "errors": errors, "polls": 0, "output_file_id": None, "error_file_id": None,
                "counts": {"total": len(lines), "completed": 0, "failed": 0},
                "object": {"id": batch_id, "object": "batch", "endpoint": request["endpoint"], "input_file_id": request["input_file_id"],
                           "completion_window": "24h", "created_at": now, "expires_at": now + 86400,
                           "metadata": request.get("metadata")},
            }
            self.batches_created += 1
            return 200, self._batch_object(batch_id)

    def _retrieve_batch(self, batch_id: str) -> dict | None:
        with self._lock:
            batch = self._batches.get(batch_id)
            if batch is None:
                return None
            self.polls += 1
            batch["polls"] += 1
            if batch["status"] in ("validating", "in_progress"):
                if batch["errors"]:
                    batch["status"] = "failed"
                elif batch["polls"] <= self.batch_pending_polls:
                    batch["status"] = "in_progress"
                else:
                    self._finish_batch(batch)
            return self._batch_object(batch_id)

    def _cancel_batch(self, batch_id: str) -> dict | None:
        with self._lock:
            batch = self._batches.get(batch_id)
            if batch is None:
                return None
            if batch["status"] in ("validating", "in_progress"):
                batch["status"] = "cancelled"
            return self._batch_object(batch_id)

    def _finish_batch(self, batch: dict) -> None:
        """End a batch as ``batch_outcome`` says, writing its output and error files (the caller holds the lock)."""
        outcome = self.batch_outcome
        batch["status"] = outcome
        if outcome == "failed":
            batch["errors"] = [{"code": "server_error", "message": "The batch failed (injected by FakeOpenAI)",
                                "param": None, "line": None}]
            return
        if outcome == "cancelled":
            return
        outputs, failures = [], []
        for number, line in enumerate(batch["lines"], 1):
            record = {"id": f"batch_req_{batch['object']['id']}_{number}", "custom_id": line["custom_id"]}
            if outcome == "expired":
                failures.append({**record, "response": None, "error": {
                    "code": "batch_expired", "message": "This request could not be executed before the completion window expired."}})
                continue
            status, body = self._batch_answer(line["body"])
            response = {"status_code": status, "request_id": f"req_{batch['object']['id']}_{number}", "body": body}
            (outputs if status == 200 else failures).append({**record, "response": response, "error": None})
        batch["counts"].update(completed=len(outputs), failed=len(failures))
        if outputs:
            batch["output_file_id"] = self._add_file(_jsonl(outputs), "batch_output.jsonl", "batch_output")["id"]
        if failures:
            batch["error_file_id"] = self._add_file(_jsonl(failures), "batch_errors.jsonl", "batch_output")["id"]

    def _batch_answer(self, body: dict) -> tuple[int, dict]:
        """One line's HTTP status and body, as a chat request would get them (the caller holds the lock)."""
        identity = canonical_json(body)
        self._batch_attempts[identity] += 1
        try:
            fault = self.faults(body, self._batch_attempts[identity]) if self.faults else None
            if fault is not None:
                # a fault with no status of its own (a hang, a dropped connection) reads as a 500 in a batch
                status, error_type, code, message = _ERROR_SHAPES.get(fault.kind, _ERROR_SHAPES["500"])
                message = message.replace("{authorization}", "")
            else:
                return 200, self._completion(body)
        except Exception as exc:  # a responder bug: a 500 naming it, as online
            traceback.print_exc()
            status, error_type, code, message = 500, "server_error", "fake_openai_bug", f"responder raised {exc!r}"
        return status, {"error": {"message": message, "type": error_type, "param": None, "code": code}}

    def _batch_object(self, batch_id: str) -> dict:
        batch = self._batches[batch_id]
        errors = {"object": "list", "data": batch["errors"]} if batch["status"] == "failed" else None
        return {**batch["object"], "status": batch["status"], "errors": errors, "output_file_id": batch["output_file_id"],
                "error_file_id": batch["error_file_id"], "request_counts": dict(batch["counts"])}

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
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()  # the CRLF after each chunk (and after the last, empty one)
                if size == 0:
                    return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    # -- routes ----------------------------------------------------------------------------------

    def _refused_key(self) -> bool:
        fake = self.server.fake
        if fake.required_key is None or self.headers.get("Authorization") == f"Bearer {fake.required_key}":
            return False
        self._send_error(401, "Incorrect API key provided (FakeOpenAI)", "invalid_request_error", "invalid_api_key")
        return True

    def do_GET(self):
        fake = self.server.fake
        path = self.path.split("?", 1)[0].rstrip("/")
        self._count_batch_http(path)
        if self._refused_key():
            return
        if path.startswith(("/v1/files/", "/v1/batches/")):
            return self._batch_get(fake, path)
        models = {model_id: {"id": model_id, "object": "model", "created": 0, "owned_by": "fake-openai"} for model_id in fake.model_ids}
        if path == "/v1/models":
            return self._send_json(200, {"object": "list", "data": list(models.values())})
        if path.startswith("/v1/models/") and path[len("/v1/models/"):] in models:
            return self._send_json(200, models[path[len("/v1/models/"):]])
        self._send_error(404, f"Unknown path {self.path}", "invalid_request_error", "not_found")

    def do_POST(self):
        raw = self._read_body()
        path = self.path.split("?", 1)[0].rstrip("/")
        self._count_batch_http(path)
        if self._refused_key():
            return
        if path == "/v1/files" or path.startswith("/v1/batches"):
            return self._batch_post(self.server.fake, path, raw)
        if path != "/v1/chat/completions":
            return self._send_error(404, f"Unknown path {self.path}", "invalid_request_error", "not_found")
        fake = self.server.fake
        body = _json_or_none(raw)
        if isinstance(body, dict) and fake.strict_models and body.get("model") not in fake.model_ids:
            return self._send_error(404, f"The model `{body.get('model')}` does not exist", "invalid_request_error", "model_not_found")
        if _is_probe(body):
            with fake._lock:
                fake.probes += 1
            return self._send_json(200, {"id": "probe", "object": "chat.completion", "created": 0, "model": body["model"],
                                         "choices": [{"index": 0, "finish_reason": "length",
                                                      "message": {"role": "assistant", "content": "ok"}}],
                                         "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
        with fake._lock:
            fake._in_flight += 1
            fake._max_in_flight = max(fake._max_in_flight, fake._in_flight)
        try:
            self._chat_completion(fake, raw)
        finally:
            with fake._lock:
                fake._in_flight -= 1

    def _count_batch_http(self, path: str) -> None:
        if path == "/v1/files" or path.startswith(("/v1/files/", "/v1/batches")):
            with self.server.fake._lock:
                self.server.fake.batch_http += 1

    def _batch_get(self, fake: FakeOpenAI, path: str) -> None:
        parts = path.split("/")  # "", "v1", "files" | "batches", id[, "content"]
        if parts[2] == "batches" and len(parts) == 4:
            batch = fake._retrieve_batch(parts[3])
            if batch is not None:
                return self._send_json(200, batch)
        elif parts[2] == "files" and len(parts) in (4, 5) and parts[-1] in ("content", parts[3]):
            with fake._lock:
                stored = fake._files.get(parts[3])
                if stored is not None and len(parts) == 5:
                    fake.downloads += 1
            if stored is not None:
                if len(parts) == 5:
                    return self._send(200, stored["data"], content_type="application/octet-stream")
                return self._send_json(200, stored["info"])
        self._send_error(404, f"No such object: {path}", "invalid_request_error", "not_found")

    def _batch_post(self, fake: FakeOpenAI, path: str, raw: bytes) -> None:
        if path == "/v1/files":
            fields = _multipart(self.headers.get("Content-Type", ""), raw)
            purpose = (fields.get("purpose") or (None, b""))[1].decode("utf-8", "replace")
            if purpose != "batch" or "file" not in fields:
                return self._send_error(400, f"FakeOpenAI takes uploads with purpose 'batch' and a file, not {purpose!r}",
                                        "invalid_request_error", None)
            with fake._lock:
                fake.uploads += 1
                info = fake._add_file(fields["file"][1], fields["file"][0] or "upload.jsonl", purpose)
            return self._send_json(200, info)
        if path == "/v1/batches":
            request = _json_or_none(raw)
            if not isinstance(request, dict):
                return self._send_error(400, "We could not parse the JSON body of your request.", "invalid_request_error", None)
            status, document = fake._create_batch(request)
            return self._send_json(status, document)
        parts = path.split("/")
        if len(parts) == 5 and parts[4] == "cancel":
            batch = fake._cancel_batch(parts[3])
            if batch is not None:
                return self._send_json(200, batch)
        self._send_error(404, f"No such object: {path}", "invalid_request_error", "not_found")

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
        if fake._slots is not None:
            fake._slots.acquire()  # a busy server: wait for a free slot before the work starts
        try:
            served = fake._sleep(fake.latency)
        finally:
            if fake._slots is not None:
                fake._slots.release()
        if not served:
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


BATCH_OUTCOMES = ("completed", "failed", "expired", "cancelled")


def _error_document(message: str) -> dict:
    return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}


def _jsonl(records: list[dict]) -> bytes:
    return "".join(json.dumps(record) + "\n" for record in records).encode()


def _multipart(content_type: str, raw: bytes) -> dict[str, tuple[str | None, bytes]]:
    """A multipart/form-data body as name -> (filename, bytes)."""
    from email.parser import BytesParser
    from email.policy import HTTP

    if not content_type.startswith("multipart/form-data"):
        return {}
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
    if not message.is_multipart():
        return {}
    return {part.get_param("name", header="content-disposition"): (part.get_filename(), part.get_payload(decode=True) or b"")
            for part in message.iter_parts()}


def _batch_lines(data: bytes, endpoint: str, max_requests: int) -> tuple[list[dict], list[dict]]:
    """A batch input file's lines, and the errors OpenAI's validation would report for it."""
    lines, errors, seen, models = [], [], set(), set()

    def error(number: int | None, message: str) -> None:
        errors.append({"code": "invalid_request", "message": message, "param": None, "line": number})

    for number, text in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        if not text.strip():
            continue
        line = _json_or_none(text.encode())
        if not isinstance(line, dict) or not isinstance(line.get("custom_id"), str):
            error(number, "each line must be a JSON object with a string custom_id")
            continue
        if line["custom_id"] in seen:
            error(number, f"duplicate custom_id {line['custom_id']!r}")
        seen.add(line["custom_id"])
        if line.get("method") != "POST" or line.get("url") != endpoint:
            error(number, f"each line must POST to the batch's endpoint {endpoint}")
        problem = _invalid_request(line.get("body"))
        if problem:
            error(number, problem)
        else:
            models.add(line["body"]["model"])
        lines.append(line)
    if not lines:
        error(None, "the input file has no requests")
    if len(lines) > max_requests:
        error(None, f"the input file has {len(lines)} requests; a batch takes at most {max_requests}")
    if len(models) > 1:
        error(None, f"a batch must use one model, not {sorted(models)}")
    return lines, errors


def _json_or_none(raw: bytes):
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _is_probe(body: object) -> bool:
    return isinstance(body, dict) and body.get("max_tokens") == 1 and body.get("messages") == [{"role": "user", "content": "ok"}]


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
    parser.add_argument("--slots", type=int, default=None, help="requests worked on at once (default: no limit)")
    args = parser.parse_args(argv)
    faults = fault_fraction(args.fault_fraction, args.fault_kinds.split(","), seed=args.seed) if args.fault_fraction > 0 else None
    with FakeOpenAI(responder=lambda body, index: args.reply, latency=args.latency, faults=faults, slots=args.slots,
                    honour_n=not args.ignore_n, model_ids=args.model_id or ("judge",), port=args.port) as server:
        print(server.base_url, flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
