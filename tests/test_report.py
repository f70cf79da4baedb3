"""``lm-eval-speech report``: lm-eval results files -> the SpeechInstructBench leaderboard."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest

from lm_eval_speech.cli import main
from lm_eval_speech.report import ReportError, build_reports
from lm_eval_speech.report.results import load_results_file

VARIANTS = ("standard", "background", "accent", "paralinguistics", "disfluency")
HEADER = "| Model | Standard | Background | Accent | Paralinguistics | Disfluency | Open-Ended | Adjustment |"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Run start times as lm-eval writes them (time.time() at the start of simple_evaluate).
EARLIER, LATER = 1_790_000_000.0, 1_790_086_400.0

# Qwen2-Audio's and GLM-4-Voice's numbers from the authors' README (spec §1.7), as fractions.
QWEN_EN_CLOSED = {
    "standard": (0.1982, 0.3018), "background": (0.1817, 0.2882), "accent": (0.1859, 0.2881),
    "paralinguistics": (0.2070, 0.3133), "disfluency": (0.1519, 0.2467),
}
QWEN_ZH_CLOSED = {  # accent left out: a cell with no run
    "standard": (0.1923, 0.2897), "background": (0.1889, 0.2849),
    "paralinguistics": (0.1877, 0.2648), "disfluency": (0.1877, 0.2648),
}
GLM_EN_CLOSED = {
    "standard": (0.1828, 0.2939), "background": (0.1729, 0.2789), "accent": (0.2037, 0.3111),
    "paralinguistics": (0.2004, 0.3175), "disfluency": (0.1883, 0.3018),
}


# --- lm-eval's results format -------------------------------------------------------------------

def closed_metrics(task: str, prompt_acc: float, inst_acc: float, failed: int = 0) -> dict:
    metrics = {"name": task, "alias": task, "sample_len": 100}
    for prefix in ("", "_strict", "_loose"):
        metrics[f"prompt_level{prefix}_acc,sib"] = prompt_acc
        metrics[f"prompt_level{prefix}_acc_stderr,sib"] = 0.01
        metrics[f"inst_level{prefix}_acc,sib"] = inst_acc
        metrics[f"inst_level{prefix}_acc_stderr,sib"] = "N/A"
    metrics |= {"failed_items,sib": failed, "failed_items_stderr,sib": "N/A"}
    return metrics


def judged_metrics(task: str, first: tuple[str, float], second: tuple[str, float], unparsed=0, judge_failed=0, failed=0) -> dict:
    metrics = {"name": task, "alias": task, "sample_len": 50}
    for metric, value in (first, second):
        metrics[f"{metric},judge"] = value
        metrics[f"{metric}_stderr,judge"] = 0.02
    for metric, count in (("unparsed_items", unparsed), ("judge_failed_items", judge_failed), ("failed_items", failed)):
        metrics[f"{metric},judge"] = count
        metrics[f"{metric}_stderr,judge"] = "N/A"
    return metrics


def closed_results(language: str, scores: dict[str, tuple[float, float]], failed: dict[str, int] | None = None) -> dict:
    results = {
        f"speechinstruct_close_{language}_{variant}": closed_metrics(
            f"speechinstruct_close_{language}_{variant}", *scores[variant], failed=(failed or {}).get(variant, 0)
        )
        for variant in VARIANTS
        if variant in scores
    }
    # Group rows carry their own (mean) numbers; the report must not read them as a cell.
    group = f"speechinstruct_close_{language}"
    results[group] = {"alias": group, "prompt_level_acc,sib": 0.9999, "inst_level_acc,sib": 0.9999}
    return results


def write_results(
    output_path: Path, results: dict, *, model_name: str | None, date: float | None,
    model: str = "qwen2_audio", model_args: str | dict = "pretrained=Qwen/Qwen2-Audio-7B-Instruct",
    stamp: str = "2026-10-01T10-00-00.000000",
) -> Path:
    """A results file where ``lm_eval --output_path output_path`` puts it, with its real top-level keys."""
    data = {
        "results": results,
        "groups": {name: metrics for name, metrics in results.items() if name.count("_") < 3},
        "group_subtasks": {},
        "configs": {name: {"task": name} for name in results},
        "versions": {name: 1.0 for name in results},
        "n-shot": {name: 0 for name in results},
        "higher_is_better": {},
        "n-samples": {},
        "config": {"model": model, "model_args": model_args, "batch_size": "1", "limit": None},
        "git_hash": None,
        "date": date,
        "lm_eval_version": "0.4.13",
        "model_source": model,
        "model_name": model_name,
        "model_name_sanitized": (model_name or "unnamed").replace("/", "__"),
        "total_evaluation_time_seconds": "12.5",
    }
    if date is None:
        del data["date"]
    if model_name is None:
        del data["model_name"]
    return save_results(output_path, data, stamp)


def save_results(output_path: Path, data: dict, stamp: str) -> Path:
    """Where lm_eval's tracker writes a results file: OUT/<model_name_sanitized>/results_<stamp>.json."""
    folder = output_path / data["model_name_sanitized"]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"results_{stamp}.json"
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path


