"""NLTK's punkt_tab is installed at set-up and never downloaded at evaluation time."""

from __future__ import annotations

import nltk
import pytest

from lm_eval_speech import nltk_data

from conftest import SHARED


def test_missing_model_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    with pytest.raises(RuntimeError, match="lm-eval-speech setup"):
        nltk_data.require_punkt()


@pytest.mark.skipif(not (SHARED / "data" / "nltk_data").is_dir(), reason="no local nltk_data copy beside the project")
def test_install_from_a_local_copy(monkeypatch, tmp_path):
    root = nltk_data.install_punkt(source=SHARED / "data" / "nltk_data", target=tmp_path / "nltk")
    assert (root / "tokenizers" / "punkt_tab" / "english").is_dir()
    monkeypatch.setattr(nltk.data, "path", [str(root)])
    assert nltk_data.punkt_available()


def test_install_refuses_a_folder_without_the_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no punkt_tab model"):
        nltk_data.install_punkt(source=tmp_path, target=tmp_path / "out")
