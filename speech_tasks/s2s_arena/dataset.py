"""S2S-Arena inputs: the audio files (one folder per task) and, where published, their metadata.

Sources, as every task of this project reads them (:mod:`lm_eval_speech.data`):

* the hub dataset ``FreedomIntelligence/S2S-Arena`` (154 clips, one folder per task), or
* ``--metadata '{"data_dir": PATH}'``: a local folder in the same layout, ``<task folder>/<clip>``
  (folder names as the authors spell them; see :mod:`taxonomy`).

Metadata per clip (transcript, task description, evaluation target, level, category) is read,
when present, from

* ``<root>/data/*.json``: the authors' HF Space files, copied beside the audio (or fetched from
  the Space when reading the hub), named by task (``identity.json``, ``tongue.json``...). A record
  reaches its clip by ``input_path`` (``/input/identity/age/adults/audio_0.mp3``: the longest tail
  of the path that is a clip), else by file stem when that stem is unique in the file's task folder;
* ``<root>/metadata.jsonl``: one object per clip, ``{"audio": "<folder>/<clip>", "transcript": ...,
  "task_description": ..., "evaluation_target": ..., "level": ..., "category": ...}`` (our documented
  layout), which overrides the Space's fields.

A clip never takes two records, nor a record two clips: such data is refused, or with
``--metadata '{"metadata_conflicts": "skip"}'`` those clips are left out. Records that reach no
clip and clips without a record are counted in the results and listed in the log.
"""

from __future__ import annotations

import functools
import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
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
    "task_description": ("task_description", "description", "task_desc", "instruction"),
    "evaluation_target": ("evaluation_target", "eval_target", "target", "evaluation", "criteria", "requirement"),
}
LABEL_FIELDS = ("level", "category")  # kept on every doc: the leaderboard is broken down by them
CONFLICTS_KEY = "metadata_conflicts"
CONFLICT_POLICIES = ("error", "skip")
LISTED = 20  # names per warning; the counts in the results are complete

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


def conflict_policy(metadata: dict) -> str:
    """What to do with a clip that two records claim (or a record naming two clips): ``error`` or ``skip``."""
    policy = data.option(metadata, CONFLICTS_KEY, "s2s_arena", "error")
    if policy not in CONFLICT_POLICIES:
        raise data.DataError(f"s2s_arena: --metadata {CONFLICTS_KEY} must be one of {', '.join(CONFLICT_POLICIES)}, not {policy!r}")
    return policy


# -- matching records to clips -------------------------------------------------------------------


@dataclass(frozen=True)
class Link:
    """One metadata record and the clips it names (none, one, or, in broken data, several)."""

    record: str  # where it is, for messages: "identity.json[3] (id 3)", "metadata.jsonl line 2"
    clips: tuple[str, ...]
    fields: dict
    reason: str = ""  # why it names no clip


@dataclass(frozen=True)
class Conflict:
    records: tuple[str, ...]
    clips: tuple[str, ...]

    def describe(self) -> str:
        if len(self.records) > 1:
            return f"clip {self.clips[0]} has {len(self.records)} records: {', '.join(self.records)}"
        return f"record {self.records[0]} names {len(self.clips)} clips: {', '.join(self.clips)}"


@dataclass
class MetadataReading:
    fields: dict[str, dict]  # per clip: transcript, task_description, evaluation_target, level, category
    left_out: list[str]  # clips whose records conflict (metadata_conflicts: skip)
    counts: dict = field(default_factory=dict)


class ClipIndex:
    """The clips under the dataset root, found by path tail or by (task folder, file stem)."""

    def __init__(self, relpaths: list[str]) -> None:
        self.paths = set(relpaths)
        self.by_stem: dict[tuple[str, str], list[str]] = defaultdict(list)
        for relpath in relpaths:
            path = PurePosixPath(relpath)
            self.by_stem[(taxonomy.folder_task(path.parts[0]) or "", path.stem.lower())].append(relpath)

    def at_path(self, value: str) -> str | None:
        """The clip at the longest tail of ``value`` (``/input/identity/age/adults/audio_0.mp3``)."""
        parts = [part for part in PurePosixPath(value.replace("\\", "/")).parts if part not in ("/", ".")]
        tails = ("/".join(parts[start:]) for start in range(len(parts)))
        return next((tail for tail in tails if tail in self.paths), None)

    def with_stem(self, value: str, folder: str) -> list[str]:
        return self.by_stem.get((folder, PurePosixPath(value.replace("\\", "/")).stem.lower()), [])


