"""Task YAMLs of lm-eval-speech, one folder per benchmark (found by lm_eval through the
``lm_eval.tasks`` entry point)."""
