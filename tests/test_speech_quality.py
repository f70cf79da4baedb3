"""Spoken-answer quality metrics: real speechmos and resemblyzer on real speech (the demo's Piper clips),
WER against jiwer, and the metrics as S2S-Arena requests them through lm-eval.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from lm_eval_speech import provenance
from lm_eval_speech.outcomes import FailedGeneration
from lm_eval_speech.options import OptionError
from lm_eval_speech.speech import quality
from lm_eval_speech.speech.audio import AudioError, load_audio, resample
from lm_eval_speech.speech.output import SpeechResponse

from conftest import DEMO_SIB, TASKS_DIR

RATE = 16000
# 4.6 s: speechmos tiles it once to 9.2 s, one 9.01 s window (the cheapest clip it scores).
SECONDS = 4.6
TASK = "s2s_arena_entertainment"


@pytest.fixture(autouse=True)
def fresh_switches(monkeypatch):
    monkeypatch.setattr(quality, "_ENABLED", {})


def _write(path: Path, audio: np.ndarray, rate: int = RATE) -> Path:
    sf.write(path, np.asarray(audio, dtype=np.float32), rate, subtype="PCM_16")
    return path


def _faster(audio: np.ndarray, factor: float) -> np.ndarray:
    """The clip played ``factor`` times faster: pitch and tempo up, another voice to an encoder."""
    return resample(audio, int(RATE * factor), RATE)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """Four demo instructions spoken by one Piper voice, a noisy and a faster copy, and clips nothing can rate."""
    folder = tmp_path_factory.mktemp("answers")
    sources = sorted((DEMO_SIB / "open-ended" / "en").glob("*.ogg"))[:4]
    voice = [load_audio(source, target_sr=RATE)[0][: int(SECONDS * RATE)] for source in sources]
    assert len(voice) == 4 and all(len(a) == int(SECONDS * RATE) for a in voice)
    paths = {f"voice{i}": _write(folder / f"voice{i}.wav", audio) for i, audio in enumerate(voice)}
    paths.update({f"faster{i}": _write(folder / f"faster{i}.wav", _faster(audio, 1.35)) for i, audio in enumerate(voice)})
    noise = np.random.default_rng(0).normal(0.0, 0.2, len(voice[0]))
    noisy = voice[0] + noise
    paths["noisy"] = _write(folder / "noisy.wav", noisy / np.abs(noisy).max())
    paths["short"] = _write(folder / "short.wav", voice[1][: int(0.6 * RATE)])
    paths["silent"] = _write(folder / "silent.wav", np.zeros(3 * RATE))
    paths["empty"] = _write(folder / "empty.wav", np.zeros(0))
    paths["absent"] = folder / "absent.wav"
    return paths


# -- DNSMOS -----------------------------------------------------------------------------------

def test_dnsmos_rates_clean_speech_above_the_same_speech_in_heavy_noise(clips):
    from speechmos import dnsmos as speechmos_dnsmos

    clean = quality.dnsmos_scores(clips["voice0"])
    sessions = speechmos_dnsmos.dnsmos
    # The noisy copy at 22.05 kHz, peak at full scale: soxr overshoots it on the way to 16 kHz,
    # which speechmos would refuse unless clipped back.
    noisy_audio = resample(load_audio(clips["noisy"])[0], RATE, 22050)
    noisy_audio /= np.abs(noisy_audio).max()
    assert np.abs(resample(noisy_audio, 22050, RATE)).max() > 1.0
    noisy = quality.dnsmos_scores(noisy_audio, 22050)
    print(f"DNSMOS clean {clean} noisy {noisy}")

    assert set(clean) == set(noisy) == set(quality.DNSMOS_KEYS)
    assert all(isinstance(v, float) and 1.0 <= v <= 5.0 for v in [*clean.values(), *noisy.values()])
    assert clean["ovrl_mos"] > 2.5 and clean["ovrl_mos"] - noisy["ovrl_mos"] > 0.8
    assert clean["bak_mos"] - noisy["bak_mos"] > 1.5 and clean["p808_mos"] > noisy["p808_mos"]
    assert speechmos_dnsmos.dnsmos is sessions  # ONNX sessions built once per process


@pytest.mark.timeout(60)  # speechmos itself would spin forever on empty audio
def test_dnsmos_refuses_what_it_cannot_score_and_names_the_file(clips):
    for name, reason in (("empty", "0 frames"), ("absent", "not found"), ("short", "too short for DNSMOS"), ("silent", "silent")):
        with pytest.raises(AudioError, match=reason) as caught:
            quality.dnsmos_scores(clips[name])
        assert str(clips[name]) in str(caught.value)
    with pytest.raises(AudioError, match="<array>.*0 frames"):
        quality.dnsmos_scores(np.zeros(0, np.float32), RATE)
    with pytest.raises(AudioError, match="full scale"):
        quality.dnsmos_scores(np.full(2 * RATE, 1.5, np.float32), RATE)
    with pytest.raises(AudioError, match="sampling_rate"):
        quality.dnsmos_scores(np.zeros(2 * RATE, np.float32))


# -- speaker consistency ----------------------------------------------------------------------

def test_one_voice_is_more_consistent_than_a_mix_of_two(clips):
    one = [quality.speaker_embedding(clips[f"voice{i}"]) for i in range(4)]
    faster = [quality.speaker_embedding(clips[f"faster{i}"]) for i in range(2)]
    assert all(e.shape == (256,) and abs(np.linalg.norm(e) - 1.0) < 1e-4 for e in one + faster)
    same, same_min = quality.voice_consistency(one)
    mixed, mixed_min = quality.voice_consistency(one[:2] + faster)
    print(f"speaker consistency one voice {same:.3f} (min {same_min:.3f}), two voices {mixed:.3f} (min {mixed_min:.3f})")
    assert same > 0.93 and same - mixed > 0.05 and same_min - mixed_min > 0.05
    assert same_min <= same and mixed_min <= mixed
    assert quality.voice_consistency([one[0], one[0]]) == pytest.approx((1.0, 1.0))
    assert quality.voice_encoder() is quality.voice_encoder()  # loaded once per process


def test_speaker_embedding_refuses_short_silent_and_missing_audio(clips):
    for name, reason in (("short", "too short for a speaker embedding: .* voiced audio"), ("silent", "silent"),
                         ("empty", "0 frames"), ("absent", "not found")):
        with pytest.raises(AudioError, match=reason) as caught:
            quality.speaker_embedding(clips[name])
        assert str(clips[name]) in str(caught.value)


# -- text-speech consistency ------------------------------------------------------------------

def test_normalisation_lowercases_strips_punctuation_and_symbols():
    assert quality.normalize_text("  **Don't** stop—KEEP going!  100%\n") == "dont stop keep going 100"
    assert quality.normalize_text("Ｈｅｌｌｏ，世界。") == "hello 世界"


def test_asr_consistency_matches_hand_counted_wer():
    pairs = [
        ("The cat sat on the mat.", "the cat sat on a mat"),  # 6 words, 1 substitution
        ("Hello, world!", "hello there world"),  # 2 words, 1 insertion
        ("Don't stop—keep going", "Don’t stop."),  # 4 words, 2 deletions
    ]
    result = quality.asr_consistency(pairs)
    assert result["items"] == 3 and result["char_level_items"] == 0
    assert (result["edits"], result["reference_tokens"]) == (4, 12)
    assert result["wer"] == pytest.approx(4 / 12)
    assert result["mean_item_wer"] == pytest.approx((1 / 6 + 1 / 2 + 2 / 4) / 3)
    perfect = quality.asr_consistency([("Yes, 100%!", "yes 100")])
    assert perfect["wer"] == 0.0 and perfect["mean_item_wer"] == 0.0


def test_asr_consistency_uses_characters_for_cjk_and_counts_empty_text():
    result = quality.asr_consistency([("今天天气很好。", "今天天气不好"), ("我用Python写代码", "我用 python 写代码")])
    # 6 + 6 tokens (the Latin word is one); one substitution. Per word it would be 1 of 2.
    assert result["char_level_items"] == 2
    assert (result["edits"], result["reference_tokens"]) == (1, 12)
    assert result["wer"] == pytest.approx(1 / 12)
    assert result["mean_item_wer"] == pytest.approx((1 / 6 + 0) / 2)

    mixed = quality.asr_consistency([("", "uh hello"), ("one two", "one two")])
    assert mixed["empty_references"] == 1 and mixed["items"] == 2
    assert (mixed["edits"], mixed["reference_tokens"]) == (2, 2)  # the stray words count as insertions
    assert mixed["mean_item_wer"] == 0.0
    assert quality.asr_consistency([])["wer"] is None


def test_the_wer_aggregation_equals_jiwer_on_the_same_pairs():
    import jiwer

    pairs = [("the cat sat on the mat", "the cat sat on a mat"), ("hello world", "hello there world"),
             ("keep going now", "keep"), ("a b c d e", "a b x d e f")]
    items = [{"task": "quality_wer_check", "text": text, "transcript": heard} for text, heard in pairs]
    items += [None, {"task": "quality_wer_check", "text": "never transcribed", "transcript": None}]
    expected = jiwer.wer([text for text, _ in pairs], [heard for _, heard in pairs])
    assert quality.asr_wer(items) == pytest.approx(expected) and expected == pytest.approx(6 / 16)
    recorded = provenance.of("quality_wer_check")["speech_quality"]["asr_wer"]
    assert (recorded["items"], recorded["spoken_without_transcript"], recorded["edits"]) == (4, 1, 6)
    assert math.isnan(quality.asr_wer([None, {"task": "quality_wer_check", "text": "x", "transcript": None}]))


# -- as a task requests them ------------------------------------------------------------------

def _arena_task(tmp_path: Path, **metadata):
    """s2s_arena_entertainment as lm-eval builds it, over one tone clip as its input."""
    from lm_eval.tasks import TaskManager

    clip = tmp_path / "tongue_twister" / "audio_0.wav"
    clip.parent.mkdir(parents=True)
    sf.write(clip, np.zeros(RATE, np.float32), RATE)
    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata={"data_dir": str(tmp_path), **metadata})
    return manager.load([TASK])["tasks"][TASK]


def _answer(clips: dict, name: str, text: str = "an answer", transcript: str | None = "an answer") -> SpeechResponse:
    record = {"path": str(clips[name]), "sampling_rate": RATE, "duration": 1.0, "sha256": f"sha-of-{name}"}
    if transcript is not None:
        record["transcript"] = transcript
    return SpeechResponse(text, record)


def _aggregate(task, responses: list) -> dict:
    """Each metric as lm-eval computes it: the task's process_results per answer, then its aggregation."""
    doc = task.dataset["test"][0]
    per_answer = [task.process_results(doc, [response]) for response in responses]
    return {metric: aggregate([values[metric] for values in per_answer]) for metric, aggregate in task.aggregation().items()}


