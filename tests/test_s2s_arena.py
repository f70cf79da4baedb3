"""S2S-Arena: the generation task on the real demo inputs, and the arena command's battles and judging.

Judging runs against FakeOpenAI (a real local server speaking the OpenAI protocol) whose
responder reads the two replies it is shown, so position swaps and caching are observable.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from lm_eval_speech.arena import prompts
from lm_eval_speech.arena.battles import Battle
from lm_eval_speech.arena.command import ArenaError, run_arena
from lm_eval_speech.arena.judging import Matchup, matchups, select
from lm_eval_speech.arena.ratings import online_elo
from lm_eval_speech.arena.runs import RunError, read_run
from lm_eval_speech.data import DataError
from lm_eval_speech.outcomes import FailedGeneration
from lm_eval_speech.provenance import of as recorded
from lm_eval_speech.speech.output import SpeechResponse
from lm_eval_speech.tasks.s2s_arena import dataset, taxonomy, utils

from builders import tone
from conftest import SHARED
from fake_openai import FakeOpenAI, last_user_text

SAMPLES = SHARED / "data" / "s2s-arena-samples"
needs_samples = pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"the S2S-Arena demo inputs are not at {SAMPLES}")


@pytest.fixture(autouse=True)
def no_ambient_openai(monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "LM_EVAL_SPEECH_JUDGE_CACHE"):
        monkeypatch.delenv(name, raising=False)


def read_battles(path: Path) -> list[Battle]:
    """The arena's battles file: one Battle as a JSON object per line."""
    return [Battle(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_all(**metadata) -> list[dict]:
    """Every domain's docs, domain by domain (the four tasks' loaders; a domain without clips adds none)."""
    docs = []
    for load in (utils.load_education, utils.load_social, utils.load_entertainment, utils.load_medical):
        try:
            docs += list(load(**metadata)["test"])
        except DataError as error:
            if "no input clips for domain" not in str(error):
                raise
    return docs


# -- the task --------------------------------------------------------------------------------

def test_taxonomy_has_the_papers_4_domains_and_21_tasks():
    assert sum(len(t) for t in taxonomy.DOMAINS.values()) == 21 == len(taxonomy.TASK_TITLES)
    assert taxonomy.task_of("pronounciation", "audio_1.mp3") == "pronunciation"
    assert taxonomy.task_of("illness", "healthcare3.wav") == "healthcare"
    assert taxonomy.task_of("illness", "audio_3.mp3") == "illness"
    assert taxonomy.task_of("natural_audios", "audio_3.mp3") == "nature"
    assert taxonomy.task_of("holiday_snaps", "x.mp3") is None


@needs_samples
def test_the_demo_inputs_become_entertainment_docs_at_24khz():
    loaded = utils.load_entertainment(data_dir=str(SAMPLES))["test"]
    tasks = sorted({d["arena_task"] for d in loaded})
    assert tasks == ["nature", "sing", "tongue_twister"]
    assert len(loaded) == len(list(SAMPLES.glob("*_audios/*.mp3")))
    doc = next(d for d in loaded if d["input_id"] == "tongue_twister_audios/audio_0.mp3")
    assert doc["domain"] == "entertainment" and doc["task_title"] == "Tongue twisters"
    [clip] = utils.doc_to_audio(doc)
    native = sf.info(SAMPLES / doc["input_id"])
    assert clip["sampling_rate"] == 24000 and abs(len(clip["array"]) / 24000 - native.duration) < 0.05
    with pytest.raises(ValueError, match="no input clips for domain medical"):
        utils.load_medical(data_dir=str(SAMPLES))
    only = load_all(data_dir=str(SAMPLES), arena_tasks=["sing"])
    assert {d["arena_task"] for d in only} == {"sing"}
    with pytest.raises(ValueError, match="unknown tasks"):
        load_all(data_dir=str(SAMPLES), arena_tasks=["juggling"])


def _write_clip(path: Path, seconds: float = 0.5, rate: int = 24000, frequency: float = 440.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, tone(seconds, rate, frequency), rate)
    return path


def test_metadata_comes_from_the_space_files_and_metadata_jsonl(tmp_path):
    for name in ("audio_0.mp3", "audio_1.mp3"):
        _write_clip(tmp_path / "tongue_twister" / name.replace(".mp3", ".wav"))
    _write_clip(tmp_path / "stray.wav")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "tongue_twister.json").write_text(json.dumps({"items": [
        {"audio": "audio_0.wav", "text": "Say it fast", "Task Description": "ignored: not a known key"},
        {"file": "tongue_twister/audio_1.wav", "transcript": "Say it slow", "evaluation_target": "pace"},
        {"file": "audio_9.wav", "transcript": "no such clip"},
    ]}))
    (tmp_path / dataset.METADATA_FILE).write_text(json.dumps({"audio": "tongue_twister/audio_0.wav", "task_description": "Recite"}) + "\n")
    docs = {d["input_id"]: d for d in load_all(data_dir=str(tmp_path))}
    assert set(docs) == {"tongue_twister/audio_0.wav", "tongue_twister/audio_1.wav"}
    first = docs["tongue_twister/audio_0.wav"]
    assert (first["transcript"], first["task_description"]) == ("Say it fast", "Recite")
    assert docs["tongue_twister/audio_1.wav"]["evaluation_target"] == "pace"
    provenance = recorded("s2s_arena_entertainment")["data"]
    assert provenance["unassigned_files"] == ["stray.wav"]
    assert provenance["metadata"] == {
        "metadata_conflicts": "error", "space_files": 1, "space_records": 3, "space_records_matched": 2,
        "space_records_without_clip": 1, "space_records_in_conflict": 0, "metadata_jsonl_records": 1,
        "clips_without_record": 0, "clips_left_out_for_conflicts": 0}
    (tmp_path / dataset.METADATA_FILE).write_text(json.dumps({"audio": "tongue_twister/audio_7.wav"}) + "\n")
    with pytest.raises(ValueError, match="line 1: tongue_twister/audio_7.wav is not an input clip"):
        load_all(data_dir=str(tmp_path))


# The Space's published form: data/<task>.json records naming clips by input_path; the four
# identity folders each reuse audio_0.mp3 and audio_1.mp3.
IDENTITY_FOLDERS = ("identity/age/adults", "identity/age/children", "identity/gender/men", "identity/gender/women")


def _space_record(position: int, input_path: str, text: str, description: str, level, category: str) -> dict:
    clip = input_path.removeprefix("/input/")
    return {"id": position, "input_path": input_path, "text": text, "task": clip.split("/")[0],
            "task_description": description, "text_cn": "", "language": "en", "category": category, "level": level,
            "output_path_4o": f"/output/4o/{clip.rsplit('.', 1)[0]}.wav", "output_path_miniomni": ""}


def write_space_layout(root: Path) -> dict[str, dict]:
    """Real clips in the dataset's nested folders and the Space's data/*.json; returns the record meant for each clip."""
    expected, identity = {}, []
    for folder_number, folder in enumerate(IDENTITY_FOLDERS):
        for clip in ("audio_0.mp3", "audio_1.mp3"):
            relpath = f"{folder}/{clip}"
            _write_clip(root / relpath, seconds=0.3, frequency=300.0 + 50 * folder_number)
            who = folder.rsplit("/", 1)[1]
            record = _space_record(len(identity), f"/input/{relpath}", f"I am one of the {who}, clip {clip[6]}",
                                   f"Answer as suits {who}", 1, folder.split("/")[1])
            identity.append(record)
            expected[relpath] = record
    identity.reverse()  # the file's order is not the clips' order
    identity.append(_space_record(8, "/input/identity/age/elderly/audio_0.mp3", "no such clip", "", 1, "age"))
    tongue = []
    for clip in ("audio_0.mp3", "audio_1.mp3"):
        _write_clip(root / "tongue_twister" / clip, seconds=0.3, frequency=700.0)
        tongue.append(_space_record(len(tongue), f"/input/tongue_twister/{clip}", f"twister {clip[6]}",
                                    "Recite it at three speeds", "L2", "speed"))
        expected[f"tongue_twister/{clip}"] = tongue[-1]
    for clip in ("healthcare0.wav", "healthcare1.wav", "healthcare0_Typing_1.wav"):  # the last: noise-mixed, no record
        _write_clip(root / "illness" / clip, seconds=0.3, frequency=900.0)
    healthcare = [
        _space_record(0, "/input/illness/healthcare0.wav", "I have a headache", "Give sound health advice", 0, "symptom"),
        # another folder spelling: found by its file name, unique in the illness folder
        _space_record(1, "/input/healthcare/healthcare1.wav", "I sleep badly", "Give sound health advice", 0, "sleep"),
    ]
    expected["illness/healthcare0.wav"], expected["illness/healthcare1.wav"] = healthcare
    for name, records in (("identity", identity), ("tongue", tongue), ("healthcare", healthcare)):
        _write_space_file(root, name, records)
    return expected


def _write_space_file(root: Path, name: str, records: list[dict]) -> None:
    (root / "data").mkdir(exist_ok=True)
    (root / "data" / f"{name}.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")


def _space_file(root: Path, name: str) -> list[dict]:
    return json.loads((root / "data" / f"{name}.json").read_text(encoding="utf-8"))


def test_space_records_land_on_their_own_clips_by_input_path(tmp_path, caplog):
    expected = write_space_layout(tmp_path)
    with caplog.at_level("WARNING", logger="lm_eval_speech.s2s_arena"):
        loaded = load_all(data_dir=str(tmp_path))
    noise_clip = "illness/healthcare0_Typing_1.wav"
    assert sorted(doc["input_id"] for doc in loaded) == sorted([*expected, noise_clip])
    for domain in ("social", "entertainment", "medical"):  # each task's docs in path order, not the files' order
        ids = [doc["input_id"] for doc in loaded if doc["domain"] == domain]
        assert ids and ids == sorted(ids), domain
    docs = {doc["input_id"]: doc for doc in loaded}
    for relpath, record in expected.items():
        doc = docs[relpath]
        assert (doc["transcript"], doc["task_description"]) == (record["text"], record["task_description"]), relpath
        assert doc["evaluation_target"] == record["task_description"]  # the Space names no target field
        assert (doc["level"], doc["category"]) == (str(record["level"]), record["category"])
    assert docs["identity/gender/women/audio_1.mp3"]["transcript"] == "I am one of the women, clip 1"
    assert docs["illness/healthcare1.wav"]["arena_task"] == "healthcare"
    assert {docs[noise_clip][key] for key in ("transcript", "task_description", "level", "category")} == {""}
    assert recorded("s2s_arena_medical")["data"]["metadata"] == {
        "metadata_conflicts": "error", "space_files": 3, "space_records": 13, "space_records_matched": 12,
        "space_records_without_clip": 1, "space_records_in_conflict": 0, "metadata_jsonl_records": 0,
        "clips_without_record": 1, "clips_left_out_for_conflicts": 0}
    logged = caplog.text
    assert "1 Space record(s) reach no clip: identity.json[8] (id 8): /input/identity/age/elderly/audio_0.mp3" in logged
    assert "fits 4 clips in identity/" in logged  # audio_0.mp3 names no single clip: no guessing by file name
    assert f"1 clip(s) have no metadata record (empty transcript and description): {noise_clip}" in logged
    for name in ("identity", "tongue", "healthcare"):  # another record order changes nothing
        _write_space_file(tmp_path, name, _space_file(tmp_path, name)[::-1])
    assert load_all(data_dir=str(tmp_path)) == loaded


def test_two_records_for_one_clip_are_refused_or_their_clip_left_out(tmp_path, caplog):
    write_space_layout(tmp_path)
    records = _space_file(tmp_path, "identity")
    records.append(dict(records[0], id="again", text="a second transcript"))  # records[0]: women/audio_1.mp3
    _write_space_file(tmp_path, "identity", records)
    clash = r"clip identity/gender/women/audio_1\.mp3 has 2 records: identity\.json\[0\] \(id 7\), identity\.json\[9\] \(id again\)"
    with pytest.raises(ValueError, match=clash):
        load_all(data_dir=str(tmp_path))
    for skip in ("skip", {"s2s_arena": "skip", "jasco": "error"}):
        metadata = {"data_dir": str(tmp_path), "metadata_conflicts": skip}
        with caplog.at_level("WARNING", logger="lm_eval_speech.s2s_arena"):
            docs = {doc["input_id"]: doc for doc in utils.load_social(**metadata)["test"]}
        assert "identity/gender/women/audio_1.mp3" not in docs and len(docs) == 7
        assert docs["identity/gender/women/audio_0.mp3"]["transcript"] == "I am one of the women, clip 0"
        counts = recorded("s2s_arena_social")["data"]["metadata"]
        assert (counts["metadata_conflicts"], counts["clips_left_out_for_conflicts"], counts["space_records_in_conflict"],
                counts["space_records_matched"]) == ("skip", 1, 2, 12 - 1)
        assert "metadata conflict(s), their clips left out" in caplog.text
    with pytest.raises(ValueError, match="metadata_conflicts must be one of error, skip, not 'ignore'"):
        load_all(data_dir=str(tmp_path), metadata_conflicts="ignore")


def test_the_skip_option_reaches_the_task_through_lm_evals_metadata(tmp_path):
    from lm_eval.tasks import TaskManager

    from conftest import TASKS_DIR

    write_space_layout(tmp_path)
    records = _space_file(tmp_path, "identity")
    _write_space_file(tmp_path, "identity", [*records, dict(records[0], id="again")])
    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False,
                          metadata={"data_dir": str(tmp_path), "metadata_conflicts": {"s2s_arena": "skip"}})
    task = manager.load(["s2s_arena_social"])["tasks"]["s2s_arena_social"]
    assert len(task.dataset["test"]) == 7
    # the record reaches the results through the task's dumped config (the plugin hook adds it)
    assert task.dump_config()["metadata"]["lm_eval_speech"]["data"]["metadata"]["clips_left_out_for_conflicts"] == 1


