"""``lm-eval-speech report``: lm-eval results files -> the JASCO leaderboard (spec §2.5–2.6)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from test_report import closed_results, save_results, write_results

from lm_eval_speech.cli import main
from lm_eval_speech.report import ReportError, build_reports

HEADER = "| Model | Judge | best-mean | Audio-dep % | Both-dep % | Speech-dep % |"
SEPARATOR = "|---|---|---|---|---|---|"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EARLIER, LATER = 1_790_000_000.0, 1_790_086_400.0
LLAMA, QWEN, MISTRAL = "Meta-Llama-3.1-70B-Instruct", "Qwen2.5-72B-Instruct", "Mistral-Large-Instruct-2411"
QWEN2_AUDIO, SALMONN = "Qwen/Qwen2-Audio-7B-Instruct", "SALMONN-7B"

# Qwen2-Audio's three judges: their mean is the newer README's 1.23 and 16 / 50 / 34.
THREE_JUDGES = {
    LLAMA: {"best_mean": 1.38, "audio_dependence": 0.13, "both_dependence": 0.56, "speech_dependence": 0.31},
    QWEN: {"best_mean": 1.20, "audio_dependence": 0.18, "both_dependence": 0.46, "speech_dependence": 0.36},
    MISTRAL: {"best_mean": 1.11, "audio_dependence": 0.17, "both_dependence": 0.48, "speech_dependence": 0.35},
}
THREE_JUDGES_MEAN = {"best_mean": 1.23, "audio_dependence": 0.16, "both_dependence": 0.50, "speech_dependence": 0.34}
SALMONN_LLAMA = {"best_mean": 1.2125, "audio_dependence": 0.2704, "both_dependence": 0.4788, "speech_dependence": 0.2508}


# --- lm-eval's results format -------------------------------------------------------------------

def jasco_metrics(numbers: dict[str, float | None], neither=0, unparsed=0, judge_failed=0, failed=0, carried=0) -> dict:
    """``results["jasco"]`` as lm-eval writes it: ``<metric>,<filter>`` plus a stderr per metric."""
    metrics = {"alias": "jasco"}
    for metric, value in numbers.items():
        metrics[f"{metric},judge"] = "N/A" if value is None else value
        metrics[f"{metric}_stderr,judge"] = "N/A"
    counts = {
        "neither_rows": neither, "unparsed_rows": unparsed, "carried_rating_rows": carried, "judge_failed_rows": judge_failed,
        "failed_items": failed,
    }
    for metric, count in counts.items():
        metrics[f"{metric},judge"] = count
        metrics[f"{metric}_stderr,judge"] = "N/A"
    return metrics


def judging_block(per_judge: dict[str, dict] | None, judges: list[str], rows_per_judge: int = 640) -> dict:
    """The task's judging record, its per-judge metrics under ``per_judge_metrics`` (``per_judge=None`` leaves them out);
    ``write_jasco`` puts each where the task writes it."""
    block = {
        "judges": [
            {"name": name, "backend": "openai", "model": f"org/{name}", "endpoint": "http://judge/v1", "samples": rows_per_judge}
            for name in judges
        ],
        "prompt_templates_sha256": {"judge": "0" * 64, "postprocess": "1" * 64},
        "cache": None,
        "samples": rows_per_judge * len(judges),
    }
    if per_judge is not None:
        block["per_judge_metrics"] = {
            name: {**numbers, "clips": 80, "rows": rows_per_judge} for name, numbers in per_judge.items()
        }
    return block


def write_jasco(
    output_path: Path, metrics: dict, judging: dict | None, *, model_name: str, date: float = EARLIER,
    stamp: str = "2026-10-01T10-00-00.000000", missing_rating: str | None = None, older_layout: bool = False,
) -> Path:
    """A results file where ``lm_eval --tasks jasco --output_path output_path`` puts it.

    The task records its per-judge metrics beside ``judging`` in ``configs.jasco.metadata.lm_eval_speech``;
    ``older_layout``: inside ``judging``, as files written before the provenance redesign hold them.
    """
    metadata = {"version": 1.0}
    if judging is not None:
        judging = dict(judging)
        per_judge = None if older_layout else judging.pop("per_judge_metrics", None)
        metadata["lm_eval_speech"] = {"data": {"dir": "/data/jasco"}, "judging": judging}
        if per_judge is not None:
            metadata["lm_eval_speech"]["per_judge_metrics"] = per_judge
    if missing_rating is not None:
        metadata.setdefault("lm_eval_speech", {})["missing_rating"] = missing_rating
    data = {
        "results": {"jasco": metrics},
        "group_subtasks": {"jasco": []},
        "configs": {
            "jasco": {
                "task": "jasco", "dataset_path": "lm_eval_speech.data", "test_split": "test", "output_type": "generate_until",
                "metric_list": [{"metric": "best_mean", "higher_is_better": True}], "metadata": metadata,
            }
        },
        "versions": {"jasco": 1.0},
        "n-shot": {"jasco": 0},
        "higher_is_better": {"jasco": {"best_mean": True}},
        "n-samples": {"jasco": {"original": 640, "effective": 640}},
        "config": {"model": "qwen2_audio", "model_args": f"pretrained={model_name}", "batch_size": "1", "limit": None},
        "git_hash": None,
        "date": date,
        "lm_eval_version": "0.4.13",
        "model_source": "qwen2_audio",
        "model_name": model_name,
        "model_name_sanitized": model_name.replace("/", "__"),
    }
    return save_results(output_path, data, stamp)


@pytest.fixture
def runs(tmp_path) -> dict[str, Path]:
    """Qwen2-Audio judged by three judges; SALMONN by one."""
    qwen = write_jasco(
        tmp_path, jasco_metrics(THREE_JUDGES_MEAN, neither=12, unparsed=3, judge_failed=1, failed=2),
        judging_block(THREE_JUDGES, [LLAMA, QWEN, MISTRAL]), model_name=QWEN2_AUDIO,
    )
    salmonn = write_jasco(
        tmp_path, jasco_metrics(SALMONN_LLAMA, neither=1), judging_block({LLAMA: SALMONN_LLAMA}, [LLAMA]), model_name=SALMONN,
    )
    return {"root": tmp_path, "qwen": qwen, "salmonn": salmonn}


def table(markdown: str) -> list[str]:
    lines = markdown.splitlines()
    start = lines.index("## JASCO")
    return [line for line in lines[start + 1:] if line.startswith("|")]


def notes(markdown: str) -> list[str]:
    return [line[2:] for line in markdown.splitlines() if line.startswith("- ")]


# --- table ----------------------------------------------------------------------------------------

def test_a_row_per_judge_and_their_mean_and_one_row_for_a_single_judge(runs):
    [report] = build_reports([runs["root"]], benchmarks=["jasco"])
    assert report.benchmark == "jasco"
    assert table(report.markdown) == [
        HEADER,
        SEPARATOR,
        f"| {QWEN2_AUDIO} | {LLAMA} | 1.38 | 13 | 56 | 31 |",
        f"| {QWEN2_AUDIO} | {QWEN} | 1.20 | 18 | 46 | 36 |",
        f"| {QWEN2_AUDIO} | {MISTRAL} | 1.11 | 17 | 48 | 35 |",
        f"| {QWEN2_AUDIO} | mean of 3 judges | 1.23 | 16 | 50 | 34 |",
        f"| {SALMONN} | {LLAMA} | 1.21 | 27 | 48 | 25 |",
    ]


def test_an_older_file_with_per_judge_metrics_inside_judging_keeps_its_rows(tmp_path):
    path = write_jasco(tmp_path, jasco_metrics(THREE_JUDGES_MEAN), judging_block(THREE_JUDGES, [LLAMA, QWEN, MISTRAL]),
                       model_name="m", older_layout=True)
    [report] = build_reports([path])
    assert table(report.markdown)[2:] == [
        f"| m | {LLAMA} | 1.38 | 13 | 56 | 31 |",
        f"| m | {QWEN} | 1.20 | 18 | 46 | 36 |",
        f"| m | {MISTRAL} | 1.11 | 17 | 48 | 35 |",
        "| m | mean of 3 judges | 1.23 | 16 | 50 | 34 |",
    ]
    assert notes(report.markdown) == []


def test_the_caption_explains_the_scales(runs):
    [report] = build_reports([runs["salmonn"]])
    assert report.markdown.startswith("# JASCO leaderboard\n\nbest-mean: 0–2,")
    caption = report.markdown.splitlines()[2]
    assert "best judge score among its 8 prompts" in caption
    assert "relying on both the audio sound and the spoken text earn credit" in caption
    assert "over the rows with an Audio, Both or Speech orientation (Neither and unparsed excluded)" in caption


def test_non_zero_counts_are_listed_as_notes(runs):
    [report] = build_reports([runs["root"]])
    assert notes(report.markdown) == [
        f"{QWEN2_AUDIO}, JASCO: 12 judge-rows Neither (excluded from dependence), 3 unparsed, 1 judge call failed, "
        "2 items without a model response",
        f"{SALMONN}, JASCO: 1 judge-row Neither (excluded from dependence)",
    ]


def test_no_counts_no_notes(tmp_path):
    path = write_jasco(tmp_path, jasco_metrics(SALMONN_LLAMA), judging_block({LLAMA: SALMONN_LLAMA}, [LLAMA]), model_name=SALMONN)
    [report] = build_reports([path])
    assert "Notes:" not in report.markdown and notes(report.markdown) == []


def carried_run(tmp_path, missing_rating: str | None, carried: int = 5) -> Path:
    """Three judges; some Good rows had no rating: best-mean 1.23 with the previous row's rating, 1.19 without."""
    chosen = 1.19 if missing_rating == "unscored" else 1.23
    numbers = {**THREE_JUDGES_MEAN, "best_mean": chosen, "best_mean_previous_row": 1.23, "best_mean_unscored": 1.19}
    return write_jasco(
        tmp_path, jasco_metrics(numbers, unparsed=carried + 1, carried=carried), judging_block(THREE_JUDGES, [LLAMA, QWEN, MISTRAL]),
        model_name="m", missing_rating=missing_rating,
    )


