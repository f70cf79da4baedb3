"""JASCO ("What Are They Doing?"): the authors' leaderboard (README; spec §2.6) as Markdown and a chart.

Headline numbers come from the ``jasco`` task's results (filter ``judge``: the mean over judges);
the per-judge numbers from ``configs["jasco"]["metadata"]["lm_eval_speech"]["judging"]``, which
the merged results do not carry, so they are read back from the results file the task came from.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from lm_eval_speech.report.results import MergedResults, ModelResults, TaskResult, task_provenance

NAME = "jasco"
TITLE = "JASCO"
FILE_STEM = "jasco_leaderboard"

TASK = "jasco"
FILTER = "judge"
DEPENDENCE = ("audio_dependence", "both_dependence", "speech_dependence")
DEPENDENCE_LABELS = ("Audio", "Both", "Speech")
HEADERS = ("Model", "Judge", "best-mean", "Audio-dep %", "Both-dep %", "Speech-dep %")
MISSING = "–"
CAPTION = (
    "best-mean: 0–2, the mean over the clips of each clip's best judge score among its 8 prompts; "
    "only answers the judge finds relying on both the audio sound and the spoken text earn credit. "
    "Audio- / Both- / Speech-dep %: share of judge-rows (one per prompt and judge) with that orientation, "
    "over the rows with an Audio, Both or Speech orientation (Neither and unparsed excluded). "
    "With several judges, each judge's numbers and their mean. `–`: no result."
)

# Rows the authors' stats() drops or counts as score 0 without a word; every non-zero count is listed.
COUNT_NOTES = (  # (metric, singular, plural)
    ("neither_rows", "judge-row Neither (excluded from dependence)", "judge-rows Neither (excluded from dependence)"),
    ("unparsed_rows", "unparsed", "unparsed"),
    ("judge_failed_rows", "judge call failed", "judge calls failed"),
    ("failed_items", "item without a model response", "items without a model response"),
)
# A Good row without a rating, by the task's --metadata missing_rating: (what was done, the other reading's metric, its words)
MISSING_RATING_READINGS = {
    "previous_row": ("scored with the previous row's rating, as the authors' eval.py", "best_mean_unscored", "with them unscored"),
    "unscored": (
        "left unscored (`missing_rating: unscored`)", "best_mean_previous_row", "with the previous row's rating, as the authors' eval.py",
    ),
}


def owns_task(task: str) -> bool:
    return task == TASK


def best_mean(value: float | None) -> str:
    return MISSING if value is None else f"{value:.2f}"


def percent(value: float | None) -> str:
    return MISSING if value is None else f"{value * 100:.0f}"  # whole percentages, as the authors' table


def headline(result: TaskResult) -> dict[str, float | None]:
    """The task's own numbers: each a mean over judges."""
    return {metric: result.number(metric, FILTER) for metric in ("best_mean", *DEPENDENCE)}


def provenance(result: TaskResult) -> dict[str, Any]:
    """What the task recorded (``configs.jasco.metadata.lm_eval_speech``) in its results file."""
    return task_provenance(result, TASK)


def judging(result: TaskResult) -> dict[str, Any]:
    """The task's judging provenance, with the per-judge metrics (recorded beside it; inside it in older files)."""
    record = provenance(result)
    node = dict(record.get("judging") or {}) if isinstance(record.get("judging"), dict) else {}
    if isinstance(record.get("per_judge_metrics"), dict):
        node["per_judge_metrics"] = record["per_judge_metrics"]
    return node


def judge_names(info: dict[str, Any]) -> list[str]:
    """The judges in the order the task lists them, then any with metrics but not listed."""
    names: list[str] = []
    for judge in info.get("judges") or []:
        if isinstance(judge, dict):
            name = judge.get("name") or judge.get("model")
            if isinstance(name, str) and name and name not in names:
                names.append(name)
    per_judge = info.get("per_judge_metrics")
    if isinstance(per_judge, dict):
        names += [name for name in per_judge if name not in names]
    return names


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        return None
    return float(value)


def rows(model: ModelResults) -> list[tuple[str, dict[str, float | None]]]:
    """(judge cell, numbers) per table row: one per judge and their mean, or the single judge's row."""
    result = model.tasks[TASK]
    info = judging(result)
    names = judge_names(info)
    if len(names) <= 1:
        return [(names[0] if names else MISSING, headline(result))]
    per_judge = info.get("per_judge_metrics")
    judge_rows = []
    if isinstance(per_judge, dict):
        for name in names:
            metrics = per_judge.get(name) if isinstance(per_judge.get(name), dict) else {}
            judge_rows.append((name, {metric: _number(metrics.get(metric)) for metric in ("best_mean", *DEPENDENCE)}))
    return [*judge_rows, (f"mean of {len(names)} judges", headline(result))]


def render_markdown(merged: MergedResults) -> str:
    lines = [f"# {TITLE} leaderboard", "", CAPTION, "", f"## {TITLE}", "", _table(merged)]
    notes = _notes(merged)
    if notes:
        lines += ["", "Notes:", "", *(f"- {note}" for note in notes)]
    return "\n".join(lines) + "\n"