@pytest.fixture
def runs(tmp_path) -> dict[str, Path]:
    """Qwen2-Audio: closed (en, zh) in one run, open + adjust (en, zh) in another; GLM: closed en only."""
    qwen = "Qwen/Qwen2-Audio-7B-Instruct"
    qwen_closed = write_results(
        tmp_path / "closed", {**closed_results("en", QWEN_EN_CLOSED), **closed_results("zh", QWEN_ZH_CLOSED)},
        model_name=qwen, date=EARLIER,
    )
    judged = {
        "speechinstruct_open_en": judged_metrics(
            "speechinstruct_open_en", ("prompt_level_acc", 0.3140), ("inst_level_acc", 0.5814), unparsed=3, judge_failed=1
        ),
        "speechinstruct_open_zh": judged_metrics("speechinstruct_open_zh", ("prompt_level_acc", 0.4064), ("inst_level_acc", 0.6437)),
        "speechinstruct_adjust_en": judged_metrics("speechinstruct_adjust_en", ("iar", 0.4860), ("ecr", 0.3745)),
        "speechinstruct_adjust_zh": judged_metrics("speechinstruct_adjust_zh", ("iar", 0.6400), ("ecr", 0.2320), failed=2),
        "speechinstruct": {"alias": "speechinstruct", "prompt_level_acc,judge": 0.9999},
    }
    qwen_judged = write_results(tmp_path / "judged", judged, model_name=qwen, date=LATER, stamp="2026-10-02T09-00-00.000000")
    # No model_name: the label comes from config.model + model_args' pretrained.
    glm = write_results(
        tmp_path / "closed", closed_results("en", GLM_EN_CLOSED, failed={"background": 1}), model_name=None, date=EARLIER,
        model="hf", model_args="pretrained=THUDM/glm-4-voice-9b,dtype=bfloat16",
    )
    return {"root": tmp_path, "qwen_closed": qwen_closed, "qwen_judged": qwen_judged, "glm": glm}


def table(markdown: str, language: str) -> list[str]:
    """The table rows (header and separator included) under ``## <language>``."""
    lines = markdown.splitlines()
    start = lines.index(f"## {language}")
    rows = []
    for line in lines[start + 1:]:
        if line.startswith("## "):
            break
        if line.startswith("|"):
            rows.append(line)
    return rows


def notes(markdown: str) -> list[str]:
    return [line[2:] for line in markdown.splitlines() if line.startswith("- ")]


# --- tables ---------------------------------------------------------------------------------------

