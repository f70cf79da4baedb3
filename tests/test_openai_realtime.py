"""The ``openai_realtime`` model against a real local WebSocket server speaking the Realtime protocol (tests/fake_realtime.py).

No mocks: requests go through the model-call layer and the openai SDK's realtime client over a
WebSocket to ``FakeRealtime``, whose records hold every event each client sent.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from lm_eval.api.instance import Instance

from lm_eval_speech.calls import CallConfigError, EndpointUnavailable
from lm_eval_speech.models.openai_realtime import OpenAIRealtimeLM
from lm_eval_speech.options import OptionError
from lm_eval_speech.outcomes import FailedGeneration
from lm_eval_speech.speech.audio import resample
from lm_eval_speech.speech.output import speech_of
from lm_eval_speech.tasks.s2s_arena import taxonomy

from builders import tone
from fake_realtime import RATE, SECONDS_PER_WORD, FakeRealtime

GREEDY = {"until": [], "do_sample": False, "temperature": 0.0, "max_gen_toks": 64}
SPOKEN = {**GREEDY, "speech_output": True}
KEY = "sk-realtime-test-key-789"
SAMPLES = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "s2s-arena-samples"


@pytest.fixture(autouse=True)
def no_ambient_openai(monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "LM_EVAL_SPEECH_JUDGE_CACHE"):
        monkeypatch.delenv(name, raising=False)


def clip(seconds=0.5, rate=16000, frequency=440.0):
    return {"array": tone(seconds, rate, frequency), "sampling_rate": rate}


def request(context: str, clips: list, gen_kwargs=None, doc_id=0) -> Instance:
    return Instance("generate_until", {}, (context, dict(gen_kwargs or SPOKEN), {"audio": clips}), idx=0,
                    metadata=("fake_task", doc_id, 1))


def model(server: FakeRealtime, tmp_path, **args) -> OpenAIRealtimeLM:
    args.setdefault("cache", str(tmp_path / "cache.sqlite"))
    return OpenAIRealtimeLM(base_url=server.base_url, speech_dir=str(tmp_path / "speech"), **args)


def heard_pcm(session: dict) -> np.ndarray:
    [item] = [i for i in session["items"] if i["content"][0]["type"] == "input_audio"]
    return np.frombuffer(item["content"][0]["pcm"], dtype="<i2").astype(np.float32) / 32767


@pytest.mark.parametrize("names", ["ga", "beta"])
def test_spoken_answers_carry_their_audio_transcript_and_streamed_latency(tmp_path, names):
    sources = [clip(0.5, 16000, 300.0), clip(1.3, 44100, 500.0)]
    with FakeRealtime(names=names, first_delay=0.3) as server:
        lm = model(server, tmp_path, voice="verse", system_prompt="Answer briefly.")
        outs = lm.generate_until([request("<audio> then text", [sources[0]], doc_id=0),
                                  request("<audio>", [sources[1]], doc_id=1)])
        sessions = sorted(server.sessions, key=lambda s: len(heard_pcm(s)))
        assert server.connections == 2 and server.max_open == 2  # concurrent, one connection per request
    assert [str(o) for o in outs] == ["I heard 0.50 seconds  then text", "I heard 1.30 seconds"]
    for out, session, source in zip(outs, sessions, sources):
        record = speech_of(out)
        data, rate = sf.read(record["path"])
        assert rate == record["sampling_rate"] == RATE
        assert len(data) / rate == pytest.approx(SECONDS_PER_WORD * len(str(out).split()), abs=1e-3)
        latency = record["latency"]
        assert latency["streamed"] is True and latency["first_audio_at_end"] is False
        assert 0.3 < latency["first_text_s"] <= latency["total_s"] and 0.3 < latency["first_audio_s"] <= latency["total_s"]
        assert latency["rtf"] == pytest.approx(latency["total_s"] / record["duration"], rel=1e-2)
        # what the server heard: the clip as 24 kHz PCM16, sent in chunks of at most a second, then committed
        expected = resample(source["array"], source["sampling_rate"], RATE)
        pcm = heard_pcm(session)
        assert len(pcm) == len(expected) and np.max(np.abs(pcm - expected)) < 1e-3
        assert max(session["appends"]) <= 2 * RATE and sum(session["appends"]) == 2 * len(expected)
        assert session["path"] == "/v1/realtime?model=gpt-realtime"
        [update] = session["updates"]
        assert update["instructions"] == "Answer briefly." and update["output_modalities"] == ["audio"]
        assert update["audio"]["input"] == {"format": {"type": "audio/pcm", "rate": RATE}, "turn_detection": None}
        assert update["audio"]["output"] == {"format": {"type": "audio/pcm", "rate": RATE}, "voice": "verse"}
        assert session["responses"] == [{"max_output_tokens": 64}]
    # prompt order: the clip, then the text that follows its placeholder; response.create last
    first = sessions[0]
    assert [i["content"][0]["type"] for i in first["items"]] == ["input_audio", "input_text"]
    assert first["items"][1]["content"][0]["text"] == " then text"
    assert first["events"][0] == "session.update" and first["events"][-1] == "response.create"
    accounting = lm.get_model_info()["openai_realtime"]["accounting"]
    assert (accounting["calls"], accounting["http_requests"], accounting["retries"]) == (2, 2, 0)
    assert accounting["completion_tokens"] == 5 * (len(str(outs[0]).split(" ")) + len(str(outs[1]).split(" ")))


def test_a_text_task_gets_a_text_answer(tmp_path):
    with FakeRealtime(responder=lambda turn: "Just text.") as server:
        [out] = model(server, tmp_path).generate_until([request("<audio>", [clip()], GREEDY)])
        [update] = server.sessions[0]["updates"]
    assert out == "Just text." and speech_of(out) is None
    assert update["output_modalities"] == ["text"] and "voice" not in update["audio"]["output"]


def test_a_dropped_connection_is_retried_and_counted(tmp_path):
    with FakeRealtime(drop_first=1) as server:
        lm = model(server, tmp_path, max_retries=2)
        [out] = lm.generate_until([request("<audio>", [clip()])])
        assert server.connections == 2
    assert str(out) == "I heard 0.50 seconds" and speech_of(out)["duration"] > 0
    accounting = lm.get_model_info()["openai_realtime"]["accounting"]
    assert (accounting["calls"], accounting["http_requests"], accounting["retries"]) == (1, 2, 1)
    assert not any(accounting["failures"].values())


def test_an_error_event_is_retried_then_fails_naming_the_doc(tmp_path):
    with FakeRealtime(error_first=100) as server:
        lm = model(server, tmp_path, max_retries=1)
        [out] = lm.generate_until([request("<audio>", [clip()], doc_id=7)])
        assert server.connections == 2
    assert isinstance(out, FailedGeneration)
    assert "task fake_task doc 7" in out.reason and "server_error" in out.reason and "injected by FakeRealtime" in out.reason
    accounting = lm.get_model_info()["openai_realtime"]["accounting"]
    assert (accounting["calls"], accounting["retries"], accounting["failures"]["5xx"]) == (0, 1, 1)


def test_a_failed_response_is_retried_and_an_incomplete_one_kept_as_cut(tmp_path):
    with FakeRealtime(status="failed") as server:
        [out] = model(server, tmp_path, max_retries=1).generate_until([request("<audio>", [clip()])])
        assert server.connections == 2
    assert isinstance(out, FailedGeneration) and "the response ended failed: injected failure" in out.reason
    with FakeRealtime(status="incomplete") as server:
        lm = model(server, tmp_path / "other", max_retries=1)
        [out] = lm.generate_until([request("<audio>", [clip()])])
        assert server.connections == 1
    assert str(out) == "I heard 0.50 seconds" and lm.get_model_info()["openai_realtime"]["accounting"]["retries"] == 0


def test_a_slow_server_times_out_as_a_timeout(tmp_path):
    with FakeRealtime(first_delay=1.0) as server:
        lm = model(server, tmp_path, max_retries=0, timeout=0.3)
        [out] = lm.generate_until([request("<audio>", [clip()])])
    assert isinstance(out, FailedGeneration) and "no response.done within 0.3 s" in out.reason
    assert lm.get_model_info()["openai_realtime"]["accounting"]["failures"]["timeout"] == 1


def test_the_cache_replays_audio_and_original_latency_without_connecting_and_holds_no_key(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    asked = request("<audio>", [clip()])
    with FakeRealtime(first_delay=0.3) as server:
        [first] = model(server, tmp_path).generate_until([asked])
        assert server.sessions[0]["headers"]["authorization"] == f"Bearer {KEY}"
        server.reset()
        lm = model(server, tmp_path)
        [again] = lm.generate_until([asked])
        assert server.connections == 0
    assert str(again) == str(first) and speech_of(again) == speech_of(first)  # the same file, the first run's latency
    assert speech_of(again)["latency"]["first_audio_s"] > 0.3
    assert lm.get_model_info()["openai_realtime"]["accounting"]["cache_hits"] == 1
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("cache.sqlite*"))
    assert stored and KEY.encode() not in stored
    assert KEY not in json.dumps(speech_of(first)) and KEY not in json.dumps(lm.get_model_info())


@pytest.mark.parametrize("name", ["api_key", "openai_api_key", "Authorization"])
def test_a_key_as_model_arg_is_refused(name):
    with pytest.raises(CallConfigError, match="environment variable"):
        OpenAIRealtimeLM.create_from_arg_string(f"model=gpt-realtime,{name}=sk-secret", {"batch_size": 1})


def test_sampling_rate_is_the_apis_and_not_a_model_arg():
    with pytest.raises(OptionError, match=r"unknown sampling_rate; accepted: .*voice"):
        OpenAIRealtimeLM(sampling_rate=16000, cache=False, preflight=False)


def test_a_closed_port_stops_construction_unless_preflight_is_off(tmp_path):
    with FakeRealtime() as server:
        closed = server.base_url
    with pytest.raises(EndpointUnavailable, match=r"openai_realtime: endpoint ws://127\.0\.0\.1:\d+/v1 .*connection refused"):
        OpenAIRealtimeLM(base_url=closed, cache=False)
    lm = OpenAIRealtimeLM(base_url=closed, cache=False, preflight="false", max_retries=0)
    [out] = lm.generate_until([request("<audio>", [clip()])])
    assert isinstance(out, FailedGeneration) and "connection refused" in out.reason
    assert lm.get_model_info()["openai_realtime"]["accounting"]["failures"]["refused"] == 1


# -- end to end: the stock lm_eval executable, S2S-Arena's real tongue-twister requests ------------

def arena_inputs(root: Path) -> Path:
    """The demo's real spoken requests laid out as the authors' data: one in a task folder of each domain."""
    real = sorted((SAMPLES / "tongue_twister_audios").glob("*.mp3"))
    for domain, tasks in taxonomy.DOMAINS.items():
        folder = root / ("tongue_twister" if domain == "entertainment" else tasks[0])
        folder.mkdir(parents=True)
        shutil.copy(real[len(list(root.iterdir())) % len(real)], folder / "audio_0.mp3")
    return root


@pytest.mark.slow
@pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"the S2S-Arena demo inputs are not at {SAMPLES}")
def test_lm_eval_runs_s2s_arena_against_the_realtime_server(tmp_path):
    output, data = tmp_path / "out", arena_inputs(tmp_path / "inputs")
    with FakeRealtime(first_delay=0.2) as server:
        done = subprocess.run(
            [str(Path(sys.executable).parent / "lm_eval"), "--tasks", "s2s_arena", "--model", "openai_realtime",
             "--model_args", f"base_url={server.base_url},cache={tmp_path / 'calls.sqlite'},voice=verse",
             "--metadata", json.dumps({"data_dir": str(data)}), "--log_samples", "--output_path", str(output)],
            capture_output=True, text=True, timeout=600, cwd=tmp_path,
            env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OPENAI_API_KEY": KEY},
        )
        assert done.returncode == 0, done.stderr[-4000:]
        assert server.connections == 4 and {s["updates"][0]["audio"]["output"]["voice"] for s in server.sessions} == {"verse"}
    [results_path] = output.rglob("results_*.json")
    results = json.loads(results_path.read_text())
    assert results["config"]["openai_realtime"]["accounting"]["calls"] == 4
    written = results_path.read_text()
    for domain in taxonomy.DOMAINS:
        task = f"s2s_arena_{domain}"
        scores = results["results"][task]
        assert scores["spoken_items,none"] == 1 and scores["failed_items,none"] == 0
        assert 0.2 < scores["first_audio_s_median,none"] <= scores["total_s_median,none"] and scores["rtf_median,none"] > 0
        [samples_path] = output.rglob(f"samples_{task}_*.jsonl")
        written += samples_path.read_text()
        [sample] = [json.loads(line) for line in samples_path.read_text().splitlines()]
        [record] = sample["speech_output"]
        assert Path(record["path"]).is_file() and record["sampling_rate"] == RATE
        assert sample["resps"][0][0].startswith("I heard ") and isinstance(record["transcript"], str)
        assert record["latency"]["streamed"] is True and 0.2 < record["latency"]["first_audio_s"] <= record["latency"]["total_s"]
    assert KEY not in written and KEY.encode() not in (tmp_path / "calls.sqlite").read_bytes()
