"""What the Qwen-Omni test files share: toy audio requests and a stock ``lm_eval`` run on S2S-Arena."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from lm_eval.api.instance import Instance

from conftest import SHARED

GEN = {"until": [], "max_gen_toks": 6, "do_sample": False}
SPEAK = {**GEN, "speech_output": True}
# A random talker rarely emits its end code: the cap keeps each answer short.
TALKER = {"talker_max_new_tokens": 16, "talker_do_sample": False}
ARENA_SAMPLES = SHARED / "data" / "s2s-arena-samples"


def clip(seconds: float, rate: int = 16000, frequency: float = 300.0) -> dict:
    t = np.arange(int(seconds * rate)) / rate
    return {"array": (0.3 * np.sin(2 * np.pi * frequency * t)).astype(np.float32), "sampling_rate": rate}


def request(context: str, clips: list[dict], doc_id: int = 0, gen: dict = GEN) -> Instance:
    return Instance(
        request_type="generate_until", doc={}, arguments=(context, dict(gen), {"audio": clips}),
        idx=0, metadata=("toy_task", doc_id, 1),
    )


def toy_requests(gen: dict = GEN, n: int = 3) -> list[Instance]:
    prompts = ["<audio>Describe the sound.", "What is this? <audio>", "<audio>Write a poem about the sea."]
    return [request(prompts[i % 3], [clip(0.4 + 0.5 * i, rate=16000 if i % 2 else 22050, frequency=200 + 90 * i)], i, gen)
            for i in range(n)]


def stock_lm_eval_on_arena(model: str, tiny: Path, tmp_path: Path) -> tuple[dict, list[dict]]:
    """``lm_eval --model <model>`` on two tongue twisters at batch 2: the task's results and its samples."""
    model_args = f"pretrained={tiny},talker_max_new_tokens=16,talker_do_sample=false"
    metadata = json.dumps({"data_dir": str(ARENA_SAMPLES), "arena_tasks": ["tongue_twister"]})
    done = subprocess.run(
        [str(Path(sys.executable).parent / "lm_eval"), "--tasks", "s2s_arena_entertainment", "--model", model,
         "--model_args", model_args, "--device", "cpu", "--batch_size", "2", "--limit", "2", "--gen_kwargs", "max_gen_toks=6",
         "--metadata", metadata, "--output_path", str(tmp_path / "run"), "--log_samples"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    [results_path] = (tmp_path / "run").rglob("results_*.json")
    [samples_path] = (tmp_path / "run").rglob("samples_s2s_arena_entertainment_*.jsonl")
    results = json.loads(results_path.read_text())["results"]["s2s_arena_entertainment"]
    return results, [json.loads(line) for line in samples_path.read_text().splitlines()]
