"""Per-model acoustic figures for S2S-Arena: how the spoken answers sound and whether they say the text.

* :func:`dnsmos_scores`: Microsoft's DNSMOS P.835 (OVRL, SIG, BAK) and P.808 MOS of one clip, through
  the ``speechmos`` package (its ONNX models ship in the wheel). DNSMOS rates 16 kHz mono; any other
  rate is resampled with soxr and multichannel audio is downmixed (:func:`lm_eval_speech.speech.audio.load_audio`).
* :func:`asr_consistency`: error rate between each text answer and Whisper's transcript of its audio.
* :func:`model_acoustics`: both, plus durations, over one model's answers.

How speechmos scores a clip (0.0.1.1, read from its source; this module leans on it):

* It cuts the clip into 9.01 s windows at 1 s hops and averages the windows' scores; up to ~1 s at
  the end that no window reaches is left out. Cost grows with length: one window per second past
  8 s, each 0.2-1 s of CPU.
* A clip shorter than 9.01 s is tiled (doubled until long enough), as Microsoft's reference script
  does. The seams pull scores down for short clips: the same Piper sentence scored OVRL 3.22 whole
  (7.6 s), 2.88 cut to 2 s, 2.65 to 1 s, 2.05 to 0.5 s. Below :data:`MIN_SECONDS` the figure says
  more about the seams than the speech, so such clips are refused.
* Empty audio makes its doubling loop spin forever, and digital silence still gets a score (OVRL
  ~1.8, above white noise's ~1.1). Both are refused here before speechmos sees them.
* Samples outside [-1, 1] make it raise; resampling overshoot is clipped back here, a source that
  is already out of range is refused.
* It keeps its two ONNX sessions in a module global and rebuilds them only when the model type
  changes, so they load once per process. The first call of a process still takes seconds to tens
  of seconds: importing librosa (scipy.signal, numba) dominates, not the sessions.

A clip DNSMOS cannot score raises :class:`~lm_eval_speech.speech.audio.AudioError` whose message names the
file (``<array>`` for arrays) and the reason; :func:`model_acoustics` counts those.
"""

from __future__ import annotations

import math
import os
import re
import statistics
import unicodedata
from typing import Any, Iterable, Sequence

import numpy as np

from lm_eval_speech.speech.audio import ARRAY_LABEL, AudioError, load_audio, resample

__all__ = [
    "DNSMOS_KEYS",
    "DNSMOS_RATE",
    "MIN_SECONDS",
    "SILENCE_DBFS",
    "asr_consistency",
    "dnsmos_scores",
    "model_acoustics",
    "normalize_text",
]

DNSMOS_RATE = 16000
DNSMOS_KEYS = ("ovrl_mos", "sig_mos", "bak_mos", "p808_mos")
# Shorter clips are mostly tiling seams to DNSMOS (see the module docstring).
MIN_SECONDS = 1.0
# A clip whose peak stays below this is silence: nothing for DNSMOS to rate.
SILENCE_DBFS = -70.0
# How many DNSMOS refusals model_acoustics quotes (all are counted).
REASONS_SHOWN = 5


# ----------------------------------------------------------------------------------------------
# DNSMOS


def speechmos_run():
    try:
        from speechmos import dnsmos
    except ImportError as error:  # speechmos needs librosa and onnxruntime, and declares neither
        raise ImportError(
            f'DNSMOS needs speechmos, librosa and onnxruntime ({error}): pip install "lm-eval-speech[arena]"'
        ) from error
    return dnsmos.run


def dnsmos_scores(path_or_array: Any, sampling_rate: int | None = None, *, min_seconds: float = MIN_SECONDS) -> dict:
    """DNSMOS of one clip: ``{"ovrl_mos", "sig_mos", "bak_mos", "p808_mos"}`` as floats (1-5 scale).

    ``path_or_array``: an audio file (anything :func:`~lm_eval_speech.speech.audio.load_audio` decodes) or
    samples (1-D, or 2-D frames x channels) with their ``sampling_rate``. Raises
    :class:`~lm_eval_speech.speech.audio.AudioError` naming the file for audio it cannot score: missing,
    undecodable, empty, shorter than ``min_seconds``, silent (peak below :data:`SILENCE_DBFS`), or
    samples outside [-1, 1].
    """
    if isinstance(path_or_array, (str, os.PathLike)):
        source: Any = path_or_array
        label = os.fspath(path_or_array)
    else:
        if sampling_rate is None:
            raise AudioError("an array needs its sampling_rate", file=ARRAY_LABEL)
        source = {"array": path_or_array, "sampling_rate": sampling_rate}
        label = ARRAY_LABEL
    array, rate = load_audio(source)  # raises for missing, corrupt and empty audio
    seconds = array.shape[0] / rate
    if seconds < min_seconds:
        raise AudioError(f"too short for DNSMOS: {seconds:.3f} s, under {min_seconds:g} s", file=label)
    peak = float(np.max(np.abs(array)))
    if peak > 1.0:
        raise AudioError(f"peak {peak:.4g} exceeds full scale; DNSMOS rates samples in [-1, 1]", file=label)
    if peak == 0.0 or 20 * math.log10(peak) < SILENCE_DBFS:
        raise AudioError(f"silent: peak below {SILENCE_DBFS:g} dBFS, nothing for DNSMOS to rate", file=label)
    audio = resample(array, rate, DNSMOS_RATE)
    np.clip(audio, -1.0, 1.0, out=audio)  # soxr's overshoot on a full-scale source
    scores = speechmos_run()(audio, sr=DNSMOS_RATE)
    return {key: float(scores[key]) for key in DNSMOS_KEYS}


