"""The model-call layer (lm_eval_speech/calls) and judge resolution (lm_eval_speech/judging) against a real local HTTP server.

Nothing of ours is patched: requests go through the openai SDK to ``tests/fake_openai.py``, which
records every body and header it receives and injects faults. End-to-end tests run the real
lm-eval ``simple_evaluate`` on the SpeechInstructBench open-ended task with replayed model answers
(``--model responses``). Every cache lives under pytest's tmp_path (``judge_cache`` or XDG_CACHE_HOME).
Accounting under faults, preflight, the shared limiter, the cache's request summary and
GenerationParams have files of their own (tests/test_calls_*.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import closing
from pathlib import Path

import lm_eval
import pytest
from lm_eval.loggers import EvaluationTracker
from lm_eval.tasks import TaskManager
from lm_eval.utils import handle_non_serializable

from lm_eval_speech import paths
from lm_eval_speech.calls import CallCache, CallConfig, CallConfigError, Caller, CallRequest, GenerationParams, config_from_settings
from lm_eval_speech.calls.accounting import FAILURE_KINDS
from lm_eval_speech.judging import judge_cache_path, resolve_judges
from lm_eval_speech.judging.config import CACHE_ENV
from lm_eval_speech.tasks.speechinstruct import judge_prompts

from builders import write_sib_judged
from conftest import REPO, TASKS_DIR
from fake_openai import Fault, FakeOpenAI, canonical_json, fault_always, fault_fraction, last_user_text, scripted

PYTHON = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv" / "bin" / "python").exists() else sys.executable
OPEN_EN = "speechinstruct_open_en"
# The authors' api_judge.py call, as _open_template_yaml declares it.
SIB_DEFAULT = {"model": "gpt-4o-mini", "n": 4, "temperature": 0.5, "top_p": 0.95, "max_tokens": 1024,
               "frequency_penalty": 0, "presence_penalty": 0}
SIB_SAMPLING = {k: v for k, v in SIB_DEFAULT.items() if k != "model"}
# Judge verdicts for the three English open-ended fixture items (tests/builders.py SIB_OPEN_ITEMS), by choice index:
#   umbrella (3 questions): per-position majority YES, YES, NO -> prompt F, 2/3 instructions
#   cat (2 questions): YES, YES -> prompt T, 2/2;  fruits (2 questions): NO, YES -> prompt F, 1/2
# prompt_level_acc = 1/3; inst_level_acc = (2 + 2 + 1) / (3 + 2 + 2) = 5/7
SIB_VERDICTS = scripted(
    {
        "umbrella": ["['YES', 'YES', 'NO']", "['YES', 'NO', 'NO']", "['YES', 'YES', 'YES']", "['NO', 'YES', 'NO']"],
        "Describe a cat": "['YES', 'YES']",
        "three fruits": "['NO', 'YES']",
    },
    default=None,  # an unexpected prompt is a 500, not a plausible verdict
)
SIB_EXPECTED = {"prompt_level_acc,judge": 1 / 3, "inst_level_acc,judge": 5 / 7, "judge_failed_items,judge": 0,
                "unparsed_items,judge": 0, "failed_items,judge": 0}
NO_FAILURES = dict.fromkeys(FAILURE_KINDS, 0)


# -- helpers -------------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """No real key, endpoint or cache location leaks in from the user's environment."""
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", CACHE_ENV, paths.CACHE_ENV, "OPENAI_LOG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("TQDM_DISABLE", "1")  # read by the subprocesses' tqdm


def messages(i: int) -> list[dict]:
    return [{"role": "system", "content": "You are a strict judge."}, {"role": "user", "content": f"Is answer {i} correct?"}]


def ask(i: int) -> CallRequest:
    return CallRequest(messages(i), label=f"item {i}")


def echo(body: dict, index: int) -> str:
    """A different text for each prompt, seed and choice, so any mix-up shows."""
    return f"{last_user_text(body)} | seed {body.get('seed')} | choice {index}"


def expected(i: int, seed=None, choice: int = 0) -> str:
    return f"Is answer {i} correct? | seed {seed} | choice {choice}"


def caller_for(server: FakeOpenAI, cache: CallCache | None = None, **settings) -> Caller:
    return Caller(config_from_settings({"model": "judge", "base_url": server.base_url, **settings}), cache)


def texts(outputs) -> list[list[str | None]]:
    return [[o.text for o in row] for row in outputs]


def stats_of(**given) -> dict:
    """``CallStats.as_dict()`` of a run with these figures (everything else zero)."""
    record = {"samples": 0, "calls": 0, "http_requests": 0, "retries": 0, "cache_hits": 0, "n_honoured": None,
              "prompt_tokens": 0, "completion_tokens": 0, "estimated_cost_usd": None, **given}
    record["failures"] = {**NO_FAILURES, **given.get("failures", {})}
    return record


def answered_per_body(server: FakeOpenAI) -> Counter:
    """How many times each distinct body got a normal 200 answer (what a provider bills)."""
    paid = Counter()
    for record in server.requests:
        paid[canonical_json(record["body"])] += int(record["status"] == 200 and record["fault"] is None)
    return paid


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def cache_rows(path: Path) -> int:
    try:
        with closing(sqlite3.connect(str(path), timeout=10)) as db:
            return db.execute("SELECT COUNT(*) FROM judge_outputs").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


