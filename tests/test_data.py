"""The shared data-location mechanism (lm_eval_speech.data) on local folders."""

from __future__ import annotations

import pytest

from lm_eval_speech.data import BenchmarkFiles, DataError, HubSource, benchmark_of, flag, option, read_jsonl_lines
from lm_eval_speech.options import OptionError

HUB = HubSource("someone/bench")
TASK = "speechinstruct_close_en_standard"


def make_tree(root, files):
    for name in files:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    return root


def test_item_paths_in_every_published_form(tmp_path):
    root = make_tree(tmp_path / "d", ["sub/a.wav", "sub/audio/b.wav", "c.wav", "sub/en/x/unique.wav", "sub/en/std/1.wav"])
    files = BenchmarkFiles({"data_dir": str(root)}, HUB, TASK)
    values = [
        "sub/a.wav",  # relative to the root
        "audio/b.wav",  # relative to the listing file's folder
        str(root / "c.wav"),  # absolute, on this machine
        "/home/author/SIB/sub/en/std/1.wav",  # absolute, from the authors' machine: its longest tail here
        "C:\\data\\SIB\\sub\\audio\\b.wav",  # a Windows path
        "unique.wav",  # a bare file name, found once under the root
        "./sub/../sub/a.wav",
    ]
    found = files.resolve_item_files(values, listed_in="sub/list.jsonl", items=[f"i{n}" for n in range(len(values))])
    assert found == [
        root / "sub/a.wav", root / "sub/audio/b.wav", root / "c.wav", root / "sub/en/std/1.wav", root / "sub/audio/b.wav",
        root / "sub/en/x/unique.wav", root / "sub/a.wav",
    ]


def test_every_missing_or_ambiguous_item_file_is_reported_with_its_item(tmp_path):
    root = make_tree(tmp_path / "d", ["sub/a.wav", "en/1.wav", "cn/1.wav"])
    files = BenchmarkFiles({"data_dir": str(root)}, HUB, TASK)
    with pytest.raises(DataError) as err:
        files.resolve_item_files(
            ["x.wav", "sub/a.wav", "/elsewhere/y.wav", "1.wav"], listed_in="sub/list.jsonl", items=["item 1", "item 2", "item 3", "item 4"]
        )
    message = str(err.value)
    assert f"3 file(s) named in sub/list.jsonl cannot be found under {root}:" in message
    assert "item 1: 'x.wav' not found (tried it relative to the root, to sub/" in message
    assert "item 3: '/elsewhere/y.wav' not found" in message
    assert "item 4: '1.wav' is ambiguous: cn/1.wav and en/1.wav both match" in message
    assert "item 2" not in message


def test_list_files_under_a_folder_any_nesting(tmp_path):
    root = make_tree(tmp_path / "d", ["closed-ended/a.jsonl", "closed-ended/en/std/b.jsonl", "open-ended/c.jsonl"])
    files = BenchmarkFiles({"data_dir": str(root)}, HUB, TASK)
    assert files.list_files("closed-ended") == ["closed-ended/a.jsonl", "closed-ended/en/std/b.jsonl"]


def test_missing_listing_file_names_the_expected_layout(tmp_path):
    files = BenchmarkFiles({"data_dir": str(tmp_path)}, HUB, TASK)
    with pytest.raises(DataError, match="expected closed-ended/x.jsonl under"):
        files.file("closed-ended/x.jsonl")


def test_describe_local(tmp_path):
    assert BenchmarkFiles({"data_dir": str(tmp_path)}, HUB, TASK).describe() == {"source": "local", "data_dir": str(tmp_path.resolve())}


def test_hub_source_without_network_points_to_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    files = BenchmarkFiles({}, HubSource("nobody/not-cached"), TASK)
    assert not files.is_local
    with pytest.raises(DataError, match="cannot read hub repo nobody/not-cached .* --metadata '\\{\"data_dir\": \"PATH\"\\}'"):
        files.file("a.jsonl")


def test_read_jsonl_lines_names_bad_lines(tmp_path):
    path = tmp_path / "f.jsonl"
    path.write_text('{"a": 1}\n\n["x"]\n', encoding="utf-8")
    with pytest.raises(DataError, match="f.jsonl line 3: expected a JSON object, got list"):
        read_jsonl_lines(path)
    path.write_text('{"a": 1}\n{"a": \n', encoding="utf-8")
    with pytest.raises(DataError, match="line 2: not valid JSON"):
        read_jsonl_lines(path)
    path.write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match="no items"):
        read_jsonl_lines(path)
    path.write_text('[{"a": 1}]\n', encoding="utf-8")  # SIB's readers accept a one-item list per line
    assert read_jsonl_lines(path) == [(1, {"a": 1})]


def test_line_numbers_count_blank_lines(tmp_path):
    path = tmp_path / "f.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n', encoding="utf-8")
    assert read_jsonl_lines(path) == [(1, {"a": 1}), (3, {"a": 2})]


@pytest.mark.parametrize("value, expected", [(True, True), ("false", False), ("1", True), (0, False)])
def test_flag(value, expected):
    assert flag({"k": value}, "k", not expected, "jasco") is expected
    assert flag({"k": {"jasco": value}}, "k", not expected, "jasco") is expected


@pytest.mark.parametrize("value", ["maybe", "", 2, [True]])
def test_flag_rejects_anything_but_a_boolean(value):
    # strict: a typo must not read as false
    with pytest.raises(OptionError, match="--metadata k=.*expected true or false"):
        flag({"k": value}, "k", True, "jasco")


def test_one_metadata_value_or_a_mapping_by_benchmark():
    metadata = {"data_dir": {"speechinstruct": "/sib", "jasco": "/jasco"}, "judge": {"model": "m"}, "revision": "abc"}
    assert option(metadata, "data_dir", "speechinstruct") == "/sib"
    assert option(metadata, "data_dir", "jasco") == "/jasco"
    assert option(metadata, "data_dir", "s2s_arena") is None  # missing: the benchmark's default (the hub)
    assert option(metadata, "judge", "jasco") == {"model": "m"}  # a settings dict, not a mapping by benchmark
    assert option(metadata, "revision", "s2s_arena") == "abc"
    assert option({}, "x", "jasco", 5) == 5
    with pytest.raises(DataError, match="mixes benchmark names \\['jasco'\\] with other keys \\['model'\\]"):
        option({"judge": {"jasco": {}, "model": "m"}}, "judge", "jasco")


def test_every_task_belongs_to_a_benchmark():
    assert benchmark_of("speechinstruct_close_en") == "speechinstruct"
    assert benchmark_of("s2s_arena_medical") == "s2s_arena" and benchmark_of("jasco") == "jasco"
    with pytest.raises(DataError, match="none of this project's benchmarks"):
        benchmark_of("ifeval")