# ----------------------------------------------------------------------------------------------
# ASR consistency

# Han (with extensions and compatibility ideographs), kana and Hangul: scored per character.
_CJK = (
    "\u1100-\u11ff\u3040-\u30ff\u3130-\u318f\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    "\ua960-\ua97f\uac00-\ud7af\ud7b0-\ud7ff\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003134f"
)
_CJK_CHAR = re.compile(f"[{_CJK}]")
_CJK_TOKENS = re.compile(f"[{_CJK}]|[^\\s{_CJK}]+")
_APOSTROPHES = dict.fromkeys(map(ord, "'\u2019\u02bc\u2018"))


def normalize_text(text: str) -> str:
    """The normalisation both sides of :func:`asr_consistency` get.

    NFKC (full-width forms to ASCII), lowercase, apostrophes removed (so "don't" and "dont" agree),
    every other punctuation or symbol character (Unicode categories P* and S*: commas, hyphens,
    Markdown ``*``/``#``, ``%``, emoji) turned into a space, whitespace collapsed. Digits and
    spelled-out numbers are not reconciled: "42" against "forty two" counts as errors.
    """
    text = unicodedata.normalize("NFKC", text or "").lower().translate(_APOSTROPHES)
    text = "".join(" " if unicodedata.category(c)[0] in "PS" else c for c in text)
    return " ".join(text.split())


def _tokens(text: str, per_character: bool) -> list[str]:
    # Per character for CJK (spaces ignored), but a run of Latin letters or digits stays one token.
    return _CJK_TOKENS.findall(text) if per_character else text.split()


def asr_consistency(pairs: Iterable[tuple[str, str]]) -> dict:
    """How closely each spoken answer says its text: ``pairs`` of (text answer, transcript of its audio).

    Both sides go through :func:`normalize_text`; the text answer is the reference. A pair with CJK
    characters on either side is scored per character (CER; a Latin word inside it stays one token),
    the others per word. Returns:

    * ``wer``: corpus error rate, total edits / total reference tokens over all pairs (jiwer's list
      form; words, or characters for CJK pairs); None when no pair has a reference token.
    * ``items``: pairs scored; ``char_level_items``: of those, how many per character.
    * ``mean_item_wer``: mean of the per-pair rates, over pairs with a reference token.
    * ``edits``, ``reference_tokens``: the corpus figure's numerator and denominator.
    * ``empty_references``: pairs whose text is empty after normalisation; their transcript's tokens
      count as insertions in ``edits`` but they have no rate of their own.
    """
    import jiwer

    references: list[str] = []
    hypotheses: list[str] = []
    items = char_level = empty = 0
    empty_insertions = 0
    for text, transcript in pairs:
        items += 1
        reference, hypothesis = normalize_text(text), normalize_text(transcript)
        per_character = bool(_CJK_CHAR.search(reference) or _CJK_CHAR.search(hypothesis))
        char_level += per_character
        reference_tokens, hypothesis_tokens = _tokens(reference, per_character), _tokens(hypothesis, per_character)
        if not reference_tokens:  # jiwer 3 refuses empty references
            empty += 1
            empty_insertions += len(hypothesis_tokens)
            continue
        references.append(" ".join(reference_tokens))
        hypotheses.append(" ".join(hypothesis_tokens))
    edits, total, rates = empty_insertions, 0, []
    if references:
        output = jiwer.process_words(references, hypotheses)
        edits += output.substitutions + output.deletions + output.insertions
        # Per-pair edits from the alignment, so one jiwer call gives both figures.
        for reference_words, chunks in zip(output.references, output.alignments):
            pair_edits = sum(
                (c.hyp_end_idx - c.hyp_start_idx) if c.type == "insert" else (c.ref_end_idx - c.ref_start_idx)
                for c in chunks
                if c.type != "equal"
            )
            total += len(reference_words)
            rates.append(pair_edits / len(reference_words))
    return {
        "wer": edits / total if total else None,
        "items": items,
        "mean_item_wer": sum(rates) / len(rates) if rates else None,
        "char_level_items": char_level,
        "edits": edits,
        "reference_tokens": total,
        "empty_references": empty,
    }