@pytest.fixture(scope="module")
def sib_open(tmp_path_factory) -> dict:
    """SIB English open-ended data (3 items) and a replay file with one model answer per item."""
    root = tmp_path_factory.mktemp("sib-open")
    data_dir = write_sib_judged(root / "sib", languages=("en",))
    responses = root / "responses.jsonl"
    responses.write_text("".join(json.dumps({"task": OPEN_EN, "doc_id": i, "response": f"model answer {i}"}) + "\n" for i in range(3)))
    return {"data_dir": data_dir, "responses": responses}


def evaluate_open(sib_open: dict, judge: dict, cache=False, tracker=None, log_samples=False) -> dict:
    metadata = {"data_dir": str(sib_open["data_dir"]), "load_audio": False, "judge": judge}
    if cache is not None:
        metadata["judge_cache"] = str(cache) if isinstance(cache, Path) else cache
    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata=metadata)
    return lm_eval.simple_evaluate(
        model="responses", model_args={"path": str(sib_open["responses"])}, tasks=[OPEN_EN], task_manager=manager,
        bootstrap_iters=0, log_samples=log_samples, evaluation_tracker=tracker,
    )


def judging_block(out: dict) -> dict:
    return out["configs"][OPEN_EN]["metadata"]["lm_eval_speech"]["judging"]


def assert_unscored(out: dict, why: str) -> None:
    """No score from items nobody could score: the metrics are NaN, and the results say why."""
    result = out["results"][OPEN_EN]
    assert math.isnan(result["prompt_level_acc,judge"]) and math.isnan(result["inst_level_acc,judge"])
    missing = out["configs"][OPEN_EN]["metadata"]["lm_eval_speech"]["missing_metrics"]
    assert missing == {"prompt_level_acc": why, "inst_level_acc": why}


def scores(out: dict) -> dict:
    return {k: v for k, v in out["results"][OPEN_EN].items() if k.endswith(",judge") and "_stderr" not in k}


# -- 1. configuration ----------------------------------------------------------------------------
def test_judge_overrides_the_default_field_by_field_and_keeps_sampling():
    [judge] = resolve_judges(
        {"default_judge": SIB_DEFAULT, "judge": {"model": "Qwen/Qwen2.5-72B-Instruct", "base_url": "http://localhost:8000/v1"}},
        task=OPEN_EN,
    )
    assert (judge.model, judge.name, judge.base_url, judge.endpoint) == (
        "Qwen/Qwen2.5-72B-Instruct", "Qwen/Qwen2.5-72B-Instruct", "http://localhost:8000/v1", "http://localhost:8000/v1")
    assert judge.params.given() == SIB_SAMPLING

    [warmer] = resolve_judges({"default_judge": SIB_DEFAULT, "judge": {"temperature": 0.2, "seed": 3}}, task=OPEN_EN)
    assert (warmer.model, warmer.name, warmer.endpoint) == ("gpt-4o-mini", "gpt-4o-mini", "https://api.openai.com/v1")
    assert warmer.params.given() == {**SIB_SAMPLING, "temperature": 0.2, "seed": 3}

    [default] = resolve_judges({"default_judge": SIB_DEFAULT}, task=OPEN_EN)
    assert default == CallConfig(model="gpt-4o-mini", params=GenerationParams(**SIB_SAMPLING)) == config_from_settings(SIB_DEFAULT)
    # a bare string names the model
    assert config_from_settings("my-judge", base=SIB_DEFAULT).model == "my-judge"
    assert config_from_settings("my-judge", base=SIB_DEFAULT).params.n == 4
    with pytest.raises(CallConfigError, match="declares no metadata.default_judge"):
        resolve_judges({"judge": {"model": "x"}}, task=OPEN_EN)


def test_judge_settings_can_be_given_per_benchmark():
    one_run = {"speechinstruct": {"model": "sib-judge"}, "jasco": {"model": "jasco-judge", "temperature": 0.0}}
    [judge] = resolve_judges({"default_judge": SIB_DEFAULT, "judge": one_run}, task=OPEN_EN)
    assert (judge.model, judge.params.given()) == ("sib-judge", SIB_SAMPLING)
    # a mapping that names other benchmarks only leaves this task's default
    [judge] = resolve_judges({"default_judge": SIB_DEFAULT, "judge": {"jasco": {"model": "jasco-judge"}}}, task=OPEN_EN)
    assert judge == config_from_settings(SIB_DEFAULT)
    [judge] = resolve_judges({"default_judge": SIB_DEFAULT, "judges": {"speechinstruct": [{"model": "listed"}]}}, task=OPEN_EN)
    assert judge.model == "listed"


def test_judges_list_replaces_the_default_judge():
    listed = [{"model": "a", "base_url": "http://127.0.0.1:1/v1"}, {"temperature": 0.0, "name": "greedy"}]
    judges = resolve_judges({"default_judge": SIB_DEFAULT, "judges": listed}, task=OPEN_EN)
    assert [(j.name, j.model, j.params.temperature, j.params.n) for j in judges] == [
        ("a", "a", 0.5, 4), ("greedy", "gpt-4o-mini", 0.0, 4)]
    with pytest.raises(CallConfigError, match="distinct names"):
        resolve_judges({"default_judge": SIB_DEFAULT, "judges": [{"temperature": 0.1}, {"temperature": 0.2}]}, task=OPEN_EN)
    with pytest.raises(CallConfigError, match="non-empty list"):
        resolve_judges({"default_judge": SIB_DEFAULT, "judges": []}, task=OPEN_EN)


