"""Find, read and merge lm-eval results files into one metric map per model and task.

Benchmark-agnostic: a benchmark module says which task names it owns; everything here works
on lm-eval's own file layout (``OUT/<model>/results_<timestamp>.json``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

RESULTS_GLOB = "results_*.json"
# lm-eval's own precedence for the model's name in model_args (GeneralConfigTracker._get_model_name).
MODEL_ARG_KEYS = ("peft", "delta", "pretrained", "model", "path", "engine")


class ReportError(ValueError):
    """Input that cannot become a report; the message names the file."""


@dataclass(frozen=True)
class ResultsFile:
    path: Path
    label: str
    date: float  # seconds since the epoch: the run's start (lm-eval's ``date``) or the file's mtime
    tasks: dict[str, dict[str, Any]]  # task name -> {"<metric>,<filter>": value, ...}


@dataclass(frozen=True)
class TaskResult:
    metrics: dict[str, Any]
    source: Path
    date: float

    def number(self, metric: str, filter_name: str) -> float | None:
        """A metric as a float, or None where absent or not a number (lm-eval writes "N/A")."""
        value = self.metrics.get(f"{metric},{filter_name}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            return None
        return float(value)


@dataclass
class ModelResults:
    label: str
    tasks: dict[str, TaskResult] = field(default_factory=dict)


@dataclass
class MergedResults:
    models: dict[str, ModelResults]  # by label, in the order the inputs first name them
    # (label, task, kept file, superseded file) wherever one task came from two files
    superseded: list[tuple[str, str, Path, Path]] = field(default_factory=list)

    def tasks_present(self) -> set[str]:
        return {task for model in self.models.values() for task in model.tasks}


def task_provenance(result: TaskResult, task: str) -> dict[str, Any]:
    """What ``task`` recorded (``configs.<task>.metadata.lm_eval_speech``) in the results file ``result``
    came from; empty where absent or unreadable (the merged results do not carry it)."""
    try:
        data = json.loads(Path(result.source).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    node: Any = data
    for key in ("configs", task, "metadata", "lm_eval_speech"):
        node = node.get(key) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else {}


def find_results_files(path: Path) -> list[Path]:
    """The file itself, or every ``results_*.json`` under a directory (sorted, so runs are repeatable)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(path.rglob(RESULTS_GLOB))
    raise ReportError(f"{path}: no such file or directory")


def load_results_file(path: Path, label: str | None = None) -> ResultsFile:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ReportError(f"{path}: cannot read: {error.strerror or error}") from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ReportError(f"{path}: not valid JSON: {error}") from error
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise ReportError(f"{path}: not an lm-eval results file (no 'results' object)")
    tasks = {name: metrics for name, metrics in data["results"].items() if isinstance(metrics, dict)}
    return ResultsFile(path=path, label=label or model_label(data, path), date=run_date(data, path), tasks=tasks)


def model_label(data: dict[str, Any], path: Path) -> str:
    """``model_name`` as lm-eval wrote it, else the model type plus its checkpoint, else the file's folder."""
    if isinstance(data.get("model_name"), str) and data["model_name"].strip():
        return data["model_name"].strip()
    config = data.get("config") if isinstance(data.get("config"), dict) else {}
    model_type = str(config.get("model") or "").strip()
    checkpoint = _checkpoint(config.get("model_args"))
    if model_type and checkpoint:
        return f"{model_type} ({checkpoint})"
    # lm-eval names the folder after the sanitized model name: the best guess left.
    return model_type or checkpoint or path.parent.name


def _checkpoint(model_args: Any) -> str | None:
    if isinstance(model_args, str):
        model_args = dict(part.split("=", 1) for part in model_args.split(",") if "=" in part)
    if not isinstance(model_args, dict):
        return None
    for key in MODEL_ARG_KEYS:
        value = model_args.get(key)
        if value not in (None, ""):
            return str(value).strip()
    return None


def run_date(data: dict[str, Any], path: Path) -> float:
    date = data.get("date")
    if isinstance(date, (int, float)) and not isinstance(date, bool):
        return float(date)
    if isinstance(date, str):
        try:
            return float(date)
        except ValueError:
            pass
        try:
            return datetime.fromisoformat(date).timestamp()
        except ValueError:
            pass
    return path.stat().st_mtime


def merge(files: Iterable[ResultsFile], owns_task: Callable[[str], bool]) -> MergedResults:
    """One metric map per label; a task run twice for one label keeps the newer file's numbers."""
    merged = MergedResults(models={})
    for results_file in files:
        model = merged.models.setdefault(results_file.label, ModelResults(results_file.label))
        for task, metrics in results_file.tasks.items():
            if not owns_task(task):
                continue
            incoming = TaskResult(metrics=metrics, source=results_file.path, date=results_file.date)
            existing = model.tasks.get(task)
            if existing is None:
                model.tasks[task] = incoming
                continue
            newer, older = (incoming, existing) if incoming.date > existing.date else (existing, incoming)
            model.tasks[task] = newer
            merged.superseded.append((results_file.label, task, newer.source, older.source))
    # A label whose files held none of this benchmark's tasks has no row.
    merged.models = {label: model for label, model in merged.models.items() if model.tasks}
    return merged
