"""Generation settings (lm_eval_speech/calls/params.py): read as lm-eval reads gen_kwargs, translated per backend."""

from __future__ import annotations

import pytest
from lm_eval.models.utils import normalize_gen_kwargs

from lm_eval_speech.calls import GenerationParams
from lm_eval_speech.options import OptionError

DEFAULT_BUDGET = 256


@pytest.mark.parametrize("gen_kwargs", [
    {},
    {"until": "\n\n"},
    {"until": ["Question:", "</s>"], "max_gen_toks": 32},
    {"temperature": 0.7},
    {"temperature": 0},
    {"temperature": 0.7, "do_sample": False},
    {"do_sample": True},
    {"do_sample": True, "temperature": 0.6, "top_p": 0.9},
    {"do_sample": False},
    {"max_tokens": 5, "max_new_tokens": 6, "max_gen_toks": 7, "max_completion_tokens": 8},
    {"max_tokens": 5, "max_completion_tokens": 8},
    {"max_completion_tokens": 8},
    {"max_gen_toks": None, "max_new_tokens": 9},
])
def test_gen_kwargs_are_read_as_lm_eval_normalises_them(gen_kwargs):
    normalised = normalize_gen_kwargs(dict(gen_kwargs), DEFAULT_BUDGET)
    params = GenerationParams.from_gen_kwargs(gen_kwargs, default_max_tokens=DEFAULT_BUDGET)
    assert list(params.stop) == normalised["until"]
    assert params.max_tokens == normalised["max_gen_toks"]
    assert params.greedy == (not normalised["do_sample"])
    if normalised["do_sample"]:
        assert params.temperature == normalised.get("temperature")  # None: lm-eval leaves the backend's default
        assert params.top_p == normalised.get("top_p")


def test_gen_kwargs_do_sample_is_a_strict_boolean():
    assert GenerationParams.from_gen_kwargs({"do_sample": "false", "temperature": 0.8}, default_max_tokens=8).greedy
    assert GenerationParams.from_gen_kwargs({"do_sample": "TRUE", "temperature": 0.8}, default_max_tokens=8).temperature == 0.8
    with pytest.raises(OptionError, match=r"gen_kwargs do_sample='sometimes': expected true or false"):
        GenerationParams.from_gen_kwargs({"do_sample": "sometimes"}, default_max_tokens=8)


def test_unknown_gen_kwargs_are_refused_listing_the_accepted_ones():
    with pytest.raises(OptionError) as raised:
        GenerationParams.from_gen_kwargs({"temprature": 0.5, "until": []}, default_max_tokens=8, where="sib gen_kwargs")
    message = str(raised.value)
    assert message.startswith("sib gen_kwargs: unknown temprature; accepted: ")
    accepted = message.split("accepted: ")[1].split(", ")
    assert accepted == sorted(accepted)
    assert {"until", "do_sample", "max_gen_toks", "max_new_tokens", "max_tokens", "max_completion_tokens", "temperature",
            "top_p", "top_k", "seed", "n", "repetition_penalty", "min_tokens"} <= set(accepted)
    assert "stop" not in accepted  # lm-eval's name for it is until


def test_settings_are_checked_when_made():
    with pytest.raises(OptionError, match="n=0: must be a positive integer"):
        GenerationParams(n=0)
    with pytest.raises(OptionError, match="max_tokens=0: must be a positive integer"):
        GenerationParams(max_tokens=0)
    assert GenerationParams(stop="END").stop == ("END",) and GenerationParams(stop=["", "a"]).stop == ("a",)


# -- per backend -----------------------------------------------------------------------------------
EVERYTHING_GENERATE_TAKES = dict(max_tokens=16, temperature=0.7, top_p=0.9, top_k=20, seed=1, stop=("x",), n=3,
                                 repetition_penalty=1.1, min_tokens=2)


def test_transformers_generate_arguments():
    assert GenerationParams(**EVERYTHING_GENERATE_TAKES).to_transformers() == {
        "num_return_sequences": 3, "max_new_tokens": 16, "do_sample": True, "temperature": 0.7, "top_p": 0.9, "top_k": 20,
        "repetition_penalty": 1.1, "min_new_tokens": 2}  # seed: the caller seeds torch; stop: the caller cuts
    # greedy: no sampling settings reach generate (it would warn that they are ignored)
    assert GenerationParams(max_tokens=8, temperature=0, top_p=0.9).to_transformers() == {
        "num_return_sequences": 1, "max_new_tokens": 8, "do_sample": False}
    # no temperature: OpenAI's default, 1, as every backend
    assert GenerationParams().to_transformers() == {"num_return_sequences": 1, "do_sample": True, "temperature": 1.0}


def test_transformers_refuse_what_generate_cannot_do():
    with pytest.raises(OptionError) as raised:
        GenerationParams(frequency_penalty=0.5, presence_penalty=0.1).to_transformers()
    assert str(raised.value) == ("transformers generate: cannot use frequency_penalty, presence_penalty; it accepts max_tokens, "
                                 "temperature, top_p, top_k, seed, stop, n, repetition_penalty, min_tokens")
    # penalties of 0 change nothing: SIB's default judge (which sets them) runs in-process too
    assert GenerationParams(frequency_penalty=0, presence_penalty=0.0).to_transformers()["do_sample"] is True


def test_vllm_takes_every_setting():
    params = GenerationParams(**EVERYTHING_GENERATE_TAKES, frequency_penalty=0.1, presence_penalty=0.2)
    assert params.to_vllm() == {**EVERYTHING_GENERATE_TAKES, "stop": ["x"], "frequency_penalty": 0.1, "presence_penalty": 0.2}
    assert GenerationParams(max_tokens=4).to_vllm() == {"max_tokens": 4, "n": 1, "temperature": 1.0}
    assert GenerationParams(temperature=0).to_vllm() == {"n": 1, "temperature": 0.0}


def test_openai_body_sends_only_what_is_set():
    params = GenerationParams(max_tokens=64, temperature=0.5, seed=7, stop=("a", "b", "c", "d", "e"), n=2,
                              frequency_penalty=0.25)
    assert params.to_openai() == {"max_tokens": 64, "temperature": 0.5, "seed": 7, "stop": ["a", "b", "c", "d"], "n": 2,
                                  "frequency_penalty": 0.25}  # the API takes four stop strings
    assert GenerationParams().to_openai() == {"n": 1}  # the rest is the endpoint's default
    # neutral values of what the API lacks are accepted, and not sent (OpenAI answers 400 to unknown fields)
    assert GenerationParams(repetition_penalty=1.0, min_tokens=0).to_openai() == {"n": 1}


def test_openai_refuses_what_the_api_cannot_express():
    with pytest.raises(OptionError) as raised:
        GenerationParams(top_k=40, min_tokens=3).to_openai()
    assert str(raised.value) == ("the OpenAI chat API: cannot use top_k, min_tokens; it accepts max_tokens, temperature, top_p, "
                                 "seed, stop, n, frequency_penalty, presence_penalty")