def test_unknown_settings_are_refused():
    with pytest.raises(CallConfigError, match=r"judge: unknown temprature; accepted: .*\btemperature\b"):
        resolve_judges({"default_judge": SIB_DEFAULT, "judge": {"temprature": 0.1}}, task=OPEN_EN)
    with pytest.raises(CallConfigError, match=r"judges\[1\]: unknown nn; accepted: "):
        resolve_judges({"default_judge": SIB_DEFAULT, "judges": [{"name": "a"}, {"nn": 2}]}, task=OPEN_EN)
    with pytest.raises(CallConfigError, match="n_mode must be one of auto, native, repeat, not 'sometimes'"):
        config_from_settings({"n_mode": "sometimes"}, base=SIB_DEFAULT)
    # the old name of the cap is refused too, naming the new one
    with pytest.raises(CallConfigError, match=r"unknown concurrency; accepted: .*\bmax_concurrency\b"):
        config_from_settings({"concurrency": 8}, base=SIB_DEFAULT)
    # a setting the OpenAI API cannot express is refused for that backend, and accepted in-process
    with pytest.raises(CallConfigError, match="cannot use top_k"):
        config_from_settings({"top_k": 20}, base=SIB_DEFAULT)
    local = config_from_settings({"backend": "transformers", "top_k": 20, "frequency_penalty": None, "presence_penalty": None},
                                 base=SIB_DEFAULT)
    assert local.params.top_k == 20
    with pytest.raises(CallConfigError, match=r"constrained='maybe': expected true or false"):
        config_from_settings({"constrained": "maybe"}, base=SIB_DEFAULT)
    assert config_from_settings({"preflight": "off"}, base=SIB_DEFAULT).preflight is False


@pytest.mark.parametrize("key", ["api_key", "OPENAI_API_KEY", "apiKey", "token", "access_token", "client_secret", "password",
                                 "Authorization"])
@pytest.mark.parametrize("where", ["judge", "judges"])
def test_secret_settings_are_refused_with_advice(key, where):
    secret = "sk-do-not-echo-1234"
    settings = {"base_url": "http://127.0.0.1:1/v1", key: secret}
    metadata = {"default_judge": SIB_DEFAULT, where: settings if where == "judge" else [settings]}
    with pytest.raises(CallConfigError) as raised:
        resolve_judges(metadata, task=OPEN_EN)
    message = str(raised.value)
    assert f"{key!r} is not accepted" in message
    assert "environment variable" in message and "api_key_env" in message
    assert secret not in message
    # the allowed look-alikes
    assert config_from_settings({"api_key_env": "MY_KEY", "max_tokens": 9}, base=SIB_DEFAULT).api_key_env == "MY_KEY"


def test_secrets_inside_extra_body_are_refused_and_provider_fields_are_not():
    secret = "sk-do-not-echo-5678"
    with pytest.raises(CallConfigError, match=r"extra_body\['api_key'\] is not accepted") as raised:
        config_from_settings({"extra_body": {"api_key": secret}}, base=SIB_DEFAULT)
    assert secret not in str(raised.value)
    assert config_from_settings({"extra_body": {"min_tokens": 4}}, base=SIB_DEFAULT).extra_body == {"min_tokens": 4}


def test_cache_path_honours_xdg_and_can_be_disabled(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert judge_cache_path({}, OPEN_EN) == tmp_path / "xdg" / "lm_eval_speech" / "calls.sqlite"
    assert judge_cache_path({"judge_cache": True}, OPEN_EN) == tmp_path / "xdg" / "lm_eval_speech" / "calls.sqlite"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert judge_cache_path({}, OPEN_EN) == tmp_path / "home" / ".cache" / "lm_eval_speech" / "calls.sqlite"
    for off in (False, None, "false", "off", "no", "0"):
        assert judge_cache_path({"judge_cache": off}, OPEN_EN) is None, off
    assert judge_cache_path({"judge_cache": str(tmp_path / "mine.sqlite")}, OPEN_EN) == tmp_path / "mine.sqlite"
    assert judge_cache_path({"judge_cache": "~/j.sqlite"}, OPEN_EN) == tmp_path / "home" / "j.sqlite"
    assert judge_cache_path({"judge_cache": {"jasco": False}}, OPEN_EN) == tmp_path / "home" / ".cache" / "lm_eval_speech" / "calls.sqlite"
    assert judge_cache_path({"judge_cache": {"speechinstruct": False}}, OPEN_EN) is None
    monkeypatch.setenv(CACHE_ENV, "off")
    assert judge_cache_path({}, OPEN_EN) is None
    assert judge_cache_path({"judge_cache": str(tmp_path / "x.sqlite")}, OPEN_EN) == tmp_path / "x.sqlite"  # metadata wins


def test_no_key_for_openai_itself_is_a_clear_error():
    with pytest.raises(CallConfigError, match=r"set the OPENAI_API_KEY environment variable, or point it at a local server"):
        Caller(config_from_settings(SIB_DEFAULT)).run([ask(0)])
    with pytest.raises(CallConfigError, match="set the MY_JUDGE_KEY environment variable"):
        Caller(CallConfig(model="gpt-4o", api_key_env="MY_JUDGE_KEY")).run([ask(0)])


def test_a_local_server_needs_no_key(monkeypatch):
    with FakeOpenAI(responder=echo) as server:
        assert texts(caller_for(server).run([ask(0)])) == [[expected(0)]]
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)  # the SDK's own variable works too
        assert texts(Caller(config_from_settings({"model": "judge", "n": 2})).run([ask(1)])) == [[expected(1), expected(1, choice=1)]]
        assert [r["headers"]["authorization"] for r in server.requests] == ["Bearer no-key-needed"] * 2


