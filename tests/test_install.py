"""A regular (non-editable) install works too, and installs no generic import names.

The suite itself runs on the editable install that ``make`` creates; here the wheel goes into a
scratch environment that borrows the test environment's dependencies.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow

CHECK = """
import importlib.util, json
import lm_eval_speech, lm_eval_speech.models.qwen2_audio as q
import lm_eval_speech.judge.runner, lm_eval_speech.report, lm_eval_speech.tasks.speechinstruct.judge_prompts  # the wheel holds them
assert importlib.util.find_spec("lm_eval_speech.tasks.speechinstruct.judged") is not None
from lm_eval.api.registry import get_model
from lm_eval.tasks import TaskManager
index = TaskManager(include_defaults=False).task_index
print(json.dumps({
    "package": lm_eval_speech.__file__,
    "model_module": q.__file__,
    "generic_names": [n for n in ("models", "speech_tasks", "tasks", "utils") if importlib.util.find_spec(n)],
    "tasks": sorted(n for n in index if n.startswith(("speechinstruct", "jasco"))),
    "task_yaml": str(index["speechinstruct_close_en_standard"].yaml_path),
    "models": [get_model(n).__name__ for n in ("hf", "qwen2_audio", "responses", "cascade")],
}))
"""


def test_wheel_install(tmp_path):
    wheels = tmp_path / "wheels"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(REPO)],
        capture_output=True, text=True, timeout=600,
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    [wheel] = list(wheels.glob("lm_eval_speech-*.whl"))

    scratch = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(scratch)], check=True, timeout=120)
    python = scratch / "bin" / "python"
    where = [str(python), "-c", "import site; print(site.getsitepackages()[0])"]
    site = Path(subprocess.run(where, capture_output=True, text=True, check=True).stdout.strip())
    # A plain path line: the test environment's packages become importable, its .pth files stay inert.
    (site / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(site), str(wheel)],
        capture_output=True, text=True, timeout=600,
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    assert (site / "lm_eval_speech.pth").is_file()

    done = subprocess.run([str(python), "-c", CHECK], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    import json

    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["package"].startswith(str(site)) and found["model_module"].startswith(str(site))
    assert found["generic_names"] == []
    assert len(found["tasks"]) == 18  # 15 tasks + 3 groups
    assert "jasco" in found["tasks"]
    assert found["task_yaml"].startswith(str(site / "lm_eval_speech" / "tasks"))
    assert found["models"] == ["HFLM", "Qwen2AudioLM", "ResponsesLM", "CascadeLM"]
