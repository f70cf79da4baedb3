"""Shared endpoints (lm_eval_speech/calls/endpoints.py): the adaptive limit itself, then Callers sharing real servers.

The limiter's unit tests drive it with chosen latencies (``release`` is handed a start time that
far in the past). The server tests use tests/fake_openai.py; :class:`OneSlotServer` generates one
request at a time, as llama.cpp with one slot does: the others wait in its queue.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import pytest

from lm_eval_speech.calls import Caller, CallRequest, config_from_settings
from lm_eval_speech.calls import endpoints
from lm_eval_speech.calls.endpoints import ERROR, OK, OVERLOAD, AdaptiveLimiter

from fake_openai import FakeOpenAI, canonical_json, last_user_text


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


# -- the limiter alone ----------------------------------------------------------------------------
async def take_all(limiter: AdaptiveLimiter) -> int:
    """Acquire every slot that is free now; how many."""
    taken = 0
    while True:
        try:
            await asyncio.wait_for(limiter.acquire(), 0.02)
        except TimeoutError:
            return taken
        taken += 1


async def full_round(limiter: AdaptiveLimiter, latency: float) -> int:
    """Fill the limit, then complete every request with ``latency``; the limit before the round."""
    taken = await take_all(limiter)
    assert taken == int(limiter.limit)
    for _ in range(taken):
        limiter.release(time.monotonic() - latency, OK)
    return taken


def test_the_limit_grows_while_latency_holds_and_never_passes_the_cap():
    async def rounds():
        limiter = AdaptiveLimiter(cap=20, initial=2)
        return [await full_round(limiter, 0.1) for _ in range(7)]

    # slow start doubles from 2, up to the cap
    assert asyncio.run(rounds()) == [2, 4, 8, 16, 20, 20, 20]


def test_a_limit_never_reached_does_not_grow():
    async def light_load():
        limiter = AdaptiveLimiter(cap=20, initial=2)
        for _ in range(10):  # one request at a time: rounds complete, the limit is never needed
            limiter.release(await limiter.acquire() - 0.1, OK)
        return limiter.limit

    assert asyncio.run(light_load()) == 2


def test_queueing_latency_shrinks_the_limit_then_it_grows_one_at_a_time():
    async def rounds():
        limiter = AdaptiveLimiter(cap=64, initial=2)
        for _ in range(4):
            await full_round(limiter, 0.1)  # 2, 4, 8, 16 -> 32
        await full_round(limiter, 0.35)  # 3.5 times the best: requests queue at the server
        after_queueing = limiter.limit
        return after_queueing, [await full_round(limiter, 0.1) for _ in range(3)]

    after_queueing, sizes = asyncio.run(rounds())
    assert after_queueing == 24  # a quarter less
    assert sizes == [24, 25, 26]  # no second slow start


def test_overload_halves_the_limit_down_to_one_and_errors_do_not():
    async def overloads():
        limiter = AdaptiveLimiter(cap=64, initial=2)
        for _ in range(4):
            await full_round(limiter, 0.1)
        limits = [limiter.limit]
        for _ in range(8):
            limiter.release(await limiter.acquire(), OVERLOAD)  # a 429, a 5xx, a timeout
            limits.append(limiter.limit)
        limiter.release(await limiter.acquire(), ERROR)  # a bad request says nothing about load
        limits.append(limiter.limit)
        return limits, await take_all(limiter)

    limits, free = asyncio.run(overloads())
    assert limits == [32, 16, 8, 4, 2, 1, 1, 1, 1, 1]
    assert free == 1  # never below one


def test_retry_after_pauses_the_whole_endpoint():
    async def paused():
        limiter = AdaptiveLimiter(cap=8, initial=2)
        limiter.release(await limiter.acquire(), OVERLOAD, retry_after=0.4)
        started = time.monotonic()
        await limiter.acquire()  # a free slot, yet it waits for the server's word
        return time.monotonic() - started

    assert 0.38 <= asyncio.run(paused()) < 1.0


def test_a_release_from_another_thread_wakes_a_waiter():
    limiter = AdaptiveLimiter(cap=2, initial=2)

    async def wait_for_slot():
        assert await take_all(limiter) == 2
        waiter = asyncio.ensure_future(limiter.acquire())
        await asyncio.sleep(0.1)
        assert not waiter.done()  # both slots are taken
        threading.Thread(target=limiter.release, args=(time.monotonic(), OK)).start()  # another event loop's caller
        await asyncio.wait_for(waiter, 2)
        return limiter.in_flight

    assert asyncio.run(wait_for_slot()) == 2


def test_the_limit_starts_where_asked_within_the_cap():
    assert [AdaptiveLimiter(cap=8, initial=initial).limit for initial in (0, 1, 4, 100)] == [1, 1, 4, 8]


def test_one_limiter_per_hosted_model_and_one_per_self_hosted_server():
    hosted = f"https://api.example.com/{uuid.uuid4().hex}/v1"  # the registry lives as long as the process
    first = endpoints.limiter(hosted, "model-x", 4, 3)
    assert endpoints.limiter(hosted + "/", "model-x", 16, 1) is first
    assert (first.cap, first.limit) == (16, 3)  # the most generous caller's cap; the first caller's start
    assert endpoints.limiter(hosted, "model-y", 4, 3) is not first  # a hosted API limits each model
    local = f"http://127.0.0.1:9/{uuid.uuid4().hex}/v1"
    assert endpoints.limiter(local, "model-x", 4, 3) is endpoints.limiter(local, "model-y", 4, 3)  # one machine serves both
    assert endpoints.limiter(local, "model-x", 4, 3) is not endpoints.limiter(local + "/other", "model-x", 4, 3)


@pytest.mark.parametrize("url, expected", [
    ("http://gpu-box:8000/v1", True), ("https://localhost:8000/v1", True), ("https://10.0.0.5/v1", True),
    ("https://[::1]:8000/v1", True), ("https://judge.local/v1", True),
    ("https://api.openai.com/v1", False), ("https://openrouter.ai/api/v1", False), ("https://8.8.8.8/v1", False),
])
def test_self_hosted_servers_are_told_from_hosted_apis(url, expected):
    assert endpoints.self_hosted(url) is expected


# -- Callers on real servers ------------------------------------------------------------------------
class OneSlotServer(FakeOpenAI):
    """Generates one request at a time (``service`` seconds each); the others queue, as in llama.cpp with one slot."""

    def __init__(self, service: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.service = service
        self._slot = threading.Lock()

    def _completion(self, body: dict) -> dict:
        with self._slot:
            time.sleep(self.service)
            return super()._completion(body)


def ask(i: int, topic: str = "answer") -> CallRequest:
    return CallRequest([{"role": "user", "content": f"Is {topic} {i} correct?"}], label=f"{topic} {i}")


def reply(body: dict, index: int) -> str:
    return f"{body['model']}: {last_user_text(body)}"


def test_three_judges_on_a_one_slot_server_finish_without_a_timeout_or_a_repeat():
    items = 20
    with OneSlotServer(service=0.02, responder=reply) as server:
        callers = [Caller(config_from_settings({"model": f"judge-{name}", "base_url": server.base_url})) for name in "abc"]

        async def all_judges():  # as TaskJudging.run_each: one event loop, every judge at once
            return await asyncio.gather(*(c.arun([ask(i, c.config.model) for i in range(items)]) for c in callers))

        started = time.monotonic()
        outputs = asyncio.run(all_judges())
        elapsed = time.monotonic() - started
        distinct = len({canonical_json(r["body"]) for r in server.requests})
        assert server.calls == distinct == 3 * items == server.answered
        shared = endpoints.limiter(server.base_url, "any name", 1, 1)  # a self-hosted server: one limit for every model
        assert server.max_in_flight <= shared.peak_limit, (server.max_in_flight, shared.peak_limit)
    assert callers[0].config.timeout == 600  # the default: a queued request is not given up on
    for caller, rows in zip(callers, outputs):
        assert [[o.text for o in row] for row in rows] == [[f"{caller.config.model}: Is {caller.config.model} {i} correct?"]
                                                           for i in range(items)]
        assert (caller.stats.calls, caller.stats.http_requests, caller.stats.retries) == (items, items, 0)
    assert elapsed < 10, elapsed  # 1.2 s of service, back to back: nothing stalled


def test_callers_of_one_endpoint_and_model_share_one_limit():
    items, cap = 30, 3
    with FakeOpenAI(responder=reply, latency=0.05) as server:
        config = config_from_settings({"model": "judge", "base_url": server.base_url, "max_concurrency": cap})
        results = {}

        def run(topic: str) -> None:  # each in its own thread and event loop, as separate judging passes
            results[topic] = Caller(config).run([ask(i, topic) for i in range(items)])

        threads = [threading.Thread(target=run, args=(topic,)) for topic in ("apples", "pears")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        shared = endpoints.limiter(server.base_url, "judge", cap, 1)
        assert server.calls == 2 * items and all(o.ok for rows in results.values() for row in rows for o in row)
        # alone, each would keep three in flight: together they still keep three
        assert server.max_in_flight == shared.peak_limit == cap
        assert shared.in_flight == 0


def test_a_cancelled_run_gives_its_slots_back():
    from fake_openai import fault_always

    with FakeOpenAI(responder=reply, faults=fault_always("timeout", hang=30)) as server:
        config = config_from_settings({"model": "judge", "base_url": server.base_url, "initial_concurrency": 2})

        async def interrupted():  # as a notebook's interrupt: the requests in flight are cancelled
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(Caller(config).arun([ask(i) for i in range(4)]), 1.0)

        asyncio.run(interrupted())
        shared = endpoints.limiter(server.base_url, "judge", 1, 1)
        assert server.calls == 2 and shared.in_flight == 0  # the process's next run is not left without slots
