"""Per-model acoustic figures for S2S-Arena: how the spoken answers sound and whether they say the text.

:func:`model_acoustics` gives, over one model's answers, durations, DNSMOS and the error rate between
each text answer and Whisper's transcript of its audio. The figures themselves are the spoken-answer
quality metrics of :mod:`lm_eval_speech.speech.quality` (DNSMOS through speechmos, with its
refusals; :func:`~lm_eval_speech.speech.quality.asr_consistency`); this module applies them to an
arena run's answers and checks the run's audio files.
"""

from __future__ import annotations

import os
import statistics
from typing import Sequence

from lm_eval_speech.speech.audio import AudioError
# Re-exported: the arena command checks for speechmos through this module.
from lm_eval_speech.speech.quality import DNSMOS_KEYS, asr_consistency, dnsmos_scores, speaker_embedding, speechmos_run, voice_consistency

__all__ = ["DNSMOS_KEYS", "asr_consistency", "dnsmos_scores", "model_acoustics", "speechmos_run"]

# How many DNSMOS refusals model_acoustics quotes (all are counted).
REASONS_SHOWN = 5


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
    * ``speaker`` (None when ``dnsmos=False``): ``consistency`` and ``min`` (resemblyzer, as the
      ``speaker_consistency`` metric of :mod:`lm_eval_speech.speech.quality`; None under two embedded
      answers), ``embedded``, ``refused`` and ``reasons``.
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
    unscored = no_audio = missing = unreadable = without_transcript = speaker_refused = 0
    embeddings: list = []
    speaker_reasons: list[str] = []
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
            embeddings.append(speaker_embedding(path))
        except AudioError as error:
            speaker_refused += 1
            if len(speaker_reasons) < REASONS_SHOWN:
                speaker_reasons.append(f"item {index}: {error}")
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
    speaker_figures = None
    if dnsmos:  # one voice across the model's answers (quality.voice_consistency), from two answers on
        mean_similarity, min_similarity = voice_consistency(embeddings) if len(embeddings) >= 2 else (None, None)
        speaker_figures = {"consistency": mean_similarity, "min": min_similarity, "embedded": len(embeddings),
                           "refused": speaker_refused, "reasons": speaker_reasons}
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
        "speaker": speaker_figures,
        "asr": {**asr_consistency(pairs), "without_transcript": without_transcript},
        "problems": problems,
    }