def test_the_task_yaml_lists_exactly_the_metrics_process_results_emits(tmp_path, clips):
    task = _arena_task(tmp_path)
    listed = set(task.aggregation())
    assert set(quality.QUALITY_METRICS) <= listed
    for metric in quality.QUALITY_METRICS:
        assert task.aggregation()[metric] is getattr(quality, metric)
        assert task.higher_is_better()[metric] is (metric.startswith(("dnsmos_", "speaker_")) and not metric.endswith("_items"))
    doc = task.dataset["test"][0]
    for response in (_answer(clips, "voice0"), "text only", FailedGeneration("boom")):
        assert set(task.process_results(doc, [response])) == listed


def test_a_runs_quality_figures_count_refusals_with_their_reasons(tmp_path, clips):
    task = _arena_task(tmp_path)
    answers = [_answer(clips, "voice0", "the cat sat on the mat", "the cat sat on a mat"),
               _answer(clips, "voice1", "keep going", "keep going"),
               _answer(clips, "voice2", transcript=None),
               _answer(clips, "short"), _answer(clips, "silent"), "a text answer", FailedGeneration("timed out")]
    results = _aggregate(task, answers)

    scored = [quality.dnsmos_scores(clips[f"voice{i}"]) for i in range(3)]  # again, clip by clip: DNSMOS is deterministic
    for metric, key in quality.DNSMOS_METRICS.items():
        assert results[metric] == pytest.approx(np.mean([s[key] for s in scored]))
    assert results["dnsmos_refused_items"] == 2 and results["speaker_refused_items"] == 2
    embeddings = [quality.speaker_embedding(clips[f"voice{i}"]) for i in range(3)]
    assert (results["speaker_consistency"], results["speaker_consistency_min"]) == pytest.approx(quality.voice_consistency(embeddings))
    assert results["asr_wer"] == pytest.approx(1 / 12)  # 6 + 2 words, and "an answer" twice: one edit
    assert (results["spoken_items"], results["unspoken_items"], results["failed_items"]) == (5, 1, 1)

    record = provenance.of(TASK)["speech_quality"]
    assert record["enabled"] is True
    dnsmos = record["dnsmos"]
    assert (dnsmos["answers"], dnsmos["spoken"], dnsmos["scored"], dnsmos["refused"]) == (7, 5, 3, 2)
    assert any(str(clips["short"]) in r and "too short" in r for r in dnsmos["reasons"])
    assert any(str(clips["silent"]) in r and "silent" in r for r in dnsmos["reasons"])
    assert dnsmos["ovrl_mos"] == pytest.approx(results["dnsmos_ovrl"], abs=1e-4) and dnsmos["package"].startswith("speechmos")
    speaker = record["speaker"]
    assert (speaker["scored"], speaker["refused"], len(speaker["reasons"])) == (3, 2, 2)
    assert record["asr_wer"]["spoken_without_transcript"] == 1  # voice2


