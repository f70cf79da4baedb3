"""Where a benchmark's files come from, for every task of this project.

One mechanism: ``--metadata '{"data_dir": "PATH"}'`` points a task at a local copy laid out as
the benchmark publishes it; without it, the task reads the benchmark's own repository on the
Hugging Face hub (downloaded once into the hub cache; ``"revision"`` pins a commit). Only the
files a task needs are fetched. ``"load_audio": false`` reads the text files alone, for scoring
stored responses without the audio (``--model responses``).

``--metadata`` is one dict for every task of a run, so each per-benchmark key also takes a
mapping by benchmark (:func:`option`): ``{"data_dir": {"speechinstruct": P1, "jasco": P2}}``.

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
from pathlib import Path, PurePosixPath
from typing import Any

from lm_eval_speech.options import as_bool

DATA_DIR_KEY = "data_dir"
# The benchmarks of this project, as the names of per-benchmark --metadata mappings.
BENCHMARKS = ("speechinstruct", "jasco", "s2s_arena")
REVISION_KEY = "revision"
LOAD_AUDIO_KEY = "load_audio"


class DataError(ValueError):
    """A benchmark file is missing, unreadable or malformed."""


@dataclass(frozen=True)
class HubSource:
    """A benchmark's home on the Hugging Face hub."""

    repo_id: str
    repo_type: str = "dataset"
    revision: str | None = None


def benchmark_of(task: str) -> str:
    """The benchmark a task belongs to, from its name (``speechinstruct_close_en`` -> ``speechinstruct``)."""
    for benchmark in BENCHMARKS:
        if task == benchmark or task.startswith(benchmark + "_"):
            return benchmark
    raise DataError(f"{task!r} belongs to none of this project's benchmarks ({', '.join(BENCHMARKS)})")


def option(metadata: dict, key: str, benchmark: str, default: Any = None) -> Any:
    """A ``--metadata`` value for one benchmark: the value itself, or its entry in a mapping by benchmark.

    A dict whose keys are all benchmark names is such a mapping (a benchmark missing from it gets
    ``default``); a dict mixing benchmark names with other keys is refused as ambiguous.
    """
    if benchmark not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {benchmark!r}")
    value = metadata.get(key, default)
    if isinstance(value, dict) and value:
        named = [k for k in value if k in BENCHMARKS]
        if named and len(named) == len(value):
            return value.get(benchmark, default)
        if named:
            others = sorted(str(k) for k in value if k not in BENCHMARKS)
            raise DataError(
                f"--metadata {key}: mixes benchmark names {sorted(named)} with other keys {others}; give either one "
                f"value for every benchmark or a mapping whose keys are all benchmark names ({', '.join(BENCHMARKS)})"
            )
    return value


def flag(metadata: dict, key: str, default: bool, benchmark: str) -> bool:
    """A boolean task option from ``--metadata`` (true/false strings too, or a mapping by benchmark)."""
    return as_bool(option(metadata, key, benchmark, default), f"--metadata {key}")


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