def test_a_record_naming_two_clips_is_refused(tmp_path):
    write_space_layout(tmp_path)
    tongue = _space_file(tmp_path, "tongue")
    tongue[0]["audio_file"] = "tongue_twister/audio_1.mp3"  # input_path says audio_0.mp3
    _write_space_file(tmp_path, "tongue", tongue)
    both = r"record tongue\.json\[0\] \(id 0\) names 2 clips: tongue_twister/audio_0\.mp3, tongue_twister/audio_1\.mp3"
    with pytest.raises(ValueError, match=both):
        utils.load_entertainment(data_dir=str(tmp_path))
    docs = load_all(data_dir=str(tmp_path), metadata_conflicts="skip")
    assert not [doc for doc in docs if doc["arena_task"] == "tongue_twister"] and len(docs) == 11
    assert recorded("s2s_arena_social")["data"]["metadata"]["clips_left_out_for_conflicts"] == 2


def test_space_files_map_to_their_task_folders():
    assert taxonomy.space_file_folder("tongue") == "tongue_twister"
    assert [taxonomy.space_file_folder(name) for name in ("healthcare", "psychological", "illness")] == ["illness"] * 3
    assert taxonomy.space_file_folder("natural") == "nature" and taxonomy.space_file_folder("singing") == "sing"
    assert taxonomy.space_file_folder("pronounciation") == "pronunciation"
    assert taxonomy.space_file_folder("leaderboard") is None


