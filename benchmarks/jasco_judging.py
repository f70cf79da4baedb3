"""JASCO judging against a local OpenAI-compatible server: wall time, and three judges sharing one slot.

    python benchmarks/jasco_judging.py [--latency 0.25] [--data ../shared/data/jasco] [--one-slot-docs 80]

The fake OpenAI server (tests/fake_openai.py) runs in its own process and answers every call
after ``--latency`` seconds with a well-formed judgement (so no re-asks). The model side is
replayed (``--model responses``), so the figures are the task's data loading plus judging.

1. 640 docs x 3 judges on a server that takes any number of requests at once: cold (a fresh
   cache) and warm (the same run again, served from the cache: no call).
2. The same three judges (different model names, one base URL: three endpoint limits) on a server
   that works on ONE request at a time, as a llama.cpp server with one slot, with the defaults of
   the call layer; the client timeout is scaled as in real use (600 s for a ~30 s generation:
   20x the service time). Printed: requests the server saw, retries, timeouts, peak in flight.
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
JUDGES = ("llama-3.1-70b", "qwen2.5-72b", "mistral-large-2411")
TIMEOUT_OVER_SERVICE = 20


def evaluate(base_url: str, data_dir: Path, answers: Path, cache: Path, limit: int | None = None,
             timeout: float | None = None) -> tuple[float, dict]:
    import lm_eval
    from lm_eval.tasks import TaskManager

    extra = {"timeout": timeout} if timeout else {}
    judges = [{"model": m, "base_url": base_url, **extra} for m in JUDGES]
    manager = TaskManager(
        include_path=str(ROOT / "speech_tasks"), include_defaults=False,
        metadata={"data_dir": str(data_dir), "judges": judges, "judge_cache": str(cache)},
    )
    start = time.perf_counter()
    results = lm_eval.simple_evaluate(
        model="responses", model_args={"path": str(answers)}, tasks=["jasco"], task_manager=manager, bootstrap_iters=0,
        limit=limit,
    )
    elapsed = time.perf_counter() - start
    return elapsed, results["configs"]["jasco"]["metadata"]["lm_eval_speech"]["judging"]


class Server:
    def __init__(self, latency: float, slots: int | None = None) -> None:
        command = [sys.executable, str(ROOT / "tests" / "fake_openai.py"), "--latency", str(latency), "--reply", REPLY]
        for model in JUDGES:
            command += ["--model-id", model]
        if slots:
            command += ["--slots", str(slots)]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        self.base_url = self.process.stdout.readline().strip()

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=0.25, help="server seconds per call (default 0.25)")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "jasco", help="JASCO data_dir")
    parser.add_argument("--one-slot-docs", type=int, default=80, help="docs judged on the one-slot server (0: skip)")
    parser.add_argument("--one-slot-latency", type=float, default=0.1, help="its seconds per call (default 0.1)")
    args = parser.parse_args(argv)
    if not (args.data / "dataset" / "v0" / "v0.csv").is_file():
        print(f"JASCO data not found under {args.data}; pass --data")
        return 0
    os.environ.setdefault("TQDM_DISABLE", "1")
    with tempfile.TemporaryDirectory() as scratch:
        answers = Path(scratch) / "answers.jsonl"
        with open(answers, "w", encoding="utf-8") as handle:
            for doc_id in range(640):
                handle.write(json.dumps({"doc_id": doc_id, "response": "They are building a sandcastle at the beach."}) + "\n")
        server = Server(args.latency)
        try:
            cache = Path(scratch) / "calls.sqlite"
            cold, cold_info = evaluate(server.base_url, args.data, answers, cache)
            warm, warm_info = evaluate(server.base_url, args.data, answers, cache)
        finally:
            server.close()
        print(f"JASCO, 640 docs x 3 judges, local server at {args.latency * 1000:.0f} ms per call, {os.cpu_count()} CPUs")
        print(f"cold: {cold:.1f} s end to end; {cold_info['calls']} judge calls, {cold_info['http_requests']} HTTP requests, "
              f"{cold_info['retries']} retries; serial would take {cold_info['calls'] * args.latency:.0f} s")
        print(f"warm: {warm:.1f} s end to end; {warm_info['calls']} judge calls ({warm_info['cache_hits']} cached)")
        if args.one_slot_docs:
            slot = Server(args.one_slot_latency, slots=1)
            try:
                timeout = TIMEOUT_OVER_SERVICE * args.one_slot_latency
                wall, info = evaluate(slot.base_url, args.data, answers, Path(scratch) / "one-slot.sqlite",
                                      limit=args.one_slot_docs, timeout=timeout)
            finally:
                slot.close()
            timeouts = info["failures"]["timeout"]
            serial = info["calls"] * args.one_slot_latency
            print(f"one-slot server ({args.one_slot_latency * 1000:.0f} ms per call, client timeout {timeout:.1f} s), "
                  f"{args.one_slot_docs} docs x 3 judges: {info['calls']} calls answered, {info['http_requests']} HTTP requests, "
                  f"{info['retries']} retries, {timeouts} timeouts; {wall:.1f} s end to end "
                  f"(the server's own work: {serial:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