@pytest.mark.parametrize("missing_rating", ["previous_row", None])  # None: a file that does not say (the default)
def test_rows_that_took_the_previous_rating_are_noted_with_the_unscored_best_mean(tmp_path, missing_rating):
    [report] = build_reports([carried_run(tmp_path, missing_rating)])
    assert table(report.markdown)[-1] == "| m | mean of 3 judges | 1.23 | 16 | 50 | 34 |"
    assert notes(report.markdown) == [
        "m, JASCO: 6 unparsed",
        "m, JASCO: 5 Good judge-rows without a rating, scored with the previous row's rating, as the authors' eval.py; "
        "best-mean with them unscored: 1.19",
    ]


def test_under_unscored_the_note_gives_the_authors_best_mean(tmp_path):
    [report] = build_reports([carried_run(tmp_path, "unscored", carried=1)])
    assert table(report.markdown)[-1] == "| m | mean of 3 judges | 1.19 | 16 | 50 | 34 |"
    assert notes(report.markdown)[1] == (
        "m, JASCO: 1 Good judge-row without a rating, left unscored (`missing_rating: unscored`); "
        "best-mean with the previous row's rating, as the authors' eval.py: 1.23"
    )


def test_no_carried_rows_no_carried_note(tmp_path):
    [report] = build_reports([carried_run(tmp_path, "previous_row", carried=0)])
    assert notes(report.markdown) == ["m, JASCO: 1 unparsed"]


