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


def evaluate(tasks, responses_path: Path, data_dir, **metadata):
    data_dir = data_dir if isinstance(data_dir, dict) else str(data_dir)
    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata={"data_dir": data_dir, **metadata})
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


# IFEval's HF layout: every argument key present, None where unused (and falsy values dropped)
HF_NULLS = dict.fromkeys(
    ("capital_frequency", "capital_relation", "end_phrase", "first_word", "forbidden_words", "frequency", "keyword",
     "keywords", "language", "let_frequency", "let_relation", "letter", "nth_paragraph", "num_bullets",
     "num_highlights", "num_paragraphs", "num_placeholders", "num_sections", "num_sentences", "num_words",
     "postscript_marker", "prompt_to_repeat", "relation", "section_spliter")
)
DRAWING_ITEMS = [
    {"key": 1, "prompt": "P", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]},
    # no relation: upstream picks "less than" or "at least" at random
    {"key": 2, "prompt": "Q", "instruction_id_list": ["length_constraints:number_words"], "kwargs": [{"num_words": 5}]},
    # Google's IFEval has letter "#": upstream replaces it with a random letter
    {
        "key": 3, "prompt": "R", "instruction_id_list": ["keywords:letter_frequency", "keywords:existence"],
        "kwargs": [
            {**HF_NULLS, "letter": "#", "let_frequency": 4, "let_relation": "at least"}, {**HF_NULLS, "keywords": ["river"]},
        ],
    },
    {"key": 4, "prompt": "S", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [dict(HF_NULLS)]},
]
# 1: T | 2: 3 words, "less than 5" T, "at least 5" F | 3: the letter r 4 times (only r), "river" T | 4: T
DRAWING_RESPONSES = ["a b", "a b c", "river river", "x y"]


def _evaluate_with_samples(path, root, **metadata):
    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata={"data_dir": str(root), **metadata})
    return lm_eval.simple_evaluate(
        model="responses", model_args={"path": str(path)}, tasks=["speechinstruct_close_en_standard"],
        task_manager=manager, bootstrap_iters=0, log_samples=True,
    )


def test_drawn_arguments_are_scored_seeded_recorded_and_bounded(sib_data, tmp_path):
    clip = sib_data / "closed-ended" / "en" / "standard" / "1.wav"
    root = _one_file_dataset(tmp_path / "data", [dict(i) for i in DRAWING_ITEMS], clip)
    path = write_responses(tmp_path / "r.jsonl", DRAWING_RESPONSES)
    first = _evaluate_with_samples(path, root)
    task = "speechinstruct_close_en_standard"
    found = metrics(first, task)
    assert first["n-samples"][task]["original"] == 4  # every item scored, as upstream scores them
    assert found["drawn_items"] == 2 and found["drawn_instructions"] == 2
    # Prompt level, strict: items 1 and 4 pass, 2 and 3 pass for some draws and fail for others.
    assert found["prompt_level_strict_acc_draw_min"] == 2 / 4 and found["prompt_level_strict_acc_draw_max"] == 4 / 4
    assert found["inst_level_strict_acc_draw_min"] == 3 / 5 and found["inst_level_strict_acc_draw_max"] == 5 / 5
    for metric in ("prompt_level_acc", "inst_level_acc", "prompt_level_strict_acc", "inst_level_loose_acc"):
        assert found[f"{metric}_draw_min"] <= found[metric] <= found[f"{metric}_draw_max"], metric
    draws = {s["doc"]["key"]: json.loads(s["doc"]["draws"]) for s in first["samples"][task]}
    assert draws[1] == draws[4] == {"strict": [{}], "loose": [{}]}
    assert {d["relation"] for d in (draws[2]["strict"][0], draws[2]["loose"][0])} <= {"less than", "at least"}
    assert set(draws[3]["strict"][0]) == {"letter"} and draws[3]["strict"][1] == {}
    provenance = first["configs"][task]["metadata"]["lm_eval_speech"]["draws"]
    assert provenance == {"policy": "draw", "seed": 0, "items_with_drawn_arguments": 2, "instructions_with_drawn_arguments": 2}
    # The same data and seed: the same draws and numbers; another seed draws anew within the same bounds.
    again = _evaluate_with_samples(path, root)
    assert metrics(again, task) == found
    assert [s["doc"]["draws"] for s in again["samples"][task]] == [s["doc"]["draws"] for s in first["samples"][task]]
    other = _evaluate_with_samples(path, root, draw_seed=7)
    assert [s["doc"]["draws"] for s in other["samples"][task]] != [s["doc"]["draws"] for s in first["samples"][task]]
    assert {k: v for k, v in metrics(other, task).items() if "draw_m" in k} == {k: v for k, v in found.items() if "draw_m" in k}