# -- 2. sampling passes through exactly ---------------------------------------------------------
def test_sampling_is_sent_exactly():
    with FakeOpenAI(responder=echo) as server:
        base = {**SIB_DEFAULT, "base_url": server.base_url}
        seeded = config_from_settings({"seed": 1234, "frequency_penalty": 0.25, "presence_penalty": -0.5, "stop": ["\n\n"]}, base=base)
        Caller(seeded).run([ask(0)])
        Caller(config_from_settings({}, base=base)).run([ask(1)])
        Caller(config_from_settings({"extra_body": {"top_k": 20}, "temperature": 0.0}, base=base)).run([ask(2)])
        bodies = [r["body"] for r in server.requests]
    assert bodies == [
        {"model": "gpt-4o-mini", "messages": messages(0), "n": 4, "temperature": 0.5, "top_p": 0.95, "max_tokens": 1024,
         "seed": 1234, "frequency_penalty": 0.25, "presence_penalty": -0.5, "stop": ["\n\n"]},
        {"model": "gpt-4o-mini", "messages": messages(1), "n": 4, "temperature": 0.5, "top_p": 0.95, "max_tokens": 1024,
         "frequency_penalty": 0, "presence_penalty": 0},
        {"model": "gpt-4o-mini", "messages": messages(2), "n": 4, "temperature": 0.0, "top_p": 0.95, "max_tokens": 1024,
         "frequency_penalty": 0, "presence_penalty": 0, "top_k": 20},
    ]


def test_sib_task_sends_the_authors_call_and_caches_under_xdg(sib_open, tmp_path):
    with FakeOpenAI(responder=SIB_VERDICTS) as server:
        out = evaluate_open(sib_open, {"base_url": server.base_url}, cache=None)  # no judge_cache: the default location
        bodies = [r["body"] for r in server.requests]
    assert scores(out) == pytest.approx(SIB_EXPECTED)
    assert len(bodies) == 3 and server.answered == 3
    for body in bodies:
        assert {k: v for k, v in body.items() if k != "messages"} == SIB_DEFAULT
        assert body["messages"][0] == {"role": "system", "content": judge_prompts.SYSTEM_MESSAGE}
        assert [m["role"] for m in body["messages"]] == ["system", "user"]
    users = [b["messages"][1]["content"] for b in bodies]  # the template filled with each item and its answer
    for answer, prompt in (("model answer 0", "umbrella"), ("model answer 1", "Describe a cat"), ("model answer 2", "three fruits")):
        assert sum(answer in u and prompt in u for u in users) == 1
    default_cache = tmp_path / "xdg-cache" / "lm_eval_speech" / "calls.sqlite"
    assert judging_block(out)["cache"] == str(default_cache)
    assert cache_rows(default_cache) == 12


# -- 3. n: native, fallback, repeat --------------------------------------------------------------
def test_native_n_is_one_request_per_item():
    with FakeOpenAI(responder=echo) as server:
        caller = caller_for(server, n=4)
        outputs = caller.run([ask(i) for i in range(5)])
        assert server.calls == 5
        assert sorted(r["body"]["messages"][1]["content"] for r in server.requests) == [f"Is answer {i} correct?" for i in range(5)]
        assert {r["body"]["n"] for r in server.requests} == {4}
    assert texts(outputs) == [[expected(i, choice=c) for c in range(4)] for i in range(5)]
    assert caller.stats.as_dict() == stats_of(samples=20, calls=5, http_requests=5, n_honoured=True,
                                              prompt_tokens=5 * 9, completion_tokens=20 * 10)  # words, as the fake counts


def test_an_endpoint_ignoring_n_gets_one_request_per_sample():
    with FakeOpenAI(responder=echo, honour_n=False) as server:  # llama.cpp: one choice whatever n says
        caller = caller_for(server, n=4, seed=10)
        outputs = caller.run([ask(i) for i in range(5)])
        sent = Counter((r["body"]["n"], r["body"]["seed"]) for r in server.requests)
    # each item: the n=4 request (1 choice back), then samples 1..3 alone, seeded seed + index
    assert sent == {(4, 10): 5, (1, 11): 5, (1, 12): 5, (1, 13): 5}
    assert server.calls == 20 and caller.stats.calls == 20 and caller.stats.http_requests == 20 and caller.stats.failed == 0
    assert caller.stats.n_honoured is False
    assert texts(outputs) == [[expected(i, seed=10 + c) for c in range(4)] for i in range(5)]
    assert all(len(set(row)) == 4 for row in texts(outputs))

    with FakeOpenAI(responder=echo, honour_n=False) as server:  # n_mode native: no fallback, the missing samples fail
        caller = caller_for(server, n=4, n_mode="native")
        outputs = caller.run([ask(i) for i in range(3)])
    assert server.calls == 3 and caller.stats.failures == {"other": 3}  # one failed request each
    assert [[o.error for o in row] for row in outputs] == [[None] + ["the endpoint returned 1 of 4 choices"] * 3] * 3
    assert [[o.kind for o in row] for row in outputs] == [[None] + ["other"] * 3] * 3


