"""JASCO ("What Are They Doing?"): 80 clips x 8 prompts, three LLM judges, best-mean and dependence.

As the authors' ``evaluation/example.csv`` + ``eval.py``: the model hears the clip and reads the
prompt; each judge gets their prompt (``str.format``), and, when its answer names no orientation,
the re-ask prompt; ``scoring.py`` parses and scores. Headline metrics are the mean over judges;
per-judge values go into the results metadata (``judging.per_judge_metrics``).

``--metadata '{"missing_rating": "unscored"}'`` leaves a Good row without a rating line unscored;
the default, ``"previous_row"``, gives it the previous row's rating as the authors' code did.
best-mean is reported under both readings; ``best_mean`` follows the chosen one.
"""

from __future__ import annotations

import hashlib
import json
import logging

import datasets

from lm_eval_speech import __version__, data, provenance
from lm_eval_speech.calls import CallConfigError, CallRequest
from lm_eval_speech.judging import resolve_judges
from lm_eval_speech.judging import tasks as task_judging
from lm_eval_speech.speech.audio import audio_clip
from lm_eval_speech.outcomes import is_failure, note_error
from lm_eval_speech.tasks.jasco import dataset, prompts, scoring

TASK = "jasco"
MISSING_RATING_KEY = "missing_rating"

logger = logging.getLogger("lm_eval_speech.jasco")


def load_jasco(**metadata) -> datasets.DatasetDict:
    reading = missing_rating_reading(metadata)
    root, source = dataset.data_root(metadata)
    clips = dataset.read_clips(root)
    load_audio = data.flag(metadata, data.LOAD_AUDIO_KEY, True, "jasco")
    # A local copy is used as it is; the results say whether it is the published release.
    changed = dataset.differences(root)
    if changed and source["source"] == "local":
        logger.warning("jasco: %s differs from the published data (%s)", root, "; ".join(changed[:5]))
    for config in resolve_judges(metadata, task=TASK):  # settings first: before any endpoint is checked
        if config.params.n != 1:
            raise CallConfigError(f"jasco: judge {config.name!r}: n must be 1 (the authors score one judgement per row)")
    task_judging.register(
        TASK, metadata, {"general_prompt": prompts.JUDGE_PROMPT, "post_process_prompt": prompts.REASK_PROMPT},
        options={MISSING_RATING_KEY: reading},
    )
    docs = []
    for clip in clips:
        for index, prompt in enumerate(prompts.INFERENCE_PROMPTS):
            docs.append(
                {
                    "task": TASK,
                    "id": clip["audio_id"],
                    "prompt_index": index,
                    "prompt": prompt,
                    "audio_sound": clip["Audio"],
                    "spoken_text": clip["Speech"],
                    "audio_only_target": clip["Audio-Only Answer"],
                    "speech_only_target": clip["Speech-Only Answer"],
                    "tgt_text": clip["Correct Answer"],
                    "target_keywords": clip["Correct Answer Keyword"],
                    "audio_file": str(root / dataset.SUBDIR / f"{clip['audio_id']}.wav") if load_audio else "",
                    "label": f"clip {clip['audio_id']} prompt {index + 1}",
                }
            )
    provenance.record(
        TASK,
        package_version=__version__,
        data={
            **source, "sha256_v0_csv": data.sha256_file(root / dataset.SUBDIR / "v0.csv"), "clips": len(clips), "docs": len(docs),
            "published_release": not changed, "audio_loaded": load_audio,
        },
        prompts_sha256=hashlib.sha256("\n".join(prompts.INFERENCE_PROMPTS).encode("utf-8")).hexdigest(),
        missing_rating=reading,
    )
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(docs)})


def missing_rating_reading(metadata: dict) -> str:
    """How a Good row without a rating line is scored (scoring.PREVIOUS_ROW or UNSCORED)."""
    reading = data.option(metadata, MISSING_RATING_KEY, TASK, scoring.PREVIOUS_ROW)
    if reading not in scoring.MISSING_RATING_READINGS:
        accepted = ", ".join(f'"{r}"' for r in scoring.MISSING_RATING_READINGS)
        raise data.DataError(f"jasco: --metadata {MISSING_RATING_KEY} must be one of {accepted}, not {reading!r}")
    return reading


def doc_to_text(doc: dict) -> str:
    return "<audio>" + doc["prompt"]


