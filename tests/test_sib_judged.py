"""SpeechInstructBench open-ended and adjustment: prompts, parsing, majority and metrics.

The parsing and majority rules are the authors' (``evaluator/open.py``, ``evaluator/adjust.py``);
the expected numbers are worked out by hand next to each case. End-to-end tests replay model
answers (``--model responses``) and script the judge through a real local OpenAI-style server.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import lm_eval
import pytest
from lm_eval.tasks import TaskManager

from lm_eval_speech.calls import CallConfigError
from lm_eval_speech.data import DataError
from lm_eval_speech.tasks.speechinstruct import judge_prompts
from lm_eval_speech.tasks.speechinstruct.judged import (
    fill_prompt,
    majority_adjustment,
    majority_open_ended,
)

from builders import write_sib_judged
from conftest import TASKS_DIR
from fake_openai import FakeOpenAI

# SHA-256 of the runtime strings of evaluator/judge_prompts.py at f01f954 (exec'd from the upstream file).
UPSTREAM_SHA256 = {
    "OPEN_ENDED_PROMPT": "5927b48b59272ef7bcdf60302d69a26b8668787f5e9cdea222395a8aac6b0ff6",
    "ADJUSTMENT_PROMPT": "9c605821a23f6a4d72ac1df959df32b1036a05fce426df4157e8275e44d46b95",
}
ADJUST_YES_NO_YES = '{"follow_after_adjust": "YES", "follow_before_adjust": "NO", "after_adjust_content_correct": "YES"}'
ADJUST_YES_YES_NO = '{"follow_after_adjust": "YES", "follow_before_adjust": "YES", "after_adjust_content_correct": "NO"}'
ADJUST_NO_YES_NO = '{"follow_after_adjust": "NO", "follow_before_adjust": "YES", "after_adjust_content_correct": "NO"}'


@pytest.fixture(scope="module")
def judged_data(tmp_path_factory) -> Path:
    return write_sib_judged(tmp_path_factory.mktemp("sib-judged"))


# -- prompts -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(UPSTREAM_SHA256))
def test_judge_prompts_are_the_authors_bytes(name):
    text = getattr(judge_prompts, name)
    assert hashlib.sha256(text.encode("utf-8")).hexdigest() == UPSTREAM_SHA256[name]


def test_prompt_is_filled_by_chained_replace_in_the_authors_order():
    doc = {"prompt": "say {response}", "decomposed_questions": "1. Q?"}
    # {prompt} first: a prompt containing "{response}" has it replaced too, as upstream.
    filled = fill_prompt("P={prompt} Q={decompose_question} R={response}", doc, "ans {x}")
    assert filled == "P=say ans {x} Q=1. Q? R=ans {x}"
    no_questions = fill_prompt("P={prompt} R={response} {decompose_question}", {"prompt": "p", "decomposed_questions": None}, "r")
    assert no_questions == "P=p R=r {decompose_question}"
    # The JSON braces of the adjustment prompt survive (str.replace, not str.format).
    assert '"follow_after_adjust": "YES" or "NO"' in fill_prompt(judge_prompts.ADJUSTMENT_PROMPT, {"prompt": "x"}, "y")


# -- open-ended majority (open.py get_majority_scores) --------------------------------------
@pytest.mark.parametrize(
    "texts, majority, unreadable",
    [
        (["['YES', 'NO']"] * 4, ["YES", "NO"], 0),
        # a 2-2 tie goes to the first value seen (statistics.mode on Python >= 3.8)
        (["['YES']", "['NO']", "['NO']", "['YES']"], ["YES"], 0),
        (["['NO']", "['YES']", "['YES']", "['NO']"], ["NO"], 0),
        # only the longest lists vote
        (["['YES', 'YES', 'NO']", "['NO']", "['NO']", "['NO']"], ["YES", "YES", "NO"], 0),
        # code fences and bare words are not Python literals: dropped by default
        (["```\n['YES']\n```", "[YES, NO]", "['NO', 'NO']", "not a list"], ["NO", "NO"], 3),
        (["'YES'", "{'a': 1}", "['YES']", "['NO']"], ["YES"], 2),
        # nothing usable: the item is skipped (None)
        (["I think yes", "```python\n['YES']\n```", "", "YES"], None, 4),
        # empty lists give an empty majority, which upstream skips too
        (["[]", "[]", "[]", "[]"], None, 0),
        # unhashable entries would crash upstream's statistics.mode: skipped
        (["[['YES']]", "[['YES']]", "['NO']", "['NO']"], None, 0),
    ],
)
def test_open_ended_majority(texts, majority, unreadable):
    assert majority_open_ended(texts) == (majority, unreadable)


# -- adjustment majority (adjust.py) --------------------------------------------------------
def test_adjustment_majority_per_field_first_seen_on_ties():
    texts = [ADJUST_YES_NO_YES, ADJUST_NO_YES_NO, ADJUST_NO_YES_NO, ADJUST_YES_NO_YES]
    assert majority_adjustment(texts) == (
        {"follow_after_adjust": "YES", "follow_before_adjust": "NO", "after_adjust_content_correct": "YES"},
        0,
    )


def test_adjustment_partial_object_contributes_its_earlier_fields():
    # Upstream appends field by field inside one try: a KeyError on the 2nd field leaves the 1st.
    partial = '{"follow_after_adjust": "NO"}'
    texts = [partial, partial, ADJUST_YES_YES_NO, "```json\n" + ADJUST_YES_YES_NO + "\n```"]
    # follow_after_adjust: [NO, NO, YES] -> NO; the others: [YES] / [NO]; the fenced one is unreadable
    assert majority_adjustment(texts) == (
        {"follow_after_adjust": "NO", "follow_before_adjust": "YES", "after_adjust_content_correct": "NO"},
        3,
    )


def test_adjustment_unreadable_outputs_skip_the_item():
    assert majority_adjustment(["[1, 2]", '"YES"', "```json\n{}\n```", "{}"]) == (None, 4)


# -- end to end ------------------------------------------------------------------------------
def _responses(path: Path, task: str, answers: list) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        for doc_id, answer in enumerate(answers):
            line = {"task": task, "doc_id": doc_id}
            line.update({"error": answer[1]} if isinstance(answer, tuple) else {"response": answer})
            handle.write(json.dumps(line, ensure_ascii=False) + "\n")


def _judge_by_answer(script: dict):
    """Judge outputs chosen by the model answer quoted in the judge prompt: script[answer][choice]."""

    def responder(body: dict, index: int) -> str:
        user = body["messages"][-1]["content"]
        for answer, outputs in script.items():
            if f"***AI Assistant's Answer:***\n{answer}" in user:
                return outputs[index % len(outputs)]
        raise AssertionError(f"unscripted judge prompt: {user[-200:]}")

    return responder


def _evaluate(tasks, responses: Path, data_dir: Path, server: FakeOpenAI, cache: Path, **metadata):
    manager = TaskManager(
        include_path=str(TASKS_DIR),
        include_defaults=False,
        metadata={"data_dir": str(data_dir), "judge": {"base_url": server.base_url}, "judge_cache": str(cache), **metadata},
    )
    return lm_eval.simple_evaluate(
        model="responses", model_args={"path": str(responses)}, tasks=tasks, task_manager=manager, bootstrap_iters=0, log_samples=True
    )


def _metrics(results: dict, task: str) -> dict:
    return {k.split(",")[0]: v for k, v in results["results"][task].items() if k.endswith(",judge")}


OPEN_SCRIPT = {
    # item 1 (3 questions): majority [YES, YES, NO] -> prompt F, 2/3 yes
    "rain answer": ["['YES', 'YES', 'NO']", "['YES', 'NO', 'NO']", "['YES', 'YES', 'YES']", "['NO', 'YES', 'NO']"],
    # item 2 (2 questions): 2-2 tie on the 2nd question -> first seen (YES): prompt T, 2/2
    "cat answer": ["['YES', 'YES']", "['YES', 'NO']", "['YES', 'NO']", "['YES', 'YES']"],
    # item 3: nothing parseable -> dropped as upstream, counted
    "fruit answer": ["```\n['YES', 'YES']\n```", "Sure! [YES, YES]", "YES YES", "```python\n['YES']\n```"],
}


def test_open_ended_metrics_match_hand_computed(judged_data, tmp_path):
    responses = tmp_path / "answers.jsonl"
    _responses(responses, "speechinstruct_open_en", ["rain answer", "cat answer", "fruit answer"])
    with FakeOpenAI(responder=_judge_by_answer(OPEN_SCRIPT)) as server:
        results = _evaluate(["speechinstruct_open_en"], responses, judged_data, server, tmp_path / "cache.sqlite")
        assert server.calls == 3  # one request with n=4 per item
        # the three calls run concurrently: find item 1's by its content
        [body] = [r["body"] for r in server.requests if "rain answer" in r["body"]["messages"][1]["content"]]
    found = _metrics(results, "speechinstruct_open_en")
    # scored items: 1 and 2. P.Acc = 1/2; I.Acc = (2 + 2) / (3 + 2)
    assert found["prompt_level_acc"] == pytest.approx(1 / 2)
    assert found["inst_level_acc"] == pytest.approx(4 / 5)
    assert (found["unparsed_items"], found["judge_failed_items"], found["failed_items"]) == (1, 0, 0)
    # the authors' call, exactly
    assert body["model"] == "gpt-4o-mini"
    assert {k: body[k] for k in ("n", "temperature", "top_p", "max_tokens", "frequency_penalty", "presence_penalty")} == {
        "n": 4, "temperature": 0.5, "top_p": 0.95, "max_tokens": 1024, "frequency_penalty": 0, "presence_penalty": 0,
    }
    assert body["messages"][0] == {"role": "system", "content": judge_prompts.SYSTEM_MESSAGE}
    assert body["messages"][1]["content"] == (
        judge_prompts.OPEN_ENDED_PROMPT.replace("{prompt}", "Write a two-line poem about rain that mentions an umbrella.")
        .replace("{decompose_question}", "1. Is the text a poem about rain?\n2. Does it have two lines?\n3. Does it mention an umbrella?")
        .replace("{response}", "rain answer")
    )
    judging = results["configs"]["speechinstruct_open_en"]["metadata"]["lm_eval_speech"]["judging"]
    assert (judging["calls"], judging["samples"], judging["unparsed_items"], judging["unparsed_outputs"]) == (3, 12, 1, 4)
    sample = results["samples"]["speechinstruct_open_en"][1]["filtered_resps"][0]
    assert sample["judge_outputs"] == OPEN_SCRIPT["cat answer"] and sample["majority"] == ["YES", "YES"]


def test_lenient_parsing_reads_fences_and_bare_words(judged_data, tmp_path):
    responses = tmp_path / "answers.jsonl"
    _responses(responses, "speechinstruct_open_en", ["rain answer", "cat answer", "fruit answer"])
    with FakeOpenAI(responder=_judge_by_answer(OPEN_SCRIPT)) as server:
        results = _evaluate(
            ["speechinstruct_open_en"], responses, judged_data, server, tmp_path / "cache.sqlite", judge_parsing="lenient"
        )
    found = _metrics(results, "speechinstruct_open_en")
    # item 3 now reads [YES, YES] x3 (the 1-long python list loses on length): prompt T, 2/2
    assert found["prompt_level_acc"] == pytest.approx(2 / 3)
    assert found["inst_level_acc"] == pytest.approx(6 / 7)
    assert found["unparsed_items"] == 0
    assert results["configs"]["speechinstruct_open_en"]["metadata"]["lm_eval_speech"]["judge_parsing"] == "lenient"


ADJUST_SCRIPT = {
    "sun fact": [ADJUST_YES_NO_YES] * 3 + [ADJUST_NO_YES_NO],  # IAR 1, ECR 0
    "three tips": [ADJUST_YES_YES_NO, ADJUST_YES_YES_NO, ADJUST_YES_NO_YES, ADJUST_YES_NO_YES],  # tie -> first: IAR 0, ECR 1
}


def test_adjustment_metrics_match_hand_computed(judged_data, tmp_path):
    responses = tmp_path / "answers.jsonl"
    # the third answer failed at generation: counted, not judged, not scored
    _responses(responses, "speechinstruct_adjust_en", ["sun fact", "three tips", (None, "CUDA out of memory")])
    with FakeOpenAI(responder=_judge_by_answer(ADJUST_SCRIPT)) as server:
        results = _evaluate(["speechinstruct_adjust_en"], responses, judged_data, server, tmp_path / "cache.sqlite")
        assert server.calls == 2
    found = _metrics(results, "speechinstruct_adjust_en")
    assert found["iar"] == pytest.approx(1 / 2)
    assert found["ecr"] == pytest.approx(1 / 2)
    assert (found["failed_items"], found["unparsed_items"], found["judge_failed_items"]) == (1, 0, 0)
    user = server.requests[0]["body"]["messages"][1]["content"]
    assert "{decompose_question}" not in judge_prompts.ADJUSTMENT_PROMPT and "***AI Assistant's Answer:***\n" in user


def test_chinese_tasks_read_the_cn_files(judged_data, tmp_path):
    responses = tmp_path / "answers.jsonl"
    _responses(responses, "speechinstruct_open_zh", ["春天来了。", "蓝 大 深"])
    with FakeOpenAI(responder=lambda body, i: "['YES', 'YES']") as server:
        results = _evaluate(["speechinstruct_open_zh"], responses, judged_data, server, tmp_path / "cache.sqlite")
        prompts = [r["body"]["messages"][1]["content"] for r in server.requests]
        assert server.calls == 2 and any("1. 内容是否关于春天？\n2. 是否只有一句话？" in p for p in prompts)
    found = _metrics(results, "speechinstruct_open_zh")
    assert found["prompt_level_acc"] == 1.0 and found["inst_level_acc"] == 1.0
    data = results["configs"]["speechinstruct_open_zh"]["metadata"]["lm_eval_speech"]["data"]
    assert data["file"] == "open-ended/open_ended_cn.jsonl" and data["items"] == 2


def test_open_ended_item_without_questions_is_an_error_naming_it(judged_data, tmp_path):
    root = tmp_path / "sib"
    (root / "open-ended").mkdir(parents=True)
    good = {"key": 7, "prompt": "p", "decomposed_questions": "1. q?", "audio_path": "x.wav"}
    bad = {"key": 8, "prompt": "p2", "audio_path": "y.wav"}
    (root / "open-ended" / "open_ended_en.jsonl").write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata={"data_dir": str(root), "load_audio": False})
    with pytest.raises(DataError, match=r"open_ended_en.jsonl line 2 \(key=8\).*decomposed_questions"):
        manager.load(["speechinstruct_open_en"])


def test_more_than_one_judge_is_refused(judged_data):
    manager = TaskManager(
        include_path=str(TASKS_DIR), include_defaults=False,
        metadata={"data_dir": str(judged_data), "judges": [{"model": "a"}, {"model": "b"}], "judge_cache": False},
    )
    with pytest.raises(CallConfigError, match="1 judge"):
        manager.load(["speechinstruct_adjust_en"])


def test_group_lists_every_subset(task_manager):
    assert {"speechinstruct_open_en", "speechinstruct_open_zh", "speechinstruct_adjust_en", "speechinstruct_adjust_zh"} <= set(
        task_manager.all_tasks
    )


def test_questions_typed_as_a_list_are_numbered_for_the_judge():
    from lm_eval_speech.tasks.speechinstruct.judged import numbered_questions

    assert numbered_questions(["Is it a poem?", "Does it rhyme? "]) == "1. Is it a poem?\n2. Does it rhyme?"
    assert numbered_questions(["1. Is it a poem?", "2) Does it rhyme?"]) == "1. Is it a poem?\n2) Does it rhyme?"
    assert numbered_questions(["1. a?", "3. b?"]) == "1. 1. a?\n2. 3. b?"  # not its own numbering: numbered anew
    assert numbered_questions("1. Is it a poem?") == "1. Is it a poem?"
    assert numbered_questions(None) is None


def test_an_older_uploads_list_of_questions_loads(tmp_path):
    root = tmp_path / "sib"
    (root / "open-ended").mkdir(parents=True)
    rows = [
        {"key": 1, "prompt": "p", "decomposed_questions": ["Is it short?", "Is it kind?"], "audio_path": "x.wav"},
        {"key": 2, "prompt": "q", "decomposed_questions": "1. Is it long?", "audio_path": "y.wav"},
    ]
    (root / "open-ended" / "open_ended_en.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False,
                          metadata={"data_dir": str(root), "load_audio": False, "judge_cache": False,
                                    "judge": {"base_url": "http://127.0.0.1:9/v1", "preflight": False}})
    task = manager.load(["speechinstruct_open_en"])["tasks"]["speechinstruct_open_en"]
    assert [d["decomposed_questions"] for d in task.dataset["test"]] == ["1. Is it short?\n2. Is it kind?", "1. Is it long?"]
    rows[0]["decomposed_questions"] = ["Is it short?", 5]
    (root / "open-ended" / "open_ended_en.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with pytest.raises(DataError, match=r"line 1 \(key=1\): field 'decomposed_questions' is a list holding"):
        manager.load(["speechinstruct_open_en"])
