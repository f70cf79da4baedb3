"""JASCO ("What Are They Doing?"): data, prompts, the authors' parsing, and the judged metrics.

The data tests read the real release in ``../shared/data/jasco`` (CC BY-NC: never copied into the
repository; tests that need it are skipped, with the reason, when it is absent) and check it
against the authors' ``evaluation/example.csv``. End-to-end tests replay model answers
(``--model responses``) and script the judges through a real local OpenAI-style server
(``tests/fake_openai.py``); every expected number is worked out by hand next to the layout.
"""

from __future__ import annotations

import csv
import hashlib
import http.server
import io
import json
import random
import re
import shutil
import threading
import zipfile
from collections import Counter
from pathlib import Path

import lm_eval
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import yaml
from lm_eval.tasks import TaskManager

from lm_eval_speech.calls import CallConfigError
from lm_eval_speech.data import DataError
from lm_eval_speech.judging import resolve_judges
from lm_eval_speech.provenance import of as recorded
from lm_eval_speech.speech import audio
from lm_eval_speech.tasks.jasco import dataset, prompts, scoring, utils
from lm_eval_speech.tasks.jasco.manifest import ARCHIVE_COMMIT

from conftest import SHARED, TASKS_DIR
from fake_openai import Fault, FakeOpenAI, fault_always, last_user_text

DATA = SHARED / "data" / "jasco"
TEXT_FIELDS = ("audio_sound", "spoken_text", "audio_only_target", "speech_only_target", "tgt_text", "target_keywords")
# SHA-256 of the runtime strings of the authors' evaluation/eval.py (general_prompt, post_process_prompt).
JUDGE_PROMPT_SHA256 = "8a84f16233486f5b50c42610a3f9a48a8566f23dc6bdeae1e5d5277172dd29eb"
REASK_PROMPT_SHA256 = "aa31092a3d3c1f148c4e5d24d9d893b337dc5eb9657744d189273f3e3e937bae"
README_JUDGES = ("meta-llama/Llama-3.1-70B-Instruct", "Qwen/Qwen2.5-72B-Instruct", "mistralai/Mistral-Large-Instruct-2411")
EVAL_PY_SAMPLING = {"n": 1, "temperature": 1.0, "top_p": 1.0, "max_tokens": 1000}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """No real key, endpoint or cache location leaks in from the user's environment."""
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "LM_EVAL_SPEECH_JUDGE_CACHE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LM_EVAL_SPEECH_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def jasco_root() -> Path:
    if not (DATA / "dataset" / "v0" / "v0.csv").is_file() or not (DATA / "example.csv").is_file():
        pytest.skip(f"JASCO data not found: {DATA}/dataset/v0/v0.csv and {DATA}/example.csv are needed (see spec §2.2)")
    return DATA


@pytest.fixture(scope="module")
def example_rows(jasco_root) -> list[dict]:
    with open(jasco_root / "example.csv", encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _load(**metadata) -> list[dict]:
    """The task's docs, as its custom_dataset builds them (judges pointed at a closed local port, not checked, no cache)."""
    judge = {"model": "unused", "base_url": "http://127.0.0.1:9/v1", "preflight": False}
    metadata = {**yaml_metadata(), "judge": judge, "judge_cache": False, **metadata}
    return list(utils.load_jasco(**metadata)["test"])


@pytest.fixture(scope="module")
def jasco_docs(jasco_root) -> list[dict]:
    return _load(data_dir=str(jasco_root))


class _YamlLoader(yaml.SafeLoader):
    """Reads the task YAML without importing its ``!function`` targets."""


_YamlLoader.add_constructor("!function", lambda loader, node: f"!function {loader.construct_scalar(node)}")


def yaml_metadata() -> dict:
    with open(TASKS_DIR / "jasco" / "jasco.yaml", encoding="utf-8") as handle:
        return yaml.load(handle, Loader=_YamlLoader)["metadata"]


# -- data (the real release) -----------------------------------------------------------------
def test_docs_follow_example_csv_row_by_row(jasco_docs, example_rows):
    assert len(jasco_docs) == len(example_rows) == 640
    assert [d["id"] for d in jasco_docs] == [r["id"] for r in example_rows]
    assert [d["prompt"] for d in jasco_docs] == [r["prompt"] for r in example_rows]
    assert [d["prompt_index"] for d in jasco_docs] == list(range(8)) * 80
    for doc, row in zip(jasco_docs, example_rows):
        assert {f: doc[f] for f in TEXT_FIELDS} == {f: row[f] for f in TEXT_FIELDS}, doc["label"]
        assert Path(doc["audio_file"]).name == Path(row["audio"]).name == f"{row['id']}.wav"
    assert jasco_docs[24]["target_keywords"] == "sport,referee"  # clip 4: a comma-separated keyword list
    assert utils.doc_to_text(jasco_docs[0]) == "<audio>" + example_rows[0]["prompt"]


def test_every_clip_decodes_to_float32_mono_at_its_native_length(jasco_docs, example_rows):
    for doc, row in zip(jasco_docs, example_rows):
        clips = utils.doc_to_audio(doc)
        assert len(clips) == 1, doc["label"]
        array, rate = clips[0]["array"], clips[0]["sampling_rate"]
        assert array.dtype == np.float32 and array.ndim == 1, doc["label"]
        assert len(array) == int(row["n_frames"]), doc["label"]  # example.csv's frame count at the native rate
        assert rate == (48000 if doc["id"] == "47" else 16000), doc["label"]


def test_clip_47_is_48khz_on_disk_and_16khz_for_the_model(jasco_root, jasco_docs):
    path = jasco_root / "dataset" / "v0" / "47.wav"
    info = sf.info(str(path))
    assert (info.samplerate, info.channels) == (48000, 1)
    doc = next(d for d in jasco_docs if d["id"] == "47")
    [clip] = utils.doc_to_audio(doc)
    at_16k = audio.clip_array(clip, 16000, item="jasco clip 47")
    assert at_16k.dtype == np.float32
    assert abs(len(at_16k) - info.duration * 16000) <= 2
    assert abs(len(at_16k) - 74304) <= 2  # 222912 frames at 48 kHz


def test_verify_accepts_the_release_and_names_an_altered_or_missing_file(jasco_root, tmp_path):
    dataset.verify(jasco_root)
    copy = tmp_path / "jasco"
    shutil.copytree(jasco_root / "dataset" / "v0", copy / "dataset" / "v0")
    dataset.verify(copy)
    wav = copy / "dataset" / "v0" / "5.wav"
    raw = bytearray(wav.read_bytes())
    raw[-1] ^= 0x01  # one bit of the last sample
    wav.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"5\.wav: SHA-256 differs") as caught:
        dataset.verify(copy)
    assert "1.wav" not in str(caught.value) and "v0.csv" not in str(caught.value)
    (copy / "dataset" / "v0" / "80.wav").unlink()
    with pytest.raises(DataError, match=r"5\.wav: SHA-256 differs; 80\.wav: missing"):
        dataset.verify(copy)


