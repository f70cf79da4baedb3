"""Where a benchmark's files come from, for every task of this project.

One mechanism: ``--metadata '{"data_dir": "PATH"}'`` points a task at a local copy laid out as
the benchmark publishes it; without it, the task reads the benchmark's own repository on the
Hugging Face hub (downloaded once into the hub cache; ``"revision"`` pins a commit). Only the
files a task needs are fetched. ``"load_audio": false`` reads the text files alone, for scoring
stored responses without the audio (``--model responses``).

Every file problem is a :class:`DataError` naming the file and the item.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import posixpath
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATA_DIR_KEY = "data_dir"
REVISION_KEY = "revision"
LOAD_AUDIO_KEY = "load_audio"
# Where tasks record what they read; it lands in results["configs"][task]["metadata"].
PROVENANCE_KEY = "lm_eval_speech"


class DataError(ValueError):
    """A benchmark file is missing, unreadable or malformed."""


@dataclass(frozen=True)
class HubSource:
    """A benchmark's home on the Hugging Face hub."""

    repo_id: str
    repo_type: str = "dataset"
    revision: str | None = None


def flag(metadata: dict, key: str, default: bool) -> bool:
    """Read a boolean task option from ``--metadata`` (accepts true/false strings too)."""
    value = metadata.get(key, default)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise DataError(f"--metadata {key}={value!r}: expected true or false")
    return bool(value)


def as_bool(value: Any) -> bool:
    """A boolean model_arg or gen_kwarg: lm-eval passes ``key=true`` as a string; other strings are false."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def record_provenance(metadata: dict, **entries: Any) -> None:
    """Add entries to the task's provenance dict, which lm-eval writes into the results file.

    The task YAML declares ``metadata: {lm_eval_speech: {}}``; lm-eval passes that same dict
    object to ``custom_dataset(**metadata)``, so filling it here reaches ``dump_config()``.
    """
    target = metadata.get(PROVENANCE_KEY)
    if isinstance(target, dict):
        target.update(entries)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def iter_jsonl(path: Path, *, label: str | None = None, error: type[ValueError] = DataError) -> Iterator[tuple[int, object]]:
    """(line number, parsed value) of each non-blank line; bad JSON raises ``error`` naming file and line."""
    name = label or str(path)
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as err:
                raise error(f"{name} line {number}: not valid JSON ({err.msg})") from None


def read_jsonl_lines(path: Path, *, label: str | None = None) -> list[tuple[int, dict]]:
    """(line number, object) of each item of a benchmark's JSON-lines file, blank lines skipped."""
    rows = []
    name = label or str(path)
    for number, row in iter_jsonl(path, label=name):
        if isinstance(row, list) and len(row) == 1 and isinstance(row[0], dict):
            row = row[0]  # SIB's readers accept a one-item list per line
        if not isinstance(row, dict):
            raise DataError(f"{name} line {number}: expected a JSON object, got {type(row).__name__}")
        rows.append((number, row))
    if not rows:
        raise DataError(f"{name}: no items")
    return rows


def read_jsonl(path: Path, *, label: str | None = None) -> list[dict]:
    """The objects of a benchmark's JSON-lines file (one per line)."""
    return [row for _, row in read_jsonl_lines(path, label=label)]


