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

    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
