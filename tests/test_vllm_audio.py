"""The vllm_audio backend: its import guard for real, and its request path against a fake ``vllm``.

The real engine needs a CUDA GPU on Linux (and vLLM is not installed here), so a minimal fake
``vllm`` package, written into a temporary folder per test, stands in for it: ``LLM`` records its
engine arguments and the prompts and ``SamplingParams`` it is given, and answers with the number of
audio samples it received. The prompt side is real: the tiny Qwen2-Audio processor and chat
template of tests/builders.py.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

import numpy as np
import pytest
from lm_eval.api.instance import Instance
from lm_eval.api.registry import get_model

from lm_eval_speech.models._base import request_where
from lm_eval_speech.models.hf_audio import HFAudioLM
from lm_eval_speech.models.vllm_audio import VLLMAudioLM, rank_gpu
from lm_eval_speech.options import OptionError

GREEDY = {"until": ["<END>"], "max_gen_toks": 7, "do_sample": False}

FAKE_VLLM = '''
"""A stand-in for vLLM's offline API (LLM, SamplingParams) that records what it is given."""

__version__ = "0.0.fake"
ENGINES = []  # the keyword arguments of every LLM built
CALLS = []  # (prompts, sampling_params, use_tqdm) of every generate call


class SamplingParams:
    def __init__(self, **kwargs):
        self.kwargs = kwargs


class CompletionOutput:
    def __init__(self, text):
        self.text = text


class RequestOutput:
    def __init__(self, text):
        self.outputs = [CompletionOutput(text)]


class LLM:
    def __init__(self, **kwargs):
        ENGINES.append(kwargs)

    def generate(self, prompts, sampling_params=None, use_tqdm=True):
        CALLS.append((prompts, sampling_params, use_tqdm))
        # the answer names the request's own audio, so an answer given to the wrong request shows
        return [RequestOutput(f"{sum(len(a) for a, _ in p['multi_modal_data']['audio'])} samples<END> and more") for p in prompts]
