"""SpeechInstructBench closed-ended on data shaped as published: discovery time, drawn arguments, bounds.

1. Discovery: a closed-ended tree laid out as the hub may hold it (10 JSONL files nested by language
   and variant, beside their audio folders), and the time each task takes to find its file and
   resolve every ``audio_path`` (absolute paths from the authors' machine: the slowest form).
2. Drawn arguments (with ``--ifeval``): Google's IFEval ``input_data.jsonl`` (541 prompts), as
   published and in the HF layout (every argument key, ``null`` where unused), scored through the
   stock lm-eval pipeline with replayed responses (``--responses``: IFEval's
   ``input_response_data_*.jsonl``; else each prompt is its own response). Prints how many items and
   instructions draw an argument, and each accuracy with the range any draw could give.

    python benchmarks/sib_real_data.py [--ifeval input_data.jsonl [--responses responses.jsonl]]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
ITEMS_PER_FILE = 800  # the hub's closed-ended part is ~8.6 GB of clips over 10 files
METRICS = ("prompt_level_acc", "inst_level_acc", "prompt_level_strict_acc", "inst_level_strict_acc",
           "prompt_level_loose_acc", "inst_level_loose_acc")
ARGUMENT_KEYS = (
    "capital_frequency", "capital_relation", "end_phrase", "first_word", "forbidden_words", "frequency", "keyword",
    "keywords", "language", "let_frequency", "let_relation", "letter", "nth_paragraph", "num_bullets", "num_highlights",
    "num_paragraphs", "num_placeholders", "num_sections", "num_sentences", "num_words", "postscript_marker",
    "prompt_to_repeat", "relation", "section_spliter",
)


def _write_tree(root: Path) -> None:
    item = {"prompt": "Write a poem without commas.", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}
    for language in ("en", "cn"):
        for variant in ("standard", "background", "accent", "paralinguistics", "disfluency"):
            folder = root / "closed-ended" / language / variant
            folder.mkdir(parents=True)
            lines = []
            for key in range(ITEMS_PER_FILE):
                (folder / f"{key}.wav").write_bytes(b"")  # discovery and path resolution never open a clip
                path = f"/mnt/data/ddwang/SpeechInstructBench/closed-ended/{language}/{variant}/{key}.wav"
                lines.append(json.dumps({**item, "key": key, "prompt": f"{item['prompt']} {key}", "audio_path": path}))
            (folder / f"closed_{variant}_{language}.jsonl").write_text("\n".join(lines), encoding="utf-8")


def discovery() -> None:
    from lm_eval_speech.data import BenchmarkFiles
    from lm_eval_speech.tasks.speechinstruct import utils

    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        _write_tree(root)
        files_in_tree = sum(len(names) for _, _, names in os.walk(root))
        timings = []
        for language in ("en", "zh"):
            for variant in utils.VARIANTS:
                task = f"speechinstruct_close_{language}_{variant}"
                start = time.perf_counter()
                files = BenchmarkFiles({"data_dir": str(root)}, utils.SIB_HUB, task)
                relpath = utils.closed_ended_file(files, task, language, variant, None)
                found = time.perf_counter() - start
                rows = [json.loads(line) for line in files.file(relpath).read_text(encoding="utf-8").splitlines()]
                files.resolve_item_files([r["audio_path"] for r in rows], listed_in=relpath, items=[str(r["key"]) for r in rows])
                timings.append((task, relpath, found, time.perf_counter() - start))
    print(f"Discovery: {files_in_tree} files under the data root, {ITEMS_PER_FILE} items per closed-ended file")
    print("| task | file found | find file (ms) | find file + resolve audio_path (ms) |\n|---|---|---|---|")
    for task, relpath, found, total in timings:
        print(f"| {task} | {relpath} | {found * 1000:.1f} | {total * 1000:.1f} |")
    print(f"mean per task: find {sum(t[2] for t in timings) / len(timings) * 1000:.1f} ms, "
          f"with {ITEMS_PER_FILE} audio paths {sum(t[3] for t in timings) / len(timings) * 1000:.1f} ms\n")


def _score(rows: list[dict], responses: list[str], layout: str) -> None:
    import lm_eval
    from lm_eval.tasks import TaskManager

    task = "speechinstruct_close_en_standard"
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        (root / "closed-ended").mkdir()
        with open(root / "closed-ended" / "closed_standard_en.jsonl", "w", encoding="utf-8") as handle:
            for row in rows:
                kwargs = row["kwargs"] if layout == "as published" else [dict.fromkeys(ARGUMENT_KEYS) | k for k in row["kwargs"]]
                handle.write(json.dumps({**row, "kwargs": kwargs}) + "\n")
        with open(root / "responses.jsonl", "w", encoding="utf-8") as handle:
            for doc_id, response in enumerate(responses):
                handle.write(json.dumps({"doc_id": doc_id, "response": response}) + "\n")
        manager = TaskManager(include_path=str(REPO / "speech_tasks"), include_defaults=False,
                              metadata={"data_dir": str(root), "load_audio": False})
        start = time.perf_counter()
        results = lm_eval.simple_evaluate(model="responses", model_args={"path": str(root / "responses.jsonl")},
                                          tasks=[task], task_manager=manager, bootstrap_iters=0)
        elapsed = time.perf_counter() - start
    found = {k.split(",")[0]: v for k, v in results["results"][task].items() if k.endswith(",sib")}
    print(f"{layout}: {len(rows)} items, {int(found['drawn_items'])} with drawn arguments "
          f"({int(found['drawn_instructions'])} instructions); scored in {elapsed:.1f} s")
    print("| metric | value | any draw: low | any draw: high | width |\n|---|---|---|---|---|")
    for metric in METRICS:
        low, high = found[f"{metric}_draw_min"], found[f"{metric}_draw_max"]
        print(f"| {metric} | {found[metric]:.4f} | {low:.4f} | {high:.4f} | {high - low:.4f} |")
    print()


def drawn_arguments(ifeval: Path, responses_path: Path | None) -> None:
    rows = [json.loads(line) for line in ifeval.read_text(encoding="utf-8").splitlines() if line.strip()]
    for row in rows:
        row["audio_path"] = f"{row['key']}.wav"
    if responses_path:
        by_prompt = {}
        for line in responses_path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                by_prompt[record["prompt"]] = record["response"]
        responses = [by_prompt[row["prompt"]] for row in rows]
        print(f"Responses: {responses_path.name}")
    else:
        responses = [row["prompt"] for row in rows]
        print("Responses: each prompt repeated (pass --responses for a model's answers)")
    for layout in ("as published", "HF layout (every key, null where unused)"):
        _score(rows, responses, layout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ifeval", type=Path, help="IFEval's input_data.jsonl (google-research/instruction_following_eval)")
    parser.add_argument("--responses", type=Path, help="IFEval's input_response_data_*.jsonl for the same prompts")
    args = parser.parse_args()
    discovery()
    if args.ifeval:
        drawn_arguments(args.ifeval, args.responses)
    else:
        print("Drawn arguments: skipped (pass --ifeval PATH to IFEval's input_data.jsonl)", file=sys.stderr)


if __name__ == "__main__":
    main()