def read_metadata(roots: list[Path], relpaths: list[str], policy: str = "error") -> MetadataReading:
    """Per-clip metadata from the Space files and ``metadata.jsonl`` of ``roots`` (later roots win)."""
    index = ClipIndex(relpaths)
    space_files = _space_files(roots)
    space = [_link_space_record(label, record, folder, index) for label, record, folder in _space_records(space_files)]
    jsonl = [link for root in roots for link in _jsonl_links(root, index.paths)]
    conflicts = _conflicts(space) + _conflicts(jsonl)
    if conflicts and policy == "error":
        raise data.DataError(_conflict_message(conflicts, roots))
    conflicting = {record for conflict in conflicts for record in conflict.records}
    left_out = sorted({clip for conflict in conflicts for clip in conflict.clips})
    found: dict[str, dict] = {}
    for link in space + jsonl:  # metadata.jsonl last: it overrides the Space's fields
        if len(link.clips) == 1 and link.record not in conflicting:
            found.setdefault(link.clips[0], {}).update(link.fields)
    unmatched = [link for link in space if not link.clips]
    without_record = [relpath for relpath in relpaths if relpath not in found and relpath not in left_out]
    _log_leftovers(roots[-1], unmatched, without_record, conflicts if policy == "skip" else [])
    counts = {
        "metadata_conflicts": policy,
        "space_files": len(space_files),
        "space_records": len(space),
        "space_records_matched": sum(1 for link in space if len(link.clips) == 1 and link.record not in conflicting),
        "space_records_without_clip": len(unmatched),
        "space_records_in_conflict": sum(1 for link in space if link.record in conflicting),
        "metadata_jsonl_records": len(jsonl),
        "clips_without_record": len(without_record),
        "clips_left_out_for_conflicts": len(left_out),
    }
    return MetadataReading(found, left_out, counts)


def _space_files(roots: list[Path]) -> list[Path]:
    """``data/*.json`` of every root by file name, in name order; a later root's copy replaces an earlier one."""
    by_name: dict[str, Path] = {}
    for root in roots:
        if (root / SPACE_DIR).is_dir():
            by_name.update({path.name: path for path in sorted((root / SPACE_DIR).glob("*.json"))})
    return [by_name[name] for name in sorted(by_name)]


def _space_records(paths: list[Path]) -> list[tuple[str, dict, str | None]]:
    """``(label, record, task folder of its file)`` for every record of the Space files."""
    found = []
    for path in paths:
        folder = taxonomy.space_file_folder(path.stem)
        for position, record in enumerate(_records(path)):
            identity = f" (id {record['id']})" if record.get("id") not in (None, "") else ""
            found.append((f"{path.name}[{position}]{identity}", record, folder))
    return found


def _link_space_record(label: str, record: dict, folder: str | None, index: ClipIndex) -> Link:
    values = _file_values(record)
    fields = {**_space_fields(record), **_labels({str(k).lower(): v for k, v in record.items()})}
    at_paths = list(dict.fromkeys(clip for clip in map(index.at_path, values) if clip))
    if at_paths:
        return Link(label, tuple(at_paths), fields)
    # a path that exists nowhere (another folder spelling): its stem, if it names one clip only
    for value in values if folder else []:
        same_stem = index.with_stem(value, folder)
        if len(same_stem) == 1:
            return Link(label, (same_stem[0],), fields)
    return Link(label, (), fields, _no_clip_reason(values, folder, index))


def _file_values(record: dict) -> list[str]:
    """Values naming the input clip: ``input_path`` first, then other audio file names (model outputs excluded)."""
    lowered = {str(k).lower(): v for k, v in record.items()}
    first = [lowered["input_path"]] if isinstance(lowered.get("input_path"), str) else []
    others = [
        value for key, value in lowered.items()
        if key != "input_path" and not key.startswith("output") and isinstance(value, str)
        and PurePosixPath(value).suffix.lower() in AUDIO_SUFFIXES
    ]
    return list(dict.fromkeys(first + others))


