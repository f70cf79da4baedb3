"""One judge layer for every judged task: configuration, backends, cache, concurrent runner.

See ``config`` (settings and ``--metadata``), ``backends`` (OpenAI-compatible endpoints and
in-process transformers), ``cache`` (SQLite), ``runner`` (the concurrent batch runner) and
``task_judging`` (how lm-eval tasks use them).
"""

from lm_eval_speech.judge.config import JudgeConfig, JudgeConfigError, judge_from_dict, resolve_judges
from lm_eval_speech.judge.runner import Judge, JudgeOutput, JudgeRequest, JudgeStats

__all__ = [
    "Judge",
    "JudgeConfig",
    "JudgeConfigError",
    "JudgeOutput",
    "JudgeRequest",
    "JudgeStats",
    "judge_from_dict",
    "resolve_judges",
]