def test_data_dir_without_v0_csv_names_the_path(tmp_path):
    with pytest.raises(DataError) as caught:
        _load(data_dir=str(tmp_path))
    assert str(tmp_path.resolve() / "dataset" / "v0" / "v0.csv") in str(caught.value)


def test_unreachable_download_advises_data_dir(monkeypatch, tmp_path):
    monkeypatch.setattr(dataset, "ARCHIVE_URL", "http://127.0.0.1:9/{repo}/{commit}")
    with pytest.raises(DataError, match="data_dir") as caught:
        _load()
    assert f"http://127.0.0.1:9/{dataset.REPOSITORY}/{ARCHIVE_COMMIT}" in str(caught.value)
    assert not (tmp_path / "cache" / "jasco" / ARCHIVE_COMMIT).exists()


def _archive(root: Path, tamper: str | None = None) -> bytes:
    """A zip laid out as GitHub's codeload archive: one top folder ``<repo>-<commit>/``."""
    top = f"What_Are_They_Doing-{ARCHIVE_COMMIT}"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{top}/", b"")
        archive.writestr(f"{top}/README.md", b"# What Are They Doing?\n")
        archive.write(root / "example.csv", f"{top}/evaluation/example.csv")
        archive.writestr(f"{top}/dataset/v0/", b"")
        for path in sorted((root / "dataset" / "v0").iterdir()):
            data = path.read_bytes()
            if path.name == tamper:
                data = data[:-1] + bytes([data[-1] ^ 1])
            archive.writestr(f"{top}/dataset/v0/{path.name}", data)
    return buffer.getvalue()


class _ArchiveServer:
    """GitHub's archive endpoint on 127.0.0.1: serves one zip at ``/<repo>/zip/<commit>``, counts GETs."""

    def __init__(self, payload: bytes, hold: threading.Barrier | None = None):
        self.payload, self.paths = payload, []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.paths.append(self.path)
                if hold is not None:
                    hold.wait()  # answer only once every expected download is in flight
                found = self.path == f"/{dataset.REPOSITORY}/zip/{ARCHIVE_COMMIT}"
                body = outer.payload if found else b"not found"
                self.send_response(200 if found else 404)
                self.send_header("Content-Type", "application/zip" if found else "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/{{repo}}/zip/{{commit}}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_download_lands_in_the_cache_verified_and_is_reused(jasco_root, jasco_docs, monkeypatch, tmp_path):
    with _ArchiveServer(_archive(jasco_root)) as server:
        monkeypatch.setattr(dataset, "ARCHIVE_URL", server.url)
        docs = _load()
        provenance = recorded("jasco")
        assert server.paths == [f"/{dataset.REPOSITORY}/zip/{ARCHIVE_COMMIT}"]
        cached = tmp_path / "cache" / "jasco" / ARCHIVE_COMMIT
        files = sorted(p.name for p in (cached / "dataset" / "v0").iterdir())
        assert len(files) == 81 and "v0.csv" in files and "80.wav" in files
        assert sorted(p.name for p in cached.iterdir()) == ["dataset"]  # only dataset/v0 is kept
        assert sorted(p.name for p in cached.parent.iterdir()) == [ARCHIVE_COMMIT]  # no scratch folder left
        dataset.verify(cached)
        assert [d["audio_file"] for d in docs] == [str(cached / "dataset" / "v0" / f"{d['id']}.wav") for d in jasco_docs]
        assert [{f: d[f] for f in TEXT_FIELDS} for d in docs] == [{f: d[f] for f in TEXT_FIELDS} for d in jasco_docs]
        assert provenance["data"]["source"] == "github" and provenance["data"]["commit"] == ARCHIVE_COMMIT
        assert provenance["data"]["docs"] == 640
        again = _load()
        assert len(server.paths) == 1  # the second load reads the cache
        assert [d["audio_file"] for d in again] == [d["audio_file"] for d in docs]


def test_a_tampered_download_is_refused_and_not_cached(jasco_root, monkeypatch, tmp_path):
    with _ArchiveServer(_archive(jasco_root, tamper="12.wav")) as server:
        monkeypatch.setattr(dataset, "ARCHIVE_URL", server.url)
        with pytest.raises(DataError, match=r"12\.wav: SHA-256 differs"):
            _load()
    assert list((tmp_path / "cache" / "jasco").iterdir()) == []


def test_concurrent_first_downloads_both_succeed(jasco_root, monkeypatch, tmp_path):
    # Two processes (e.g. data-parallel ranks) starting on an empty cache: both download; the one that
    # finishes second finds the folder already in place and uses it instead of failing.
    with _ArchiveServer(_archive(jasco_root), hold=threading.Barrier(2, timeout=30)) as server:
        monkeypatch.setattr(dataset, "ARCHIVE_URL", server.url)
        outcomes = []

        def load():
            try:
                outcomes.append(dataset.data_root({}))
            except Exception as err:  # noqa: BLE001 (reported below)
                outcomes.append(err)

        workers = [threading.Thread(target=load) for _ in range(2)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
        assert len(server.paths) == 2
    cached = tmp_path / "cache" / "jasco" / ARCHIVE_COMMIT
    expected = (cached, {"source": "github", "repo": dataset.REPOSITORY, "commit": ARCHIVE_COMMIT})
    assert outcomes == [expected, expected]
    dataset.verify(cached)
    assert sorted(p.name for p in cached.parent.iterdir()) == [ARCHIVE_COMMIT]


# -- prompts ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, digest", [("JUDGE_PROMPT", JUDGE_PROMPT_SHA256), ("REASK_PROMPT", REASK_PROMPT_SHA256)]
)
def test_judge_prompts_are_the_authors_bytes(name, digest):
    assert hashlib.sha256(getattr(prompts, name).encode("utf-8")).hexdigest() == digest
    assert prompts.SYSTEM_MESSAGE == "You are an NLP assistant"


# -- parsing (eval.py's stats) ---------------------------------------------------------------
@pytest.mark.parametrize(
    "response, expected",
    [
        ("Explanation2: x\nOrientation: Good\nOrientation: Neither", scoring.NEITHER),  # Neither is tested first
        ("Orientation: Good because Orientation: Speech-Oriented", scoring.SPEECH),  # then Audio, Speech, Good
        ("Orientation: Audio-Oriented\nOrientation: Speech-Oriented", scoring.AUDIO),
        ("Orientation: \nAudio-Oriented", scoring.AUDIO),
        ("Orientation: \nSpeech-Oriented", scoring.SPEECH),
        ("Orientation: \nNeither", scoring.NEITHER),
        ("Orientation: Both", scoring.GOOD),
        ("Orientation: \nGood", scoring.GOOD),
        ("Orientation: Good.", scoring.GOOD),
        ("Orientation: \nBoth", None),  # not one of upstream's markers: re-asked
        ("Orientation:Good", None),
        ("orientation: Good", None),
        ("Good", None),
        ("", None),
    ],
)
def test_orientation_markers_in_the_authors_order(response, expected):
    assert scoring.orientation_of(response) == expected


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("Neither", scoring.NEITHER),
        ("Good, Audio-Oriented or Neither", scoring.NEITHER),  # Neither before the others
        ("Speech-Oriented, not Audio-Oriented", scoring.AUDIO),  # then Audio, Speech, Good
        ("Good or Speech-Oriented", scoring.SPEECH),
        ("Good.", scoring.GOOD),
        ("Both", scoring.UNKNOWN),  # "Both" is not a re-ask label
        ("speech-oriented", scoring.UNKNOWN),
        ("", scoring.UNKNOWN),
    ],
)
def test_reask_answers(answer, expected):
    assert scoring.orientation_of_reask(answer) == expected


