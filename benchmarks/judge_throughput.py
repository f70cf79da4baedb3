"""Judge throughput: our concurrent, cached ``Caller`` against the authors' serial loop, on a local fake server.

The server (tests/fake_openai.py) runs in its own process, so it does not share the client's GIL,
and answers every chat request after ``--latency`` seconds. Measured on one workload of ``--calls``
distinct open-ended judge requests (SpeechInstructBench's prompt, synthetic items, n=1: one call
each), and on the authors' own shape (``--calls``/4 items with n=4: one call each, four choices):

* serial: the authors' ``api_judge.py`` loop, a synchronous ``openai.OpenAI`` client calling
  ``chat.completions.create`` item after item, without their 0.5 s sleep after each success
  (printed separately). Measured on ``--serial-calls`` and extrapolated linearly, or on every
  call with ``--full-serial``;
* ours, cold: ``Caller.run`` with a fresh cache file, in a fresh interpreter (as a new evaluation:
  ``import openai`` happens inside it);
* ours, warm: the same requests again, in a fresh interpreter and in this process: no call may
  reach the server (its own counter says so).

* ours, cold with the layer's defaults: the endpoint's adaptive limit starting at 4 in flight
  (the ramp to 64 costs a few round trips), in a fresh interpreter.

Targets: cold (at the endpoint's known capacity, ``--concurrency``, 64) within 1.2x of
ceil(calls / concurrency) x latency, start-up included; at least 25x faster than serial; a warm
re-run making no call, under 2 s. The script prints "target met"/"target missed" and exits 0.

Usage: python benchmarks/judge_throughput.py [--latency 0.25] [--calls 640] [--concurrency 64]
       [--serial-calls 40 | --full-serial] [--json OUT] [--profile OUT.prof]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL = "gpt-4o-mini"
# The authors' api_judge.py sampling (n aside).
SAMPLING = {"temperature": 0.5, "top_p": 0.95, "max_tokens": 1024, "frequency_penalty": 0, "presence_penalty": 0}
AUTHORS_SLEEP_S = 0.5
REPLY = "['YES', 'YES', 'NO', 'YES']"
# An unset variable: the judge then sends a placeholder key, never a real one, to the local server.
KEY_ENV = "LM_EVAL_SPEECH_BENCH_UNSET_KEY"
SPEEDUP_TARGET = 25.0
WARM_TARGET_S = 2.0
IDEAL_TARGET = 1.2
WORDS = (
    "audio speech model answer question describe explain summer river garden music teacher city history "
    "science travel morning letter friend market weather second person sentence compound paragraph list "
    "short poem story bullet title quickly carefully because however therefore although during without"
).split()


# -- the fake server, in its own process ------------------------------------------------------------

def serve(latency: float) -> None:
    """Child mode: serve until stdin closes; a "stats" line answers the counters, "reset" clears them."""
    sys.path.insert(0, str(ROOT / "tests"))
    from fake_openai import FakeOpenAI

    with FakeOpenAI(responder=lambda body, index: REPLY, latency=latency) as server:
        print(server.base_url, flush=True)
        for line in sys.stdin:
            if line.strip() == "reset":
                server.reset_counters()
            print(json.dumps({"calls": server.calls, "answered": server.answered, "faulted": server.faulted,
                              "max_in_flight": server.max_in_flight, "cpu_s": time.process_time()}), flush=True)


class Server:
    """tests/fake_openai.py's FakeOpenAI in a child process, asked for its counters over a pipe."""

    def __init__(self, latency: float) -> None:
        self._cpu_base = 0.0
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve", "--latency", str(latency)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        self.base_url = self.process.stdout.readline().strip()
        if not self.base_url.startswith("http"):
            raise RuntimeError(f"the fake server did not start (printed {self.base_url!r})")

    def _ask(self, command: str) -> dict:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def reset(self) -> None:
        """Clear the counters; ``stats`` then counts from here, the server's CPU seconds included."""
        self._cpu_base = self._ask("reset")["cpu_s"]

    def stats(self) -> dict:
        stats = self._ask("stats")
        stats["cpu_s"] -= self._cpu_base
        return stats

    def close(self) -> None:
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