def test_tables_match_the_authors_layout_and_merge_a_models_runs(runs):
    [report] = build_reports([runs["root"]])
    assert report.benchmark == "speechinstruct"
    assert table(report.markdown, "English") == [
        HEADER,
        "|---|---|---|---|---|---|---|---|",
        "| Qwen/Qwen2-Audio-7B-Instruct | 19.82/30.18 | 18.17/28.82 | 18.59/28.81 | 20.70/31.33 | 15.19/24.67 "
        "| 31.40/58.14 | 48.60/37.45 |",
        "| hf (THUDM/glm-4-voice-9b) | 18.28/29.39 | 17.29/27.89 | 20.37/31.11 | 20.04/31.75 | 18.83/30.18 | – | – |",
    ]
    # GLM has no Chinese run: no all-dash row; Qwen's zh accent was not run.
    assert table(report.markdown, "Chinese") == [
        HEADER,
        "|---|---|---|---|---|---|---|---|",
        "| Qwen/Qwen2-Audio-7B-Instruct | 19.23/28.97 | 18.89/28.49 | – | 18.77/26.48 | 18.77/26.48 | 40.64/64.37 | 64.00/23.20 |",
    ]
    assert "99.99" not in report.markdown  # group rows ignored
    assert "P.Acc / I.Acc (%)" in report.markdown and "IAR↑ / ECR↓ (%)" in report.markdown


def test_non_zero_counts_are_listed_under_their_table(runs):
    [report] = build_reports([runs["root"]])
    assert notes(report.markdown) == [
        "Qwen/Qwen2-Audio-7B-Instruct, Open-Ended (en): 3 items left unscored (judge output unparsed), "
        "1 item left unscored (judge call failed)",
        "hf (THUDM/glm-4-voice-9b), Background (en): 1 item left out (no model response)",
        "Qwen/Qwen2-Audio-7B-Instruct, Adjustment (zh): 2 items left out (no model response)",
    ]
    english, chinese = report.markdown.split("## Chinese")
    assert "Background (en)" in english and "Adjustment (zh)" in chinese


def test_items_scored_with_drawn_arguments_show_how_far_a_draw_could_move_the_cell(tmp_path):
    metrics = closed_metrics("speechinstruct_close_en_standard", 0.612, 0.7)
    metrics |= {"drawn_items,sib": 12, "prompt_level_acc_draw_min,sib": 0.609, "prompt_level_acc_draw_max,sib": 0.615,
                "inst_level_acc_draw_min,sib": 0.695, "inst_level_acc_draw_max,sib": 0.7031}
    write_results(tmp_path, {"speechinstruct_close_en_standard": metrics}, model_name="m", date=EARLIER)
    [report] = build_reports([tmp_path])
    assert "61.20/70.00" in report.markdown
    assert notes(report.markdown) == [
        "m, Standard (en): 12 items scored with arguments drawn at random as upstream does "
        "(P.Acc 61.20 (any draw: 60.90–61.50), I.Acc 70.00 (any draw: 69.50–70.31))"
    ]


def test_only_the_languages_present_get_a_table(runs):
    [report] = build_reports([runs["glm"]])
    assert "## English" in report.markdown and "## Chinese" not in report.markdown
    assert len(table(report.markdown, "English")) == 3


def test_a_missing_half_of_a_cell_shows_a_dash(tmp_path):
    metrics = closed_metrics("speechinstruct_close_en_standard", 0.25, 0.5)
    metrics["inst_level_acc,sib"] = "N/A"
    path = write_results(tmp_path, {"speechinstruct_close_en_standard": metrics}, model_name="m", date=EARLIER)
    [report] = build_reports([path])
    assert table(report.markdown, "English")[2] == "| m | 25.00/– | – | – | – | – | – | – |"


