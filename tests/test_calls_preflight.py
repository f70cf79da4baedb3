"""The endpoint check before any work (lm_eval_speech/calls/preflight.py), against a real local server or a closed port."""

from __future__ import annotations

import socket
import time

import pytest

from lm_eval_speech.calls import EndpointUnavailable, check_endpoint, config_from_settings
from lm_eval_speech.calls import preflight

from fake_openai import FakeOpenAI


@pytest.fixture(autouse=True)
def fresh_checks(monkeypatch):
    """Each test checks afresh: the process remembers endpoints it checked."""
    monkeypatch.setattr(preflight, "_CHECKED", set())
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "JUDGE_KEY"):
        monkeypatch.delenv(name, raising=False)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def config(base_url: str, model: str = "judge", **settings):
    return config_from_settings({"model": model, "base_url": base_url, **settings})


def test_a_closed_port_stops_the_run_at_once_and_says_refused():
    port = free_port()
    started = time.monotonic()
    with pytest.raises(EndpointUnavailable) as raised:
        check_endpoint(config(f"http://127.0.0.1:{port}/v1"), user="speechinstruct_open_en judge 'judge'")
    assert time.monotonic() - started < 5
    message = str(raised.value)
    assert message.startswith("speechinstruct_open_en judge 'judge': endpoint ")
    assert f"127.0.0.1:{port}" in message and "connection refused" in message and "Check base_url" in message
    assert "no answer within" not in message  # refused is not a timeout


def test_a_refused_key_names_the_variable_to_check(monkeypatch):
    monkeypatch.setenv("JUDGE_KEY", "sk-wrong")
    with FakeOpenAI(required_key="sk-right") as server:
        with pytest.raises(EndpointUnavailable, match=r"the key was refused \(401\)\. Check \$JUDGE_KEY") as raised:
            check_endpoint(config(server.base_url, api_key_env="JUDGE_KEY"), user="judge")
        assert "sk-wrong" not in str(raised.value)
        monkeypatch.setenv("JUDGE_KEY", "sk-right")
        check_endpoint(config(server.base_url, api_key_env="JUDGE_KEY"), user="judge")  # the right key passes
        assert (server.calls, server.probes) == (0, 0)


def test_an_unknown_model_is_named_with_what_the_endpoint_serves():
    with FakeOpenAI(model_ids=("judge", "other"), strict_models=True) as server:
        with pytest.raises(EndpointUnavailable) as raised:
            check_endpoint(config(server.base_url, model="gpt-4o-mini"), user="judge")
    message = str(raised.value)
    assert "model 'gpt-4o-mini'" in message and "unknown model; the endpoint serves judge, other" in message


def test_a_server_serving_any_name_passes_with_one_probe():
    # llama.cpp lists one model and answers to any name: the 1-token probe decides
    with FakeOpenAI(model_ids=("local.gguf",)) as server:
        check_endpoint(config(server.base_url, model="whatever"), user="judge")
        assert (server.probes, server.calls) == (1, 0)


def test_a_listed_model_needs_no_probe_and_a_second_check_sends_nothing():
    with FakeOpenAI(model_ids=("judge",), strict_models=True) as server:
        checked = config(server.base_url)
        check_endpoint(checked, user="judge")
        assert (server.probes, server.calls) == (0, 0)
    # the server is gone: a second check that sent anything would fail
    check_endpoint(checked, user="another judge")
    with pytest.raises(EndpointUnavailable, match="connection refused"):
        check_endpoint(config(checked.endpoint, model="another-model"), user="judge")  # another model is checked


def test_preflight_off_and_in_process_models_are_not_checked():
    port = free_port()
    check_endpoint(config(f"http://127.0.0.1:{port}/v1", preflight="false"), user="judge")
    check_endpoint(config_from_settings({"model": "bundled:smollm2", "backend": "transformers"}), user="judge")