def _table(merged: MergedResults) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    for model in merged.models.values():
        for judge, numbers in rows(model):
            cells = [best_mean(numbers["best_mean"]), *(percent(numbers[metric]) for metric in DEPENDENCE)]
            lines.append("| " + " | ".join([_escape(model.label), _escape(judge), *cells]) + " |")
    return "\n".join(lines)


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def _notes(merged: MergedResults) -> list[str]:
    notes = []
    for model in merged.models.values():
        result = model.tasks[TASK]
        phrases = []
        for metric, singular, plural in COUNT_NOTES:
            count = result.number(metric, FILTER)
            if count:
                count = int(count)
                phrases.append(f"{count} {singular if count == 1 else plural}")
        info = judging(result)
        if len(judge_names(info)) > 1 and not isinstance(info.get("per_judge_metrics"), dict):
            phrases.append("no per-judge metrics in its results file, only their mean")
        if phrases:
            notes.append(f"{_escape(model.label)}, {TITLE}: {', '.join(phrases)}")
        carried = _carried_note(result)
        if carried:
            notes.append(f"{_escape(model.label)}, {TITLE}: {carried}")
    for label, _task, kept, superseded in merged.superseded:
        notes.append(f"{_escape(label)}, {TITLE}: in two files; kept the newer `{kept}` over `{superseded}`")
    return notes


def _carried_note(result: TaskResult) -> str | None:
    """How many Good rows had no rating of their own, and best-mean under the reading not chosen."""
    count = int(result.number("carried_rating_rows", FILTER) or 0)
    if not count:
        return None
    reading = provenance(result).get("missing_rating")
    done, other_metric, other_words = MISSING_RATING_READINGS.get(str(reading), MISSING_RATING_READINGS["previous_row"])
    rows = "1 Good judge-row" if count == 1 else f"{count} Good judge-rows"
    return f"{rows} without a rating, {done}; best-mean {other_words}: {best_mean(result.number(other_metric, FILTER))}"


def render_chart(merged: MergedResults, path: Path) -> None:
    """Modality dependence as one stacked bar per model (left) and best-mean (right); headline numbers."""
    from matplotlib.figure import Figure  # no pyplot: no global state, Agg renders savefig

    labels = list(merged.models)
    numbers = [headline(merged.models[label].tasks[TASK]) for label in labels]
    figure = Figure(figsize=(11, 1.6 + 0.55 * len(labels)), layout="constrained")
    figure.get_layout_engine().set(wspace=0.04)
    dependence_axes, best_axes = figure.subplots(1, 2, sharey=True, width_ratios=[4, 1.3])
    positions = list(range(len(labels)))
    colours = ("tab:blue", "tab:purple", "tab:orange")
    left = [0.0] * len(labels)
    for metric, name, colour in zip(DEPENDENCE, DEPENDENCE_LABELS, colours, strict=True):
        widths = [_percent_or_zero(row[metric]) for row in numbers]
        bars = dependence_axes.barh(positions, widths, left=left, color=colour, label=name, height=0.6)
        # A sliver too narrow for its number keeps it only in the Markdown.
        dependence_axes.bar_label(
            bars, labels=[f"{w:.0f}%" if w >= 4 else "" for w in widths], label_type="center", fontsize=8, color="white"
        )
        left = [start + width for start, width in zip(left, widths, strict=True)]
    for position, row in zip(positions, numbers, strict=True):
        if all(row[metric] is None for metric in DEPENDENCE):
            dependence_axes.text(1, position, "no result", va="center", color="grey", fontsize=8)
    dependence_axes.set_xlim(0, 100)
    dependence_axes.set_xlabel("share of judge-rows with an Audio / Both / Speech orientation (%)")
    dependence_axes.set_yticks(positions, labels)
    dependence_axes.invert_yaxis()  # the first model on top, as in the table
    dependence_axes.set_title(f"{TITLE}: modality dependence", fontsize=10)
    dependence_axes.legend(loc="lower center", bbox_to_anchor=(0.5, 1.08), ncols=3, frameon=False, fontsize=8)

    best = [row["best_mean"] for row in numbers]
    bars = best_axes.barh(positions, [0.0 if b is None else b for b in best], color="tab:green", height=0.6)
    best_axes.bar_label(bars, labels=[MISSING if b is None else f"{b:.2f}" for b in best], padding=2, fontsize=8)
    best_axes.set_xlim(0, 2.4)  # 0-2, with room for the numbers
    best_axes.set_xticks([0, 0.5, 1, 1.5, 2])
    best_axes.set_title("best-mean (0–2)", fontsize=10)
    for axes in (dependence_axes, best_axes):
        axes.grid(axis="x", alpha=0.3)
        axes.set_axisbelow(True)
    figure.savefig(path, format="png", dpi=120)


def _percent_or_zero(value: float | None) -> float:
    return 0.0 if value is None else value * 100