def test_a_judged_cell_that_scored_nothing_shows_dashes_and_its_counts(tmp_path):
    # judged metrics are NaN (written as NaN in the results file) when no item could be scored
    metrics = judged_metrics("speechinstruct_open_en", ("prompt_level_acc", float("nan")), ("inst_level_acc", float("nan")),
                             judge_failed=50)
    path = write_results(tmp_path, {"speechinstruct_open_en": metrics}, model_name="m", date=EARLIER)
    assert "NaN" in path.read_text()
    [report] = build_reports([path])
    assert table(report.markdown, "English")[2] == "| m | – | – | – | – | – | – | – |"
    assert "nan" not in report.markdown.lower()
    assert notes(report.markdown) == ["m, Open-Ended (en): 50 items left unscored (judge call failed)"]


# --- merging and labels ---------------------------------------------------------------------------

def test_the_newer_run_of_a_task_wins_by_its_date_field(tmp_path):
    task = "speechinstruct_close_en_standard"
    newer = write_results(tmp_path / "a", {task: closed_metrics(task, 0.40, 0.50)}, model_name="m", date=LATER)
    older = write_results(tmp_path / "b", {task: closed_metrics(task, 0.10, 0.20)}, model_name="m", date=EARLIER)
    # The older file is listed last and is newer on disk: the date field still decides.
    os.utime(older, (LATER + 100, LATER + 100))
    [report] = build_reports([newer, older])
    assert table(report.markdown, "English")[2] == "| m | 40.00/50.00 | – | – | – | – | – | – |"
    assert notes(report.markdown) == [f"m, Standard (en): in two files; kept the newer `{newer}` over `{older}`"]


def test_without_a_date_field_the_file_mtime_decides(tmp_path):
    task = "speechinstruct_close_en_standard"
    first = write_results(tmp_path / "a", {task: closed_metrics(task, 0.10, 0.20)}, model_name="m", date=None)
    second = write_results(tmp_path / "b", {task: closed_metrics(task, 0.30, 0.40)}, model_name="m", date=None)
    os.utime(first, (LATER, LATER))
    os.utime(second, (EARLIER, EARLIER))
    [report] = build_reports([second, first])
    assert "| m | 10.00/20.00 |" in report.markdown


def test_label_overrides_and_merges_differently_named_runs(runs):
    [report] = build_reports([runs["qwen_closed"], runs["qwen_judged"]], labels=["Qwen2-Audio", "Qwen2-Audio"])
    [row] = table(report.markdown, "English")[2:]
    assert row.startswith("| Qwen2-Audio | 19.82/30.18 |") and row.endswith("| 31.40/58.14 | 48.60/37.45 |")
    [report] = build_reports([runs["glm"]], labels=["GLM-4-Voice"])
    assert table(report.markdown, "English")[2].startswith("| GLM-4-Voice | 18.28/29.39 |")


@pytest.mark.parametrize(
    ("model_args", "expected"),
    [
        ({"pretrained": "org/model-a", "dtype": "float16"}, "qwen2_audio (org/model-a)"),
        ("path=/runs/old,batch=2", "qwen2_audio (/runs/old)"),
        ("", "qwen2_audio"),
    ],
)
def test_label_falls_back_to_model_type_and_checkpoint(tmp_path, model_args, expected):
    path = write_results(tmp_path, {}, model_name=None, date=EARLIER, model_args=model_args)
    assert load_results_file(path).label == expected


# --- chart ----------------------------------------------------------------------------------------

def test_output_dir_gets_the_markdown_and_a_png(runs, tmp_path):
    output = tmp_path / "board"
    [report] = build_reports([runs["root"]], output_dir=output)
    markdown_path, chart_path = output / "speechinstruct_leaderboard.md", output / "speechinstruct_leaderboard.png"
    assert report.written == [markdown_path, chart_path]
    assert markdown_path.read_text(encoding="utf-8") == report.markdown
    png = chart_path.read_bytes()
    assert png[:8] == PNG_SIGNATURE
    width, height = struct.unpack(">II", png[16:24])  # IHDR: the first chunk
    assert width > 1000 and height > 600  # two languages -> two rows of panels


# --- errors ---------------------------------------------------------------------------------------

