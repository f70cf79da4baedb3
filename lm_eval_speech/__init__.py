"""lm-eval-speech: speech-LLM benchmarks and audio model backends for lm-evaluation-harness.

Kept import-free on purpose: ``lm_eval_speech.pth`` imports this package in every interpreter
of the environment (via ``lm_eval_speech._lmeval_hook``).
"""

__version__ = "0.1.0"
