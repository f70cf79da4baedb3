"""Spoken-answer quality: metrics any speech-out task can request through its YAML.

Three figures over a task's spoken answers (the audio files of :mod:`lm_eval_speech.speech.output`):

* **DNSMOS** (``dnsmos_ovrl``, ``dnsmos_sig``, ``dnsmos_bak``, ``dnsmos_p808``): Microsoft's DNSMOS
  P.835 overall / signal / background and P.808 MOS (1-5, higher is better) through ``speechmos``
  (its ONNX models ship in the wheel; offline). The mean over the answers it could score;
  ``dnsmos_refused_items`` counts the answers it refused (too short, silent, empty, missing file).
* **Text-speech consistency** (``asr_wer``): corpus error rate between each text answer and
  Whisper's transcript of its audio (:func:`asr_consistency`: normalised, CJK per character).
  The transcript is the one the speech-output convention makes when the task sets
  ``speech_transcript: true`` in its ``generation_kwargs``; without transcripts it is NaN.
* **Speaker consistency** (``speaker_consistency``, ``speaker_consistency_min``): whether a run's
  answers sound like one voice. resemblyzer (its encoder weights ship in the wheel; CPU) embeds
  each answer (:func:`speaker_embedding`: 256-d, unit length); the metric is the mean, over the
  answers, of the cosine similarity between an answer's embedding and the run's mean embedding
  (the mean of all answers' embeddings, renormalised); ``_min`` is the lowest such similarity (the
  answer least like the rest). 1.0 is one voice throughout. Computed per task (for ``s2s_arena``,
  per domain) and only from two embedded answers on; ``speaker_refused_items`` counts answers
  with under :data:`SPEAKER_MIN_SECONDS` of voiced audio (or silent, empty, missing).

Each refusal is counted and its reason (naming the file) lands in the task's provenance
(``configs.<task>.metadata.lm_eval_speech.speech_quality``), with the figures' counts; it is never
scored as 0.

How a task requests them
------------------------

``process_results`` adds the per-answer items (cheap: the speech record's path and hash, the text
and transcript; the audio is analysed when lm-eval aggregates, so the ONNX sessions and the
encoder load once and only where the metrics are on)::

    from lm_eval_speech.speech import quality

    def process_results(doc, results):
        return {..., **quality.task_items(results[0], "my_task")}

and its YAML lists the metrics (all of :data:`QUALITY_METRICS`, or the ones it wants)::

    metric_list:
      - metric: dnsmos_ovrl
        aggregation: !function lm_eval_speech.speech.quality.dnsmos_ovrl
        higher_is_better: true
      # the same for dnsmos_sig, dnsmos_bak, dnsmos_p808 (true), dnsmos_refused_items (false),
      # asr_wer (false), speaker_consistency, speaker_consistency_min (true), speaker_refused_items (false)

The audio analysis (DNSMOS and speaker consistency) is on by default; a task whose dataset loader
sees ``--metadata`` turns it off with ``--metadata '{"speech_quality": false}'`` by calling
:func:`configure` there (``s2s_arena`` does). Switched off, those metrics report NaN and the
provenance says so. ``asr_wer`` analyses no audio (it compares texts) and follows the transcripts:
``--gen_kwargs speech_transcript=false`` is what saves its cost.

How speechmos scores a clip (0.0.1.1, read from its source; :func:`dnsmos_scores` leans on it):

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

A clip that cannot be scored raises :class:`~lm_eval_speech.speech.audio.AudioError` whose message
names the file (``<array>`` for arrays) and the reason; the aggregations count those.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import logging
import math
import os
import re
import sys
import types
import unicodedata
import warnings
from typing import Any, Iterable

import numpy as np

from lm_eval_speech import provenance
from lm_eval_speech.speech.audio import ARRAY_LABEL, AudioError, load_audio, resample
from lm_eval_speech.speech.output import speech_of

logger = logging.getLogger("lm_eval_speech.speech.quality")

DNSMOS_RATE = 16000
DNSMOS_KEYS = ("ovrl_mos", "sig_mos", "bak_mos", "p808_mos")
# Shorter clips are mostly tiling seams to DNSMOS (see the module docstring).
MIN_SECONDS = 1.0
# A clip whose peak stays below this is silence: nothing to rate or embed.
SILENCE_DBFS = -70.0
SPEAKER_RATE = 16000  # resemblyzer's rate
# Voiced audio (after resemblyzer trims long silences) an embedding needs; its partials are 1.6 s.
SPEAKER_MIN_SECONDS = 1.0
# Refusal reasons kept in the provenance per figure (all are counted).
REASONS_KEPT = 20

SWITCH = "speech_quality"
DNSMOS_METRICS = {"dnsmos_ovrl": "ovrl_mos", "dnsmos_sig": "sig_mos", "dnsmos_bak": "bak_mos", "dnsmos_p808": "p808_mos"}
QUALITY_METRICS = (*DNSMOS_METRICS, "dnsmos_refused_items", "asr_wer", "speaker_consistency", "speaker_consistency_min",
                   "speaker_refused_items")
INSTALL_HINT = 'pip install "lm-eval-speech[quality]"'

# Whether the audio analysis is on, per task (set by configure; on where never set).
_ENABLED: dict[str, bool] = {}


# ----------------------------------------------------------------------------------------------
# DNSMOS


def speechmos_run():
    try:
        from speechmos import dnsmos
    except ImportError as error:  # speechmos needs librosa and onnxruntime, and declares neither
        raise ImportError(f"DNSMOS needs speechmos, librosa and onnxruntime ({error}): {INSTALL_HINT}") from error
    return dnsmos.run


def _checked_audio(path_or_array: Any, sampling_rate: int | None, min_seconds: float, what: str) -> tuple[np.ndarray, int, str]:
    """Decoded mono audio that is long enough, not silent and within full scale; else AudioError naming the file."""
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
        raise AudioError(f"too short for {what}: {seconds:.3f} s, under {min_seconds:g} s", file=label)
    peak = float(np.max(np.abs(array)))
    if peak > 1.0:
        raise AudioError(f"peak {peak:.4g} exceeds full scale; {what} rates samples in [-1, 1]", file=label)
    if peak == 0.0 or 20 * math.log10(peak) < SILENCE_DBFS:
        raise AudioError(f"silent: peak below {SILENCE_DBFS:g} dBFS, nothing for {what} to rate", file=label)
    return array, rate, label


def dnsmos_scores(path_or_array: Any, sampling_rate: int | None = None, *, min_seconds: float = MIN_SECONDS) -> dict:
    """DNSMOS of one clip: ``{"ovrl_mos", "sig_mos", "bak_mos", "p808_mos"}`` as floats (1-5 scale).

    ``path_or_array``: an audio file (anything :func:`~lm_eval_speech.speech.audio.load_audio` decodes) or
    samples (1-D, or 2-D frames x channels) with their ``sampling_rate``. Raises
    :class:`~lm_eval_speech.speech.audio.AudioError` naming the file for audio it cannot score: missing,
    undecodable, empty, shorter than ``min_seconds``, silent (peak below :data:`SILENCE_DBFS`), or
    samples outside [-1, 1].
    """
    array, rate, _ = _checked_audio(path_or_array, sampling_rate, min_seconds, "DNSMOS")
    audio = resample(array, rate, DNSMOS_RATE)
    np.clip(audio, -1.0, 1.0, out=audio)  # soxr's overshoot on a full-scale source
    scores = speechmos_run()(audio, sr=DNSMOS_RATE)
    return {key: float(scores[key]) for key in DNSMOS_KEYS}


# ----------------------------------------------------------------------------------------------
# speaker embeddings


@functools.lru_cache(maxsize=1)
def voice_encoder():
    """resemblyzer's ``VoiceEncoder`` on the CPU, loaded once per process."""
    try:
        _import_webrtcvad()
        with warnings.catch_warnings():  # resemblyzer 0.1.4 imports scipy.ndimage.morphology, deprecated
            warnings.simplefilter("ignore", DeprecationWarning)
            from resemblyzer import VoiceEncoder
    except ImportError as error:
        raise ImportError(f"speaker consistency needs resemblyzer ({error}): {INSTALL_HINT}") from error
    return VoiceEncoder("cpu", verbose=False)