# -- workload ---------------------------------------------------------------------------------------

def workload(count: int, seed: int) -> list[list[dict]]:
    """``count`` distinct open-ended judge conversations, filled the authors' way (chained str.replace)."""
    from lm_eval_speech.tasks.speechinstruct.judge_prompts import OPEN_ENDED_PROMPT, SYSTEM_MESSAGE

    rng = random.Random(seed)

    def words(n: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(n))

    conversations = []
    for i in range(count):
        prompt = f"Item {seed}-{i}: {words(18)}?"
        response = ". ".join(words(rng.randint(10, 16)).capitalize() for _ in range(5)) + "."
        questions = "\n".join(f"{q + 1}. Does the generated text {words(rng.randint(6, 10))}?" for q in range(rng.randint(3, 5)))
        user = OPEN_ENDED_PROMPT.replace("{prompt}", prompt).replace("{decompose_question}", questions).replace("{response}", response)
        conversations.append([{"role": "system", "content": SYSTEM_MESSAGE}, {"role": "user", "content": user}])
    return conversations


def judge_config(base_url: str, n: int, concurrency: int | None):
    from lm_eval_speech.calls import config_from_settings

    # None: the layer's defaults (adaptive from a few in flight up to its ceiling); a number: the
    # endpoint's known capacity, used from the first request on (initial = ceiling)
    extra = {"max_concurrency": concurrency, "initial_concurrency": concurrency} if concurrency else {}
    settings = {"model": MODEL, "base_url": base_url, "api_key_env": KEY_ENV, "n": n, **SAMPLING, **extra}
    return config_from_settings(settings, where="benchmark judge")


def run_judge(config, cache_file: Path, conversations: list[list[dict]], profile: str | None = None) -> dict:
    """One ``Caller.run`` on a freshly opened cache: wall seconds, the caller's stats, failures."""
    from lm_eval_speech.calls import Caller, CallCache, CallRequest

    requests = [CallRequest(messages, label=f"item {i}") for i, messages in enumerate(conversations)]
    cache = CallCache(cache_file)
    judge = Caller(config, cache)
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    cpu0, start = time.process_time(), time.perf_counter()
    results = judge.run(requests, desc="judge (benchmark)")
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    cache.close()
    bad = sum(1 for outputs in results for output in outputs if not output.ok or output.text != REPLY)
    return {"wall_s": wall, "cpu_s": cpu, "stats": judge.stats.as_dict(), "bad_outputs": bad}


def child_run(args: argparse.Namespace) -> None:
    """Child mode: one Caller.run in a fresh interpreter, as a new evaluation would; prints its figures as JSON."""
    started = time.perf_counter()
    config = judge_config(args.base_url, args.n, args.concurrency)
    conversations = workload(args.items, args.seed)
    ready = time.perf_counter()
    cache = Path(args.child_run)
    if args.fresh_cache:
        cache = cache.with_name(cache.stem + "-defaults.sqlite")
    outcome = run_judge(config, cache, conversations, args.profile)
    outcome.update(setup_s=ready - started, openai_imported="openai" in sys.modules)
    print(json.dumps(outcome), flush=True)


# -- the authors' serial loop -----------------------------------------------------------------------

def serial_loop(base_url: str, conversations: list[list[dict]], n: int) -> float:
    """api_judge.py's loop (one synchronous client, one item after another), minus its 0.5 s sleep."""
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="no-key-needed")
    start = time.perf_counter()
    for messages in conversations:
        completion = client.chat.completions.create(model=MODEL, messages=messages, n=n, stop=None, **SAMPLING)
        scores = [choice.message.content.strip() for choice in completion.choices]
        if len(scores) != n:
            raise RuntimeError(f"the server answered {len(scores)} choices, expected {n}")
    elapsed = time.perf_counter() - start
    client.close()
    return elapsed


