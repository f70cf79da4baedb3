"""SpeechInstructBench: the authors' leaderboard (README; spec §1.7) as Markdown and a bar chart."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from lm_eval_speech.report.results import MergedResults, ModelResults, TaskResult

NAME = "speechinstruct"
TITLE = "SpeechInstructBench"
FILE_STEM = "speechinstruct_leaderboard"

LANGUAGES = {"en": "English", "zh": "Chinese"}
VARIANTS = ("standard", "background", "accent", "paralinguistics", "disfluency")
ACCURACY = ("prompt_level_acc", "inst_level_acc")  # the leaderboard's P.Acc / I.Acc
ADJUSTMENT = ("iar", "ecr")
MISSING = "–"

# Items the authors' scripts drop without a word; we list every non-zero count under the table.
COUNT_NOTES = {
    "failed_items": "left out (no model response)",
    "unparsed_items": "left unscored (judge output unparsed)",
    "judge_failed_items": "left unscored (judge call failed)",
}


@dataclass(frozen=True)
class Column:
    header: str  # exactly the authors' column name
    task_pattern: str  # task name with a {language} slot
    filter_name: str
    metrics: tuple[str, str]  # shown as first/second

    def task(self, language: str) -> str:
        return self.task_pattern.format(language=language)


COLUMNS = (
    *(
        Column(variant.capitalize(), f"speechinstruct_close_{{language}}_{variant}", "sib", ACCURACY)
        for variant in VARIANTS
    ),
    Column("Open-Ended", "speechinstruct_open_{language}", "judge", ACCURACY),
    Column("Adjustment", "speechinstruct_adjust_{language}", "judge", ADJUSTMENT),
)
CAPTION = "Standard … Open-Ended cells: P.Acc / I.Acc (%); Adjustment cells: IAR↑ / ECR↓ (%); `–`: no result."
TASK_NAMES = frozenset(column.task(language) for column in COLUMNS for language in LANGUAGES)


def owns_task(task: str) -> bool:
    # Exact names only: group rows (speechinstruct, speechinstruct_close_en, ...) repeat leaf numbers.
    return task in TASK_NAMES


def languages_present(merged: MergedResults) -> list[str]:
    present = merged.tasks_present()
    return [language for language in LANGUAGES if any(column.task(language) in present for column in COLUMNS)]


def percent(value: float | None) -> str:
    return MISSING if value is None else f"{value * 100:.2f}"


def cell(result: TaskResult | None, column: Column) -> str:
    if result is None:
        return MISSING
    first, second = (result.number(metric, column.filter_name) for metric in column.metrics)
    if first is None and second is None:
        return MISSING
    return f"{percent(first)}/{percent(second)}"


def models_in(merged: MergedResults, language: str) -> list[ModelResults]:
    """Models with at least one task in this language: as the authors' zh table, no all-dash rows."""
    tasks = {column.task(language) for column in COLUMNS}
    return [model for model in merged.models.values() if tasks & set(model.tasks)]


def render_markdown(merged: MergedResults) -> str:
    lines = [f"# {TITLE} leaderboard", "", CAPTION]
    for language in languages_present(merged):
        lines += ["", f"## {LANGUAGES[language]}", "", _table(merged, language)]
        notes = _notes(merged, language)
        if notes:
            lines += ["", "Notes:", "", *(f"- {note}" for note in notes)]
    return "\n".join(lines) + "\n"


def _table(merged: MergedResults, language: str) -> str:
    headers = ["Model", *(column.header for column in COLUMNS)]
    rows = [
        "| " + " | ".join(headers) + " |",
        "|" + "---|" * len(headers),
    ]
    for model in models_in(merged, language):
        cells = [cell(model.tasks.get(column.task(language)), column) for column in COLUMNS]
        rows.append("| " + " | ".join([_escape(model.label), *cells]) + " |")
    return "\n".join(rows)


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def _notes(merged: MergedResults, language: str) -> list[str]:
    notes = []
    for model in models_in(merged, language):
        for column in COLUMNS:
            result = model.tasks.get(column.task(language))
            counts = _count_phrases(result, column) if result else []
            if counts:
                notes.append(f"{_escape(model.label)}, {column.header} ({language}): {', '.join(counts)}")
    headers = {column.task(language): column.header for column in COLUMNS}
    replaced: dict[tuple[str, Path, Path], list[str]] = {}  # one note per pair of files, not per task
    for label, task, kept, superseded in merged.superseded:
        if task in headers:
            replaced.setdefault((label, kept, superseded), []).append(headers[task])
    for (label, kept, superseded), columns in replaced.items():
        notes.append(
            f"{_escape(label)}, {', '.join(columns)} ({language}): in two files; kept the newer `{kept}` over `{superseded}`"
        )
    return notes