def test_process_results_counts_spoken_unspoken_and_failed_answers():
    doc = {"domain": "entertainment"}
    spoken = SpeechResponse("hello world", {"path": "/a.wav", "sampling_rate": 16000, "duration": 1.5, "sha256": "ab",
                                            "transcript": "hello word"})
    values = utils.process_results(doc, [spoken])
    assert {k: values[k] for k in ("spoken_items", "unspoken_items", "failed_items", "speech_seconds")} == {
        "spoken_items": 1, "unspoken_items": 0, "failed_items": 0, "speech_seconds": 1.5}
    assert values["asr_wer"] == {"task": "s2s_arena_entertainment", "text": "hello world", "transcript": "hello word"}
    assert values["dnsmos_ovrl"] == {"task": "s2s_arena_entertainment", "path": "/a.wav", "sha256": "ab"}
    assert values["first_audio_s_median"] is None  # a record without latency (logged before it was measured)
    text = utils.process_results(doc, ["text"])
    assert (text["unspoken_items"], text["speech_seconds"], text["asr_wer"]) == (1, None, None)
    failed = utils.process_results(doc, [FailedGeneration("boom")])
    assert (failed["failed_items"], failed["unspoken_items"], failed["spoken_items"]) == (1, 0, 0)
    assert set(values) == set(text) == set(failed)
    assert utils.mean_present([None, 1.0, 2.0]) == 1.5