def test_repeat_mode_sends_n_requests_of_one():
    with FakeOpenAI(responder=echo) as server:
        outputs = caller_for(server, n=3, n_mode="repeat", seed=100).run([ask(i) for i in range(4)])
        sent = Counter((r["body"]["messages"][1]["content"], r["body"]["n"], r["body"]["seed"]) for r in server.requests)
    assert sent == {(f"Is answer {i} correct?", 1, 100 + c): 1 for i in range(4) for c in range(3)}
    assert texts(outputs) == [[expected(i, seed=100 + c) for c in range(3)] for i in range(4)]

    with FakeOpenAI(responder=echo) as server:  # no seed: n identical requests (the endpoint samples)
        caller = caller_for(server, n=3, n_mode="repeat")
        outputs = caller.run([ask(0)])
        assert [r["body"] for r in server.requests] == [{"model": "judge", "messages": messages(0), "n": 1}] * 3
    assert texts(outputs) == [[expected(0)] * 3]
    assert (caller.stats.calls, caller.stats.http_requests, caller.stats.n_honoured) == (3, 3, None)  # n was never asked


class NoChoices(FakeOpenAI):
    """A server answering 200 with an empty ``choices`` list (some providers do, e.g. after filtering)."""

    def _completion(self, body: dict) -> dict:
        completion = super()._completion(body)
        completion["choices"] = []
        return completion


def test_an_answer_without_choices_fails_instead_of_asking_forever():
    with NoChoices() as server:
        done = []
        caller = caller_for(server, n=2, max_retries=0)
        worker = threading.Thread(target=lambda: done.append(caller.run([ask(0), ask(1)])), daemon=True)
        worker.start()
        worker.join(15)
        assert not worker.is_alive(), f"still asking after {server.calls} calls"
        # per item: the n=2 request, then each sample alone once
        assert server.calls == 6
    assert [[o.error for o in row] for row in done[0]] == [["the endpoint returned 0 of 1 choices"] * 2] * 2
    assert caller.stats.failures == {"other": 4}


# -- 4. cache ------------------------------------------------------------------------------------
def test_cache_hits_make_no_calls_and_changes_miss(tmp_path):
    path = tmp_path / "calls.sqlite"
    requests = [ask(i) for i in range(6)]
    with FakeOpenAI(responder=echo) as server:
        first = caller_for(server, CallCache(path), n=4, temperature=0.5).run(requests)
        assert server.calls == 6 and cache_rows(path) == 24
        assert not any(o.cached for row in first for o in row)

        caller = caller_for(server, CallCache(path), n=4, temperature=0.5)  # a fresh connection: the rows are on disk
        again = caller.run(requests)
        assert server.calls == 6  # zero new calls
        assert texts(again) == texts(first) == [[expected(i, choice=c) for c in range(4)] for i in range(6)]
        assert all(o.cached and o.ok and o.finish_reason == "stop" for row in again for o in row)
        assert caller.stats.as_dict() == stats_of(samples=24, cache_hits=24)

        fewer = caller_for(server, CallCache(path), n=2, temperature=0.5)  # n=2 after n=4: the first two samples
        assert texts(fewer.run(requests)) == [row[:2] for row in texts(first)]
        assert server.calls == 6 and fewer.stats.cache_hits == 12

        caller_for(server, CallCache(path), n=4, temperature=0.7).run(requests)
        assert server.calls == 12  # temperature changed: every item misses
        changed = requests[:5] + [CallRequest(messages(6), label="item 6")]
        caller_for(server, CallCache(path), n=4, temperature=0.5).run(changed)
        assert server.calls == 13  # one item's messages changed: that item misses
        caller_for(server, CallCache(path), model="other-judge", n=4, temperature=0.5).run(requests)
        assert server.calls == 19  # another model: every item misses
        assert {r["body"]["model"] for r in server.requests[13:]} == {"other-judge"}
        caller_for(server, CallCache(path), n=4, temperature=0.5, name="renamed", max_concurrency=3, timeout=30).run(requests)
        assert server.calls == 19  # the label and how the calls are made are no part of the key


def test_more_samples_than_cached_are_new_draws(tmp_path):
    path = tmp_path / "calls.sqlite"
    with FakeOpenAI(responder=echo) as server:
        caller_for(server, CallCache(path), n=2, seed=7).run([ask(0)])
        outputs = caller_for(server, CallCache(path), n=4, seed=7).run([ask(0)])
        bodies = [(r["body"]["n"], r["body"]["seed"]) for r in server.requests]
    # samples 2 and 3 are asked with a seed of their own, not the seed that drew samples 0 and 1 again
    assert bodies == [(2, 7), (2, 9)]
    assert texts(outputs) == [[expected(0, 7, 0), expected(0, 7, 1), expected(0, 9, 0), expected(0, 9, 1)]]
    assert [o.cached for o in outputs[0]] == [True, True, False, False]


WORKER = r"""
import json, pathlib, sys, time
from lm_eval_speech.calls import CallCache, Caller, CallRequest, config_from_settings

args = json.loads(sys.argv[1])
cache = CallCache(args["cache"])
requests = [CallRequest(m, label=f"item {i}") for i, m in enumerate(args["messages"])]
import openai  # the SDK's import takes a second: outside the timed window
pathlib.Path(args["ready"]).touch()
deadline = time.monotonic() + 60
while not all(pathlib.Path(p).exists() for p in args["barrier"]):  # start calling together
    assert time.monotonic() < deadline, "the other workers never came"
    time.sleep(0.01)
start = time.time()
outputs = Caller(config_from_settings(args["config"]), cache).run(requests)
print(json.dumps({"start": start, "end": time.time(), "texts": [[o.text for o in row] for row in outputs],
                  "errors": [o.error for row in outputs for o in row if o.error]}))
"""


