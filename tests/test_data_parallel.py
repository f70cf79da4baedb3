"""Data parallel: `accelerate launch --multi_gpu --num_processes 2 -m lm_eval` on a machine without GPUs
(two processes over gloo) gives the results and samples of one process."""

from __future__ import annotations

import json

import pytest

from test_cli import BIN, results_file, run

pytestmark = pytest.mark.slow
TASKS = "speechinstruct_close_en_standard,speechinstruct_close_zh_accent"


def samples(output) -> dict:
    found = {}
    for path in output.rglob("samples_*.jsonl"):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            found[(path.name.split("_20")[0], record["doc_id"])] = record["resps"]
    return found


def test_two_processes_match_one(tiny_qwen2_audio, sib_data, tmp_path):
    common = [
        "-m", "lm_eval", "--tasks", TASKS, "--model", "qwen2_audio", "--model_args", f"pretrained={tiny_qwen2_audio}",
        "--metadata", json.dumps({"data_dir": str(sib_data)}), "--gen_kwargs", "max_gen_toks=8", "--log_samples",
    ]
    launch = [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no"]
    parallel = run([*launch, *common, "--output_path", str(tmp_path / "two")], cwd=tmp_path)
    assert parallel.returncode == 0, parallel.stderr[-3000:]
    single = run([str(BIN / "python"), *common, "--output_path", str(tmp_path / "one")], cwd=tmp_path)
    assert single.returncode == 0, single.stderr[-3000:]

    two, one = results_file(tmp_path / "two"), results_file(tmp_path / "one")
    assert (two["config"]["data_parallel_processes"], one["config"]["data_parallel_processes"]) == (2, 1)
    for task in TASKS.split(","):
        for metric, value in one["results"][task].items():
            assert two["results"][task][metric] == value, (task, metric)
    assert samples(tmp_path / "two") == samples(tmp_path / "one")
    assert len(samples(tmp_path / "one")) == 8


def test_judged_tasks_under_two_processes_count_every_rank(tiny_qwen2_audio, tmp_path):
    from builders import write_sib_judged
    from fake_openai import FakeOpenAI

    data = write_sib_judged(tmp_path / "sib", languages=("en",))
    tasks = ["speechinstruct_open_en", "speechinstruct_adjust_en"]
    adjust = '{"follow_after_adjust": "YES", "follow_before_adjust": "NO", "after_adjust_content_correct": "YES"}'

    def responder(body, index):
        return adjust if "follow_after_adjust" in body["messages"][-1]["content"] else ("['YES', 'NO']" if index else "['YES', 'YES']")

    launch = [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no"]
    with FakeOpenAI(responder=responder) as server:
        runs = {}
        for name, prefix in (("two", launch), ("one", [str(BIN / "python")])):
            metadata = {"data_dir": str(data), "judge": {"base_url": server.base_url}, "judge_cache": str(tmp_path / f"{name}.sqlite")}
            command = [*prefix, "-m", "lm_eval", "--tasks", ",".join(tasks), "--model", "qwen2_audio",
                       "--model_args", f"pretrained={tiny_qwen2_audio}", "--metadata", json.dumps(metadata),
                       "--gen_kwargs", "max_gen_toks=4", "--output_path", str(tmp_path / name)]
            done = run(command, cwd=tmp_path)
            assert done.returncode == 0, done.stderr[-3000:]
            runs[name] = results_file(tmp_path / name)
        assert server.calls == 2 * 6  # each run judges its 3 + 3 items once, across however many processes
    for task in tasks:
        assert runs["two"]["results"][task] == runs["one"]["results"][task]
        judging = {name: runs[name]["configs"][task]["metadata"]["lm_eval_speech"]["judging"] for name in runs}
        # rank 1's calls reach the results too
        assert judging["two"]["calls"] == judging["one"]["calls"] == 3
        assert judging["two"]["samples"] == judging["one"]["samples"] == 12