def test_without_drawn_arguments_the_bounds_are_the_value(sib_data, tmp_path):
    found = metrics(evaluate(["speechinstruct_close_en_standard"], write_responses(tmp_path / "r.jsonl", EN_RESPONSES), sib_data),
                    "speechinstruct_close_en_standard")
    assert found["drawn_items"] == 0
    for metric in EN_EXPECTED:
        assert found[f"{metric}_draw_min"] == found[metric] == found[f"{metric}_draw_max"], metric


def test_drawing_items_can_be_skipped_and_counted_or_refused(sib_data, tmp_path):
    clip = sib_data / "closed-ended" / "en" / "standard" / "1.wav"
    root = _one_file_dataset(tmp_path / "data", [dict(i) for i in DRAWING_ITEMS], clip)
    path = write_responses(tmp_path / "r.jsonl", ["a b", "x y"])
    results = evaluate(["speechinstruct_close_en_standard"], path, root, invalid_items="skip")
    assert results["n-samples"]["speechinstruct_close_en_standard"]["original"] == 2
    provenance = results["configs"]["speechinstruct_close_en_standard"]["metadata"]["lm_eval_speech"]
    assert provenance["data"]["skipped_invalid_items"] == 2 and provenance["data"]["items_in_file"] == 4
    assert metrics(results, "speechinstruct_close_en_standard")["drawn_items"] == 0
    with pytest.raises(DataError) as err:
        evaluate(["speechinstruct_close_en_standard"], path, root, invalid_items="error")
    message = str(err.value)
    assert "2 item(s) whose checkers upstream builds with randomly drawn arguments" in message
    assert "line 2 (key=2): length_constraints:number_words draws relation" in message
    assert "line 3 (key=3): keywords:letter_frequency draws letter" in message
    with pytest.raises(DataError, match="invalid_items must be one of"):
        evaluate(["speechinstruct_close_en_standard"], path, root, invalid_items="ignore")


def test_items_upstream_crashes_on_are_an_error_naming_file_line_and_key(sib_data, tmp_path):
    clip = sib_data / "closed-ended" / "en" / "standard" / "1.wav"
    items = [
        {"key": 1, "prompt": "P", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]},
        {"key": 2, "prompt": "Q", "instruction_id_list": ["keywords:frequency"],
         "kwargs": [{"keyword": "a", "frequency": 2, "relation": "more than"}]},
        {"key": 3, "prompt": "R", "instruction_id_list": ["detectable_format:title", "punctuation:no_comma"], "kwargs": [{}]},
        {"key": 4, "prompt": "S", "instruction_id_list": ["keywords:nonexistent"], "kwargs": [{}]},
        {"key": 5, "prompt": "T", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [None]},
        # more kwargs than ids: upstream reads the first ones only
        {"key": 6, "prompt": "U", "instruction_id_list": ["detectable_format:title"], "kwargs": [{}, {}]},
    ]
    root = _one_file_dataset(tmp_path / "data", items, clip)
    path = write_responses(tmp_path / "r.jsonl", ["a b"])
    for policy in ("draw", "skip"):
        with pytest.raises(DataError) as err:
            evaluate(["speechinstruct_close_en_standard"], path, root, invalid_items=policy)
        message = str(err.value)
        assert "4 item(s) that the authors' code crashes on" in message
        assert "closed-ended/closed_standard_en.jsonl line 2 (key=2): keywords:frequency: argument relation='more than'" in message
        assert "line 3 (key=3): 2 instruction ids but only 1 kwargs entries" in message
        assert "line 4 (key=4): unknown instruction id 'keywords:nonexistent'" in message
        assert "line 5 (key=5): punctuation:no_comma: kwargs is NoneType" in message
        assert "key=6" not in message


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


