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

    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
