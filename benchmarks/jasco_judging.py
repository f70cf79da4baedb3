"""JASCO judging wall time: 640 docs x 3 judges against the local test server, cold and warm cache.

    python benchmarks/jasco_judging.py [--latency 0.25] [--data ../shared/data/jasco]

The fake OpenAI server (tests/fake_openai.py) runs in its own process and answers every call
after ``--latency`` seconds with a well-formed judgement (so no re-asks: 1,920 calls). The model
side is replayed (``--model responses``), so the figures are the task's data loading plus judging.
Cold: a fresh judge cache. Warm: the same run again, served from the cache (no call).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPLY = "Explanation1: The prediction matches.\nRating: 2\nExplanation2: Both modalities.\nOrientation: Good"


def evaluate(base_url: str, data_dir: Path, answers: Path, cache: Path) -> tuple[float, dict]:
    import lm_eval
    from lm_eval.tasks import TaskManager

    judges = [{"model": m, "base_url": base_url} for m in ("llama-3.1-70b", "qwen2.5-72b", "mistral-large-2411")]
    manager = TaskManager(
        include_path=str(ROOT / "speech_tasks"), include_defaults=False,
        metadata={"data_dir": str(data_dir), "judges": judges, "judge_cache": str(cache)},
    )
    start = time.perf_counter()
    results = lm_eval.simple_evaluate(
        model="responses", model_args={"path": str(answers)}, tasks=["jasco"], task_manager=manager, bootstrap_iters=0
    )
    elapsed = time.perf_counter() - start
    return elapsed, results["configs"]["jasco"]["metadata"]["lm_eval_speech"]["judging"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=0.25, help="server seconds per call (default 0.25)")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "jasco", help="JASCO data_dir")
    args = parser.parse_args(argv)
    if not (args.data / "dataset" / "v0" / "v0.csv").is_file():
        print(f"JASCO data not found under {args.data}; pass --data")
        return 0
    os.environ.setdefault("TQDM_DISABLE", "1")
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "fake_openai.py"), "--latency", str(args.latency), "--reply", REPLY],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        base_url = server.stdout.readline().strip()
        with tempfile.TemporaryDirectory() as scratch:
            answers = Path(scratch) / "answers.jsonl"
            with open(answers, "w", encoding="utf-8") as handle:
                for doc_id in range(640):
                    handle.write(json.dumps({"doc_id": doc_id, "response": "They are building a sandcastle at the beach."}) + "\n")
            cache = Path(scratch) / "judge.sqlite"
            cold, cold_info = evaluate(base_url, args.data, answers, cache)
            warm, warm_info = evaluate(base_url, args.data, answers, cache)
    finally:
        server.terminate()
        server.wait(timeout=10)
    ideal = cold_info["calls"] / 3 / 64 * args.latency  # the three judges run at once, 64 calls in flight each
    print(f"JASCO, 640 docs x 3 judges, local server at {args.latency * 1000:.0f} ms per call, {os.cpu_count()} CPUs")
    print(f"cold: {cold:.1f} s end to end; {cold_info['calls']} judge calls ({cold_info['cache_hits']} cached); "
          f"ideal judging (3 judges at once, 64 in flight each): {ideal:.1f} s; "
          f"serial would take {cold_info['calls'] * args.latency:.0f} s")
    print(f"warm: {warm:.1f} s end to end; {warm_info['calls']} judge calls ({warm_info['cache_hits']} cached)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
