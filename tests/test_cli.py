"""The stock ``lm_eval`` executable finds our tasks and models with no extra flags."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
VARIANTS = ("standard", "background", "accent", "paralinguistics", "disfluency")
TASK_NAMES = [f"speechinstruct_close_{lang}_{v}" for lang in ("en", "zh") for v in VARIANTS]


def run(args: list[str], env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **(env or {})}
    return subprocess.run(args, capture_output=True, text=True, env=environment, cwd=cwd, timeout=600)


def lm_eval(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return run([str(BIN / "lm_eval"), *args], env=env, cwd=cwd)


def results_file(output: Path) -> dict:
    [path] = list(output.rglob("results_*.json"))
    return json.loads(path.read_text())


def test_ls_tasks_lists_our_tasks_and_groups():
    done = lm_eval("ls", "tasks")
    assert done.returncode == 0, done.stderr[-3000:]
    for name in [*TASK_NAMES, "speechinstruct", "speechinstruct_close_en", "speechinstruct_close_zh"]:
        assert f"|{name} " in done.stdout, name


def test_qwen2_audio_then_rescore_its_samples_with_responses(tiny_qwen2_audio, sib_data, tmp_path):
    metadata = json.dumps({"data_dir": str(sib_data)})
    first = lm_eval(
        "--tasks", "speechinstruct_close_en", "--model", "qwen2_audio",
        "--model_args", f"pretrained={tiny_qwen2_audio}", "--batch_size", "2",
        "--metadata", metadata, "--gen_kwargs", "max_gen_toks=8",
        "--output_path", str(tmp_path / "run"), "--log_samples", cwd=tmp_path,
    )
    assert first.returncode == 0, first.stderr[-3000:]
    original = results_file(tmp_path / "run")
    assert {"speechinstruct_close_en", *TASK_NAMES[:5]} <= set(original["results"])
    provenance = original["configs"]["speechinstruct_close_en_accent"]["metadata"]["lm_eval_speech"]
    assert provenance["data"]["file"] == "closed-ended/closed_accent_en.jsonl"

    # An earlier run's --log_samples output, scored again without the model.
    again = lm_eval(
        "--tasks", "speechinstruct_close_en", "--model", "responses",
        "--model_args", f"path={tmp_path / 'run'}", "--metadata", metadata,
        "--output_path", str(tmp_path / "rescored"), cwd=tmp_path,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    rescored = results_file(tmp_path / "rescored")
    for task in ("speechinstruct_close_en", *TASK_NAMES[:5]):
        for metric in ("prompt_level_acc,sib", "inst_level_acc,sib", "prompt_level_strict_acc,sib", "inst_level_loose_acc,sib"):
            assert rescored["results"][task][metric] == original["results"][task][metric], (task, metric)


def test_registry_keeps_builtins_and_adds_ours():
    code = (
        "from lm_eval.api.registry import get_model\n"
        "for name in ('hf', 'dummy', 'qwen2_audio', 'responses', 'cascade'):\n"
        "    cls = get_model(name); print(name, cls.__module__)\n"
    )
    done = run([sys.executable, "-c", code])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "hf lm_eval.models.huggingface" in done.stdout
    assert "qwen2_audio lm_eval_speech.models.qwen2_audio" in done.stdout
    assert "cascade lm_eval_speech.models.cascade" in done.stdout


def test_hook_can_be_switched_off():
    code = (
        "from lm_eval.api.registry import get_model\n"
        "from lm_eval.tasks import TaskManager\n"
        "print('tasks', len([t for t in TaskManager(include_defaults=False).all_tasks if t.startswith('speechinstruct')]))\n"
        "try:\n    get_model('qwen2_audio')\nexcept Exception as err:\n    print('model refused:', type(err).__name__)\n"
    )
    on = run([sys.executable, "-c", code])
    off = run([sys.executable, "-c", code], env={"LM_EVAL_SPEECH_DISABLE_HOOK": "1"})
    assert on.returncode == 0 and off.returncode == 0, on.stderr[-2000:] + off.stderr[-2000:]
    assert "tasks 17" in on.stdout and "model refused" not in on.stdout
    assert "tasks 0" in off.stdout and "model refused:" in off.stdout


def test_interpreters_that_never_import_lm_eval_load_nothing_of_it():
    code = "import sys; print(sorted(m for m in sys.modules if m.startswith(('lm_eval', 'importlib.metadata'))))"
    done = run([sys.executable, "-c", code])
    assert done.returncode == 0
    assert done.stdout.strip() == "['lm_eval_speech', 'lm_eval_speech._lmeval_hook']"


def test_use_cache_replays_audio_requests_by_content(tiny_qwen2_audio, sib_data, tmp_path):
    # lm-eval 0.4.13's --use_cache raised on the numpy audio in requests; the hook keys arrays by content.
    def evaluate(name: str, data_dir: Path):
        done = lm_eval(
            "--tasks", "speechinstruct_close_en_standard", "--model", "qwen2_audio",
            "--model_args", f"pretrained={tiny_qwen2_audio}", "--metadata", json.dumps({"data_dir": str(data_dir)}),
            "--gen_kwargs", "max_gen_toks=6", "--use_cache", str(tmp_path / "cache" / "lm"),
            "--output_path", str(tmp_path / name), cwd=tmp_path,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stderr, results_file(tmp_path / name)["results"]["speechinstruct_close_en_standard"]

    first_log, first = evaluate("first", sib_data)
    assert "Cached requests: 0, Requests remaining: 4" in first_log
    second_log, second = evaluate("second", sib_data)
    assert "Cached requests: 4, Requests remaining: 0" in second_log
    assert second == first

    # Same prompts, other audio: every request misses.
    import shutil

    import soundfile as sf

    changed = tmp_path / "changed"
    shutil.copytree(sib_data, changed)
    for path in (changed / "closed-ended" / "en" / "standard").glob("*.wav"):
        clip, rate = sf.read(path, dtype="float32")
        sf.write(path, clip * 0.5, rate)
    third_log, _ = evaluate("third", changed)
    assert "Cached requests: 0, Requests remaining: 4" in third_log
