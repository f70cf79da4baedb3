"""The outputs cache (lm_eval_speech/calls/cache.py): the readable request summary, and the files of the old layer.

Hits and misses, resume after a kill and several writers are in tests/test_calls.py.
"""

from __future__ import annotations

import base64
import json
import re
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest

from lm_eval_speech import paths
from lm_eval_speech.calls import CallCache, Caller, CallRequest, config_from_settings, open_cache
from lm_eval_speech.calls.config import cache_file
from lm_eval_speech.speech.latency import Timing

from fake_openai import FakeOpenAI

SYSTEM = "You are a strict judge. " * 20  # 480 characters: shortened in the summary
# The first judge.sqlite schema (no audio column), and four keys the old judge layer wrote for
# SIB's default judge at http://127.0.0.1:9/v1 asked about MESSAGES (its samples 0..3).
OLD_SCHEMA = "CREATE TABLE judge_outputs (key TEXT PRIMARY KEY, judge TEXT NOT NULL, text TEXT NOT NULL, " \
             "finish_reason TEXT, created REAL NOT NULL)"
OLD_KEYS = [
    "82d7c8d195593c1a02ce979ce8fd48cb3259a11ceb955c63568f2929f97aa870",
    "3da609764eba0526f04c2de2a89dd7dd68f2d762333c370d276030d5e14be889",
    "6beed14ac0c103229d911b7e222df6e65a9be4eda9b56d2ad64f6c774aa2a115",
    "1eeefd14978c12846d74080ffefe784bb21690e53dac60c4966327feac802ce7",
]
MESSAGES = [{"role": "system", "content": "You are a strict judge."}, {"role": "user", "content": "Is answer 0 correct?"}]
SIB_JUDGE = {"model": "gpt-4o-mini", "n": 4, "temperature": 0.5, "top_p": 0.95, "max_tokens": 1024,
             "frequency_penalty": 0, "presence_penalty": 0, "base_url": "http://127.0.0.1:9/v1"}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", paths.CACHE_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


def rows(path: Path, query: str) -> list[tuple]:
    with closing(sqlite3.connect(str(path))) as db:
        return db.execute(query).fetchall()


def spoken(data: bytes) -> dict:
    return {"type": "input_audio", "input_audio": {"data": base64.b64encode(data).decode(), "format": "wav"}}


def test_each_row_keeps_a_readable_summary_of_its_request(tmp_path):
    path = tmp_path / "calls.sqlite"
    audio = spoken(b"RIFF" + bytes(3000))
    asked = [
        CallRequest([{"role": "system", "content": SYSTEM},
                     {"role": "user", "content": [{"type": "text", "text": "Rate this answer."}, audio]}], "spoken"),
        CallRequest([{"role": "user", "content": [spoken(b"RIFF" + bytes(3001))]}], "other audio"),
    ]
    with FakeOpenAI() as server:
        Caller(config_from_settings({"model": "judge", "base_url": server.base_url, "n": 2, "temperature": 0.7}),
               CallCache(path)).run(asked)
    stored = rows(path, "SELECT key, request FROM judge_outputs")
    assert len(stored) == 4 and len({key for key, _ in stored}) == 4
    summaries = sorted({request for _, request in stored})  # the samples of a request share its summary
    assert len(summaries) == 2
    first = json.loads(next(s for s in summaries if "system" in s))
    assert first["model"] == {"backend": "openai", "endpoint": server.base_url, "model": "judge", "extra_body": {}}
    assert first["sampling"] == {"temperature": 0.7}  # n is no part of a row's identity
    system, user = first["messages"]
    assert system == {"role": "system", "content": SYSTEM[:160] + "... (480 chars)"}
    assert user["role"] == "user" and user["content"][0] == "Rate this answer."
    assert re.fullmatch(r"<input_audio sha256:[0-9a-f]{12}>", user["content"][1])
    assert audio["input_audio"]["data"][:40] not in "".join(summaries)  # no audio bytes in the summary
    second = json.loads(next(s for s in summaries if "system" not in s))
    assert second["messages"][0]["content"][0] != user["content"][1]  # other audio, another digest