def import_openai_seconds() -> float:
    """``import openai`` alone, in a fresh interpreter (a cold Caller.run pays it on its first call)."""
    code = "import time; t = time.perf_counter(); import openai; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(out.stdout)


# -- main -------------------------------------------------------------------------------------------

def verdict(met: bool) -> str:
    return "target met" if met else "target missed"


def measure_variant(server: Server, cache_file: Path, args, n: int, items: int, serial_items: int, seed: int,
                    profile: str | None = None) -> dict:
    """Cold and warm runs in fresh interpreters, a warm run here, and the serial loop, on ``items`` requests of ``n``."""
    conversations = workload(items, seed)
    config = judge_config(server.base_url, n, args.concurrency)
    child = [sys.executable, __file__, "--child-run", str(cache_file), "--base-url", server.base_url,
             "--items", str(items), "--seed", str(seed), "--n", str(n)]
    if args.concurrency:
        child += ["--concurrency", str(args.concurrency)]

    def in_child(profile: str | None = None) -> dict:
        server.reset()
        start = time.perf_counter()
        out = subprocess.run(child + (["--profile", profile] if profile else []), check=True, stdout=subprocess.PIPE, text=True)
        outcome = json.loads(out.stdout.strip().splitlines()[-1])
        outcome.update(total_s=time.perf_counter() - start, server=server.stats())
        return outcome

    figures: dict = {"items": items, "n": n, "outputs": items * n, "concurrency": config.max_concurrency,
                     "user_message_bytes_mean": sum(len(c[1]["content"].encode()) for c in conversations) / items}
    # A fresh interpreter each: the cold run pays `import openai` inside Caller.run, as a new evaluation does.
    figures["cold"] = in_child(profile)
    if args.concurrency and n == 1:  # the same cold run with the layer's defaults: the adaptive ramp's cost
        defaults = child[: child.index("--concurrency")] + ["--fresh-cache"]
        server.reset()
        start = time.perf_counter()
        out = subprocess.run(defaults, check=True, stdout=subprocess.PIPE, text=True)
        figures["cold_defaults"] = {**json.loads(out.stdout.strip().splitlines()[-1]),
                                    "total_s": time.perf_counter() - start, "server": server.stats()}
    figures["warm_fresh_process"] = in_child()
    server.reset()
    warm = run_judge(config, cache_file, conversations)
    warm["server"] = server.stats()
    figures["warm"] = warm

    server.reset()
    measured = serial_loop(server.base_url, conversations[:serial_items], n)
    per_call = measured / serial_items
    figures["serial"] = {
        "calls_measured": serial_items, "measured_s": measured, "per_call_s": per_call,
        "calls": items, "extrapolated_s": per_call * items, "authors_sleep_adds_s": AUTHORS_SLEEP_S * items,
        "server": server.stats(),
    }
    figures["ideal_s"] = math.ceil(items / config.max_concurrency) * args.latency
    figures["speedup"] = figures["serial"]["extrapolated_s"] / figures["cold"]["wall_s"]
    return figures


