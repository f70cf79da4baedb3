"""What the plugin hook adds to a real ``lm_eval`` run: logged verdicts and provenance in the files,
failed generations kept out of ``--use_cache``, a non-zero exit when a task could not score what it
was asked to, and a dead judge endpoint stopping the run at once.

Each test runs the stock ``lm_eval`` executable in a subprocess; judges and the audio model talk to
FakeOpenAI (a real local HTTP server) in this process.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from builders import write_sib_judged
from fake_openai import Fault, FakeOpenAI, fault_always
from test_cli import lm_eval, results_file

pytestmark = pytest.mark.slow

OPEN_EN = "speechinstruct_open_en"
CLOSED_EN = "speechinstruct_close_en_standard"
ANSWERS = ["rain answer", "cat answer", "fruit answer"]  # the three open-ended items of builders.SIB_OPEN_ITEMS


@pytest.fixture(autouse=True)
def no_ambient_openai(monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "LM_EVAL_SPEECH_JUDGE_CACHE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def judged_data(tmp_path_factory) -> Path:
    return write_sib_judged(tmp_path_factory.mktemp("sib-judged"), languages=("en",))


def write_answers(path: Path, answers: list) -> Path:
    """A ``responses`` replay file; a tuple ``(None, why)`` is a failed generation."""
    lines = [{"doc_id": i, **({"error": a[1]} if isinstance(a, tuple) else {"response": a})} for i, a in enumerate(answers)]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def judged_run(tmp_path: Path, data: Path, server_url: str, answers: list, name: str = "run", **metadata):
    """``lm_eval --tasks speechinstruct_open_en --model responses`` judged at ``server_url``, samples logged."""
    settings = {
        "data_dir": str(data), "load_audio": False, "judge_cache": str(tmp_path / "calls.sqlite"),
        "judge": {"base_url": server_url, "max_retries": 0}, **metadata,
    }
    return lm_eval(
        "--tasks", OPEN_EN, "--model", "responses", "--model_args", f"path={write_answers(tmp_path / f'{name}.jsonl', answers)}",
        "--metadata", json.dumps(settings), "--output_path", str(tmp_path / name), "--log_samples", cwd=tmp_path,
    )


def samples_file(output: Path, task: str) -> list[dict]:
    [path] = list(output.rglob(f"samples_{task}_*.jsonl"))
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def votes(body: dict, index: int) -> str:
    return "['YES', 'YES', 'NO']" if "rain answer" in body["messages"][-1]["content"] else "['YES', 'YES']"


# -- (a), (b): what the files hold ------------------------------------------------------------
def test_verdicts_are_json_objects_and_provenance_is_in_the_task_config(judged_data, tmp_path):
    with FakeOpenAI(responder=votes) as server:
        done = judged_run(tmp_path, judged_data, server.base_url, ANSWERS)
    assert done.returncode == 0, done.stderr[-3000:]
    results = results_file(tmp_path / "run")
    record = results["configs"][OPEN_EN]["metadata"]["lm_eval_speech"]
    assert record["data"]["file"] == "open-ended/open_ended_en.jsonl" and record["data"]["items"] == 3
    [judge] = record["judging"]["judges"]
    assert (judge["model"], judge["endpoint"], judge["calls"]) == ("gpt-4o-mini", server.base_url, 3)
    assert record["judging"]["scored_items"] == 3 and "missing_metrics" not in record

    samples = sorted(samples_file(tmp_path / "run", OPEN_EN), key=lambda s: s["doc_id"])
    assert len(samples) == 3
    for sample in samples:
        assert "judge_verdicts" in sample, sample["filtered_resps"]
        [verdict] = sample["judge_verdicts"]
        assert isinstance(verdict, dict) and isinstance(verdict["judge_outputs"], list)  # a JSON value, not its text
        assert sample["filtered_resps"] == ["see judge_verdicts"]
    assert samples[0]["judge_verdicts"][0]["majority"] == ["YES", "YES", "NO"]
    assert samples[1]["judge_verdicts"][0]["judge_outputs"] == ["['YES', 'YES']"] * 4


# -- (c): --use_cache ----------------------------------------------------------------------------
def test_use_cache_keeps_a_failed_generation_out_so_a_rerun_retries_it(sib_data, tmp_path):
    lock, seen = threading.Lock(), []

    def first_call_fails(body, attempt):
        with lock:
            seen.append(attempt)
            return Fault("500") if len(seen) == 1 else None

    def run(name: str):
        return lm_eval(
            "--tasks", CLOSED_EN, "--model", "openai_audio",
            # the model's own cache off: only lm_eval's --use_cache can answer a re-run
            "--model_args", f"base_url={server.base_url},model=judge,cache=false,max_retries=0",
            "--metadata", json.dumps({"data_dir": str(sib_data), "fail_on_error": False}),
            "--use_cache", str(tmp_path / "lm-cache" / "lm"), "--output_path", str(tmp_path / name), cwd=tmp_path,
        )

    with FakeOpenAI(responder=lambda body, i: "<<Title>>\nAn answer.", faults=first_call_fails) as server:
        first = run("first")
        assert first.returncode == 0, first.stderr[-3000:]
        assert "Cached requests: 0, Requests remaining: 4" in first.stderr
        assert results_file(tmp_path / "first")["results"][CLOSED_EN]["failed_items,sib"] == 1
        assert (server.calls, server.faulted) == (4, 1)
        server.reset_counters()
        second = run("second")
        assert second.returncode == 0, second.stderr[-3000:]
        # the three answers are replayed; the failed one is asked again, and answered this time
        assert "Cached requests: 3, Requests remaining: 1" in second.stderr
        assert (server.calls, server.faulted) == (1, 0)
    assert results_file(tmp_path / "second")["results"][CLOSED_EN]["failed_items,sib"] == 0


# -- (d): the exit status ------------------------------------------------------------------------
def assert_files_written(output: Path) -> dict:
    """The run wrote its results and samples before it exited."""
    assert len(samples_file(output, OPEN_EN)) == 3
    return results_file(output)


def test_a_judge_that_fails_every_call_fails_the_run_after_writing_its_files(judged_data, tmp_path):
    with FakeOpenAI(responder=votes, faults=fault_always("500")) as server:
        done = judged_run(tmp_path, judged_data, server.base_url, ANSWERS)
        assert (server.calls, server.faulted) == (3, 3)
    assert done.returncode == 1, done.stderr[-3000:]
    summary = done.stderr.split("lm-eval-speech: results and samples are written", 1)[1]
    assert f"{OPEN_EN}: scored no item of 3 (judge_failed_items=3)" in summary
    assert "judge: " in summary and "500" in summary  # the first errors, as the judge saw them
    results = assert_files_written(tmp_path / "run")
    assert results["results"][OPEN_EN]["judge_failed_items,judge"] == 3
    missing = results["configs"][OPEN_EN]["metadata"]["lm_eval_speech"]["missing_metrics"]
    assert set(missing) == {"prompt_level_acc", "inst_level_acc"} and "judge_failed_items=3" in missing["prompt_level_acc"]
    samples = samples_file(tmp_path / "run", OPEN_EN)
    assert all("500" in s["judge_verdicts"][0]["judge_failed"][0] for s in samples)


def test_a_replay_of_error_lines_only_fails_the_run(judged_data, tmp_path):
    with FakeOpenAI(responder=votes) as server:
        done = judged_run(tmp_path, judged_data, server.base_url, [(None, "CUDA out of memory")] * 3)
        assert server.calls == 0  # nothing to judge
    assert done.returncode == 1, done.stderr[-3000:]
    assert f"{OPEN_EN}: scored no item of 3 (failed_items=3)" in done.stderr
    assert_files_written(tmp_path / "run")


@pytest.mark.parametrize(
    "fail_on_error, exits",
    [(None, 1), (0, 1), (0.5, 0), (False, 0)],  # None: the default, 5%
)
def test_the_failed_share_allowed_decides_the_exit_status(judged_data, tmp_path, fail_on_error, exits):
    answers = ["rain answer", (None, "CUDA out of memory"), "fruit answer"]  # 1 of 3 failed
    metadata = {} if fail_on_error is None else {"fail_on_error": fail_on_error}
    with FakeOpenAI(responder=votes) as server:
        done = judged_run(tmp_path, judged_data, server.base_url, answers, **metadata)
    assert done.returncode == exits, done.stderr[-3000:]
    assert_files_written(tmp_path / "run")
    if exits:
        allowed = "5%" if fail_on_error is None else "0%"
        assert f"{OPEN_EN}: 33.3% of 3 items failed, over the {allowed} allowed (failed_items=1)" in done.stderr
    else:
        assert "lm-eval-speech: results and samples are written" not in done.stderr


def test_fail_on_error_false_lets_a_run_that_scored_nothing_exit_0(judged_data, tmp_path):
    with FakeOpenAI(responder=votes, faults=fault_always("500")) as server:
        done = judged_run(tmp_path, judged_data, server.base_url, ANSWERS, fail_on_error=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert results_file(tmp_path / "run")["results"][OPEN_EN]["judge_failed_items,judge"] == 3


# -- (e): a dead judge endpoint --------------------------------------------------------------------
def test_a_closed_judge_port_stops_the_run_at_once_naming_the_endpoint(judged_data, tmp_path):
    with FakeOpenAI() as server:  # a port that was just free: nothing listens there now
        closed = server.base_url
    done = judged_run(tmp_path, judged_data, closed, ANSWERS)
    assert done.returncode != 0
    # the preflight's refusal, before any model answered or any judge call could back off and retry
    assert "Is the server running, and on that port?" in done.stderr
    port = closed.split(":")[2].split("/")[0]
    assert f"endpoint {closed} (127.0.0.1:{port})" in done.stderr and "connection refused" in done.stderr
    assert not (tmp_path / "run").exists()  # stopped before any work


def test_a_group_without_aggregates_is_not_a_task_that_scored_nothing():
    from lm_eval_speech.outcomes import run_problems

    # lm-eval lists s2s_arena (no aggregate metrics) under "results" with no samples, but not under "groups"
    summary = {
        "results": {"s2s_arena": {"alias": "s2s_arena"},
                    "s2s_arena_social": {"spoken_items,none": 0, "failed_items,none": 2}},
        "group_subtasks": {"s2s_arena": ["s2s_arena_social"], "s2s_arena_social": []},
        "n-samples": {"s2s_arena_social": {"original": 2, "effective": 2}},
        "configs": {"s2s_arena_social": {}},
    }
    assert run_problems(summary) == ["s2s_arena_social: 100.0% of 2 items failed, over the 5% allowed (failed_items=2)"]
