"""``mode: batch``: the missing requests through OpenAI's Batch API (half the price; answers within 24 hours).

Protocol: each missing request becomes a JSONL line ``{"custom_id", "method": "POST", "url":
"/v1/chat/completions", "body"}``, the body being what the online mode would send (``n`` = the
outputs still missing, ``response_format``, ``extra_body`` merged). Files of at most 50,000 lines
and 200 MB are uploaded (``purpose="batch"``), a batch is created on each and polled every
``batch_poll_interval`` seconds until it ends; then its output and error files are read. An
answered line is recorded as an online answer is (into the cache); a failed line fails its
outputs (kind ``4xx``/``5xx`` by its status, ``other`` without one); a batch that fails, expires
or is cancelled fails the lines it did not answer, saying so. Identical requests share one line.

Resume: a line's custom_id is its first output's cache key (and its number of outputs), so it
names its content. Right after creation the batch id is stored in the cache file (table
``batches``, keyed by a hash of the model and the lines, with the custom_ids); a later run whose
missing requests include any of them polls that batch instead of submitting them again, and the
record is dropped once the batch is collected. A run stopped while polling leaves its batches
running (they are paid for). Without a cache nothing is stored: a stopped run submits anew.

Accounting: ``http_requests`` counts every HTTP attempt (uploads, creations, each poll, file
downloads, retries included); ``calls`` and tokens count each answered line, as online.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import time
from dataclasses import dataclass, replace

from lm_eval_speech.calls.config import canonical_json
from lm_eval_speech.calls.openai_chat import (
    BACKOFF_BASE, BACKOFF_CAP, LOCAL_SERVER_KEY, CallFailed, Completion, http_client_kwargs, retryable, api_key, describe_error,
    failure_kind, retry_after,
)

logger = logging.getLogger("lm_eval_speech.calls")

ENDPOINT = "/v1/chat/completions"
MAX_REQUESTS = 50_000  # the API's limit per batch
MAX_FILE_BYTES = 200 * 1000 * 1000  # the API's 200 MB per input file, read as the smaller unit
TERMINAL = ("completed", "failed", "expired", "cancelled")
ENDINGS = {"failed": "failed", "expired": "expired before running every request (its completion window is 24 h)",
           "cancelled": "was cancelled", "completed": "completed without an answer for this request"}
_TABLE = """
CREATE TABLE IF NOT EXISTS batches (
    key TEXT PRIMARY KEY,
    batch_id TEXT NOT NULL,
    created REAL NOT NULL,
    model TEXT NOT NULL,
    custom_ids TEXT NOT NULL
)
"""


@dataclass
class _Line:
    custom_id: str
    encoded: bytes  # the JSONL line as uploaded
    targets: list[tuple[int, list[int]]]  # (request position, output indexes) it answers


class _Store:
    """Submitted batches not yet collected, in the cache file (nothing without a cache)."""

    def __init__(self, cache, identity: dict) -> None:
        self.db = cache._db if cache is not None else None
        self.model = hashlib.sha256(canonical_json(identity).encode("utf-8")).hexdigest()
        if self.db is not None:
            self.db.execute(_TABLE)

    def pending(self) -> list[tuple[str, list[str]]]:
        if self.db is None:
            return []
        rows = self.db.execute("SELECT batch_id, custom_ids FROM batches WHERE model = ? ORDER BY created", (self.model,))
        return [(batch_id, json.loads(ids)) for batch_id, ids in rows]

    def save(self, key: str, batch_id: str, custom_ids: list[str]) -> None:
        if self.db is not None:
            self.db.execute("INSERT OR REPLACE INTO batches (key, batch_id, created, model, custom_ids) VALUES (?, ?, ?, ?, ?)",
                            (key, batch_id, time.time(), self.model, json.dumps(custom_ids)))

    def drop(self, batch_id: str) -> None:
        if self.db is not None:
            self.db.execute("DELETE FROM batches WHERE batch_id = ?", (batch_id,))


async def run_batch(caller, requests, keys, results, todo) -> None:
    """Fill ``results`` for the ``todo`` (position, missing output indexes) of ``requests`` through the Batch API."""
    import openai

    config = caller.config
    key = api_key(config)
    caller._secrets = [key] if key != LOCAL_SERVER_KEY else []
    lines = _lines(caller, requests, keys, todo)
    store = _Store(caller.cache, config.identity())
    resumed = []
    for batch_id, custom_ids in store.pending():
        claimed = [lines.pop(custom_id) for custom_id in custom_ids if custom_id in lines]
        if claimed:
            resumed.append((batch_id, claimed))
    client = openai.AsyncOpenAI(api_key=key, base_url=config.endpoint, max_retries=0, timeout=config.timeout, **http_client_kwargs(openai))
    job = _Job(caller, client, store, requests, keys, results)
    try:
        await asyncio.gather(*(job.guarded(job.resume(batch_id, claimed), claimed) for batch_id, claimed in resumed),
                             *(job.guarded(job.submit(chunk), chunk) for chunk in _chunks(list(lines.values()))))
    finally:
        await client.close()


def _lines(caller, requests, keys, todo) -> dict[str, _Line]:
    config = caller.config
    lines: dict[str, _Line] = {}
    for i, missing in todo:
        for indexes in ([[j] for j in missing] if config.n_mode == "repeat" else [missing]):
            custom_id = f"{keys[i][indexes[0]][:48]}-n{len(indexes)}"  # the key names model, messages, settings, first sample
            if custom_id in lines:  # the same request twice: asked once, answered into both
                lines[custom_id].targets.append((i, indexes))
                continue
            params = config.params.with_n(len(indexes))
            if config.params.seed is not None:  # as online: a request starting at sample j is seeded seed + j
                params = replace(params, seed=config.params.seed + indexes[0])
            body = {"model": config.model, "messages": requests[i].messages, **params.to_openai()}
            answer_format = caller._format(requests[i])
            if answer_format is not None:
                body["response_format"] = answer_format
            body.update(config.extra_body)
            line = {"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": body}
            encoded = (json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
            lines[custom_id] = _Line(custom_id, encoded, [(i, indexes)])
    return lines


def _chunks(lines: list[_Line]) -> list[list[_Line]]:
    """Consecutive runs of lines within the API's per-file limits."""
    chunks: list[list[_Line]] = []
    size = 0
    for line in lines:
        if not chunks or len(chunks[-1]) >= MAX_REQUESTS or size + len(line.encoded) > MAX_FILE_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(line)
        size += len(line.encoded)
    return chunks


