"""SpeechInstructBench (SIB) closed-ended: data, audio, response reading and metrics.

Reads as the authors' pipeline does (spec: ../shared/spec/benchmarks.md §1):
data (``closed-ended/closed_{variant}_{en|cn}.jsonl``) → the model hears the instruction and
gets a fixed text prompt → responses are read as ``close.py`` reads them → IFEval-style checkers
with SIB's Chinese changes (``checkers.py``) → prompt- and instruction-level accuracy.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter

import datasets

from lm_eval_speech import __version__, audio, data
from lm_eval_speech.outcomes import is_failure
from lm_eval_speech.tasks.speechinstruct import checkers

SIB_HUB = data.HubSource("ddwang2000/SpeechInstructBench")
VARIANTS = ("standard", "background", "accent", "paralinguistics", "disfluency")
# The dataset names its Chinese files and folders "cn".
LANGUAGE_FILE_TAGS = {"en": "en", "zh": "cn"}
# The fixed text prompt of the authors' inference.py; the instruction itself is only heard.
INFERENCE_PROMPT = "You are a helpful AI assistant. Please answer the question based on the provided audio."
CHECKERS_VERSION = "SpeechInstructBench@34f7681 closed-ended checkers (IFEval + Chinese changes)"
INVALID_ITEMS_KEY = "invalid_items"
REQUIRED_FIELDS = {"key": (int, str), "prompt": str, "instruction_id_list": list, "kwargs": list}

logger = logging.getLogger("lm_eval_speech.speechinstruct")


def doc_to_text(doc: dict) -> str:
    return "<audio>" + INFERENCE_PROMPT


def load_closed_ended(language: str, variant: str, **metadata) -> datasets.DatasetDict:
    """``custom_dataset`` of the closed-ended tasks (lm-eval passes ``--metadata`` as keywords)."""
    if language not in LANGUAGE_FILE_TAGS or variant not in VARIANTS:
        raise data.DataError(f"speechinstruct: unknown language/variant {language!r}/{variant!r}")
    name = f"speechinstruct_close_{language}_{variant}"
    relpath = f"closed-ended/closed_{variant}_{LANGUAGE_FILE_TAGS[language]}.jsonl"
    files = data.BenchmarkFiles(metadata, SIB_HUB, benchmark=name)
    path = files.file(relpath)
    rows = data.read_jsonl_lines(path, label=str(path))

    docs, invalid = [], []
    for row_index, (line, row) in enumerate(rows):
        # The file's own line number: blank lines are skipped, so it can differ from row_index + 1.
        label = f"{relpath} line {line} (key={row.get('key')!r})"
        problem = _validate_row(row)
        if problem:
            invalid.append(f"{label}: {problem}")
            continue
        docs.append(
            {
                "key": row["key"],
                "prompt": row["prompt"],
                "instruction_id_list": list(row["instruction_id_list"]),
                # JSON text: the argument dicts differ in keys and types from item to item.
                "kwargs": json.dumps(row["kwargs"], ensure_ascii=False),
                "audio_path": row.get("audio_path"),
                "audio_file": "",
                "row": row_index,
                "label": label,
            }
        )
    skipped = _handle_invalid(invalid, metadata.get(INVALID_ITEMS_KEY, "error"), name)

    load_audio = data.flag(metadata, data.LOAD_AUDIO_KEY, True)
    if load_audio:
        missing_field = [d["label"] for d in docs if not isinstance(d["audio_path"], str) or not d["audio_path"]]
        if missing_field:
            raise data.DataError(f"{name}: items without an audio_path: " + "; ".join(missing_field[:20]))
        resolved = files.resolve_item_files(
            [d["audio_path"] for d in docs], listed_in=relpath, items=[d["label"] for d in docs]
        )
        for doc, audio_file in zip(docs, resolved, strict=True):
            doc["audio_file"] = str(audio_file)

    if len({type(d["key"]) for d in docs}) > 1:  # Arrow needs one type per column
        for doc in docs:
            doc["key"] = str(doc["key"])
    prompt_counts = Counter(d["prompt"] for d in docs)
    data.record_provenance(
        metadata,
        package_version=__version__,
        checkers=CHECKERS_VERSION,
        prompt_sha256=hashlib.sha256(doc_to_text({}).encode("utf-8")).hexdigest(),
        data={
            **files.describe(),
            "file": relpath,
            "sha256": data.sha256_file(path),
            "items_in_file": len(rows),
            "items": len(docs),
            "skipped_invalid_items": skipped,
            "items_sharing_a_prompt": sum(n for n in prompt_counts.values() if n > 1),
            "audio_loaded": load_audio,
        },
    )
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(docs)})


def _validate_row(row: dict) -> str | None:
    for field, kind in REQUIRED_FIELDS.items():
        if field not in row:
            return f"missing field {field!r}"
        if not isinstance(row[field], kind) or isinstance(row[field], bool):
            return f"field {field!r} has type {type(row[field]).__name__}"
    ids, kwargs = row["instruction_id_list"], row["kwargs"]
    if not ids:
        return "empty instruction_id_list"
    if len(ids) != len(kwargs):
        return f"{len(ids)} instruction ids but {len(kwargs)} kwargs entries"
    for instruction_id, arguments in zip(ids, kwargs):
        if arguments is not None and not isinstance(arguments, dict):
            return f"kwargs for {instruction_id!r} is not an object"
        try:
            checkers.build_instruction(instruction_id, arguments, row["prompt"])
        except checkers.CheckerArgumentError as err:
            return str(err)
    return None


def _handle_invalid(invalid: list[str], policy: str, name: str) -> int:
    if not invalid:
        return 0
    if policy == "skip":
        for problem in invalid:
            logger.warning("%s: skipped invalid item: %s", name, problem)
        return len(invalid)
    if policy != "error":
        raise data.DataError(f'{name}: --metadata {INVALID_ITEMS_KEY} must be "error" or "skip", not {policy!r}')
    more = f"\n... and {len(invalid) - 20} more" if len(invalid) > 20 else ""
    raise data.DataError(
        f"{name}: {len(invalid)} invalid item(s); upstream would score them with random or crashing "
        f'checkers. Fix the data, or pass --metadata \'{{"{INVALID_ITEMS_KEY}": "skip"}}\' to leave them '
        "out (they are counted in the results).\n" + "\n".join(invalid[:20]) + more
    )


def doc_to_audio(doc: dict) -> list[dict]:
    if not doc["audio_file"]:
        return []  # load_audio=false: scoring stored responses
    return [audio.audio_clip(doc["audio_file"], item=f"speechinstruct {doc['label']}")]


def read_responses(resps: list[list[str]], docs: list[dict]) -> list[str]:
    """Responses as ``close.py``'s ``read_prompt_to_response_dict`` reads them.

    A leading ``<1>``, ``<2>`` or ``<3>`` is cut off (then the text is stripped), and responses
    are keyed by prompt text, so items sharing a prompt all get the response of the last such
    item in the file.
    """
    responses = [_strip_tag(r[0]) for r in resps]
    last = {}  # prompt -> position of the item that comes last in the file
    for position, doc in enumerate(docs):
        best = last.get(doc["prompt"])
        if best is None or doc["row"] > docs[best]["row"]:
            last[doc["prompt"]] = position
    if len(last) < len(docs) and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise RuntimeError(
            f"speechinstruct: {len(docs) - len(last)} items share a prompt with a later item; upstream "
            "gives them that item's response, which needs all of them in one process. Run this task "
            "without data parallelism."
        )
    return [responses[last[doc["prompt"]]] for doc in docs]


def _strip_tag(response: str) -> str:
    if is_failure(response):
        return response
    if response.startswith(("<1>", "<2>", "<3>")):
        return response[3:].strip()
    return response


def process_results(doc: dict, results: list[str]) -> dict:
    response = results[0]
    if is_failure(response):
        logger.warning("speechinstruct %s: no response (%s); left out of the scores", doc["label"], response.reason)
        return {"failed_items": 1}
    ids, kwargs = doc["instruction_id_list"], json.loads(doc["kwargs"])
    strict, loose = checkers.follows(ids, kwargs, doc["prompt"], response)
    return {
        "prompt_level_strict_acc": all(strict),
        "inst_level_strict_acc": strict,
        "prompt_level_loose_acc": all(loose),
        "inst_level_loose_acc": loose,
        # The leaderboard's P./I. Acc: the mean of strict and loose (close.py's mean-prompt / mean-instruction).
        "prompt_level_acc": (all(strict) + all(loose)) / 2,
        "inst_level_acc": [(s + lo) / 2 for s, lo in zip(strict, loose, strict=True)],
        "failed_items": 0,
    }


def agg_inst_level_acc(items: list[list[float]]) -> float:
    """Instruction level: every instruction of every item counts once (micro average)."""
    flat = [value for item in items for value in item]
    return sum(flat) / len(flat)