def _import_webrtcvad() -> None:
    """Import webrtcvad (resemblyzer's silence trimmer) where setuptools no longer ships pkg_resources.

    webrtcvad 2.0.10 calls ``pkg_resources.get_distribution`` only to read its own version, and
    setuptools 81 removed ``pkg_resources``; a stand-in answering that one call from
    ``importlib.metadata`` is present while webrtcvad imports, and gone after.
    """
    if "webrtcvad" in sys.modules or importlib.util.find_spec("pkg_resources") is not None:
        return
    stand_in = types.ModuleType("pkg_resources")
    stand_in.get_distribution = lambda name: types.SimpleNamespace(version=importlib.metadata.version(name))
    sys.modules["pkg_resources"] = stand_in
    try:
        import webrtcvad  # noqa: F401
    finally:
        del sys.modules["pkg_resources"]


def speaker_embedding(path_or_array: Any, sampling_rate: int | None = None, *,
                      min_seconds: float = SPEAKER_MIN_SECONDS) -> np.ndarray:
    """resemblyzer's embedding of the voice in one clip: 256 floats of unit length.

    The clip is resampled to 16 kHz, then resemblyzer normalises its volume and trims long silences;
    fewer than ``min_seconds`` of what remains raises :class:`~lm_eval_speech.speech.audio.AudioError`
    naming the file, as do missing, empty, silent or out-of-range audio.
    """
    array, rate, label = _checked_audio(path_or_array, sampling_rate, 0.0, "a speaker embedding")
    encoder = voice_encoder()
    from resemblyzer import preprocess_wav

    voiced = preprocess_wav(resample(array, rate, SPEAKER_RATE))
    seconds = voiced.shape[0] / SPEAKER_RATE
    if seconds < min_seconds:
        raise AudioError(f"too short for a speaker embedding: {seconds:.3f} s of voiced audio, under {min_seconds:g} s",
                         file=label)
    return np.asarray(encoder.embed_utterance(voiced), dtype=np.float64)


