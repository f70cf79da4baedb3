"""Constrained decoding: a random LM answers in schema-valid JSON only with the logits processor."""

from __future__ import annotations

import json
import time

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("llguidance")

from lm_eval_speech.calls.constrained import JsonSchemaLogitsProcessor, constrained_generate_kwargs  # noqa: E402

YES_NO = {"enum": ["YES", "NO"]}
SCHEMAS = {
    "fixed_list": {"type": "array", "items": YES_NO, "minItems": 3, "maxItems": 3},
    "three_enums": {
        "type": "object",
        "properties": {"follow_after_adjust": YES_NO, "follow_before_adjust": YES_NO, "after_adjust_content_correct": YES_NO},
        "required": ["follow_after_adjust", "follow_before_adjust", "after_adjust_content_correct"],
        "additionalProperties": False,
    },
    "rating": {
        "type": "object",
        "properties": {
            "explanation": {"type": "string", "maxLength": 200},
            "rating": {"enum": [0, 1, 2]},
            "orientation": {"enum": ["Audio-Oriented", "Speech-Oriented", "Good", "Neither"]},
        },
        "required": ["explanation", "rating", "orientation"],
        "additionalProperties": False,
    },
    "winner": {
        "type": "object",
        "properties": {"reason": {"type": "string", "maxLength": 200}, "winner": {"enum": ["A", "B"]}},
        "required": ["reason", "winner"],
        "additionalProperties": False,
    },
}
PROMPTS = ["Is it?", "Judge the answer: the quick brown fox jumps over the lazy dog.", "Write a poem about the sea. Do not use any commas."]
RETURN_SEQUENCES = 2
MAX_NEW_TOKENS = 1200  # a random LM fills a 200-character string, and a character may take several byte tokens


def matches(schema: dict, value) -> bool:
    """The subset of JSON Schema used above (jsonschema is not a dependency)."""
    if "enum" in schema:  # type too: True == 1 in Python
        return any(value == option and type(value) is type(option) for option in schema["enum"])
    if schema["type"] == "string":
        return isinstance(value, str) and len(value) <= schema.get("maxLength", len(value))
    if schema["type"] == "array":
        return (
            isinstance(value, list) and schema["minItems"] <= len(value) <= schema["maxItems"]
            and all(matches(schema["items"], item) for item in value)
        )
    return (
        isinstance(value, dict) and set(schema["required"]) <= set(value) <= set(schema["properties"])
        and all(matches(schema["properties"][key], item) for key, item in value.items())
    )


def schema_valid(schema: dict, text: str) -> bool:
    try:
        return matches(schema, json.loads(text))
    except json.JSONDecodeError:
        return False


