"""``mode: batch`` (OpenAI's Batch API) against the fake server's real /v1/files and /v1/batches endpoints."""

from __future__ import annotations

import asyncio
import json
import sqlite3

import openai
import pytest
from fake_openai import Fault, FakeOpenAI, canonical_json, last_user_text

from lm_eval_speech.calls import CallCache, Caller, CallRequest, config_from_settings
from lm_eval_speech.calls import batch as batch_mode
from lm_eval_speech.calls.config import CallConfigError

SCHEMA = {"type": "object", "properties": {"verdict": {"type": "string"}}, "required": ["verdict"]}


def answer(body: dict, index: int) -> str:
    """Deterministic in everything the request says, so online and batch answers must agree."""
    return f"{last_user_text(body)}|n={body.get('n')}|seed={body.get('seed')}|fmt={'response_format' in body}|choice={index}"


def config(server: FakeOpenAI, **settings):
    base = {"model": "judge", "base_url": server.base_url, "mode": "batch", "batch_poll_interval": 0.01, "max_retries": 0}
    return config_from_settings({**base, **settings})


def requests(count: int = 4, *, schema: dict | None = None) -> list[CallRequest]:
    return [CallRequest([{"role": "user", "content": f"question {k}"}], f"item {k}", schema) for k in range(count)]


def texts(outputs) -> list[list[str | None]]:
    return [[o.text for o in row] for row in outputs]


def pending_batches(cache: CallCache) -> list[str]:
    return [row[0] for row in cache._db.execute("SELECT batch_id FROM batches")]


def test_batch_outputs_and_bodies_equal_the_online_mode(tmp_path):
    settings = {"n": 2, "seed": 7, "temperature": 0.5, "constrained": True, "extra_body": {"top_logprobs_hint": 3}}
    asked = requests(3, schema=SCHEMA) + requests(1, schema=SCHEMA)  # the last repeats the first
    with FakeOpenAI(responder=answer) as server:
        online = Caller(config(server, mode="online", **settings)).run(asked)
        online_bodies = {canonical_json(r["body"]) for r in server.requests}
        caller = Caller(config(server, **settings), CallCache(tmp_path / "calls.sqlite"))
        batched = caller.run(asked)
        (created,) = server.batches.values()
    assert all(o.ok for row in batched for o in row)
    assert texts(batched) == texts(online)
    assert texts(batched)[0] == ["question 0|n=2|seed=7|fmt=True|choice=0", "question 0|n=2|seed=7|fmt=True|choice=1"]
    # the lines carry exactly the bodies the online mode sent; the repeated request is asked once
    assert [(line["method"], line["url"]) for line in created["lines"]] == [("POST", "/v1/chat/completions")] * 3
    assert {canonical_json(line["body"]) for line in created["lines"]} == online_bodies
    assert all(line["body"]["top_logprobs_hint"] == 3 for line in created["lines"])
    assert caller.stats.calls == 3 and caller.stats.samples == 8 and caller.stats.n_honoured is True
    assert caller.stats.completion_tokens == sum(len(t.split()) for row in texts(batched)[:3] for t in row)


def test_results_land_in_the_cache_and_a_rerun_makes_no_request(tmp_path):
    cache = CallCache(tmp_path / "calls.sqlite")
    with FakeOpenAI(responder=answer, batch_pending_polls=3) as server:
        caller = Caller(config(server), cache)
        first = caller.run(requests())
        seen = server.batch_http
        # one upload, one creation, a poll per pending status and the final one, one download
        assert (server.uploads, server.batches_created, server.polls, server.downloads) == (1, 1, 4, 1)
        assert caller.stats.http_requests == seen == 7 and caller.stats.calls == 4
        again = Caller(config(server), cache)
        second = again.run(requests())
        assert server.batch_http == seen and server.calls == 0
    assert again.stats.http_requests == 0 and again.stats.cache_hits == 4
    assert texts(second) == texts(first) and all(o.cached for row in second for o in row)
    assert len(cache) == 4 and pending_batches(cache) == []


async def _interrupted_run(server: FakeOpenAI, caller: Caller, asked: list[CallRequest]) -> None:
    """Start a run, let it submit and poll a little, then stop it (as a killed process would stop)."""
    task = asyncio.create_task(caller.arun(asked))
    for _ in range(500):
        if server.polls >= 2:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_a_run_stopped_while_the_batch_is_pending_resumes_the_same_batch(tmp_path):
    cache = CallCache(tmp_path / "calls.sqlite")
    with FakeOpenAI(responder=answer, batch_pending_polls=10_000) as server:
        stopped = Caller(config(server), cache)
        asyncio.run(_interrupted_run(server, stopped, requests()))
        assert server.batches_created == 1 and server.polls >= 2 and len(cache) == 0
        assert pending_batches(cache) == ["batch_1"]
        assert stopped.stats.http_requests == server.batch_http
        before = server.batch_http
        server.batch_pending_polls = 0  # the batch finishes while nobody watches
        resumed = Caller(config(server), cache)
        outputs = resumed.run(requests())
        assert (server.uploads, server.batches_created, server.batches["batch_1"]["status"]) == (1, 1, "completed")
        # the restart only polled (once, finding it done) and downloaded
        assert resumed.stats.http_requests == server.batch_http - before == 2
    assert texts(outputs) == [[f"question {k}|n=1|seed=None|fmt=False|choice=0"] for k in range(4)]
    assert pending_batches(cache) == [] and len(cache) == 4


