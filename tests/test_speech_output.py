"""The speech-output convention: the text stays the response, the audio goes to a file, the sample records it."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import soundfile as sf
from lm_eval.api.instance import Instance

from lm_eval_speech import run
from lm_eval_speech.speech.output import (
    SpeechAsk,
    SpeechOutput,
    SpeechResponse,
    run_output_dir,
    sample_records,
    speech_of,
    split_speech_kwargs,
)

from builders import tone
from fake_openai import SPOKEN_RATE, FakeOpenAI

GREEDY = {"until": [], "do_sample": False, "temperature": 0.0, "max_gen_toks": 16}


def request(gen_kwargs: dict, doc_id: int = 0, task: str = "speech_task") -> Instance:
    clip = {"array": tone(0.5, 16000), "sampling_rate": 16000}
    return Instance("generate_until", {}, ("<audio>Say hello.", dict(gen_kwargs), {"audio": [clip]}), idx=0,
                    metadata=(task, doc_id, 1))


def test_tasks_ask_through_gen_kwargs_and_models_strip_the_keys():
    rest, ask = split_speech_kwargs({"until": ["\n"], "speech_output": True, "speech_transcript": "false", "top_p": 0.5})
    assert rest == {"until": ["\n"], "top_p": 0.5}
    assert ask == SpeechAsk(audio=True, transcript=False)
    assert split_speech_kwargs(None) == ({}, SpeechAsk())


def test_a_speech_response_is_its_text_and_survives_pickling():
    response = SpeechResponse("hello there", {"path": "/x.wav", "sampling_rate": 24000, "duration": 1.5})
    assert response == "hello there" and response.upper() == "HELLO THERE"
    again = pickle.loads(pickle.dumps(response))  # data-parallel gathers and --use_cache pickle responses
    assert isinstance(again, SpeechResponse) and again.speech == response.speech
    assert speech_of("plain text") is None and speech_of(again)["duration"] == 1.5


def test_written_audio_is_named_by_task_doc_and_content(tmp_path):
    output = SpeechOutput("test", directory=str(tmp_path))
    audio = tone(1.25, 22050)
    record = output.write(audio, 22050, task="s2s/arena", doc_id=7)
    path = tmp_path / "s2s_arena" / f"doc7-{record['sha256'][:12]}.wav"
    assert record["path"] == str(path.resolve())
    assert record["sampling_rate"] == 22050 and record["duration"] == pytest.approx(1.25, abs=1e-4)
    data, rate = sf.read(path, dtype="float32")
    assert rate == 22050 and np.allclose(data, audio, atol=1 / 32767)
    other = output.write(tone(1.25, 22050, frequency=300.0), 22050, task="s2s/arena", doc_id=7)
    assert other["path"] != record["path"]  # another model's answer to the same doc keeps its own file
    assert output.write(audio, 22050, task="s2s/arena", doc_id=7) == record
    assert not list(tmp_path.rglob("*.tmp"))


def test_loud_audio_is_scaled_and_broken_audio_refused(tmp_path):
    output = SpeechOutput("test", directory=str(tmp_path))
    record = output.write(np.array([0.0, 2.0, -1.0], dtype=np.float32), 8000, task="t", doc_id=0)
    assert np.abs(sf.read(record["path"])[0]).max() == pytest.approx(1.0, abs=1e-4)
    empty = output.write(np.zeros(0, dtype=np.float32), 8000, task="t", doc_id=1)
    assert empty["duration"] == 0 and sf.info(empty["path"]).frames == 0  # an empty answer, not an error
    with pytest.raises(ValueError, match="task t doc 3.*NaN"):
        output.write(np.array([0.0, np.nan], dtype=np.float32), 8000, task="t", doc_id=3)
    with pytest.raises(ValueError, match="speech_output must be one of"):
        SpeechOutput("test", mode="sometimes")


def test_the_run_output_path_is_where_audio_goes(tmp_path, monkeypatch):
    from lm_eval.loggers import EvaluationTracker

    monkeypatch.setattr(run, "output_path", None)
    EvaluationTracker(output_path=str(tmp_path / "results"))
    assert run.output_path == str(tmp_path / "results") and run_output_dir() == tmp_path / "results"
    assert SpeechOutput("test").directory == tmp_path / "results" / "speech"
    EvaluationTracker(output_path=str(tmp_path / "out" / "r.json"))
    assert run_output_dir() == tmp_path / "out"


def test_logged_samples_get_their_speech_records(tmp_path):
    from lm_eval.loggers import EvaluationTracker

    tracker = EvaluationTracker(output_path=str(tmp_path))
    tracker.general_config_tracker.model_name_sanitized = "m"
    tracker.date_id = "now"
    record = {"path": "/a.wav", "sampling_rate": 16000, "duration": 0.5}
    samples = [
        {"doc_id": 0, "arguments": [("<audio>", {}, {})], "resps": [[SpeechResponse("hi", record)]],
         "filtered_resps": [SpeechResponse("hi", record)], "target": ""},
        {"doc_id": 1, "arguments": [("<audio>", {}, {})], "resps": [["text only"]], "filtered_resps": ["text only"], "target": ""},
    ]
    assert sample_records(samples[0]) == [record] and sample_records(samples[1]) is None
    tracker.save_results_samples("speech_task", samples)
    lines = [json.loads(line) for line in (tmp_path / "m" / "samples_speech_task_now.jsonl").read_text().splitlines()]
    assert lines[0]["speech_output"] == [record] and lines[0]["resps"] == [["hi"]]
    assert "speech_output" not in lines[1]


def test_a_text_only_model_refuses_a_spoken_answer_and_never_answers_in_text(tiny_qwen2_audio, tmp_path):
    from lm_eval_speech.models.qwen2_audio import Qwen2AudioLM

    model = Qwen2AudioLM(pretrained=str(tiny_qwen2_audio), device="cpu")
    generated = []
    original = model._generate_batch
    model._generate_batch = lambda requests, settings: generated.append(len(requests)) or original(requests, settings)
    with pytest.raises(ValueError, match="text only.*task speech_task doc 4 asks for a spoken answer"):
        model.generate_until([request(GREEDY, doc_id=3), request({**GREEDY, "speech_output": True}, doc_id=4)])
    assert generated == []  # refused before any generation, not after the text requests
    quiet = Qwen2AudioLM(pretrained=str(tiny_qwen2_audio), device="cpu", speech_output="never")
    [answer] = quiet.generate_until([request({**GREEDY, "speech_output": True})])
    assert isinstance(answer, str) and speech_of(answer) is None
    with pytest.raises(ValueError, match="speech_output=always cannot be met"):
        Qwen2AudioLM(pretrained=str(tiny_qwen2_audio), device="cpu", speech_output="always")


def test_openai_audio_speaks_when_asked_and_replays_the_audio_from_its_cache(tmp_path, monkeypatch):
    from lm_eval_speech.models.openai_audio import OpenAIAudioLM

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    reply = "Hello from a speaking model"
    with FakeOpenAI(responder=lambda body, index: reply) as server:
        def make():
            return OpenAIAudioLM(base_url=server.base_url, cache=str(tmp_path / "cache.sqlite"), voice="verse",
                                 speech_dir=str(tmp_path / "speech"))

        asked, plain = request({**GREEDY, "speech_output": True}, doc_id=1), request(GREEDY, doc_id=2)
        spoken, text = make().generate_until([asked, plain])
        bodies = server.requests
        assert server.calls == 2
        spoken_body = next(b for b in bodies if "audio" in b["body"]["modalities"])["body"]
        assert spoken_body["audio"] == {"voice": "verse", "format": "wav"}
        assert next(b for b in bodies if b["body"]["modalities"] == ["text"])
        assert spoken == reply and text == reply and speech_of(text) is None
        record = speech_of(spoken)
        data, rate = sf.read(record["path"])
        assert rate == record["sampling_rate"] == SPOKEN_RATE
        assert record["duration"] == pytest.approx(0.1 * len(reply.split()), abs=1e-3) == len(data) / rate
        assert record["latency"]["streamed"] is False and record["latency"]["first_audio_s"] == record["latency"]["total_s"] > 0
        server.reset_counters()
        replayed, _ = make().generate_until([asked, plain])
        assert server.calls == 0 and speech_of(replayed) == record  # the audio came back from the cache
