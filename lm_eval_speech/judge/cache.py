"""Persistent, content-addressed store of judge outputs (SQLite), shared by runs and ranks.

One row per judge sample: the key hashes the judge's identity (backend, endpoint, model), the full
messages, the sampling parameters (``n`` aside) and the sample's index, so ``n=4`` is four rows
whether it came from one request or four. Rows are committed as each call returns: a run killed
mid-judging keeps everything it paid for. WAL mode lets several accelerate ranks write at once.
Only outputs are stored (the text, and base64 audio for spoken replies); no request header (and
so no API key) ever is.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from pathlib import Path

from lm_eval_speech.judge.config import canonical_json

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS judge_outputs (
    key TEXT PRIMARY KEY,
    judge TEXT NOT NULL,
    text TEXT NOT NULL,
    finish_reason TEXT,
    created REAL NOT NULL,
    audio TEXT
)
"""


def sample_key(identity: dict, messages: list[dict], sampling: dict, sample_index: int) -> str:
    without_n = {k: v for k, v in sampling.items() if k != "n"}
    payload = {"v": SCHEMA_VERSION, "judge": identity, "messages": messages, "sampling": without_n, "sample": sample_index}
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


class JudgeCache:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: every statement commits at once (nothing is lost on a kill).
        self._db = sqlite3.connect(str(self.path), timeout=60.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA busy_timeout = 60000")
        self._db.execute("PRAGMA journal_mode = WAL")
        # WAL + NORMAL: a killed process loses nothing committed; only an OS crash may drop the
        # last rows. FULL would fsync every row (1.2 ms each, on the judging event loop).
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.execute(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(judge_outputs)")}
        if "audio" not in columns:  # a cache written before spoken replies were stored
            self._db.execute("ALTER TABLE judge_outputs ADD COLUMN audio TEXT")

    def get_many(self, keys: list[str]) -> dict[str, tuple[str, str | None, str | None]]:
        """``key -> (text, finish_reason, audio)`` for the keys stored."""
        found = {}
        for start in range(0, len(keys), 500):  # SQLite caps bound parameters
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for key, text, finish, audio in self._db.execute(
                f"SELECT key, text, finish_reason, audio FROM judge_outputs WHERE key IN ({marks})", chunk
            ):
                found[key] = (text, finish, audio)
        return found

    def put(self, key: str, judge: str, text: str, finish_reason: str | None, audio: str | None = None) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO judge_outputs (key, judge, text, finish_reason, created, audio) VALUES (?, ?, ?, ?, ?, ?)",
            (key, judge, text, finish_reason, time.time(), audio),
        )

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM judge_outputs").fetchone()[0]

    def close(self) -> None:
        self._db.close()