# ----------------------------------------------------------------------------------------------
# one model


def model_acoustics(
    records: Sequence[dict | None], texts: Sequence[str | None], *, dnsmos: bool = True, progress: bool = False
) -> dict:
    """Acoustic figures for one model: ``records[i]`` is the speech record of its answer to item i
    (``{"path", "sampling_rate", "duration", "sha256", "transcript"?}``, see
    :mod:`lm_eval_speech.speech.output`; None where it gave no audio) and ``texts[i]`` its text answer.

    Returns:

    * ``items``; ``with_audio`` (the record's file exists and opens); ``no_audio`` (no record);
      ``missing_files`` (a record whose file is absent, or which has no path); ``unreadable_files``.
    * ``duration``: ``{"mean", "median", "total"}`` seconds over the files that open (as the file
      holds them, not as the record says), None without any.
    * ``dnsmos`` (None when ``dnsmos=False``): the four means over the clips it scored, ``scored``,
      ``unscored`` (files that open but DNSMOS refused: too short, silent, ...) and ``reasons``
      (the first :data:`REASONS_SHOWN` refusals).
    * ``asr``: :func:`asr_consistency` over the records with a ``transcript`` (an empty transcript
      counts: Whisper heard nothing), plus ``without_transcript`` (items with no transcript,
      including those with no record).
    * ``problems``: one line per item without audio, missing, unreadable or empty (0 frames) file,
      or record whose duration disagrees with its file; naming the item index and the file.
    """
    import soundfile as sf
    from tqdm import tqdm

    records, texts = list(records), list(texts)
    if len(records) != len(texts):
        raise ValueError(f"model_acoustics: {len(records)} records but {len(texts)} texts")
    problems: list[str] = []
    durations: list[float] = []
    scores: dict[str, list[float]] = {key: [] for key in DNSMOS_KEYS}
    reasons: list[str] = []
    unscored = no_audio = missing = unreadable = without_transcript = 0
    pairs: list[tuple[str, str]] = []
    for index, (record, text) in enumerate(tqdm(zip(records, texts), total=len(records), disable=not progress,
                                                desc="acoustics", unit="answer")):
        if record is None:
            no_audio += 1
            without_transcript += 1
            problems.append(f"item {index}: no spoken answer (no speech record)")
            continue
        if not isinstance(record, dict):
            raise TypeError(f"model_acoustics: item {index}: a speech record is a dict or None, not {type(record).__name__}")
        transcript = record.get("transcript")
        if transcript is None:
            without_transcript += 1
        else:
            pairs.append((text or "", transcript))
        path = record.get("path")
        if not path:
            missing += 1
            problems.append(f"item {index}: speech record has no path")
            continue
        if not os.path.isfile(path):
            missing += 1
            problems.append(f"item {index}: {path}: audio file not found")
            continue
        try:
            info = sf.info(path)
        except (sf.SoundFileError, RuntimeError, OSError) as error:
            unreadable += 1
            problems.append(f"item {index}: {path}: cannot open audio: {error}")
            continue
        seconds = info.frames / info.samplerate
        durations.append(seconds)
        if info.frames == 0:
            problems.append(f"item {index}: {path}: empty audio (0 frames)")
        logged = record.get("duration")
        if isinstance(logged, (int, float)) and abs(logged - seconds) > 0.01:
            problems.append(f"item {index}: {path}: holds {seconds:.3f} s but its record says {logged:.3f} s")
        if not dnsmos:
            continue
        try:
            clip = dnsmos_scores(path)
        except AudioError as error:
            unscored += 1
            if len(reasons) < REASONS_SHOWN:
                reasons.append(f"item {index}: {error}")
            continue
        for key in DNSMOS_KEYS:
            scores[key].append(clip[key])

    def mean(values: list[float]) -> float | None:
        return sum(values) / len(values) if values else None

    dnsmos_figures = None
    if dnsmos:
        dnsmos_figures = {key: mean(values) for key, values in scores.items()}
        dnsmos_figures.update(scored=len(scores["ovrl_mos"]), unscored=unscored, reasons=reasons)
    return {
        "items": len(records),
        "with_audio": len(durations),
        "no_audio": no_audio,
        "missing_files": missing,
        "unreadable_files": unreadable,
        "duration": (
            {"mean": mean(durations), "median": statistics.median(durations), "total": sum(durations)} if durations else None
        ),
        "dnsmos": dnsmos_figures,
        "asr": {**asr_consistency(pairs), "without_transcript": without_transcript},
        "problems": problems,
    }
