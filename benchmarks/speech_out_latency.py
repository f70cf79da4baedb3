"""Answer latency of every speech-out model available here: time to first audio (TTFA), first text, RTF.

Every figure comes from the ``latency`` record the model's own ``generate_until`` attaches to each
spoken answer (:mod:`lm_eval_speech.speech.latency`), on requests shaped like S2S-Arena's: one spoken
instruction per request (the demo's bundled SpeechInstructBench open-ended clips, cycled), a spoken
answer asked (``speech_output: true``), greedy, ``--max-new-tokens`` text tokens at most. One untimed
warm-up request precedes each model's timed requests (weights load, kernels compile, caches fill).

Models, each where it can run:

* ``cascade`` (always, CPU): the bundled Whisper tiny.en → SmolLM2-135M → Piper en_US voice.
  Not streamed: first audio = end of synthesis.
* ``openai_realtime`` against the test suite's local Realtime protocol server (tests/fake_realtime.py):
  measures this client's own overhead on the streamed path (the server answers at once), not OpenAI's
  service. ``--realtime-url ws://...`` points it at another server instead.
* ``qwen2_5_omni``, ``qwen3_omni``, ``moshi`` on their real checkpoints: when a CUDA GPU is present and
  the weights are on disk (``--qwen2-5-omni PATH`` etc., or the default hub ids found in the local
  Hugging Face cache). Otherwise listed as skipped, with the reason.

Medians and p90 over ``--requests`` answers per model and batch size; the device and batch size
are printed beside them.

Usage: python benchmarks/speech_out_latency.py [--requests 8] [--batch-sizes 1,4] [--max-new-tokens 48]
       [--models cascade,openai_realtime,qwen2_5_omni,qwen3_omni,moshi] [--device cuda] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLIPS = ROOT / "demo" / "speechinstruct" / "open-ended" / "en"
PROMPT = "<audio>Answer the spoken request briefly."
CHECKPOINTS = {"qwen2_5_omni": "Qwen/Qwen2.5-Omni-7B", "qwen3_omni": "Qwen/Qwen3-Omni-30B-A3B-Instruct", "moshi": "kmhf/hf-moshiko"}
ALL_MODELS = ("cascade", "openai_realtime", *CHECKPOINTS)


def requests_for(count: int, max_new_tokens: int, first_doc: int = 0):
    from lm_eval.api.instance import Instance

    from lm_eval_speech.speech.audio import load_audio

    paths = sorted(CLIPS.glob("*.ogg"))
    if not paths:
        sys.exit(f"no clips under {CLIPS}")
    gen = {"until": [], "do_sample": False, "max_gen_toks": max_new_tokens, "speech_output": True}
    out = []
    for index in range(count):
        array, rate = load_audio(paths[index % len(paths)])
        clip = {"array": array, "sampling_rate": rate}
        out.append(Instance("generate_until", {}, (PROMPT, dict(gen), {"audio": [clip]}), idx=0,
                            metadata=("speech_out_latency", first_doc + index, 1)))
    return out


def local_weights(name: str, given: str | None) -> tuple[str | None, str | None]:
    """(path, None) when the checkpoint is on disk, else (None, why not)."""
    if given:
        return (given, None) if Path(given).exists() else (None, f"{given}: no such folder")
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(CHECKPOINTS[name], local_files_only=True), None
    except Exception as error:  # noqa: BLE001  (any miss means: not here)
        return None, f"{CHECKPOINTS[name]} not in the local Hugging Face cache ({type(error).__name__})"


def build(name: str, args, batch_size: int, realtime_server):
    from lm_eval.api.registry import get_model

    import lm_eval_speech  # noqa: F401  (registers the models)

    speech_dir = str(Path(args.work) / name)
    if name == "cascade":
        return get_model(name)(device="cpu", batch_size=batch_size, speech_dir=speech_dir)
    if name == "openai_realtime":
        return get_model(name)(base_url=realtime_server, cache=False, preflight=False, speech_dir=speech_dir)
    return get_model(name)(pretrained=args.weights[name], device=args.device, batch_size=batch_size, speech_dir=speech_dir)


def measure(name: str, args, batch_size: int, realtime_server) -> dict:
    from lm_eval_speech.speech import latency
    from lm_eval_speech.speech.output import speech_of

    started = time.perf_counter()
    lm = build(name, args, batch_size, realtime_server)
    load_s = time.perf_counter() - started
    lm.generate_until(requests_for(1, args.max_new_tokens, first_doc=10_000), disable_tqdm=True)  # warm-up
    responses = lm.generate_until(requests_for(args.requests, args.max_new_tokens), disable_tqdm=True)
    records = [(speech_of(r) or {}).get("latency") for r in responses]
    failed = sum(record is None for record in records)
    return {"model": name, "batch_size": batch_size, "load_s": round(load_s, 2), "failed": failed, **latency.summary(records)}


def cell(figures: dict) -> str:
    median, p90 = figures["median"], figures["p90"]
    return "–" if median is None else f"{median:.3f} / {p90:.3f}"


def print_table(rows: list[dict], skipped: dict[str, str]) -> None:
    print("| model | batch | answers | TTFA (s) | first text (s) | generation (s) | RTF | device | streamed |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---|")
    for row in rows:
        where = row["measured_at"]
        streamed = {(True,): "yes", (False,): "no (TTFA = end)"}.get(tuple(where["streamed"]), "mixed")
        print(f"| {row['model']} | {row['batch_size']} | {row['total_s']['answers']} | {cell(row['first_audio_s'])} | "
              f"{cell(row['first_text_s'])} | {cell(row['total_s'])} | {cell(row['rtf'])} | {', '.join(where['devices'])} | {streamed} |")
    print("\ncells: median / p90 over the answers; RTF = generation time / answer duration")
    for name, reason in skipped.items():
        print(f"skipped {name}: {reason}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--batch-sizes", default="1,4", help="for the local models that batch (cascade, omni)")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--models", default=",".join(ALL_MODELS))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--realtime-url", help="a Realtime server to time instead of the local protocol server")
    for name in CHECKPOINTS:
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, help=f"{name} checkpoint folder")
    parser.add_argument("--work", default=None, help="where the spoken answers go (default: a temporary folder)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import tempfile

    import torch

    args.work = args.work or tempfile.mkdtemp(prefix="speech_out_latency-")
    wanted = [m for m in args.models.split(",") if m]
    unknown = sorted(set(wanted) - set(ALL_MODELS))
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(ALL_MODELS)}")
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    skipped: dict[str, str] = {}
    args.weights = {}
    for name in CHECKPOINTS:
        if name not in wanted:
            continue
        if not torch.cuda.is_available():
            skipped[name] = "no CUDA GPU here"
            continue
        args.weights[name], reason = local_weights(name, getattr(args, name))
        if reason:
            skipped[name] = reason
    rows = []
    server = None
    if "openai_realtime" in wanted and not args.realtime_url:
        sys.path.insert(0, str(ROOT / "tests"))
        from fake_realtime import FakeRealtime

        server = FakeRealtime().__enter__()
    try:
        for name in wanted:
            if name in skipped:
                continue
            sizes = [1] if name in ("openai_realtime", "moshi") else batch_sizes
            for batch_size in sizes:
                rows.append(measure(name, args, batch_size, args.realtime_url or (server.base_url if server else None)))
                print(f"measured {name} batch {batch_size}", file=sys.stderr)
    finally:
        if server is not None:
            server.__exit__(None, None, None)
    print_table(rows, skipped)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "skipped": skipped}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
