"""SpeechInstructBench open-ended and adjustment: data, judging and metrics (spec §1.5-1.6).

As the authors' pipeline: the model hears the instruction and gets the fixed text prompt; the
judge (default gpt-4o-mini, T=0.5, top_p=0.95, n=4, max_tokens=1024) gets their prompt filled by
chained ``str.replace``; the ``n`` outputs are parsed and combined by per-position majority
(``statistics.mode``: a tie goes to the first value seen). Open-ended: P./I. Acc. Adjustment:
IAR (higher is better) and ECR (lower is better).

Items the authors' code drops (no parseable judge output) are dropped the same way and counted
(``unparsed_items``); items whose judge call failed for good are counted (``judge_failed_items``)
and left out, never scored as wrong.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import re
import statistics

import datasets

from lm_eval_speech import __version__, data, provenance
from lm_eval_speech.calls import CallRequest
from lm_eval_speech.judging import tasks as task_judging
from lm_eval_speech.outcomes import is_failure, note_error
from lm_eval_speech.tasks.speechinstruct import judge_prompts
from lm_eval_speech.tasks.speechinstruct.utils import LANGUAGE_FILE_TAGS, SIB_HUB, doc_to_text

logger = logging.getLogger("lm_eval_speech.speechinstruct")

SUBSETS = {
    # subset: (task name stem, data file, judge prompt, prompt name upstream)
    "open": ("speechinstruct_open", "open-ended/open_ended_{tag}.jsonl", judge_prompts.OPEN_ENDED_PROMPT, "open_instruction"),
    "adjust": ("speechinstruct_adjust", "adjustment/adjustment_{tag}.jsonl", judge_prompts.ADJUSTMENT_PROMPT, "adjust_instruct"),
}
PARSING_KEY = "judge_parsing"  # "strict" (the authors') or "lenient"
ADJUST_FIELDS = ("follow_after_adjust", "follow_before_adjust", "after_adjust_content_correct")
SCORES = {"open": ("prompt_level_acc", "inst_level_acc"), "adjust": ("iar", "ecr")}


# -- data --------------------------------------------------------------------------------
def load_open_ended(language: str, **metadata) -> datasets.DatasetDict:
    return _load("open", language, metadata)


def load_adjustment(language: str, **metadata) -> datasets.DatasetDict:
    return _load("adjust", language, metadata)


def _load(subset: str, language: str, metadata: dict) -> datasets.DatasetDict:
    if language not in LANGUAGE_FILE_TAGS:
        raise data.DataError(f"speechinstruct: unknown language {language!r}")
    stem, pattern, prompt, prompt_name = SUBSETS[subset]
    name = f"{stem}_{language}"
    relpath = pattern.format(tag=LANGUAGE_FILE_TAGS[language])
    parsing = _parsing_mode(metadata, name)
    files = data.BenchmarkFiles(metadata, SIB_HUB, benchmark=name)
    path = files.file(relpath)
    rows = data.read_jsonl_lines(path, label=str(path))

    docs, problems = [], []
    for row_index, (line, row) in enumerate(rows):
        label = f"{relpath} line {line}" + (f" (key={row['key']!r})" if "key" in row else "")
        problem = _validate(row, subset)
        if problem:
            problems.append(f"{label}: {problem}")
            continue
        docs.append(
            {
                "task": name,
                "key": str(row.get("key", line)),
                "prompt": row["prompt"],
                # Absent only in adjustment rows; upstream then fills {prompt} and {response} alone.
                "decomposed_questions": numbered_questions(row.get("decomposed_questions")),
                "audio_path": row.get("audio_path"),
                "audio_file": "",
                "row": row_index,
                "label": label,
            }
        )
    if problems:
        more = f"\n... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise data.DataError(f"{name}: {len(problems)} invalid item(s) in {relpath}:\n" + "\n".join(problems[:20]) + more)

    # Data first, judges second: a broken file is reported before a missing API key.
    judging = task_judging.register(name, metadata, {prompt_name: prompt}, max_judges=1, options={"parsing": parsing})
    load_audio = data.flag(metadata, data.LOAD_AUDIO_KEY, True, "speechinstruct")
    if load_audio:
        missing = [d["label"] for d in docs if not isinstance(d["audio_path"], str) or not d["audio_path"]]
        if missing:
            raise data.DataError(f"{name}: items without an audio_path: " + "; ".join(missing[:20]))
        resolved = files.resolve_item_files([d["audio_path"] for d in docs], listed_in=relpath, items=[d["label"] for d in docs])
        for doc, audio_file in zip(docs, resolved, strict=True):
            doc["audio_file"] = str(audio_file)

    provenance.record(
        name,
        package_version=__version__,
        prompt_sha256=hashlib.sha256(doc_to_text({}).encode("utf-8")).hexdigest(),
        judge_parsing=parsing,
        data={
            **files.describe(),
            "file": relpath,
            "sha256": data.sha256_file(path),
            "items": len(docs),
            "audio_loaded": load_audio,
        },
    )
    logger.info("%s: %d items; judge %s; %s parsing", name, len(docs), judging.configs[0].name, parsing)
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(docs)})


_NUMBERED = re.compile(r"\s*(\d+)\s*[.)、:：]")


def numbered_questions(questions: str | list | None) -> str | None:
    """The questions as the judge prompt takes them: a string as it is; a list (an older upload's
    form) as one question per line, numbered ``1. `` ... unless each already starts with its number."""
    if not isinstance(questions, list):
        return questions
    if all((m := _NUMBERED.match(q)) and int(m.group(1)) == n for n, q in enumerate(questions, start=1)):
        return "\n".join(questions)
    return "\n".join(f"{n}. {q.strip()}" for n, q in enumerate(questions, start=1))


def _validate(row: dict, subset: str) -> str | None:
    if not isinstance(row.get("prompt"), str) or not row["prompt"]:
        return "missing or empty field 'prompt'"
    questions = row.get("decomposed_questions")
    if isinstance(questions, list) and not all(isinstance(q, str) and q.strip() for q in questions):
        return "field 'decomposed_questions' is a list holding something other than non-empty strings"
    if subset == "open":
        if not (isinstance(questions, str) and questions.strip()) and not (isinstance(questions, list) and questions):
            # Upstream would send the judge its template's literal "{decompose_question}".
            return "open-ended items need 'decomposed_questions' (numbered yes/no questions: a string, or a list)"
    elif "decomposed_questions" in row and not isinstance(questions, str | list):
        return "field 'decomposed_questions' is neither a string nor a list"
    return None


def _parsing_mode(metadata: dict, name: str) -> str:
    mode = str(data.option(metadata, PARSING_KEY, "speechinstruct", "strict"))
    if mode not in ("strict", "lenient"):
        raise data.DataError(f'{name}: --metadata {PARSING_KEY} must be "strict" or "lenient", not {mode!r}')
    return mode


# -- judging -----------------------------------------------------------------------------
def fill_prompt(template: str, doc: dict, response: str) -> str:
    """The authors' filling: chained ``str.replace`` in their order (so braces in answers are safe)."""
    if doc.get("decomposed_questions") is not None:
        return (
            template.replace("{prompt}", doc["prompt"])
            .replace("{decompose_question}", doc["decomposed_questions"])
            .replace("{response}", response)
        )
    return template.replace("{prompt}", doc["prompt"]).replace("{response}", response)