def report(title: str, f: dict, openai_import_s: float) -> None:
    cold, warm, fresh, serial = f["cold"], f["warm"], f["warm_fresh_process"], f["serial"]
    calls = cold["server"]["calls"]
    how = "measured" if serial["calls_measured"] == serial["calls"] else f"extrapolated from {serial['calls_measured']} calls"
    print(f"\n== {title}: {f['items']} distinct requests x n={f['n']} = {f['outputs']} judge outputs; "
          f"user message {f['user_message_bytes_mean']:.0f} B on average")
    print(f"serial (authors' loop, sync openai.OpenAI, no sleep): measured {serial['measured_s']:.2f} s for "
          f"{serial['calls_measured']} calls ({serial['per_call_s'] * 1000:.1f} ms/call) -> {serial['extrapolated_s']:.1f} s "
          f"for {serial['calls']} calls ({how}); {serial['calls'] / serial['extrapolated_s']:.2f} calls/s")
    print(f"  the authors' 0.5 s sleep after each success would add {serial['authors_sleep_adds_s']:.0f} s "
          f"(total {serial['extrapolated_s'] + serial['authors_sleep_adds_s']:.0f} s)")
    print(f"ours, cold (Caller.run in a fresh interpreter, fresh cache, concurrency {f['concurrency']}): {cold['wall_s']:.2f} s "
          f"incl. import openai (~{openai_import_s:.2f} s); {calls} calls to the server (judge counted {cold['stats']['calls']}), "
          f"{calls / cold['wall_s']:.1f} calls/s, peak {cold['server']['max_in_flight']} in flight; "
          f"failures {cold['stats']['failures']}, wrong outputs {cold['bad_outputs']}")
    print(f"  CPU seconds during the cold run: client {cold['cpu_s']:.2f} s ({cold['cpu_s'] / cold['wall_s']:.0%} of a core), "
          f"server process {cold['server']['cpu_s']:.2f} s ({cold['server']['cpu_s'] / cold['wall_s']:.0%} of a core)")
    print(f"  ideal at this concurrency: ceil({f['items']}/{f['concurrency']}) x latency = {f['ideal_s']:.2f} s; "
          f"ours is {cold['wall_s'] / f['ideal_s']:.2f}x ideal ({max(cold['wall_s'] - openai_import_s, 0) / f['ideal_s']:.2f}x "
          f"without the import)")
    print(f"ours, warm (same requests, cache re-opened, this process): Caller.run {warm['wall_s']:.3f} s; "
          f"{warm['server']['calls']} calls to the server (judge counted {warm['stats']['calls']}), "
          f"{warm['stats']['cache_hits']} cache hits")
    print(f"ours, warm in a fresh interpreter: {fresh['total_s']:.2f} s end to end (Caller.run {fresh['wall_s']:.3f} s; "
          f"interpreter, imports and workload {fresh['setup_s']:.2f} s + start-up; openai imported: {fresh['openai_imported']}); "
          f"{fresh['server']['calls']} calls to the server")
    with_sleep = (serial["extrapolated_s"] + serial["authors_sleep_adds_s"]) / cold["wall_s"]
    print(f"speedup vs serial: {f['speedup']:.1f}x cold ({with_sleep:.0f}x against the loop with its sleep)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=float, default=0.25, help="server seconds per call (default 0.25)")
    parser.add_argument("--calls", type=int, default=640, help="distinct n=1 requests (default 640; the n=4 variant: calls/4 items)")
    parser.add_argument("--concurrency", type=int, default=64,
                        help="the endpoint's known capacity: initial and maximum in flight (default 64; 0: the adaptive defaults)")
    parser.add_argument("--serial-calls", type=int, default=40, help="calls the serial loop is measured on (default 40)")
    parser.add_argument("--full-serial", action="store_true", help="measure the serial loop on every call")
    parser.add_argument("--json", metavar="OUT", help="write the figures as JSON")
    parser.add_argument("--profile", metavar="OUT", help="write a cProfile (pstats) of the cold n=1 Caller.run (inflates its figures)")
    parser.add_argument("--seed", type=int, default=0)
    # internal child modes
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child-run", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--items", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--fresh-cache", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.latency)
        return 0
    if args.child_run:
        child_run(args)
        return 0

    from importlib.metadata import version

    cpus = os.cpu_count()
    allowed = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cpus
    load_before = os.getloadavg()[0]
    openai_import_s = import_openai_seconds()
    figures: dict = {"latency_s": args.latency, "cpus": cpus, "cpus_allowed": allowed, "openai_version": version("openai"),
                     "openai_import_s": openai_import_s, "load_avg_1min_before": load_before}
    serial_calls = args.calls if args.full_serial else min(args.serial_calls, args.calls)
    quarter = max(1, args.calls // 4)
    server = Server(args.latency)
    try:
        with tempfile.TemporaryDirectory(prefix="judge_bench_") as tmp_name:
            tmp = Path(tmp_name)
            figures["n1"] = measure_variant(server, tmp / "n1.sqlite", args, 1, args.calls, serial_calls, args.seed, args.profile)
            # Other items than n=1's: a sample's cache key leaves n out, so shared items would start warm.
            figures["n4"] = measure_variant(server, tmp / "n4.sqlite", args, 4, quarter, max(1, serial_calls // 4), args.seed + 1)
    finally:
        server.close()
    figures["load_avg_1min_after"] = os.getloadavg()[0]

    print(f"judge throughput: fake OpenAI server in a separate process, {args.latency * 1000:.0f} ms per call; "
          f"openai {figures['openai_version']}; {cpus} CPUs ({allowed} allowed); load average (1 min) {load_before:.2f} before, "
          f"{figures['load_avg_1min_after']:.2f} after")
    print(f"import openai in a fresh interpreter: {openai_import_s:.2f} s (paid inside every cold Caller.run below)")
    report("n=1 (fair comparison with the serial loop: one call per output)", figures["n1"], openai_import_s)
    report("n=4 (the authors' shape: one call with 4 choices per item)", figures["n4"], openai_import_s)

    n1 = figures["n1"]
    warm_s = max(n1["warm"]["wall_s"], n1["warm_fresh_process"]["total_s"])
    zero_calls = all(figures[v][w]["server"]["calls"] == 0 for v in ("n1", "n4") for w in ("warm", "warm_fresh_process"))
    figures["targets"] = {"speedup": n1["speedup"], "speedup_met": n1["speedup"] >= SPEEDUP_TARGET,
                          "warm_s": warm_s, "warm_zero_calls": zero_calls, "warm_met": warm_s < WARM_TARGET_S and zero_calls}
    cold = n1["cold"]
    ideal_ratio = cold["total_s"] / n1["ideal_s"]
    figures["targets"].update(ideal_ratio=ideal_ratio, ideal_met=ideal_ratio <= IDEAL_TARGET)
    print("\n== targets (n=1 workload)")
    print(f"cold within {IDEAL_TARGET}x of ceil({n1['items']}/{n1['concurrency']}) x {args.latency * 1000:.0f} ms = "
          f"{n1['ideal_s']:.2f} s, start-up included: {cold['total_s']:.2f} s end to end ({ideal_ratio:.2f}x): "
          f"{verdict(figures['targets']['ideal_met'])}")
    if "cold_defaults" in n1:
        d = n1["cold_defaults"]
        print(f"  with the defaults (adaptive from 4 in flight): {d['total_s']:.2f} s end to end "
              f"({d['total_s'] / n1['ideal_s']:.2f}x), peak {d['server']['max_in_flight']} in flight, "
              f"{d['server']['calls']} calls")
    print(f"cold speedup vs serial >= {SPEEDUP_TARGET:.0f}x: {n1['speedup']:.1f}x ({n1['serial']['extrapolated_s']:.1f} s / "
          f"{n1['cold']['wall_s']:.2f} s): {verdict(figures['targets']['speedup_met'])}")
    print(f"warm re-run < {WARM_TARGET_S:.0f} s with zero calls: {n1['warm']['wall_s']:.3f} s in this process, "
          f"{n1['warm_fresh_process']['total_s']:.2f} s in a fresh interpreter end to end; calls made on warm runs: "
          f"{'none' if zero_calls else 'SOME'}: {verdict(figures['targets']['warm_met'])}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
