"""What the plugin hook learns about the running ``lm_eval`` command: where it writes, and what it wrote.

Set by ``_lmeval_hook`` (which imports nothing of ours at start-up), read by speech output (the
folder for spoken answers) and by the end-of-run check (:func:`lm_eval_speech.outcomes.run_problems`).
"""

from __future__ import annotations

output_path: str | None = None  # --output_path of this process's EvaluationTracker
results: dict | None = None  # the results lm_eval saved last (rank 0)