def judge_messages(template: str, doc: dict, response: str) -> list[dict]:
    return [
        {"role": "system", "content": judge_prompts.SYSTEM_MESSAGE},
        {"role": "user", "content": fill_prompt(template, doc, response)},
    ]


def judge_open_ended(resps: list[list[str]], docs: list[dict]) -> list[dict]:
    return _judge("open", resps, docs)


def judge_adjustment(resps: list[list[str]], docs: list[dict]) -> list[dict]:
    return _judge("adjust", resps, docs)


def _judge(subset: str, resps: list[list[str]], docs: list[dict]) -> list[task_judging.Verdict]:
    """Filter: judge every response of the task at once; one verdict dict per doc."""
    template = SUBSETS[subset][2]
    judging = task_judging.for_docs(docs)
    lenient = judging.options["parsing"] == "lenient"
    verdicts: list[task_judging.Verdict | None] = [None] * len(docs)
    requests, positions = [], []
    for position, (resp, doc) in enumerate(zip(resps, docs, strict=True)):
        response = resp[0]
        if is_failure(response):
            verdicts[position] = task_judging.Verdict(model_failed=response.reason)
            continue
        requests.append(CallRequest(judge_messages(template, doc, response), f"{doc['task']} {doc['label']}", answer_schema(subset, doc)))
        positions.append(position)

    outputs = judging.run(requests)
    combine = majority_open_ended if subset == "open" else majority_adjustment
    unparsed_outputs = unparsed_items = failed_items = 0
    for position, samples in zip(positions, outputs, strict=True):
        if not all(s.ok for s in samples):
            failed_items += 1
            note_error(docs[position]["task"], f"{docs[position]['label']}: judge: {next(s.error for s in samples if not s.ok)}")
            verdicts[position] = task_judging.Verdict(
                judge_failed=[s.error for s in samples if not s.ok], judge_outputs=[s.to_json() for s in samples]
            )
            continue
        texts = [s.text.strip() for s in samples]  # upstream: c.message.content.strip()
        majority, unreadable = combine([_loosen(t, subset) for t in texts] if lenient else texts)
        unparsed_outputs += unreadable
        judging.unparsable(0, unreadable)
        if majority is None:
            unparsed_items += 1
            logger.warning("%s %s: no judge output could be parsed; dropped as upstream drops it", docs[position]["task"],
                           docs[position]["label"])
        verdicts[position] = task_judging.Verdict(judge_outputs=texts, majority=majority, unparsed_outputs=unreadable)
    model_failed = sum(1 for v in verdicts if "model_failed" in v)
    judging.count(
        unparsed_outputs=unparsed_outputs, unparsed_items=unparsed_items, judge_failed_items=failed_items,
        model_failed_items=model_failed, scored_items=len(docs) - model_failed - failed_items - unparsed_items,
    )
    judging.finish(metrics=SCORES[subset])
    return verdicts


