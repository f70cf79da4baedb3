"""The ``lm-eval-speech`` console command: set-up and helpers around the stock ``lm_eval``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _setup(args: argparse.Namespace) -> int:
    from lm_eval_speech import nltk_data

    if nltk_data.punkt_available() and not args.force:
        print("NLTK punkt_tab: already installed")
        return 0
    root = nltk_data.install_punkt(source=args.nltk_from, target=args.nltk_dir)
    print(f"NLTK punkt_tab: installed under {root}")
    return 0


def _tasks_dir(args: argparse.Namespace) -> int:
    import lm_eval_speech.tasks

    # For `lm_eval --include_path "$(lm-eval-speech tasks-dir)"` where the start-up hook is off.
    print(Path(list(lm_eval_speech.tasks.__path__)[0]).resolve())
    return 0


def _benchmark_names() -> list[str]:
    from lm_eval_speech.report import BENCHMARKS  # light: matplotlib loads only to draw a chart

    return list(BENCHMARKS)


def _report(args: argparse.Namespace) -> int:
    from lm_eval_speech.report import ReportError, build_reports

    def warn(message: str) -> None:
        print(f"lm-eval-speech report: warning: {message}", file=sys.stderr)

    benchmarks = [args.benchmark] if args.benchmark else None
    try:
        reports = build_reports(args.results, args.label, benchmarks, args.output, warn=warn)
    except ReportError as error:
        print(f"lm-eval-speech report: error: {error}", file=sys.stderr)
        return 2
    if args.output is None:
        print("\n".join(report.markdown for report in reports), end="")
    for report in reports:
        for path in report.written:
            print(f"wrote {path}")
    return 0


def _arena(args: argparse.Namespace) -> int:
    from lm_eval_speech.arena.command import ArenaError, RunError, run_arena

    try:
        board = run_arena(
            args.runs, args.output, judge=args.judge, audio_judge=args.audio_judge,
            audio_tasks=args.audio_tasks.split(",") if args.audio_tasks is not None else None,
            swap_policy=args.swap_policy, lenient=args.verdict_parsing == "lenient", budget=args.budget, human=args.human,
            human_only=args.human_only,
            judge_cache=args.judge_cache, asr=args.asr, bootstrap=args.bootstrap, seed=args.seed, acoustics=not args.no_acoustics,
        )
    except (ArenaError, RunError, ValueError, FileNotFoundError) as error:
        print(f"lm-eval-speech arena: error: {error}", file=sys.stderr)
        return 2
    print((args.output / "s2s_arena_leaderboard.md").read_text(encoding="utf-8"), end="")
    for path in board["written"]:
        print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lm-eval-speech", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    setup = commands.add_parser("setup", help="install the data files the checkers need (NLTK punkt_tab)")
    setup.add_argument("--nltk-from", type=Path, help="copy punkt_tab from this local nltk_data folder instead of downloading")
    setup.add_argument("--nltk-dir", type=Path, help="install into this folder (default: <sys.prefix>/nltk_data)")
    setup.add_argument("--force", action="store_true", help="install even when NLTK already finds the data")
    setup.set_defaults(run=_setup)

    tasks_dir = commands.add_parser("tasks-dir", help="print the folder of this package's task YAMLs")
    tasks_dir.set_defaults(run=_tasks_dir)

    report = commands.add_parser(
        "report", help="leaderboard tables (Markdown) and charts (PNG) from lm_eval results files, in the authors' layout"
    )
    report.add_argument("results", nargs="+", type=Path, help="a results_*.json file, or a folder searched for them")
    report.add_argument("--label", action="append", help="model name for the matching path (give once per path)")
    report.add_argument("--output", type=Path, help="write <benchmark>_leaderboard.md and .png here (default: Markdown to stdout)")
    report.add_argument("--benchmark", choices=_benchmark_names(), help="only this benchmark (default: every one found)")
    report.set_defaults(run=_report)

    arena = commands.add_parser(
        "arena", help="S2S-Arena: battles between speech-out runs, judged in both orders; Elo, Bradley-Terry, plots"
    )
    arena.add_argument("runs", nargs="*", help="lm_eval --output_path of a s2s_arena run, as DIR or NAME=DIR (one per model)")
    arena.add_argument("--output", type=Path, required=True, help="folder for the leaderboard (.md, .json, .png) and battles.jsonl")
    arena.add_argument("--judge", help='text judge: a model name or JSON judge settings (default {"model": "gpt-4o-mini", '
                       '"temperature": 0, "max_tokens": 256}); {"backend": "transformers", "model": "bundled:smollm2"} runs offline')
    arena.add_argument("--audio-judge", help="an audio chat model (e.g. gpt-4o-audio-preview) that hears the battles of --audio-tasks")
    arena.add_argument("--audio-tasks", help="comma-separated tasks the audio judge hears (default: the paralinguistic ones)")
    arena.add_argument("--swap-policy", choices=["tie", "rejudge"], default="tie",
                       help="when the two orders disagree: a tie, or ask both orders once more (default: tie)")
    arena.add_argument("--verdict-parsing", choices=["strict", "lenient"], default="strict",
                       help="lenient also reads a reply starting with A or B, for small local judges (default: strict)")
    arena.add_argument("--budget", type=int, help="judge only this many battles, chosen to be informative (default: all pairs)")
    arena.add_argument("--human", type=Path, action="append", default=[], help="human battle log (JSONL, CSV, or JSON such as "
                       "the authors' human_evaluate_result.json); repeatable")
    arena.add_argument("--human-only", action="store_true", help="rate the imported human battles only")
    arena.add_argument("--judge-cache", help="judge cache file, or false (default: judge.sqlite in the cache folder)")
    arena.add_argument("--asr", help="Whisper checkpoint for inputs without a transcript (default: bundled tiny.en)")
    arena.add_argument("--bootstrap", type=int, default=1000, help="bootstrap rounds for the Bradley-Terry intervals")
    arena.add_argument("--seed", type=int, default=0)
    arena.add_argument("--no-acoustics", action="store_true", help="skip DNSMOS, durations and ASR consistency")
    arena.set_defaults(run=_arena)

    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