class BenchmarkFiles:
    """The files of one benchmark, in its published layout, local or on the hub.

    ``relpath`` arguments are POSIX paths relative to the benchmark's root.
    """

    def __init__(self, metadata: dict, hub: HubSource, benchmark: str):
        self.benchmark = benchmark
        self.hub = hub
        data_dir = metadata.get(DATA_DIR_KEY)
        self.revision = metadata.get(REVISION_KEY) or hub.revision
        if data_dir:
            root = Path(os.path.expanduser(str(data_dir))).resolve()
            if not root.is_dir():
                raise DataError(f"{benchmark}: --metadata data_dir={data_dir!r} is not a directory")
            self.local_root: Path | None = root
        else:
            self.local_root = None
        self._hub_root: Path | None = None
        self._hub_files: set[str] | None = None

    @property
    def is_local(self) -> bool:
        return self.local_root is not None

    def describe(self) -> dict:
        """Provenance: where the files came from."""
        if self.local_root is not None:
            return {"source": "local", "data_dir": str(self.local_root)}
        commit = self._hub_root.name if self._hub_root is not None else None
        return {"source": "huggingface", "repo": self.hub.repo_id, "revision": self.revision, "commit": commit}

    # -- single files ------------------------------------------------------------------
    def file(self, relpath: str) -> Path:
        """Local path of one file of the benchmark (downloaded first when on the hub)."""
        if self.local_root is not None:
            path = self.local_root / relpath
            if not path.is_file():
                raise DataError(
                    f"{self.benchmark}: {path} not found; data_dir must hold the benchmark's "
                    f"published layout (expected {relpath} under {self.local_root})"
                )
            return path
        root = self._download([relpath])
        path = root / relpath
        if not path.is_file():
            raise DataError(f"{self.benchmark}: {relpath} is not in hub repo {self.hub.repo_id}")
        return path

    # -- files named by items ----------------------------------------------------------
    def resolve_item_files(self, values: Sequence[str], *, listed_in: str, items: Sequence[str]) -> list[Path]:
        """Resolve file paths named inside a data file (e.g. ``audio_path``) to local files.

        A value may be relative to the benchmark root, relative to the folder of the data file
        that names it (``listed_in``), or absolute. Every value that resolves nowhere is
        reported at once, each with its item label.
        """
        base = posixpath.dirname(listed_in)
        available = None if self.local_root is not None else self._hub_listing(listed_in)
        resolved, missing = [], []
        for value, item in zip(values, items, strict=True):
            candidates = _candidates(value, base)
            hit = next((found for c in candidates if (found := self._locate(c, available))), None)
            if hit is None:
                shown = [c if os.path.isabs(c) else self._display(c) for c in candidates]
                missing.append(f"{item}: {value!r} not found (tried {', '.join(shown)})")
            resolved.append(hit)
        if missing:
            more = f"\n... and {len(missing) - 20} more" if len(missing) > 20 else ""
            raise DataError(
                f"{self.benchmark}: {len(missing)} file(s) named in {listed_in} are missing:\n"
                + "\n".join(missing[:20])
                + more
            )
        if self.local_root is None:
            root = self._download([p for p in resolved if not os.path.isabs(p)])
            resolved = [p if os.path.isabs(p) else str(root / p) for p in resolved]
        return [Path(p) for p in resolved]

    def _locate(self, candidate: str, hub_files: set[str] | None) -> str | None:
        """``candidate`` as a local path, or as a hub path when the hub has it; None if absent."""
        if os.path.isabs(candidate):
            return candidate if os.path.isfile(candidate) else None
        if self.local_root is not None:
            path = self.local_root / candidate
            return str(path) if path.is_file() else None
        return candidate if candidate in hub_files else None

    def _display(self, relpath: str) -> str:
        if self.local_root is not None:
            return str(self.local_root / relpath)
        return f"hf://{self.hub.repo_id}/{relpath}"

    # -- hub ---------------------------------------------------------------------------
    def _hub_listing(self, anchor: str) -> set[str]:
        """Files of the hub repo; offline, the files already cached beside ``anchor`` (a file we hold)."""
        if self._hub_files is None:
            from huggingface_hub import HfApi, snapshot_download

            try:
                files = HfApi().list_repo_files(self.hub.repo_id, repo_type=self.hub.repo_type, revision=self.revision)
            except Exception as err:
                try:  # a partial snapshot: the hub refuses to serve it whole from cache, so name a file
                    root = Path(
                        snapshot_download(
                            self.hub.repo_id, repo_type=self.hub.repo_type, revision=self.revision,
                            allow_patterns=[glob.escape(anchor)], local_files_only=True,
                        )
                    )
                except Exception:
                    raise DataError(self._unreachable(err)) from err
                files = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
            self._hub_files = set(files)
        return self._hub_files

    def _download(self, relpaths: Iterable[str]) -> Path:
        from huggingface_hub import snapshot_download

        patterns = sorted({glob.escape(p) for p in relpaths})
        try:
            root = snapshot_download(
                self.hub.repo_id,
                repo_type=self.hub.repo_type,
                revision=self.revision,
                allow_patterns=patterns or None,
            )
        except Exception as err:
            raise DataError(self._unreachable(err)) from err
        self._hub_root = Path(root)
        return self._hub_root

    def _unreachable(self, err: Exception) -> str:
        return (
            f"{self.benchmark}: cannot read hub repo {self.hub.repo_id} ({type(err).__name__}: {err}). "
            f'Point the task at a local copy with --metadata \'{{"{DATA_DIR_KEY}": "PATH"}}\'.'
        )


def _candidates(value: str, base: str) -> list[str]:
    if os.path.isabs(value):
        return [value]
    value = value.replace("\\", "/")
    first = posixpath.normpath(value)
    second = posixpath.normpath(posixpath.join(base, value)) if base else first
    return [first] if first == second else [first, second]
