"""What the start-up hook (lm_eval_speech.pth) costs: interpreters, lm_eval import, `lm_eval ls tasks`.

Each command runs with the hook on and off (LM_EVAL_SPEECH_DISABLE_HOOK=1), alternating, and the
medians are compared. Usage: python benchmarks/plugin_startup.py [--repeats N] [--ls-repeats N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def timed(command: list[str], hook: bool) -> float:
    env = dict(os.environ)
    env.pop("LM_EVAL_SPEECH_DISABLE_HOOK", None)
    if not hook:
        env["LM_EVAL_SPEECH_DISABLE_HOOK"] = "1"
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def compare(name: str, command: list[str], repeats: int) -> None:
    on, off = [], []
    for _ in range(repeats):
        on.append(timed(command, True))
        off.append(timed(command, False))
    m_on, m_off = statistics.median(on), statistics.median(off)
    print(f"| {name} | {repeats} | {m_off:.3f} | {m_on:.3f} | {m_on - m_off:+.3f} | {m_on / m_off:.3f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--ls-repeats", type=int, default=3)
    args = parser.parse_args()
    python = sys.executable
    print("| command | runs | hook off, median s | hook on, median s | added s | ratio |")
    print("|---|---|---|---|---|---|")
    compare("python -c pass", [python, "-c", "pass"], args.repeats)
    compare("python -c 'import numpy'", [python, "-c", "import numpy"], args.repeats)
    compare("python -c 'import lm_eval'", [python, "-c", "import lm_eval"], args.repeats)
    compare(
        "TaskManager(include_defaults=False)",
        [python, "-c", "from lm_eval.tasks import TaskManager; TaskManager(include_defaults=False)"],
        args.repeats,
    )
    compare("lm_eval ls tasks", [str(BIN / "lm_eval"), "ls", "tasks"], args.ls_repeats)
    direct_cost(args.repeats)


def direct_cost(repeats: int) -> None:
    """The hook's own work inside lm_eval, timed in-process (below the noise of whole commands)."""
    from lm_eval.api import registry
    from lm_eval.tasks import TaskManager

    from lm_eval_speech import _lmeval_hook as hook

    def best(function) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            function()
            times.append(time.perf_counter() - start)
        return min(times)

    fresh = registry.Registry("model")
    original = registry.model_registry
    registry.model_registry = fresh
    try:
        models = best(lambda: hook._register_plugin_models(None))
    finally:
        registry.model_registry = original
    folders = best(hook.plugin_task_dirs)
    unpatched_init = getattr(TaskManager.__init__, "__wrapped__", TaskManager.__init__)
    ours = hook.plugin_task_dirs()
    index = best(lambda: unpatched_init(TaskManager.__new__(TaskManager), include_path=ours, include_defaults=False))
    print(f"\nhook work inside lm_eval (best of {repeats}): register models {models * 1000:.1f} ms, "
          f"find task folders {folders * 1000:.1f} ms, index our task entries {index * 1000:.1f} ms")


if __name__ == "__main__":
    main()