def test_a_resumed_batch_serves_only_what_is_still_missing(tmp_path):
    """The restart asks for fewer requests (one was answered elsewhere): the pending batch still serves them."""
    cache = CallCache(tmp_path / "calls.sqlite")
    with FakeOpenAI(responder=answer, batch_pending_polls=10_000) as server:
        asyncio.run(_interrupted_run(server, Caller(config(server), cache), requests(4)))
        server.batch_pending_polls = 0
        outputs = Caller(config(server), cache).run(requests(4)[1:3] + requests(6)[4:])
        assert server.batches_created == 2  # the old batch for items 1-2, a new one for 4-5 only
        assert [last_user_text(line["body"]) for line in server.batches["batch_2"]["lines"]] == ["question 4", "question 5"]
    assert texts(outputs) == [[f"question {k}|n=1|seed=None|fmt=False|choice=0"] for k in (1, 2, 4, 5)]
    assert len(cache) == 4  # items 0 and 3 of the old batch were not asked for this time, so not stored
    assert pending_batches(cache) == []


def test_without_a_cache_a_stopped_run_submits_again(tmp_path):
    with FakeOpenAI(responder=answer, batch_pending_polls=10_000) as server:
        asyncio.run(_interrupted_run(server, Caller(config(server)), requests()))
        server.batch_pending_polls = 0
        outputs = Caller(config(server)).run(requests())
        assert server.batches_created == 2
    assert all(o.ok for row in outputs for o in row)


def test_a_batch_the_endpoint_no_longer_knows_is_dropped_and_resubmitted_next_time(tmp_path):
    cache = CallCache(tmp_path / "calls.sqlite")
    with FakeOpenAI(responder=answer, batch_pending_polls=10_000) as server:
        asyncio.run(_interrupted_run(server, Caller(config(server), cache), requests(2)))
        port = server.port
    with FakeOpenAI(responder=answer, port=port) as restarted:  # the same endpoint, its batches gone
        lost = Caller(config(restarted), cache)
        failed = lost.run(requests(2))
        assert {o.kind for row in failed for o in row} == {"4xx"}
        assert all("batch_1 is unknown" in o.error and "run again" in o.error for row in failed for o in row)
        assert pending_batches(cache) == []
        outputs = Caller(config(restarted), cache).run(requests(2))
        assert restarted.batches_created == 1 and all(o.ok for row in outputs for o in row)


def test_failed_lines_become_failed_outputs_and_are_asked_again_next_run(tmp_path):
    def faults(body, attempt):
        text = last_user_text(body)
        if attempt == 1 and "question 1" in text:
            return Fault("500")
        if attempt == 1 and "question 2" in text:
            return Fault("429")
        return None

    cache = CallCache(tmp_path / "calls.sqlite")
    with FakeOpenAI(responder=answer, faults=faults) as server:
        caller = Caller(config(server), cache)
        outputs = caller.run(requests())
        assert caller.stats.http_requests == server.batch_http == 6  # upload, create, 2 polls, output and error files
        assert server.downloads == 2
        again = Caller(config(server), cache)
        retried = again.run(requests())
        assert len(server.batches["batch_2"]["lines"]) == 2  # only the two that failed
    (ok0,), (bad1,), (bad2,), (ok3,) = outputs
    assert ok0.ok and ok3.ok
    assert (bad1.text, bad1.kind) == (None, "5xx") and "HTTP 500" in bad1.error and "batch_1" in bad1.error
    assert bad2.kind == "4xx" and "HTTP 429" in bad2.error and "Rate limit" in bad2.error
    assert caller.stats.failures["5xx"] == 1 and caller.stats.failures["4xx"] == 1 and caller.stats.calls == 2
    assert all(o.ok for row in retried for o in row) and again.stats.cache_hits == 2


@pytest.mark.parametrize("outcome, words", [
    ("expired", ["batch_1 (expired)", "batch_expired", "completion window expired"]),
    ("failed", ["batch batch_1 failed", "The batch failed"]),
    ("cancelled", ["batch batch_1 was cancelled"]),
])
def test_a_batch_that_does_not_complete_fails_its_requests_with_the_reason(tmp_path, outcome, words):
    cache = CallCache(tmp_path / "calls.sqlite")
    with FakeOpenAI(responder=answer, batch_outcome=outcome) as server:
        caller = Caller(config(server), cache)
        outputs = caller.run(requests(3))
        assert caller.stats.http_requests == server.batch_http
        assert server.downloads == (1 if outcome == "expired" else 0)  # an expired batch's error file lists its lines
    for row in outputs:
        (output,) = row
        assert output.text is None and output.kind == "other"
        assert all(word in output.error for word in words), output.error
    assert caller.stats.failures["other"] == 3 and caller.stats.calls == 0
    assert len(cache) == 0 and pending_batches(cache) == []  # nothing kept: the next run submits anew


