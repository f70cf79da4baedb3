"""Leaderboards in the benchmark authors' layout, from lm-eval results files.

Each benchmark is a sibling module with ``NAME``, ``TITLE``, ``FILE_STEM``, ``owns_task(task)``,
``render_markdown(merged)`` and ``render_chart(merged, path)``; add it to ``BENCHMARKS``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lm_eval_speech.report import jasco, speechinstruct, spoken
from lm_eval_speech.report.results import (
    MergedResults,
    ReportError,
    ResultsFile,
    find_results_files,
    load_results_file,
    merge,
)

__all__ = ["BENCHMARKS", "Report", "ReportError", "build_reports"]

BENCHMARKS = {module.NAME: module for module in (speechinstruct, jasco, spoken)}

logger = logging.getLogger(__name__)


@dataclass
class Report:
    benchmark: str
    merged: MergedResults
    markdown: str
    written: list[Path] = field(default_factory=list)


def build_reports(
    paths: Sequence[str | Path],
    labels: Sequence[str] | None = None,
    benchmarks: Sequence[str] | None = None,
    output_dir: str | Path | None = None,
    warn: Callable[[str], None] = logger.warning,
) -> list[Report]:
    """One report per benchmark found in ``paths`` (or per name in ``benchmarks``).

    ``labels[i]`` names the model of every file under ``paths[i]``. With ``output_dir`` each report
    is also written there as ``<FILE_STEM>.md`` and ``<FILE_STEM>.png``. Raises :class:`ReportError`
    when nothing usable is left; files without any wanted task are skipped with ``warn``.
    """
    unknown = sorted(set(benchmarks or ()) - set(BENCHMARKS))
    if unknown:
        raise ReportError(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    files = _load_all([Path(path) for path in paths], labels, warn)
    wanted = [BENCHMARKS[name] for name in benchmarks] if benchmarks else list(BENCHMARKS.values())
    kept = []
    for results_file in files:
        if any(module.owns_task(task) for module in wanted for task in results_file.tasks):
            kept.append(results_file)
        else:
            warn(f"{results_file.path}: no {' / '.join(module.TITLE for module in wanted)} tasks in its results; skipped")
    if not kept:
        raise ReportError(
            f"no {' / '.join(module.TITLE for module in wanted)} results in "
            + ", ".join(str(path) for path in paths)
        )

    reports = []
    for module in wanted:
        merged = merge(kept, module.owns_task)
        if not merged.models:
            continue  # only named explicitly or found in no file; the others still report
        reports.append(Report(module.NAME, merged, module.render_markdown(merged)))
    if output_dir is not None:
        _write(reports, Path(output_dir))
    return reports


def _load_all(paths: list[Path], labels: Sequence[str] | None, warn: Callable[[str], None]) -> list[ResultsFile]:
    if labels and len(labels) != len(paths):
        raise ReportError(f"--label given {len(labels)} time(s) for {len(paths)} path(s); give one per path or none")
    files = []
    for index, path in enumerate(paths):
        found = find_results_files(path)
        if not found:
            warn(f"{path}: no results_*.json files under it; skipped")
        files.extend(load_results_file(file, labels[index] if labels else None) for file in found)
    return files


def _write(reports: list[Report], output_dir: Path) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    for report in reports:
        module = BENCHMARKS[report.benchmark]
        markdown_path = output_dir / f"{module.FILE_STEM}.md"
        chart_path = output_dir / f"{module.FILE_STEM}.png"
        markdown_path.write_text(report.markdown, encoding="utf-8")
        try:
            module.render_chart(report.merged, chart_path)
        except ImportError as error:  # matplotlib is not a core dependency
            raise ReportError(f"{chart_path}: the chart needs matplotlib ({error}); the Markdown is written") from error
        report.written += [markdown_path, chart_path]
