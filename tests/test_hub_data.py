"""The default data source: the benchmark's hub repository, served here by a local fake hub."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from fake_hub import COMMIT, FakeHub
from test_sib_task import EN_EXPECTED, EN_RESPONSES, write_responses

from conftest import TASKS_DIR

RUN = """
import json, sys, lm_eval
from lm_eval.tasks import TaskManager
manager = TaskManager(include_path=sys.argv[1], include_defaults=False)
results = lm_eval.simple_evaluate(model="responses", model_args={"path": sys.argv[2]},
    tasks=["speechinstruct_close_en_standard"], task_manager=manager, bootstrap_iters=0)
task = results["results"]["speechinstruct_close_en_standard"]
print(json.dumps({"metrics": {k.split(",")[0]: v for k, v in task.items() if k.endswith(",sib")},
                  "provenance": results["configs"]["speechinstruct_close_en_standard"]["metadata"]["lm_eval_speech"]}))
"""


def run(hub_url: str | None, cache, responses) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    env.update(HF_HOME=str(cache), HF_HUB_DISABLE_XET="1")
    if hub_url:
        env["HF_ENDPOINT"] = hub_url
    else:
        env.update(HF_HUB_OFFLINE="1", HF_ENDPOINT="http://127.0.0.1:9")  # nothing listens there
    done = subprocess.run([sys.executable, "-c", RUN, str(TASKS_DIR), str(responses)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_hub_download_only_what_the_task_needs_then_offline_from_cache(sib_data, tmp_path):
    responses = write_responses(tmp_path / "r.jsonl", EN_RESPONSES)
    with FakeHub("ddwang2000/SpeechInstructBench", sib_data) as hub:
        online = run(hub.url, tmp_path / "hf", responses)
        downloaded = sorted(p.split("/resolve/")[1].split("/", 1)[1] for m, p in hub.requests if m == "GET" and "/resolve/" in p)
    for name, value in EN_EXPECTED.items():
        assert abs(online["metrics"][name] - value) < 1e-12, name
    assert online["provenance"]["data"]["source"] == "huggingface"
    assert online["provenance"]["data"]["repo"] == "ddwang2000/SpeechInstructBench"
    assert online["provenance"]["data"]["commit"] == COMMIT
    # The listing file and its 4 clips, nothing of the other 9 variant/language files.
    assert downloaded == [
        "closed-ended/closed_standard_en.jsonl",
        "closed-ended/en/standard/1.wav", "closed-ended/en/standard/2.wav",
        "closed-ended/en/standard/3.wav", "closed-ended/en/standard/4.wav",
    ]
    offline = run(None, tmp_path / "hf", responses)
    assert offline["metrics"] == online["metrics"]
