"""qwen2_5_omni on a tiny random Qwen2.5-Omni (thinker + talker + token2wav, tests/builders.py).

Everything is the real transformers model and processor code. torchvision is absent here, so the
model builds ``Qwen2_5OmniProcessor`` from its audio and text parts (models/_omni.py), as it does
on any machine without torchvision: Whisper features, ``<|AUDIO|>`` expanded per clip, the chat
template. Loading goes through ``from_pretrained`` with ``spk_dict.pt``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import soundfile as sf

from lm_eval_speech.models.qwen2_5_omni import OMNI_SYSTEM_PROMPT, SPEECH_RATE, Qwen25OmniLM
from lm_eval_speech.speech.output import SpeechResponse

from omni_common import ARENA_SAMPLES, SPEAK, TALKER, request, stock_lm_eval_on_arena, toy_requests


@pytest.fixture(scope="module")
def tiny_omni(tmp_path_factory) -> Path:
    from builders import build_tiny_qwen2_5_omni

    return build_tiny_qwen2_5_omni(tmp_path_factory.mktemp("tiny-qwen2-5-omni"))


@pytest.fixture(scope="module")
def omni(tiny_omni, tmp_path_factory):
    return Qwen25OmniLM(pretrained=str(tiny_omni), device="cpu", batch_size=2, speech_dir=str(tmp_path_factory.mktemp("speech")), **TALKER)


def test_text_answers_come_from_the_thinker_batched(omni):
    assert type(omni.model).__name__ == "Qwen2_5OmniForConditionalGeneration" and omni.model.has_talker
    assert type(omni.processor).__name__ == "AudioOnlyQwen2_5OmniProcessor"
    assert omni.sampling_rate == 16000 and omni.audio_token == "<|AUDIO|>"
    rendered = omni._render("<audio>Describe the sound.", 1, "test")
    assert rendered.startswith(f"<|im_start|>system\n{OMNI_SYSTEM_PROMPT}<|im_end|>") and rendered.count("<|AUDIO|>") == 1
    requests = toy_requests()
    batched = omni.generate_until(requests)
    assert all(type(answer) is str for answer in batched)
    omni.batch_size = 1
    try:
        assert [omni.generate_until([r])[0] for r in requests] == batched
    finally:
        omni.batch_size = 2
    # --apply_chat_template renders with Qwen's system prompt too, and the result is served unchanged.
    chat = omni.apply_chat_template([{"role": "user", "content": "<audio>Describe the sound."}])
    assert chat == rendered
    assert omni.generate_until([request(chat, requests[0].args[2]["audio"])]) == batched[:1]


def test_spoken_answers_are_written_as_wav_with_their_latency(omni):
    text_requests, spoken_requests = toy_requests(), toy_requests(SPEAK)
    answers = omni.generate_until(text_requests + spoken_requests)
    text, spoken = answers[:3], answers[3:]
    assert all(type(answer) is str for answer in text)
    for answer, same_prompt in zip(spoken, text):
        assert isinstance(answer, SpeechResponse)
        assert str(answer) == same_prompt  # greedy thinker: speaking leaves the text as it was
        record = answer.speech
        data, rate = sf.read(record["path"], dtype="float32")
        assert rate == record["sampling_rate"] == SPEECH_RATE == 24000
        assert record["duration"] > 0 and len(data) == round(record["duration"] * rate)
        assert "transcript" not in record
        timing = record["latency"]
        # The thinker's first token comes before the end; the waveform only with the end of generate.
        assert 0 < timing["first_text_s"] < timing["total_s"] == timing["first_audio_s"]
        assert timing["first_audio_at_end"] is True and timing["streamed"] is False
        assert timing["rtf"] == pytest.approx(timing["total_s"] / record["duration"], rel=1e-2)


def test_speech_is_batched_and_falls_back_to_one_at_a_time(omni, monkeypatch):
    batches = []
    generate = omni.model.generate

    def refuse_batches(input_ids=None, **kwargs):
        batches.append(input_ids.shape[0])
        if input_ids.shape[0] > 1:  # what transformers < 5 raises
            raise NotImplementedError("Qwen2.5-Omni currently does not support batched inference with audio output")
        return generate(input_ids=input_ids, **kwargs)

    requests = toy_requests(SPEAK, n=2)
    omni.generate_until(requests)
    monkeypatch.setattr(omni.model, "generate", refuse_batches)
    monkeypatch.setattr(omni, "_batched_speech", True)
    answers = omni.generate_until(requests)
    assert batches == [2, 1, 1] and not omni._batched_speech
    assert all(isinstance(a, SpeechResponse) and a.speech["duration"] > 0 for a in answers)
    assert [a.speech["latency"]["batch_size"] for a in answers] == [1, 1]  # what each was generated in, not the batch asked


def test_speech_output_never_loads_the_thinker_alone(tiny_omni, omni, caplog):
    with caplog.at_level(logging.WARNING, logger="lm_eval_speech.models"):
        lm = Qwen25OmniLM(pretrained=str(tiny_omni), device="cpu", speech_output="never", system_prompt="Be brief.")
    assert not lm.model.has_talker and not hasattr(lm.model, "talker") and not hasattr(lm.model, "token2wav")
    thinker_only = sum(p.numel() for p in lm.model.parameters())
    assert thinker_only == sum(p.numel() for p in omni.thinker.parameters()) < sum(p.numel() for p in omni.model.parameters())
    assert "differs from Qwen's own" not in caplog.text  # no talker, no warning
    answers = lm.generate_until(toy_requests(SPEAK, n=1))
    assert type(answers[0]) is str and lm.get_model_info()["talker"] is False


def test_speaker_and_system_prompt_checks(tiny_omni, caplog):
    with pytest.raises(ValueError, match="speaker 'Nobody' is not in .*voices: Chelsie, Ethan"):
        Qwen25OmniLM(pretrained=str(tiny_omni), device="cpu", speaker="Nobody")
    with caplog.at_level(logging.WARNING, logger="lm_eval_speech.models"):
        lm = Qwen25OmniLM(pretrained=str(tiny_omni), device="cpu", speaker="ethan", system_prompt="Be brief.", **TALKER)
    assert "differs from Qwen's own" in caplog.text
    info = lm.get_model_info()
    assert info["speaker"] == "Ethan" and info["talker"] is True


@pytest.mark.slow
@pytest.mark.skipif(not ARENA_SAMPLES.is_dir(), reason=f"the S2S-Arena demo inputs are not at {ARENA_SAMPLES}")
def test_the_stock_lm_eval_runs_qwen2_5_omni_on_s2s_arena(tiny_omni, tmp_path):
    results, samples = stock_lm_eval_on_arena("qwen2_5_omni", tiny_omni, tmp_path)
    assert results["spoken_items,none"] == 2 and results["failed_items,none"] == 0
    assert 0 < results["first_text_s_median,none"] < results["total_s_median,none"] == results["first_audio_s_median,none"]
    for sample in samples:
        [record] = sample["speech_output"]
        assert Path(record["path"]).is_file() and record["sampling_rate"] == 24000 and record["duration"] > 0
        assert record["latency"]["first_text_s"] > 0 and record["latency"]["first_audio_at_end"]