class BenchmarkFiles:
    """The files of one benchmark, in its published layout, local or on the hub.

    ``relpath`` arguments are POSIX paths relative to the benchmark's root.
    """

    def __init__(self, metadata: dict, hub: HubSource, benchmark: str):
        self.benchmark = benchmark  # the task, in messages
        self.hub = hub
        family = benchmark_of(benchmark)
        data_dir = option(metadata, DATA_DIR_KEY, family)
        self.revision = option(metadata, REVISION_KEY, family) or hub.revision
        if data_dir:
            root = Path(os.path.expanduser(str(data_dir))).resolve()
            if not root.is_dir():
                raise DataError(f"{benchmark}: --metadata data_dir={data_dir!r} is not a directory")
            self.local_root: Path | None = root
        else:
            self.local_root = None
        self._hub_root: Path | None = None
        self._hub_files: set[str] | None = None
        self._by_name: dict[str, list[str]] | None = None

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

    # -- listing -------------------------------------------------------------------------
    def list_files(self, folder: str) -> list[str]:
        """Every file under ``folder`` (any nesting), as sorted POSIX paths relative to the root."""
        prefix = folder.strip("/") + "/"
        if self.local_root is not None:
            start = self.local_root / folder
            found = []
            for directory, _, names in os.walk(start):
                relative = Path(directory).relative_to(self.local_root).as_posix()
                found += [f"{relative}/{name}" for name in names]
            return sorted(found)
        return sorted(f for f in self._hub_listing() if f.startswith(prefix))

    # -- files named by items ----------------------------------------------------------
    def resolve_item_files(self, values: Sequence[str], *, listed_in: str, items: Sequence[str]) -> list[Path]:
        """Resolve file paths named inside a data file (e.g. ``audio_path``) to local files.

        Published data names its files every way: relative to the benchmark root, relative to
        the folder of the data file that names them (``listed_in``) or a folder above it, absolute on this machine,
        absolute from the authors' machine (the longest tail of the path that exists under the
        root is used), or by bare file name (unique under the root). Every value that resolves
        nowhere, or to two files, is reported at once, each with its item label.
        """
        base = posixpath.dirname(listed_in)
        resolved, problems = [], []
        for value, item in zip(values, items, strict=True):
            hit, problem = self._resolve_item_file(value, base)
            if problem:
                problems.append(f"{item}: {problem}")
            resolved.append(hit)
        if problems:
            more = f"\n... and {len(problems) - 20} more" if len(problems) > 20 else ""
            raise DataError(
                f"{self.benchmark}: {len(problems)} file(s) named in {listed_in} cannot be found under {self._display('')}:\n"
                + "\n".join(problems[:20])
                + more
            )
        if self.local_root is None:
            root = self._download([p for p in resolved if not os.path.isabs(p)])
            resolved = [p if os.path.isabs(p) else str(root / p) for p in resolved]
        elif resolved:
            resolved = [p if os.path.isabs(p) else str(self.local_root / p) for p in resolved]
        return [Path(p) for p in resolved]

    def _resolve_item_file(self, value: str, base: str) -> tuple[str | None, str | None]:
        """(absolute local path or root-relative path, None), or (None, what went wrong)."""
        if os.path.isabs(value) and os.path.isfile(value):
            return value, None
        parts = [p for p in PurePosixPath(value.replace("\\", "/")).parts if p not in ("/", ".", "..")]
        if not parts:
            return None, f"{value!r} names no file"
        if not os.path.isabs(value):
            relative = posixpath.normpath(value.replace("\\", "/"))
            # The root, then the listing file's folder and each folder above it.
            bases = ["", *(posixpath.join(*base.split("/")[:depth]) for depth in range(base.count("/") + 1, 0, -1))] if base else [""]
            for candidate in dict.fromkeys(posixpath.normpath(posixpath.join(b, relative)) for b in bases):
                if self._exists(candidate):
                    return candidate, None
        # A path from another machine: its longest tail that exists here.
        for start in range(len(parts)):
            if self._exists("/".join(parts[start:])):
                return "/".join(parts[start:]), None
        if len(parts) == 1:  # a bare file name: wherever it is, if only once
            matches = self._files_named(parts[0])
            if len(matches) == 1:
                return matches[0], None
            if len(matches) > 1:
                others = f" (and {len(matches) - 2} more)" if len(matches) > 2 else ""
                return None, f"{value!r} is ambiguous: {matches[0]} and {matches[1]}{others} both match; name the folder too"
        return None, (
            f"{value!r} not found (tried it relative to the root, to {base or 'the root'}/ and the folders "
            "above it, every tail of the path, and the file name alone)"
        )

    def _exists(self, relpath: str) -> bool:
        if self.local_root is not None:
            return (self.local_root / relpath).is_file()
        return relpath in self._hub_listing()

    def _files_named(self, name: str) -> list[str]:
        if self._by_name is None:
            if self.local_root is not None:
                every = (
                    Path(d).joinpath(n).relative_to(self.local_root).as_posix()
                    for d, _, names in os.walk(self.local_root) for n in names
                )
            else:
                every = iter(self._hub_listing())
            self._by_name = {}
            for relpath in every:
                self._by_name.setdefault(posixpath.basename(relpath), []).append(relpath)
        return sorted(self._by_name.get(name, []))

    def _display(self, relpath: str) -> str:
        if self.local_root is not None:
            return str(self.local_root / relpath)
        return f"hf://{self.hub.repo_id}/{relpath}"

    # -- hub ---------------------------------------------------------------------------
    def _hub_listing(self) -> set[str]:
        """Files of the hub repo; offline, the files of its cached snapshot."""
        if self._hub_files is None:
            from huggingface_hub import HfApi

            try:
                files = HfApi().list_repo_files(self.hub.repo_id, repo_type=self.hub.repo_type, revision=self.revision)
            except Exception as err:
                snapshot = self._cached_snapshot()
                if snapshot is None:
                    raise DataError(self._unreachable(err)) from err
                files = [p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file()]
            self._hub_files = set(files)
        return self._hub_files

    def _cached_snapshot(self) -> Path | None:
        """The hub cache's snapshot folder of this repo at our revision, if one was downloaded before."""
        from huggingface_hub import constants
        from huggingface_hub.file_download import repo_folder_name

        storage = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=self.hub.repo_id, repo_type=self.hub.repo_type)
        revision = self.revision or "main"
        ref = storage / "refs" / revision
        commit = ref.read_text().strip() if ref.is_file() else revision
        snapshot = storage / "snapshots" / commit
        return snapshot if snapshot.is_dir() else None

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
