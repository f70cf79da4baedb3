"""Persistent, content-addressed store of model outputs (SQLite): one cache for judges, the arena and API models.

One row per output: the key hashes the model's identity (backend, endpoint, model), the full
messages, the sampling settings (``n`` aside) and the output's index, so ``n=4`` is four rows
whether it came from one request or four. Beside the key each row keeps a readable summary of
the request (model, endpoint, settings, the messages with audio and long text shortened), so a
person can see what was paid for. Rows are committed as each call returns: a run killed
mid-judging keeps everything it paid for. WAL mode lets several accelerate ranks write at once.
No request header (and so no API key) is ever stored. A spoken reply keeps its audio and how long
it took (``timing``, the :class:`~lm_eval_speech.speech.latency.Timing` as JSON), so a replay
reports the latency the endpoint had, not the cache's.

The default file is ``calls.sqlite`` in the cache folder; the first time it is opened, the rows
of the files that served judges and API models before (``judge.sqlite``, ``openai_audio.sqlite``
beside it) are imported, so nothing paid for is paid again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import time
from dataclasses import asdict
from pathlib import Path
from typing import NamedTuple

from lm_eval_speech.calls.config import canonical_json
from lm_eval_speech.speech.latency import Timing

logger = logging.getLogger("lm_eval_speech.calls")

SCHEMA_VERSION = 1  # part of every key: changing it would orphan every cached output
LEGACY_FILES = ("judge.sqlite", "openai_audio.sqlite")
SUMMARY_TEXT = 160  # characters of each message part kept in the summary
_SCHEMA = """
CREATE TABLE IF NOT EXISTS judge_outputs (
    key TEXT PRIMARY KEY,
    judge TEXT NOT NULL,
    text TEXT NOT NULL,
    finish_reason TEXT,
    created REAL NOT NULL,
    audio TEXT,
    request TEXT,
    timing TEXT
)
"""


def sample_key(identity: dict, messages: list[dict], sampling: dict, sample_index: int) -> str:
    without_n = {k: v for k, v in sampling.items() if k != "n"}
    payload = {"v": SCHEMA_VERSION, "judge": identity, "messages": messages, "sampling": without_n, "sample": sample_index}
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


def request_summary(identity: dict, messages: list[dict], sampling: dict) -> str:
    """What a person needs to recognise the request: model, settings, shortened messages."""
    def shorten(content):
        if isinstance(content, str):
            return content if len(content) <= SUMMARY_TEXT else content[:SUMMARY_TEXT] + f"... ({len(content)} chars)"
        parts = []
        for part in content or []:
            if part.get("type") == "text":
                parts.append(shorten(part.get("text", "")))
            else:
                payload = canonical_json(part).encode("utf-8")
                parts.append(f"<{part.get('type', 'part')} sha256:{hashlib.sha256(payload).hexdigest()[:12]}>")
        return parts

    return canonical_json({
        "model": identity, "sampling": {k: v for k, v in sampling.items() if k != "n"},
        "messages": [{"role": m.get("role"), "content": shorten(m.get("content"))} for m in messages],
    })


class Stored(NamedTuple):
    """One cached output."""

    text: str
    finish_reason: str | None
    audio: str | None = None
    timing: Timing | None = None


def _timing(stored: str | None) -> Timing | None:
    if not stored:
        return None
    try:
        return Timing(**json.loads(stored))
    except (ValueError, TypeError):  # a row from another version: the output is good, its timing unknown
        return None


class CallCache:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        # isolation_level=None: every statement commits at once (nothing is lost on a kill).
        self._db = sqlite3.connect(str(self.path), timeout=60.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA busy_timeout = 60000")
        self._db.execute("PRAGMA journal_mode = WAL")
        # WAL + NORMAL: a killed process loses nothing committed; only an OS crash may drop the
        # last rows. FULL would fsync every row (1.2 ms each, on the calling event loop).
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.execute(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(judge_outputs)")}
        for column in ("audio", "request", "timing"):  # files written before spoken replies / summaries / timings were stored
            if column not in columns:
                self._db.execute(f"ALTER TABLE judge_outputs ADD COLUMN {column} TEXT")
        if new and self.path.name == "calls.sqlite":
            self._import_legacy()

    def _import_legacy(self) -> None:
        for name in LEGACY_FILES:
            legacy = self.path.with_name(name)
            if not legacy.is_file():
                continue
            attached = False
            try:
                self._db.execute("ATTACH DATABASE ? AS legacy", (str(legacy),))  # a file that is no database fails here
                attached = True
                before = len(self)
                columns = {row[1] for row in self._db.execute("PRAGMA legacy.table_info(judge_outputs)")}
                audio = "audio" if "audio" in columns else "NULL"  # judge.sqlite files from before spoken replies lack it
                self._db.execute(
                    "INSERT OR IGNORE INTO judge_outputs (key, judge, text, finish_reason, created, audio) "
                    f"SELECT key, judge, text, finish_reason, created, {audio} FROM legacy.judge_outputs"
                )
                logger.info("calls cache: imported %d outputs from %s", len(self) - before, legacy)
            except sqlite3.DatabaseError as error:  # an unreadable old file is skipped, never fatal
                logger.warning("calls cache: could not import %s (%s)", legacy, error)
            finally:
                if attached:
                    self._db.execute("DETACH DATABASE legacy")

    def get_many(self, keys: list[str]) -> dict[str, Stored]:
        """``key -> Stored(text, finish_reason, audio, timing)`` for the keys stored."""
        found = {}
        for start in range(0, len(keys), 500):  # SQLite caps bound parameters
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for key, text, finish, audio, timing in self._db.execute(
                f"SELECT key, text, finish_reason, audio, timing FROM judge_outputs WHERE key IN ({marks})", chunk
            ):
                found[key] = Stored(text, finish, audio, _timing(timing))
        return found

    def put(self, key: str, caller: str, text: str, finish_reason: str | None, audio: str | None = None,
            request: str | None = None, timing: Timing | None = None) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO judge_outputs (key, judge, text, finish_reason, created, audio, request, timing) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (key, caller, text, finish_reason, time.time(), audio, request,
             None if timing is None else canonical_json(asdict(timing))),
        )

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM judge_outputs").fetchone()[0]

    def close(self) -> None:
        self._db.close()


_OPEN: dict[str, CallCache] = {}


def open_cache(path: Path | None) -> CallCache | None:
    """The process's connection to the cache file at ``path`` (None: caching off)."""
    if path is None:
        return None
    key = str(Path(path).expanduser().resolve())
    if key not in _OPEN:
        _OPEN[key] = CallCache(Path(key))
    return _OPEN[key]