def doc_to_audio(doc: dict) -> list[dict]:
    if not doc["audio_file"]:
        return []  # load_audio=false: judging stored responses
    return [audio_clip(doc["audio_file"], item=f"jasco {doc['label']}")]


def judge_messages(doc: dict, prediction: str) -> list[dict]:
    prompt = prompts.JUDGE_PROMPT.format(
        audio_sound=doc["audio_sound"], spoken_text=doc["spoken_text"], question=doc["prompt"], reference=doc["tgt_text"],
        audio_only_target=doc["audio_only_target"], speech_only_target=doc["speech_only_target"], prediction=prediction,
        keywords=doc["target_keywords"],
    )
    return [{"role": "system", "content": prompts.SYSTEM_MESSAGE}, {"role": "user", "content": prompt}]


def reask_messages(response: str) -> list[dict]:
    prompt = prompts.REASK_PROMPT.format(explanation=scoring.reask_explanation(response))
    return [{"role": "system", "content": prompts.SYSTEM_MESSAGE}, {"role": "user", "content": prompt}]


def judge_responses(resps: list[list[str]], docs: list[dict]) -> list[task_judging.Verdict]:
    """Filter: every judge rates every response (then re-asks where no orientation was named)."""
    judging = task_judging.for_docs(docs)
    verdicts = [task_judging.Verdict(judges={}) for _ in docs]
    answered = []
    for position, (resp, doc) in enumerate(zip(resps, docs, strict=True)):
        if is_failure(resp[0]):
            verdicts[position]["model_failed"] = resp[0].reason
        else:
            answered.append(position)
    counts = dict.fromkeys(("reasked_rows", "neither_rows", "unparsed_rows", "judge_failed_rows", "scored_items"), 0)
    judges = range(len(judging.configs))
    # Round 1: every judge on every answer, the judges at once; round 2: their re-asks, at once.
    first = judging.run_each({
        j: [CallRequest(judge_messages(docs[p], resps[p][0]), f"jasco {docs[p]['label']}", scoring.JUDGE_SCHEMA) for p in answered]
        for j in judges
    })
    # A constrained judge answers in JSON: written out in the authors' format, their parser reads it.
    outputs = {
        j: dict(zip(answered, (scoring.in_authors_format(row[0]) if judging.configs[j].constrained else row[0] for row in first[j])))
        for j in judges
    }
    reask = {j: [p for p, out in outputs[j].items() if out.ok and scoring.orientation_of(out.text) is None] for j in judges}
    second = judging.run_each(
        {j: [CallRequest(reask_messages(outputs[j][p].text), f"jasco {docs[p]['label']} (re-ask)") for p in reask[j]] for j in judges}
    )
    for j, config in enumerate(judging.configs):
        reask_outputs = dict(zip(reask[j], (row[0] for row in second[j])))
        for position, out in outputs[j].items():
            record = {"output": out.text} if out.ok else {"error": out.error}
            orientation = None
            if out.ok:
                orientation = scoring.orientation_of(out.text)
                if orientation is None:
                    counts["reasked_rows"] += 1
                    again = reask_outputs[position]
                    record["reask_output"] = again.text if again.ok else None
                    if not again.ok:
                        record["error"] = again.error
                    orientation = scoring.orientation_of_reask(again.text) if again.ok else None
            record["orientation"] = orientation
            record["rating"] = scoring.rating_of(out.text) if out.ok else None
            row = scoring.JudgedRow(docs[position]["id"], docs[position]["prompt_index"], orientation, record["rating"])
            counts["judge_failed_rows"] += row.failed
            counts["unparsed_rows"] += row.unparsed
            counts["neither_rows"] += orientation == scoring.NEITHER
            counts["scored_items"] += orientation in (scoring.AUDIO, scoring.SPEECH, scoring.GOOD)
            if row.unparsed:
                judging.unparsable(j)
            if row.failed:
                note_error(TASK, f"{docs[position]['label']}: judge {config.name}: {record['error']}")
            verdicts[position]["judges"][config.name] = record
    judging.count(**counts, model_failed_items=sum(1 for v in verdicts if "model_failed" in v))
    judging.finish(metrics=("best_mean", "audio_dependence", "both_dependence", "speech_dependence"))
    return verdicts


