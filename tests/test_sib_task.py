"""SpeechInstructBench closed-ended tasks end to end: data, response reading, metrics, provenance.

Responses are replayed (``--model responses``); every expected number is worked out by hand
from the authors' checker rules in the comments next to it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import lm_eval
import pytest
from lm_eval.tasks import TaskManager

from lm_eval_speech.data import DataError

from conftest import TASKS_DIR

# Fixture items (tests/builders.py SIB_ITEMS), English:
#  0 no_comma | 1 number_sentences>=3 + existence "river" | 2 title | 3 bullets==3 + end "Any other questions?"
EN_RESPONSES = [
    "Sure, here it is:\nThe sea is calm and blue",  # strict F (comma); loose T (first line removed)
    "Paris is large. The Seine river runs through it.",  # 2 sentences: F; "river": T (strict = loose)
    "<<The Sea>>\nOnce upon a time.",  # T / T
    "* apple\n* pear\n* fig\nAny other questions?\nHope this helps",  # strict [T, F]; loose [T, T] (last line removed)
]
EN_EXPECTED = {
    "prompt_level_strict_acc": 1 / 4,
    "prompt_level_loose_acc": 3 / 4,
    "inst_level_strict_acc": 3 / 6,
    "inst_level_loose_acc": 5 / 6,
    "prompt_level_acc": (1 / 4 + 3 / 4) / 2,
    "inst_level_acc": (3 / 6 + 5 / 6) / 2,
}
# Chinese: 0 no_comma | 1 number_sentences>=3 + existence 长城 | 2 title | 3 number_words < 20
ZH_RESPONSES = [
    "大海很蓝，很深。",  # the full-width comma counts (SIB change): F
    "北京很大。长城很长。故宫很美",  # 3 sentences split on 。 (the unterminated tail counts): T; 长城: T
    "《大海》\n从前有一片海。",  # 《》 is a title (SIB change): T
    "天空是蓝色的 because of Rayleigh scattering and many many other English words here today",  # 6 CJK chars < 20: T
]
ZH_EXPECTED = {
    "prompt_level_strict_acc": 3 / 4,
    "prompt_level_loose_acc": 3 / 4,
    "inst_level_strict_acc": 4 / 5,
    "inst_level_loose_acc": 4 / 5,
    "prompt_level_acc": 3 / 4,
    "inst_level_acc": 4 / 5,
}


def write_responses(path: Path, responses, task: str | None = None) -> Path:
    with open(path, "a", encoding="utf-8") as handle:
        for doc_id, response in enumerate(responses):
            line = {"doc_id": doc_id, "response": response} if isinstance(response, str) else {"doc_id": doc_id, **response}
            if task:
                line["task"] = task
            handle.write(json.dumps(line, ensure_ascii=False) + "\n")
    return path


def evaluate(tasks, responses_path: Path, data_dir: Path, **metadata):
    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata={"data_dir": str(data_dir), **metadata})
    return lm_eval.simple_evaluate(
        model="responses", model_args={"path": str(responses_path)}, tasks=tasks, task_manager=manager, bootstrap_iters=0
    )


def metrics(results: dict, task: str) -> dict:
    return {k.split(",")[0]: v for k, v in results["results"][task].items() if k.endswith(",sib")}


def assert_metrics(found: dict, expected: dict):
    for name, value in expected.items():
        assert found[name] == pytest.approx(value, abs=1e-12), name


def test_english_and_chinese_metrics_match_hand_computed(sib_data, tmp_path):
    path = write_responses(tmp_path / "r.jsonl", EN_RESPONSES, "speechinstruct_close_en_standard")
    write_responses(path, ZH_RESPONSES, "speechinstruct_close_zh_standard")
    results = evaluate(["speechinstruct_close_en_standard", "speechinstruct_close_zh_standard"], path, sib_data)
    assert_metrics(metrics(results, "speechinstruct_close_en_standard"), EN_EXPECTED)
    assert_metrics(metrics(results, "speechinstruct_close_zh_standard"), ZH_EXPECTED)
    assert metrics(results, "speechinstruct_close_en_standard")["failed_items"] == 0


def test_group_reports_each_variant_and_their_mean(sib_data, tmp_path):
    path = tmp_path / "r.jsonl"
    for variant in ("standard", "background", "accent", "paralinguistics"):
        write_responses(path, EN_RESPONSES, f"speechinstruct_close_en_{variant}")
    write_responses(path, ["", "", "", ""], "speechinstruct_close_en_disfluency")  # empty: nothing followed
    results = evaluate(["speechinstruct_close_en"], path, sib_data)
    assert set(results["results"]) == {"speechinstruct_close_en"} | {
        f"speechinstruct_close_en_{v}" for v in ("standard", "background", "accent", "paralinguistics", "disfluency")
    }
    assert metrics(results, "speechinstruct_close_en_disfluency")["prompt_level_acc"] == 0
    group = results["results"]["speechinstruct_close_en"]
    assert group["prompt_level_acc,sib"] == pytest.approx(4 * EN_EXPECTED["prompt_level_acc"] / 5)
    assert group["inst_level_acc,sib"] == pytest.approx(4 * EN_EXPECTED["inst_level_acc"] / 5)


def test_response_tags_are_stripped_as_upstream(sib_data, tmp_path):
    # close.py cuts a leading <1>, <2> or <3> (then strips): "<3>* a" becomes the bullet "* a".
    bullets = "* a\n* b\n* c\nAny other questions?"
    responses = ["<1>  a b", "<2>\nParis. Rome. The river.", "<3> <<T>>", "<3>" + bullets]
    found = metrics(
        evaluate(["speechinstruct_close_en_standard"], write_responses(tmp_path / "a.jsonl", responses), sib_data),
        "speechinstruct_close_en_standard",
    )
    assert found["prompt_level_strict_acc"] == 1.0
    # "<4>" is no tag: "<4>* a" is not a bullet line, so only 2 of the 3 bullets are found.
    responses[3] = "<4>" + bullets
    found = metrics(
        evaluate(["speechinstruct_close_en_standard"], write_responses(tmp_path / "b.jsonl", responses), sib_data),
        "speechinstruct_close_en_standard",
    )
    assert found["prompt_level_strict_acc"] == 0.75


def test_failed_generation_is_counted_and_left_out(sib_data, tmp_path):
    responses = [EN_RESPONSES[0], {"response": None, "error": "timeout after 5 tries"}, EN_RESPONSES[2], EN_RESPONSES[3]]
    path = write_responses(tmp_path / "r.jsonl", responses)
    found = metrics(evaluate(["speechinstruct_close_en_standard"], path, sib_data), "speechinstruct_close_en_standard")
    assert found["failed_items"] == 1
    assert found["prompt_level_strict_acc"] == pytest.approx(1 / 3)  # docs 0, 2, 3: F, T, F
    assert found["inst_level_loose_acc"] == pytest.approx(4 / 4)  # [T], [T], [T, T]


def _one_file_dataset(root: Path, items: list[dict], audio_from: Path) -> Path:
    closed = root / "closed-ended"
    (closed / "en").mkdir(parents=True)
    for item in items:
        shutil.copy(audio_from, closed / "en" / f"{item['key']}.wav")
        item.setdefault("audio_path", f"en/{item['key']}.wav")
    (closed / "closed_standard_en.jsonl").write_text("\n".join(json.dumps(i) for i in items), encoding="utf-8")
    return root


def test_items_sharing_a_prompt_get_the_last_response(sib_data, tmp_path):
    clip = sib_data / "closed-ended" / "en" / "standard" / "1.wav"
    items = [
        {"key": 1, "prompt": "P", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]},
        {"key": 2, "prompt": "Q", "instruction_id_list": ["detectable_format:title"], "kwargs": [{}]},
        {"key": 3, "prompt": "P", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]},
    ]
    root = _one_file_dataset(tmp_path / "data", items, clip)
    path = write_responses(tmp_path / "r.jsonl", ["x, y", "<<t>>", "x y"])
    results = evaluate(["speechinstruct_close_en_standard"], path, root)
    # close.py keys responses by prompt: item 1 is scored on item 3's comma-free answer.
    assert metrics(results, "speechinstruct_close_en_standard")["prompt_level_strict_acc"] == 1.0
    provenance = results["configs"]["speechinstruct_close_en_standard"]["metadata"]["lm_eval_speech"]
    assert provenance["data"]["items_sharing_a_prompt"] == 2


def test_invalid_items_are_an_error_or_skipped_and_counted(sib_data, tmp_path):
    clip = sib_data / "closed-ended" / "en" / "standard" / "1.wav"
    items = [
        {"key": 1, "prompt": "P", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]},
        # no relation: upstream would pick "less than" or "at least" at random
        {"key": 2, "prompt": "Q", "instruction_id_list": ["length_constraints:number_words"], "kwargs": [{"num_words": 5}]},
        {"key": 3, "prompt": "R", "instruction_id_list": ["detectable_format:title"], "kwargs": [{}, {}]},
    ]
    root = _one_file_dataset(tmp_path / "data", items, clip)
    path = write_responses(tmp_path / "r.jsonl", ["a b", "<<t>>"])
    with pytest.raises(DataError) as err:
        evaluate(["speechinstruct_close_en_standard"], path, root)
    message = str(err.value)
    assert "2 invalid item(s)" in message
    assert "line 2 (key=2)" in message and "relation" in message
    assert "line 3 (key=3)" in message and "1 instruction ids but 2 kwargs" in message

    results = evaluate(["speechinstruct_close_en_standard"], path, root, invalid_items="skip")
    assert results["n-samples"]["speechinstruct_close_en_standard"]["original"] == 1
    provenance = results["configs"]["speechinstruct_close_en_standard"]["metadata"]["lm_eval_speech"]
    assert provenance["data"]["skipped_invalid_items"] == 2
    assert provenance["data"]["items_in_file"] == 3


def test_missing_audio_names_the_file_and_item(sib_data, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(sib_data, root)
    (root / "closed-ended" / "cn" / "standard" / "2.wav").unlink()
    path = write_responses(tmp_path / "r.jsonl", ZH_RESPONSES)
    with pytest.raises(DataError) as err:
        evaluate(["speechinstruct_close_zh_standard"], path, root)
    assert "line 2 (key=2)" in str(err.value)
    assert "cn/standard/2.wav" in str(err.value)


def test_scoring_without_audio(sib_data, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(sib_data, root, ignore=shutil.ignore_patterns("*.wav", "*.flac", "*.ogg"))
    path = write_responses(tmp_path / "r.jsonl", EN_RESPONSES)
    results = evaluate(["speechinstruct_close_en_standard"], path, root, load_audio=False)
    assert_metrics(metrics(results, "speechinstruct_close_en_standard"), EN_EXPECTED)


def test_results_carry_provenance(sib_data, tmp_path):
    path = write_responses(tmp_path / "r.jsonl", EN_RESPONSES)
    results = evaluate(["speechinstruct_close_en_standard"], path, sib_data)
    provenance = results["configs"]["speechinstruct_close_en_standard"]["metadata"]["lm_eval_speech"]
    assert provenance["package_version"]
    assert "SpeechInstructBench@34f7681" in provenance["checkers"]
    assert len(provenance["prompt_sha256"]) == 64
    data = provenance["data"]
    assert data["source"] == "local" and data["data_dir"] == str(sib_data.resolve())
    assert data["file"] == "closed-ended/closed_standard_en.jsonl"
    assert len(data["sha256"]) == 64 and data["items"] == 4 and data["skipped_invalid_items"] == 0


def test_unknown_data_dir_is_an_error(tmp_path):
    path = write_responses(tmp_path / "r.jsonl", EN_RESPONSES)
    with pytest.raises(DataError, match="is not a directory"):
        evaluate(["speechinstruct_close_en_standard"], path, tmp_path / "nowhere")


def test_prompt_is_the_fixed_inference_prompt(sib_data, tmp_path):
    path = write_responses(tmp_path / "r.jsonl", EN_RESPONSES)
    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata={"data_dir": str(sib_data)})
    results = lm_eval.simple_evaluate(
        model="responses", model_args={"path": str(path)}, tasks=["speechinstruct_close_en_standard"],
        task_manager=manager, bootstrap_iters=0, log_samples=True, limit=1,
    )
    context = results["samples"]["speechinstruct_close_en_standard"][0]["arguments"][0][0]
    # The instruction is heard, never shown: the text is the authors' fixed prompt after the clip.
    assert context == "<audio>You are a helpful AI assistant. Please answer the question based on the provided audio."
