"""S2S-Arena (v1): spoken requests answered in speech; rated afterwards by ``lm-eval-speech arena``.

The harness part generates: every model hears the input (standardised to 24 kHz mono as the
paper did; models then resample to their own rate) and answers in speech through the project's
speech-output convention. Per-sample metrics here describe the spoken answers: how many, how
long, how fast (:mod:`lm_eval_speech.speech.latency`) and how well
(:mod:`lm_eval_speech.speech.quality`: DNSMOS, Whisper's reading of the audio against the text
answer, one voice throughout; ``--metadata '{"speech_quality": false}'`` skips the audio analysis).
The battles, judges and ratings live in :mod:`lm_eval_speech.arena`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import datasets

from lm_eval_speech import __version__, data, provenance
from lm_eval_speech.speech.audio import load_audio
from lm_eval_speech.outcomes import is_failure
from lm_eval_speech.speech import latency, quality
from lm_eval_speech.speech.output import speech_of
from lm_eval_speech.tasks.s2s_arena import dataset, taxonomy

INPUT_RATE = 24000  # the paper's standardisation of every input
TASKS_KEY = "arena_tasks"

logger = logging.getLogger("lm_eval_speech.s2s_arena")


def _load(domain: str, metadata: dict) -> datasets.DatasetDict:
    root, source = dataset.locate(metadata)
    clips, unassigned = dataset.audio_files(root)
    if unassigned:
        logger.warning("s2s_arena: %d audio file(s) under %s belong to no task and are not inputs: %s",
                       len(unassigned), root, ", ".join(unassigned[:5]))
    wanted = _wanted_tasks(metadata)
    reading = dataset.read_metadata(_metadata_roots(root, source), [relpath for relpath, _ in clips],
                                    dataset.conflict_policy(metadata))
    read_audio = data.flag(metadata, data.LOAD_AUDIO_KEY, True, "s2s_arena")
    quality.configure(_task_name(domain), metadata, "s2s_arena")
    left_out = set(reading.left_out)
    docs = [
        _doc(relpath, task, reading.fields.get(relpath, {}), str(root / relpath) if read_audio else "")
        for relpath, task in clips
        if relpath not in left_out and _in_scope(task, domain, wanted)
    ]
    if not docs:
        raise data.DataError(
            f"s2s_arena: no input clips for domain {domain} under {root}; expected <task folder>/<clip> "
            f"with folders named as in the authors' data ({', '.join(sorted(taxonomy.TASK_DOMAIN))})"
        )
    with_metadata = sum(1 for d in docs if d["transcript"])
    provenance.record(
        _task_name(domain), package_version=__version__,
        data={**source, "clips": len(docs), "clips_with_transcript": with_metadata, "unassigned_files": unassigned,
              "metadata": reading.counts, "audio_loaded": read_audio, "input_rate": INPUT_RATE},
    )
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(docs)})


def _task_name(domain: str) -> str:
    return f"s2s_arena_{domain}"


def _wanted_tasks(metadata: dict) -> list[str] | None:
    wanted = metadata.get(TASKS_KEY)
    if not wanted:
        return None
    wanted = [wanted] if isinstance(wanted, str) else list(wanted)
    unknown = sorted(set(wanted) - set(taxonomy.TASK_DOMAIN))
    if unknown:
        raise data.DataError(f"s2s_arena: --metadata {TASKS_KEY} names unknown tasks {unknown}; known: {sorted(taxonomy.TASK_DOMAIN)}")
    return wanted


def _in_scope(task: str, domain: str | None, wanted: list[str] | None) -> bool:
    return (not domain or taxonomy.TASK_DOMAIN[task] == domain) and (not wanted or task in wanted)


def _metadata_roots(root: Path, source: dict) -> list[Path]:
    """Where metadata is read, later roots winning: the Space's files (hub runs only), then the data folder."""
    if source.get("data_dir"):
        return [root]
    space = dataset.fetch_space_metadata(root)
    return ([space] if space is not None else []) + [root]


def _doc(relpath: str, task: str, fields: dict, audio_file: str) -> dict:
    description = fields.get("task_description", "")
    return {
        "input_id": relpath,
        "domain": taxonomy.TASK_DOMAIN[task],
        "arena_task": task,
        "task_title": taxonomy.TASK_TITLES[task],
        "transcript": fields.get("transcript", ""),
        "task_description": description,
        # the Space names no target field: what the task asks for (its description) is what is judged
        "evaluation_target": fields.get("evaluation_target") or description,
        "level": fields.get("level", ""),
        "category": fields.get("category", ""),
        "audio_file": audio_file,
        "label": f"{relpath} ({task})",
    }


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
    array, rate = load_audio(doc["audio_file"], target_sr=INPUT_RATE, item=f"s2s_arena {doc['label']}")
    return [{"array": array, "sampling_rate": rate}]


def process_results(doc: dict, results: list) -> dict:
    response = results[0]
    record = None if is_failure(response) else speech_of(response)
    task = _task_name(doc["domain"])
    return {
        "spoken_items": int(record is not None),
        "unspoken_items": int(record is None and not is_failure(response)),
        "failed_items": int(is_failure(response)),
        "speech_seconds": record["duration"] if record else None,
        **latency.task_items(record, task),
        **quality.task_items(response, task),
    }


def mean_present(items: list) -> float:
    """Mean over the items that have a value (spoken answers); NaN when there are none."""
    values = [float(v) for v in items if v is not None]
    return sum(values) / len(values) if values else float("nan")
