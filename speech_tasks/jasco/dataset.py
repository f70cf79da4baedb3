"""JASCO's files: ``dataset/v0/v0.csv`` and the 80 clips, local or from the authors' GitHub archive.

``--metadata '{"data_dir": PATH}'`` reads ``PATH/dataset/v0/``. Without it the archive of
``BenoitWang/What_Are_They_Doing`` at the pinned commit is downloaded once into the cache
(``lm_eval_speech.paths.cache_root()/jasco/<commit>``), every file checked against its SHA-256.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
import shutil
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from lm_eval_speech import data
from lm_eval_speech.paths import cache_root
from lm_eval_speech.tasks.jasco.manifest import ARCHIVE_COMMIT, SHA256

REPOSITORY = "BenoitWang/What_Are_They_Doing"
ARCHIVE_URL = "https://codeload.github.com/{repo}/zip/{commit}"
SUBDIR = "dataset/v0"
CSV_COLUMNS = ("audio_id", "Audio", "Speech", "Audio-Only Answer", "Speech-Only Answer", "Correct Answer", "Correct Answer Keyword")

logger = logging.getLogger("lm_eval_speech.jasco")


def data_root(metadata: dict) -> tuple[Path, dict]:
    """The folder holding ``dataset/v0``, and provenance describing where it came from."""
    data_dir = data.option(metadata, data.DATA_DIR_KEY, "jasco")
    if data_dir:
        root = Path(os.path.expanduser(str(data_dir))).resolve()
        if not (root / SUBDIR / "v0.csv").is_file():
            raise data.DataError(f"jasco: {root / SUBDIR / 'v0.csv'} not found; data_dir must hold the repository's dataset/v0 folder")
        return root, {"source": "local", "data_dir": str(root)}
    commit = str(data.option(metadata, data.REVISION_KEY, "jasco") or ARCHIVE_COMMIT)
    root = cache_root() / "jasco" / commit
    if not (root / SUBDIR / "v0.csv").is_file():
        _download(commit, root)
    return root, {"source": "github", "repo": REPOSITORY, "commit": commit}


def _download(commit: str, root: Path) -> None:
    url = ARCHIVE_URL.format(repo=REPOSITORY, commit=commit)
    logger.info("jasco: downloading %s", url)
    try:
        with urllib.request.urlopen(url, timeout=120) as response:
            archive = zipfile.ZipFile(io.BytesIO(response.read()))
    except Exception as err:
        raise data.DataError(
            f"jasco: cannot download {url} ({type(err).__name__}: {err}). Point the task at a local copy of the "
            f'repository with --metadata \'{{"{data.DATA_DIR_KEY}": "PATH"}}\'.'
        ) from err
    root.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root.parent))
    try:
        target = scratch / SUBDIR
        target.mkdir(parents=True)
        for member in archive.namelist():
            parts = member.split("/", 1)  # archives hold one top folder, <repo>-<commit>/
            if len(parts) == 2 and parts[1].startswith(SUBDIR + "/") and not member.endswith("/"):
                (target / Path(parts[1]).name).write_bytes(archive.read(member))
        if commit == ARCHIVE_COMMIT:
            verify(scratch)
        try:
            os.replace(scratch, root)
        except OSError:
            if not (root / SUBDIR / "v0.csv").is_file():
                raise
            # another process (e.g. a data-parallel rank) finished the same download first: use its copy
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def differences(root: Path) -> list[str]:
    """Files missing or differing from the pinned release (empty: the published data, byte for byte)."""
    bad = []
    for name, expected in SHA256.items():
        path = root / SUBDIR / name
        if not path.is_file():
            bad.append(f"{name}: missing")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != expected:
            bad.append(f"{name}: SHA-256 differs")
    return bad


def verify(root: Path) -> None:
    """Every file of the pinned release present with its published SHA-256."""
    bad = differences(root)
    if bad:
        raise data.DataError(f"jasco: the downloaded data does not match commit {ARCHIVE_COMMIT}: " + "; ".join(bad[:10]))


def read_clips(root: Path) -> list[dict]:
    """The rows of ``v0.csv`` (one per clip), every column checked and named in errors."""
    path = root / SUBDIR / "v0.csv"
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise data.DataError(f"jasco: {path} lacks column(s) {', '.join(missing)}")
        rows = list(reader)
    problems = []
    for line, row in enumerate(rows, start=2):
        empty = [c for c in CSV_COLUMNS if not (row.get(c) or "").strip()]
        if empty:
            problems.append(f"{path} line {line} (audio_id={row.get('audio_id')!r}): empty {', '.join(empty)}")
        elif not (root / SUBDIR / f"{row['audio_id']}.wav").is_file():
            problems.append(f"{path} line {line}: clip {root / SUBDIR / (row['audio_id'] + '.wav')} not found")
    if problems:
        raise data.DataError("jasco: " + "; ".join(problems[:20]))
    if not rows:
        raise data.DataError(f"jasco: {path} has no rows")
    return rows
