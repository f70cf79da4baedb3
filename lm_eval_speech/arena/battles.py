"""One pairwise battle between two models' answers, and the files that hold many.

Our own format is JSON Lines with :class:`Battle`'s field names (``write_battles_jsonl``).
``read_battles_csv`` reads a spreadsheet export; ``read_human_battles`` imports the human
votes of other tools, whose layout is not known in advance: it guesses field spellings and
reports every record it cannot read instead of dropping it.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

WINNERS = ("model_a", "model_b", "tie")
SCORES = {"model_a": 1.0, "model_b": 0.0, "tie": 0.5}


class BattleError(ValueError):
    """A battle or battle file that cannot be read; the message names the battle or file and line."""


@dataclass(frozen=True)
class Battle:
    model_a: str
    model_b: str
    winner: str  # "model_a", "model_b" or "tie"
    input_id: str = ""
    domain: str = ""
    task: str = ""
    level: str = ""  # the input's difficulty level and category, as the data names them
    category: str = ""
    source: str = "judge"  # or "human"
    judge: str = ""
    detail: str = ""

    def __post_init__(self) -> None:
        if not self.model_a or not self.model_b:
            raise BattleError(f"battle {self.describe()}: both model names are needed")
        if self.model_a == self.model_b:
            raise BattleError(f"battle {self.describe()}: a model cannot battle itself")
        if self.winner not in WINNERS:
            raise BattleError(f"battle {self.describe()}: winner {self.winner!r} is not one of {', '.join(WINNERS)}")

    @property
    def score_a(self) -> float:
        """Model A's score: 1 for a win, 0 for a loss, 0.5 for a tie."""
        return SCORES[self.winner]

    def describe(self) -> str:
        where = f" on {self.input_id!r}" if self.input_id else ""
        return f"{self.model_a!r} vs {self.model_b!r}{where}"


FIELD_NAMES = tuple(field.name for field in fields(Battle))
REQUIRED = ("model_a", "model_b", "winner")


# --- our own JSON Lines ---------------------------------------------------------------------------


