"""The shared data-location mechanism (lm_eval_speech.data) on local folders."""

from __future__ import annotations

import pytest

from lm_eval_speech.data import BenchmarkFiles, DataError, HubSource, flag, read_jsonl, read_jsonl_lines

HUB = HubSource("someone/bench")


def make_tree(root, files):
    for name in files:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    return root


def test_item_paths_relative_to_root_to_listing_file_or_absolute(tmp_path):
    root = make_tree(tmp_path / "d", ["sub/a.wav", "sub/audio/b.wav", "c.wav"])
    files = BenchmarkFiles({"data_dir": str(root)}, HUB, "bench")
    found = files.resolve_item_files(
        ["sub/a.wav", "audio/b.wav", str(root / "c.wav")], listed_in="sub/list.jsonl", items=["i1", "i2", "i3"]
    )
    assert found == [root / "sub/a.wav", root / "sub/audio/b.wav", root / "c.wav"]


def test_every_missing_item_file_is_reported_with_its_item(tmp_path):
    root = make_tree(tmp_path / "d", ["sub/a.wav"])
    files = BenchmarkFiles({"data_dir": str(root)}, HUB, "bench")
    with pytest.raises(DataError) as err:
        files.resolve_item_files(["x.wav", "sub/a.wav", "y.wav"], listed_in="sub/list.jsonl", items=["item 1", "item 2", "item 3"])
    message = str(err.value)
    assert "2 file(s) named in sub/list.jsonl are missing" in message
    assert f"item 1: 'x.wav' not found (tried {root}/x.wav, {root}/sub/x.wav)" in message
    assert "item 3" in message and "item 2" not in message


def test_missing_listing_file_names_the_expected_layout(tmp_path):
    files = BenchmarkFiles({"data_dir": str(tmp_path)}, HUB, "bench")
    with pytest.raises(DataError, match="expected closed-ended/x.jsonl under"):
        files.file("closed-ended/x.jsonl")


def test_describe_local(tmp_path):
    assert BenchmarkFiles({"data_dir": str(tmp_path)}, HUB, "b").describe() == {"source": "local", "data_dir": str(tmp_path.resolve())}


def test_hub_source_without_network_points_to_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    files = BenchmarkFiles({}, HubSource("nobody/not-cached"), "bench")
    assert not files.is_local
    with pytest.raises(DataError, match="cannot read hub repo nobody/not-cached .* --metadata '\\{\"data_dir\": \"PATH\"\\}'"):
        files.file("a.jsonl")


def test_read_jsonl_names_bad_lines(tmp_path):
    path = tmp_path / "f.jsonl"
    path.write_text('{"a": 1}\n\n["x"]\n', encoding="utf-8")
    with pytest.raises(DataError, match="f.jsonl line 3: expected a JSON object, got list"):
        read_jsonl(path)
    path.write_text('{"a": 1}\n{"a": \n', encoding="utf-8")
    with pytest.raises(DataError, match="line 2: not valid JSON"):
        read_jsonl(path)
    path.write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match="no items"):
        read_jsonl(path)
    path.write_text('[{"a": 1}]\n', encoding="utf-8")  # SIB's readers accept a one-item list per line
    assert read_jsonl(path) == [{"a": 1}]


def test_line_numbers_count_blank_lines(tmp_path):
    path = tmp_path / "f.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2}\n', encoding="utf-8")
    assert read_jsonl_lines(path) == [(1, {"a": 1}), (3, {"a": 2})]


@pytest.mark.parametrize("value, expected", [(True, True), ("false", False), ("1", True), (0, False)])
def test_flag(value, expected):
    assert flag({"k": value}, "k", not expected) is expected


def test_flag_rejects_nonsense():
    with pytest.raises(DataError, match="k='maybe'"):
        flag({"k": "maybe"}, "k", True)