def test_without_per_judge_metrics_only_the_mean_row(tmp_path):
    path = write_jasco(tmp_path, jasco_metrics(THREE_JUDGES_MEAN), judging_block(None, [LLAMA, QWEN, MISTRAL]), model_name="m")
    [report] = build_reports([path])
    assert table(report.markdown)[2:] == ["| m | mean of 3 judges | 1.23 | 16 | 50 | 34 |"]
    assert notes(report.markdown) == ["m, JASCO: no per-judge metrics in its results file, only their mean"]


def test_without_any_judging_metadata_one_row_with_no_judge(tmp_path):
    path = write_jasco(tmp_path, jasco_metrics(THREE_JUDGES_MEAN), None, model_name="m")
    [report] = build_reports([path])
    assert table(report.markdown)[2:] == ["| m | – | 1.23 | 16 | 50 | 34 |"]


def test_a_judge_missing_from_the_per_judge_metrics_and_missing_values_show_a_dash(tmp_path):
    per_judge = {LLAMA: {**THREE_JUDGES[LLAMA], "audio_dependence": None}, QWEN: THREE_JUDGES[QWEN]}  # no Mistral entry
    headline = {**THREE_JUDGES_MEAN, "best_mean": None}  # lm-eval writes "N/A"
    path = write_jasco(tmp_path, jasco_metrics(headline), judging_block(per_judge, [LLAMA, QWEN, MISTRAL]), model_name="m")
    [report] = build_reports([path])
    assert table(report.markdown)[2:] == [
        f"| m | {LLAMA} | 1.38 | – | 56 | 31 |",
        f"| m | {QWEN} | 1.20 | 18 | 46 | 36 |",
        f"| m | {MISTRAL} | – | – | – | – |",
        "| m | mean of 3 judges | – | 16 | 50 | 34 |",
    ]