@pytest.fixture(scope="session")
def tokenizer(tiny_qwen2_audio):
    """A real (trained byte-level BPE) fast tokenizer, left padding as for any decoder-only batch."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(tiny_qwen2_audio, padding_side="left")
    assert isinstance(tokenizer, transformers.PreTrainedTokenizerFast)
    return tokenizer


def tiny_lm(tokenizer, vocab_size: int | None = None):
    torch.manual_seed(0)
    config = transformers.Qwen2Config(
        vocab_size=vocab_size or len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=2048, tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    return transformers.Qwen2ForCausalLM(config).eval()


@pytest.fixture(scope="session")
def model(tokenizer):
    return tiny_lm(tokenizer)


def generate(model, tokenizer, schema: dict | None, sequences: int = RETURN_SEQUENCES, **overrides) -> tuple[list[str], torch.Tensor]:
    """Three left-padded prompts x ``sequences`` sampled answers: (texts, new token ids)."""
    inputs = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    assert (inputs["attention_mask"][:, 0] == 0).any(), "the batch must be left padded"
    rows = len(PROMPTS) * sequences
    kwargs = {"do_sample": True, "num_return_sequences": sequences, "max_new_tokens": MAX_NEW_TOKENS, **overrides}
    if schema is not None:
        kwargs.update(constrained_generate_kwargs(tokenizer, schema, rows))
    torch.manual_seed(1)
    with torch.no_grad():
        output = model.generate(**inputs, **kwargs)
    new = output[:, inputs["input_ids"].shape[1]:]
    return tokenizer.batch_decode(new, skip_special_tokens=True), new


@pytest.mark.parametrize("name", SCHEMAS)
def test_every_sampled_row_is_schema_valid(model, tokenizer, name):
    texts, new = generate(model, tokenizer, SCHEMAS[name])
    assert len(texts) == len(PROMPTS) * RETURN_SEQUENCES
    for text in texts:
        assert schema_valid(SCHEMAS[name], text), text
        if "properties" in SCHEMAS[name]:  # in the schema's order: a judge reasons before its verdict
            assert list(json.loads(text)) == list(SCHEMAS[name]["properties"])
    # each row ended with EOS; a row that ended early was padded and its padding left as it was
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    for row in new.tolist():
        end = row.index(eos)
        assert all(token == pad for token in row[end + 1:])


@pytest.mark.parametrize("name", SCHEMAS)
def test_unconstrained_random_model_is_not_schema_valid(model, tokenizer, name):
    """The control: without the processor the same model and seed give no valid answer."""
    texts, _ = generate(model, tokenizer, None, max_new_tokens=60)
    assert not any(schema_valid(SCHEMAS[name], text) for text in texts)


def test_greedy(model, tokenizer):
    texts, _ = generate(model, tokenizer, SCHEMAS["winner"], sequences=1, do_sample=False)
    assert len(texts) == len(PROMPTS)
    assert all(schema_valid(SCHEMAS["winner"], text) for text in texts)


def test_model_vocabulary_padded_past_the_tokenizer(tokenizer):
    """Checkpoints often round the embedding up (Qwen2: 151936 rows for ~151650 tokens): the extra
    ids are never sampled."""
    padded = tiny_lm(tokenizer, vocab_size=len(tokenizer) + 77)
    texts, new = generate(padded, tokenizer, SCHEMAS["fixed_list"])
    assert int(new.max()) < len(tokenizer)
    assert all(schema_valid(SCHEMAS["fixed_list"], text) for text in texts)


@pytest.mark.parametrize(
    "schema, problem",
    [
        ({"type": "array", "items": YES_NO, "minItems": 3, "maxItems": 2}, "minItems"),
        ({"type": "yes-or-no"}, "yes-or-no"),
        ({"enum": []}, "Unsatisfiable"),
        ({"type": "object", "properties": {"winner": {"$ref": "#/definitions/missing"}}}, "missing"),
        (["YES", "NO"], "schema"),
    ],
)
def test_bad_schema_is_a_clear_error(tokenizer, schema, problem):
    with pytest.raises(ValueError, match=f"llguidance rejects the JSON schema.*{problem}"):
        constrained_generate_kwargs(tokenizer, schema, rows=1)


def test_slow_tokenizer_is_a_clear_error():
    with pytest.raises(ValueError, match="fast.*CanineTokenizer"):
        constrained_generate_kwargs(transformers.CanineTokenizer(), SCHEMAS["fixed_list"], rows=1)


def test_wrong_row_count_is_a_clear_error(model, tokenizer):
    inputs = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    with pytest.raises(ValueError, match="built for 3 rows but generate.. runs 6"):
        kwargs = constrained_generate_kwargs(tokenizer, SCHEMAS["winner"], rows=3)
        model.generate(**inputs, do_sample=True, num_return_sequences=2, max_new_tokens=4, **kwargs)


def test_timing_constrained_vs_unconstrained(model, tokenizer, capsys):
    """No assertion on time: prints what the mask costs per generated token on this machine."""
    started = time.perf_counter()
    JsonSchemaLogitsProcessor(tokenizer, {"type": "array", "items": {"type": "integer"}}, rows=1)  # a new schema: its grammar compiles
    setup = time.perf_counter() - started
    report = [f"\nconstrained decoding, tiny random LM, {len(PROMPTS)} prompts x {RETURN_SEQUENCES} sampled rows:"]
    report.append(f"  processor with a new schema (cached tokenizer): {setup * 1000:.1f} ms")
    for name in ("three_enums", "rating"):
        per_step = {}
        for label, schema in (("constrained", SCHEMAS[name]), ("unconstrained", None)):
            # the same number of steps both ways: unconstrained runs to max_new_tokens, rarely emitting EOS
            steps = MAX_NEW_TOKENS if schema else per_step["constrained"][1]
            started = time.perf_counter()
            _, new = generate(model, tokenizer, schema, max_new_tokens=steps)
            per_step[label] = (time.perf_counter() - started, new.shape[1])
        (constrained, steps), (unconstrained, _) = per_step["constrained"], per_step["unconstrained"]
        report.append(
            f"  {name}: {steps} steps, constrained {constrained:.2f} s ({constrained / steps * 1000:.2f} ms/step),"
            f" unconstrained {unconstrained:.2f} s ({unconstrained / steps * 1000:.2f} ms/step)"
        )
    with capsys.disabled():
        print("\n".join(report))


@pytest.mark.slow
def test_bundled_smollm2_judge_answers_in_schema():
    from lm_eval_speech.bundled import bundled_smollm2_gguf
    from lm_eval_speech.calls.local import load_text_lm

    lm = load_text_lm(bundled_smollm2_gguf())
    prompt = (
        "You are judging two answers to the question 'What is the capital of France?'.\n"
        "Answer A: The capital of France is Paris.\nAnswer B: France is a country in Europe.\n"
        'Reply with JSON: {"reason": "<one sentence>", "winner": "A" or "B"}.'
    )
    text = lm.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
    inputs = lm.tokenizer([text], return_tensors="pt")
    schema = SCHEMAS["winner"]
    with torch.no_grad():
        output = lm.model.generate(
            **inputs, do_sample=False, max_new_tokens=200, **constrained_generate_kwargs(lm.tokenizer, schema, rows=1)
        )
    answer = lm.tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    print(answer)
    assert schema_valid(schema, answer), answer