def answer_schema(subset: str, doc: dict) -> dict:
    """The verdict's JSON schema, for judges with ``constrained: true``: what the authors' parser reads
    (a list of YES/NO, one per question; or the three YES/NO fields), nothing else."""
    verdict = {"enum": ["YES", "NO"]}
    if subset == "open":
        count = question_count(doc["decomposed_questions"])
        return {"type": "array", "items": verdict, "minItems": count, "maxItems": count}
    return {"type": "object", "properties": dict.fromkeys(ADJUST_FIELDS, verdict), "required": list(ADJUST_FIELDS),
            "additionalProperties": False}


def question_count(questions: str) -> int:
    """The number of decomposed questions: numbered lines, else non-empty lines."""
    lines = [line for line in questions.splitlines() if line.strip()]
    return sum(1 for line in lines if _NUMBERED.match(line)) or len(lines) or 1


# -- parsing and majority (upstream open.py / adjust.py) -----------------------------------
def majority_open_ended(texts: list[str]) -> tuple[list | None, int]:
    """(per-question majority, number of unreadable outputs); None when upstream skips the item.

    ``ast.literal_eval`` and keep lists; keep the longest lists; ``statistics.mode`` per position.
    """
    lists = []
    for text in texts:
        try:
            parsed = ast.literal_eval(text)
        except Exception:  # upstream: a bare except
            continue
        if isinstance(parsed, list):
            lists.append(parsed)
    unreadable = len(texts) - len(lists)
    if not lists:
        return None, unreadable
    longest = max(len(values) for values in lists)
    kept = [values for values in lists if len(values) == longest]
    try:
        majority = [statistics.mode(position) for position in zip(*kept)]
    except TypeError:  # unhashable entries, e.g. nested lists: upstream crashes here
        return None, unreadable
    return (majority or None), unreadable


def majority_adjustment(texts: list[str]) -> tuple[dict | None, int]:
    """(majority of each of the three fields, number of unreadable outputs); None when upstream skips.

    As upstream, a JSON object missing a later field still contributes its earlier fields.
    """
    values: dict[str, list] = {name: [] for name in ADJUST_FIELDS}
    unreadable = 0
    for text in texts:
        try:
            parsed = json.loads(text)
            for name in ADJUST_FIELDS:
                values[name].append(parsed[name])
        except (json.JSONDecodeError, TypeError, KeyError):
            unreadable += 1
            continue
    if not all(values[name] for name in ADJUST_FIELDS):
        return None, unreadable
    try:
        return {name: statistics.mode(values[name]) for name in ADJUST_FIELDS}, unreadable
    except TypeError:  # unhashable field values: upstream crashes here
        return None, unreadable


_FENCE = re.compile(r"^\s*```[A-Za-z]*\s*\n?(.*?)\n?\s*```\s*$", re.DOTALL)
_BARE_WORD_LIST = re.compile(r"^\[\s*(?:YES|NO)\s*(?:,\s*(?:YES|NO)\s*)*\]$", re.IGNORECASE)


def _loosen(text: str, subset: str) -> str:
    """Lenient parsing (opt-in): unwrap code fences; read ``[YES, NO]``; take the first JSON object."""
    match = _FENCE.match(text)
    if match:
        text = match.group(1).strip()
    if subset == "open":
        if _BARE_WORD_LIST.match(text):
            words = re.findall(r"YES|NO", text, re.IGNORECASE)
            return repr([w.upper() for w in words])
        return text
    start, end = text.find("{"), text.rfind("}")
    return text[start : end + 1] if 0 <= start < end else text


# -- metrics -------------------------------------------------------------------------------
def _scored(verdict: dict, score, metrics: tuple[str, ...]) -> dict:
    """The item's counts, and its scores (None where it has no majority to score)."""
    counts = {
        "failed_items": int("model_failed" in verdict),
        "judge_failed_items": int("judge_failed" in verdict),
        "unparsed_items": int("judge_outputs" in verdict and "judge_failed" not in verdict and verdict["majority"] is None),
    }
    return {**dict.fromkeys(metrics), **counts} if any(counts.values()) else {**score(verdict["majority"]), **counts}


def _open_ended_scores(majority: list) -> dict:
    yes = [value == "YES" for value in majority]
    return {"prompt_level_acc": all(yes), "inst_level_acc": yes}


def _adjustment_scores(majority: dict) -> dict:
    return {
        "iar": int(majority["follow_after_adjust"] == "YES" and majority["after_adjust_content_correct"] == "YES"),
        "ecr": int(majority["follow_before_adjust"] == "YES"),
    }


def process_open_ended(doc: dict, results: list[dict]) -> dict:
    return _scored(results[0], _open_ended_scores, SCORES["open"])


def process_adjustment(doc: dict, results: list[dict]) -> dict:
    return _scored(results[0], _adjustment_scores, SCORES["adjust"])