def start_worker(tmp_path: Path, name: str, config: dict, items, cache: Path, barrier=()) -> subprocess.Popen:
    script = tmp_path / "call_worker.py"
    script.write_text(WORKER)
    ready = tmp_path / f"{name}.ready"
    args = {"config": config, "messages": [messages(i) for i in items], "cache": str(cache), "ready": str(ready),
            "barrier": [str(tmp_path / f"{other}.ready") for other in barrier] or [str(ready)]}
    return subprocess.Popen([PYTHON, str(script), json.dumps(args)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_processes_share_one_cache_file(tmp_path):
    path = tmp_path / "shared.sqlite"
    first, second = range(0, 24), range(12, 36)
    # ~1.5 s of writes per worker (0.25 s waves of up to four): longer than the workers' start-up jitter on a
    # loaded machine (importing openai alone takes ~1 s), so their writes overlap
    with FakeOpenAI(responder=echo, latency=0.25) as server:
        config = {"model": "judge", "base_url": server.base_url, "n": 2, "max_concurrency": 4}
        # the name is no part of the cache key; the cache records it as the writer of each row
        workers = [start_worker(tmp_path, name, {**config, "name": name}, items, path, barrier=("a", "b"))
                   for name, items in (("a", first), ("b", second))]
        reports = []
        for worker in workers:
            stdout, stderr = worker.communicate(timeout=120)
            assert worker.returncode == 0, stderr
            assert "Traceback" not in stderr and "locked" not in stderr, stderr
            reports.append(json.loads(stdout.strip().splitlines()[-1]))
        assert max(r["start"] for r in reports) < min(r["end"] for r in reports), "the workers did not call at the same time"
        for report, items in zip(reports, (first, second)):
            assert report["errors"] == []
            assert report["texts"] == [[expected(i, choice=c) for c in range(2)] for i in items]
        assert 36 <= server.answered <= 48  # the 12 shared items may be asked by both
        assert cache_rows(path) == 72
        with closing(sqlite3.connect(str(path))) as db:
            query = "SELECT judge, MIN(created), MAX(created) FROM judge_outputs GROUP BY judge"
            written = {name: (low, high) for name, low, high in db.execute(query)}
        assert written["a"][0] < written["b"][1] and written["b"][0] < written["a"][1], "the writes did not interleave"

        calls = server.calls
        caller = caller_for(server, CallCache(path), n=2, max_concurrency=8)
        union = caller.run([ask(i) for i in range(36)])
        assert server.calls == calls and caller.stats.cache_hits == 72
    assert texts(union) == [[expected(i, choice=c) for c in range(2)] for i in range(36)]


# -- 5. faults are retried to the same answers (accounting: tests/test_calls_accounting.py) -------
def test_retry_after_is_honoured():
    target = canonical_json({"model": "judge", "messages": messages(1), "n": 1})

    def faults(body, attempt):
        return Fault("429", retry_after=1.0) if attempt == 1 and canonical_json(body) == target else None

    with FakeOpenAI(responder=echo, faults=faults) as server:
        caller = caller_for(server, max_retries=2)
        outputs = caller.run([ask(i) for i in range(3)])
        records = [r for r in server.requests if canonical_json(r["body"]) == target]
    assert [(r["attempt"], r["status"], r["fault"]) for r in records] == [(1, 429, "429"), (2, 200, None)]
    waited = records[1]["time"] - records[0]["time"]
    assert 0.95 <= waited < 2.0, waited  # exactly the server's wait, not a backoff of ours on top
    assert texts(outputs) == [[expected(i)] for i in range(3)]
    assert (caller.stats.calls, caller.stats.http_requests, caller.stats.retries) == (3, 4, 1)


def test_sib_metrics_are_identical_with_and_without_faults(sib_open):
    with FakeOpenAI(responder=SIB_VERDICTS) as server:
        judge = {"base_url": server.base_url, "timeout": 1.0, "max_retries": 3}
        clean = evaluate_open(sib_open, judge, log_samples=True)
        bodies = [r["body"] for r in server.requests]
        # a fault seed that hits at least two of the three requests, one of them with a timeout
        for seed in range(500):
            faults = fault_fraction(0.3, kinds=("429", "500", "timeout"), seed=seed, retry_after=0.05, hang=2.5)
            hit = [fault.kind for fault in (faults(body, 1) for body in bodies) if fault]
            if len(hit) >= 2 and "timeout" in hit:
                break
        server.reset_counters()
        server.faults = faults
        faulty = evaluate_open(sib_open, judge, log_samples=True)
        assert sorted(r["fault"] for r in server.requests if r["fault"]) == sorted(hit)
        assert server.answered == 3 and server.calls == 3 + len(hit)
    assert scores(clean) == pytest.approx(SIB_EXPECTED)
    assert faulty["results"] == clean["results"]
    assert [s["filtered_resps"] for s in faulty["samples"][OPEN_EN]] == [s["filtered_resps"] for s in clean["samples"][OPEN_EN]]
    assert judging_block(faulty)["failures"] == judging_block(clean)["failures"] == NO_FAILURES
    assert judging_block(faulty)["calls"] == judging_block(clean)["calls"] == 3
    assert (judging_block(faulty)["http_requests"], judging_block(faulty)["retries"]) == (3 + len(hit), len(hit))


# -- 6. failures ---------------------------------------------------------------------------------
def test_failures_carry_the_reason_and_are_not_cached(tmp_path):
    path = tmp_path / "calls.sqlite"
    with FakeOpenAI(responder=echo, faults=fault_always("500")) as server:
        caller = caller_for(server, CallCache(path), n=3, max_retries=1)
        outputs = caller.run([ask(i) for i in range(4)])
        assert server.calls == 8  # each request and its one retry
        assert caller.stats.as_dict() == stats_of(samples=12, http_requests=8, retries=4, failures={"5xx": 4})
        for output in (o for row in outputs for o in row):
            assert not output.ok and output.text is None and output.kind == "5xx"
            assert output.error.startswith("InternalServerError: Error code: 500")
            assert output.to_json() == {"error": output.error, "kind": "5xx"}
        assert cache_rows(path) == 0

        server.faults = None
        caller = caller_for(server, CallCache(path), n=3, max_retries=1)
        outputs = caller.run([ask(i) for i in range(4)])
        assert server.answered == 4 and caller.stats.cache_hits == 0 and caller.stats.failed == 0
    assert texts(outputs) == [[expected(i, choice=c) for c in range(3)] for i in range(4)]


def test_sib_counts_failed_judge_calls_and_scores_nothing_from_them(sib_open, tmp_path):
    with FakeOpenAI(responder=SIB_VERDICTS, faults=fault_always("500")) as server:
        out = evaluate_open(sib_open, {"base_url": server.base_url, "max_retries": 1}, cache=tmp_path / "c.sqlite")
        assert server.calls == 6
    result = out["results"][OPEN_EN]
    assert result["judge_failed_items,judge"] == 3
    assert (result["unparsed_items,judge"], result["failed_items,judge"]) == (0, 0)
    assert_unscored(out, "no item could be scored (judge_failed_items=3)")
    block = judging_block(out)
    assert (block["judge_failed_items"], block["calls"], block["samples"], block["http_requests"]) == (3, 0, 12, 6)
    assert block["failures"] == block["judges"][0]["failures"] == {**NO_FAILURES, "5xx": 3}  # requests, by kind
    assert cache_rows(tmp_path / "c.sqlite") == 0


def test_sib_counts_unparsed_outputs_and_records_the_judge(sib_open, tmp_path):
    cache = tmp_path / "c.sqlite"
    with FakeOpenAI(responder=lambda body, index: "I think yes") as server:
        out = evaluate_open(sib_open, {"base_url": server.base_url, "seed": 5}, cache=cache)
        prompt_words = sum(len(m["content"].split()) for r in server.requests for m in r["body"]["messages"])
        again = evaluate_open(sib_open, {"base_url": server.base_url, "seed": 5}, cache=cache)
        assert server.calls == 3
    result = out["results"][OPEN_EN]
    assert (result["unparsed_items,judge"], result["judge_failed_items,judge"]) == (3, 0)
    assert_unscored(out, "no item could be scored (unparsed_items=3, unparsed_outputs=12)")
    block = judging_block(out)
    assert {k: block[k] for k in ("unparsed_outputs", "unparsed_items", "judge_failed_items", "model_failed_items", "samples",
                                  "calls", "cache_hits", "failures", "completion_tokens")} == {
        "unparsed_outputs": 12, "unparsed_items": 3, "judge_failed_items": 0, "model_failed_items": 0, "samples": 12,
        "calls": 3, "cache_hits": 0, "failures": {**NO_FAILURES, "unparsable": 12}, "completion_tokens": 12 * 3}
    assert block["prompt_tokens"] == prompt_words > 0
    [judge] = block["judges"]
    assert (judge["name"], judge["model"], judge["backend"], judge["endpoint"]) == (
        "gpt-4o-mini", "gpt-4o-mini", "openai", server.base_url)
    assert judge["sampling"] == {**SIB_SAMPLING, "seed": 5}
    assert (judge["calls"], judge["failures"]["unparsable"], judge["estimated_cost_usd"]) == (3, 12, None)
    assert block["prompt_templates_sha256"] == {
        "open_instruction": hashlib.sha256(judge_prompts.OPEN_ENDED_PROMPT.encode("utf-8")).hexdigest()}
    assert block["cache"] == str(cache)
    # the re-run is served from the cache and says so
    assert {k: judging_block(again)[k] for k in ("calls", "http_requests", "cache_hits", "prompt_tokens", "unparsed_items")} == {
        "calls": 0, "http_requests": 0, "cache_hits": 12, "prompt_tokens": 0, "unparsed_items": 3}


# -- 7. resume after a kill pays no prompt twice -------------------------------------------------
def test_a_killed_run_resumes_without_paying_twice(tmp_path):
    items, answered_first, n = 8, 3, 2
    path = tmp_path / "calls.sqlite"
    allowed: set[str] = set()
    lock = threading.Lock()

    def first_k_then_hang(body, attempt):
        with lock:
            key = canonical_json(body)
            if key in allowed or len(allowed) < answered_first:
                allowed.add(key)
                return None
        return Fault("timeout", hang=600)  # never answered: the server wakes it only on close()

    with FakeOpenAI(responder=echo, latency=0.02, faults=first_k_then_hang) as server:
        config = {"model": "judge", "base_url": server.base_url, "n": n, "max_retries": 0, "timeout": 300.0}
        worker = start_worker(tmp_path, "killed", config, range(items), path)
        try:
            # every body but the first three hangs: once three are answered, no more will be
            wait_for(lambda: server.answered >= answered_first, 60, "the first answers")
            wait_for(lambda: cache_rows(path) == answered_first * n, 20, "the answers to be cached")  # stored as they came
            assert worker.poll() is None, worker.communicate()[1]  # still waiting on the hung requests
        finally:
            os.kill(worker.pid, signal.SIGKILL)
            worker.communicate(timeout=30)
        assert worker.returncode == -signal.SIGKILL
        assert server.answered == answered_first
        answered = answered_first

        server.faults = None
        caller = caller_for(server, CallCache(path), n=n)
        outputs = caller.run([ask(i) for i in range(items)])
        assert caller.stats.cache_hits == answered * n and caller.stats.calls == items - answered
        paid = answered_per_body(server)
    assert len(paid) == items and set(paid.values()) == {1}, paid  # every prompt answered exactly once, across both runs
    assert texts(outputs) == [[expected(i, choice=c) for c in range(n)] for i in range(items)]
    assert cache_rows(path) == items * n


# -- 8. the API key appears nowhere but in the Authorization header ------------------------------
def test_the_api_key_never_leaks(sib_open, tmp_path, monkeypatch, caplog, capfd):
    sentinel = "sk-sentinel-" + hashlib.sha256(str(tmp_path).encode()).hexdigest()[:24]
    monkeypatch.setenv("OPENAI_API_KEY", sentinel)

    def faults(body, attempt):
        text = last_user_text(body)
        if "three fruits" in text:
            return Fault("401")  # the error message echoes the key, as some proxies do
        if "Describe a cat" in text and attempt == 1:
            return Fault("500")  # retried
        return None

    names = ("", "openai", "httpx", "httpx2", "httpcore", "httpcore2", "aiohttp", "lm_eval", "lm_eval_speech")
    loggers = [logging.getLogger(name) for name in names]
    saved = [(lg, lg.level) for lg in loggers]
    for lg in loggers[1:]:
        lg.addHandler(caplog.handler)  # lm_eval's logger does not propagate
        lg.setLevel(logging.DEBUG)
    caplog.set_level(logging.DEBUG)
    cache = tmp_path / "c.sqlite"
    output_dir = tmp_path / "results"
    try:
        with FakeOpenAI(responder=SIB_VERDICTS, faults=faults) as server:
            tracker = EvaluationTracker(output_path=str(output_dir))
            out = evaluate_open(sib_open, {"base_url": server.base_url, "max_retries": 2}, cache=cache, tracker=tracker,
                                log_samples=True)
            headers = [r["headers"].get("authorization") for r in server.requests]
    finally:
        for lg, level in saved:
            lg.setLevel(level)
            lg.removeHandler(caplog.handler)
    samples = out.pop("samples")
    tracker.save_results_aggregated(results=out, samples=samples)
    tracker.save_results_samples(task_name=OPEN_EN, samples=samples[OPEN_EN])

    # the test can fail: the key was really sent, and the fault really echoed it
    assert len(headers) == 4 and set(headers) == {f"Bearer {sentinel}"}
    assert out["results"][OPEN_EN]["judge_failed_items,judge"] == 1
    assert out["results"][OPEN_EN]["inst_level_acc,judge"] == pytest.approx(4 / 5)  # umbrella 2/3 + cat 2/2
    written = sorted(p for p in output_dir.rglob("*.json*") if p.is_file())
    assert {p.name.split("_")[0] for p in written} == {"results", "samples"}
    files = "".join(p.read_text() for p in written)
    assert "Incorrect API key provided: Bearer *** (injected by FakeOpenAI)" in files
    assert "Error code: 401" in caplog.text and "call failed" in caplog.text
    cache_bytes = b"".join(p.read_bytes() for p in tmp_path.glob("c.sqlite*"))
    assert cache_bytes.count(b"['YES', 'YES']") >= 4  # the answers were stored (where a key could have gone)
    assert b"\"sampling\":{\"frequency_penalty\":0" in cache_bytes  # so was the request summary

    captured = capfd.readouterr()
    record_dumps = "\n".join(f"{r.getMessage()} {r.args!r} {r.__dict__!r}" for r in caplog.records)
    places = {
        "results JSON": json.dumps(out, default=handle_non_serializable),
        "samples": json.dumps(samples, default=handle_non_serializable),
        "written files": files,
        "cache file": cache_bytes.decode("latin-1"),
        "logs": caplog.text + record_dumps,
        "stdout/stderr": captured.out + captured.err,
    }
    for place, text in places.items():
        assert sentinel not in text, place
        assert sentinel[3:20] not in text, place  # not even a fragment


# -- 9. bounded concurrency ----------------------------------------------------------------------
def test_concurrency_is_capped_and_used():
    with FakeOpenAI(responder=echo, latency=0.3) as server:
        started = time.monotonic()
        caller_for(server, max_concurrency=4).run([ask(i) for i in range(12)])
        elapsed = time.monotonic() - started
        assert server.max_in_flight == 4
        assert 0.9 <= elapsed < 3.0  # four at a time: three waves

    with FakeOpenAI(responder=echo, latency=0.3) as server:
        started = time.monotonic()
        outputs = caller_for(server, max_concurrency=32).run([ask(i) for i in range(64)])
        elapsed = time.monotonic() - started
        assert 8 <= server.max_in_flight <= 32  # it grew past its start of 4 (how far depends on the machine's load)
        assert elapsed < 64 * 0.3 / 4 + 1, elapsed  # serial would take 19.2 s
    assert texts(outputs) == [[expected(i)] for i in range(64)]
