"""One model's S2S-Arena answers, read from the output folder of its ``lm_eval --log_samples`` run.

A run folder holds ``samples_s2s_arena_<domain>_<date>.jsonl`` files (anywhere below it, as
lm-eval nests them by model); each sample has the input ``doc``, the text answer in ``resps``
and the spoken answer's record in ``speech_output`` (:mod:`lm_eval_speech.speech.output`).
Where a task was run twice, the newer file wins.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

SAMPLES_PATTERN = re.compile(r"^samples_(s2s_arena(?:_[a-z]+)?)_(.+)\.jsonl$")


class RunError(ValueError):
    """A run folder that cannot be read; the message names the file."""


@dataclass(frozen=True)
class Answer:
    input_id: str
    domain: str
    task: str
    text: str
    speech: dict | None  # the speech_output record: path, sampling_rate, duration, transcript
    doc: dict

    @property
    def level(self) -> str:
        return _text(self.doc.get("level"))

    @property
    def category(self) -> str:
        return _text(self.doc.get("category"))

    @property
    def spoken_text(self) -> str:
        """What the answer said: Whisper's transcript of its audio, else the text answer."""
        if self.speech and self.speech.get("transcript") is not None:
            return str(self.speech["transcript"])
        return self.text


def _text(value) -> str:
    """A doc label as text; runs logged before docs carried it have none."""
    return "" if value is None else str(value)


@dataclass
class ModelRun:
    label: str
    folder: Path
    answers: dict[str, Answer] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    unspoken: list[str] = field(default_factory=list)  # input ids answered without audio
    failed: list[str] = field(default_factory=list)  # input ids whose generation failed


def parse_run_argument(argument: str) -> tuple[str | None, Path]:
    """``NAME=DIR`` or ``DIR``."""
    if "=" in argument and not Path(argument).exists():
        name, _, folder = argument.partition("=")
        return name.strip() or None, Path(folder)
    return None, Path(argument)


def read_run(folder: Path, label: str | None = None) -> ModelRun:
    folder = Path(folder)
    if not folder.is_dir():
        raise RunError(f"arena: {folder} is not a folder (give lm_eval's --output_path of a s2s_arena run)")
    newest: dict[str, tuple[str, Path]] = {}
    for path in sorted(folder.rglob("samples_s2s_arena*.jsonl")):
        match = SAMPLES_PATTERN.match(path.name)
        if match and (match[1] not in newest or match[2] > newest[match[1]][0]):
            newest[match[1]] = (match[2], path)
    if not newest:
        raise RunError(f"arena: no samples_s2s_arena_*.jsonl under {folder} (was lm_eval run with --log_samples?)")
    run = ModelRun(label or folder.resolve().name, folder, files=[p for _, p in newest.values()])
    for path in run.files:
        _read_samples(path, run)
    return run


def _read_samples(path: Path, run: ModelRun) -> None:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                sample = json.loads(line)
                doc = sample["doc"]
                input_id = doc["input_id"]
                text = sample["resps"][0][0]
            except (ValueError, KeyError, IndexError, TypeError) as error:
                raise RunError(f"arena: {path} line {number}: not an s2s_arena sample ({type(error).__name__}: {error})") from None
            records = sample.get("speech_output") or [None]
            speech = records[0]
            if input_id in run.answers:
                raise RunError(f"arena: {path} line {number}: input {input_id} answered twice in one run")
            if speech is None:
                (run.failed if sample.get("failed_items") else run.unspoken).append(input_id)
                continue
            run.answers[input_id] = Answer(input_id, doc.get("domain", ""), doc.get("arena_task", ""), text, speech, doc)