def write_legacy(path: Path, entries: list[tuple[str, str]], schema: str | None = None, **extra) -> None:
    with closing(sqlite3.connect(str(path))) as db:
        if schema:
            db.execute(schema)
        for key, text in entries:
            columns = {"key": key, "judge": "gpt-4o-mini", "text": text, "finish_reason": "stop", "created": time.time(), **extra}
            db.execute(f"INSERT INTO judge_outputs ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                       list(columns.values()))
        db.commit()


def test_the_old_layers_files_are_imported_once_and_their_keys_still_hit(tmp_path):
    write_legacy(tmp_path / "judge.sqlite", [(key, f"old verdict {j}") for j, key in enumerate(OLD_KEYS)], OLD_SCHEMA)
    newer_schema = OLD_SCHEMA.replace("created REAL NOT NULL", "created REAL NOT NULL, audio TEXT")
    write_legacy(tmp_path / "openai_audio.sqlite", [("f" * 64, "spoken reply")], newer_schema, audio="UklGRg==")

    cache = CallCache(tmp_path / "calls.sqlite")
    assert len(cache) == 5
    assert cache.get_many(["f" * 64]) == {"f" * 64: ("spoken reply", "stop", "UklGRg==", None)}  # no timing: written before timings
    # SIB's judge at an address where nobody listens: a single request would fail, so every output is a hit
    caller = Caller(config_from_settings(SIB_JUDGE), cache)
    [outputs] = caller.run([CallRequest(MESSAGES, "item 0")])
    assert [(o.text, o.cached) for o in outputs] == [(f"old verdict {j}", True) for j in range(4)]
    assert (caller.stats.cache_hits, caller.stats.http_requests) == (4, 0)

    # once: a file that exists is not filled again from the old ones
    write_legacy(tmp_path / "judge.sqlite", [("e" * 64, "written later")])
    assert len(CallCache(tmp_path / "calls.sqlite")) == 5
    # only the default file name imports: a cache of another name is the user's own
    assert len(CallCache(tmp_path / "mine.sqlite")) == 0


def test_a_file_from_before_timings_gains_the_column_and_keeps_its_rows(tmp_path):
    before = OLD_SCHEMA.replace("created REAL NOT NULL", "created REAL NOT NULL, audio TEXT, request TEXT")
    write_legacy(tmp_path / "mine.sqlite", [("a" * 64, "old reply")], before)
    cache = CallCache(tmp_path / "mine.sqlite")
    taken = Timing(total_s=2.5, first_text_s=0.4, first_audio_s=0.6, streamed=True)
    cache.put("b" * 64, "gpt-realtime", "new reply", "stop", "UklGRg==", None, taken)
    found = cache.get_many(["a" * 64, "b" * 64])
    assert found["a" * 64].timing is None and found["a" * 64].text == "old reply"
    assert found["b" * 64] == ("new reply", "stop", "UklGRg==", taken)
    assert CallCache(tmp_path / "mine.sqlite").get_many(["b" * 64])["b" * 64].timing == taken  # as read by a later run


def test_an_unreadable_old_file_is_skipped(tmp_path, caplog):
    (tmp_path / "judge.sqlite").write_bytes(b"not a database at all" * 100)
    assert len(CallCache(tmp_path / "calls.sqlite")) == 0
    assert "could not import" in caplog.text


def test_the_default_file_and_one_connection_per_file(tmp_path):
    assert cache_file(True) == tmp_path / "xdg-cache" / "lm_eval_speech" / "calls.sqlite"
    assert cache_file("false") is None and cache_file(None) is None
    assert open_cache(None) is None
    assert open_cache(tmp_path / "a.sqlite") is open_cache(tmp_path / "." / "a.sqlite")
