"""``lm-eval-speech arena``: rank speech-out models from their ``s2s_arena`` runs.

runs → battles (every pair on every shared input, or a budget of informative ones) → automatic
verdicts in both orders (+ imported human battles) → online Elo as published (overall, and per
domain, level and category of the inputs), Bradley–Terry with bootstrap intervals, win rates →
Markdown, JSON, PNG; per model, DNSMOS, durations and ASR consistency of the spoken answers.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

from lm_eval_speech.arena import judging, render
from lm_eval_speech.arena.battles import Battle, read_human_battles, write_battles_jsonl
from lm_eval_speech.arena.ratings import leaderboard
from lm_eval_speech.arena.runs import ModelRun, RunError, parse_run_argument, read_run
from lm_eval_speech.calls import check_endpoint, config_from_settings, open_cache
from lm_eval_speech.calls.config import cache_file
from lm_eval_speech.judging.config import CACHE_ENV
from lm_eval_speech.speech import latency

logger = logging.getLogger("lm_eval_speech.arena")


class ArenaError(ValueError):
    """Arguments or inputs the arena cannot use."""


def load_runs(arguments: list[str]) -> list[ModelRun]:
    runs = []
    for argument in arguments:
        name, folder = parse_run_argument(argument)
        runs.append(read_run(folder, name))
    labels = [run.label for run in runs]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ArenaError(f"arena: two runs are both called {', '.join(duplicates)}; name them with NAME=DIR")
    return runs


def _judge_config(value: str | dict | None, default: dict | None, where: str):
    if value is None:
        config = config_from_settings(default, where=where) if default else None
    else:
        if isinstance(value, str):
            value = json.loads(value) if value.strip().startswith("{") else {"model": value}
        config = config_from_settings(value, base=default, where=where)
    if config is not None:
        check_endpoint(config, user=where)
    return config


class RequestTranscriber:
    """Whisper's transcript of an input clip, for inputs without a published transcript."""

    def __init__(self, asr_path: str | None) -> None:
        self.asr_path, self._asr = asr_path, None
        self._heard: dict[str, str] = {}  # every run's doc names the same input clip

    def __call__(self, doc: dict) -> str:
        from lm_eval_speech.speech.asr import WHISPER_RATE, WhisperASR
        from lm_eval_speech.speech.audio import load_audio

        path = doc.get("audio_file")
        if not path or not Path(path).is_file():
            return ""
        if path in self._heard:
            return self._heard[path]
        if self._asr is None:
            import torch

            from lm_eval_speech.bundled import bundled_whisper_tiny_en

            model = Path(self.asr_path) if self.asr_path else bundled_whisper_tiny_en()
            self._asr = WhisperASR(model, "auto", None, 5, "default", torch.device("cpu"))
        self._heard[path] = self._asr.transcribe(load_audio(path, target_sr=WHISPER_RATE, item=path)[0])
        return self._heard[path]


def run_arena(
    run_arguments: list[str],
    output: Path,
    *,
    judge: str | dict | None = None,
    audio_judge: str | dict | None = None,
    audio_tasks: list[str] | None = None,
    swap_policy: str = "tie",
    lenient: bool = False,
    budget: int | None = None,
    human: list[Path] = (),
    human_only: bool = False,
    judge_cache: str | bool | None = None,
    asr: str | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    acoustics: bool = True,
) -> dict:
    runs = load_runs(run_arguments) if run_arguments else []
    if acoustics and runs:
        from lm_eval_speech.arena.acoustics import speechmos_run

        try:
            speechmos_run()  # before any judge call: a missing extra should not cost a judging run
        except ImportError as error:
            raise ArenaError(f"arena: {error}; or skip the acoustic figures with --no-acoustics") from error
    battles: list[Battle] = []
    human_problems: list[str] = []
    for path in human:
        imported, problems = read_human_battles(path)
        battles += imported
        human_problems += [f"{path}: {p}" for p in problems]
        for problem in problems[:10]:
            logger.warning("arena: %s: %s", path, problem)
    summary = judging.JudgingSummary()
    if not human_only and len(runs) >= 2:
        import os

        cache = open_cache(cache_file(judge_cache if judge_cache is not None else os.environ.get(CACHE_ENV, True)))
        text_judge = _judge_config(judge, judging.DEFAULT_TEXT_JUDGE, "arena --judge")
        audio = _judge_config(audio_judge, None, "arena --audio-judge")
        battle_judge = judging.BattleJudge(
            text_judge,
            audio_judge=audio,
            audio_tasks=frozenset(audio_tasks) if audio_tasks is not None else judging.PARALINGUISTIC_TASKS,
            swap_policy=swap_policy, cache=cache, request_transcriber=RequestTranscriber(asr), lenient=lenient,
        )
        picked = judging.select(judging.matchups(runs), budget, seed=seed, prior=battles)
        summary = battle_judge.judge(picked, runs)
        battles += summary.battles
    elif not human_only and not battles:
        raise ArenaError("arena: give at least two runs (or --human battle logs) to rank")
    if not battles:
        reasons = "; ".join(f"{u.matchup.input_id} {u.matchup.model_1} vs {u.matchup.model_2}: {u.reason}" for u in summary.unjudged[:3])
        raise ArenaError(f"arena: no battle could be judged ({len(summary.unjudged)} unjudged{': ' + reasons if reasons else ''})")
    board = leaderboard(battles, rounds=bootstrap, seed=seed)
    board["judging"] = {
        "battles": len(battles), "judged": len(summary.battles), "human": sum(b.source == "human" for b in battles),
        "unjudged": [{**asdict(u.matchup), "reason": u.reason} for u in summary.unjudged],
        "inconsistent_pairs": summary.inconsistent, "rejudged_pairs": summary.rejudged, "swap_policy": swap_policy,
        "verdict_parsing": "lenient" if lenient else "strict",
        "judges": dict(summary.by_judge), "human_problems": human_problems,
        # Who judged, how, with which prompts, and what it cost: the leaderboard says what made it.
        "judge_configs": [c.describe() for c in (text_judge, audio) if c is not None] if not human_only and len(runs) >= 2 else [],
        "prompt_templates_sha256": judging.prompt_hashes(),
        "accounting": {name: stats.as_dict(prices) for name, (stats, prices) in summary.stats.items()},
    }
    board["runs"] = {run.label: {"folder": str(run.folder), "answers": len(run.answers), "unspoken": run.unspoken,
                                 "failed": run.failed} for run in runs}
    # How fast each model answered, from the latency its lm_eval run logged with every spoken answer.
    board["latency"] = {run.label: latency.summary([(a.speech or {}).get("latency") for a in run.answers.values()])
                        for run in runs}
    if acoustics and runs:
        from lm_eval_speech.arena.acoustics import model_acoustics

        board["acoustics"] = {
            run.label: model_acoustics([a.speech for a in run.answers.values()], [a.text for a in run.answers.values()])
            for run in runs
        }
    output.mkdir(parents=True, exist_ok=True)
    write_battles_jsonl(output / "s2s_arena_battles.jsonl", battles)
    written = render.write_leaderboard(board, output)
    notes = _notes(board)
    if notes:
        markdown = output / "s2s_arena_leaderboard.md"
        markdown.write_text(markdown.read_text(encoding="utf-8") + "\n" + notes, encoding="utf-8")
    board["written"] = [str(p) for p in written] + [str(output / "s2s_arena_battles.jsonl")]
    return board


