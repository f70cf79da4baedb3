"""The ``responses`` replay model: its two file formats and every way a file can be wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lm_eval.api.instance import Instance

from lm_eval_speech.models.responses import ReplayError, ResponsesLM
from lm_eval_speech.outcomes import FailedGeneration, is_failure


def request(task: str, doc_id: int, doc: dict | None = None) -> Instance:
    return Instance(
        request_type="generate_until", doc=doc or {"q": doc_id}, arguments=("ctx", {}), idx=0, metadata=(task, doc_id, 1)
    )


def write_lines(path: Path, lines: list) -> Path:
    path.write_text("\n".join(json.dumps(line, ensure_ascii=False) for line in lines) + "\n", encoding="utf-8")
    return path


def test_plain_jsonl_in_request_order(tmp_path):
    path = write_lines(tmp_path / "r.jsonl", [{"doc_id": 1, "response": "b"}, {"doc_id": 0, "response": "a"}])
    lm = ResponsesLM(path=str(path))
    assert lm.generate_until([request("t", 1), request("t", 0)]) == ["b", "a"]


def test_task_field_selects_lines(tmp_path):
    lines = [{"doc_id": 0, "response": "x", "task": "t1"}, {"doc_id": 0, "response": "y", "task": "t2"}]
    lm = ResponsesLM(path=str(write_lines(tmp_path / "r.jsonl", lines)))
    assert lm.generate_until([request("t2", 0), request("t1", 0)]) == ["y", "x"]


def test_untagged_lines_with_several_tasks_are_ambiguous(tmp_path):
    lm = ResponsesLM(path=str(write_lines(tmp_path / "r.jsonl", [{"doc_id": 0, "response": "x"}])))
    with pytest.raises(ReplayError, match="without a 'task' but 2 tasks run"):
        lm.generate_until([request("t1", 0), request("t2", 0)])


def test_missing_doc_names_doc_task_and_file(tmp_path):
    path = write_lines(tmp_path / "r.jsonl", [{"doc_id": 0, "response": "x"}])
    with pytest.raises(ReplayError, match=r"no response for doc 7 of task t1 in .*r\.jsonl"):
        ResponsesLM(path=str(path)).generate_until([request("t1", 7)])


def test_conflicting_duplicate_line_is_an_error(tmp_path):
    path = write_lines(tmp_path / "r.jsonl", [{"doc_id": 0, "response": "x"}, {"doc_id": 0, "response": "y"}])
    with pytest.raises(ReplayError, match="line 2: a second, different response for doc 0"):
        ResponsesLM(path=str(path))


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"doc_id": 0, "response": "x"', "line 1: not valid JSON"),
        ('{"response": "x"}', "line 1: needs an integer 'doc_id'"),
        ('{"doc_id": true, "response": "x"}', "line 1: needs an integer 'doc_id'"),
        ('{"doc_id": 0, "response": 3}', "line 1: needs a string 'response'"),
        ('{"doc_id": 0, "task": 5, "response": "x"}', "line 1: 'task' must be a string"),
    ],
)
def test_malformed_lines_are_named(tmp_path, line, message):
    path = tmp_path / "r.jsonl"
    path.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(ReplayError, match=message):
        ResponsesLM(path=str(path))


def test_error_lines_become_counted_failures(tmp_path):
    path = write_lines(tmp_path / "r.jsonl", [{"doc_id": 0, "response": None, "error": "HTTP 500"}])
    [response] = ResponsesLM(path=str(path)).generate_until([request("t", 0)])
    assert is_failure(response) and response.reason == "HTTP 500"
    # not a string: no filter or metric can read it as an (empty) answer
    assert not isinstance(response, str) and str(response) == "[failed generation: HTTP 500]"


def samples_line(doc_id: int, doc: dict, resps: list[str], **extra) -> dict:
    return {"doc_id": doc_id, "doc": doc, "target": 0, "arguments": [["ctx", {}]], "resps": [resps],
            "filtered_resps": [resps[0]], "filter": "sib", **extra}


def test_samples_file_replays_by_task_from_its_name(tmp_path):
    path = write_lines(
        tmp_path / "samples_speechinstruct_close_en_standard_2026-11-22T05-24-00.123456.jsonl",
        [samples_line(0, {"prompt": "p0", "audio_file": "/a/0.wav"}, ["r0"]), samples_line(1, {"prompt": "p1"}, ["r1"])],
    )
    lm = ResponsesLM(path=str(path))
    task = "speechinstruct_close_en_standard"
    # audio_file differs (another machine): locations are not compared
    moved = request(task, 0, {"prompt": "p0", "audio_file": "/b/0.wav"})
    assert lm.generate_until([request(task, 1, {"prompt": "p1"}), moved]) == ["r1", "r0"]
    with pytest.raises(ReplayError, match="no response for doc 0 of task other"):
        lm.generate_until([request("other", 0)])


def test_samples_file_made_for_other_data_is_refused(tmp_path):
    path = write_lines(tmp_path / "samples_t_2026-01-01T00-00-00.000001.jsonl", [samples_line(0, {"prompt": "old"}, ["r"])])
    with pytest.raises(ReplayError, match="different doc 0 of task t: field 'prompt' is 'old' there, 'new' now"):
        ResponsesLM(path=str(path)).generate_until([request("t", 0, {"prompt": "new"})])


def test_samples_repeats_and_recorded_failures(tmp_path):
    path = write_lines(
        tmp_path / "samples_t_2026-01-01T00-00-00.000001.jsonl",
        [samples_line(0, {"q": 0}, ["first", "second"]), samples_line(1, {"q": 1}, [""], failed_items=1)],
    )
    lm = ResponsesLM(path=str(path))
    out = lm.generate_until([request("t", 0), request("t", 0), request("t", 1)])
    assert out[:2] == ["first", "second"] and isinstance(out[2], FailedGeneration)
    with pytest.raises(ReplayError, match="asks for repeat 3"):
        lm.generate_until([request("t", 0)] * 3)


def test_directory_takes_the_newest_samples_file_per_task(tmp_path):
    (tmp_path / "m").mkdir()
    write_lines(tmp_path / "m" / "samples_t_2026-01-01T00-00-00.000001.jsonl", [samples_line(0, {"q": 0}, ["old"])])
    write_lines(tmp_path / "m" / "samples_t_2026-02-01T00-00-00.000001.jsonl", [samples_line(0, {"q": 0}, ["new"])])
    write_lines(tmp_path / "m" / "samples_u_2026-01-01T00-00-00.000001.jsonl", [samples_line(0, {"q": 0}, ["u"])])
    lm = ResponsesLM(path=str(tmp_path))
    assert lm.generate_until([request("t", 0), request("u", 0)]) == ["new", "u"]


def test_empty_directory_and_missing_path(tmp_path):
    with pytest.raises(ReplayError, match="no samples_<task>_<time>.jsonl files"):
        ResponsesLM(path=str(tmp_path))
    with pytest.raises(ReplayError, match="does not exist"):
        ResponsesLM(path=str(tmp_path / "nope.jsonl"))


def test_loglikelihood_requests_are_refused_naming_the_task(tmp_path):
    lm = ResponsesLM(path=str(write_lines(tmp_path / "r.jsonl", [{"doc_id": 0, "response": "x"}])))
    with pytest.raises(NotImplementedError, match="cannot serve loglikelihood requests \\(tasks: mmlu_x\\)"):
        lm.loglikelihood([request("mmlu_x", 0)])