def _content_key(model: str, chunk: list[_Line]) -> str:
    digest = hashlib.sha256(model.encode("ascii"))
    for line in chunk:
        digest.update(line.encoded)
    return digest.hexdigest()


class _Job:
    def __init__(self, caller, client, store: _Store, requests, keys, results) -> None:
        self.caller, self.client, self.store = caller, client, store
        self.config, self.stats = caller.config, caller.stats
        self.requests, self.keys, self.results = requests, keys, results

    async def guarded(self, work, lines: list[_Line]) -> None:
        """Run one batch's work; an unexpected error fails its unanswered lines, not the others' batches."""
        try:
            await work
        except Exception as error:
            logger.exception("%s: batch work failed", self.config.name)
            self._fail([line for line in lines if self._open(line)], f"{type(error).__name__}: {error}", "other")

    async def submit(self, chunk: list[_Line]) -> None:
        data = b"".join(line.encoded for line in chunk)
        try:
            uploaded = await self._send("uploading a batch input file",
                                        lambda: self.client.files.create(file=("batch.jsonl", data, "application/jsonl"), purpose="batch"))
            batch = await self._send("creating a batch", lambda: self.client.batches.create(
                input_file_id=uploaded.id, endpoint=ENDPOINT, completion_window="24h"))
        except CallFailed as failure:
            return self._fail(chunk, str(failure), failure.kind)
        # stored before any further await: a run stopped from here on resumes this batch
        self.store.save(_content_key(self.store.model, chunk), batch.id, [line.custom_id for line in chunk])
        logger.info("%s: submitted batch %s (%d requests); polling every %g s", self.config.name, batch.id, len(chunk),
                    self.config.batch_poll_interval)
        await self._follow(batch, chunk)

    async def resume(self, batch_id: str, claimed: list[_Line]) -> None:
        logger.info("%s: resuming batch %s (%d requests of this run)", self.config.name, batch_id, len(claimed))
        try:
            batch = await self._retrieve(batch_id)
        except CallFailed as failure:
            if getattr(failure.__cause__, "status_code", None) == 404:  # another account or endpoint: forget it
                self.store.drop(batch_id)
                return self._fail(claimed, f"batch {batch_id} is unknown to {self.config.endpoint}; its record is dropped: "
                                           "run again to submit these requests anew", failure.kind)
            return self._fail(claimed, f"{failure}{self._later('resume it')}", failure.kind)
        await self._follow(batch, claimed)

    async def _follow(self, batch, lines: list[_Line]) -> None:
        try:
            while batch.status not in TERMINAL:
                await asyncio.sleep(self.config.batch_poll_interval)
                batch = await self._retrieve(batch.id)
        except CallFailed as failure:
            return self._fail(lines, f"{failure}{self._later('resume it')}", failure.kind)
        wanted = {line.custom_id: line for line in lines}
        try:
            for file_id in (batch.output_file_id, batch.error_file_id):
                if file_id:
                    content = await self._send(f"downloading the results of batch {batch.id}", lambda: self.client.files.content(file_id))
                    for text in content.text.splitlines():
                        record = _json_or_none(text)
                        line = wanted.pop(record.get("custom_id"), None) if isinstance(record, dict) else None
                        if line is not None:
                            self._settle(batch, line, record)
                    self.caller._update_bar()
        except CallFailed as failure:
            return self._fail(list(wanted.values()), f"{failure}{self._later('collect it')}", failure.kind)
        if wanted:
            reason = f"batch {batch.id} {ENDINGS[batch.status]}"
            errors = [f"{e.code}: {e.message}" for e in getattr(batch.errors, "data", None) or []]
            self._fail(list(wanted.values()), reason + (f": {'; '.join(errors[:3])}" if errors else ""), "other")
        self.store.drop(batch.id)

    def _later(self, what: str) -> str:
        return f"; the batch is still recorded: run again to {what}" if self.store.db is not None else " (no cache: nothing to resume)"

    def _retrieve(self, batch_id: str):
        return self._send(f"polling batch {batch_id}", lambda: self.client.batches.retrieve(batch_id))

    def _settle(self, batch, line: _Line, record: dict) -> None:
        response = record.get("response") or {}
        status, body = response.get("status_code"), response.get("body")
        if status == 200 and isinstance(body, dict) and isinstance(body.get("choices"), list):
            return self._answer(line, _completion(body))
        error = record.get("error") or (body.get("error") if isinstance(body, dict) else None) or {}
        message = error.get("message") if isinstance(error, dict) else str(error)
        code = error.get("code") if isinstance(error, dict) else None
        if isinstance(status, int):
            kind = "5xx" if status >= 500 else "4xx" if status >= 400 else "other"
            self._fail([line], f"batch {batch.id}: HTTP {status}: {message or body}", kind)
        else:
            self._fail([line], f"batch {batch.id} ({batch.status}): {code}: {message}", "other")

    def _answer(self, line: _Line, completion: Completion) -> None:
        caller, (i, indexes) = self.caller, line.targets[0]
        caller.record(self.requests[i], self.keys[i], self.results[i], indexes, completion, i)
        leftover = indexes[len(completion.texts):]
        if len(indexes) > 1:
            honoured = not leftover
            self.stats.n_honoured = honoured if self.stats.n_honoured is None else self.stats.n_honoured and honoured
        if leftover:
            caller._fail(self.requests[i], self.results[i], leftover,
                         f"the endpoint returned {len(completion.texts)} of {len(indexes)} choices (n_mode: repeat asks one each)", "other")
        for other, other_indexes in line.targets[1:]:  # identical requests: the same outputs
            for j, k in zip(indexes, other_indexes):
                self.results[other][k] = replace(self.results[i][j])
            caller._bar.update(len(other_indexes))

    def _open(self, line: _Line) -> bool:
        return any(self.results[i][j] is None for i, indexes in line.targets for j in indexes)

    def _fail(self, lines: list[_Line], reason: str, kind: str) -> None:
        for line in lines:
            for i, indexes in line.targets:
                self.caller._fail(self.requests[i], self.results[i], indexes, reason, kind)

    async def _send(self, what: str, make):
        """One SDK call, every attempt counted; retried as online requests are (:mod:`calls.openai_chat`)."""
        attempt = 0
        while True:
            self.stats.http_requests += 1
            try:
                return await make()
            except Exception as error:  # classified: retried, or raised as CallFailed
                kind = failure_kind(error)
                if not retryable(error, kind) or attempt >= self.config.max_retries:
                    raise CallFailed(kind, f"{what}: {describe_error(error, kind, self.config.endpoint)}") from error
                attempt += 1
                self.stats.retries += 1
                wait = retry_after(error)
                await asyncio.sleep(wait if wait is not None else random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** attempt)))


def _completion(body: dict) -> Completion:
    """A chat.completion body (JSON, as a batch output line holds it) as the online mode reads one."""
    choices = sorted((c for c in body["choices"] if isinstance(c, dict)), key=lambda c: c.get("index", 0))
    usage = body.get("usage") or {}
    messages = [c.get("message") or {} for c in choices]
    audios = [(m.get("audio") or {}).get("data") for m in messages]
    return Completion(
        texts=[m["audio"].get("transcript") if m.get("content") is None and m.get("audio") else m.get("content") for m in messages],
        finish_reasons=[c.get("finish_reason") for c in choices],
        prompt_tokens=usage.get("prompt_tokens") or 0,
        completion_tokens=usage.get("completion_tokens") or 0,
        audios=audios,
    )


def _json_or_none(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return None
