"""What a Caller counts (lm_eval_speech/calls/accounting.py) and how failures are told apart (calls/openai_chat.py).

Against tests/fake_openai.py, a real HTTP server: every attempt the client counts must be one the
server saw, a faulty run must end with exactly the clean run's outputs, and each failure gets
its kind (a refused connection is not a timeout; a 400 is not retried).
"""

from __future__ import annotations

import socket
import time
from collections import Counter

import pytest

from lm_eval_speech import paths
from lm_eval_speech.calls import Caller, CallRequest, CallStats, config_from_settings
from lm_eval_speech.calls.accounting import FAILURE_KINDS

from fake_openai import FakeOpenAI, canonical_json, fault_always, fault_fraction, last_user_text


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", paths.CACHE_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


def ask(i: int) -> CallRequest:
    return CallRequest([{"role": "user", "content": f"Is answer {i} correct?"}], label=f"item {i}")


def echo(body: dict, index: int) -> str:
    return f"{last_user_text(body)} | choice {index}"


def caller_for(base_url: str, **settings) -> Caller:
    return Caller(config_from_settings({"model": "judge", "base_url": base_url, **settings}))


def texts(outputs) -> list[list[str | None]]:
    return [[o.text for o in row] for row in outputs]


def free_port() -> int:
    """A port nobody listens on (bound, then closed: connecting to it is refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- a faulty run: the clean run's outputs, every attempt counted --------------------------------
def test_a_faulty_run_gives_the_clean_outputs_and_counts_every_attempt():
    requests = [ask(i) for i in range(30)]
    with FakeOpenAI(responder=echo) as server:
        clean = caller_for(server.base_url, n=2).run(requests)
    faults = fault_fraction(0.3, kinds=("500", "429", "disconnect", "timeout"), retry_after=0.05, hang=3.0)
    with FakeOpenAI(responder=echo, faults=faults) as server:
        # 1 s: a timeout shorter than a loaded machine's slowest answer would count an attempt the server never saw
        caller = caller_for(server.base_url, n=2, timeout=1.0, max_retries=3)
        started = time.monotonic()
        faulty = caller.run(requests)
        elapsed = time.monotonic() - started
        kinds = Counter(r["fault"] for r in server.requests if r["fault"])
        assert set(kinds) == {"500", "429", "disconnect", "timeout"}, kinds
        answered = Counter(canonical_json(r["body"]) for r in server.requests if r["status"] == 200 and r["fault"] is None)
        assert server.answered == 30 and set(answered.values()) == {1}  # nothing generated twice
        stats = caller.stats
        assert stats.http_requests == server.calls == 30 + server.faulted
    assert texts(faulty) == texts(clean) == [[f"Is answer {i} correct? | choice {c}" for c in range(2)] for i in range(30)]
    assert stats.calls == 30 and stats.retries == stats.http_requests - stats.calls == sum(kinds.values())
    assert stats.failures == Counter() and stats.samples == 60 and stats.n_honoured is True
    assert elapsed < 15, elapsed  # each timeout waited out once (1 s), backoffs of a second at most


# -- failures, by kind -----------------------------------------------------------------------------
def run_one(base_url: str, **settings) -> tuple[Caller, list]:
    caller = caller_for(base_url, **settings)
    [outputs] = caller.run([ask(0)])
    return caller, outputs


def test_a_closed_port_is_refused_not_timed_out():
    port = free_port()
    started = time.monotonic()
    caller, [output] = run_one(f"http://127.0.0.1:{port}/v1", max_retries=1, timeout=30)
    assert time.monotonic() - started < 5  # refused at once (a timeout would take 30 s per attempt)
    assert (output.kind, caller.stats.failures) == ("refused", Counter({"refused": 1}))
    assert f"127.0.0.1:{port}" in output.error and "connection refused" in output.error
    assert "timed out" not in output.error.lower()
    assert (caller.stats.http_requests, caller.stats.retries, caller.stats.calls) == (2, 1, 0)


def test_an_answer_slower_than_the_timeout_is_a_timeout():
    with FakeOpenAI(responder=echo, faults=fault_always("timeout", hang=3.0)) as server:
        caller, [output] = run_one(server.base_url, max_retries=1, timeout=1.0)
        assert server.calls == 2
    assert (output.kind, caller.stats.failures) == ("timeout", Counter({"timeout": 1}))
    assert (caller.stats.http_requests, caller.stats.retries) == (2, 1)


def test_a_bad_request_is_not_retried():
    # audio output without its settings: the server answers 400, as OpenAI does
    with FakeOpenAI(responder=echo) as server:
        caller, [output] = run_one(server.base_url, max_retries=3, extra_body={"modalities": ["audio"]})
        assert server.calls == 1 and [r["status"] for r in server.requests] == [400]
    assert output.kind == "4xx" and output.error.startswith("BadRequestError: Error code: 400")
    assert (caller.stats.http_requests, caller.stats.retries, dict(caller.stats.failures)) == (1, 0, {"4xx": 1})


def test_a_rate_limit_is_retried_and_then_counted_as_4xx():
    with FakeOpenAI(responder=echo, faults=fault_always("429", retry_after=0.01)) as server:
        caller, [output] = run_one(server.base_url, max_retries=2)
        assert server.calls == 3
    assert output.kind == "4xx" and "Error code: 429" in output.error
    assert (caller.stats.http_requests, caller.stats.retries) == (3, 2)


def test_a_persistent_server_error_is_5xx_after_every_retry():
    with FakeOpenAI(responder=echo, faults=fault_always("500")) as server:
        caller, outputs = run_one(server.base_url, n=2, max_retries=2)
        assert server.calls == 3  # max_retries + 1 attempts
    assert [o.kind for o in outputs] == ["5xx", "5xx"] and not any(o.ok for o in outputs)
    assert caller.stats.failures == Counter({"5xx": 1})  # one request failed (its two outputs with it)
    assert (caller.stats.http_requests, caller.stats.retries, caller.stats.calls) == (3, 2, 0)


def test_a_dropped_connection_is_a_connection_failure():
    with FakeOpenAI(responder=echo, faults=fault_always("disconnect")) as server:
        caller, [output] = run_one(server.base_url, max_retries=0)
        assert server.calls == 1
    assert output.kind == "connection" and caller.stats.failures == Counter({"connection": 1})
    assert "timed out" not in output.error.lower()  # the transport's word for it; the server hung up


# -- the record ----------------------------------------------------------------------------------
def test_the_record_sums_over_ranks_and_prices_the_tokens():
    one = CallStats(samples=8, calls=2, http_requests=3, retries=1, cache_hits=4, n_honoured=True,
                    prompt_tokens=1_000_000, completion_tokens=2_000_000)
    one.fail("5xx")
    one.fail("unparsable", 3)
    one.fail("something new")  # an unknown kind is still counted, as "other"
    other = CallStats.from_dict(CallStats(samples=2, calls=1, http_requests=1, n_honoured=False).as_dict())
    one.add(other)
    record = one.as_dict((0.15, 0.60))
    assert record == {
        "samples": 10, "calls": 3, "http_requests": 4, "retries": 1, "cache_hits": 4,
        "failures": {**dict.fromkeys(FAILURE_KINDS, 0), "5xx": 1, "unparsable": 3, "other": 1},
        "n_honoured": False, "prompt_tokens": 1_000_000, "completion_tokens": 2_000_000, "estimated_cost_usd": pytest.approx(1.35),
    }
    assert one.failed == 2  # unparsable outputs are the parser's failures, not failed requests
    assert CallStats.from_dict(record).as_dict() == {**record, "estimated_cost_usd": None}


def test_prices_are_known_for_openai_models_only():
    assert config_from_settings("gpt-4o-mini").prices() == (0.15, 0.60)
    assert config_from_settings({"model": "gpt-4o-mini", "mode": "batch"}).prices() == (0.075, 0.30)  # the Batch API bills half
    assert config_from_settings({"model": "gpt-4o-mini", "base_url": "http://127.0.0.1:8000/v1"}).prices() is None
    assert config_from_settings({"model": "mine", "input_cost_per_1m": 1, "output_cost_per_1m": 2}).prices() == (1, 2)