# -- runs and battles --------------------------------------------------------------------------

def write_run(folder: Path, label_answers: dict[str, str], *, domain="entertainment", task="tongue_twister", unspoken=(),
              labels: dict[str, tuple[str, str]] | None = None) -> Path:
    """A run folder in lm-eval's layout: samples JSONL whose records point at real WAV files.

    ``labels``: (level, category) per input, as docs carry them now; without it, docs as older runs logged them.
    """
    out = folder / "model"
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for doc_id, (input_id, answer) in enumerate(label_answers.items()):
        doc = {"input_id": input_id, "domain": domain, "arena_task": task, "task_title": "Tongue twisters",
               "transcript": f"request {input_id}", "task_description": "", "evaluation_target": "", "audio_file": ""}
        if labels:
            doc["level"], doc["category"] = labels[input_id]
        sample = {"doc_id": doc_id, "doc": doc, "resps": [[answer]], "filtered_resps": [answer], "spoken_items": 1}
        if input_id not in unspoken:
            wav = _write_clip(folder / "speech" / f"doc{doc_id}.wav", seconds=1.0 + 0.1 * doc_id)
            sample["speech_output"] = [{"path": str(wav), "sampling_rate": 24000, "duration": 1.0, "transcript": answer}]
        lines.append(json.dumps(sample))
    (out / f"samples_s2s_arena_{domain}_2026-01-01T00-00-00.jsonl").write_text("\n".join(lines) + "\n")
    return folder