def _notes(board: dict) -> str:
    lines = []
    judging_info = board["judging"]
    if board.get("acoustics"):
        lines += ["## Spoken answers", "",
                  "| model | answers | mean duration (s) | DNSMOS OVRL | DNSMOS SIG | DNSMOS BAK | ASR WER (text vs speech) "
                  "| speaker consistency |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for label, figures in board["acoustics"].items():
            dnsmos = figures.get("dnsmos") or {}
            lines.append(
                f"| {label} | {figures['with_audio']} | {_num((figures.get('duration') or {}).get('mean'))} | "
                f"{_num(dnsmos.get('ovrl_mos'))} | {_num(dnsmos.get('sig_mos'))} | {_num(dnsmos.get('bak_mos'))} | "
                f"{_num((figures.get('asr') or {}).get('wer'))} | {_num((figures.get('speaker') or {}).get('consistency'))} |"
            )
            speaker_reasons = (figures.get("speaker") or {}).get("reasons", [])
            for problem in figures.get("problems", [])[:5] + dnsmos.get("reasons", [])[:3] + speaker_reasons[:3]:
                lines.append(f"| | {problem} | | | | | | |")
        lines.append("")
    lines += _latency_table(board.get("latency") or {})
    lines.append(
        f"Battles: {judging_info['battles']} ({judging_info['judged']} judged automatically, {judging_info['human']} human); "
        f"position-swap disagreements: {judging_info['inconsistent_pairs']} (policy: {judging_info['swap_policy']}); "
        f"unjudged: {len(judging_info['unjudged'])}."
    )
    for item in judging_info["unjudged"][:10]:
        lines.append(f"- unjudged {item['input_id']} {item['model_1']} vs {item['model_2']}: {item['reason']}")
    for run, info in board.get("runs", {}).items():
        if info["unspoken"] or info["failed"]:
            lines.append(
                f"- {run}: {len(info['unspoken'])} answers without audio, {len(info['failed'])} failed generations (not in battles)"
            )
    return "\n".join(lines) + "\n"


def _latency_table(by_model: dict) -> list[str]:
    """Median / p90 of each model's answer latency; nothing when no run logged any (runs from before it was recorded)."""
    if not any(figures["total_s"]["answers"] for figures in by_model.values()):
        return []
    lines = ["## Answer latency", "",
             "| model | answers timed | first text (s) | first audio (s) | generation (s) | RTF | measured on | batch | streamed |",
             "|---|---:|---:|---:|---:|---:|---|---:|---|"]
    for label, figures in by_model.items():
        cells = [f"{_num(figures[field]['median'])} / {_num(figures[field]['p90'])}" for field in latency.FIELDS]
        where = figures["measured_at"]
        streamed = "yes" if where["streamed"] == [True] else "no (first audio = end of generation)" if where["streamed"] == [False] \
            else "mixed" if where["streamed"] else "–"
        lines.append(f"| {label} | {figures['total_s']['answers']} | {' | '.join(cells)} | {', '.join(where['devices']) or '–'} | "
                     f"{', '.join(map(str, where['batch_sizes'])) or '–'} | {streamed} |")
    lines += ["", "Latency cells: median / p90 over the model's spoken answers, seconds from the start of generation; "
              "RTF: generation time / answer duration.", ""]
    return lines


def _num(value) -> str:
    return "–" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)


__all__ = ["ArenaError", "RunError", "load_runs", "run_arena"]
