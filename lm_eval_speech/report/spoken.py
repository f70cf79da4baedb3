"""Spoken answers of speech-out tasks (S2S-Arena's domains): how many were spoken, how fast, how they sound.

One row per model and task with the latency aggregates every speech-out task reports
(:mod:`lm_eval_speech.speech.latency`: median / p90 of time to first text, first audio, generation
time and real-time factor) and, where the task computed them, the spoken-answer quality metrics.
Where the figures were measured (device, batch sizes, streamed or not) comes from the task's
provenance in the results file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lm_eval_speech.report.results import MergedResults, TaskResult, task_provenance
from lm_eval_speech.speech.latency import FIELDS as LATENCY_FIELDS

NAME = "spoken"
TITLE = "S2S-Arena"
FILE_STEM = "spoken_answers"

TASK_PREFIX = "s2s_arena"
FILTER = "none"
MISSING = "–"
LATENCY_HEADERS = {"first_text_s": "first text (s)", "first_audio_s": "first audio (s)", "total_s": "generation (s)", "rtf": "RTF"}
# Quality metrics shown when a task reports them: (metric, header, digits)
QUALITY = (
    ("dnsmos_ovrl", "DNSMOS OVRL", 2),
    ("dnsmos_sig", "DNSMOS SIG", 2),
    ("dnsmos_bak", "DNSMOS BAK", 2),
    ("dnsmos_p808", "DNSMOS P.808", 2),
    ("asr_wer", "text↔speech WER", 3),
    ("speaker_consistency", "speaker consistency", 3),
    ("speaker_consistency_min", "speaker consistency (min)", 3),
)
CAPTION = (
    "Latency cells: median / p90 over the task's spoken answers, in seconds from the start of each answer's "
    "generation; RTF: generation time / answer duration (below 1: faster than real time). A model that hands "
    "over its audio only when done has first audio = end of generation (streamed: no)."
)


def owns_task(task: str) -> bool:
    return task == TASK_PREFIX or task.startswith(f"{TASK_PREFIX}_")


def _pair(result: TaskResult, field: str) -> str:
    median, p90 = result.number(f"{field}_median", FILTER), result.number(f"{field}_p90", FILTER)
    if median is None and p90 is None:
        return MISSING
    return f"{_format(median, 2)} / {_format(p90, 2)}"


def _format(value: float | None, digits: int) -> str:
    return MISSING if value is None else f"{value:.{digits}f}"


def measured_at(result: TaskResult, task: str) -> dict[str, Any]:
    """The task's ``latency_measured_at`` provenance; empty where absent."""
    node = task_provenance(result, task).get("latency_measured_at")
    return node if isinstance(node, dict) else {}


def _where(info: dict[str, Any]) -> tuple[str, str, str]:
    streamed = info.get("streamed") or []
    streamed_cell = "yes" if streamed == [True] else "no" if streamed == [False] else "mixed" if streamed else MISSING
    return (", ".join(map(str, info.get("devices") or [])) or MISSING,
            ", ".join(map(str, info.get("batch_sizes") or [])) or MISSING, streamed_cell)


def _quality_present(merged: MergedResults) -> list[tuple[str, str, int]]:
    return [column for column in QUALITY
            if any(result.number(column[0], FILTER) is not None for model in merged.models.values() for result in model.tasks.values())]


def render_markdown(merged: MergedResults) -> str:
    quality = _quality_present(merged)
    headers = ["Model", "Task", "spoken", "unspoken", "failed", *LATENCY_HEADERS.values(), "device", "batch", "streamed",
               *(header for _, header, _ in quality)]
    lines = [f"# {TITLE}: spoken answers", "", CAPTION, "", "| " + " | ".join(headers) + " |",
             "|---|---|" + "---:|" * (3 + len(LATENCY_FIELDS)) + "---|---:|---|" + "---:|" * len(quality)]
    for model in merged.models.values():
        for task in sorted(model.tasks):
            result = model.tasks[task]
            counts = [_format(result.number(metric, FILTER), 0) for metric in ("spoken_items", "unspoken_items", "failed_items")]
            cells = [model.label.replace("|", "\\|"), task, *counts, *(_pair(result, field) for field in LATENCY_FIELDS),
                     *_where(measured_at(result, task)), *(_format(result.number(metric, FILTER), digits) for metric, _, digits in quality)]
            lines.append("| " + " | ".join(cells) + " |")
    notes = [f"{label}, {task}: in two files; kept the newer `{kept}` over `{superseded}`"
             for label, task, kept, superseded in merged.superseded]
    if notes:
        lines += ["", "Notes:", "", *(f"- {note}" for note in notes)]
    return "\n".join(lines) + "\n"


def render_chart(merged: MergedResults, path: Path) -> None:
    """Time to first audio (median, with the p90 as a whisker) and RTF per model and task."""
    from matplotlib.figure import Figure

    rows = [(f"{model.label} · {task}", model.tasks[task]) for model in merged.models.values() for task in sorted(model.tasks)]
    figure = Figure(figsize=(11, 1.4 + 0.4 * len(rows)), layout="constrained")
    first_axes, rtf_axes = figure.subplots(1, 2, sharey=True)
    positions = list(range(len(rows)))
    for axes, field, title in ((first_axes, "first_audio_s", "time to first audio (s)"), (rtf_axes, "rtf", "real-time factor")):
        medians = [result.number(f"{field}_median", FILTER) for _, result in rows]
        p90s = [result.number(f"{field}_p90", FILTER) for _, result in rows]
        heights = [0.0 if m is None else m for m in medians]
        whiskers = [[0.0] * len(rows), [0.0 if p is None or m is None else max(p - m, 0.0) for m, p in zip(medians, p90s)]]
        bars = axes.barh(positions, heights, xerr=whiskers, color="tab:blue", height=0.6, capsize=3)
        axes.bar_label(bars, labels=[MISSING if m is None else f"{m:.2f}" for m in medians], padding=2, fontsize=8)
        axes.set_title(f"{title}: median, p90 whisker", fontsize=10)
        axes.grid(axis="x", alpha=0.3)
        axes.set_axisbelow(True)
    first_axes.set_yticks(positions, [label for label, _ in rows])
    first_axes.invert_yaxis()
    figure.savefig(path, format="png", dpi=120)