INPUTS = ["tt/0.wav", "tt/1.wav", "tt/2.wav"]


def prefers_good(body: dict, index: int) -> str:
    """A judge that prefers the reply containing 'good' (wherever it is shown), then 'fine'."""
    text = last_user_text(body)
    a = text.split("Reply A (transcript of its speech):")[1].split("Reply B")[0]
    b = text.split("Reply B (transcript of its speech):")[1]
    for word in ("good", "fine"):
        if (word in a) != (word in b):
            return "[[A]]" if word in a else "[[B]]"
    return "[[A]]"  # no preference: always the first shown (position bias)


@pytest.fixture
def three_runs(tmp_path):
    return {
        "good": write_run(tmp_path / "good", {i: f"a good answer {i}" for i in INPUTS}),
        "fine": write_run(tmp_path / "fine", {i: f"a fine answer {i}" for i in INPUTS}),
        "bad": write_run(tmp_path / "bad", {i: f"meh {i}" for i in INPUTS}, unspoken=("tt/2.wav",)),
    }


def test_runs_are_read_with_unspoken_answers_listed(three_runs, tmp_path):
    run = read_run(three_runs["bad"], "bad")
    assert sorted(run.answers) == ["tt/0.wav", "tt/1.wav"] and run.unspoken == ["tt/2.wav"]
    assert run.answers["tt/0.wav"].spoken_text == "meh tt/0.wav"
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunError, match="no samples_s2s_arena"):
        read_run(tmp_path / "empty")


def test_matchups_cover_shared_inputs_and_a_budget_spreads_pairs(three_runs):
    runs = [read_run(f, name) for name, f in three_runs.items()]
    pairs = matchups(runs)
    assert len(pairs) == 3 + 3 + 1  # tt/2 lacks bad's audio: one pair there
    assert Matchup("tt/2.wav", "fine", "good") in pairs
    picked = select(pairs, 3, seed=1)
    assert len({frozenset((m.model_1, m.model_2)) for m in picked}) == 3  # least-met pairs first
    assert select(pairs, None) == pairs


def arena(server, runs: dict, output: Path, cache: Path, **options):
    judge = {"model": "judge-x", "base_url": server.base_url, "temperature": 0.0, "max_tokens": 64}
    return run_arena([f"{name}={folder}" for name, folder in runs.items()], output, judge=judge,
                     judge_cache=str(cache), bootstrap=100, acoustics=False, **options)


def test_battles_are_judged_in_both_orders_and_a_rerun_is_free(three_runs, tmp_path):
    with FakeOpenAI(responder=prefers_good) as server:
        board = arena(server, three_runs, tmp_path / "board", tmp_path / "judge.sqlite")
        assert server.calls == 2 * 7
        marker = "Reply A (transcript of its speech): "
        replies_a = [last_user_text(r["body"]).split(marker)[1].split("Reply B")[0] for r in server.requests]
        shown_first = [next(w for w in ("good", "fine", "meh") if w in reply) for reply in replies_a]
        assert sorted(shown_first) == sorted(["good"] * 3 + ["fine"] * 3 + ["good", "fine", "meh", "meh"] * 2)
        battles = read_battles(tmp_path / "board" / "s2s_arena_battles.jsonl")
        assert len(battles) == 7
        by_pair = {(b.input_id, b.model_a, b.model_b): b for b in battles}
        assert by_pair[("tt/0.wav", "fine", "good")].winner == "model_b"
        assert by_pair[("tt/0.wav", "bad", "fine")].winner == "model_b"
        assert all(b.source == "judge" and b.judge == "judge-x" for b in battles)
        ranked = [row["model"] for row in board["models"]]
        assert ranked == ["good", "fine", "bad"]
        assert board["judging"]["inconsistent_pairs"] == 0 and board["judging"]["unjudged"] == []
        markdown = (tmp_path / "board" / "s2s_arena_leaderboard.md").read_text()
        assert "good" in markdown and "position-swap disagreements: 0" in markdown
        assert board["levels"] == board["categories"] == [] and "Online Elo by level" not in markdown  # runs without labels
        assert (tmp_path / "board" / "s2s_arena_ratings.png").read_bytes()[:4] == b"\x89PNG"
        server.reset_counters()
        again = arena(server, three_runs, tmp_path / "board2", tmp_path / "judge.sqlite")
        assert server.calls == 0 and again["models"] == board["models"]
        assert again["judging"]["accounting"]["judge-x"]["cache_hits"] == 14