def test_the_newer_run_wins_and_is_noted(tmp_path):
    older = write_jasco(
        tmp_path / "a", jasco_metrics(THREE_JUDGES_MEAN), judging_block(THREE_JUDGES, [LLAMA, QWEN, MISTRAL]), model_name="m",
    )
    newer = write_jasco(
        tmp_path / "b", jasco_metrics(SALMONN_LLAMA), judging_block({LLAMA: SALMONN_LLAMA}, [LLAMA]), model_name="m", date=LATER,
    )
    [report] = build_reports([newer, older])
    # The per-judge rows come from the kept file too: one judge there, so one row.
    assert table(report.markdown)[2:] == [f"| m | {LLAMA} | 1.21 | 27 | 48 | 25 |"]
    assert notes(report.markdown) == [f"m, JASCO: in two files; kept the newer `{newer}` over `{older}`"]


def test_only_the_jasco_task_is_read(tmp_path):
    path = write_jasco(tmp_path, jasco_metrics(SALMONN_LLAMA), None, model_name="x")
    data = json.loads(path.read_text(encoding="utf-8"))
    data["results"] = {"jasco_v2": data["results"]["jasco"]}  # a look-alike name is not this benchmark
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ReportError, match="no SpeechInstructBench / JASCO / S2S-Arena results"):
        build_reports([path], warn=lambda message: None)


# --- chart ----------------------------------------------------------------------------------------

def png_size(path: Path) -> tuple[int, int]:
    png = path.read_bytes()
    assert png[:8] == PNG_SIGNATURE
    assert png[12:16] == b"IHDR"
    return struct.unpack(">II", png[16:24])


def test_output_dir_gets_the_markdown_and_the_dependence_chart(runs, tmp_path):
    output = tmp_path / "board"
    [report] = build_reports([runs["root"]], benchmarks=["jasco"], output_dir=output)
    markdown_path, chart_path = output / "jasco_leaderboard.md", output / "jasco_leaderboard.png"
    assert report.written == [markdown_path, chart_path]
    assert markdown_path.read_text(encoding="utf-8") == report.markdown
    width, height = png_size(chart_path)
    assert width > 1000 and height > 200


def test_the_chart_draws_a_model_with_no_numbers(tmp_path):
    empty = {metric: None for metric in THREE_JUDGES_MEAN}
    path = write_jasco(tmp_path, jasco_metrics(empty), None, model_name="m")
    [report] = build_reports([path], output_dir=tmp_path / "board")
    assert table(report.markdown)[2:] == ["| m | – | – | – | – | – |"]
    png_size(tmp_path / "board" / "jasco_leaderboard.png")


