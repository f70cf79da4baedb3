"""How every setting is read (lm_eval_speech/options.py): one strict boolean, one rule for unknown names."""

from __future__ import annotations

import pytest

from lm_eval_speech.options import OptionError, as_bool, check_known


@pytest.mark.parametrize("value", [True, 1, "1", "true", "True", " YES ", "on", "On"])
def test_true_in_every_spelling(value):
    assert as_bool(value, "x") is True


@pytest.mark.parametrize("value", [False, 0, "0", "false", "FALSE", "no", " off "])
def test_false_in_every_spelling(value):
    assert as_bool(value, "x") is False


@pytest.mark.parametrize("value", ["", "none", "maybe", "2", 2, -1, 0.5, None, [], "tru"])
def test_anything_else_is_an_error_naming_the_setting(value):
    with pytest.raises(OptionError) as raised:
        as_bool(value, "--metadata load_audio")
    assert str(raised.value) == f"--metadata load_audio={value!r}: expected true or false"


def test_unknown_names_are_refused_listing_the_accepted_ones():
    check_known({"seed": 1, "n": 2}, ("n", "seed", "temperature"), "judge")  # all known: nothing to say
    check_known([], (), "judge")
    with pytest.raises(OptionError) as raised:
        check_known({"temprature": 0.5, "n": 2, "nn": 3}, ["temperature", "n", "seed", "n"], "speechinstruct judge")
    assert str(raised.value) == "speechinstruct judge: unknown nn, temprature; accepted: n, seed, temperature"
    assert isinstance(raised.value, ValueError)  # callers that catch ValueError still see it
