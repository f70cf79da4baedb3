"""The ``openai_audio`` model against a real local OpenAI-protocol server (tests/fake_openai.py).

No mocks: requests go through the judge layer and the OpenAI SDK over HTTP to ``FakeOpenAI``,
whose records hold each request body and its headers.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
import types

import lm_eval
import numpy as np
import pytest
import soundfile as sf
from lm_eval.api.instance import Instance
from lm_eval.tasks import TaskManager

import lm_eval_speech.models.openai_audio  # noqa: F401  (registers "openai_audio" without reinstalling)
from lm_eval_speech.speech.audio import resample
from lm_eval_speech.calls import CallConfigError, EndpointUnavailable
from lm_eval_speech.models.openai_audio import OpenAIAudioLM
from lm_eval_speech.options import OptionError
from lm_eval_speech.outcomes import FailedGeneration
from lm_eval_speech.speech.output import speech_of

from builders import tone
from conftest import TASKS_DIR
from fake_openai import FakeOpenAI, fault_always, last_user_text

CLOSED_EN = "speechinstruct_close_en_standard"
GREEDY = {"until": [], "do_sample": False, "temperature": 0.0, "max_gen_toks": 64}


@pytest.fixture(autouse=True)
def no_ambient_openai(monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "LM_EVAL_SPEECH_JUDGE_CACHE"):
        monkeypatch.delenv(name, raising=False)


def clip(seconds=0.5, rate=22050, frequency=440.0):
    return {"array": tone(seconds, rate, frequency), "sampling_rate": rate}


def request(context: str, clips: list, gen_kwargs=None, doc_id=0) -> Instance:
    return Instance("generate_until", {}, (context, dict(gen_kwargs or GREEDY), {"audio": clips}), idx=0,
                    metadata=("fake_task", doc_id, 1))


def model(server: FakeOpenAI, tmp_path, **args) -> OpenAIAudioLM:
    return OpenAIAudioLM(base_url=server.base_url, cache=str(tmp_path / "cache.sqlite"), **args)


def decode(part: dict) -> tuple[np.ndarray, int]:
    assert part["type"] == "input_audio" and part["input_audio"]["format"] == "wav"
    data, rate = sf.read(io.BytesIO(base64.b64decode(part["input_audio"]["data"])), dtype="float32")
    info = sf.info(io.BytesIO(base64.b64decode(part["input_audio"]["data"])))
    assert (info.format, info.subtype, info.channels) == ("WAV", "PCM_16", 1)
    return data, rate


def test_body_holds_text_and_audio_parts_in_prompt_order(tmp_path):
    first, second = clip(0.5, 22050, 300.0), clip(0.3, 44100, 500.0)
    with FakeOpenAI(responder=lambda body, i: "answer") as server:
        lm = model(server, tmp_path, system_prompt="Be brief.", model="gpt-4o-mini-audio-preview")
        [out] = lm.generate_until([request("Compare <audio> with <audio> please.", [first, second])])
        [record] = server.requests
    assert out == "answer"
    body = record["body"]
    assert body["model"] == "gpt-4o-mini-audio-preview" and body["modalities"] == ["text"]
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    parts = body["messages"][1]["content"]
    assert [p["type"] for p in parts] == ["text", "input_audio", "text", "input_audio", "text"]
    assert [p["text"] for p in parts if p["type"] == "text"] == ["Compare ", " with ", " please."]
    for part, source in zip([parts[1], parts[3]], [first, second]):
        data, rate = decode(part)
        expected = resample(source["array"], source["sampling_rate"], 16000)
        assert rate == 16000 and len(data) == len(expected)
        assert np.max(np.abs(data - expected)) < 1e-3  # 16-bit quantisation


def test_sampling_rate_is_configurable_and_clips_come_first_without_placeholders(tmp_path):
    with FakeOpenAI() as server:
        model(server, tmp_path, sampling_rate=24000).generate_until([request("What is said?", [clip(0.5, 16000)])])
        parts = server.requests[0]["body"]["messages"][0]["content"]
    assert [p["type"] for p in parts] == ["input_audio", "text"]
    data, rate = decode(parts[0])
    assert rate == 24000 and len(data) == 12000


def test_gen_kwargs_map_to_sampling_and_stop_strings_cut(tmp_path):
    sampled = {"until": ["A", "B", "C", "D", "STOP"], "do_sample": True, "temperature": 0.7, "top_p": 0.9, "max_gen_toks": 33}
    with FakeOpenAI(responder=lambda body, i: "one two STOP three" if "sampled" in last_user_text(body) else "x\n\ny") as server:
        lm = model(server, tmp_path)
        outs = lm.generate_until([
            request("<audio>sampled", [clip()], sampled),
            request("<audio>greedy", [clip()], {"until": ["\n\n"], "do_sample": False, "temperature": 0.5}),
        ])
        bodies = {last_user_text(r["body"]): r["body"] for r in server.requests}
    assert outs == ["one two ", "x"]  # the fifth stop string is not sent but still cuts
    assert {k: bodies["sampled"][k] for k in ("max_tokens", "temperature", "top_p", "stop")} == {
        "max_tokens": 33, "temperature": 0.7, "top_p": 0.9, "stop": ["A", "B", "C", "D"]}
    greedy = bodies["greedy"]
    assert (greedy["temperature"], greedy["stop"], greedy["max_tokens"], "top_p" in greedy) == (0.0, ["\n\n"], 256, False)


def test_concurrent_calls_and_a_rerun_from_the_cache_makes_none(tmp_path):
    requests = [request(f"<audio>item {i}", [clip(0.2, 16000, 200.0 + 10 * i)], doc_id=i) for i in range(24)]
    with FakeOpenAI(responder=lambda body, i: "re: " + last_user_text(body), latency=0.1) as server:
        outs = model(server, tmp_path, max_concurrency=8).generate_until(requests)
        assert outs == [f"re: item {i}" for i in range(24)]
        assert server.calls == 24 and server.max_in_flight > 1
        server.reset_counters()
        again = model(server, tmp_path, max_concurrency=8).generate_until(requests)
        assert again == outs and server.calls == 0


def test_identical_greedy_requests_share_one_call_and_sampled_repeats_get_their_own(tmp_path):
    counter = iter(range(100))
    lock = threading.Lock()

    def responder(body, i):
        with lock:
            return f"sample {next(counter)}"

    same = [clip()]
    sampled = {"until": [], "do_sample": True, "temperature": 1.0}
    with FakeOpenAI(responder=responder) as server:
        lm = model(server, tmp_path)
        greedy = lm.generate_until([request("<audio>q", same), request("<audio>q", same)])
        assert server.calls == 1 and greedy[0] == greedy[1]
        repeats = lm.generate_until([request("<audio>q", same, sampled), request("<audio>q", same, sampled)])
        assert server.calls == 3 and repeats[0] != repeats[1]


def test_a_failed_call_is_a_failed_generation(tmp_path):
    with FakeOpenAI(faults=fault_always("500")) as server:
        [out] = model(server, tmp_path, max_retries=0).generate_until([request("<audio>q", [clip()])])
    assert isinstance(out, FailedGeneration) and "500" in out.reason and server.calls == 1


def test_each_spoken_answer_reports_its_own_calls_latency(tmp_path):
    def responder(body, index):
        if "slow" in last_user_text(body):
            time.sleep(0.6)
        return "three spoken words"

    spoken = {**GREEDY, "speech_output": True}
    with FakeOpenAI(responder=responder) as server:
        lm = model(server, tmp_path, speech_dir=str(tmp_path / "speech"))
        slow, fast = lm.generate_until([request("<audio>slow", [clip()], spoken, doc_id=0),
                                        request("<audio>fast", [clip()], spoken, doc_id=1)])
    slow_latency, fast_latency = speech_of(slow)["latency"], speech_of(fast)["latency"]
    # the two calls ran at once: the batch's wall time would give both the slow one's
    assert slow_latency["total_s"] >= 0.6 > fast_latency["total_s"]
    assert (fast_latency["streamed"], fast_latency["first_audio_at_end"], fast_latency["first_text_s"]) == (False, True, None)
    assert fast_latency["first_audio_s"] == fast_latency["total_s"]


def test_loglikelihood_is_refused_naming_the_task(tmp_path):
    lm = OpenAIAudioLM(base_url="http://127.0.0.1:9/v1", cache=False, preflight=False)
    with pytest.raises(NotImplementedError, match="fake_task"):
        lm.loglikelihood([Instance("loglikelihood", {}, ("a", "b"), idx=0, metadata=("fake_task", 0, 1))])


@pytest.mark.parametrize("name", ["api_key", "openai_api_key", "token", "Authorization"])
def test_a_key_as_model_arg_is_refused(name):
    with pytest.raises(CallConfigError, match="environment variable"):
        OpenAIAudioLM.create_from_arg_string(f"model=gpt-4o-audio-preview,{name}=sk-secret", {"batch_size": 1})


def test_unknown_model_args_are_refused_listing_the_accepted():
    # the old name is refused too: a renamed arg must not be silently ignored
    for name in ("sample_rte", "sample_rate", "concurrency"):
        with pytest.raises(OptionError, match=rf"unknown {name}; accepted: .*max_concurrency.*sampling_rate"):
            OpenAIAudioLM(**{name: 8000}, cache=False)


def test_a_closed_port_stops_construction_unless_preflight_is_off(tmp_path):
    with FakeOpenAI() as server:
        closed = server.base_url
    with pytest.raises(EndpointUnavailable, match="connection refused"):
        model(types.SimpleNamespace(base_url=closed), tmp_path)
    model(types.SimpleNamespace(base_url=closed), tmp_path, preflight="false")  # no request made


def evaluate(server, data_dir, cache, **args):
    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata={"data_dir": str(data_dir)})
    return lm_eval.simple_evaluate(
        model="openai_audio", model_args={"base_url": server.base_url, "cache": str(cache), **args}, tasks=[CLOSED_EN],
        task_manager=manager, bootstrap_iters=0, log_samples=True,
    )


def test_lm_eval_counts_failed_calls_and_the_key_stays_out_of_results(sib_data, tmp_path, monkeypatch):
    monkeypatch.setenv("MY_AUDIO_KEY", "sk-test-audio-key-123")
    fail_doc_1 = fault_always("500")

    def faults(body, attempt):
        return fail_doc_1(body, attempt) if _is_doc(body, 1) else None

    with FakeOpenAI(responder=lambda body, i: "<<The Sea>>\nOnce upon a time.", faults=faults) as server:
        results = evaluate(server, sib_data, tmp_path / "c.sqlite", api_key_env="MY_AUDIO_KEY", max_retries=0)
        auth = {r["headers"].get("authorization") for r in server.requests}
    scores = {k.split(",")[0]: v for k, v in results["results"][CLOSED_EN].items()}
    # fixture keys 1-4: no_comma (its call fails) | 3 sentences + "river" | title | 3 bullets + end phrase
    assert scores["failed_items"] == 1
    assert scores["prompt_level_strict_acc"] == pytest.approx(1 / 3)  # of the three scored, only the title doc passes
    failed = [s for s in results["samples"][CLOSED_EN] if s["doc"]["key"] == 1]
    assert failed and all(s["failed_items"] == 1 for s in failed)
    assert auth == {"Bearer sk-test-audio-key-123"}
    assert "sk-test-audio-key-123" not in json.dumps(results, default=str)
    assert results["config"]["openai_audio"]["api_key_env"] == "MY_AUDIO_KEY"
    accounting = results["config"]["openai_audio"]["accounting"]
    assert (accounting["calls"], accounting["http_requests"], accounting["failures"]["5xx"]) == (3, 4, 1)


def _is_doc(body: dict, key: int) -> bool:
    """The SIB fixture clips differ in length (0.6 + 0.3 * key seconds): pick a doc by its audio."""
    part = next(p for p in body["messages"][-1]["content"] if p["type"] == "input_audio")
    frames = sf.info(io.BytesIO(base64.b64decode(part["input_audio"]["data"]))).frames
    return abs(frames - (0.6 + 0.3 * key) * 16000) < 2


def test_a_key_echoed_in_an_error_is_redacted(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-echoed-key-456")
    with FakeOpenAI(faults=fault_always("401")) as server:
        [out] = model(server, tmp_path, max_retries=0).generate_until([request("<audio>q", [clip()])])
        assert server.requests[0]["headers"]["authorization"] == "Bearer sk-echoed-key-456"
    assert isinstance(out, FailedGeneration) and "401" in out.reason and "sk-echoed-key-456" not in out.reason
