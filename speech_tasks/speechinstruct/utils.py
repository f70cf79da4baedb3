"""SpeechInstructBench (SIB) closed-ended: data, audio, response reading and metrics.

Reads as the authors' pipeline does (spec: ../shared/spec/benchmarks.md §1):
data (the JSONL under ``closed-ended/`` named for the variant and language) → the model hears the
instruction and gets a fixed text prompt → responses are read as ``close.py`` reads them →
IFEval-style checkers with SIB's Chinese changes (``checkers.py``), their arguments used, drawn or
refused as upstream's code does (``arguments.py``) → prompt- and instruction-level accuracy, each
with the lowest and highest value any draw could give (``verdicts.py``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections import Counter

import datasets

from lm_eval_speech import __version__, data, provenance
from lm_eval_speech.outcomes import is_failure
from lm_eval_speech.speech.audio import audio_clip
from lm_eval_speech.tasks.speechinstruct import arguments, checkers, verdicts

SIB_HUB = data.HubSource("ddwang2000/SpeechInstructBench")
BENCHMARK = "speechinstruct"
VARIANTS = ("standard", "background", "accent", "paralinguistics", "disfluency")
# The dataset names its Chinese files and folders "cn".
LANGUAGE_FILE_TAGS = {"en": "en", "zh": "cn"}
# Words in a closed-ended file's name or folders that say which variant and language it holds.
VARIANT_WORDS = {v: v for v in VARIANTS} | {"paralinguistic": "paralinguistics"}
LANGUAGE_WORDS = {"en": "en", "english": "en", "cn": "zh", "zh": "zh", "chinese": "zh"}
CLOSED_FOLDER = "closed-ended"
# The fixed text prompt of the authors' inference.py; the instruction itself is only heard.
INFERENCE_PROMPT = "You are a helpful AI assistant. Please answer the question based on the provided audio."
CHECKERS_VERSION = "SpeechInstructBench@34f7681 closed-ended checkers (IFEval + Chinese changes)"
# What to do with items whose checkers upstream builds with randomly drawn arguments.
INVALID_ITEMS_KEY = "invalid_items"
INVALID_ITEMS_POLICIES = ("draw", "skip", "error")
DRAW_SEED_KEY = "draw_seed"
DEFAULT_DRAW_SEED = 0
DATA_FILES_KEY = "data_files"  # {task name: file}: which closed-ended file a task reads
REQUIRED_FIELDS = {"key": (int, str, float), "prompt": str, "instruction_id_list": list, "kwargs": list}
PASSES = ("strict", "loose")
# The leaderboard's metrics; each is also reported as the lowest and highest value any draw gives.
ACCURACY_METRICS = (
    "prompt_level_acc", "inst_level_acc", "prompt_level_strict_acc", "inst_level_strict_acc",
    "prompt_level_loose_acc", "inst_level_loose_acc",
)

logger = logging.getLogger("lm_eval_speech.speechinstruct")


def doc_to_text(doc: dict) -> str:
    return "<audio>" + INFERENCE_PROMPT


def load_closed_ended(language: str, variant: str, **metadata) -> datasets.DatasetDict:
    """``custom_dataset`` of the closed-ended tasks (lm-eval passes ``--metadata`` as keywords)."""
    if language not in LANGUAGE_FILE_TAGS or variant not in VARIANTS:
        raise data.DataError(f"speechinstruct: unknown language/variant {language!r}/{variant!r}")
    name = f"speechinstruct_close_{language}_{variant}"
    files = data.BenchmarkFiles(metadata, SIB_HUB, benchmark=name)
    relpath = closed_ended_file(files, name, language, variant, metadata.get(DATA_FILES_KEY))
    path = files.file(relpath)
    rows = data.read_jsonl_lines(path, label=str(path))
    policy = str(data.option(metadata, INVALID_ITEMS_KEY, BENCHMARK, "draw"))
    if policy not in INVALID_ITEMS_POLICIES:
        raise data.DataError(f"{name}: --metadata {INVALID_ITEMS_KEY} must be one of {INVALID_ITEMS_POLICIES}, not {policy!r}")
    seed = data.option(metadata, DRAW_SEED_KEY, BENCHMARK, DEFAULT_DRAW_SEED)

    docs, crashes, drawing, skipped = [], [], [], 0
    for row_index, (line, row) in enumerate(rows):
        # The file's own line number: blank lines are skipped, so it can differ from row_index + 1.
        label = f"{relpath} line {line} (key={row.get('key')!r})"
        try:
            plans = _plan_row(row)
        except (ValueError, checkers.CheckerArgumentError) as err:
            crashes.append(f"{label}: {err}")
            continue
        drawable = [p for p in plans if p.drawable]
        if drawable and policy != "draw":
            drawing.append(f"{label}: " + "; ".join(f"{p.instruction_id} draws {', '.join(p.drawable)}" for p in drawable))
            skipped += 1
            continue
        docs.append(
            {
                "key": row["key"],
                "prompt": row["prompt"],
                "instruction_id_list": list(row["instruction_id_list"]),
                # JSON text: the argument dicts differ in keys and types from item to item.
                "kwargs": json.dumps(row["kwargs"][: len(plans)], ensure_ascii=False),
                "draws": json.dumps(_draw(plans, seed, name, row["key"]), ensure_ascii=False),
                "audio_path": row.get("audio_path"),
                "audio_file": "",
                "row": row_index,
                "label": label,
            }
        )
    if crashes:
        raise data.DataError(_listing(f"{name}: {len(crashes)} item(s) that the authors' code crashes on", crashes))
    if drawing and policy == "error":
        raise data.DataError(
            _listing(
                f"{name}: {len(drawing)} item(s) whose checkers upstream builds with randomly drawn arguments. By "
                f"default they are scored with seeded draws from the same distributions; pass --metadata "
                f'\'{{"{INVALID_ITEMS_KEY}": "draw"}}\' for that, or "skip" to leave them out (counted)',
                drawing,
            )
        )
    for problem in drawing:
        logger.warning("%s: skipped (arguments drawn upstream): %s", name, problem)

    load_audio = data.flag(metadata, data.LOAD_AUDIO_KEY, True, BENCHMARK)
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
    drawn = [json.loads(d["draws"]) for d in docs]
    provenance.record(
        name,
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
        draws={
            "policy": policy,
            "seed": seed,
            "items_with_drawn_arguments": sum(1 for d in drawn if any(d["strict"])),
            "instructions_with_drawn_arguments": sum(sum(1 for x in d["strict"] if x) for d in drawn),
        },
    )
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(docs)})


def closed_ended_file(files: data.BenchmarkFiles, task: str, language: str, variant: str, chosen: object) -> str:
    """The closed-ended JSONL of one language and variant: named by ``--metadata data_files``, or the
    one file under ``closed-ended/`` (any nesting) whose name or folders name that variant and language."""
    if isinstance(chosen, dict) and chosen.get(task):
        return str(chosen[task])
    listed = [f for f in files.list_files(CLOSED_FOLDER) if f.lower().endswith(".jsonl")]
    tagged = {f: _file_tags(f) for f in listed}
    matches = [f for f, tags in tagged.items() if tags == ({variant}, {language})]
    if len(matches) == 1:
        return matches[0]
    found = "\n".join(
        f"  {f}  (variant: {'/'.join(sorted(v)) or '?'}, language: {'/'.join(sorted(lang)) or '?'})"
        for f, (v, lang) in tagged.items()
    ) or "  (no .jsonl file)"
    problem = "no closed-ended file" if not matches else f"{len(matches)} closed-ended files"
    raise data.DataError(
        f"{task}: {problem} for variant {variant!r} and language {language!r} under "
        f"{files._display(CLOSED_FOLDER)}; found:\n{found}\nName the file with --metadata "
        f'\'{{"{DATA_FILES_KEY}": {{"{task}": "{CLOSED_FOLDER}/.../FILE.jsonl"}}}}\' (a path relative to the data root).'
    )


def _file_tags(relpath: str) -> tuple[set[str], set[str]]:
    words = re.split(r"[^0-9a-z]+", relpath[len(CLOSED_FOLDER):].lower())
    return {VARIANT_WORDS[w] for w in words if w in VARIANT_WORDS}, {LANGUAGE_WORDS[w] for w in words if w in LANGUAGE_WORDS}


def _plan_row(row: dict) -> list[arguments.ArgumentPlan]:
    """Each instruction's argument plan; ValueError where upstream's reader or checkers would crash."""
    for field, kinds in REQUIRED_FIELDS.items():
        if field not in row:
            raise ValueError(f"missing field {field!r}")
        if not isinstance(row[field], kinds) or isinstance(row[field], bool):
            raise ValueError(f"field {field!r} has type {type(row[field]).__name__}")
    ids, kwargs = row["instruction_id_list"], row["kwargs"]
    if len(kwargs) < len(ids):  # upstream indexes kwargs by instruction; extra entries it never reads
        raise ValueError(f"{len(ids)} instruction ids but only {len(kwargs)} kwargs entries")
    return [arguments.plan(instruction_id, arguments_) for instruction_id, arguments_ in zip(ids, kwargs)]


def _draw(plans: list[arguments.ArgumentPlan], seed: object, task: str, key: object) -> dict[str, list[dict]]:
    """Per pass, the values drawn for each instruction ({} where nothing is drawn)."""
    return {
        passage: [
            arguments.draw(p, arguments.draw_rng(seed, task, key, index, passage)) if p.drawable else {}
            for index, p in enumerate(plans)
        ]
        for passage in PASSES
    }


def _listing(headline: str, problems: list[str]) -> str:
    more = f"\n... and {len(problems) - 20} more" if len(problems) > 20 else ""
    return headline + ":\n" + "\n".join(problems[:20]) + more


def doc_to_audio(doc: dict) -> list[dict]:
    if not doc["audio_file"]:
        return []  # load_audio=false: scoring stored responses
    return [audio_clip(doc["audio_file"], item=f"speechinstruct {doc['label']}")]


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
        return {"failed_items": 1, "drawn_items": 0, "drawn_instructions": 0}
    ids, prompt = doc["instruction_id_list"], doc["prompt"]
    plans = [arguments.plan(i, k) for i, k in zip(ids, json.loads(doc["kwargs"]), strict=True)]
    strict, loose = verdicts.follows(ids, plans, json.loads(doc["draws"]), prompt, response)
    drawable = [p.drawable for p in plans]
    ranges = [
        verdicts.verdict_range(p, prompt, response) if p.drawable else verdicts.VerdictRange((s, s), (lo, lo))
        for p, s, lo in zip(plans, strict, loose, strict=True)
    ]
    metrics = {
        **_accuracies(strict, loose),
        "failed_items": 0,
        "drawn_items": int(any(drawable)),
        "drawn_instructions": sum(1 for d in drawable if d),
    }
    # Instructions draw independently (and strict apart from loose), so each bound is reached by
    # taking every instruction's extreme at once.
    for bound, index in (("draw_min", 0), ("draw_max", 1)):
        extreme = _accuracies([r.strict[index] for r in ranges], [r.loose[index] for r in ranges])
        metrics.update({f"{metric}_{bound}": value for metric, value in extreme.items()})
    return metrics


def _accuracies(strict: list[bool], loose: list[bool]) -> dict:
    return {
        "prompt_level_strict_acc": all(strict),
        "inst_level_strict_acc": strict,
        "prompt_level_loose_acc": all(loose),
        "inst_level_loose_acc": loose,
        # The leaderboard's P./I. Acc: the mean of strict and loose (close.py's mean-prompt / mean-instruction).
        "prompt_level_acc": (all(strict) + all(loose)) / 2,
        "inst_level_acc": [(s + lo) / 2 for s, lo in zip(strict, loose, strict=True)],
    }


def agg_inst_level_acc(items: list[list[float] | None]) -> float:
    """Instruction level: every instruction of every scored item counts once (micro average)."""
    flat = [value for item in items if item is not None for value in item]
    return sum(flat) / len(flat) if flat else float("nan")  # upstream divides by zero