# Metrics aggregated from the doc's judge rows (the others are per-doc counts).
ITEM_METRICS = (
    "best_mean", "best_mean_previous_row", "best_mean_unscored", "carried_rating_rows",
    "audio_dependence", "both_dependence", "speech_dependence",
)


def process_results(doc: dict, results: list[dict]) -> dict:
    verdict = results[0]
    if "model_failed" in verdict:
        return {"failed_items": 1, "neither_rows": 0, "unparsed_rows": 0, "judge_failed_rows": 0}
    rows = {name: (record["orientation"], record["rating"]) for name, record in verdict["judges"].items()}
    judged = [scoring.JudgedRow(doc["id"], doc["prompt_index"], o, r) for o, r in rows.values()]
    # The clip and prompt let the aggregation rebuild upstream's row order (a rating can carry over).
    item = {"task": doc["task"], "clip": doc["id"], "prompt": doc["prompt_index"], "rows": rows}
    return {
        **dict.fromkeys(ITEM_METRICS, item),
        "neither_rows": sum(row.orientation == scoring.NEITHER for row in judged),
        "unparsed_rows": sum(row.unparsed for row in judged),
        "judge_failed_rows": sum(row.failed for row in judged),
        "failed_items": 0,
    }


# -- aggregations (rank 0, over every doc, gathered from every rank in any order) -------------
def per_judge_metrics(items: list[dict], reading: str) -> dict[str, dict]:
    """Each judge's metrics; ``best_mean`` (and ``clips``) under ``reading``, best-mean also under both readings."""
    by_judge: dict[str, list[scoring.JudgedRow]] = {}
    for item in items:
        for name, (orientation, rating) in item["rows"].items():
            by_judge.setdefault(name, []).append(scoring.JudgedRow(item["clip"], item["prompt"], orientation, rating))
    metrics = {}
    for name, rows in by_judge.items():
        value, clips = scoring.best_mean(rows, reading)
        metrics[name] = {
            "best_mean": value,
            "best_mean_previous_row": scoring.best_mean(rows, scoring.PREVIOUS_ROW)[0],
            "best_mean_unscored": scoring.best_mean(rows, scoring.UNSCORED)[0],
            **scoring.dependence(rows),
            "carried_rating_rows": scoring.carried_rows(rows),
            "clips": clips,
            "rows": len(rows),
        }
    return metrics


_LAST: dict[str, tuple[str, dict]] = {}  # task -> (fingerprint of the items, their per-judge metrics)


def _per_judge(items: list[dict]) -> dict[str, dict]:
    """Every judge's metrics, computed once for the aggregations that each ask for one of them."""
    setup = task_judging.registered(items[0]["task"]) if items else None
    reading = setup.options.get(MISSING_RATING_KEY, scoring.PREVIOUS_ROW) if setup is not None else scoring.PREVIOUS_ROW
    fingerprint = hashlib.sha256(json.dumps([reading, items], sort_keys=True, default=str).encode()).hexdigest()
    task = items[0]["task"] if items else TASK
    if task in _LAST and _LAST[task][0] == fingerprint:
        return _LAST[task][1]
    metrics = per_judge_metrics(items, reading)
    _LAST[task] = (fingerprint, metrics)
    if items:  # beside the headline in the results metadata
        provenance.record(task, per_judge_metrics=metrics)
    return metrics


def _mean_over_judges(items: list[dict], metric: str) -> float:
    values = [m[metric] for m in _per_judge(items).values() if m[metric] is not None]
    return sum(values) / len(values) if values else float("nan")


def agg_best_mean(items: list[dict]) -> float:
    return _mean_over_judges(items, "best_mean")


def agg_best_mean_previous_row(items: list[dict]) -> float:
    return _mean_over_judges(items, "best_mean_previous_row")


def agg_best_mean_unscored(items: list[dict]) -> float:
    return _mean_over_judges(items, "best_mean_unscored")


def agg_carried_rating_rows(items: list[dict]) -> int:
    """Summed over judges, as the other row counts (it needs every row in order, so not a per-doc count)."""
    return sum(m["carried_rating_rows"] for m in _per_judge(items).values())


def agg_audio_dependence(items: list[dict]) -> float:
    return _mean_over_judges(items, "audio_dependence")


def agg_both_dependence(items: list[dict]) -> float:
    return _mean_over_judges(items, "both_dependence")


def agg_speech_dependence(items: list[dict]) -> float:
    return _mean_over_judges(items, "speech_dependence")