def test_invalid_json_is_an_error_naming_the_file(runs):
    broken = runs["root"] / "closed" / "broken" / "results_2026-10-03T00-00-00.json"
    broken.parent.mkdir()
    broken.write_text('{"results": {', encoding="utf-8")
    with pytest.raises(ReportError, match=f"{broken}: not valid JSON"):
        build_reports([runs["root"]])


def test_a_json_file_that_is_not_lm_eval_results_is_an_error(tmp_path):
    path = tmp_path / "results_x.json"
    path.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ReportError, match="not an lm-eval results file"):
        build_reports([path])


def test_a_file_without_sib_tasks_is_skipped_with_a_warning(runs, tmp_path):
    other = write_results(tmp_path / "other", {"gsm8k": {"alias": "gsm8k", "exact_match,strict-match": 0.5}}, model_name="x", date=LATER)
    warnings: list[str] = []
    [report] = build_reports([other, runs["glm"]], warn=warnings.append)
    assert warnings == [f"{other}: no SpeechInstructBench / JASCO / S2S-Arena tasks in its results; skipped"]
    assert "| x |" not in report.markdown


def test_no_sib_tasks_anywhere_is_an_error(tmp_path):
    other = write_results(tmp_path, {"gsm8k": {"exact_match,strict-match": 0.5}}, model_name="x", date=LATER)
    with pytest.raises(ReportError, match="no SpeechInstructBench / JASCO / S2S-Arena results"):
        build_reports([other], warn=lambda message: None)


def test_a_label_per_path_or_none(runs):
    with pytest.raises(ReportError, match="--label given 1 time"):
        build_reports([runs["glm"], runs["qwen_closed"]], labels=["only-one"])


# --- CLI ------------------------------------------------------------------------------------------

def test_cli_prints_the_markdown(runs, capsys):
    assert main(["report", str(runs["qwen_closed"]), str(runs["qwen_judged"]), "--label", "Qwen2-Audio", "--label", "Qwen2-Audio"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# SpeechInstructBench leaderboard\n")
    assert "| Qwen2-Audio | 19.82/30.18 | 18.17/28.82 | 18.59/28.81 | 20.70/31.33 | 15.19/24.67 | 31.40/58.14 | 48.60/37.45 |" in out


def test_cli_writes_files_with_output(runs, tmp_path, capsys):
    output = tmp_path / "out"
    assert main(["report", str(runs["root"]), "--output", str(output), "--benchmark", "speechinstruct"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [
        f"wrote {output / 'speechinstruct_leaderboard.md'}",
        f"wrote {output / 'speechinstruct_leaderboard.png'}",
    ]
    assert (output / "speechinstruct_leaderboard.png").read_bytes()[:8] == PNG_SIGNATURE


def test_cli_exits_2_naming_the_file(tmp_path, capsys):
    broken = tmp_path / "results_bad.json"
    broken.write_text("not json", encoding="utf-8")
    assert main(["report", str(broken)]) == 2
    assert f"lm-eval-speech report: error: {broken}: not valid JSON" in capsys.readouterr().err

    assert main(["report", str(tmp_path / "missing")]) == 2
    assert f"{tmp_path / 'missing'}: no such file or directory" in capsys.readouterr().err


def test_cli_exits_2_when_no_input_has_sib_tasks(tmp_path, capsys):
    other = write_results(tmp_path, {"gsm8k": {"exact_match,strict-match": 0.5}}, model_name="x", date=LATER)
    assert main(["report", str(other)]) == 2
    err = capsys.readouterr().err
    assert f"warning: {other}: no SpeechInstructBench / JASCO / S2S-Arena tasks" in err
    assert "error: no SpeechInstructBench / JASCO / S2S-Arena results" in err


def test_cli_rejects_an_unknown_benchmark(runs):
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(runs["root"]), "--benchmark", "nope"])
    assert exit_info.value.code == 2