def test_reask_explanation_is_the_text_after_the_last_explanation2():
    assert scoring.reask_explanation("Explanation1: a\nRating: 1\nExplanation2: b\nExplanation2: c") == "c"
    assert scoring.reask_explanation("no such field") == "no such field"


@pytest.mark.parametrize(
    "response, expected",
    [
        ("Rating: 2", 2),
        ("Rating: 1\nExplanation2: x\nRating: 2", 2),  # the last Rating line wins
        ("Rating: 2\nRating: 0", 0),
        ("Rating: 2 (0-2)", 0),  # "0" is tested first, as upstream
        ("Rating: 1/2", 1),
        ("Rating: five", 0),  # a Rating line without a digit reads 0
        ("Explanation1: Rating: 2 is deserved", 1),  # any line holding "Rating: ", digits tested on the whole line
        ("Rating:2", None),  # colon and space are required
        ("Explanation1: x\nOrientation: Good", None),
        ("", None),
    ],
)
def test_rating_is_the_last_rating_line(response, expected):
    assert scoring.rating_of(response) == expected


def test_row_scores_best_mean_and_dependence_by_hand():
    rows = [
        scoring.JudgedRow("1", 0, scoring.GOOD, 1),
        scoring.JudgedRow("1", 1, scoring.AUDIO, 2),  # rating ignored: only Good rows earn it
        scoring.JudgedRow("2", 0, scoring.GOOD, None),  # no rating: clip 1's last rating (2) as upstream, or unscored
        scoring.JudgedRow("2", 1, scoring.SPEECH, 2),
        scoring.JudgedRow("3", 0, scoring.GOOD, None),  # takes clip 2's 2; unscored: clip 3 has no scorable row
        scoring.JudgedRow("3", 1, None, None),  # judge call failed
        scoring.JudgedRow("4", 0, scoring.UNKNOWN, 2),  # "?" scores 0
        scoring.JudgedRow("4", 1, scoring.NEITHER, 0),
        scoring.JudgedRow("5", 0, scoring.GOOD, None),  # takes clip 4's 0
        scoring.JudgedRow("5", 1, scoring.GOOD, 2),
    ]
    ordered = scoring.in_upstream_order(rows)
    assert [r.previous_rating for r in ordered] == [None, 1, 2, 2, 2, 2, 2, 2, 0, 0]
    assert [r.score(scoring.PREVIOUS_ROW) for r in ordered] == [1, 0, 2, 0, 2, None, 0, 0, 0, 2]
    assert [r.score(scoring.UNSCORED) for r in ordered] == [1, 0, None, 0, None, None, 0, 0, None, 2]
    assert [(r.failed, r.unparsed, r.carried) for r in ordered] == [
        (False, False, False), (False, False, False), (False, True, True), (False, False, False), (False, True, True),
        (True, False, False), (False, True, False), (False, False, False), (False, True, True), (False, False, False),
    ]
    assert scoring.best_mean(rows, scoring.PREVIOUS_ROW) == ((1 + 2 + 2 + 0 + 2) / 5, 5)
    assert scoring.best_mean(rows, scoring.UNSCORED) == ((1 + 0 + 0 + 2) / 4, 4)
    assert scoring.carried_rows(rows) == 3
    # A = 1, G = 5, S = 1 (N, ? and failed rows excluded)
    assert scoring.dependence(rows) == {"audio_dependence": 1 / 7, "both_dependence": 5 / 7, "speech_dependence": 1 / 7}
    assert scoring.best_mean([scoring.JudgedRow("1", 0, None, None)], scoring.PREVIOUS_ROW) == (None, 0)
    assert scoring.dependence([scoring.JudgedRow("1", 0, scoring.NEITHER, 0)]) == dict.fromkeys(
        ("audio_dependence", "both_dependence", "speech_dependence")
    )


# -- a rating-less row: the authors' stats() loop as the reference ----------------------------
def eval_py_stats(df: pd.DataFrame, reask) -> tuple[float, list[str]]:
    """``stats`` of the authors' evaluation/eval.py, line for line (a judge's re-ask is ``reask(explanation)``).

    Returns best-mean and the orientations. A row without a "Rating: " line keeps ``score`` from
    the previous row read (any clip, any orientation); with none read yet a Good row raises.
    """
    groups = df.groupby(["id"])

    best_for_each_group = []
    orientations = []
    for group in groups:
        a, b = group
        group_scores = []
        for index, row in b.iterrows():
            response = row["llama3_extract"]

            # Extract the orienteation from the judge's output
            if "Orientation: Neither" in response or "Orientation: \nNeither" in response:
                orientation = "N"
            elif "Orientation: Audio-Oriented" in response or "Orientation: \nAudio-Oriented" in response:
                orientation = "A"
            elif "Orientation: Speech-Oriented" in response or "Orientation: \nSpeech-Oriented" in response:
                orientation = "S"
            elif "Orientation: Good" in response or "Orientation: \nGood" in response or "Orientation: Both" in response:
                orientation = "G"
            else:
                explanation_2 = response.split("Explanation2: ")[-1]
                post_process_output = reask(explanation_2)
                if "Neither" in post_process_output:
                    orientation = "N"
                elif "Audio-Oriented" in post_process_output:
                    orientation = "A"
                elif "Speech-Oriented" in post_process_output:
                    orientation = "S"
                elif "Good" in post_process_output:
                    orientation = "G"
                else:
                    orientation = "?"
            orientations.append(orientation)

            # Extract the rating score from the judge's output
            subsentences = response.split("\n")
            for subsentence in subsentences:
                if "Rating: " in subsentence:
                    if "0" in subsentence:
                        score = 0
                    elif "1" in subsentence:
                        score = 1
                    elif "2" in subsentence:
                        score = 2
                    else:
                        score = 0
            # Double check the coherence of the score and the orientation
            if orientation == "G":
                group_scores.append(score)
            else:
                group_scores.append(0)
        # For each sample we use its best score to calculate the mean (best-mean)
        best_for_each_group.append(max(group_scores))

    return sum(best_for_each_group) / len(best_for_each_group), orientations


