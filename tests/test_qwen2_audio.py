"""The qwen2_audio wrapper on a tiny random Qwen2-Audio built offline (tests/builders.py)."""

from __future__ import annotations

import logging

import lm_eval
import numpy as np
import pytest
from lm_eval.api.instance import Instance
from lm_eval.tasks import TaskManager

from lm_eval_speech.models.qwen2_audio import Qwen2AudioLM

from conftest import TASKS_DIR

GEN = {"until": [], "max_gen_toks": 6, "do_sample": False}


@pytest.fixture(scope="module")
def lm(tiny_qwen2_audio):
    # lm_eval passes device=cuda:0 unless told otherwise; here there is no GPU.
    return Qwen2AudioLM(pretrained=str(tiny_qwen2_audio), device="cuda:0", batch_size=1)


def clip(seconds: float, rate: int = 16000, frequency: float = 300.0) -> dict:
    t = np.arange(int(seconds * rate)) / rate
    return {"array": (0.3 * np.sin(2 * np.pi * frequency * t)).astype(np.float32), "sampling_rate": rate}


def request(context: str, clips: list[dict], doc_id: int = 0, gen: dict | None = None) -> Instance:
    return Instance(
        request_type="generate_until", doc={}, arguments=(context, dict(gen or GEN), {"audio": clips}),
        idx=0, metadata=("toy_task", doc_id, 1),
    )


def test_cuda_default_falls_back_to_cpu(lm):
    assert lm.device.type == "cpu"


def test_batching_keeps_each_answer_with_its_request(lm):
    requests = [request("<audio>Describe the sound.", [clip(0.4 + 0.5 * i, frequency=200 + 90 * i)], doc_id=i) for i in range(5)]
    one_by_one = [lm.generate_until([r])[0] for r in requests]
    lm.batch_size = 3
    try:
        batched = lm.generate_until(requests)
    finally:
        lm.batch_size = 1
    assert batched == one_by_one
    assert len(set(one_by_one)) > 1  # the clips differ, so must the answers of a working model


def test_audio_at_any_rate_and_channels_is_resampled(lm):
    mono_16k = clip(1.0, 16000)
    stereo_48k = {"array": np.repeat(clip(1.0, 48000)["array"][:, None], 2, axis=1), "sampling_rate": 48000}
    a, b = lm.generate_until([request("<audio>Hi", [mono_16k]), request("<audio>Hi", [stereo_48k])])
    assert a == b  # the same tone, once resampled and downmixed


def test_chat_template_path_matches_default_path(lm):
    rendered = lm.apply_chat_template([{"role": "user", "content": "<audio>Describe the sound."}])
    assert rendered.count("<|AUDIO|>") == 1 and "<audio>" not in rendered
    same_clip = clip(0.8)
    assert lm.generate_until([request(rendered, [same_clip])]) == lm.generate_until([request("<audio>Describe the sound.", [same_clip])])


def test_long_audio_is_truncated_with_a_warning_or_refused(tiny_qwen2_audio, lm, caplog):
    long_clip = clip(31.0)
    with caplog.at_level(logging.WARNING, logger="lm_eval_speech.models"):
        long_answer = lm.generate_until([request("<audio>Hi", [long_clip], doc_id=4)])
    assert "task toy_task doc 4: audio of 31.0 s truncated to the 30 s encoder window" in caplog.text
    cut = {"array": long_clip["array"][: 30 * 16000], "sampling_rate": 16000}
    assert long_answer == lm.generate_until([request("<audio>Hi", [cut])])
    strict = Qwen2AudioLM(pretrained=str(tiny_qwen2_audio), device="cpu", long_audio="error")
    with pytest.raises(ValueError, match="doc 4: audio of 31.0 s exceeds the 30 s encoder window"):
        strict.generate_until([request("<audio>Hi", [long_clip], doc_id=4)])


def test_placeholders_must_match_clips(lm):
    with pytest.raises(ValueError, match="task toy_task doc 2: the prompt has 2 <audio> placeholders but 1 audio clips"):
        lm.generate_until([request("<audio> and <audio>", [clip(0.5)], doc_id=2)])
    two = lm.generate_until([request("First <audio> then <audio>, compare.", [clip(0.5), clip(0.7, frequency=500)])])
    assert isinstance(two[0], str)


def test_requests_without_audio_are_refused(lm):
    with pytest.raises(ValueError, match="doc 3 carries no audio"):
        lm.generate_until([request("<audio>Hi", [], doc_id=3)])


def test_loglikelihood_is_refused_naming_the_task(lm):
    with pytest.raises(NotImplementedError, match="cannot serve loglikelihood requests \\(tasks: toy_task\\)"):
        lm.loglikelihood([request("x", [clip(0.2)])])


def test_stop_strings_cut_the_answer(lm):
    [free] = lm.generate_until([request("<audio>Hi", [clip(0.6)], gen={**GEN, "max_gen_toks": 12})])
    assert len(free) > 2
    stop = free[1:3]
    [cut] = lm.generate_until([request("<audio>Hi", [clip(0.6)], gen={**GEN, "max_gen_toks": 12, "until": [stop]})])
    assert cut == free.split(stop)[0]


def test_sib_tasks_run_end_to_end(tiny_qwen2_audio, sib_data):
    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata={"data_dir": str(sib_data)})
    results = lm_eval.simple_evaluate(
        model="qwen2_audio", model_args={"pretrained": str(tiny_qwen2_audio), "batch_size": 4},
        tasks=["speechinstruct_close_zh"], task_manager=manager, gen_kwargs={"max_gen_toks": 6}, bootstrap_iters=0,
        log_samples=True,
    )
    assert "speechinstruct_close_zh" in results["results"]
    for variant in ("standard", "background", "accent", "paralinguistics", "disfluency"):
        task = f"speechinstruct_close_zh_{variant}"
        assert 0.0 <= results["results"][task]["prompt_level_acc,sib"] <= 1.0
        assert len(results["samples"][task]) == 4
    assert results["config"]["model_num_parameters"] > 0
