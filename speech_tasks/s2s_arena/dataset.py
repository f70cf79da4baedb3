"""S2S-Arena inputs: the audio files (one folder per task) and, where published, their metadata.

Sources, as every task of this project reads them (:mod:`lm_eval_speech.data`):

* the hub dataset ``FreedomIntelligence/S2S-Arena`` (154 clips, one folder per task), or
* ``--metadata '{"data_dir": PATH}'``: a local folder in the same layout, ``<task folder>/<clip>``
  (folder names as the authors spell them; see :mod:`taxonomy`).

Metadata per clip (transcript, task description, evaluation target) is read, when present, from

* ``<root>/metadata.jsonl``: one object per clip, ``{"audio": "<folder>/<clip>", "transcript": ...,
  "task_description": ..., "evaluation_target": ...}`` (our documented layout), and
* ``<root>/data/*.json``: the authors' HF Space files, copied beside the audio (or fetched from
  the Space when reading the hub). Their schema is unpublished, so they are read tolerantly
  and every record that could not be matched to a clip is counted in the results.
"""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path, PurePosixPath

from lm_eval_speech import data

from . import taxonomy

HUB = data.HubSource("FreedomIntelligence/S2S-Arena")
SPACE = data.HubSource("FreedomIntelligence/S2S-Arena", repo_type="space")
AUDIO_SUFFIXES = (".mp3", ".wav", ".flac", ".ogg", ".m4a", ".opus")
METADATA_FILE = "metadata.jsonl"
SPACE_DIR = "data"
FIELDS = {
    "transcript": ("transcript", "transcription", "text", "content", "query", "question", "input_text", "prompt"),
    "task_description": ("task_description", "description", "task_desc", "instruction", "task"),
    "evaluation_target": ("evaluation_target", "eval_target", "target", "evaluation", "criteria", "requirement"),
}

logger = logging.getLogger("lm_eval_speech.s2s_arena")


def locate(metadata: dict) -> tuple[Path, dict]:
    """The folder holding the inputs, and where it came from."""
    files = data.BenchmarkFiles(metadata, HUB, "s2s_arena")
    if files.is_local:
        return files.local_root, files.describe()
    root = files._download([])  # the whole dataset: 154 short clips
    return root, files.describe()


def audio_files(root: Path) -> tuple[list[tuple[str, str]], list[str]]:
    """``(relpath, task)`` of every clip under ``root``, and the audio files that belong to no task."""
    clips, unassigned = [], []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix.lower() not in AUDIO_SUFFIXES:
            continue
        relative = PurePosixPath(path.relative_to(root).as_posix())
        task = taxonomy.task_of(relative.parts[0], path.name) if len(relative.parts) > 1 else None
        (clips.append((str(relative), task)) if task else unassigned.append(str(relative)))
    return clips, unassigned


def read_metadata(root: Path, relpaths: list[str]) -> tuple[dict[str, dict], dict]:
    """Per-clip metadata found under ``root``, and counts of what was read and left unmatched."""
    found: dict[str, dict] = {}
    report = {"space_files": 0, "space_records": 0, "space_unmatched": 0, "metadata_jsonl_records": 0}
    by_stem: dict[tuple[str, str], str] = {}
    for relpath in relpaths:
        parts = PurePosixPath(relpath)
        by_stem[(parts.parts[0].lower(), parts.stem.lower())] = relpath
        by_stem.setdefault(("", parts.stem.lower()), relpath)
    for json_file in sorted((root / SPACE_DIR).glob("*.json")) if (root / SPACE_DIR).is_dir() else []:
        report["space_files"] += 1
        for record in _records(json_file):
            report["space_records"] += 1
            relpath = _match(record, json_file.stem.lower(), by_stem)
            if relpath is None:
                report["space_unmatched"] += 1
                continue
            found.setdefault(relpath, {}).update(_fields(record))
    jsonl = root / METADATA_FILE
    if jsonl.is_file():
        for line, record in data.iter_jsonl(jsonl, label=f"s2s_arena {METADATA_FILE}"):
            if not isinstance(record, dict) or not isinstance(record.get("audio"), str):
                raise data.DataError(f"s2s_arena: {jsonl} line {line}: expected an object with an \"audio\" path")
            relpath = PurePosixPath(record["audio"]).as_posix()
            if relpath not in relpaths:
                raise data.DataError(f"s2s_arena: {jsonl} line {line}: {relpath} is not an input clip under {root}")
            report["metadata_jsonl_records"] += 1
            found.setdefault(relpath, {}).update({k: str(record[k]) for k in FIELDS if record.get(k)})
    return found, report


@functools.lru_cache(maxsize=None)  # the group's four domain tasks ask once, not four times
def fetch_space_metadata(root: Path) -> Path | None:
    """The Space's ``data/*.json`` beside a hub download; None (with a warning) when unreachable."""
    from huggingface_hub import snapshot_download

    try:
        space = Path(snapshot_download(SPACE.repo_id, repo_type=SPACE.repo_type, allow_patterns=[f"{SPACE_DIR}/*.json"]))
    except Exception as error:  # the Space is optional: clips still run, judges then lack the metadata
        logger.warning("s2s_arena: task metadata from the Space %s is unavailable (%s)", SPACE.repo_id, error)
        return None
    return space


def _records(path: Path) -> list[dict]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise data.DataError(f"s2s_arena: {path}: unreadable JSON ({error})") from error
    if isinstance(document, dict):
        lists = [v for v in document.values() if isinstance(v, list)]
        keyed = [dict(v, id=k) if isinstance(v, dict) else {"id": k, "text": v} for k, v in document.items()]
        document = lists[0] if len(lists) == 1 else keyed
    return [r for r in document if isinstance(r, dict)] if isinstance(document, list) else []


def _match(record: dict, json_stem: str, by_stem: dict[tuple[str, str], str]) -> str | None:
    folder = taxonomy.FOLDER_ALIASES.get(json_stem, json_stem)
    folders = {json_stem, folder} | {k for k, v in taxonomy.FOLDER_ALIASES.items() if v == folder}
    if folder in taxonomy.MEDICAL_PREFIXES:
        folders.add(taxonomy.MEDICAL_FOLDER)
    for value in record.values():
        if not isinstance(value, str | int) or isinstance(value, bool):
            continue
        stem = PurePosixPath(str(value)).stem.lower()
        for candidate in folders:
            if (candidate, stem) in by_stem:
                return by_stem[(candidate, stem)]
    return None


def _fields(record: dict) -> dict:
    lowered = {str(k).lower(): v for k, v in record.items()}
    fields = {}
    for field, names in FIELDS.items():
        value = next((lowered[n] for n in names if isinstance(lowered.get(n), str) and lowered[n].strip()), None)
        if value is not None:
            fields[field] = value.strip()
    return fields
