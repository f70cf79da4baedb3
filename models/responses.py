"""Replay stored responses, so outputs made elsewhere (or by an earlier run) can be scored.

``--model responses --model_args path=FILE`` where FILE is either

* JSONL, one ``{"doc_id": int, "response": str}`` per line, ``doc_id`` numbered as lm_eval
  numbers the task's evaluation docs; an optional ``"task"`` selects lines when several tasks
  run; ``{"doc_id": ..., "error": "why"}`` records a failed generation (left out of the scores
  and counted); or
* an lm_eval ``samples_<task>_<time>.jsonl`` written by ``--log_samples`` (the task comes from
  the file name; the stored doc must match the task's doc), or a directory of them (the newest
  file per task).

The audio is not needed: add ``--metadata '{"load_audio": false}'`` to skip reading it.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import lm_eval.models  # noqa: F401  (fills the built-in registry first)
from lm_eval.api.instance import Instance
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from lm_eval.utils import handle_non_serializable

from lm_eval_speech.data import iter_jsonl
from lm_eval_speech.models._base import LM_EVAL_ARGS, unsupported_requests
from lm_eval_speech.options import check_known
from lm_eval_speech.outcomes import FailedGeneration, is_failure, note_error

SAMPLES_NAME = re.compile(r"^samples_(?P<task>.+)_(?P<time>\d{4}-\d{2}-\d{2}T[\d\-.]+)\.jsonl$")
# Doc fields that hold machine-specific locations, not content: not compared on replay.
LOCATION_FIELDS = re.compile(r"(path|file|dir)$")


class ReplayError(ValueError):
    """A stored response is missing, duplicated or does not belong to the doc it is replayed for."""


@register_model("responses")
class ResponsesLM(LM):
    MULTIMODAL = True

    def __init__(self, path: str, **lm_eval_args) -> None:
        super().__init__()
        check_known(lm_eval_args, LM_EVAL_ARGS, "responses model_args (path=... only)")
        self.path = Path(path)
        if not self.path.exists():
            raise ReplayError(f"responses: {self.path} does not exist")
        # (task or None, doc_id) -> list of responses (one per repeat)
        self._responses: dict[tuple[str | None, int], list[str]] = {}
        self._stored_docs: dict[tuple[str | None, int], dict] = {}
        self._origin: dict[tuple[str | None, int], str] = {}
        for file, task in self._files():
            if task is None:
                self._read_plain(file)
            else:
                self._read_samples(file, task)

    # -- reading -------------------------------------------------------------------------------
    def _files(self) -> list[tuple[Path, str | None]]:
        if self.path.is_file():
            match = SAMPLES_NAME.match(self.path.name)
            return [(self.path, match["task"] if match else None)]
        newest: dict[str, tuple[str, Path]] = {}
        for file in sorted(self.path.rglob("samples_*.jsonl")):
            match = SAMPLES_NAME.match(file.name)
            if match and (match["task"] not in newest or match["time"] > newest[match["task"]][0]):
                newest[match["task"]] = (match["time"], file)
        if not newest:
            raise ReplayError(f"responses: no samples_<task>_<time>.jsonl files under {self.path}")
        return [(file, task) for task, (_, file) in sorted(newest.items())]

    def _lines(self, file: Path):
        for number, record in iter_jsonl(file, error=ReplayError):
            if not isinstance(record, dict) or not isinstance(record.get("doc_id"), int) or isinstance(record.get("doc_id"), bool):
                raise ReplayError(f"{file} line {number}: needs an integer 'doc_id'")
            yield number, record

    def _store(self, key, responses: list[str], where: str, doc: dict | None = None) -> None:
        if key in self._responses:
            if self._responses[key] == responses:
                return  # the same doc logged once per filter
            task = f" of task {key[0]}" if key[0] else ""
            raise ReplayError(f"{where}: a second, different response for doc {key[1]}{task} (first at {self._origin[key]})")
        self._responses[key] = responses
        self._origin[key] = where
        if doc is not None:
            self._stored_docs[key] = doc

    def _read_plain(self, file: Path) -> None:
        for number, record in self._lines(file):
            where = f"{file} line {number}"
            task = record.get("task")
            if task is not None and not isinstance(task, str):
                raise ReplayError(f"{where}: 'task' must be a string")
            if isinstance(record.get("response"), str):
                response = record["response"]
            elif record.get("response") is None and isinstance(record.get("error"), str):
                response = FailedGeneration(record["error"])
            else:
                raise ReplayError(f"{where}: needs a string 'response' (or 'error' for a failed generation)")
            self._store((task, record["doc_id"]), [response], where)

    def _read_samples(self, file: Path, task: str) -> None:
        for number, record in self._lines(file):
            where = f"{file} line {number}"
            resps = record.get("resps")
            if not (isinstance(resps, list) and resps and isinstance(resps[0], list) and all(isinstance(r, str) for r in resps[0])):
                raise ReplayError(f"{where}: 'resps' is not a generate_until sample ([[str, ...]])")
            responses = list(resps[0])
            if record.get("failed_items") == 1:
                responses = [FailedGeneration(f"recorded as failed in {file.name}")] * len(responses)
            self._store((task, record["doc_id"]), responses, where, record.get("doc"))

    # -- serving ---------------------------------------------------------------------------------
    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        tasks = {r.task_name for r in requests}
        untagged = any(key[0] is None for key in self._responses)
        if untagged and len(tasks) > 1:
            raise ReplayError(
                f"responses: {self.path} has lines without a 'task' but {len(tasks)} tasks run "
                f"({', '.join(sorted(tasks))}); add a 'task' field to each line"
            )
        served: dict[tuple, int] = defaultdict(int)
        results = []
        for request in requests:
            key = (request.task_name, request.doc_id)
            if key not in self._responses:
                key = (None, request.doc_id)
            if key not in self._responses:
                raise ReplayError(f"responses: no response for doc {request.doc_id} of task {request.task_name} in {self.path}")
            self._check_doc(key, request)
            stored = self._responses[key]
            repeat = served[key]
            if repeat >= len(stored):
                raise ReplayError(
                    f"responses: doc {request.doc_id} of task {request.task_name} asks for repeat {repeat + 1}, "
                    f"{self._origin[key]} holds {len(stored)}"
                )
            served[key] += 1
            if is_failure(stored[repeat]):  # for the end-of-run summary's first errors
                note_error(str(request.task_name), f"doc {request.doc_id}: {stored[repeat].reason}")
            results.append(stored[repeat])
        return results

    def _check_doc(self, key, request: Instance) -> None:
        stored = self._stored_docs.get(key)
        if stored is None or not isinstance(request.doc, dict):
            return
        current = json.loads(json.dumps(request.doc, default=handle_non_serializable, ensure_ascii=False))
        for field in sorted(set(stored) & set(current)):
            if LOCATION_FIELDS.search(field):
                continue
            if stored[field] != current[field]:
                raise ReplayError(
                    f"responses: {self._origin[key]} was made for a different doc {request.doc_id} of task "
                    f"{request.task_name}: field {field!r} is {stored[field]!r} there, {current[field]!r} now"
                )

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError(unsupported_requests(self, "loglikelihood", requests))

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError(unsupported_requests(self, "loglikelihood_rolling", requests))