NO_RATING = {  # judge answers without a "Rating: " line
    "N": "Explanation1: no action named\nExplanation2: none\nOrientation: Neither",
    "G": "Explanation1: no score given\nExplanation2: both\nOrientation: Good",
    "RQ": "Explanation1: no score given\nExplanation2: it uses both, I think",  # no orientation: re-asked, answers Good
}
RATED = {
    "A2": "Explanation1: x\nRating: 2\nExplanation2: the sound\nOrientation: Audio-Oriented",
    "S1": "Explanation1: x\nRating: 1\nExplanation2: the words\nOrientation: Speech-Oriented",
    "G1": "Explanation1: x\nRating: 1\nExplanation2: both\nOrientation: Good",
    "G0": "Explanation1: x\nRating: 0\nExplanation2: both\nOrientation: \nGood",
}
# (clip id, that clip's rows in prompt order), in example.csv's order; clip 10 comes after 3 (ids sort as numbers).
# Upstream per clip: 1 -> max(0, 0, 2 (A2's rating, from an Audio row), 0, 1) = 2; 2 -> max(1 (G1's, across the
# clip boundary), 0) = 1; 3 -> 0 (G0's, also through the re-asked row); 10 -> 0 (still G0's).  best-mean 3 / 4.
# Unscored: 1 -> 1 (G1); 2 -> 0 (G0); 3 -> no scorable row, not counted; 10 -> 0 (S1).  best-mean 1 / 3.
CARRY_CLIPS = [
    (1, ["N", "A2", "G", "S1", "G1"]),  # the first row has no rating (not Good: upstream does not need one)
    (2, ["G", "G0"]),
    (3, ["G", "RQ"]),
    (10, ["G", "S1"]),
]


def _reask(explanation: str) -> str:
    assert explanation == "it uses both, I think"
    return "Good."


def _judged_items(clips: list[tuple[int, list[str]]], judge: str = "judge-a") -> tuple[pd.DataFrame, list[dict]]:
    """The judge answers as eval.py's csv, and as the task's process_results items (parsed as judge_responses does)."""
    rows, items = [], []
    for clip, kinds in clips:
        for prompt, kind in enumerate(kinds):
            answer = {**NO_RATING, **RATED}[kind]
            rows.append({"id": clip, "llama3_extract": answer})
            orientation = scoring.orientation_of(answer) or scoring.orientation_of_reask(_reask(scoring.reask_explanation(answer)))
            record = {"output": answer, "orientation": orientation, "rating": scoring.rating_of(answer)}
            doc = {"task": "jasco", "id": str(clip), "prompt_index": prompt}
            items.append(utils.process_results(doc, [{"judges": {judge: record}}])["best_mean"])
    return pd.DataFrame(rows), items


def test_the_default_reading_is_eval_py_stats_on_rows_without_a_rating():
    df, items = _judged_items(CARRY_CLIPS)
    expected, orientations = eval_py_stats(df, _reask)
    assert expected == 3 / 4  # the hand count above: the reference is the authors' loop, not our reading of it
    [metrics] = utils.per_judge_metrics(items, scoring.PREVIOUS_ROW).values()
    assert metrics["best_mean"] == metrics["best_mean_previous_row"] == expected
    assert (metrics["clips"], metrics["rows"]) == (4, 11)
    assert metrics["carried_rating_rows"] == 5  # every Good row without a rating: each had an earlier rating
    shares = {label: orientations.count(label) / sum(orientations.count(x) for x in "ASG") for label in "ASG"}
    assert (metrics["audio_dependence"], metrics["both_dependence"], metrics["speech_dependence"]) == (
        shares["A"], shares["G"], shares["S"]
    )
    assert metrics["best_mean_unscored"] == 1 / 3


def test_unscored_gives_the_corrected_numbers():
    _, items = _judged_items(CARRY_CLIPS)
    [metrics] = utils.per_judge_metrics(items, scoring.UNSCORED).values()
    assert (metrics["best_mean"], metrics["clips"]) == (1 / 3, 3)
    assert (metrics["best_mean_previous_row"], metrics["best_mean_unscored"], metrics["carried_rating_rows"]) == (3 / 4, 1 / 3, 5)


def test_a_good_first_row_without_a_rating_crashes_upstream_and_is_unscored_here():
    clips = [(1, ["G", "A2"]), (2, ["G"])]
    df, items = _judged_items(clips)
    with pytest.raises(NameError):  # nothing read into `score` yet
        eval_py_stats(df, _reask)
    # the same loop once the first row has a rating: the rest is upstream's reading
    assert eval_py_stats(df.iloc[1:], _reask)[0] == 1.0  # clip 1: A2 -> 0; clip 2: A2's 2
    [metrics] = utils.per_judge_metrics(items, scoring.PREVIOUS_ROW).values()
    # clip 1: the first row is unscored, A2 scores 0; clip 2 takes A2's 2
    assert (metrics["best_mean"], metrics["clips"], metrics["carried_rating_rows"]) == (1.0, 2, 1)
    assert metrics["best_mean_unscored"] == 0.0


def test_rows_gathered_in_any_order_give_the_same_numbers():
    # Data-parallel ranks hand their items to rank 0 in any order; clip ids must sort as numbers.
    df, items = _judged_items(CARRY_CLIPS)
    _, second = _judged_items(CARRY_CLIPS[1:] + CARRY_CLIPS[:1], judge="judge-b")  # another judge, clip 1 last in the file
    for item, other in zip(items, sorted(second, key=lambda i: (int(i["clip"]), i["prompt"]))):
        item["rows"].update(other["rows"])
    expected = utils.per_judge_metrics(items, scoring.PREVIOUS_ROW)
    assert expected["judge-a"] == expected["judge-b"] and expected["judge-a"]["best_mean"] == 3 / 4
    assert eval_py_stats(df.astype({"id": str}), _reask)[0] == 1.0  # ids as text: clip 10 after 1 would take G1's 1
    unscored = utils.per_judge_metrics(items, scoring.UNSCORED)
    for seed in range(5):
        scrambled = list(items)
        random.Random(seed).shuffle(scrambled)
        assert scrambled != items
        assert utils.per_judge_metrics(scrambled, scoring.PREVIOUS_ROW) == expected
        assert utils.per_judge_metrics(scrambled, scoring.UNSCORED) == unscored