def write_battles_jsonl(path: str | Path, battles: Iterable[Battle]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for battle in battles:
            out.write(json.dumps(asdict(battle), ensure_ascii=False) + "\n")
    return path


def _numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    with path.open(encoding="utf-8") as lines:
        for line_number, line in enumerate(lines, start=1):
            if line.strip():
                yield line_number, line


# --- CSV ------------------------------------------------------------------------------------------


def read_battles_csv(path: str | Path, source: str = "judge") -> list[Battle]:
    """A header row with at least model_a, model_b, winner; other Battle columns optional, the rest ignored.

    The winner may be spelt as ``normalise_winner`` accepts (``A``, ``b``, ``tie (bothbad)``, a model's name...).
    """
    path = Path(path)
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        header = [name.strip() for name in reader.fieldnames or ()]
        missing = [name for name in REQUIRED if name not in header]
        if missing:
            raise BattleError(f"{path}:1: header lacks column(s) {', '.join(missing)}")
        reader.fieldnames = header
        battles = []
        for row in reader:
            values = {name: (row.get(name) or "").strip() for name in FIELD_NAMES if name in header}
            values["source"] = values.get("source") or source
            try:
                values["winner"] = normalise_winner(values["winner"], values["model_a"], values["model_b"])
                battles.append(Battle(**values))
            except BattleError as error:
                raise BattleError(f"{path}:{reader.line_num}: {error}") from None
    return battles


# --- winner spellings -----------------------------------------------------------------------------

_A_ALIASES = {"modela", "a", "model1", "1", "left", "first", "leftmodel", "modelleft", "systema", "system1"}
_B_ALIASES = {"modelb", "b", "model2", "2", "right", "second", "rightmodel", "modelright", "systemb", "system2"}
_TIE_WORDS = {"tie", "draw", "equal", "same", "both", "bothbad", "bothgood", "neither"}


def _canonical(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.casefold())


def normalise_winner(value: Any, model_a: str, model_b: str) -> str:
    """``model_a``, ``model_b`` or ``tie`` from the many ways votes are written down.

    A model's own name is tried first, so models literally called "A" or "B" mean themselves;
    then side words (a/b, 1/2, left/right, model_a/model1...); then tie words, including
    Chatbot Arena's ``tie (bothbad)``.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise BattleError(f"winner {value!r} is neither a model, a side nor a tie")
    text = str(value).strip()
    for side, name in (("model_a", model_a), ("model_b", model_b)):
        if text == name:
            return side
    for side, name in (("model_a", model_a), ("model_b", model_b)):
        if name and text.casefold() == name.casefold():
            return side
    canonical = _canonical(text)
    if canonical in _A_ALIASES:
        return "model_a"
    if canonical in _B_ALIASES:
        return "model_b"
    if canonical in _TIE_WORDS or canonical.startswith("tie"):
        return "tie"
    raise BattleError(f"winner {value!r} is neither {model_a!r}, {model_b!r}, a side (A/B) nor a tie")


# --- tolerant import of human votes ---------------------------------------------------------------

# Field spellings seen in arena exports, compared after _canonical (so model_a == modelA == "Model A").
_MODEL_KEY_PAIRS = (
    ("modela", "modelb"),
    ("model1", "model2"),
    ("leftmodel", "rightmodel"),
    ("modelleft", "modelright"),
    ("left", "right"),
    ("systema", "systemb"),
    ("system1", "system2"),
    ("a", "b"),
)
_WINNER_KEYS = ("winner", "choice", "result", "preference", "preferred", "vote", "better", "judgement", "judgment",
                "outcome", "label")
_OPTIONAL_KEYS = {
    "input_id": ("inputid", "id", "questionid", "qid", "sampleid", "itemid", "promptid", "audioid", "index", "idx"),
    "domain": ("domain", "category", "scenario", "scene"),
    "task": ("task",),
    "level": ("level", "difficulty"),
    "judge": ("judge", "annotator", "rater", "evaluator", "voter", "worker", "user", "userid"),
    "detail": ("detail", "reason", "comment", "comments", "explanation", "rationale", "note"),
}
_NAME_KEYS = ("name", "model", "modelname", "id")  # when a model is an object rather than a name


def read_human_battles(path: str | Path) -> tuple[list[Battle], list[str]]:
    """Human votes from ``.jsonl``, ``.csv`` or ``.json`` (a list of objects, or an object holding such lists).

    Returns ``(battles, problems)``: each problem names the record (its index, and line where there is
    one) and why it could not be read. Unreadable files raise :class:`BattleError`.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        labelled = _jsonl_records(path)
    elif suffix == ".csv":
        labelled = _csv_records(path)
    elif suffix == ".json":
        labelled = _json_records(path)
    else:
        raise BattleError(f"{path}: cannot read {suffix or 'suffix-less'} files; use .jsonl, .csv or .json")
    battles, problems = [], []
    for label, record in labelled:
        try:
            battles.append(_battle_from_foreign_record(record))
        except BattleError as error:
            problems.append(f"record {label}: {error}")
    return battles, problems


def _jsonl_records(path: Path) -> list[tuple[str, Any]]:
    labelled = []
    for index, (line_number, line) in enumerate(_numbered_lines(path)):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            record = _Unreadable(f"not JSON ({error.msg})")
        labelled.append((f"{index} (line {line_number})", record))
    return labelled


def _csv_records(path: Path) -> list[tuple[str, Any]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        return [(f"{index} (line {reader.line_num})", dict(row)) for index, row in enumerate(reader)]


def _json_records(path: Path) -> list[tuple[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise BattleError(f"{path}:{error.lineno}: not JSON ({error.msg})") from None
    found = _find_records(data, prefix="")
    if found is None:
        raise BattleError(f"{path}: found no list of battle records (a JSON list, or an object holding one)")
    return found


def _find_records(data: Any, prefix: str, depth: int = 0) -> list[tuple[str, Any]] | None:
    """The battle records in a JSON document, each with the label a problem report uses."""
    if isinstance(data, list):
        return [(f"{prefix}[{index}]" if prefix else str(index), record) for index, record in enumerate(data)]
    if not isinstance(data, dict) or depth > 3:
        return None
    if any(_canonical(key) in _WINNER_KEYS for key in data):
        return None  # a single record, not a container
    lists = {key: value for key, value in data.items() if isinstance(value, list)}
    if len(lists) == 1:
        (value,) = lists.values()
        return _find_records(value, prefix="")
    if lists:  # several lists: keep them all, each label saying which
        return [item for key, value in lists.items() for item in _find_records(value, prefix=str(key))]
    if data and all(isinstance(value, dict) for value in data.values()):
        if any(_canonical(key) in _WINNER_KEYS for value in data.values() for key in value):
            # records keyed by their id: the key stands in for a missing input_id
            return [(repr(key), _KeyedRecord(key, value)) for key, value in data.items()]
        for key, value in data.items():
            found = _find_records(value, prefix="", depth=depth + 1)
            if found is not None:
                return [(f"{key}.{label}", record) for label, record in found]
    return None


class _Unreadable(str):
    """A record that failed before field lookup; its text is the reason."""


class _KeyedRecord(dict):
    def __init__(self, key: str, record: Mapping[str, Any]) -> None:
        super().__init__(record)
        self.key = key


def _battle_from_foreign_record(record: Any) -> Battle:
    if isinstance(record, _Unreadable):
        raise BattleError(str(record))
    if not isinstance(record, dict):
        raise BattleError(f"expected an object, got {type(record).__name__}")
    by_key = {_canonical(str(key)): value for key, value in record.items()}
    model_a, model_b = _models(by_key)
    winner_key = next((key for key in _WINNER_KEYS if key in by_key), None)
    if winner_key is None:
        raise BattleError(f"no winner field (looked for {', '.join(_WINNER_KEYS)})")
    values = {"model_a": model_a, "model_b": model_b, "source": "human"}
    values["winner"] = normalise_winner(by_key[winner_key], model_a, model_b)
    for name, spellings in _OPTIONAL_KEYS.items():
        key = next((key for key in spellings if by_key.get(key) not in (None, "")), None)
        if key is not None:
            values[name] = str(by_key[key]).strip()
    if not values.get("input_id") and isinstance(record, _KeyedRecord):
        values["input_id"] = str(record.key)
    return Battle(**values)


def _models(by_key: Mapping[str, Any]) -> tuple[str, str]:
    for key_a, key_b in _MODEL_KEY_PAIRS:
        if key_a in by_key and key_b in by_key:
            return _model_name(by_key[key_a], key_a), _model_name(by_key[key_b], key_b)
    raise BattleError("no pair of model fields (looked for model_a/model_b, modelA/modelB, model1/model2, left/right...)")


def _model_name(value: Any, key: str) -> str:
    if isinstance(value, dict):
        inner = {_canonical(str(name)): item for name, item in value.items()}
        value = next((inner[name] for name in _NAME_KEYS if isinstance(inner.get(name), str)), None)
    if not isinstance(value, str) or not value.strip():
        raise BattleError(f"field {key!r} holds no model name")
    return value.strip()
