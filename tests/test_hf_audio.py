"""The generic hf_audio wrapper on tiny random AudioFlamingo3, GLM-ASR and Qwen2-Audio builds (tests/builders.py)."""

from __future__ import annotations

import lm_eval
import numpy as np
import pytest
from lm_eval.api.instance import Instance
from lm_eval.tasks import TaskManager

from lm_eval_speech.models.hf_audio import HFAudioLM
from lm_eval_speech.models.qwen2_audio import Qwen2AudioLM

from conftest import TASKS_DIR

GEN = {"until": [], "max_gen_toks": 4, "do_sample": False}
ARCHITECTURES = {
    "audioflamingo3": ("AudioFlamingo3ForConditionalGeneration", "<sound>"),
    "glmasr": ("GlmAsrForConditionalGeneration", "<|pad|>"),
}


@pytest.fixture(scope="module", params=sorted(ARCHITECTURES))
def tiny(request, tmp_path_factory):
    import builders

    name = request.param
    return name, getattr(builders, f"build_tiny_{name}")(tmp_path_factory.mktemp(f"tiny-{name}"))


def clip(seconds: float, rate: int = 16000, frequency: float = 300.0) -> dict:
    t = np.arange(int(seconds * rate)) / rate
    return {"array": (0.3 * np.sin(2 * np.pi * frequency * t)).astype(np.float32), "sampling_rate": rate}


def request(context: str, clips: list[dict], doc_id: int = 0) -> Instance:
    return Instance(
        request_type="generate_until", doc={}, arguments=(context, dict(GEN), {"audio": clips}),
        idx=0, metadata=("toy_task", doc_id, 1),
    )


def toy_requests(n: int = 4) -> list[Instance]:
    prompts = ["<audio>Describe the sound.", "What is this? <audio>", "<audio>Write a poem about the sea.", "今天天气很好。<audio>"]
    return [request(prompts[i % 4], [clip(0.4 + 0.6 * i, frequency=200 + 90 * i)], doc_id=i) for i in range(n)]


def test_loads_through_auto_classes_with_its_own_template(tiny):
    name, path = tiny
    lm = HFAudioLM(pretrained=str(path), device="cuda:0")  # no GPU here: falls back to CPU
    model_class, audio_token = ARCHITECTURES[name]
    assert type(lm.model).__name__ == model_class and lm.device.type == "cpu"
    assert lm.audio_kwarg == "audio" and lm.sampling_rate == 16000
    rendered = lm.apply_chat_template([{"role": "user", "content": "<audio>Describe the sound."}])
    assert rendered.count(audio_token) == 1 and "<audio>" not in rendered
    same = clip(0.8)
    assert lm.generate_until([request(rendered, [same])]) == lm.generate_until([request("<audio>Describe the sound.", [same])])
    assert lm.get_model_info()["model_class"] == model_class


def test_batched_equals_unbatched(tiny):
    _, path = tiny
    lm = HFAudioLM(pretrained=str(path), device="cpu", batch_size=1)
    requests = toy_requests()
    one_by_one = [lm.generate_until([r])[0] for r in requests]
    lm.batch_size = 2
    assert lm.generate_until(requests) == one_by_one


def test_sib_end_to_end(tiny, sib_data):
    _, path = tiny
    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata={"data_dir": str(sib_data)})
    task = "speechinstruct_close_en_standard"
    results = lm_eval.simple_evaluate(
        model="hf_audio", model_args={"pretrained": str(path), "batch_size": 2}, tasks=[task], task_manager=manager,
        gen_kwargs={"max_gen_toks": 4}, bootstrap_iters=0, log_samples=True,
    )
    assert 0.0 <= results["results"][task]["prompt_level_acc,sib"] <= 1.0
    assert results["results"][task]["failed_items,sib"] == 0
    assert len(results["samples"][task]) == 4


def test_hf_audio_matches_qwen2_audio(tiny_qwen2_audio):
    generic = HFAudioLM(pretrained=str(tiny_qwen2_audio), device="cpu", batch_size=2)
    special = Qwen2AudioLM(pretrained=str(tiny_qwen2_audio), device="cpu", batch_size=2)
    assert type(generic.model) is type(special.model)
    requests = toy_requests(5) + [request("First <audio> then <audio>, compare.", [clip(0.5), clip(0.7, frequency=500)], 9)]
    assert generic.generate_until(requests) == special.generate_until(requests)


def test_model_class_and_trust_remote_code(tiny_qwen2_audio, monkeypatch):
    import transformers

    seen = []
    original = transformers.AutoProcessor.from_pretrained.__func__

    def spy(cls, *args, **kwargs):
        seen.append(kwargs.get("trust_remote_code"))
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(transformers.AutoProcessor, "from_pretrained", classmethod(spy))
    lm = HFAudioLM(pretrained=str(tiny_qwen2_audio), device="cpu", model_class="Qwen2AudioForConditionalGeneration")
    assert type(lm.model).__name__ == "Qwen2AudioForConditionalGeneration" and seen == [False]
    with pytest.raises(ValueError, match="model_class 'NoSuchModel' is not a transformers class"):
        HFAudioLM(pretrained=str(tiny_qwen2_audio), device="cpu", model_class="NoSuchModel")
