"""Model backends of lm-eval-speech, one file per family, found by lm_eval through the
``lm_eval.models`` entry points. Nothing is imported here: a backend loads when it is asked for."""
