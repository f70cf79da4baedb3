"""qwen3_omni on a tiny random Qwen3-Omni (MoE thinker + MoE talker + code2wav, tests/builders.py).

Everything is the real transformers model and processor code. torchvision is absent here, so the
model builds ``Qwen3OmniMoeProcessor`` from its audio and text parts (models/_omni.py), as it does
on any machine without torchvision; the slow test runs the stock ``lm_eval`` executable on it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from lm_eval_speech.models.qwen3_omni import SPEECH_RATE, Qwen3OmniLM
from lm_eval_speech.speech.output import SpeechResponse

from omni_common import ARENA_SAMPLES, SPEAK, TALKER, request, stock_lm_eval_on_arena, toy_requests


@pytest.fixture(scope="module")
def tiny_omni(tmp_path_factory) -> Path:
    from builders import build_tiny_qwen3_omni

    return build_tiny_qwen3_omni(tmp_path_factory.mktemp("tiny-qwen3-omni"))


@pytest.fixture(scope="module")
def omni(tiny_omni, tmp_path_factory):
    return Qwen3OmniLM(pretrained=str(tiny_omni), device="cpu", batch_size=2, speech_dir=str(tmp_path_factory.mktemp("speech")), **TALKER)


def test_text_answers_come_from_the_thinker_batched(omni):
    assert type(omni.model).__name__ == "Qwen3OmniMoeForConditionalGeneration" and omni.model.has_talker
    assert type(omni.processor).__name__ == "AudioOnlyQwen3OmniMoeProcessor"
    assert omni.sampling_rate == 16000 and omni.audio_token == "<|audio_pad|>"
    # No system prompt by default (Qwen's card: none for evaluations); the tiny build's template adds none.
    rendered = omni._render("<audio>Describe the sound.", 1, "test")
    assert rendered.startswith("<|im_start|>user\n<|audio_start|><|audio_pad|><|audio_end|>Describe the sound.<|im_end|>")
    requests = toy_requests()
    batched = omni.generate_until(requests)
    assert all(type(answer) is str and answer for answer in batched)
    omni.batch_size = 1
    try:
        assert [omni.generate_until([r])[0] for r in requests] == batched
    finally:
        omni.batch_size = 2
    # --apply_chat_template renders the same prompt, and the rendered prompt is served unchanged.
    chat = omni.apply_chat_template([{"role": "user", "content": "<audio>Describe the sound."}])
    assert chat == rendered
    assert omni.generate_until([request(chat, requests[0].args[2]["audio"])]) == batched[:1]


def test_spoken_answers_are_written_as_wav_with_their_latency(omni):
    text_requests, spoken_requests = toy_requests(), toy_requests(SPEAK)
    answers = omni.generate_until(text_requests + spoken_requests)
    text, spoken = answers[:3], answers[3:]
    assert all(type(answer) is str for answer in text)
    batch_sizes = []
    for answer, same_prompt in zip(spoken, text):
        assert isinstance(answer, SpeechResponse)
        assert str(answer) == same_prompt  # greedy thinker: speaking leaves the text as it was
        record = answer.speech
        data, rate = sf.read(record["path"], dtype="float32")
        assert rate == record["sampling_rate"] == SPEECH_RATE == 24000
        assert 0 < record["duration"] <= 16 * 1920 / 24000 and abs(len(data) - record["duration"] * rate) < 3  # duration: 4 decimals
        timing = record["latency"]
        # The thinker's first token comes before the end; the waveform only with the end of generate.
        assert 0 < timing["first_text_s"] < timing["total_s"] == timing["first_audio_s"]
        assert timing["first_audio_at_end"] is True and timing["streamed"] is False
        assert timing["audio_s"] == record["duration"] and timing["rtf"] == pytest.approx(timing["total_s"] / record["duration"], rel=1e-2)
        assert timing["device"] == "cpu"
        batch_sizes.append(timing["batch_size"])
    assert sorted(batch_sizes) == [1, 2, 2]  # three spoken requests at batch_size=2


def test_speech_is_batched_and_falls_back_to_one_at_a_time(omni, monkeypatch):
    batches = []
    generate = omni.model.generate

    def refuse_batches(input_ids=None, **kwargs):
        batches.append(input_ids.shape[0])
        if input_ids.shape[0] > 1:  # what transformers < 5 raises
            raise NotImplementedError("Qwen3-Omni currently does not support batched inference with audio output")
        return generate(input_ids=input_ids, **kwargs)

    requests = toy_requests(SPEAK, n=2)
    together = omni.generate_until(requests)
    monkeypatch.setattr(omni.model, "generate", refuse_batches)
    monkeypatch.setattr(omni, "_batched_speech", True)
    apart = omni.generate_until(requests)
    assert batches == [2, 1, 1] and not omni._batched_speech
    assert all(isinstance(a, SpeechResponse) and a.speech["duration"] > 0 for a in apart)
    # Batched, both answers carry the batch's figures; one at a time, each its own.
    assert together[0].speech["latency"]["total_s"] == together[1].speech["latency"]["total_s"]
    assert apart[0].speech["latency"]["total_s"] != apart[1].speech["latency"]["total_s"]


def test_speech_output_never_loads_the_thinker_alone(tiny_omni, omni):
    lm = Qwen3OmniLM(pretrained=str(tiny_omni), device="cpu", speech_output="never")
    assert not lm.model.has_talker and not hasattr(lm.model, "talker") and not hasattr(lm.model, "code2wav")
    thinker_only = sum(p.numel() for p in lm.model.parameters())
    assert thinker_only == sum(p.numel() for p in omni.thinker.parameters()) < sum(p.numel() for p in omni.model.parameters())
    answers = lm.generate_until(toy_requests(SPEAK, n=1))
    assert type(answers[0]) is str and lm.get_model_info()["talker"] is False and lm.get_model_info()["speaker"] is None


def test_speakers_are_the_checkpoints_and_reach_the_talker(tiny_omni, tmp_path, caplog):
    with pytest.raises(ValueError, match="speaker 'Nobody' is not in .*voices: aiden, chelsie, ethan"):
        Qwen3OmniLM(pretrained=str(tiny_omni), device="cpu", speaker="Nobody")
    prompts = {}
    for speaker in ("Ethan", "CHELSIE"):
        with caplog.at_level(logging.WARNING, logger="lm_eval_speech.models"):
            lm = Qwen3OmniLM(pretrained=str(tiny_omni), device="cpu", speaker=speaker, system_prompt="Be brief.",
                             speech_dir=str(tmp_path / speaker), **TALKER)
        seen = []
        # What the talker is given to read from (its prompt: the user turn, then the assistant's opening with the voice).
        lm.model.talker.register_forward_pre_hook(
            lambda module, args, kwargs: seen.append(kwargs["inputs_embeds"]) if kwargs["inputs_embeds"].shape[1] > 1 else None,
            with_kwargs=True,
        )
        [answer] = lm.generate_until(toy_requests(SPEAK, n=1))
        assert np.abs(sf.read(answer.speech["path"], dtype="float32")[0]).max() > 1e-3  # audible, not silence
        prompts[lm.get_model_info()["speaker"]] = seen[0][0]
    assert "differs from Qwen's own" not in caplog.text  # Qwen3-Omni requires no system prompt to speak
    assert set(prompts) == {"ethan", "chelsie"}
    differing = (prompts["ethan"] != prompts["chelsie"]).any(dim=-1)
    assert int(differing.sum()) == 1  # the one position that holds the speaker's code


@pytest.mark.slow
@pytest.mark.skipif(not ARENA_SAMPLES.is_dir(), reason=f"the S2S-Arena demo inputs are not at {ARENA_SAMPLES}")
def test_the_stock_lm_eval_runs_qwen3_omni_on_s2s_arena(tiny_omni, tmp_path):
    results, samples = stock_lm_eval_on_arena("qwen3_omni", tiny_omni, tmp_path)
    assert results["spoken_items,none"] == 2 and results["failed_items,none"] == 0
    assert 0 < results["first_text_s_median,none"] < results["total_s_median,none"] == results["first_audio_s_median,none"]
    assert len(samples) == 2
    for sample in samples:
        [record] = sample["speech_output"]
        assert Path(record["path"]).is_file() and record["path"].startswith(str(tmp_path / "run" / "speech"))
        assert record["sampling_rate"] == 24000 and record["duration"] > 0 and isinstance(record["transcript"], str)
        latency = record["latency"]
        assert latency["first_text_s"] > 0 and latency["first_audio_at_end"] and latency["batch_size"] == 2
