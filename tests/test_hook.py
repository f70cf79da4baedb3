"""The lm_eval 0.4.13 back-port: what it adds, what it leaves alone, when it steps aside."""

from __future__ import annotations

import json
import types

from lm_eval.api import registry

from lm_eval_speech import _lmeval_hook as hook
from lm_eval_speech.judging import Verdict

from conftest import TASKS_DIR


class FakeTaskManager:
    def __init__(self, verbosity=None, include_path=None, include_defaults=True, metadata=None):
        self.include_path = include_path


def patched_task_manager(**native):
    manager = type("TaskManager", (FakeTaskManager,), {})
    hook._add_plugin_task_dirs(types.SimpleNamespace(TaskManager=manager, **native))
    return manager


def test_task_dirs_come_before_the_users_and_only_once():
    ours = str(TASKS_DIR.resolve())
    assert hook.plugin_task_dirs() == [ours]
    manager = patched_task_manager()
    assert manager().include_path == [ours]
    assert manager(include_path="/mine").include_path == [ours, "/mine"]
    assert manager(include_path=[ours, "/mine"]).include_path == [ours, "/mine"]


def test_steps_aside_when_lm_eval_finds_plugin_tasks_itself():
    manager = patched_task_manager(discover_plugin_task_paths=lambda: [])
    assert manager(include_path="/mine").include_path == "/mine"


def test_models_are_lazy_placeholders_and_never_replace_a_name(monkeypatch):
    fresh = registry.Registry("model")
    fresh.register("responses", target="someone.else:Model")
    monkeypatch.setattr(registry, "model_registry", fresh)
    hook._register_plugin_models(None)
    assert fresh._objs["qwen2_audio"] == "lm_eval_speech.models.qwen2_audio:Qwen2AudioLM"
    assert fresh._objs["cascade"] == "lm_eval_speech.models.cascade:CascadeLM"
    assert fresh._objs["responses"] == "someone.else:Model"


def test_models_step_aside_when_lm_eval_loads_plugins_itself(monkeypatch):
    fresh = registry.Registry("model")
    monkeypatch.setattr(registry, "model_registry", fresh)
    monkeypatch.setattr(registry, "load_plugins", lambda *args: [], raising=False)
    hook._register_plugin_models(None)
    assert "qwen2_audio" not in fresh


JUDGED_TASK = "speechinstruct_open_en"  # verdicts are written as JSON values for this project's tasks


def save_samples(tmp_path, samples: list[dict]) -> list[dict]:
    """``samples`` as the hooked EvaluationTracker writes them, read back from the file."""
    from lm_eval.loggers import EvaluationTracker

    tracker = EvaluationTracker(output_path=str(tmp_path))
    tracker.general_config_tracker.model_name_sanitized = "m"
    tracker.date_id = "now"
    tracker.save_results_samples(JUDGED_TASK, samples)
    return [json.loads(line) for line in (tmp_path / "m" / f"samples_{JUDGED_TASK}_now.jsonl").read_text().splitlines()]


def judged_sample(doc_id: int, verdict) -> dict:
    return {"doc_id": doc_id, "arguments": [("<audio>", {}, {})], "resps": [["an answer"]], "filtered_resps": [verdict], "target": ""}


def test_logged_verdicts_are_json_values_beside_a_pointer(tmp_path):
    verdict = Verdict(judge_outputs=["['YES', 'NO']"] * 2, majority=["YES", "NO"], unparsed_outputs=0)
    [logged] = save_samples(tmp_path, [judged_sample(0, verdict)])
    assert logged["judge_verdicts"] == [dict(verdict)]
    assert logged["filtered_resps"] == ["see judge_verdicts"] and logged["resps"] == [["an answer"]]


def test_verdicts_survive_lm_evals_copy_of_multimodal_samples(tmp_path):
    # For a MULTIMODAL model (all of ours) lm-eval 0.4.13 hands the tracker a copy made by
    # hash_dict_images (LMEVAL_HASHMM, on by default), which rebuilds every dict as a plain dict.
    from lm_eval.utils import hash_dict_images

    verdict = Verdict(judge_outputs=["['YES']"], majority=["YES"], unparsed_outputs=0)
    copied = hash_dict_images({JUDGED_TASK: [judged_sample(0, verdict)]})[JUDGED_TASK]
    [logged] = save_samples(tmp_path, copied)
    assert logged.get("judge_verdicts") == [dict(verdict)], logged["filtered_resps"]