'''


@pytest.fixture
def fake_vllm(tmp_path, monkeypatch):
    package = tmp_path / "fake_site" / "vllm"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(FAKE_VLLM)
    monkeypatch.syspath_prepend(str(package.parent))
    monkeypatch.delitem(sys.modules, "vllm", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)  # one process: no data parallel
    yield importlib.import_module("vllm")
    sys.modules.pop("vllm", None)


@pytest.fixture
def lm(fake_vllm, tiny_qwen2_audio):
    # As lm_eval builds it from the command line: string model_args plus its own extras.
    return get_model("vllm_audio").create_from_arg_string(
        f"pretrained={tiny_qwen2_audio},tensor_parallel_size=2,limit_mm_per_prompt=2,max_model_len=4096",
        {"batch_size": "auto", "device": "cuda:0"},
    )


@pytest.fixture(scope="module")
def hf_lm(tiny_qwen2_audio):
    return HFAudioLM(pretrained=str(tiny_qwen2_audio), device="cpu")


def clip(seconds: float, rate: int = 16000, frequency: float = 300.0) -> dict:
    t = np.arange(int(seconds * rate)) / rate
    return {"array": (0.3 * np.sin(2 * np.pi * frequency * t)).astype(np.float32), "sampling_rate": rate}


def request(context: str, clips: list[dict] | None, doc_id: int = 0, gen: dict | None = None) -> Instance:
    extra = {"audio": clips} if clips is not None else {}
    return Instance(
        request_type="generate_until", doc={}, arguments=(context, dict(gen or GREEDY), extra),
        idx=0, metadata=("toy_task", doc_id, 1),
    )


# -- without vLLM ------------------------------------------------------------------------------


def test_registered_without_vllm_and_construction_names_the_extra(monkeypatch, tiny_qwen2_audio):
    if importlib.util.find_spec("vllm") is not None:  # where vLLM is installed, hide it
        monkeypatch.setitem(sys.modules, "vllm", None)
    cls = get_model("vllm_audio")
    assert cls is VLLMAudioLM and sys.modules.get("vllm") is None  # the module loaded without vLLM
    with pytest.raises(ImportError, match=r'pip install "lm-eval-speech\[vllm\]".*CUDA GPU'):
        cls.create_from_arg_string(f"pretrained={tiny_qwen2_audio}")


# -- the request path, on the fake ---------------------------------------------------------------


def test_engine_gets_the_model_args(lm, fake_vllm, tiny_qwen2_audio):
    engine = fake_vllm.ENGINES[-1]
    assert engine["model"] == str(tiny_qwen2_audio)
    assert engine["tensor_parallel_size"] == 2 and engine["limit_mm_per_prompt"] == {"audio": 2}
    assert engine["max_model_len"] == 4096 and engine["dtype"] == "auto" and engine["seed"] == 0
    assert engine["trust_remote_code"] is False and engine["gpu_memory_utilization"] == 0.9
    assert "max_num_seqs" not in engine and "revision" not in engine  # vLLM's own defaults
    assert lm.sampling_rate == 16000 and lm.rank == 0 and lm.world_size == 1
    info = lm.get_model_info()
    assert (info["model"], info["tensor_parallel_size"], info["vllm_version"]) == (str(tiny_qwen2_audio), 2, "0.0.fake")


def test_prompts_are_hf_audios_and_audio_is_resampled(lm, fake_vllm, hf_lm):
    requests = [
        request("<audio>Describe the sound.", [clip(0.5, rate=8000)], doc_id=0),
        request("First <audio> then <audio>, compare.", [clip(0.25), clip(0.5, rate=48000)], doc_id=1),
    ]
    lm.generate_until(requests)
    (prompts, _, _), = fake_vllm.CALLS
    expected = [hf_lm._render(r.args[0], len(r.args[2]["audio"]), request_where(r)) for r in requests]
    audio_by_prompt = {p["prompt"]: p["multi_modal_data"]["audio"] for p in prompts}
    assert sorted(audio_by_prompt) == sorted(expected)
    assert [e.count("<|AUDIO|>") for e in expected] == [1, 2]
    lengths = [[(len(array), rate) for array, rate in audio_by_prompt[e]] for e in expected]
    assert lengths == [[(8000, 16000)], [(4000, 16000), (8000, 16000)]]  # 8 kHz and 48 kHz clips at the processor's 16 kHz
    assert all(a.dtype == np.float32 for p in prompts for a, _ in p["multi_modal_data"]["audio"])

    # a prompt rendered by --apply_chat_template goes to the engine as it is
    rendered = lm.apply_chat_template([{"role": "user", "content": "<audio>Describe the sound."}])
    lm.generate_until([request(rendered, [clip(0.5)])])
    assert fake_vllm.CALLS[-1][0][0]["prompt"] == rendered == hf_lm.apply_chat_template(
        [{"role": "user", "content": "<audio>Describe the sound."}]
    )


def test_answers_come_back_in_request_order_cut_at_stop_strings(lm, fake_vllm):
    seconds = [0.1, 0.6, 0.3, 0.9, 0.2]  # the Collator sorts them longest first
    results = lm.generate_until([request("<audio>Hi", [clip(s)], doc_id=i) for i, s in enumerate(seconds)])
    assert results == [f"{int(s * 16000)} samples" for s in seconds]
    assert len(fake_vllm.CALLS) == 1 and len(fake_vllm.CALLS[0][0]) == 5  # one generate call for the whole group


def test_sampling_params_from_gen_kwargs(lm, fake_vllm):
    sampled = {"until": "\n\n", "max_gen_toks": 5, "do_sample": True, "temperature": 0.7, "top_p": 0.9, "seed": 3}
    defaults = {"do_sample": False}  # no until, no max_gen_toks
    requests = [
        request("<audio>A", [clip(0.2)], 0),
        request("<audio>B", [clip(0.3)], 1, gen=sampled),
        request("<audio>C", [clip(0.4)], 2, gen=defaults),
    ]
    results = lm.generate_until(requests, disable_tqdm=True)
    assert len(fake_vllm.CALLS) == 3 and not any(use_tqdm for _, _, use_tqdm in fake_vllm.CALLS)
    by_temperature = sorted((sampling.kwargs for _, sampling, _ in fake_vllm.CALLS), key=lambda p: (p["temperature"], p["max_tokens"]))
    assert by_temperature == [
        {"n": 1, "max_tokens": 7, "temperature": 0.0, "stop": ["<END>"]},
        {"n": 1, "max_tokens": 256, "temperature": 0.0},  # no stop strings: none sent
        {"n": 1, "max_tokens": 5, "temperature": 0.7, "stop": ["\n\n"], "top_p": 0.9, "seed": 3},
    ]
    # only the greedy request with <END> among its stop strings is cut there; the others keep the whole text
    assert results == ["3200 samples", "4800 samples<END> and more", "6400 samples<END> and more"]

    lm.generate_until([request("<audio>A", [clip(0.2)])])
    assert fake_vllm.CALLS[-1][2] is True  # vLLM's progress bar on rank 0

    # a gen_kwarg no backend translation knows is refused, naming the ones accepted, before generating
    calls = len(fake_vllm.CALLS)
    with pytest.raises(OptionError, match=r"task toy_task doc 1 gen_kwargs: unknown num_beams; accepted: .*max_gen_toks.*top_p"):
        lm.generate_until([request("<audio>B", [clip(0.3)], 1, gen={**sampled, "num_beams": 2})])
    assert len(fake_vllm.CALLS) == calls


def test_too_many_clips_names_the_doc_and_the_fix(lm, fake_vllm):
    requests = [request("<audio>ok", [clip(0.2)], 0), request("<audio><audio><audio>three", [clip(0.2)] * 3, 5)]
    with pytest.raises(ValueError, match=r"task toy_task doc 5 carries 3 audio clips .* limit_mm_per_prompt=3"):
        lm.generate_until(requests)
    assert fake_vllm.CALLS == []  # checked before anything is generated


def test_request_without_audio_names_task_and_doc(lm, fake_vllm):
    with pytest.raises(ValueError, match=r"task toy_task doc 3 carries no audio"):
        lm.generate_until([request("<audio>ok", [clip(0.2)], 0), request("no audio", None, 3)])
    with pytest.raises(NotImplementedError, match="VLLMAudioLM generates text only"):
        lm.loglikelihood([request("x", [clip(0.2)])])


def test_model_args_are_checked(fake_vllm, tiny_qwen2_audio, monkeypatch):
    with pytest.raises(OptionError, match="vllm_audio model_args: unknown max_num_batched_tokenz; accepted: .*max_num_seqs.*pretrained"):
        VLLMAudioLM(pretrained=str(tiny_qwen2_audio), max_num_batched_tokenz=8)
    with pytest.raises(ValueError, match="give pretrained"):
        VLLMAudioLM()
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="tensor_parallel_size=2 does not combine with data parallel"):
        VLLMAudioLM(pretrained=str(tiny_qwen2_audio), tensor_parallel_size=2)
    assert fake_vllm.ENGINES == []


def test_each_data_parallel_rank_gets_its_own_gpu():
    assert rank_gpu({}) is None and rank_gpu({"WORLD_SIZE": "1", "LOCAL_RANK": "0"}) is None
    assert rank_gpu({"WORLD_SIZE": "4", "LOCAL_RANK": "2"}) == "2"
    assert rank_gpu({"WORLD_SIZE": "2", "LOCAL_RANK": "1", "CUDA_VISIBLE_DEVICES": "4, 6"}) == "6"
    with pytest.raises(ValueError, match="LOCAL_RANK=2 has no GPU of its own"):
        rank_gpu({"WORLD_SIZE": "3", "LOCAL_RANK": "2", "CUDA_VISIBLE_DEVICES": "0,1"})