def test_the_leaderboard_breaks_elo_down_by_level_and_category(tmp_path):
    labels = {"tt/0.wav": ("L1", "speed"), "tt/1.wav": ("L2", "speed"), "tt/2.wav": ("L2", "accent")}
    runs = {"good": write_run(tmp_path / "good", {i: f"a good answer {i}" for i in INPUTS}, labels=labels),
            "fine": write_run(tmp_path / "fine", {i: f"a fine answer {i}" for i in INPUTS}, labels=labels)}
    with FakeOpenAI(responder=prefers_good) as server:
        board = arena(server, runs, tmp_path / "board", tmp_path / "judge.sqlite")
    battles = read_battles(tmp_path / "board" / "s2s_arena_battles.jsonl")
    assert [(b.input_id, b.level, b.category) for b in battles] == [(i, *labels[i]) for i in INPUTS]
    assert (board["levels"], board["categories"]) == (["L1", "L2"], ["accent", "speed"])
    assert (board["battles_by_level"], board["battles_by_category"]) == ({"L1": 1, "L2": 2}, {"accent": 1, "speed": 2})
    good = next(row for row in board["models"] if row["model"] == "good")
    assert good["level_elo"] == {"L1": 1016.0, "L2": online_elo([b for b in battles if b.level == "L2"])["good"]}
    assert good["level_elo"]["L2"] > 1016.0 and good["category_elo"] == {"accent": 1016.0, "speed": good["level_elo"]["L2"]}
    markdown = (tmp_path / "board" / "s2s_arena_leaderboard.md").read_text()
    assert "## Online Elo by level" in markdown and "| Rank | Model | L1 (n=1) | L2 (n=2) |" in markdown
    assert "## Online Elo by category" in markdown and "| Rank | Model | accent (n=1) | speed (n=2) |" in markdown
    assert "| 1 | good | 1016 | 1031 |" in markdown
    assert json.loads((tmp_path / "board" / "s2s_arena_leaderboard.json").read_text())["levels"] == ["L1", "L2"]


def test_adding_a_model_pays_only_for_its_battles(three_runs, tmp_path):
    two = {k: three_runs[k] for k in ("good", "fine")}
    with FakeOpenAI(responder=prefers_good) as server:
        arena(server, two, tmp_path / "b1", tmp_path / "judge.sqlite")
        assert server.calls == 2 * 3
        server.reset_counters()
        arena(server, three_runs, tmp_path / "b2", tmp_path / "judge.sqlite")
        assert server.calls == 2 * 4  # bad meets good and fine on its 2 spoken inputs


def test_position_bias_makes_ties_and_rejudging_asks_again(tmp_path):
    runs = {"x": write_run(tmp_path / "x", {i: f"one {i}" for i in INPUTS}),
            "y": write_run(tmp_path / "y", {i: f"two {i}" for i in INPUTS})}
    with FakeOpenAI(responder=prefers_good) as server:  # neither says good or fine: always "[[A]]"
        board = arena(server, runs, tmp_path / "b", tmp_path / "judge.sqlite")
        battles = read_battles(tmp_path / "b" / "s2s_arena_battles.jsonl")
        assert [b.winner for b in battles] == ["tie"] * 3 and board["judging"]["inconsistent_pairs"] == 3
        assert json.loads(battles[0].detail)["verdicts"] == ["A", "A"]
        server.reset_counters()
        board = arena(server, runs, tmp_path / "b2", tmp_path / "judge.sqlite", swap_policy="rejudge")
        assert server.calls == 2 * 3  # a second sample of each order; the first comes from the cache
        assert board["judging"]["rejudged_pairs"] == 3 and board["judging"]["inconsistent_pairs"] == 3


def test_unparseable_and_failed_verdicts_leave_battles_unjudged_and_listed(three_runs, tmp_path):
    def responder(body, index):
        return "I cannot decide." if "tt/1.wav" in last_user_text(body) else prefers_good(body, index)

    runs = {k: three_runs[k] for k in ("good", "fine")}
    with FakeOpenAI(responder=responder) as server:
        board = arena(server, runs, tmp_path / "b", tmp_path / "judge.sqlite")
    unjudged = board["judging"]["unjudged"]
    assert [u["input_id"] for u in unjudged] == ["tt/1.wav"] and "no [[A]] or [[B]]" in unjudged[0]["reason"]
    assert board["judging"]["judged"] == 2
    assert prompts.verdict("Reply B is better.", lenient=True) == "B" and prompts.verdict("Reply B is better.") is None
    assert prompts.verdict("A: the first") is None and prompts.verdict("A: the first", lenient=True) == "A"
    assert prompts.verdict("[[A]] ... on reflection [[B]]") == "B"


