"""Where this package keeps what it makes once and reuses (judge outputs, dequantised weights)."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "LM_EVAL_SPEECH_CACHE"


def cache_root() -> Path:
    """``$LM_EVAL_SPEECH_CACHE``, else ``$XDG_CACHE_HOME/lm_eval_speech``, else ``~/.cache/lm_eval_speech``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.path.expanduser(os.environ[CACHE_ENV]))
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lm_eval_speech"
