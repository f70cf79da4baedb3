"""moshi on a tiny random Moshi (tests/tiny_moshi.py): spoken and text answers, the stop rule, the caps, options.

Everything runs the real transformers model; the tiny build's dozen-token text stream is silent
about a third of the time, so its seeded answers both start and stop.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from lm_eval.api.instance import Instance

from lm_eval_speech.calls.params import GenerationParams
from lm_eval_speech.models.moshi import ENDED_BY_CAP, ENDED_BY_SILENCE, KYUTAI_AUDIO_SAMPLING, KYUTAI_TEXT_SAMPLING, MoshiLM, SpeechEnd
from lm_eval_speech.options import OptionError
from lm_eval_speech.outcomes import FailedGeneration
from lm_eval_speech.speech.output import SpeechResponse

from builders import tone
from tiny_moshi import build_tiny_moshi

TEXT = {"until": [], "do_sample": False, "max_gen_toks": 16}
SPEAK = {**TEXT, "speech_output": True}
GREEDY = GenerationParams.from_gen_kwargs(TEXT, default_max_tokens=16)
RATE, FRAME = 24000, 1920  # Mimi: 12.5 steps a second
SILENT = {0, 1, 2, 3}  # the tiny tokenizer's special tokens (Kyutai's ids), silent steps of the stream


@pytest.fixture(scope="module")
def tiny_moshi(tmp_path_factory) -> Path:
    return build_tiny_moshi(tmp_path_factory.mktemp("tiny-moshi"))


@pytest.fixture(scope="module")
def tiny_whisper(tmp_path_factory) -> Path:
    from builders import build_tiny_whisper

    return build_tiny_whisper(tmp_path_factory.mktemp("tiny-whisper"))


def make(tiny_moshi: Path, tmp_path_factory, **args) -> MoshiLM:
    settings = {"max_answer_seconds": 2.0, "silence_seconds": 0.16, **args}
    return MoshiLM(pretrained=str(tiny_moshi), device="cpu", speech_dir=str(tmp_path_factory.mktemp("speech")), **settings)


@pytest.fixture(scope="module")
def moshi(tiny_moshi, tmp_path_factory) -> MoshiLM:
    return make(tiny_moshi, tmp_path_factory)


def clip(seconds: float = 0.5, rate: int = 16000, frequency: float = 300.0) -> dict:
    return {"array": tone(seconds, rate, frequency), "sampling_rate": rate}


def request(gen: dict = TEXT, clips: list | None = None, context: str = "<audio>", doc_id: int = 0, task: str = "toy_task") -> Instance:
    return Instance(request_type="generate_until", doc={}, arguments=(context, dict(gen), {"audio": clips or [clip()]}),
                    idx=0, metadata=(task, doc_id, 1))


def stream_text(tokenizer, text_ids: list[int]) -> str:
    """What the text answer should be: the stream's word pieces, SentencePiece's "▁" read as spaces."""
    pieces = tokenizer.convert_ids_to_tokens([i for i in text_ids if i not in SILENT])
    return "".join(pieces).replace("▁", " ").strip()


def first_stop(text_ids: list[int], window: int) -> int | None:
    """Steps until the stop rule fires: spoken once, then ``window`` silent steps in a row."""
    spoken, quiet = False, 0
    for step, token in enumerate(text_ids, start=1):
        quiet = quiet + 1 if token in SILENT else 0
        spoken = spoken or token not in SILENT
        if spoken and quiet >= window:
            return step
    return None


# -- the stop rule ---------------------------------------------------------------------------

def steps_until_end(prompt: list[int], answer: list[int], window: int = 2) -> tuple[int | None, SpeechEnd]:
    import torch

    end = SpeechEnd(answer_start=len(prompt), silent_ids={0, 3}, silence_frames=window)
    ids = list(prompt)
    for step, token in enumerate(answer, start=1):
        ids.append(token)
        done = end(torch.tensor([ids]), None)
        assert done.shape == (1,) and done.dtype == torch.bool
        if bool(done[0]):
            return step, end
    return None, end


def test_the_stop_rule_waits_for_speech_then_for_the_silence_window():
    never, end = steps_until_end([9, 3, 3], [3, 0, 3, 3, 3])
    assert never is None and end.first_word_at is None and not end.ended  # silence before any word never ends it
    stop, end = steps_until_end([9, 3, 3], [3, 7, 3, 0, 5])
    assert stop == 4 and end.ended and end.first_word_at is not None  # end-of-padding (0) is silent too
    assert steps_until_end([9, 3, 3], [7, 3, 8, 3, 3, 8])[0] == 5  # a word inside the window restarts it
    assert steps_until_end([9, 5, 5], [3, 3, 3])[0] is None  # words in the prompt are the user's turn, not Moshi's
    assert steps_until_end([9], [7, 3, 3, 3], window=3)[0] == 4


# -- answers ---------------------------------------------------------------------------------

def test_a_spoken_answer_is_a_wav_of_moshis_audio_with_its_latency(moshi):
    [answer] = moshi.generate_until([request(SPEAK)])
    conversation = moshi._converse(request(SPEAK), GREEDY, decode_audio=True)  # the same seed: the same conversation
    assert isinstance(answer, SpeechResponse)
    assert str(answer) == stream_text(moshi.tokenizer, conversation.text_ids) != ""
    record = answer.speech
    data, rate = sf.read(record["path"], dtype="float32")
    assert rate == record["sampling_rate"] == RATE
    assert len(data) == len(conversation.audio) and len(data) % FRAME == 0 and 0 < record["duration"] <= 2.0
    latency = record["latency"]
    assert latency["first_audio_at_end"] is True and latency["streamed"] is False
    assert latency["first_audio_s"] == latency["total_s"] > 0
    assert 0 < latency["first_text_s"] <= latency["total_s"]
    assert latency["audio_s"] == record["duration"] and latency["batch_size"] == 1 and latency["device"] == "cpu"


def test_text_tasks_get_the_text_stream_without_its_padding(moshi):
    conversation = moshi._converse(request(), GREEDY, decode_audio=False)
    assert conversation.audio is None
    assert set(conversation.text_ids) & SILENT and set(conversation.text_ids) - SILENT  # both kinds, so the filter shows
    [answer] = moshi.generate_until([request()])
    assert type(answer) is str and answer == stream_text(moshi.tokenizer, conversation.text_ids)
    assert "<pad>" not in answer and "<unk>" not in answer


def test_answers_end_at_the_first_silence_window_after_speech(moshi):
    for seed in range(4):
        conversation = moshi._converse(request(), GenerationParams(seed=seed), decode_audio=True)
        ids = conversation.text_ids
        assert conversation.ended_by == ENDED_BY_SILENCE, (seed, ids)
        assert first_stop(ids, window=2) == len(ids) < 25 + 2, (seed, ids)
        assert len(conversation.audio) == (len(ids) - 2) * FRAME  # the audio trails the text by two steps


def test_max_answer_seconds_caps_the_answer_and_the_audio_is_transformers_own(tiny_moshi, tmp_path_factory):
    import torch

    lm = make(tiny_moshi, tmp_path_factory, max_answer_seconds=0.8, silence_seconds=30)
    conversation = lm._converse(request(), GREEDY, decode_audio=True)
    assert conversation.ended_by == ENDED_BY_CAP
    assert len(conversation.text_ids) == 10 + 2 and len(conversation.audio) == 10 * FRAME  # 0.8 s at 12.5 Hz
    [answer] = lm.generate_until([request(SPEAK)])
    assert answer.speech["duration"] == 0.8
    # A generation that runs to its end is one transformers decodes itself: the same audio.
    user = lm._user_audio(request())
    prompt = math.ceil(user.shape[-1] / FRAME)
    torch.manual_seed(0)
    own = lm.model.generate(input_ids=torch.full((1, prompt), 3), user_input_values=user, moshi_input_values=torch.zeros_like(user),
                            max_new_tokens=12, **KYUTAI_TEXT_SAMPLING, **KYUTAI_AUDIO_SAMPLING)
    reference = own.audio_sequences[0, 0, prompt * FRAME:].numpy()
    np.testing.assert_allclose(conversation.audio, reference[: len(conversation.audio)], atol=1e-5)


def test_an_answer_that_never_starts_runs_to_the_cap_with_no_text(tiny_moshi, tmp_path_factory, caplog):
    lm = make(tiny_moshi, tmp_path_factory, max_answer_seconds=0.4, sampling="task")
    lm.model.decoder.lm_head.weight.data.zero_()  # flat text logits: greedy picks id 0, end-of-padding, at every step
    with caplog.at_level(logging.WARNING, logger="lm_eval_speech.models"):
        text, spoken = lm.generate_until([request(), request(SPEAK, doc_id=1)])
    assert text == "" and str(spoken) == ""
    assert spoken.speech["duration"] == 0.4 and spoken.speech["latency"]["first_text_s"] is None
    assert lm._converse(request(), GREEDY, decode_audio=False).ended_by == ENDED_BY_CAP
    assert "Kyutai's reference inference" not in caplog.text  # sampling=task follows the task


def test_kyutai_sampling_warns_once_that_the_tasks_decoding_is_not_used(tiny_moshi, tmp_path_factory, caplog):
    lm = make(tiny_moshi, tmp_path_factory, max_answer_seconds=0.4)
    with caplog.at_level(logging.WARNING, logger="lm_eval_speech.models"):
        lm.generate_until([request(doc_id=0), request(doc_id=1, task="other")])
    assert caplog.text.count("Moshi samples as Kyutai's reference inference does (sampling=kyutai") == 1


def test_the_transcript_can_be_the_text_answer(tiny_moshi, tiny_whisper, tmp_path_factory):
    lm = make(tiny_moshi, tmp_path_factory, text_answer="transcript", speech_asr=str(tiny_whisper))
    conversation = lm._converse(request(), GREEDY, decode_audio=True)
    transcript = lm.speech.transcribe(conversation.audio, RATE)
    text, spoken = lm.generate_until([request(), request(SPEAK, doc_id=1)])
    assert text == str(spoken) == transcript != stream_text(lm.tokenizer, conversation.text_ids)
    assert spoken.speech["duration"] == len(conversation.audio) / RATE


def test_clips_are_joined_and_resampled_to_mimis_rate(moshi):
    one = moshi._converse(request(clips=[clip(0.5, 16000)]), GREEDY, decode_audio=False)
    two = moshi._converse(request(clips=[clip(0.5, 16000), clip(0.3, 44100, 500.0)]), GREEDY, decode_audio=False)
    assert (one.prompt_frames, two.prompt_frames) == (math.ceil(0.5 * 12.5), math.ceil(0.8 * 12.5))


def test_prompt_text_is_ignored_with_one_warning_per_task_or_refused(moshi, tiny_moshi, tmp_path_factory, caplog):
    worded = "Answer in one sentence: <audio>"
    with caplog.at_level(logging.WARNING, logger="lm_eval_speech.models"):
        answers = moshi.generate_until([
            request(context=worded, task="task_a"), request(context=worded, doc_id=1, task="task_a"),
            request(context=worded, task="task_b"), request(task="task_c"),
        ])
    warnings = [r.getMessage() for r in caplog.records if "prompt text besides <audio>" in r.getMessage()]
    assert len(warnings) == 2 and "task_a" in warnings[0] and "task_b" in warnings[1]
    assert len(set(answers)) == 1  # the same clip and seed: the words change nothing
    strict = make(tiny_moshi, tmp_path_factory, text_prompt="refuse")
    with pytest.raises(ValueError, match=r"task task_b doc 3 has prompt text besides <audio> \('Answer in one sentence:'\)"):
        strict.generate_until([request(task="task_b"), request(context=worded, doc_id=3, task="task_b")])


def test_a_clip_that_fills_the_context_is_a_counted_failure(tiny_moshi, tmp_path_factory):
    lm = make(tiny_moshi, tmp_path_factory, max_answer_seconds=1.0)
    lm.context_frames = 16  # the tiny build's 3000 steps would need a 4-minute clip
    failed, short = lm.generate_until([request(SPEAK, clips=[clip(1.2)]), request(SPEAK, clips=[clip(0.5)], doc_id=1)])
    assert isinstance(failed, FailedGeneration) and "leaves no room for an answer in Moshi's context of 1 s" in failed.reason
    # 7 steps of clip and the start token leave 8: 6 steps of audio, under the 1 s cap
    assert isinstance(short, SpeechResponse) and short.speech["duration"] <= 6 * FRAME / RATE


@pytest.mark.parametrize("args, message", [
    ({"max_answer_seconds": 0}, "max_answer_seconds=0: expected a positive number of seconds"),
    ({"max_answer_seconds": "abc"}, "max_answer_seconds='abc'"),
    ({"max_answer_seconds": "inf"}, "max_answer_seconds='inf'"),
    ({"silence_seconds": -1}, "silence_seconds=-1"),
    ({"text_answer": "asr"}, "text_answer='asr': expected one of stream, transcript"),
    ({"text_prompt": "drop"}, "text_prompt='drop': expected one of ignore, refuse"),
    ({"sampling": "greedy"}, "sampling='greedy': expected one of kyutai, task"),
    ({"seed": "x"}, "seed='x': expected an integer"),
])
def test_bad_model_args_are_refused_by_name(tiny_moshi, args, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        MoshiLM(pretrained=str(tiny_moshi), device="cpu", **args)


def test_unknown_model_args_list_the_accepted_ones_and_batches_run_one_by_one(tiny_moshi, caplog):
    with pytest.raises(OptionError, match="unknown max_seconds; accepted: .*max_answer_seconds.*silence_seconds"):
        MoshiLM(pretrained=str(tiny_moshi), device="cpu", max_seconds=3)
    with caplog.at_level(logging.WARNING, logger="lm_eval_speech.models"):
        lm = MoshiLM(pretrained=str(tiny_moshi), device="cpu", batch_size=4)
    assert lm.batch_size == 1 and "one conversation at a time" in caplog.text
    assert lm.get_model_info()["frame_rate"] == 12.5


# -- the stock lm_eval executable ------------------------------------------------------------

@pytest.mark.slow
def test_lm_eval_runs_moshi_on_s2s_arena_with_spoken_answers_and_latency(tiny_moshi, tiny_whisper, tmp_path):
    data = tmp_path / "arena"
    for name, frequency in (("audio_0.wav", 300.0), ("audio_1.wav", 500.0)):
        (data / "tongue_twister").mkdir(parents=True, exist_ok=True)
        sf.write(data / "tongue_twister" / name, tone(0.5, RATE, frequency), RATE)
    (data / "data").mkdir()
    (data / "data" / "tongue_twister.json").write_text(json.dumps({"items": [
        {"audio": "audio_0.wav", "text": "Say it fast"}, {"audio": "audio_1.wav", "text": "Say it slow"}]}))
    model_args = f"pretrained={tiny_moshi},max_answer_seconds=1,silence_seconds=0.16,speech_asr={tiny_whisper}"
    done = subprocess.run(
        [str(Path(sys.executable).parent / "lm_eval"), "--tasks", "s2s_arena_entertainment", "--model", "moshi",
         "--model_args", model_args, "--device", "cpu", "--metadata", json.dumps({"data_dir": str(data)}),
         "--output_path", str(tmp_path / "out"), "--log_samples"],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    [results_path] = list((tmp_path / "out").rglob("results_*.json"))
    results = json.loads(results_path.read_text())
    scores = results["results"]["s2s_arena_entertainment"]
    assert scores["spoken_items,none"] == 2 and scores["failed_items,none"] == 0
    assert 0 < scores["total_s_median,none"] and 0 < scores["rtf_median,none"]
    [samples_path] = list((tmp_path / "out").rglob("samples_s2s_arena_entertainment_*.jsonl"))
    samples = [json.loads(line) for line in samples_path.read_text().splitlines()]
    assert len(samples) == 2
    for sample in samples:
        [record] = sample["speech_output"]
        assert Path(record["path"]).is_file() and 0 < record["duration"] <= 1.0 and "transcript" in record
        assert record["latency"]["total_s"] > 0 and record["latency"]["first_audio_at_end"] is True
