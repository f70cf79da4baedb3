"""The fake OpenAI server itself, driven through the real openai SDK (so its shapes are what the SDK parses)."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest
from fake_openai import Fault, FakeOpenAI, fault_always, fault_fraction, scripted
from openai import OpenAI

USER = [{"role": "user", "content": "Is the answer correct?"}]


def client_for(server: FakeOpenAI, **kwargs) -> OpenAI:
    return OpenAI(base_url=server.base_url, api_key=kwargs.pop("api_key", "sk-test"), **kwargs)


def ask(client: OpenAI, content: str = "Is the answer correct?", **kwargs):
    return client.chat.completions.create(model="judge", messages=[{"role": "user", "content": content}], **kwargs)


def wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.01)


def test_n_choices_and_response_shape():
    with FakeOpenAI(responder=lambda body, index: f"verdict {index}") as server:
        completion = ask(client_for(server), n=3)
    assert [choice.index for choice in completion.choices] == [0, 1, 2]
    assert [choice.message.content for choice in completion.choices] == ["verdict 0", "verdict 1", "verdict 2"]
    assert {choice.finish_reason for choice in completion.choices} == {"stop"}
    assert completion.model == "judge" and completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert (server.calls, server.answered, server.faulted) == (1, 1, 0)


def test_honour_n_false_answers_one_choice():
    with FakeOpenAI(honour_n=False) as server:
        completion = ask(client_for(server), n=4)
    assert [choice.message.content for choice in completion.choices] == ["OK"]


def test_usage_counts_words():
    messages = [{"role": "system", "content": "You are a strict judge."}, {"role": "user", "content": "Grade this  answer\nplease"}]
    with FakeOpenAI(responder=lambda body, index: "score: 5") as server:
        completion = client_for(server).chat.completions.create(model="judge", messages=messages, n=3)
    assert completion.usage.prompt_tokens == 5 + 4
    assert completion.usage.completion_tokens == 3 * 2
    assert completion.usage.total_tokens == 9 + 6


def test_scripted_responder_matches_last_user_message():
    responder = scripted({"apple": "fruit", "carrot": ["veg 0", "veg 1"], "app": "never reached for apple"}, default="unknown")
    with FakeOpenAI(responder=responder) as server:
        client = client_for(server)
        assert ask(client, "an apple a day").choices[0].message.content == "fruit"  # first matching key wins
        assert [c.message.content for c in ask(client, "a carrot", n=3).choices] == ["veg 0", "veg 1", "veg 0"]
        assert ask(client, "a stone").choices[0].message.content == "unknown"
        # only the last user message counts, not earlier turns
        history = [{"role": "user", "content": "apple"}, {"role": "assistant", "content": "fruit"}, {"role": "user", "content": "carrot"}]
        assert client.chat.completions.create(model="judge", messages=history).choices[0].message.content == "veg 0"


def test_scripted_without_default_fails_loudly():
    with FakeOpenAI(responder=scripted({"apple": "fruit"}, default=None)) as server:
        with pytest.raises(openai.InternalServerError, match="no scripted answer"):
            ask(client_for(server, max_retries=0), "a stone")


def test_models_endpoint_lists_model_ids():
    with FakeOpenAI(model_ids=("judge", "judge-large")) as server:
        assert [model.id for model in client_for(server).models.list()] == ["judge", "judge-large"]


def test_stream_is_rejected():
    with FakeOpenAI() as server:
        with pytest.raises(openai.BadRequestError):
            ask(client_for(server, max_retries=0), stream=True)
    assert server.requests[0]["status"] == 400


@pytest.mark.parametrize(
    "fault, error",
    [
        (Fault("429", retry_after=0.2), openai.RateLimitError),
        (Fault("500"), openai.InternalServerError),
        (Fault("503", retry_after=0.2), openai.InternalServerError),
        (Fault("timeout", hang=5.0), openai.APITimeoutError),
        (Fault("disconnect"), openai.APIConnectionError),
        # the SDK does not wrap an unparsable 200: json.JSONDecodeError (a ValueError, not an openai.APIError) escapes
        (Fault("bad_json"), json.JSONDecodeError),
    ],
    ids=lambda value: value.kind if isinstance(value, Fault) else None,
)
def test_each_fault_kind_as_the_sdk_sees_it(fault, error):
    with FakeOpenAI(faults=lambda body, attempt: fault) as server:
        with pytest.raises(error) as raised:
            ask(client_for(server, max_retries=0, timeout=0.3))
        assert (server.calls, server.faulted, server.answered) == (1, 1, 0)
        assert server.requests[0]["fault"] == fault.kind
    if fault.kind == "disconnect":
        assert not isinstance(raised.value, openai.APITimeoutError)
    if fault.kind in ("429", "503"):
        assert raised.value.status_code == int(fault.kind)
        assert raised.value.response.headers["retry-after"] == "0.2"
        assert raised.value.body["type"] in ("rate_limit_error", "server_error")


def test_fault_always_faults_every_retry_with_rising_attempts():
    with FakeOpenAI(faults=fault_always("429", retry_after=0.01)) as server:
        with pytest.raises(openai.RateLimitError):
            ask(client_for(server, max_retries=2))
    assert [record["attempt"] for record in server.requests] == [1, 2, 3]
    assert [record["status"] for record in server.requests] == [429, 429, 429]
    assert server.distinct_bodies() == 1 and server.faulted == 3


def test_fault_fraction_is_deterministic_and_spares_retries():
    faults = fault_fraction(0.3, seed=7)
    bodies = [{"model": "judge", "messages": [{"role": "user", "content": f"prompt {i}"}]} for i in range(1000)]
    first = [faults(body, 1) for body in bodies]
    assert 250 < sum(fault is not None for fault in first) < 350
    assert {fault.kind for fault in first if fault} == {"429", "500", "timeout"}
    assert first == [fault_fraction(0.3, seed=7)(body, 1) for body in bodies]
    assert first != [fault_fraction(0.3, seed=8)(body, 1) for body in bodies]
    assert all(faults(body, 2) is None for body in bodies)
    assert not any(fault_fraction(0.0)(body, 1) for body in bodies)
    assert all(fault_fraction(1.0)(body, 1) for body in bodies)
    # key order does not change a body's identity
    assert faults({"messages": bodies[0]["messages"], "model": "judge"}, 1) == first[0]


def test_sdk_retries_recover_from_fault_fraction():
    faults = fault_fraction(0.3, seed=0)
    prompts = [f"Grade answer number {i}." for i in range(30)]
    with FakeOpenAI(responder=lambda body, index: "score: 1", faults=faults) as server:
        client = client_for(server, timeout=1.0)  # default max_retries; a "timeout" fault costs one 1 s wait
        with ThreadPoolExecutor(30) as pool:
            contents = list(pool.map(lambda prompt: ask(client, prompt).choices[0].message.content, prompts))
        records = server.requests
    assert contents == ["score: 1"] * 30
    expected_faulted = sum(faults(record["body"], 1) is not None for record in records if record["attempt"] == 1)
    # each body faults with probability 0.3 by its hash: about 9 of 30 (binomial, sd 2.5); seed 0 gives 13
    assert server.faulted == expected_faulted and abs(expected_faulted - 9) <= 6
    assert server.answered == 30 and server.distinct_bodies() == 30
    assert server.calls == 30 + server.faulted
    assert {record["fault"] for record in records} - {None} <= {"429", "500", "timeout"}
    assert all(record["fault"] is None for record in records if record["attempt"] > 1)


def test_concurrent_requests_are_served_in_parallel():
    with FakeOpenAI(latency=0.2) as server:
        client = client_for(server)
        start_together = threading.Barrier(16)

        def one_request(i: int) -> str:
            start_together.wait()
            return ask(client, f"prompt {i}").choices[0].message.content

        started = time.monotonic()
        with ThreadPoolExecutor(16) as pool:
            contents = list(pool.map(one_request, range(16)))
        elapsed = time.monotonic() - started
    assert contents == ["OK"] * 16
    assert elapsed < 16 * 0.2 / 2, f"16 requests of 0.2 s took {elapsed:.2f} s"
    assert server.max_in_flight >= 8


def test_records_headers_and_bodies():
    with FakeOpenAI() as server:
        ask(client_for(server, api_key="sk-judge-123"), "record me", temperature=0.0)
    [record] = server.requests
    assert record["headers"]["authorization"] == "Bearer sk-judge-123"
    assert record["body"]["messages"] == [{"role": "user", "content": "record me"}]
    assert record["body"]["temperature"] == 0.0
    assert (record["status"], record["attempt"], record["fault"]) == (200, 1, None)


def test_keep_alive_serves_several_requests_on_one_connection():
    with FakeOpenAI() as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        body = json.dumps({"model": "judge", "messages": USER})
        for _ in range(3):
            connection.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            assert response.status == 200 and json.loads(response.read())["choices"][0]["message"]["content"] == "OK"
        connection.close()
    assert [record["attempt"] for record in server.requests] == [1, 2, 3]


def test_close_is_fast_while_a_timeout_fault_hangs():
    server = FakeOpenAI(faults=fault_always("timeout", hang=30.0))
    client = client_for(server, max_retries=0, timeout=30.0)
    outcome = []
    waiter = threading.Thread(target=lambda: outcome.append(pytest.raises(openai.APIConnectionError, ask, client)))
    waiter.start()
    wait_until(lambda: server.calls == 1)
    started = time.monotonic()
    server.close()
    assert time.monotonic() - started < 1.0
    waiter.join(timeout=5)
    assert not waiter.is_alive() and outcome  # the client was cut off, not left waiting 30 s


def test_reset_counters_forgets_everything():
    with FakeOpenAI(faults=fault_fraction(1.0, kinds=["429"], retry_after=0.01)) as server:
        client = client_for(server, max_retries=1)
        ask(client)
        assert (server.calls, server.faulted, server.answered) == (2, 1, 1)
        server.reset_counters()
        assert (server.calls, server.faulted, server.answered, server.max_in_flight) == (0, 0, 0, 0)
        assert server.requests == [] and server.distinct_bodies() == 0
        ask(client)  # attempt numbers restart, so the same body faults again
        assert (server.calls, server.faulted, server.answered) == (2, 1, 1)


def test_cli_prints_base_url_and_serves():
    script = Path(__file__).with_name("fake_openai.py")
    process = subprocess.Popen([sys.executable, str(script), "--port", "0", "--latency", "0.01"], stdout=subprocess.PIPE, text=True)
    try:
        base_url = process.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        client = OpenAI(base_url=base_url, api_key="sk-test", timeout=5)
        assert ask(client).choices[0].message.content == "OK"
    finally:
        process.terminate()
        process.wait(timeout=5)
