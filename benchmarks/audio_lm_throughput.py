"""Samples/s of the transformers audio wrappers (``qwen2_audio``, ``hf_audio``) at batch 1 and batched.

Every figure comes from ``lm.generate_until(requests)``: the wrapper's real path (Collator, longest
audio first, chat template, processor, left padding, ``model.generate``, stop-string post-processing),
not from a bare ``model.generate``. Requests are shaped like a speech benchmark's:

* audio: one clip per request, ``--seconds`` long on average (default 10 s), durations drawn uniformly
  within +/- ``--jitter`` (default 20 %: 8-12 s, seeded) so that batches see realistic padding; a
  Whisper-style encoder pools 10 s into ~250 audio tokens (measured and printed);
* text: a different instruction per request, ``--prompt-tokens`` tokens on average (default 40,
  +/- 20 %), inside the model's chat template;
* generation: exactly ``--new-tokens`` (default 32) per request, forced by ``min_new_tokens`` =
  ``max_gen_toks`` and no stop strings, so batch 1 and batched generate the same number of tokens.
  A spy on ``model.generate`` counts what reached the model (rows, new tokens, audio, text and padding
  tokens); the table shows the figures measured, not the ones asked for. Clip lengths pad the text side
  only: Qwen2-Audio's and AudioFlamingo3's Whisper-style encoders run the full 30 s window (3000 mel
  frames, 1500 positions) for every clip, as the released models do.

Each (wrapper, model, batch size) run is preceded by an untimed warm-up batch of other requests; the
fastest of ``--repeats`` timed passes counts. Beside wall seconds the table gives the process's CPU
seconds over the same pass, which other processes on a shared machine do not inflate.
``same as b1`` counts the answers identical to batch 1's: under greedy decoding in float32 a batched
run that pads and masks correctly gives the same text (random weights make near-ties, so a rare
difference from float rounding is possible; many would mean broken padding).

Shapes:

* ``tiny`` (default, CPU): the test suite's tiny random models (tests/builders.py), re-sized to
  ``--hidden``/``--layers`` (default 256 and 4, for encoder and text model alike; the builders' own
  32/2 with ``--hidden 0``) and saved with the builders' processors (Whisper features, byte-level BPE
  of ~440 tokens). ``qwen2_audio`` runs on the tiny Qwen2-Audio, ``hf_audio`` on it and on the other
  architectures of ``--hf-audio-models`` (default AudioFlamingo3).
* ``qwen2-audio-7b`` (GPU): a random-weight ``Qwen2AudioForConditionalGeneration`` with
  Qwen2-Audio-7B-Instruct's shapes (:data:`QWEN2_AUDIO_7B`, 8.4 B parameters), built in bfloat16 straight
  on the device; the tiny Qwen2-Audio's processor and tokenizer feed it (its token ids lie far below the
  7B vocabulary, and the audio token index is set to that tokenizer's ``<|AUDIO|>``). Defaults there:
  100 requests, batch sizes 1,16,32. When ``vllm`` imports, the same requests then run through
  ``vllm.LLM`` offline (the model saved to a temporary folder first): samples/s and the ratio to the HF
  wrapper at batch 1. ``--dry-run`` builds the 7B model on the meta device (no memory) and prints its
  parameter count and the prompt lengths, without generating.

Usage: python benchmarks/audio_lm_throughput.py [--batch-sizes 1,8] [--requests 32] [--seconds 10]
       [--new-tokens 32] [--hidden 256 --layers 4] [--threads N] [--cache-dir DIR] [--json OUT]
       python benchmarks/audio_lm_throughput.py --device cuda --shape qwen2-audio-7b [--batch-sizes 1,16,32]
       python benchmarks/audio_lm_throughput.py --shape qwen2-audio-7b --dry-run
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # builders.py: the tiny random models and their processors

# Qwen/Qwen2-Audio-7B-Instruct's config.json, written out: transformers' Qwen2AudioConfig() matches the
# audio encoder, but its default text config (Qwen2Config()) does not (vocab 151936, intermediate 22016,
# 32768 positions, rms eps 1e-6), so every shape is given here.
QWEN2_AUDIO_7B = {
    "audio_config": {
        "d_model": 1280, "encoder_layers": 32, "encoder_attention_heads": 20, "encoder_ffn_dim": 5120,
        "num_mel_bins": 128, "max_source_positions": 1500, "activation_function": "gelu", "scale_embedding": False,
    },
    "text_config": {
        "vocab_size": 156032, "hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
        "num_key_value_heads": 32, "intermediate_size": 11008, "max_position_embeddings": 8192, "rope_theta": 10000.0,
        "rms_norm_eps": 1e-5, "hidden_act": "silu", "tie_word_embeddings": False,
        "bos_token_id": 151643, "eos_token_id": 151645, "pad_token_id": 151643,
    },
    "audio_token_index": 151646,
}
# Name -> (builder in tests/builders.py, what the table calls it).
TINY_MODELS = {
    "qwen2-audio": ("build_tiny_qwen2_audio", "tiny Qwen2-Audio"),
    "audioflamingo3": ("build_tiny_audioflamingo3", "tiny AudioFlamingo3"),
    "glmasr": ("build_tiny_glmasr", "tiny GLM-ASR"),
}
SHAPE_DEFAULTS = {  # (requests, batch sizes, wrappers)
    "tiny": (32, "1,8", "qwen2_audio,hf_audio"),
    "qwen2-audio-7b": (100, "1,16,32", "qwen2_audio"),
}
# Instructions of the kind speech benchmarks give; each request takes its own stretch of words.
INSTRUCTION_WORDS = (
    "Listen to the audio clip carefully and answer the question the speaker asks. Describe what you hear, "
    "name the language of the speaker, and summarise the request in one short paragraph. Follow every "
    "instruction given in the recording exactly, do not use any commas, and keep the answer under fifty "
    "words. If the speaker changes their mind, follow the last version of the request. Write a poem about "
    "the sea, give your story a title in double angular brackets, list three fruits as bullet points, and "
    "end with the phrase any other questions. Please answer the question based on the provided audio."
).split()


# -- models -------------------------------------------------------------------------------------------

def build_tiny(name: str, folder: Path, hidden: int, layers: int, seed: int) -> Path:
    """The builder's tiny model in ``folder``, re-sized to ``hidden``/``layers`` (0: the builder's sizes).

    A folder already holding the same build (``bench_build.json``) is reused: ``--cache-dir`` runs skip it.
    """
    import builders

    marker = folder / "bench_build.json"
    wanted = {"model": name, "hidden": hidden, "layers": layers, "seed": seed}
    if marker.exists() and json.loads(marker.read_text()) == wanted:
        return folder
    getattr(builders, TINY_MODELS[name][0])(folder, seed=seed)
    if hidden:
        resize_saved_model(folder, hidden, layers, seed)
    marker.write_text(json.dumps(wanted))
    return folder


def resize_saved_model(folder: Path, hidden: int, layers: int, seed: int) -> None:
    """Rebuild the saved random model with ``hidden`` width and ``layers`` layers in encoder and text model.

    The builders take no sizes; their processor, tokenizer, special token ids and generation config stay.
    Heads are 64 wide (as in both 7B parts), every head its own K/V head (as Qwen2-Audio-7B); feed-forward
    widths keep the 7B ratios (encoder 4x, text 11008/4096).
    """
    import torch
    import transformers
    from transformers import AutoConfig, GenerationConfig

    config = AutoConfig.from_pretrained(folder)
    data = config.to_dict()
    heads = max(1, hidden // 64)
    ffn = {"audio_config": 4 * hidden, "text_config": max(8, round(hidden * 11008 / 4096 / 8) * 8)}
    for key in ("audio_config", "text_config"):
        sub = data[key]
        # Qwen2-Audio's encoder names its sizes d_model, encoder_layers, ...: its attribute_map says which.
        names = type(getattr(config, key)).attribute_map
        for generic, value in (("hidden_size", hidden), ("num_hidden_layers", layers), ("num_attention_heads", heads),
                               ("intermediate_size", ffn[key])):
            sub[names.get(generic, generic)] = value
        if "num_key_value_heads" in sub:
            sub["num_key_value_heads"] = heads
        # Derived from the old sizes: dropped so the config derives them again.
        sub.pop("head_dim", None)
        sub.pop("layer_types", None)
    resized = type(config).from_dict(data)
    torch.manual_seed(seed)
    model = getattr(transformers, config.architectures[0])(resized).eval()
    model.generation_config = GenerationConfig.from_pretrained(folder)
    model.save_pretrained(folder)


def qwen2_audio_7b_config(tokenizer):
    """Qwen2-Audio-7B-Instruct's config, its audio token and eos/pad ids those of ``tokenizer``.

    The processor writes the tokenizer's own audio token id into input_ids, so the model must look for
    that id; the other ids change no shape and no cost.
    """
    from transformers import Qwen2AudioConfig, Qwen2AudioEncoderConfig, Qwen2Config

    text = dict(QWEN2_AUDIO_7B["text_config"])
    text.update(eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"), pad_token_id=tokenizer.pad_token_id, bos_token_id=None)
    if len(tokenizer) > text["vocab_size"]:
        raise ValueError(f"the tokenizer has {len(tokenizer)} tokens, more than the 7B vocabulary")
    return Qwen2AudioConfig(
        audio_config=Qwen2AudioEncoderConfig(**QWEN2_AUDIO_7B["audio_config"]),
        text_config=Qwen2Config(**text),
        audio_token_index=tokenizer.convert_tokens_to_ids("<|AUDIO|>"),
    )


def build_random_7b(config, device, dtype):
    """Random weights, allocated and initialised on ``device`` in ``dtype``: never a float32 copy on the CPU.

    Torch's default dtype and device do it, not a transformers keyword (``dtype``/``torch_dtype`` differ
    across the versions the project allows).
    """
    import torch
    from transformers import GenerationConfig, Qwen2AudioForConditionalGeneration

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = Qwen2AudioForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous)
    model.eval()
    if device.type != "meta":
        model.generation_config = GenerationConfig(eos_token_id=config.text_config.eos_token_id,
                                                   pad_token_id=config.text_config.pad_token_id)
    return model


def count_parameters(model) -> dict:
    parts = {"audio encoder": "audio_tower", "projector": "multi_modal_projector", "language model": "language_model"}
    counts = {"total": sum(p.numel() for p in model.parameters())}
    for label, attribute in parts.items():
        module = getattr(model, attribute, None) or getattr(getattr(model, "model", None), attribute, None)
        if module is not None:
            counts[label] = sum(p.numel() for p in module.parameters())
    if getattr(model, "lm_head", None) is not None:
        counts["lm head"] = sum(p.numel() for p in model.lm_head.parameters())
    return counts


def make_wrapper(wrapper: str, folder: Path, device: str, dtype: str):
    """The lm-eval model as ``--model wrapper --model_args pretrained=folder,...`` would build it."""
    from lm_eval_speech.models.hf_audio import HFAudioLM
    from lm_eval_speech.models.qwen2_audio import Qwen2AudioLM

    cls = {"qwen2_audio": Qwen2AudioLM, "hf_audio": HFAudioLM}[wrapper]
    return cls(pretrained=str(folder), device=device, dtype=dtype, batch_size=1)


# -- workload -----------------------------------------------------------------------------------------

def speech_like(seconds: float, rng: np.random.Generator, rate: int = 16000) -> np.ndarray:
    """A gliding harmonic tone with syllable-rate envelope and noise: the content means nothing to a random model."""
    t = (np.arange(int(seconds * rate)) / rate).astype(np.float32)
    f0 = 110 + 50 * np.sin(2 * np.pi * rng.uniform(0.3, 0.9) * t)
    phase = (2 * np.pi / rate) * np.cumsum(f0)
    voiced = sum(np.sin(k * phase) / k for k in range(1, 4))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2.5, 4.5) * t) ** 2
    noise = rng.standard_normal(t.shape, dtype=np.float32)
    return (0.2 * envelope * voiced + 0.02 * noise).astype(np.float32)


def instruction(tokenizer, n_tokens: int, start: int) -> str:
    """Words of INSTRUCTION_WORDS from ``start`` (cyclic) until the text holds ``n_tokens`` tokens."""
    words = []
    while len(tokenizer(" ".join(words), add_special_tokens=False)["input_ids"]) < n_tokens:
        words.append(INSTRUCTION_WORDS[(start + len(words)) % len(INSTRUCTION_WORDS)])
    return " ".join(words)


def make_requests(count: int, args, tokenizer, seed: int) -> list:
    from lm_eval.api.instance import Instance

    rng = np.random.default_rng(seed)
    gen_kwargs = {"until": [], "max_gen_toks": args.new_tokens, "min_new_tokens": args.new_tokens, "do_sample": False}
    requests = []
    for index in range(count):
        seconds = args.seconds * rng.uniform(1 - args.jitter, 1 + args.jitter)
        n_tokens = int(round(args.prompt_tokens * rng.uniform(0.8, 1.2)))
        context = "<audio>" + instruction(tokenizer, n_tokens, int(rng.integers(len(INSTRUCTION_WORDS))))
        clip = {"array": speech_like(seconds, rng), "sampling_rate": 16000}
        requests.append(Instance(request_type="generate_until", doc={}, arguments=(context, dict(gen_kwargs), {"audio": [clip]}),
                                 idx=0, metadata=("audio_lm_throughput", index, 1)))
    return requests


def workload_summary(requests: list, tokenizer) -> dict:
    seconds = [len(r.args[2]["audio"][0]["array"]) / 16000 for r in requests]
    text_tokens = [len(tokenizer(r.args[0].replace("<audio>", ""), add_special_tokens=False)["input_ids"]) for r in requests]
    return {"audio_s_mean": float(np.mean(seconds)), "audio_s_min": float(np.min(seconds)), "audio_s_max": float(np.max(seconds)),
            "instruction_tokens_mean": float(np.mean(text_tokens)), "instruction_tokens_min": int(np.min(text_tokens)),
            "instruction_tokens_max": int(np.max(text_tokens))}


# -- measuring ----------------------------------------------------------------------------------------

class GenerateSpy:
    """Stands in for ``model.generate`` and counts what reaches it: rows, prompt tokens (audio, padding), new tokens."""

    def __init__(self, model, audio_token_id: int) -> None:
        self.model, self.audio_token_id = model, audio_token_id
        self.original = model.generate
        model.generate = self  # an instance attribute: hf_generate's model.generate(...) lands here
        self.reset()

    def reset(self) -> None:
        self.batches = self.rows = self.prompt_tokens = self.audio_tokens = self.padding_tokens = 0
        self.new_tokens: list[int] = []

    def __call__(self, *args, **kwargs):
        output = self.original(*args, **kwargs)
        ids, mask = kwargs["input_ids"], kwargs["attention_mask"]
        self.batches += 1
        self.rows += ids.shape[0]
        self.prompt_tokens += int(mask.sum())
        self.padding_tokens += int((mask == 0).sum())
        self.audio_tokens += int((ids == self.audio_token_id).sum())
        # Every row of a batch leaves generate equally long; min_new_tokens keeps EOS from ending any early.
        self.new_tokens += [output.shape[1] - ids.shape[1]] * ids.shape[0]
        return output

    def restore(self) -> None:
        del self.model.generate


def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(lm, spy: GenerateSpy, requests: list, warmup: list, batch_size: int, repeats: int) -> dict:
    """The fastest of ``repeats`` timed passes over ``requests`` (wall clock; its process CPU time beside it)."""
    lm.batch_size = batch_size
    lm.generate_until(warmup[:batch_size], disable_tqdm=True)  # untimed: first-call allocations, kernel choice
    synchronize(lm.device)
    seconds = cpu_seconds = float("inf")
    for _ in range(repeats):
        spy.reset()
        cpu0, start = time.process_time(), time.perf_counter()
        outputs = lm.generate_until(requests, disable_tqdm=True)
        synchronize(lm.device)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
        if wall < seconds:
            seconds, cpu_seconds = wall, cpu
    rows = spy.rows
    return {
        "batch_size": batch_size, "requests": len(requests), "seconds": seconds, "samples_per_s": len(requests) / seconds,
        "cpu_seconds": cpu_seconds,
        "batches": spy.batches, "rows_generated": rows,
        "new_tokens_min": min(spy.new_tokens), "new_tokens_max": max(spy.new_tokens),
        "prompt_tokens_mean": spy.prompt_tokens / rows, "audio_tokens_mean": spy.audio_tokens / rows,
        "text_tokens_mean": (spy.prompt_tokens - spy.audio_tokens) / rows,
        "padding_share": spy.padding_tokens / (spy.padding_tokens + spy.prompt_tokens),
        "outputs": outputs,
    }


def run_wrapper(lm, label: str, wrapper: str, requests: list, warmup: list, batch_sizes: list[int], repeats: int) -> list[dict]:
    audio_token_id = lm.tokenizer.convert_tokens_to_ids(lm.audio_token)
    spy = GenerateSpy(lm.model, audio_token_id)
    runs = []
    try:
        for batch_size in batch_sizes:
            run = {"wrapper": wrapper, "model": label, **measure(lm, spy, requests, warmup, batch_size, repeats)}
            runs.append(run)
            print(f"  {wrapper} / {label} / batch {batch_size}: {run['seconds']:.2f} s, {run['samples_per_s']:.2f} samples/s "
                  f"(CPU {run['cpu_seconds']:.2f} s)", flush=True)
    finally:
        spy.restore()
    base = next((r for r in runs if r["batch_size"] == 1), None)
    for run in runs:
        run["ratio_vs_batch1"] = run["samples_per_s"] / base["samples_per_s"] if base else None
        # CPU seconds per pass: steadier than wall time on a shared machine (others' load does not count).
        run["cpu_ratio_vs_batch1"] = base["cpu_seconds"] / run["cpu_seconds"] if base else None
        run["identical_to_batch1"] = sum(a == b for a, b in zip(run["outputs"], base["outputs"], strict=True)) if base else None
    return runs


# -- vLLM ---------------------------------------------------------------------------------------------

def vllm_missing_reason() -> str | None:
    try:
        import vllm  # noqa: F401
    except Exception as exc:  # ImportError, or a broken install (CUDA libraries) raising something else
        return f"vllm is not importable ({type(exc).__name__}: {exc})"
    return None


def measure_vllm(folder: Path, prompts: list[tuple[str, np.ndarray]], new_tokens: int, args) -> dict:
    """``vllm.LLM`` offline on the saved model: one ``generate`` over every prompt, after an untimed warm-up."""
    import vllm
    from vllm import LLM, SamplingParams

    llm = LLM(model=str(folder), tokenizer=str(folder), dtype=args.vllm_dtype, seed=args.seed,
              gpu_memory_utilization=args.vllm_gpu_memory, limit_mm_per_prompt={"audio": 1})
    sampling = SamplingParams(max_tokens=new_tokens, min_tokens=new_tokens, temperature=0, ignore_eos=True)
    inputs = [{"prompt": text, "multi_modal_data": {"audio": [(array, 16000)]}} for text, array in prompts]
    llm.generate(inputs[: min(8, len(inputs))], sampling, use_tqdm=False)
    start = time.perf_counter()
    outputs = llm.generate(inputs, sampling, use_tqdm=False)
    seconds = time.perf_counter() - start
    generated = [len(o.outputs[0].token_ids) for o in outputs]
    figures = {"vllm_version": vllm.__version__, "requests": len(inputs), "seconds": seconds, "samples_per_s": len(inputs) / seconds,
               "new_tokens_min": min(generated), "new_tokens_max": max(generated),
               "prompt_tokens_mean": float(np.mean([len(o.prompt_token_ids) for o in outputs]))}
    del llm
    return figures


def save_for_vllm(model, processor_folder: Path, out: Path) -> Path:
    from transformers import AutoProcessor

    model.save_pretrained(out)
    AutoProcessor.from_pretrained(processor_folder).save_pretrained(out)
    return out


# -- report -------------------------------------------------------------------------------------------

def print_table(runs: list[dict], vllm_figures: dict | None, new_tokens: int) -> None:
    header = ("wrapper", "model", "batch", "requests", "seconds", "samples/s", "vs batch 1", "cpu s", "cpu vs b1", "new tok/row",
              "prompt tok", "padding", "same as b1")
    rows = []
    for r in runs:
        new = f"{r['new_tokens_min']}" if r["new_tokens_min"] == r["new_tokens_max"] else f"{r['new_tokens_min']}-{r['new_tokens_max']}"
        rows.append((r["wrapper"], r["model"], str(r["batch_size"]), str(r["requests"]), f"{r['seconds']:.2f}",
                     f"{r['samples_per_s']:.2f}", f"{r['ratio_vs_batch1']:.2f}x" if r["ratio_vs_batch1"] else "-",
                     f"{r['cpu_seconds']:.2f}", f"{r['cpu_ratio_vs_batch1']:.2f}x" if r["cpu_ratio_vs_batch1"] else "-", new,
                     f"{r['prompt_tokens_mean']:.0f}", f"{r['padding_share']:.1%}",
                     f"{r['identical_to_batch1']}/{r['requests']}" if r["identical_to_batch1"] is not None else "-"))
    if vllm_figures and "samples_per_s" in vllm_figures:
        v = vllm_figures
        new = f"{v['new_tokens_min']}" if v["new_tokens_min"] == v["new_tokens_max"] else f"{v['new_tokens_min']}-{v['new_tokens_max']}"
        rows.append(("vllm.LLM", v["model"], "engine", str(v["requests"]), f"{v['seconds']:.2f}", f"{v['samples_per_s']:.2f}",
                     f"{v['ratio_vs_hf_batch1']:.2f}x" if v.get("ratio_vs_hf_batch1") else "-", "-", "-", new,
                     f"{v['prompt_tokens_mean']:.0f}", "-", "-"))
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    print(" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("-+-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))))
    bad = [r for r in runs if not r["new_tokens_min"] == r["new_tokens_max"] == new_tokens]
    if bad:
        print(f"WARNING: {len(bad)} run(s) did not generate exactly {new_tokens} new tokens per row: the ratios compare unequal work")


# -- main ---------------------------------------------------------------------------------------------

def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPE_DEFAULTS), default="tiny", help="tiny (CPU) or qwen2-audio-7b (GPU)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default cpu)")
    parser.add_argument("--dtype", default=None, help="model dtype (default float32 on CPU, bfloat16 elsewhere)")
    parser.add_argument("--wrappers", default=None, help="comma list of qwen2_audio,hf_audio (default: tiny both, 7b qwen2_audio)")
    parser.add_argument("--hf-audio-models", default="qwen2-audio,audioflamingo3",
                        help=f"tiny models for hf_audio, of {','.join(TINY_MODELS)} (default qwen2-audio,audioflamingo3)")
    parser.add_argument("--batch-sizes", default=None, help="comma list (default: tiny 1,8; 7b 1,16,32)")
    parser.add_argument("--requests", type=int, default=None, help="timed requests per run (default: tiny 32, 7b 100)")
    parser.add_argument("--seconds", type=float, default=10.0, help="mean clip duration in seconds (default 10)")
    parser.add_argument("--jitter", type=float, default=0.2, help="clip durations vary by +/- this share (default 0.2)")
    parser.add_argument("--prompt-tokens", type=int, default=40, help="mean instruction length in tokens (default 40)")
    parser.add_argument("--new-tokens", type=int, default=32, help="tokens generated per request, forced (default 32)")
    parser.add_argument("--hidden", type=int, default=256, help="tiny shape: width of encoder and text model (0: builders' 32)")
    parser.add_argument("--layers", type=int, default=4, help="tiny shape: layers of encoder and text model (default 4)")
    parser.add_argument("--repeats", type=int, default=1, help="timed passes per run; the fastest counts (default 1)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    parser.add_argument("--cache-dir", default=None, help="keep the built tiny models here and reuse them")
    parser.add_argument("--dry-run", action="store_true", help="build configs (7b: on the meta device) and prompts; no generation")
    parser.add_argument("--no-vllm", action="store_true", help="skip the vLLM comparison")
    parser.add_argument("--vllm-gpu-memory", type=float, default=0.85, help="vllm gpu_memory_utilization (default 0.85)")
    parser.add_argument("--vllm-dtype", default="bfloat16")
    parser.add_argument("--json", metavar="OUT", help="write the figures as JSON")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    requests, batch_sizes, wrappers = SHAPE_DEFAULTS[args.shape]
    args.requests = args.requests or requests
    args.batch_sizes = [int(b) for b in (args.batch_sizes or batch_sizes).split(",")]
    args.wrappers = [w.strip() for w in (args.wrappers or wrappers).split(",")]
    args.hf_audio_models = [m.strip() for m in args.hf_audio_models.split(",")]
    for name in args.hf_audio_models:
        if name not in TINY_MODELS:
            parser.error(f"--hf-audio-models: unknown {name!r} (known: {', '.join(TINY_MODELS)})")
    for wrapper in args.wrappers:
        if wrapper not in ("qwen2_audio", "hf_audio"):
            parser.error(f"--wrappers: unknown {wrapper!r}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is built locally; nothing may reach the hub
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    import transformers
    from transformers import AutoProcessor

    from lm_eval_speech.models._base import resolve_device

    transformers.utils.logging.disable_progress_bar()  # loading/saving bars would break up the report
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    # The 7B shape is bfloat16 as released (its dry run reports that size too); float32 is CPU's fast type.
    dtype = args.dtype or ("float32" if device.type == "cpu" and args.shape == "tiny" else "bfloat16")
    if args.shape == "qwen2-audio-7b" and device.type != "cuda" and not args.dry_run:
        print(f"--shape qwen2-audio-7b needs a CUDA device (got {device}); on CPU only --dry-run")
        return 2
    figures: dict = {"shape": args.shape, "device": str(device), "dtype": dtype, "torch": torch.__version__,
                     "transformers": transformers.__version__, "torch_threads": torch.get_num_threads(),
                     "new_tokens": args.new_tokens, "batch_sizes": args.batch_sizes, "cpus": os.cpu_count(),
                     "load_avg_1min_before": os.getloadavg()[0]}
    if device.type == "cuda":
        figures["gpu"] = torch.cuda.get_device_name(device)

    with tempfile.TemporaryDirectory(prefix="audio_lm_bench_") as tmp_name:
        store = Path(args.cache_dir) if args.cache_dir else Path(tmp_name)
        store.mkdir(parents=True, exist_ok=True)
        hidden = args.hidden if args.shape == "tiny" else 0  # 7b: the tiny folder only lends its processor
        qwen_folder = build_tiny("qwen2-audio", store / f"qwen2-audio-h{hidden}-l{args.layers}", hidden, args.layers, args.seed)
        tokenizer = AutoProcessor.from_pretrained(qwen_folder).tokenizer
        requests = make_requests(args.requests, args, tokenizer, args.seed)
        warmup = make_requests(max(args.batch_sizes), args, tokenizer, args.seed + 1)
        figures["workload"] = workload_summary(requests, tokenizer)
        w = figures["workload"]
        print(f"audio LM throughput: shape {args.shape}, device {device}" + (f" ({figures['gpu']})" if "gpu" in figures else "")
              + f", dtype {dtype}; torch {torch.__version__} ({torch.get_num_threads()} threads), transformers "
              f"{transformers.__version__}; {os.cpu_count()} CPUs, load average (1 min) {figures['load_avg_1min_before']:.2f}")
        print(f"workload: {args.requests} requests (+ an untimed warm-up batch per run); audio {w['audio_s_mean']:.1f} s mean "
              f"({w['audio_s_min']:.1f}-{w['audio_s_max']:.1f} s); instruction {w['instruction_tokens_mean']:.0f} tokens mean "
              f"({w['instruction_tokens_min']}-{w['instruction_tokens_max']}); {args.new_tokens} new tokens forced per request",
              flush=True)

        if args.shape == "qwen2-audio-7b":
            runs, vllm_figures = run_7b(args, figures, device, dtype, qwen_folder, requests, warmup, Path(tmp_name))
        else:
            runs, vllm_figures = run_tiny(args, figures, device, dtype, store, qwen_folder, requests, warmup), None
    if runs is None:  # dry run
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
        return 0

    first = runs[0]
    print(f"\nprompt per request as the model saw it (batch 1, no padding): {first['prompt_tokens_mean']:.0f} tokens = "
          f"{first['audio_tokens_mean']:.0f} audio + {first['text_tokens_mean']:.0f} text (instruction + chat template), "
          f"{first['model']}")
    for label in dict.fromkeys(r["model"] for r in runs[1:] if r["model"] != first["model"]):
        r = next(r for r in runs if r["model"] == label)
        print(f"  {label}: {r['prompt_tokens_mean']:.0f} = {r['audio_tokens_mean']:.0f} audio + {r['text_tokens_mean']:.0f} text")
    figures["load_avg_1min_after"] = os.getloadavg()[0]
    print(f"load average (1 min) after: {figures['load_avg_1min_after']:.2f}\n")
    print_table(runs, vllm_figures, args.new_tokens)
    figures["runs"] = [{k: v for k, v in r.items() if k != "outputs"} for r in runs]
    figures["vllm"] = vllm_figures
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
        print(f"figures written to {args.json}")
    return 0


def run_tiny(args, figures, device, dtype, store, qwen_folder, requests, warmup):
    plan = [("qwen2_audio", "qwen2-audio")] if "qwen2_audio" in args.wrappers else []
    if "hf_audio" in args.wrappers:
        plan += [("hf_audio", name) for name in args.hf_audio_models]
    sizes = f"hidden {args.hidden}, {args.layers} layers" if args.hidden else "the builders' sizes (hidden 32, 2 layers)"
    print(f"models: tests/builders.py's tiny random models at {sizes} (encoder and text model), vocabulary of the builders' "
          f"BPE (~440 tokens)")
    figures["models"], runs = {}, []
    for wrapper, name in plan:
        folder = qwen_folder if name == "qwen2-audio" else build_tiny(
            name, store / f"{name}-h{args.hidden}-l{args.layers}", args.hidden, args.layers, args.seed)
        lm = make_wrapper(wrapper, folder, args.device, dtype)
        label = TINY_MODELS[name][1]
        figures["models"][label] = count_parameters(lm.model)
        print(f"{label}: {figures['models'][label]['total'] / 1e6:.2f} M parameters "
              f"({type(lm.model).__name__}, attention {lm.model.config._attn_implementation})", flush=True)
        if args.dry_run:
            continue
        runs += run_wrapper(lm, label, wrapper, requests, warmup, args.batch_sizes, args.repeats)
        del lm
        gc.collect()
    return None if args.dry_run else runs


def run_7b(args, figures, device, dtype, qwen_folder, requests, warmup, tmp: Path):
    import torch
    from transformers import AutoProcessor

    tokenizer = AutoProcessor.from_pretrained(qwen_folder).tokenizer
    config = qwen2_audio_7b_config(tokenizer)
    torch_dtype = getattr(torch, dtype)
    label = "random Qwen2-Audio-7B shape"
    build_device = torch.device("meta") if args.dry_run else device
    start = time.perf_counter()
    model = build_random_7b(config, build_device, torch_dtype)
    counts = count_parameters(model)
    figures["models"] = {label: counts}
    gib = counts["total"] * torch.finfo(model.dtype).bits / 8 / 2**30
    parts = ", ".join(f"{k} {v / 1e6:.0f} M" for k, v in counts.items() if k != "total")
    print(f"{label}: {counts['total'] / 1e9:.3f} B parameters ({parts}); {gib:.1f} GiB in {str(model.dtype).replace('torch.', '')}; "
          f"built on {build_device} in {time.perf_counter() - start:.1f} s; vocab {config.text_config.vocab_size}; audio token id "
          f"{config.audio_token_index} (the tiny tokenizer's <|AUDIO|>; the checkpoint's is {QWEN2_AUDIO_7B['audio_token_index']})",
          flush=True)
    if args.dry_run:
        # The processor side of the GPU path: what every request turns into, counted without a model.
        lm = make_wrapper("qwen2_audio", qwen_folder, "cpu", "float32")
        lengths = []
        for request in requests:
            inputs = lm._processor_inputs([lm._render(request.args[0], 1, "dry run")], lm._clips(request))
            ids = inputs["input_ids"][0]
            lengths.append((len(ids), int((ids == config.audio_token_index).sum())))
        total, audio = np.mean(lengths, axis=0)
        figures["dry_run_prompt_tokens_mean"], figures["dry_run_audio_tokens_mean"] = float(total), float(audio)
        print(f"dry run: prompts would hold {total:.0f} tokens on average ({audio:.0f} audio); no model memory allocated, "
              f"nothing generated (vllm: {vllm_missing_reason() or 'importable'})")
        return None, None

    runs = []
    for wrapper in args.wrappers:
        # The wrapper loads the tiny checkpoint (its processor and tokenizer), then drives the 7B model instead.
        lm = make_wrapper(wrapper, qwen_folder, args.device, dtype)
        lm.model = model
        runs += run_wrapper(lm, label, wrapper, requests, warmup, args.batch_sizes, args.repeats)
    prompts = [(lm._render(r.args[0], 1, "vllm"), lm._clips(r)[0]) for r in requests]  # the wrapper's exact prompts
    del lm

    vllm_figures: dict = {"model": label}
    reason = "--no-vllm" if args.no_vllm else vllm_missing_reason()
    if reason:
        print(f"vLLM: skipped ({reason})")
        vllm_figures["skipped"] = reason
    else:
        print("vLLM: saving the random model for vllm.LLM ...", flush=True)
        folder = save_for_vllm(model, qwen_folder, tmp / "qwen2-audio-7b-random")
        del model
        gc.collect()
        torch.cuda.empty_cache()  # vLLM sizes its KV cache from the free memory
        try:
            vllm_figures.update(measure_vllm(folder, prompts, args.new_tokens, args))
        except Exception as exc:  # the HF figures above still stand; say why vLLM gave none
            print(f"vLLM: failed ({type(exc).__name__}: {exc})")
            vllm_figures["failed"] = f"{type(exc).__name__}: {exc}"
            return runs, vllm_figures
        base = next((r for r in runs if r["batch_size"] == 1 and r["wrapper"] == "qwen2_audio"), None)
        base = base or next((r for r in runs if r["batch_size"] == 1), None)
        vllm_figures["ratio_vs_hf_batch1"] = vllm_figures["samples_per_s"] / base["samples_per_s"] if base else None
        best = max(runs, key=lambda r: r["samples_per_s"])
        vllm_figures["ratio_vs_hf_best"] = vllm_figures["samples_per_s"] / best["samples_per_s"]
        print(f"vLLM {vllm_figures['vllm_version']}: {vllm_figures['samples_per_s']:.2f} samples/s; "
              f"{vllm_figures['ratio_vs_hf_best']:.2f}x the best HF run ({best['wrapper']} batch {best['batch_size']})")
    return runs, vllm_figures


if __name__ == "__main__":
    raise SystemExit(main())