def test_human_battles_are_imported_and_problems_reported(tmp_path):
    log = tmp_path / "human.json"
    log.write_text(json.dumps([
        {"model_a": "gpt4o", "model_b": "cascade", "winner": "model_a", "domain": "medical"},
        {"model_a": "cascade", "model_b": "mini-omni", "winner": "A"},
        {"model_a": "cascade", "winner": "A"},
    ]))
    board = run_arena([], tmp_path / "out", human=[log], human_only=True, bootstrap=50, acoustics=False)
    assert {row["model"] for row in board["models"]} == {"gpt4o", "cascade", "mini-omni"}
    assert board["judging"]["human"] == 2 and len(board["judging"]["human_problems"]) == 1
    assert "record 2" in board["judging"]["human_problems"][0]
    with pytest.raises(ArenaError, match="two runs"):
        run_arena([], tmp_path / "none", acoustics=False)


def test_two_runs_with_one_name_are_refused(three_runs, tmp_path):
    with pytest.raises(ArenaError, match="both called good"):
        run_arena([f"good={three_runs['good']}", f"good={three_runs['fine']}"], tmp_path / "o", acoustics=False)


def test_acoustics_join_the_leaderboard(three_runs, tmp_path):
    runs = {k: three_runs[k] for k in ("good", "fine")}
    with FakeOpenAI(responder=prefers_good) as server:
        judge = {"model": "judge-x", "base_url": server.base_url}
        board = run_arena([f"{n}={f}" for n, f in runs.items()], tmp_path / "b", judge=judge,
                          judge_cache=str(tmp_path / "c.sqlite"), bootstrap=50)
    figures = board["acoustics"]["good"]
    assert figures["with_audio"] == 3 and figures["asr"]["wer"] == 0.0
    assert np.isclose(figures["duration"]["mean"], 1.1)
    assert "## Spoken answers" in (tmp_path / "b" / "s2s_arena_leaderboard.md").read_text()


# -- end to end: two offline speech-out cascades, the real inputs, the in-process SmolLM2 judge ----

def cascade_run(folder: Path, **model_args) -> Path:
    """One lm_eval run as the CLI makes it: samples and spoken answers under ``folder``."""
    import lm_eval
    from lm_eval.loggers import EvaluationTracker
    from lm_eval.tasks import TaskManager

    from lm_eval_speech.models.cascade import CascadeLM

    from conftest import TASKS_DIR

    tracker = EvaluationTracker(output_path=str(folder))
    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False,
                          metadata={"data_dir": str(SAMPLES), "arena_tasks": ["tongue_twister"]})
    results = lm_eval.simple_evaluate(
        model=CascadeLM(device="cpu", batch_size=2, **model_args), tasks=["s2s_arena_entertainment"], task_manager=manager,
        limit=2, gen_kwargs={"max_gen_toks": 24}, bootstrap_iters=0, log_samples=True, evaluation_tracker=tracker,
    )
    samples = results.pop("samples")
    tracker.save_results_aggregated(results=results, samples=samples)
    for task, task_samples in samples.items():
        tracker.save_results_samples(task_name=task, samples=task_samples)
    assert results["results"]["s2s_arena_entertainment"]["spoken_items,none"] == 2
    return folder


