"""The NLTK sentence model that IFEval-style checkers need, installed at set-up, never at run time.

lm-eval's IFEval module calls ``nltk.download("punkt_tab")`` on import when the data is missing;
our checkers refuse to start instead, and ``lm-eval-speech setup`` installs the data into the
environment (``<sys.prefix>/nltk_data``, a directory NLTK always searches).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

PUNKT_TAB = "tokenizers/punkt_tab"


def punkt_available() -> bool:
    import nltk

    try:
        nltk.data.find(PUNKT_TAB)
    except LookupError:
        return False
    return True


def require_punkt() -> None:
    if not punkt_available():
        raise RuntimeError(
            "NLTK's punkt_tab sentence model is not installed, and evaluation never downloads it. "
            "Run `lm-eval-speech setup` (add `--nltk-from DIR` to copy it from a local nltk_data "
            "folder), or point NLTK_DATA at a folder holding tokenizers/punkt_tab."
        )


def install_punkt(source: Path | None = None, target: Path | None = None) -> Path:
    """Copy punkt_tab from a local nltk_data folder, or download it; returns the install root."""
    target = Path(target) if target is not None else Path(sys.prefix) / "nltk_data"
    if source is None:
        import nltk

        if not nltk.download("punkt_tab", download_dir=str(target), quiet=True, raise_on_error=True):
            raise RuntimeError("nltk.download('punkt_tab') failed")
        return target
    source = Path(source)
    for candidate in (source / PUNKT_TAB, source / "punkt_tab", source):
        if (candidate / "english").is_dir():
            destination = target / PUNKT_TAB
            shutil.copytree(candidate, destination, dirs_exist_ok=True)
            return target
    raise FileNotFoundError(f"{source} holds no punkt_tab model (expected {source / PUNKT_TAB}/english)")
