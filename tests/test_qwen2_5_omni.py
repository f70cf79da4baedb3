"""qwen2_5_omni on a tiny random Qwen2.5-Omni (thinker + talker + token2wav, tests/builders.py).

The processor is the one substitute. ``AutoProcessor`` cannot load a Qwen2.5-Omni processor here:
its image processor (``Qwen2VLImageProcessor``) and its video processor need torchvision, which
this environment lacks (and cannot install). So ``AutoProcessor.from_pretrained`` is patched to
return :func:`builders.tiny_qwen2_5_omni_processor`: the real ``Qwen2_5OmniProcessor`` code with
the PIL image processor and no video processor, which handles audio and text as the real one does
(Whisper features, ``<|AUDIO|>`` expanded per clip, the chat template). Everything else (loading
through ``from_pretrained`` with ``spk_dict.pt``, the thinker, the talker, token2wav) is the real
transformers model.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import soundfile as sf
from lm_eval.api.instance import Instance

from lm_eval_speech.models.qwen2_5_omni import OMNI_SYSTEM_PROMPT, SPEECH_RATE, Qwen25OmniLM
from lm_eval_speech.speech.output import SpeechResponse

GEN = {"until": [], "max_gen_toks": 6, "do_sample": False}
SPEAK = {**GEN, "speech_output": True}
# A random talker rarely emits its end code: the cap keeps each answer short (16 codes = 0.32 s).
TALKER = {"talker_max_new_tokens": 16, "talker_do_sample": False}


@pytest.fixture(scope="module")
def tiny_omni(tmp_path_factory):
    import transformers
    from builders import build_tiny_qwen2_5_omni, tiny_qwen2_5_omni_processor

    path = build_tiny_qwen2_5_omni(tmp_path_factory.mktemp("tiny-qwen2-5-omni"))
    with pytest.MonkeyPatch.context() as patch:
        # torchvision is absent: see the module docstring.
        patch.setattr(transformers.AutoProcessor, "from_pretrained", classmethod(lambda cls, *a, **k: tiny_qwen2_5_omni_processor(path)))
        yield path


@pytest.fixture(scope="module")
def omni(tiny_omni, tmp_path_factory):
    return Qwen25OmniLM(pretrained=str(tiny_omni), device="cpu", batch_size=2, speech_dir=str(tmp_path_factory.mktemp("speech")), **TALKER)


def clip(seconds: float, rate: int = 16000, frequency: float = 300.0) -> dict:
    t = np.arange(int(seconds * rate)) / rate
    return {"array": (0.3 * np.sin(2 * np.pi * frequency * t)).astype(np.float32), "sampling_rate": rate}


def request(context: str, clips: list[dict], doc_id: int = 0, gen: dict = GEN) -> Instance:
    return Instance(
        request_type="generate_until", doc={}, arguments=(context, dict(gen), {"audio": clips}),
        idx=0, metadata=("toy_task", doc_id, 1),
    )


def toy_requests(gen: dict = GEN, n: int = 3) -> list[Instance]:
    prompts = ["<audio>Describe the sound.", "What is this? <audio>", "<audio>Write a poem about the sea."]
    return [request(prompts[i % 3], [clip(0.4 + 0.5 * i, rate=16000 if i % 2 else 22050, frequency=200 + 90 * i)], i, gen)
            for i in range(n)]


def test_text_answers_come_from_the_thinker_batched(omni):
    assert type(omni.model).__name__ == "Qwen2_5OmniForConditionalGeneration" and omni.model.has_talker
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


def test_spoken_answers_are_written_as_wav(omni):
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


def test_speech_output_never_drops_the_talker(tiny_omni, caplog):
    with caplog.at_level(logging.WARNING, logger="lm_eval_speech.models"):
        lm = Qwen25OmniLM(pretrained=str(tiny_omni), device="cpu", speech_output="never", system_prompt="Be brief.")
    assert not lm.model.has_talker and not hasattr(lm.model, "talker") and not hasattr(lm.model, "token2wav")
    assert "differs from Qwen's own" not in caplog.text  # no talker, no warning
    answers = lm.generate_until(toy_requests(SPEAK, n=1))
    assert type(answers[0]) is str and lm.get_model_info()["talker"] is False


def test_speaker_and_system_prompt_checks(tiny_omni, caplog):
    with pytest.raises(ValueError, match="speaker 'Nobody' is not in .*voices: Chelsie, Ethan"):
        Qwen25OmniLM(pretrained=str(tiny_omni), device="cpu", speaker="Nobody")
    with caplog.at_level(logging.WARNING, logger="lm_eval_speech.models"):
        lm = Qwen25OmniLM(pretrained=str(tiny_omni), device="cpu", speaker="Ethan", system_prompt="Be brief.", **TALKER)
    assert "differs from Qwen's own" in caplog.text
    info = lm.get_model_info()
    assert info["speaker"] == "Ethan" and info["talker"] is True
