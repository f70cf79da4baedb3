"""Shared fixtures: everything is built offline, in temporary folders, once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Nothing in the suite may reach the hub: a test that tries fails instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
TASKS_DIR = REPO / "speech_tasks"
SHARED = REPO.parent / "shared"
DEMO_SIB = REPO / "demo" / "speechinstruct"


@pytest.fixture(scope="session")
def tiny_qwen2_audio(tmp_path_factory) -> Path:
    from builders import build_tiny_qwen2_audio

    return build_tiny_qwen2_audio(tmp_path_factory.mktemp("tiny-qwen2-audio"))


@pytest.fixture(scope="session")
def sib_data(tmp_path_factory) -> Path:
    from builders import write_sib_closed

    return write_sib_closed(tmp_path_factory.mktemp("sib"))


@pytest.fixture(scope="session")
def task_manager():
    """Our tasks only: skips the 14k-entry scan of lm-eval's own tasks (5 s per build)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(TASKS_DIR), include_defaults=False)