def _no_clip_reason(values: list[str], folder: str | None, index: ClipIndex) -> str:
    if not values:
        return "names no audio file"
    if folder is None:
        return f"{values[0]} is no clip, and the file's name matches no task folder"
    shared = len(index.with_stem(values[0], folder))
    return f"{values[0]} is no clip" + (f" and its file name fits {shared} clips in {folder}/" if shared else "")


def _jsonl_links(root: Path, clips: set[str]) -> list[Link]:
    jsonl = root / METADATA_FILE
    if not jsonl.is_file():
        return []
    links = []
    for line, record in data.iter_jsonl(jsonl, label=f"s2s_arena {METADATA_FILE}"):
        if not isinstance(record, dict) or not isinstance(record.get("audio"), str):
            raise data.DataError(f"s2s_arena: {jsonl} line {line}: expected an object with an \"audio\" path")
        relpath = PurePosixPath(record["audio"]).as_posix()
        if relpath not in clips:
            raise data.DataError(f"s2s_arena: {jsonl} line {line}: {relpath} is not an input clip under {jsonl.parent}")
        fields = {k: str(record[k]) for k in FIELDS if record.get(k)}
        links.append(Link(f"{METADATA_FILE} line {line}", (relpath,), {**fields, **_labels(record)}))
    return links


def _conflicts(links: list[Link]) -> list[Conflict]:
    """Clips claimed by several records, then records naming several clips."""
    claims: dict[str, list[str]] = defaultdict(list)
    for link in links:
        for clip in link.clips:
            claims[clip].append(link.record)
    shared = [Conflict(tuple(records), (clip,)) for clip, records in sorted(claims.items()) if len(records) > 1]
    return shared + [Conflict((link.record,), link.clips) for link in links if len(link.clips) > 1]


def _conflict_message(conflicts: list[Conflict], roots: list[Path]) -> str:
    lines = [conflict.describe() for conflict in conflicts]
    more = [f"... and {len(lines) - LISTED} more"] if len(lines) > LISTED else []
    where = ", ".join(str(root) for root in roots)
    return "\n  ".join([
        f"s2s_arena: {len(conflicts)} metadata conflict(s) in {where}: a clip takes one record, a record one clip:",
        *lines[:LISTED], *more,
        f"Correct the records, or leave these clips out with --metadata '{{\"{CONFLICTS_KEY}\": \"skip\"}}'.",
    ])


def _log_leftovers(root: Path, unmatched: list[Link], without_record: list[str], skipped: list[Conflict]) -> None:
    _warn_list(root, "Space record(s) reach no clip", [f"{link.record}: {link.reason}" for link in unmatched])
    _warn_list(root, "clip(s) have no metadata record (empty transcript and description)", without_record)
    _warn_list(root, f"metadata conflict(s), their clips left out ({CONFLICTS_KEY}: skip)",
               [conflict.describe() for conflict in skipped])


def _warn_list(root: Path, what: str, names: list[str]) -> None:
    if names:
        more = f"; ... and {len(names) - LISTED} more" if len(names) > LISTED else ""
        _warn_once(f"s2s_arena: {root}: {len(names)} {what}: {'; '.join(names[:LISTED])}{more}")


@functools.lru_cache(maxsize=None)  # the group's four domain tasks read the same metadata: say it once
def _warn_once(message: str) -> None:
    logger.warning(message)


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


def _space_fields(record: dict) -> dict:
    lowered = {str(k).lower(): v for k, v in record.items()}
    fields = {}
    for name, spellings in FIELDS.items():
        value = next((lowered[s] for s in spellings if isinstance(lowered.get(s), str) and lowered[s].strip()), None)
        if value is not None:
            fields[name] = value.strip()
    return fields


def _labels(record: dict) -> dict:
    """``level`` and ``category`` as text (the Space may write a level as a number)."""
    labels = {}
    for name in LABEL_FIELDS:
        value = record.get(name)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool) and str(value).strip():
            labels[name] = str(value).strip()
    return labels
