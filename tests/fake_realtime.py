"""A real local WebSocket server speaking the OpenAI Realtime event protocol, for testing realtime clients.

It is a ``websockets`` asyncio server on 127.0.0.1 in a thread of its own (not a patched client),
so the whole client stack (the openai SDK's realtime connection, the websockets library, the
sockets) is exercised::

    with FakeRealtime(responder=lambda turn: "Hello there") as server:
        ... connect to server.base_url ("ws://127.0.0.1:PORT/v1"; the SDK appends /realtime) ...
        assert server.connections == 1 and server.sessions[0]["session"]["audio"]["output"]["voice"] == "alloy"

Each connection is one session: the server sends ``session.created``, answers ``session.update``
with ``session.updated`` (the merged session), keeps ``input_audio_buffer.append`` chunks until
``input_audio_buffer.commit`` makes them a user item, adds ``conversation.item.create`` items,
and answers ``response.create`` with ``response.created``, an output item, the answer's deltas
(audio: base64 PCM16 24 kHz, a tone of 0.1 s per word of the answer, with transcript deltas; or
text deltas when the session asks for text only) and ``response.done`` with its usage.
``names="beta"`` sends the beta event names (``response.audio.delta``, ``response.audio_transcript.delta``,
``response.text.delta``) instead of the GA ones (``response.output_audio.delta``, ...).

Faults, each on the first N connections (a large N: always): ``drop_first`` closes the TCP
connection mid-answer without a close frame; ``error_first`` sends an ``error`` event mid-answer
and ends that response there; ``first_delay`` sleeps before the first delta; ``status`` ends
every response.done with that status (``failed``, ``cancelled``, ``incomplete``).

Records: ``connections`` (every WebSocket opened), ``max_open`` (the most open at once), ``sessions`` (one per connection: ``path``,
``headers``, ``events`` (the client event types in order), ``updates`` (each session.update's
session), ``session`` (merged), ``appends`` (byte sizes of the appended chunks), ``items`` (user
items: ``{"content": [{"type": "input_text", "text"} | {"type": "input_audio", "pcm": bytes}]}``)
and ``responses`` (each response.create's ``response`` field)).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import threading
from typing import Callable

import numpy as np

RATE = 24000  # the Realtime API's PCM16 rate, in and out
SECONDS_PER_WORD = 0.1
NAMES = {
    "ga": {"audio": "response.output_audio.delta", "transcript": "response.output_audio_transcript.delta",
           "text": "response.output_text.delta", "audio_done": "response.output_audio.done",
           "transcript_done": "response.output_audio_transcript.done", "text_done": "response.output_text.done",
           "item_added": "conversation.item.added"},
    "beta": {"audio": "response.audio.delta", "transcript": "response.audio_transcript.delta",
             "text": "response.text.delta", "audio_done": "response.audio.done",
             "transcript_done": "response.audio_transcript.done", "text_done": "response.text.done",
             "item_added": "conversation.item.created"},
}
STATUSES = ("completed", "failed", "cancelled", "incomplete")


def default_responder(turn: dict) -> str:
    """An answer that depends on the request: how much audio it heard and the text it was given."""
    heard = sum(len(p["pcm"]) // 2 for item in turn["items"] for p in item["content"] if p["type"] == "input_audio")
    words = " ".join(p["text"] for item in turn["items"] for p in item["content"] if p["type"] == "input_text")
    return f"I heard {heard / RATE:.2f} seconds {words}".strip()


def speech(text: str) -> bytes:
    """The spoken answer: PCM16 24 kHz mono, a 440 Hz tone of 0.1 s per word."""
    seconds = SECONDS_PER_WORD * max(len(text.split()), 1)
    t = np.arange(int(round(seconds * RATE))) / RATE
    return (0.3 * np.sin(2 * np.pi * 440.0 * t) * 32767).astype("<i2").tobytes()


class FakeRealtime:
    """An OpenAI-Realtime-protocol server on 127.0.0.1, serving from a daemon thread (see the module doc)."""

    def __init__(self, responder: Callable[[dict], str] | None = None, names: str = "ga", drop_first: int = 0,
                 error_first: int = 0, first_delay: float = 0.0, status: str = "completed", port: int = 0) -> None:
        if names not in NAMES:
            raise ValueError(f"names must be one of {', '.join(NAMES)}, not {names!r}")
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
        self.responder = responder or default_responder
        self.names, self.drop_first, self.error_first = names, drop_first, error_first
        self.first_delay, self.status = first_delay, status
        self.sessions: list[dict] = []
        self.max_open, self._open = 0, 0
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(port,), name="FakeRealtime", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        self.base_url = f"ws://127.0.0.1:{self.port}/v1"

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self.sessions)

    def reset(self) -> None:
        """Forget every session seen (faults count connections from here again)."""
        with self._lock:
            self.sessions, self.max_open = [], 0

    def __enter__(self) -> FakeRealtime:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=5)

    # -- the server --------------------------------------------------------------------------
    def _serve(self, port: int) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main(port))
        self._loop.close()

    async def _main(self, port: int) -> None:
        from websockets.asyncio.server import serve

        self._stop = asyncio.Event()
        async with serve(self._session, "127.0.0.1", port, max_size=None) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop.wait()

    async def _session(self, websocket) -> None:
        record = {"path": websocket.request.path, "headers": dict(websocket.request.headers), "events": [],
                  "updates": [], "session": _default_session(), "appends": [], "items": [], "responses": []}
        with self._lock:
            self.sessions.append(record)
            number = len(self.sessions)
            self._open += 1
            self.max_open = max(self.max_open, self._open)
        buffer = bytearray()
        try:
            await self._send(websocket, {"type": "session.created", "session": record["session"]})
            async for message in websocket:
                event = json.loads(message)
                kind = event.get("type")
                record["events"].append(kind)
                if kind == "session.update":
                    record["updates"].append(event["session"])
                    _merge(record["session"], event["session"])
                    await self._send(websocket, {"type": "session.updated", "session": record["session"]})
                elif kind == "input_audio_buffer.append":
                    chunk = base64.b64decode(event["audio"])
                    record["appends"].append(len(chunk))
                    buffer += chunk
                elif kind == "input_audio_buffer.commit":
                    item = {"id": f"item_{next(self._ids)}", "type": "message", "role": "user",
                            "content": [{"type": "input_audio", "pcm": bytes(buffer)}]}
                    buffer.clear()
                    record["items"].append(item)
                    await self._send(websocket, {"type": "input_audio_buffer.committed", "item_id": item["id"]})
                    await self._send(websocket, {"type": NAMES[self.names]["item_added"], "item": _public(item)})
                elif kind == "conversation.item.create":
                    item = _received(event["item"], f"item_{next(self._ids)}")
                    record["items"].append(item)
                    await self._send(websocket, {"type": NAMES[self.names]["item_added"], "item": _public(item)})
                elif kind == "response.create":
                    record["responses"].append(event.get("response") or {})
                    if not await self._respond(websocket, record, number):
                        return
                else:
                    await self._send(websocket, {"type": "error", "error": {
                        "type": "invalid_request_error", "code": "unknown_event", "message": f"unknown event {kind!r}"}})
        except Exception:  # a client gone mid-send: the session is over
            return
        finally:
            with self._lock:
                self._open -= 1

    async def _respond(self, websocket, record: dict, number: int) -> bool:
        """One answer; False when a fault ended the connection."""
        names = NAMES[self.names]
        response_id = f"resp_{next(self._ids)}"
        asked = record["responses"][-1]
        modalities = asked.get("output_modalities") or record["session"].get("output_modalities") or ["audio"]
        text = self.responder({"session": record["session"], "items": record["items"], "response": asked})
        words = text.split(" ")
        await self._send(websocket, {"type": "response.created", "response": {"id": response_id, "status": "in_progress"}})
        await self._send(websocket, {"type": "response.output_item.added", "response_id": response_id, "output_index": 0,
                                     "item": {"id": f"item_{next(self._ids)}", "type": "message", "role": "assistant"}})
        if self.first_delay:
            await asyncio.sleep(self.first_delay)
        audio = speech(text) if "audio" in modalities else b""
        step = len(audio) // max(len(words), 1) // 2 * 2
        for index, word in enumerate(words):
            piece = word if index == 0 else " " + word
            if "audio" in modalities:
                end = len(audio) if index == len(words) - 1 else (index + 1) * step
                chunk = audio[index * step : end]
                await self._send(websocket, {"type": names["audio"], "response_id": response_id, "delta": base64.b64encode(chunk).decode()})
                await self._send(websocket, {"type": names["transcript"], "response_id": response_id, "delta": piece})
            else:
                await self._send(websocket, {"type": names["text"], "response_id": response_id, "delta": piece})
            if index == 0 and number <= self.drop_first:
                websocket.transport.abort()  # no close frame: a dropped connection
                return False
            if index == 0 and number <= self.error_first:
                await self._send(websocket, {"type": "error", "error": {
                    "type": "server_error", "code": "server_error", "message": "The server had an error (injected by FakeRealtime)"}})
                return True
        if "audio" in modalities:
            await self._send(websocket, {"type": names["audio_done"], "response_id": response_id})
            await self._send(websocket, {"type": names["transcript_done"], "response_id": response_id, "transcript": text})
        else:
            await self._send(websocket, {"type": names["text_done"], "response_id": response_id, "text": text})
        part = {"type": "output_audio", "transcript": text} if "audio" in modalities else {"type": "output_text", "text": text}
        heard = sum(len(p.get("pcm", b"")) for item in record["items"] for p in item["content"]) // 2
        usage = {"input_tokens": 10 + heard // 2400, "output_tokens": 5 * len(words), "total_tokens": 10 + heard // 2400 + 5 * len(words)}
        details = {"failed": {"type": "failed", "error": {"type": "server_error", "message": "injected failure"}},
                   "cancelled": {"type": "cancelled", "reason": "client_cancelled"},
                   "incomplete": {"type": "incomplete", "reason": "max_output_tokens"}}.get(self.status)
        await self._send(websocket, {"type": "response.done", "response": {
            "id": response_id, "object": "realtime.response", "status": self.status, "status_details": details,
            "output": [{"type": "message", "role": "assistant", "content": [part]}], "usage": usage}})
        return True

    async def _send(self, websocket, event: dict) -> None:
        await websocket.send(json.dumps({"event_id": f"event_{next(self._ids)}", **event}))


def _default_session() -> dict:
    return {"type": "realtime", "object": "realtime.session", "model": "gpt-realtime", "output_modalities": ["audio"],
            "instructions": "(the server's default instructions)",
            "audio": {"input": {"format": {"type": "audio/pcm", "rate": RATE}, "turn_detection": {"type": "server_vad"}},
                      "output": {"format": {"type": "audio/pcm", "rate": RATE}, "voice": "marin"}}}


def _merge(into: dict, update: dict) -> None:
    """session.update semantics: only the fields present change (nested objects field by field; null clears)."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _received(item: dict, item_id: str) -> dict:
    """A client's item as recorded: its input_audio parts decoded to PCM bytes (``pcm``)."""
    content = []
    for part in item.get("content", []):
        part = dict(part)
        if part.get("type") == "input_audio":
            part["pcm"] = base64.b64decode(part.pop("audio"))
        content.append(part)
    return {**item, "id": item_id, "content": content}


def _public(item: dict) -> dict:
    """An item as the server echoes it (audio bytes left out)."""
    return {**item, "content": [{k: v for k, v in p.items() if k != "pcm"} for p in item["content"]]}