def test_the_chart_segments_and_labels(runs, tmp_path, monkeypatch):
    """The drawing itself: three stacked segments per model, headline numbers, best-mean beside."""
    from matplotlib.figure import Figure

    from lm_eval_speech.report import jasco

    drawn: list[Figure] = []
    original = Figure.savefig

    def keep(self, *args, **kwargs):
        drawn.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    [report] = build_reports([runs["root"]], benchmarks=["jasco"])
    jasco.render_chart(report.merged, tmp_path / "chart.png")
    [figure] = drawn
    dependence, best = figure.axes
    assert [tick.get_text() for tick in dependence.get_yticklabels()] == [QWEN2_AUDIO, SALMONN]
    assert dependence.yaxis_inverted()  # the first model on top, as in the table
    segments = [(round(patch.get_x(), 2), round(patch.get_width(), 2)) for patch in dependence.patches]
    # Audio segments of both models, then Both, then Speech.
    assert segments == [(0, 16), (0, 27.04), (16, 50), (27.04, 47.88), (66, 34), (74.92, 25.08)]
    assert [text.get_text() for text in dependence.texts] == ["16%", "27%", "50%", "48%", "34%", "25%"]
    assert [text.get_text() for text in best.texts] == ["1.23", "1.21"]
    assert [text.get_text() for text in dependence.get_legend().get_texts()] == ["Audio", "Both", "Speech"]


# --- with SpeechInstructBench, through the CLI --------------------------------------------------

@pytest.fixture
def both(tmp_path, runs) -> Path:
    qwen_sib = {"standard": (0.1982, 0.3018), "background": (0.1817, 0.2882)}
    write_results(tmp_path / "sib", closed_results("en", qwen_sib), model_name=QWEN2_AUDIO, date=EARLIER, stamp="2026-10-03T00-00-00")
    return tmp_path


def test_cli_writes_both_reports_from_one_results_folder(both, tmp_path, capsys):
    output = tmp_path / "out"
    assert main(["report", str(both), "--output", str(output)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"wrote {output / 'speechinstruct_leaderboard.md'}",
        f"wrote {output / 'speechinstruct_leaderboard.png'}",
        f"wrote {output / 'jasco_leaderboard.md'}",
        f"wrote {output / 'jasco_leaderboard.png'}",
    ]
    sib = (output / "speechinstruct_leaderboard.md").read_text(encoding="utf-8")
    jasco = (output / "jasco_leaderboard.md").read_text(encoding="utf-8")
    assert f"| {QWEN2_AUDIO} | 19.82/30.18 | 18.17/28.82 | – | – | – | – | – |" in sib
    assert "JASCO" not in sib and SALMONN not in sib  # SALMONN has no SIB run: no row
    assert table(jasco)[2:] == [
        f"| {QWEN2_AUDIO} | {LLAMA} | 1.38 | 13 | 56 | 31 |",
        f"| {QWEN2_AUDIO} | {QWEN} | 1.20 | 18 | 46 | 36 |",
        f"| {QWEN2_AUDIO} | {MISTRAL} | 1.11 | 17 | 48 | 35 |",
        f"| {QWEN2_AUDIO} | mean of 3 judges | 1.23 | 16 | 50 | 34 |",
        f"| {SALMONN} | {LLAMA} | 1.21 | 27 | 48 | 25 |",
    ]
    for name in ("speechinstruct_leaderboard.png", "jasco_leaderboard.png"):
        png_size(output / name)


def test_cli_prints_both_and_can_pick_jasco(both, capsys):
    assert main(["report", str(both)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# SpeechInstructBench leaderboard\n")
    assert "\n# JASCO leaderboard\n" in out and f"| {SALMONN} | {LLAMA} | 1.21 | 27 | 48 | 25 |" in out

    assert main(["report", str(both), "--benchmark", "jasco"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# JASCO leaderboard\n") and "SpeechInstructBench" not in out