def voice_consistency(embeddings: Iterable[np.ndarray]) -> tuple[float, float]:
    """(mean, min) over the embeddings of their cosine similarity to the renormalised mean embedding."""
    matrix = np.stack([e / np.linalg.norm(e) for e in embeddings])
    centre = matrix.mean(axis=0)
    similarities = matrix @ (centre / np.linalg.norm(centre))
    return float(similarities.mean()), float(similarities.min())


# ----------------------------------------------------------------------------------------------
# text-speech consistency

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
# what a task calls: the switch and the per-answer items


def configure(task: str, metadata: dict, benchmark: str | None = None) -> bool:
    """Read ``--metadata speech_quality`` (default true) for ``task``; returns whether the audio analysis is on.

    Called from the task's dataset loader (the one place a task sees ``--metadata``). ``benchmark``
    allows a mapping by benchmark (``{"speech_quality": {"s2s_arena": false}}``). When on, the
    packages the analysis needs must be installed: a missing one stops the run here, before any
    generation, rather than at aggregation.
    """
    from lm_eval_speech.data import flag
    from lm_eval_speech.options import as_bool

    enabled = flag(metadata, SWITCH, True, benchmark) if benchmark else as_bool(metadata.get(SWITCH, True), f"--metadata {SWITCH}")
    if enabled:
        missing = [name for name in ("speechmos", "librosa", "onnxruntime", "resemblyzer", "webrtcvad")
                   if importlib.util.find_spec(name) is None]
        if missing:
            raise ImportError(f"{task}: the spoken-answer quality metrics need {', '.join(missing)}: {INSTALL_HINT}, "
                              f"or switch them off with --metadata '{{\"{SWITCH}\": false}}'")
    _ENABLED[task] = enabled
    _note(task, "enabled", enabled)
    return enabled


def task_items(response: object, task: str) -> dict:
    """The per-answer values of :data:`QUALITY_METRICS` for ``response`` (a model's answer to one doc).

    Audio metrics get ``{"task", "path", "sha256"}`` (``path`` None where nothing was spoken, or
    ``{"task", "off": True}`` when :func:`configure` switched them off); ``asr_wer`` gets
    ``{"task", "text", "transcript"}`` for a spoken answer (``transcript`` None where the task asked
    for none), None for the others.
    """
    record = speech_of(response)
    if not _ENABLED.get(task, True):
        audio: dict = {"task": task, "off": True}
    else:
        audio = {"task": task, "path": record.get("path") if record else None, "sha256": record.get("sha256") if record else None}
    pair = {"task": task, "text": str(response), "transcript": record.get("transcript")} if record else None
    return {**{name: audio for name in QUALITY_METRICS if name != "asr_wer"}, "asr_wer": pair}


# ----------------------------------------------------------------------------------------------
# aggregations (referenced from task YAMLs)


def _note(task: str, part: str, value: Any) -> None:
    """Set one part of ``task``'s ``speech_quality`` provenance, keeping the others."""
    provenance.record(task, **{SWITCH: {**provenance.of(task).get(SWITCH, {}), part: value}})


def _clip_key(path: str, sha256: str | None) -> tuple:
    # The content hash names the audio; without one the file's size and time stand in for it.
    if sha256:
        return (path, sha256)
    try:
        stat = os.stat(path)
    except OSError:
        return (path, None)
    return (path, stat.st_size, stat.st_mtime_ns)


# Per-clip results by (figure, clip key): every metric of a figure reads the same clips, once.
_CLIPS: dict[tuple, Any] = {}


def _per_clip(task: str | None, part: str, compute, keys: list[tuple]) -> list:
    """``compute(path)`` of each clip (cached), or the reason it was refused (AudioError's message)."""
    new = [key for key in dict.fromkeys(keys) if (part, key) not in _CLIPS]
    if new:
        logger.info("%s: %s of %d spoken answer(s)", task, part, len(new))
    for key in new:
        try:
            _CLIPS[part, key] = compute(key[0])
        except AudioError as error:
            _CLIPS[part, key] = str(error)
    return [_CLIPS[part, key] for key in keys]


