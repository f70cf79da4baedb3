"""Endpoints are shared: one adaptive concurrency limit per endpoint per process.

Every judge, arena judge and API model calling the same endpoint takes its requests' slots from
the same :class:`AdaptiveLimiter`, so three judges on one local server share what it can take
instead of each sending its own 64 requests. An endpoint is a base URL and a model at a hosted
API (OpenAI's limits are per model), and a base URL alone at a self-hosted server (plain http, or
a loopback or private address: vLLM, llama.cpp and Ollama serve every model name from one
machine, so judges under different names still queue behind each other there).

The limit adapts to how the endpoint answers (an AIMD scheme with a latency signal):

* it starts at 4 in flight (``initial_concurrency``) and doubles each round (a round: as many
  completions as the limit) while latency holds, then grows by one per round, up to the cap
  (``max_concurrency``, 64);
* latency is measured per completion token where the reply says how many, else per request;
  when a round's median is more than twice the best seen, requests are queueing at the server:
  the limit shrinks by a quarter;
* a 429, a 5xx, a timeout or a dropped connection halves it, and a ``Retry-After`` pauses the
  whole endpoint for that long;
* it never goes below 1.

The state is plain Python under a thread lock, and waiters are futures of their own event loop,
so one limiter serves every loop of the process (each judging pass runs its own).
"""

from __future__ import annotations

import asyncio
import ipaddress
import statistics
import threading
import time
from collections import deque
from urllib.parse import urlsplit

QUEUEING_RATIO = 2.0  # a round's median latency over the best seen, past which requests queue
HEALTHY_RATIO = 1.5  # below it, the endpoint has room: grow
BEST_MEMORY = 500  # completions the best latency is taken over (a slow drift upward is forgotten)

OK, OVERLOAD, ERROR = "ok", "overload", "error"


class AdaptiveLimiter:
    def __init__(self, cap: int, initial: int) -> None:
        self.cap = max(1, int(cap))
        self.limit = float(max(1, min(int(initial), self.cap)))
        self.slow_start_until = float(self.cap)
        self.in_flight = 0
        self.peak_limit = self.limit
        self._lock = threading.Lock()
        self._waiters: deque = deque()
        self._paused_until = 0.0
        self._recent: deque = deque(maxlen=BEST_MEMORY)
        self._round: list[float] = []
        self._full = False  # the limit was reached during this round (growing only helps then)

    def set_cap(self, cap: int) -> None:
        with self._lock:
            self.cap = max(self.cap, int(cap))  # the most generous caller's cap

    async def acquire(self) -> float:
        """Wait for a slot; the start time to hand back to :meth:`release`."""
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                pause = self._paused_until - time.monotonic()
                if pause <= 0 and self.in_flight < int(self.limit):
                    self.in_flight += 1
                    self._full = self._full or self.in_flight >= int(self.limit)
                    return time.monotonic()
                future = None
                if pause <= 0:
                    future = loop.create_future()
                    self._waiters.append((loop, future))
            if future is None:
                await asyncio.sleep(pause)
            else:
                try:
                    await future
                except asyncio.CancelledError:
                    with self._lock:
                        self._wake()  # pass on a wake-up this waiter may have taken
                    raise

    def release(self, started: float, outcome: str, *, tokens: int | None = None, retry_after: float | None = None) -> None:
        """Hand a slot back, saying how the request went (:data:`OK`, :data:`OVERLOAD`, :data:`ERROR`)."""
        with self._lock:
            self.in_flight -= 1
            if outcome == OK:
                self._observe((time.monotonic() - started) / (tokens if tokens else 1))
            elif outcome == OVERLOAD:
                self._shrink(0.5)
                if retry_after:
                    self._paused_until = max(self._paused_until, time.monotonic() + retry_after)
            self._wake()

    # -- adaptation (under the lock) ------------------------------------------------------
    def _observe(self, latency: float) -> None:
        self._recent.append(latency)
        self._round.append(latency)
        if len(self._round) < max(int(self.limit), 1):
            return
        ratio = statistics.median(self._round) / max(min(self._recent), 1e-9)
        if ratio > QUEUEING_RATIO:
            self._shrink(0.75)
        elif ratio < HEALTHY_RATIO and self._full:
            grown = self.limit * 2 if self.limit < self.slow_start_until else self.limit + 1
            self.limit = min(float(self.cap), grown)
            self.peak_limit = max(self.peak_limit, self.limit)
        self._round, self._full = [], False

    def _shrink(self, factor: float) -> None:
        self.limit = max(1.0, self.limit * factor)
        self.slow_start_until = self.limit  # from here on, grow one at a time
        self._round, self._full = [], False

    def _wake(self) -> None:
        free = int(self.limit) - self.in_flight
        while self._waiters and free > 0:
            loop, future = self._waiters.popleft()
            if future.done():
                continue
            loop.call_soon_threadsafe(_wake_future, future)
            free -= 1


def _wake_future(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


_LIMITERS: dict[tuple[str, str], AdaptiveLimiter] = {}
_REGISTRY_LOCK = threading.Lock()


def self_hosted(endpoint: str) -> bool:
    """A server on this machine or network (plain http, loopback or private address), not a hosted API."""
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    if parts.scheme == "http" or host == "localhost" or host.endswith(".local"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_private or address.is_link_local


def limiter(endpoint: str, model: str, cap: int, initial: int) -> AdaptiveLimiter:
    """The process's limiter for ``model`` at ``endpoint``, shared by every caller (the first sets its start)."""
    with _REGISTRY_LOCK:
        key = (endpoint.rstrip("/"), "" if self_hosted(endpoint) else model)
        if key not in _LIMITERS:
            _LIMITERS[key] = AdaptiveLimiter(cap, initial)
        else:
            _LIMITERS[key].set_cap(cap)
        return _LIMITERS[key]