def test_large_runs_are_split_at_the_per_batch_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(batch_mode, "MAX_REQUESTS", 2)
    cache = CallCache(tmp_path / "calls.sqlite")
    with FakeOpenAI(responder=answer, batch_max_requests=2) as server:
        caller = Caller(config(server), cache)
        outputs = caller.run(requests(5))
        assert server.batches_created == 3 and {b["status"] for b in server.batches.values()} == {"completed"}
        assert sorted(len(b["lines"]) for b in server.batches.values()) == [1, 2, 2]
        assert caller.stats.http_requests == server.batch_http == 3 * 5
    assert texts(outputs) == [[f"question {k}|n=1|seed=None|fmt=False|choice=0"] for k in range(5)]


def test_a_batch_over_the_servers_limit_fails_with_its_validation_errors(tmp_path):
    """The fake validates as OpenAI does, so the split above is what keeps a large run working."""
    with FakeOpenAI(responder=answer, batch_max_requests=2) as server:
        outputs = Caller(config(server)).run(requests(3))
    assert all("failed" in o.error and "at most 2" in o.error for row in outputs for o in row)


def test_n_mode_repeat_sends_one_line_per_sample(tmp_path):
    with FakeOpenAI(responder=answer) as server:
        outputs = Caller(config(server, n=3, seed=5, n_mode="repeat")).run(requests(2))
        (created,) = server.batches.values()
    assert [line["body"]["n"] for line in created["lines"]] == [1] * 6
    assert texts(outputs)[0] == [f"question 0|n=1|seed={5 + j}|fmt=False|choice=0" for j in range(3)]


def test_the_fake_refuses_what_openai_refuses():
    """Duplicate custom_ids, a wrong url, two models: the batch fails validation, as OpenAI's would."""
    with FakeOpenAI() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="sk-test")
        body = {"model": "judge", "messages": [{"role": "user", "content": "hi"}]}
        lines = [{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": body},
                 {"custom_id": "a", "method": "POST", "url": "/v1/embeddings", "body": {**body, "model": "other"}}]
        data = "".join(json.dumps(line) + "\n" for line in lines).encode()
        uploaded = client.files.create(file=("in.jsonl", data), purpose="batch")
        created = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
        assert created.status == "validating"
        batch = client.batches.retrieve(created.id)
        with pytest.raises(openai.BadRequestError):
            client.files.create(file=("in.jsonl", data), purpose="fine-tune")
        with pytest.raises(openai.NotFoundError):
            client.batches.retrieve("batch_missing")
        assert client.files.content(uploaded.id).content == data
    assert batch.status == "failed" and batch.output_file_id is None
    messages = [error.message for error in batch.errors.data]
    assert any("duplicate custom_id" in m for m in messages) and any("endpoint" in m for m in messages)
    assert any("one model" in m for m in messages)
    assert (server.uploads, server.batches_created, server.polls, server.downloads, server.batch_http) == (1, 1, 1, 1, 6)


def test_batch_poll_interval_is_validated_and_described():
    assert config_from_settings({"model": "m", "mode": "batch", "batch_poll_interval": "2.5"}).describe()["batch_poll_interval_s"] == 2.5
    assert config_from_settings({"model": "m"}).batch_poll_interval == 30.0
    assert "batch_poll_interval_s" not in config_from_settings({"model": "m"}).describe()
    for bad in (0, -1, "soon", True, float("nan")):
        with pytest.raises(CallConfigError, match="batch_poll_interval"):
            config_from_settings({"model": "m", "batch_poll_interval": bad})


def test_the_batches_table_lives_in_the_cache_file(tmp_path):
    path = tmp_path / "calls.sqlite"
    cache = CallCache(path)
    with FakeOpenAI(responder=answer, batch_pending_polls=10_000) as server:
        asyncio.run(_interrupted_run(server, Caller(config(server), cache), requests(2)))
    with sqlite3.connect(path) as db:
        ((batch_id, custom_ids),) = db.execute("SELECT batch_id, custom_ids FROM batches").fetchall()
    assert batch_id == "batch_1" and len(json.loads(custom_ids)) == 2


def test_a_poll_that_fails_for_good_keeps_the_batch_for_the_next_run(tmp_path):
    cache = CallCache(tmp_path / "calls.sqlite")
    with FakeOpenAI(responder=answer, batch_pending_polls=10_000) as server:
        asyncio.run(_interrupted_run(server, Caller(config(server), cache), requests(2)))
        server.required_key = "sk-other"  # every further request is refused (401, not retried)
        refused = Caller(config(server), cache)
        failed = refused.run(requests(2))
        assert refused.stats.http_requests == 1 and refused.stats.failures["4xx"] == 2
        assert all("polling batch batch_1" in o.error and "run again to resume it" in o.error for row in failed for o in row)
        assert pending_batches(cache) == ["batch_1"]
        server.required_key, server.batch_pending_polls = None, 0
        outputs = Caller(config(server), cache).run(requests(2))
        assert server.batches_created == 1 and all(o.ok for row in outputs for o in row)
