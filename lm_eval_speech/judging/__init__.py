"""The judging protocols built on the call layer: which judges a task uses, and judging a task's responses.

``config`` resolves a task's judges (the benchmark authors' defaults from its YAML, changed from
``--metadata``) into :class:`lm_eval_speech.calls.CallConfig`; ``tasks`` runs them over a task's
responses and records what they did. The benchmark's own prompts, answer schemas and parsers
stay in its task folder.
"""

from lm_eval_speech.judging.config import judge_cache_path, resolve_judges
from lm_eval_speech.judging.tasks import TaskJudging, Verdict, for_docs, register, registered

__all__ = ["TaskJudging", "Verdict", "for_docs", "judge_cache_path", "register", "registered", "resolve_judges"]
