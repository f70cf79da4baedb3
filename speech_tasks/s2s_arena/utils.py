"""S2S-Arena (v1): spoken requests answered in speech; rated afterwards by ``lm-eval-speech arena``.

The harness part generates: every model hears the input (standardised to 24 kHz mono as the
paper did; models then resample to their own rate) and answers in speech through the project's
speech-output convention. Per-sample metrics here describe the spoken answers (how many, how
long, and how well Whisper's reading of the audio agrees with the text answer); the battles,
judges and ratings live in :mod:`lm_eval_speech.arena`.
"""

from __future__ import annotations

import logging

import datasets

from lm_eval_speech import __version__, audio, data
from lm_eval_speech.outcomes import is_failure
from lm_eval_speech.speech_output import speech_of
from lm_eval_speech.tasks.s2s_arena import dataset, taxonomy

INPUT_RATE = 24000  # the paper's standardisation of every input
TASKS_KEY = "arena_tasks"

logger = logging.getLogger("lm_eval_speech.s2s_arena")


def _load(domain: str | None, metadata: dict) -> datasets.DatasetDict:
    root, source = dataset.locate(metadata)
    clips, unassigned = dataset.audio_files(root)
    if unassigned:
        logger.warning("s2s_arena: %d audio file(s) under %s belong to no task and are not inputs: %s",
                       len(unassigned), root, ", ".join(unassigned[:5]))
    wanted = metadata.get(TASKS_KEY)
    if wanted:
        wanted = [wanted] if isinstance(wanted, str) else list(wanted)
        unknown = sorted(set(wanted) - set(taxonomy.TASK_DOMAIN))
        if unknown:
            raise data.DataError(f"s2s_arena: --metadata {TASKS_KEY} names unknown tasks {unknown}; known: {sorted(taxonomy.TASK_DOMAIN)}")
    relpaths = [relpath for relpath, _ in clips]
    # The Space's files first (hub runs only); a local metadata.jsonl then overrides them.
    metadata_roots = [root]
    if not source.get("data_dir"):
        space = dataset.fetch_space_metadata(root)
        metadata_roots = ([space] if space is not None else []) + metadata_roots
    found: dict[str, dict] = {}
    report: dict[str, int] = {}
    for metadata_root in metadata_roots:
        fields, counts = dataset.read_metadata(metadata_root, relpaths)
        for relpath, values in fields.items():
            found.setdefault(relpath, {}).update(values)
        report = {k: report.get(k, 0) + v for k, v in counts.items()}
    load_audio = data.flag(metadata, data.LOAD_AUDIO_KEY, True, "s2s_arena")
    docs = []
    for relpath, task in clips:
        if (domain and taxonomy.TASK_DOMAIN[task] != domain) or (wanted and task not in wanted):
            continue
        fields = found.get(relpath, {})
        docs.append({
            "input_id": relpath,
            "domain": taxonomy.TASK_DOMAIN[task],
            "arena_task": task,
            "task_title": taxonomy.TASK_TITLES[task],
            "transcript": fields.get("transcript", ""),
            "task_description": fields.get("task_description", ""),
            "evaluation_target": fields.get("evaluation_target", ""),
            "audio_file": str(root / relpath) if load_audio else "",
            "label": f"{relpath} ({task})",
        })
    if not docs:
        raise data.DataError(
            f"s2s_arena: no input clips for domain {domain or 'any'} under {root}; expected <task folder>/<clip> "
            f"with folders named as in the authors' data ({', '.join(sorted(taxonomy.TASK_DOMAIN))})"
        )
    with_metadata = sum(1 for d in docs if d["transcript"])
    data.record_provenance(
        metadata, package_version=__version__,
        data={**source, "clips": len(docs), "clips_with_transcript": with_metadata, "unassigned_files": unassigned,
              "metadata": report, "audio_loaded": load_audio, "input_rate": INPUT_RATE},
    )
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(docs)})


def load_all(**metadata) -> datasets.DatasetDict:
    return _load(None, metadata)


def load_education(**metadata) -> datasets.DatasetDict:
    return _load("education", metadata)


def load_social(**metadata) -> datasets.DatasetDict:
    return _load("social", metadata)


def load_entertainment(**metadata) -> datasets.DatasetDict:
    return _load("entertainment", metadata)


def load_medical(**metadata) -> datasets.DatasetDict:
    return _load("medical", metadata)


def doc_to_text(doc: dict) -> str:
    return "<audio>"  # the spoken request is the whole prompt, as in the paper


def doc_to_audio(doc: dict) -> list[dict]:
    if not doc["audio_file"]:
        return []
    array, rate = audio.load_audio(doc["audio_file"], target_sr=INPUT_RATE, item=f"s2s_arena {doc['label']}")
    return [{"array": array, "sampling_rate": rate}]


def process_results(doc: dict, results: list) -> dict:
    response = results[0]
    if is_failure(response):
        return {"spoken_items": 0, "unspoken_items": 0, "failed_items": 1, "speech_seconds": None, "asr_wer": None}
    record = speech_of(response)
    if record is None:
        return {"spoken_items": 0, "unspoken_items": 1, "failed_items": 0, "speech_seconds": None, "asr_wer": None}
    pair = (str(response), record["transcript"]) if "transcript" in record else None
    return {"spoken_items": 1, "unspoken_items": 0, "failed_items": 0, "speech_seconds": record["duration"], "asr_wer": pair}


def mean_present(items: list) -> float:
    """Mean over the items that have a value (spoken answers); NaN when there are none."""
    values = [float(v) for v in items if v is not None]
    return sum(values) / len(values) if values else float("nan")


def corpus_wer(items: list) -> float:
    """WER of the spoken answers' transcripts against their text answers (see arena.acoustics)."""
    from lm_eval_speech.arena.acoustics import asr_consistency

    pairs = [tuple(p) for p in items if p is not None]
    wer = asr_consistency(pairs)["wer"] if pairs else None
    return float("nan") if wer is None else wer  # no transcript, or only empty text answers