# -- the published layouts: closed-ended files found by name or folder, and data_dir by benchmark --
def _relocated(sib_data: Path, root: Path, moves: dict[str, str]) -> Path:
    """A copy of the fixture with closed-ended files moved; their audio paths made root-relative."""
    shutil.copytree(sib_data, root)
    closed = root / "closed-ended"
    for source, target in moves.items():
        lines = [json.loads(line) for line in (closed / source).read_text(encoding="utf-8").splitlines()]
        for line in lines:
            if not Path(line["audio_path"]).is_absolute() and not line["audio_path"].startswith("closed-ended/"):
                line["audio_path"] = f"closed-ended/{line['audio_path']}"
        (closed / source).unlink()
        (closed / target).parent.mkdir(parents=True, exist_ok=True)
        (closed / target).write_text("\n".join(json.dumps(line, ensure_ascii=False) for line in lines), encoding="utf-8")
    return root


def test_closed_ended_files_are_found_by_name_or_folder_at_any_depth(sib_data, tmp_path):
    root = _relocated(sib_data, tmp_path / "data", {
        "closed_standard_en.jsonl": "English/Standard/data.jsonl",
        "closed_paralinguistics_cn.jsonl": "zh/closed_paralinguistic.jsonl",
    })
    path = write_responses(tmp_path / "r.jsonl", EN_RESPONSES, "speechinstruct_close_en_standard")
    write_responses(path, ZH_RESPONSES, "speechinstruct_close_zh_paralinguistics")
    results = evaluate(["speechinstruct_close_en_standard", "speechinstruct_close_zh_paralinguistics"], path, root)
    assert_metrics(metrics(results, "speechinstruct_close_en_standard"), EN_EXPECTED)
    assert_metrics(metrics(results, "speechinstruct_close_zh_paralinguistics"), ZH_EXPECTED)
    provenance = results["configs"]["speechinstruct_close_en_standard"]["metadata"]["lm_eval_speech"]
    assert provenance["data"]["file"] == "closed-ended/English/Standard/data.jsonl"


def test_two_or_no_closed_ended_files_is_an_error_listing_them_then_data_files_chooses(sib_data, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(sib_data, root)
    closed = root / "closed-ended"
    (closed / "v2").mkdir()
    shutil.copy(closed / "closed_standard_en.jsonl", closed / "v2" / "closed_standard_en.jsonl")
    path = write_responses(tmp_path / "r.jsonl", EN_RESPONSES)
    with pytest.raises(DataError) as err:
        evaluate(["speechinstruct_close_en_standard"], path, root)
    message = str(err.value)
    assert "2 closed-ended files for variant 'standard' and language 'en'" in message
    assert "closed-ended/closed_standard_en.jsonl  (variant: standard, language: en)" in message
    assert "closed-ended/v2/closed_standard_en.jsonl  (variant: standard, language: en)" in message
    assert '"data_files": {"speechinstruct_close_en_standard": "closed-ended/.../FILE.jsonl"}' in message
    chosen = {"speechinstruct_close_en_standard": "closed-ended/v2/closed_standard_en.jsonl"}
    results = evaluate(["speechinstruct_close_en_standard"], path, root, data_files=chosen)
    assert_metrics(metrics(results, "speechinstruct_close_en_standard"), EN_EXPECTED)
    (closed / "closed_background_en.jsonl").unlink()
    with pytest.raises(DataError, match="no closed-ended file for variant 'background' and language 'en'"):
        evaluate(["speechinstruct_close_en_background"], path, root)


def test_data_dir_by_benchmark(sib_data, tmp_path):
    path = write_responses(tmp_path / "r.jsonl", EN_RESPONSES)
    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata={
        "data_dir": {"speechinstruct": str(sib_data), "jasco": str(tmp_path / "jasco-elsewhere")},
    })
    results = lm_eval.simple_evaluate(model="responses", model_args={"path": str(path)},
                                      tasks=["speechinstruct_close_en_standard"], task_manager=manager, bootstrap_iters=0)
    assert_metrics(metrics(results, "speechinstruct_close_en_standard"), EN_EXPECTED)
    # A benchmark missing from the mapping reads the hub (offline here).
    with pytest.raises(DataError, match="cannot read hub repo ddwang2000/SpeechInstructBench"):
        evaluate(["speechinstruct_close_en_standard"], path, {"jasco": str(tmp_path)})