@pytest.mark.slow
@needs_samples
def test_an_arena_between_two_offline_cascades_judged_by_smollm2(tmp_path):
    pytest.importorskip("piper")
    plain = cascade_run(tmp_path / "plain")
    brief = cascade_run(tmp_path / "brief", system_prompt="Reply in one short sentence.", tts_length_scale=0.8)
    run = read_run(brief, "brief")
    assert len(run.answers) == 2
    for answer in run.answers.values():
        assert Path(answer.speech["path"]).is_file() and answer.speech["path"].startswith(str(brief / "speech"))
        assert answer.speech["sampling_rate"] == 22050 and answer.speech["duration"] > 0.3
        assert isinstance(answer.speech["transcript"], str)
    # the spoken-answer quality metrics, on by default, computed when lm-eval aggregated
    [results_file] = brief.rglob("results_*.json")
    results = json.loads(results_file.read_text())
    figures = results["results"]["s2s_arena_entertainment"]
    quality = results["configs"]["s2s_arena_entertainment"]["metadata"]["lm_eval_speech"]["speech_quality"]
    assert quality["enabled"] is True and quality["dnsmos"]["spoken"] == 2
    assert figures["dnsmos_refused_items,none"] == quality["dnsmos"]["refused"]
    if quality["dnsmos"]["scored"]:
        assert 1.0 <= figures["dnsmos_ovrl,none"] <= 5.0
    if quality["speaker"]["scored"] == 2:
        assert 0.5 < figures["speaker_consistency_min,none"] <= figures["speaker_consistency,none"] <= 1.0
    assert 0.0 <= figures["asr_wer,none"] and quality["asr_wer"]["items"] == 2
    judge = {"backend": "transformers", "model": "bundled:smollm2", "max_tokens": 16}
    board = run_arena([f"plain={plain}", f"brief={brief}"], tmp_path / "board", judge=judge, lenient=True,
                      judge_cache=str(tmp_path / "judge.sqlite"), bootstrap=50)
    info = board["judging"]
    assert info["judged"] + len(info["unjudged"]) == 2 and info["accounting"]["bundled:smollm2"]["calls"] == 4
    assert {row["model"] for row in board["models"]} == {"plain", "brief"}
    assert board["acoustics"]["plain"]["with_audio"] == 2
    assert (tmp_path / "board" / "s2s_arena_leaderboard.md").is_file()
    again = run_arena([f"plain={plain}", f"brief={brief}"], tmp_path / "board2", judge=judge, lenient=True,
                      judge_cache=str(tmp_path / "judge.sqlite"), bootstrap=50, acoustics=False)
    assert again["judging"]["accounting"]["bundled:smollm2"]["calls"] == 0


def test_the_audio_judge_hears_request_and_both_replies_for_paralinguistic_tasks(tmp_path):
    request_wav = _write_clip(tmp_path / "inputs" / "request.wav", seconds=0.7, rate=22050)
    runs = {}
    for name, frequency in (("x", 300.0), ("y", 500.0)):
        folder = write_run(tmp_path / name, {"tt/0.wav": f"{name} answer"})
        samples = next(folder.rglob("samples_*.jsonl"))
        sample = json.loads(samples.read_text())
        sample["doc"]["audio_file"] = str(request_wav)
        _write_clip(Path(sample["speech_output"][0]["path"]), seconds=0.4, frequency=frequency)
        samples.write_text(json.dumps(sample) + "\n")
        runs[name] = folder
    speech_run = write_run(tmp_path / "z", {"tt/0.wav": "z answer"}, task="illness", domain="medical")

    def responder(body, index):
        parts = body["messages"][-1]["content"]
        return "[[B]]" if isinstance(parts, list) else "[[A]]"

    def judges(server):
        return {"judge": {"model": "text-judge", "base_url": server.base_url},
                "audio_judge": {"model": "gpt-4o-audio-preview", "base_url": server.base_url, "temperature": 0.0}}

    def rank(server, named: dict, out: str):
        return run_arena([f"{n}={f}" for n, f in named.items()], tmp_path / out, judge_cache=str(tmp_path / "c.sqlite"),
                         bootstrap=20, acoustics=False, **judges(server))

    with FakeOpenAI(responder=responder) as server:
        board = rank(server, runs, "b")
        bodies = [r["body"] for r in server.requests]
    assert {b["model"] for b in bodies} == {"gpt-4o-audio-preview"}  # tongue twisters are paralinguistic
    parts = bodies[0]["messages"][-1]["content"]
    audio = [p for p in parts if p["type"] == "input_audio"]
    assert len(audio) == 3 and all(p["input_audio"]["format"] == "wav" for p in audio)
    heard = [sf.read(io.BytesIO(base64.b64decode(p["input_audio"]["data"]))) for p in audio]
    assert [round(len(a) / rate, 2) for a, rate in heard] == [0.7, 0.4, 0.4] and heard[0][1] == 16000
    assert board["judging"]["judges"] == {"gpt-4o-audio-preview": 1}
    assert read_battles(tmp_path / "b" / "s2s_arena_battles.jsonl")[0].winner == "tie"  # "[[B]]" in both orders
    # a medical battle goes to the text judge; a missing input clip leaves an audio battle unjudged
    runs_text = {"z": speech_run, "w": write_run(tmp_path / "w", {"tt/0.wav": "w answer"}, task="illness", domain="medical")}
    with FakeOpenAI(responder=responder) as server:
        rank(server, runs_text, "b2")
        assert {r["body"]["model"] for r in server.requests} == {"text-judge"}
    missing = {"x": runs["x"], "m": write_run(tmp_path / "m", {"tt/0.wav": "m answer"})}
    unjudged = "no battle could be judged .1 unjudged: tt/0.wav m vs x: cannot build"
    with FakeOpenAI(responder=responder) as server, pytest.raises(ArenaError, match=unjudged):
        rank(server, missing, "b3")