def _audio_figures(items: list, part: str, compute) -> tuple[list, dict] | None:
    """Per-clip results of the spoken answers in ``items`` and the counts for the provenance.

    None (after noting why) when the figures are switched off, or their package is missing.
    """
    items = [item for item in items if isinstance(item, dict)]
    task = items[0]["task"] if items else None
    if any(item.get("off") for item in items):
        if task:
            _note(task, part, {"switched_off": f"--metadata {SWITCH}=false"})
        return None
    spoken = [item for item in items if item.get("path")]
    try:
        results = _per_clip(task, part, compute, [_clip_key(item["path"], item.get("sha256")) for item in spoken])
    except ImportError as error:  # configure() checks first; a task that never called it may lack the package
        logger.error("%s: %s not computed: %s", task, part, error)
        if task:
            _note(task, part, {"unavailable": str(error)})
        return None
    reasons = [result for result in results if isinstance(result, str)]
    counts = {"answers": len(items), "spoken": len(spoken), "scored": len(results) - len(reasons), "refused": len(reasons),
              "reasons": reasons[:REASONS_KEPT]}
    return [result for result in results if not isinstance(result, str)], {"task": task, **counts}


def _dnsmos(items: list) -> dict | None:
    figures = _audio_figures(items, "dnsmos", dnsmos_scores)
    if figures is None:
        return None
    scores, counts = figures
    task = counts.pop("task")
    means = {key: float(np.mean([s[key] for s in scores])) if scores else float("nan") for key in DNSMOS_KEYS}
    if task:
        _note(task, "dnsmos", {**counts, **{key: _rounded(value) for key, value in means.items()},
                               "package": _version("speechmos"), "rate": DNSMOS_RATE, "min_seconds": MIN_SECONDS})
    return {**means, "refused": counts["refused"]}


def _dnsmos_metric(metric: str, key: str):
    def aggregate(items: list) -> float:
        figures = _dnsmos(items)
        return float("nan") if figures is None else figures[key]

    aggregate.__name__ = metric
    aggregate.__doc__ = f"Mean DNSMOS {key} over the spoken answers it could score; NaN when none or switched off."
    return aggregate


dnsmos_ovrl, dnsmos_sig, dnsmos_bak, dnsmos_p808 = (_dnsmos_metric(metric, key) for metric, key in DNSMOS_METRICS.items())


def dnsmos_refused_items(items: list) -> float:
    """Spoken answers DNSMOS refused (reasons in the provenance); NaN when switched off."""
    figures = _dnsmos(items)
    return float("nan") if figures is None else figures["refused"]


def _speaker(items: list) -> dict | None:
    figures = _audio_figures(items, "speaker", speaker_embedding)
    if figures is None:
        return None
    embeddings, counts = figures
    task = counts.pop("task")
    mean = minimum = float("nan")
    if len(embeddings) >= 2:  # one answer is trivially consistent with itself
        mean, minimum = voice_consistency(embeddings)
    if task:
        _note(task, "speaker", {**counts, "consistency": _rounded(mean), "consistency_min": _rounded(minimum),
                                "encoder": _version("resemblyzer"), "min_voiced_seconds": SPEAKER_MIN_SECONDS,
                                "similarity": "cosine of each answer's embedding to the run's mean embedding"})
    return {"mean": mean, "min": minimum, "refused": counts["refused"]}


def speaker_consistency(items: list) -> float:
    """Mean cosine similarity of each spoken answer's voice embedding to the run's mean embedding."""
    figures = _speaker(items)
    return float("nan") if figures is None else figures["mean"]


def speaker_consistency_min(items: list) -> float:
    """The lowest cosine similarity of a spoken answer's voice embedding to the run's mean embedding."""
    figures = _speaker(items)
    return float("nan") if figures is None else figures["min"]


def speaker_refused_items(items: list) -> float:
    """Spoken answers too short (or silent, missing) for a voice embedding; NaN when switched off."""
    figures = _speaker(items)
    return float("nan") if figures is None else figures["refused"]


def asr_wer(items: list) -> float:
    """Corpus WER of the transcripts of the spoken answers against their text answers (:func:`asr_consistency`).

    NaN when no answer has a transcript, or only empty text answers.
    """
    items = [item for item in items if isinstance(item, dict)]
    pairs = [(item["text"], item["transcript"]) for item in items if item.get("transcript") is not None]
    result = asr_consistency(pairs)
    if items:
        details = {key: value for key, value in result.items() if key != "wer"}
        _note(items[0]["task"], "asr_wer", {**details, "spoken_without_transcript": len(items) - len(pairs)})
    return float("nan") if result["wer"] is None else result["wer"]


def _rounded(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 4)


def _version(package: str) -> str:
    try:
        return f"{package} {importlib.metadata.version(package)}"
    except importlib.metadata.PackageNotFoundError:
        return package