# -- end to end: layout ----------------------------------------------------------------------
# Doc d is clip i = d // 8 (audio_id i + 1), prompt p = d % 8 (example.csv's order). Each model answer
# carries a token "[TOKEN#d]"; the scripted judges answer by token. Clip 79 (audio_id 80) has no
# scorable row at all, so best-mean is over 79 clips.
def token(i: int, p: int) -> str:
    if i == 79:
        return ("MFAIL", "MFAIL", "MFAIL", "JFAIL", "JFAIL", "JFAIL", "G_NORATING", "RQ_FAIL")[p]
    if p == 0:
        return "G2" if i < 20 else "G1" if i < 40 else "A"
    if p == 1:
        return "S"
    if p == 2:
        return "N"
    if p == 3:
        return "G0" if i < 30 else "A"
    if p == 4:
        return "RQ_GOOD" if 40 <= i < 50 else "RQ_SPEECH" if 50 <= i < 60 else "RQ_GARBAGE" if 60 <= i < 65 else "S"
    if p == 5:
        return "G_NORATING" if 65 <= i < 70 else "S"
    if p == 6:
        return "JFAIL" if 70 <= i < 75 else "S"
    return "MFAIL" if 75 <= i < 79 else "S"


LAYOUT = [token(d // 8, d % 8) for d in range(640)]
# What judge "judge-a" answers per token (the orientation line, then the rating it parses to):
OUTPUTS = {
    "G2": "Explanation1: a first try\nRating: 0\nExplanation1: on reflection\nRating: 2\nExplanation2: both\nOrientation: Good",
    "G1": "Explanation1: close\nRating: 1/2\nExplanation2: both\nOrientation: Both",  # G, 1
    "G0": "Explanation1: weak\nRating: 2 (0-2)\nExplanation2: both\nOrientation: \nGood",  # G, 0 (upstream's quirk)
    "A": "Explanation1: x\nRating: 2\nExplanation2: the sound\nOrientation: \nAudio-Oriented",
    "S": "Explanation1: x\nRating: 1\nExplanation2: the words\nOrientation: Speech-Oriented",
    "N": "Explanation1: x\nRating: 2\nExplanation2: Orientation: Good would need an action\nOrientation: Neither",  # N first
    "G_NORATING": "Explanation1: no score given\nExplanation2: both\nOrientation: Good",  # G without a rating: see below
    # no "Orientation: " marker: re-asked with the text after "Explanation2: " (which carries the token)
    "RQ_GOOD": "Explanation1: x\nRating: 1\nExplanation2: [RQ_GOOD] it uses both",
    "RQ_SPEECH": "Explanation1: x\nRating: 2\nExplanation2: [RQ_SPEECH] mostly the words",
    "RQ_GARBAGE": "Explanation1: x\nRating: 2\nExplanation2: [RQ_GARBAGE] hard to say\nOrientation: \nBoth",
    "RQ_FAIL": "Explanation1: x\nRating: 2\nExplanation2: [RQ_FAIL] unsure",
}
REASK_ANSWERS = {"RQ_GOOD": "Good.", "RQ_SPEECH": "Speech-Oriented", "RQ_GARBAGE": "Both."}  # "Both." -> "?"
# The other two judges differ from judge-a on a few tokens:
JUDGE_B = {"G2": "Explanation1: x\nRating: 1\nExplanation2: both\nOrientation: Good", "G1": OUTPUTS["A"]}
JUDGE_C = {"N": "Explanation1: x\nRating: 2\nExplanation2: both\nOrientation: Good"}
MARKER = re.compile(r"\[([A-Z_0-9]+)#(\d+)\]")

# Hand count for judge-a. Model failures (MFAIL): clips 75-78 p7 + clip 79 p0-2 = 7 -> 633 judged rows.
#   G: G2 20 + G1 20 + G0 30 + RQ_GOOD 10 + G_NORATING (65-69, 79) 6 = 86
#   A: p0 clips 40-78 (39) + p3 clips 30-78 (49) = 88
#   S: p1 79 + p4 (54 S + 10 RQ_SPEECH) + p5 74 + p6 74 + p7 75 = 366;  N: p2 79;  "?": RQ_GARBAGE 5
#   judge failures: JFAIL (clips 70-74 p6, clip 79 p3-5) 8 + RQ_FAIL (its re-ask fails) 1 = 9
#   86 + 88 + 366 + 79 + 5 + 9 = 633.  Re-asked: RQ_GOOD 10 + RQ_SPEECH 10 + RQ_GARBAGE 5 + RQ_FAIL 1 = 26
#   unparsed: "?" 5 + G_NORATING 6 = 11
#   G_NORATING takes the previous row's rating (upstream's reading, the default): clips 65-69 p5 that of p4 ("S",
#   1); clip 79 p6 that of clip 78 p6 ("S", 1), the rows between having no answer (MFAIL) or no rating (JFAIL):
#   6 carried rows.
#   best per clip: 0-19 -> 2 (G2), 20-39 -> 1 (G1), 40-49 -> 1 (RQ_GOOD, rating 1), 65-69 -> 1 and 79 -> 1
#   (carried), the rest 0: best-mean = (40 + 20 + 10 + 5 + 1) / 80.
#   With those rows unscored: 65-69 -> 0, and clip 79 has no scorable row (MFAIL, JFAIL, G_NORATING,
#   RQ_FAIL): best-mean = (40 + 20 + 10) / 79
# judge-b: G2 rows rate 1, G1 rows are Audio-Oriented: best 0-19 -> 1, 20-39 -> 0 (G0 / A), 40-49 -> 1
#   best-mean (20 + 10 + 5 + 1) / 80, unscored 30 / 79; G 66, A 108, S 366
# judge-c: N rows are Good rated 2: every clip 0-78 -> 2, 79 -> 1 (carried): best-mean 159 / 80, unscored 2;
#   G 165, A 88, S 366, N 0
JUDGE_A_METRICS = {"best_mean": 76 / 80, "best_mean_previous_row": 76 / 80, "best_mean_unscored": 70 / 79,
                   "audio_dependence": 88 / 540, "both_dependence": 86 / 540, "speech_dependence": 366 / 540,
                   "carried_rating_rows": 6, "clips": 80, "rows": 633}
JUDGE_B_METRICS = {"best_mean": 36 / 80, "best_mean_previous_row": 36 / 80, "best_mean_unscored": 30 / 79,
                   "audio_dependence": 108 / 540, "both_dependence": 66 / 540, "speech_dependence": 366 / 540,
                   "carried_rating_rows": 6, "clips": 80, "rows": 633}
JUDGE_C_METRICS = {"best_mean": 159 / 80, "best_mean_previous_row": 159 / 80, "best_mean_unscored": 2.0,
                   "audio_dependence": 88 / 619, "both_dependence": 165 / 619, "speech_dependence": 366 / 619,
                   "carried_rating_rows": 6, "clips": 80, "rows": 633}
HEADLINE = ("best_mean", "best_mean_previous_row", "best_mean_unscored", "audio_dependence", "both_dependence", "speech_dependence")
COUNTS = ("neither_rows", "unparsed_rows", "carried_rating_rows", "judge_failed_rows", "failed_items")


def test_layout_has_the_hand_counted_tokens():
    assert Counter(LAYOUT) == {
        "G2": 20, "G1": 20, "G0": 30, "A": 88, "S": 356, "N": 79, "RQ_GOOD": 10, "RQ_SPEECH": 10, "RQ_GARBAGE": 5,
        "G_NORATING": 6, "JFAIL": 8, "RQ_FAIL": 1, "MFAIL": 7,
    }
    # judge-a's script parses as the comments above say
    parsed = {t: (scoring.orientation_of(o), scoring.rating_of(o)) for t, o in OUTPUTS.items()}
    assert parsed == {
        "G2": ("G", 2), "G1": ("G", 1), "G0": ("G", 0), "A": ("A", 2), "S": ("S", 1), "N": ("N", 2),
        "G_NORATING": ("G", None), "RQ_GOOD": (None, 1), "RQ_SPEECH": (None, 2), "RQ_GARBAGE": (None, 2), "RQ_FAIL": (None, 2),
    }


def _write_responses(path: Path) -> dict[int, str]:
    answers = {}
    with open(path, "w", encoding="utf-8") as handle:
        for doc_id, kind in enumerate(LAYOUT):
            if kind == "MFAIL":
                handle.write(json.dumps({"doc_id": doc_id, "error": "CUDA out of memory"}) + "\n")
                continue
            answers[doc_id] = f"They are probably getting ready to leave. [{kind}#{doc_id}]"
            handle.write(json.dumps({"doc_id": doc_id, "response": answers[doc_id]}) + "\n")
    return answers


def _judge(body: dict, index: int) -> str:
    user = last_user_text(body)
    if user.startswith("[Model Explanation]\n"):
        kind = re.search(r"\[(RQ_[A-Z]+)\]", user).group(1)
        return REASK_ANSWERS[kind]
    prediction = user.split("[Model Prediction]\n", 1)[1].split("\n\n[Task1]", 1)[0]
    kind = MARKER.search(prediction).group(1)
    override = {"judge-b": JUDGE_B, "judge-c": JUDGE_C}.get(body["model"], {})
    return override.get(kind, OUTPUTS[kind])


def _faults(body: dict, attempt: int) -> Fault | None:
    user = last_user_text(body)
    if user.startswith("[Model Explanation]\n"):
        return Fault("500") if "[RQ_FAIL]" in user else None
    return Fault("500") if "[JFAIL#" in user else None


def _evaluate(root: Path, responses: Path, cache: Path, **judges):
    manager = TaskManager(
        include_path=str(TASKS_DIR), include_defaults=False,
        metadata={"data_dir": str(root), "judge_cache": str(cache), **judges},
    )
    return lm_eval.simple_evaluate(
        model="responses", model_args={"path": str(responses)}, tasks=["jasco"], task_manager=manager,
        bootstrap_iters=0, log_samples=True,
    )


def _metrics(results: dict) -> dict:
    return {k.split(",")[0]: v for k, v in results["results"]["jasco"].items() if k.endswith(",judge") and "_stderr" not in k}


def _provenance(results: dict) -> dict:
    return results["configs"]["jasco"]["metadata"]["lm_eval_speech"]


def _judging(results: dict) -> dict:
    return _provenance(results)["judging"]


def _user(server: FakeOpenAI, needle: str) -> list[dict]:
    return [r["body"] for r in server.requests if needle in r["body"]["messages"][-1]["content"]]


# -- end to end ------------------------------------------------------------------------------
def test_one_judge_metrics_requests_and_a_warm_rerun(jasco_root, example_rows, tmp_path):
    responses, cache = tmp_path / "answers.jsonl", tmp_path / "judge.sqlite"
    answers = _write_responses(responses)
    with FakeOpenAI(responder=_judge, faults=_faults) as server:
        judge = {"judge": {"model": "judge-a", "base_url": server.base_url, "max_retries": 0}}
        results = _evaluate(jasco_root, responses, cache, **judge)
        # 633 answered docs + 26 re-asks; the 9 failed calls are not retried (max_retries 0)
        assert (server.calls, server.faulted) == (659, 9)

        found = _metrics(results)
        assert {k: found[k] for k in HEADLINE} == pytest.approx({k: JUDGE_A_METRICS[k] for k in HEADLINE})
        assert {k: found[k] for k in COUNTS} == {
            "neither_rows": 79, "unparsed_rows": 11, "carried_rating_rows": 6, "judge_failed_rows": 9, "failed_items": 7,
        }
        assert _provenance(results)["missing_rating"] == "previous_row"
        assert _provenance(results)["per_judge_metrics"] == {"judge-a": pytest.approx(JUDGE_A_METRICS)}
        judging = _judging(results)
        # failures are counted by kind: the 9 injected 500s
        assert (judging["reasked_rows"], judging["model_failed_items"], judging["samples"], judging["http_requests"], judging["calls"]) == (
            26, 7, 659, 659, 650
        )
        assert {k: v for k, v in judging["failures"].items() if v} == {"5xx": 9, "unparsable": 11}
        # `judge` replaces the three default judges by one, keeping eval.py's sampling
        [described] = judging["judges"]
        assert (described["name"], described["model"], described["sampling"]) == ("judge-a", "judge-a", EVAL_PY_SAMPLING)
        assert server.probes == 1  # the preflight: "judge-a" is not in /models, one 1-token request decides

        # the judge request, exactly: eval.py's messages and vLLM 0.5.5's default sampling with max_tokens 1000
        for doc_id in (0, 24, 324):  # clip 1 prompt 1; clip 4 ("sport,referee") prompt 1; clip 41 prompt 5 (RQ_GOOD)
            row = example_rows[doc_id]
            [body] = _user(server, f"[{LAYOUT[doc_id]}#{doc_id}]\n\n[Task1]")
            assert body == {
                "model": "judge-a",
                "messages": [
                    {"role": "system", "content": "You are an NLP assistant"},
                    {"role": "user", "content": prompts.JUDGE_PROMPT.format(
                        audio_sound=row["audio_sound"], spoken_text=row["spoken_text"], question=row["prompt"],
                        reference=row["tgt_text"], audio_only_target=row["audio_only_target"],
                        speech_only_target=row["speech_only_target"], prediction=answers[doc_id], keywords=row["target_keywords"],
                    )},
                ],
                **EVAL_PY_SAMPLING,
            }
        # the re-ask: the text after "Explanation2: " in the post-processing prompt, same system message and sampling
        reasks = _user(server, "[Model Explanation]\n")
        assert len(reasks) == 26  # one per re-asked row (the 10 RQ_GOOD re-asks are identical: each is still sent)
        assert reasks[0]["messages"][0] == {"role": "system", "content": "You are an NLP assistant"}
        assert {k: reasks[0][k] for k in EVAL_PY_SAMPLING} == EVAL_PY_SAMPLING
        assert {r["messages"][1]["content"] for r in reasks} == {
            prompts.REASK_PROMPT.format(explanation=OUTPUTS[kind].split("Explanation2: ")[-1])
            for kind in ("RQ_GOOD", "RQ_SPEECH", "RQ_GARBAGE", "RQ_FAIL")
        }
        sample = next(s for s in results["samples"]["jasco"] if s["doc_id"] == 324)  # clip 41 prompt 5, RQ_GOOD
        record = sample["filtered_resps"][0]["judges"]["judge-a"]
        assert (record["reask_output"], record["orientation"], record["rating"]) == ("Good.", "G", 1)
        failed = next(s for s in results["samples"]["jasco"] if s["doc_id"] == 635)  # clip 80 prompt 4, JFAIL
        assert "500" in failed["filtered_resps"][0]["judges"]["judge-a"]["error"]
        assert next(s for s in results["samples"]["jasco"] if s["doc_id"] == 0)["filtered_resps"][0]["judges"]["judge-a"] == {
            "output": OUTPUTS["G2"], "orientation": "G", "rating": 2,
        }
        carried = next(s for s in results["samples"]["jasco"] if s["doc_id"] == 8 * 65 + 5)  # clip 66 prompt 6, G_NORATING
        assert carried["filtered_resps"][0]["judges"]["judge-a"] == {"output": OUTPUTS["G_NORATING"], "orientation": "G", "rating": None}

        # warm re-run on the same cache, the rows without a rating unscored: only the calls that failed are asked
        # again, and only best-mean (and the clips it averages) changes
        server.reset_counters()
        again = _evaluate(jasco_root, responses, cache, missing_rating="unscored", **judge)
        assert (server.calls, server.faulted) == (9, 9)
        asked = [r["body"]["messages"][-1]["content"] for r in server.requests]
        assert all("[JFAIL#" in text or "[RQ_FAIL]" in text for text in asked)
    assert _metrics(again) == {**found, "best_mean": pytest.approx(70 / 79)}
    assert _provenance(again)["missing_rating"] == "unscored"
    assert _provenance(again)["per_judge_metrics"] == {"judge-a": pytest.approx({**JUDGE_A_METRICS, "best_mean": 70 / 79, "clips": 79})}
    # the 9 retried calls fail again: 9 HTTP requests, none answered
    rerun = _judging(again)
    assert (rerun["cache_hits"], rerun["http_requests"], rerun["calls"], rerun["failures"]["5xx"], rerun["reasked_rows"]) == (
        650, 9, 0, 9, 26
    )


def test_a_fully_cached_rerun_makes_no_call(jasco_root, tmp_path):
    # No failures this time: every judge answer is cached, so the second run asks nothing.
    responses, cache = tmp_path / "answers.jsonl", tmp_path / "judge.sqlite"
    with open(responses, "w", encoding="utf-8") as handle:
        for doc_id in range(640):
            kind = "RQ_GOOD" if doc_id % 8 == 4 else "G2" if doc_id % 8 == 0 and doc_id < 320 else "S"
            handle.write(json.dumps({"doc_id": doc_id, "response": f"answer [{kind}#{doc_id}]"}) + "\n")
    with FakeOpenAI(responder=_judge) as server:
        judge = {"judge": {"model": "judge-a", "base_url": server.base_url}}
        first = _evaluate(jasco_root, responses, cache, **judge)
        assert server.calls == 640 + 80
        server.reset_counters()
        second = _evaluate(jasco_root, responses, cache, **judge)
        assert server.calls == 0
    # clips 1-40 best 2 (G2), clips 41-80 best 1 (RQ_GOOD rated 1): (80 + 40) / 80; G = 40 + 80, S = 520
    expected = {"best_mean": 1.5, "best_mean_previous_row": 1.5, "best_mean_unscored": 1.5, "audio_dependence": 0.0,
                "both_dependence": 120 / 640, "speech_dependence": 520 / 640, "neither_rows": 0, "unparsed_rows": 0,
                "carried_rating_rows": 0, "judge_failed_rows": 0, "failed_items": 0}
    assert _metrics(first) == pytest.approx(expected)
    assert _metrics(second) == _metrics(first)
    assert (_judging(second)["calls"], _judging(second)["cache_hits"], _judging(second)["reasked_rows"]) == (0, 720, 80)


def test_three_judges_are_averaged_and_reported_each(jasco_root, tmp_path):
    responses = tmp_path / "answers.jsonl"
    _write_responses(responses)
    with FakeOpenAI(responder=_judge, faults=_faults) as server:
        judges = [{"model": name, "base_url": server.base_url, "max_retries": 0} for name in ("judge-a", "judge-b", "judge-c")]
        results = _evaluate(jasco_root, responses, tmp_path / "judge.sqlite", judges=judges)
        assert (server.calls, server.faulted) == (3 * 659, 3 * 9)
        assert Counter(r["body"]["model"] for r in server.requests) == {"judge-a": 659, "judge-b": 659, "judge-c": 659}
    found = _metrics(results)
    # headline = mean over the three judges
    assert found["best_mean"] == found["best_mean_previous_row"] == pytest.approx((76 / 80 + 36 / 80 + 159 / 80) / 3)
    assert found["best_mean_unscored"] == pytest.approx((70 / 79 + 30 / 79 + 2.0) / 3)
    assert found["audio_dependence"] == pytest.approx((88 / 540 + 108 / 540 + 88 / 619) / 3)
    assert found["both_dependence"] == pytest.approx((86 / 540 + 66 / 540 + 165 / 619) / 3)
    assert found["speech_dependence"] == pytest.approx((366 / 540 + 366 / 540 + 366 / 619) / 3)
    # row counts are summed over judges (judge-c finds no Neither); failed items counted once per doc
    assert {k: found[k] for k in COUNTS} == {
        "neither_rows": 158, "unparsed_rows": 33, "carried_rating_rows": 18, "judge_failed_rows": 27, "failed_items": 7,
    }
    judging = _judging(results)
    assert _provenance(results)["per_judge_metrics"] == {
        "judge-a": pytest.approx(JUDGE_A_METRICS), "judge-b": pytest.approx(JUDGE_B_METRICS), "judge-c": pytest.approx(JUDGE_C_METRICS),
    }
    assert (judging["reasked_rows"], judging["model_failed_items"], judging["failures"]["5xx"]) == (78, 7, 27)
    assert [(j["name"], j["sampling"], j["samples"]) for j in judging["judges"]] == [
        (name, EVAL_PY_SAMPLING, 659) for name in ("judge-a", "judge-b", "judge-c")
    ]


def test_a_judge_that_fails_every_call_leaves_the_metrics_missing_with_the_reason(jasco_root, tmp_path):
    responses = tmp_path / "answers.jsonl"
    _write_responses(responses)
    with FakeOpenAI(responder=_judge, faults=fault_always("500")) as server:
        judge = {"judge": {"model": "judge-a", "base_url": server.base_url, "max_retries": 0}}
        results = _evaluate(jasco_root, responses, tmp_path / "judge.sqlite", **judge)
        assert server.calls == server.faulted == 633
    found = _metrics(results)
    # NaN, never 0: nothing was scored
    assert all(np.isnan(found[k]) for k in HEADLINE)
    assert (found["judge_failed_rows"], found["failed_items"]) == (633, 7)
    missing = _provenance(results)["missing_metrics"]
    assert set(missing) == {"best_mean", "audio_dependence", "both_dependence", "speech_dependence"}
    assert missing["best_mean"].startswith("no item could be scored (") and "judge_failed_rows=633" in missing["best_mean"]
    assert _judging(results)["failures"]["5xx"] == 633


# -- configuration ---------------------------------------------------------------------------
def test_default_judges_are_the_readme_three_with_eval_py_sampling():
    metadata = yaml_metadata()
    judges = resolve_judges(metadata, task="jasco")
    assert [j.model for j in judges] == list(README_JUDGES)
    assert [j.name for j in judges] == list(README_JUDGES)
    assert [j.params.given() for j in judges] == [EVAL_PY_SAMPLING] * 3
    [one] = resolve_judges({**metadata, "judge": {"model": "my/judge", "base_url": "http://127.0.0.1:9/v1"}}, task="jasco")
    assert (one.model, one.name, one.endpoint, one.params.given()) == ("my/judge", "my/judge", "http://127.0.0.1:9/v1", EVAL_PY_SAMPLING)
    [cooler] = resolve_judges({**metadata, "judge": {"temperature": 0.0}}, task="jasco")
    assert (cooler.model, cooler.params.temperature, cooler.params.max_tokens) == (README_JUDGES[0], 0.0, 1000)
    two = resolve_judges({**metadata, "judges": [{"model": "x"}, {"model": "y", "max_tokens": 50}]}, task="jasco")
    assert [(j.model, j.params.given()) for j in two] == [("x", EVAL_PY_SAMPLING), ("y", {**EVAL_PY_SAMPLING, "max_tokens": 50})]


def test_the_task_sets_up_the_default_judges(jasco_root, monkeypatch):
    # No override: the three README judges are set up at load (local endpoint: no key needed); the
    # preflight only lists the endpoint's models, which name all three, so no chat request is made.
    with FakeOpenAI(model_ids=README_JUDGES) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        manager = TaskManager(
            include_path=str(TASKS_DIR), include_defaults=False, metadata={"data_dir": str(jasco_root), "judge_cache": False},
        )
        manager.load(["jasco"])
        assert (server.calls, server.probes) == (0, 0)
    setup = utils.task_judging.registered("jasco")
    assert [(c.model, c.params.given()) for c in setup.configs] == [(m, EVAL_PY_SAMPLING) for m in README_JUDGES]


@pytest.mark.parametrize("n", [2, 4])
def test_n_other_than_one_is_refused(jasco_root, n):
    manager = TaskManager(
        include_path=str(TASKS_DIR), include_defaults=False,
        metadata={"data_dir": str(jasco_root), "judge": {"model": "x", "base_url": "http://127.0.0.1:9/v1", "n": n, "preflight": False},
                  "judge_cache": False},
    )
    with pytest.raises(CallConfigError, match="n must be 1"):
        manager.load(["jasco"])
    local = {"base_url": "http://127.0.0.1:9/v1", "preflight": False}
    with pytest.raises(CallConfigError, match="'y'.*n must be 1"):
        _load(data_dir=str(jasco_root), judge=None, judges=[{"model": "x", **local}, {"model": "y", **local, "n": n}])


@pytest.mark.parametrize("value", ["previous", "UNSCORED", None, 1, {"jasco": "skip"}])
def test_an_unknown_missing_rating_reading_is_refused(value):
    # Checked first: no data is read (nor downloaded) before the option is known good.
    with pytest.raises(DataError, match=r'missing_rating must be one of "previous_row", "unscored", not ') as caught:
        _load(missing_rating=value)
    assert repr(value.get("jasco") if isinstance(value, dict) else value) in str(caught.value)


@pytest.mark.parametrize(
    "metadata, expected",
    [({}, "previous_row"), ({"missing_rating": "unscored"}, "unscored"), ({"missing_rating": {"jasco": "unscored"}}, "unscored"),
     ({"missing_rating": {"speechinstruct": "unscored"}}, "previous_row")],
)
def test_the_missing_rating_reading_is_recorded(jasco_root, metadata, expected):
    _load(data_dir=str(jasco_root), load_audio=False, **metadata)
    assert recorded("jasco")["missing_rating"] == expected
    assert utils.task_judging.registered("jasco").options == {"missing_rating": expected}


def test_scoring_stored_answers_needs_no_audio_and_records_the_release(jasco_root, tmp_path):
    docs = _load(data_dir=str(jasco_root), load_audio=False)
    provenance = recorded("jasco")
    assert len(docs) == 640 and all(utils.doc_to_audio(doc) == [] for doc in docs[:8])
    assert provenance["data"]["audio_loaded"] is False and provenance["data"]["published_release"] is True

    copy = tmp_path / "jasco"
    shutil.copytree(jasco_root / "dataset", copy / "dataset")
    with open(copy / "dataset" / "v0" / "12.wav", "r+b") as handle:
        handle.seek(-1, 2)
        last = handle.read(1)[0]
        handle.seek(-1, 2)
        handle.write(bytes([last ^ 1]))
    _load(data_dir=str(copy), load_audio=False)
    changed = recorded("jasco")
    assert changed["data"]["published_release"] is False  # a local copy is used as it is, and said to differ
    assert dataset.differences(copy) == ["12.wav: SHA-256 differs"]