def _count_phrases(result: TaskResult, column: Column) -> list[str]:
    phrases = []
    for metric, phrase in COUNT_NOTES.items():
        count = result.number(metric, column.filter_name)
        if count:
            count = int(count)
            phrases.append(f"{count} item{'' if count == 1 else 's'} {phrase}")
    drawn = result.number("drawn_items", column.filter_name)
    if drawn:
        phrases.append(f"{int(drawn)} item{'' if drawn == 1 else 's'} scored with arguments drawn at random as upstream "
                       f"does ({_draw_ranges(result, column)})")
    return phrases


def _draw_ranges(result: TaskResult, column: Column) -> str:
    """``P.Acc 61.20 (any draw: 60.90–61.50)``: how far upstream's random arguments could move each number."""
    shown = []
    for metric, label in zip(column.metrics, ("P.Acc", "I.Acc")):
        value, low, high = (result.number(m, column.filter_name) for m in (metric, f"{metric}_draw_min", f"{metric}_draw_max"))
        if value is not None and low is not None and high is not None:
            shown.append(f"{label} {percent(value)} (any draw: {percent(low)}–{percent(high)})")
    return ", ".join(shown)


def render_chart(merged: MergedResults, path: Path) -> None:
    """Per language: P.Acc per column (left) and IAR / ECR (right), one bar per model."""
    from matplotlib.figure import Figure  # no pyplot: no global state, Agg renders savefig

    languages = languages_present(merged)
    labels = list(merged.models)  # every model in every panel: one colour per model throughout
    figure = Figure(figsize=(13, 3.6 * len(languages) + 0.8), layout="constrained")
    grid = figure.add_gridspec(len(languages), 2, width_ratios=[len(COLUMNS) - 1, 2.2])
    accuracy_columns = [column for column in COLUMNS if column.metrics == ACCURACY]
    adjustment = next(column for column in COLUMNS if column.metrics == ADJUSTMENT)
    for row, language in enumerate(languages):
        accuracy_values = [
            [_value(merged, label, column, language, ACCURACY[0]) for column in accuracy_columns] for label in labels
        ]
        adjustment_values = [
            [_value(merged, label, adjustment, language, metric) for metric in ADJUSTMENT] for label in labels
        ]
        _grouped_bars(
            figure.add_subplot(grid[row, 0]), [column.header for column in accuracy_columns], labels, accuracy_values,
            title=f"{LANGUAGES[language]}: P.Acc (%)",
        )
        _grouped_bars(
            figure.add_subplot(grid[row, 1]), ["IAR ↑", "ECR ↓"], labels, adjustment_values,
            title=f"{LANGUAGES[language]}: Adjustment (%)",
        )
    handles, legend_labels = figure.axes[0].get_legend_handles_labels()
    figure.legend(handles, legend_labels, loc="outside upper center", ncols=min(len(labels), 5), frameon=False)
    figure.savefig(path, format="png", dpi=120)


def _value(merged: MergedResults, label: str, column: Column, language: str, metric: str) -> float:
    result = merged.models[label].tasks.get(column.task(language))
    value = result.number(metric, column.filter_name) if result else None
    return math.nan if value is None else value * 100  # NaN: no bar, the group still lines up


def _grouped_bars(axes, groups: list[str], labels: list[str], values: list[list[float]], title: str) -> None:
    width = 0.8 / max(len(labels), 1)
    for index, (label, heights) in enumerate(zip(labels, values, strict=True)):
        offsets = [group + (index - (len(labels) - 1) / 2) * width for group in range(len(groups))]
        bars = axes.bar(offsets, heights, width, label=label)
        if len(labels) <= 4:  # more models and the numbers collide; the Markdown has them all
            axes.bar_label(bars, labels=["" if math.isnan(h) else f"{h:.1f}" for h in heights], fontsize=7, padding=1)
    axes.set_xticks(range(len(groups)), groups)
    axes.set_xlim(-0.5, len(groups) - 0.5)  # a group with no bars keeps its slot
    axes.set_ylim(0, 100)  # one scale in every panel, so heights compare across panels
    axes.set_title(title, fontsize=10)
    if all(math.isnan(h) for heights in values for h in heights):
        axes.text(0.5, 0.5, "not run", transform=axes.transAxes, ha="center", va="center", color="grey")
    axes.grid(axis="y", alpha=0.3)
    axes.set_axisbelow(True)
