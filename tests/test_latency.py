"""Answer latency: per-answer records, the task aggregates, the report and the arena leaderboard's table."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import soundfile as sf

from lm_eval_speech import provenance
from lm_eval_speech.arena.command import run_arena
from lm_eval_speech.report import build_reports
from lm_eval_speech.speech import latency
from lm_eval_speech.speech.latency import Timing


def test_a_record_from_a_stream_keeps_its_first_chunk_times():
    record = latency.record(Timing(total_s=3.0, first_text_s=0.2, first_audio_s=0.5, streamed=True), 6.0, 1, "cuda:0")
    assert record == {"first_text_s": 0.2, "first_audio_s": 0.5, "total_s": 3.0, "audio_s": 6.0, "rtf": 0.5,
                      "streamed": True, "first_audio_at_end": False, "batch_size": 1, "device": "cuda:0"}


def test_without_a_stream_first_audio_is_the_end_of_generation_and_says_so():
    record = latency.record(Timing(total_s=2.0), 0.0, 4, None)
    assert record["first_audio_s"] == 2.0 and record["first_audio_at_end"] is True and record["streamed"] is False
    assert record["first_text_s"] is None and record["rtf"] is None  # no audio: no real-time factor, not a division by zero


@pytest.mark.parametrize("numbers", [[1.0], [3.0, 1.0], [0.5, 0.1, 0.9, 0.3, 0.7, 1.1, 2.0, 0.2, 0.4, 5.0, 0.6]])
def test_p90_and_median_match_numpy(numbers):
    assert latency.p90(numbers) == pytest.approx(float(np.percentile(numbers, 90)))
    assert latency.median(numbers) == pytest.approx(float(np.median(numbers)))


def test_task_aggregates_skip_unspoken_answers_and_record_where_they_were_measured():
    spoken = [{"latency": latency.record(Timing(total_s=t, first_audio_s=t / 4, streamed=True), 2.0, 2, "cpu")}
              for t in (1.0, 2.0, 3.0)]
    items = [latency.task_items(record, "latency_test_task") for record in [*spoken, None]]
    assert set(items[0]) == set(latency.LATENCY_METRICS) and items[3]["total_s_median"] is None
    assert latency.total_s_median([i["total_s_median"] for i in items]) == 2.0
    assert latency.first_audio_s_p90([i["first_audio_s_p90"] for i in items]) == pytest.approx(np.percentile([0.25, 0.5, 0.75], 90))
    assert latency.rtf_median([i["rtf_median"] for i in items]) == 1.0
    assert math.isnan(latency.first_text_s_median([i["first_text_s_median"] for i in items]))  # no model said
    assert provenance.of("latency_test_task")["latency_measured_at"] == {
        "devices": ["cpu"], "batch_sizes": [2], "streamed": [True], "answers": 3}


def _results_file(folder, label, first_audio, rtf, device="cuda:0"):
    folder.mkdir(parents=True)
    task = "s2s_arena_medical"
    metrics = {"spoken_items,none": 4, "unspoken_items,none": 1, "failed_items,none": 0,
               "first_audio_s_median,none": first_audio, "first_audio_s_p90,none": first_audio * 2,
               "rtf_median,none": rtf, "rtf_p90,none": rtf * 1.5, "total_s_median,none": 2.0, "total_s_p90,none": 3.0,
               "first_text_s_median,none": float("nan"), "first_text_s_p90,none": float("nan")}
    measured = {"devices": [device], "batch_sizes": [1], "streamed": [True], "answers": 4}
    data = {"results": {task: metrics}, "model_name": label, "date": 1.0,
            "configs": {task: {"metadata": {"lm_eval_speech": {"latency_measured_at": measured}}}}}
    path = folder / "results_2026-01-01T00-00-00.json"
    path.write_text(json.dumps(data))
    return path


def test_the_report_shows_latency_per_model_and_task_with_where_it_was_measured(tmp_path):
    _results_file(tmp_path / "a", "realtime", 0.31, 0.25)
    _results_file(tmp_path / "b", "omni", 1.5, 0.8, device="cpu")
    (report,) = build_reports([tmp_path], benchmarks=["spoken"], output_dir=tmp_path / "out")
    lines = report.markdown.splitlines()
    realtime = next(line for line in lines if line.startswith("| realtime"))
    omni = next(line for line in lines if line.startswith("| omni"))
    assert "| 0.31 / 0.62 |" in realtime and "| 0.25 / 0.38 |" in realtime and "| cuda:0 | 1 | yes |" in realtime
    assert "| 1.50 / 3.00 |" in omni and "| cpu |" in omni
    assert "| – |" in realtime  # first text: no figure, a dash rather than nan
    assert (tmp_path / "out" / "spoken_answers.png").stat().st_size > 0


def _arena_run(folder, label, timings):
    out = folder / label
    out.mkdir(parents=True)
    lines = []
    for doc_id, total in enumerate(timings):
        wav = out / f"doc{doc_id}.wav"
        sf.write(wav, np.zeros(24000, dtype=np.float32), 24000)
        record = {"path": str(wav), "sampling_rate": 24000, "duration": 1.0,
                  "latency": latency.record(Timing(total_s=total), 1.0, 1, "cpu")}
        doc = {"input_id": f"in/{doc_id}.wav", "domain": "medical", "arena_task": "t"}
        lines.append(json.dumps({"doc_id": doc_id, "doc": doc, "resps": [[f"answer {doc_id}"]], "speech_output": [record]}))
    (out / "samples_s2s_arena_medical_2026-01-01T00-00-00.jsonl").write_text("\n".join(lines) + "\n")
    return out


def test_the_arena_leaderboard_shows_each_models_latency(tmp_path):
    fast = _arena_run(tmp_path, "fast", [0.5, 0.7, 0.6])
    slow = _arena_run(tmp_path, "slow", [4.0, 2.0, 3.0])
    log = tmp_path / "human.json"
    log.write_text(json.dumps([{"model_a": "fast", "model_b": "slow", "winner": "model_a"}]))
    board = run_arena([f"fast={fast}", f"slow={slow}"], tmp_path / "board", human=[log], human_only=True,
                      bootstrap=20, acoustics=False)
    assert board["latency"]["slow"]["total_s"]["median"] == 3.0
    assert board["latency"]["fast"]["rtf"]["p90"] == pytest.approx(np.percentile([0.5, 0.7, 0.6], 90))
    markdown = (tmp_path / "board" / "s2s_arena_leaderboard.md").read_text()
    section = markdown.split("## Answer latency")[1].splitlines()
    row = next(line for line in section if line.startswith("| slow"))
    assert "| 3 | – / – | 3.00 / 3.80 | 3.00 / 3.80 | 3.00 / 3.80 | cpu | 1 | no (first audio = end of generation) |" in row