def test_a_lone_answer_or_none_gives_no_speaker_figure(clips):
    lone = quality.task_items(_answer(clips, "voice0"), "quality_lone_check")
    assert math.isnan(quality.speaker_consistency([lone["speaker_consistency"], None]))
    assert provenance.of("quality_lone_check")["speech_quality"]["speaker"]["scored"] == 1
    unspoken = quality.task_items("text only", "quality_lone_check")
    assert unspoken["asr_wer"] is None and unspoken["dnsmos_ovrl"] == {"task": "quality_lone_check", "path": None, "sha256": None}
    assert math.isnan(quality.dnsmos_ovrl([unspoken["dnsmos_ovrl"]])) and quality.dnsmos_refused_items([unspoken["dnsmos_ovrl"]]) == 0


def test_switched_off_the_audio_figures_are_nan_and_say_so(tmp_path, clips):
    task = _arena_task(tmp_path, speech_quality=False)
    results = _aggregate(task, [_answer(clips, "voice0", "hello world", "hello word"), _answer(clips, "voice1")])
    audio_metrics = [m for m in quality.QUALITY_METRICS if m != "asr_wer"]
    assert all(math.isnan(results[metric]) for metric in audio_metrics)
    assert results["asr_wer"] == pytest.approx(1 / 4)  # compares texts: no audio analysis to switch off
    record = provenance.of(TASK)["speech_quality"]
    assert record["enabled"] is False
    assert record["dnsmos"] == record["speaker"] == {"switched_off": "--metadata speech_quality=false"}

    assert quality.configure(TASK, {"speech_quality": {"s2s_arena": "false"}}, "s2s_arena") is False
    assert quality.configure(TASK, {}, "s2s_arena") is True
    with pytest.raises(OptionError, match="--metadata speech_quality='sometimes'"):
        quality.configure(TASK, {"speech_quality": "sometimes"}, "s2s_arena")


def test_a_missing_package_stops_the_task_at_load_unless_switched_off(monkeypatch):
    monkeypatch.setitem(sys.modules, "resemblyzer", None)  # what an absent package looks like to an import
    with pytest.raises(ImportError, match=r"s2s_arena_medical: .* need resemblyzer: pip install .*\[quality\].*speech_quality"):
        quality.configure("s2s_arena_medical", {})
    assert quality.configure("s2s_arena_medical", {"speech_quality": False}) is False


def test_a_run_with_no_spoken_answer_still_reads_as_scoring_nothing(tmp_path):
    from lm_eval_speech.outcomes import run_problems

    task = _arena_task(tmp_path)
    results = _aggregate(task, [FailedGeneration("timed out"), FailedGeneration("timed out")])
    assert results["dnsmos_refused_items"] == 0 and math.isnan(results["dnsmos_ovrl"])  # the counts are not scores
    summary = {"results": {TASK: {f"{metric},none": value for metric, value in results.items()}},
               "n-samples": {TASK: {"effective": 2}}, "configs": {TASK: {"metadata": {}}}}
    assert run_problems(summary) == [f"{TASK}: scored no item of 2 (failed_items=2)"]
