"""The lm_eval 0.4.13 back-port: what it adds, what it leaves alone, when it steps aside."""

from __future__ import annotations

import types

from lm_eval.api import registry

from lm_eval_speech import _lmeval_hook as hook

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
