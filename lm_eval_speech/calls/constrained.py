"""Constrained decoding for local transformers judges: the answer is JSON that matches a schema.

Small local judges often miss the answer format their parser reads. Here llguidance (the grammar
engine of vLLM and llama.cpp) turns a JSON schema into a grammar and, at every step, masks the
logits so that only tokens keeping the output a valid prefix stay possible, and only EOS once
the JSON is complete:

    model.generate(**inputs, **constrained_generate_kwargs(tokenizer, schema, rows))

Works with greedy search and sampling (``num_return_sequences`` included); not with beam search,
which reorders rows between steps.
"""

from __future__ import annotations

import functools
import json

import llguidance
import llguidance.hf
import llguidance.numpy
import torch
import transformers

# One fixed layout (json.dumps's separators, no other whitespace): with flexible whitespace a
# weak or random model can spend its whole token budget on spaces and newlines.
_JSON_LAYOUT = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
_BIT_POSITIONS = torch.arange(32, dtype=torch.int32)


@functools.lru_cache(maxsize=8)
def _ll_tokenizer(tokenizer) -> llguidance.LLTokenizer:
    """llguidance's view of the vocabulary: about a second to build, so once per tokenizer."""
    if not isinstance(tokenizer, transformers.PreTrainedTokenizerFast):
        raise ValueError(f"constrained decoding needs a fast (Rust tokenizers) tokenizer, not {type(tokenizer).__name__}")
    return llguidance.hf.from_tokenizer(tokenizer)


@functools.lru_cache(maxsize=64)
def _grammar(schema_json: str, ll_tokenizer: llguidance.LLTokenizer) -> str:
    try:
        grammar = llguidance.LLMatcher.grammar_from_json_schema(schema_json, overrides=_JSON_LAYOUT)
    except ValueError as error:  # not a JSON object at all
        raise ValueError(f"llguidance rejects the JSON schema {schema_json}: {error}") from None
    # grammar_from_json_schema does not check the schema: a matcher built from it enters an error state
    matcher = llguidance.LLMatcher(ll_tokenizer, grammar)
    if matcher.is_error():
        raise ValueError(f"llguidance rejects the JSON schema {schema_json}: {matcher.get_error()}")
    return grammar


@functools.lru_cache(maxsize=1)
def _executor() -> llguidance.LLExecutor:
    return llguidance.LLExecutor()


class JsonSchemaLogitsProcessor(transformers.LogitsProcessor):
    """Masks the logits of each of ``rows`` generated rows (batch size x num_return_sequences) so
    that every row's continuation is JSON matching ``schema``, then EOS.

    It holds each row's parse state: build a fresh one for every generate() call. A complete
    answer allows only the tokenizer's EOS, so that must be one of generate()'s EOS tokens.
    """

    def __init__(self, tokenizer, schema: dict, rows: int):
        self._ll_tokenizer = _ll_tokenizer(tokenizer)
        # not sort_keys: properties are generated in the schema's order (a judge's reason before its verdict)
        grammar = _grammar(json.dumps(schema), self._ll_tokenizer)
        self._matchers = [llguidance.LLMatcher(self._ll_tokenizer, grammar) for _ in range(rows)]
        self._bitmask = llguidance.numpy.allocate_token_bitmask(rows, self._ll_tokenizer.vocab_size)
        self._finished = [False] * rows
        self._started = False  # the first call sees only the prompts

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if input_ids.shape[0] != len(self._matchers):
            raise ValueError(
                f"JsonSchemaLogitsProcessor was built for {len(self._matchers)} rows but generate() runs {input_ids.shape[0]}:"
                " pass rows = batch size x num_return_sequences"
            )
        if self._started:
            self._consume(input_ids[:, -1].tolist())
        self._started = True

        unfinished = [(matcher, row) for row, matcher in enumerate(self._matchers) if not self._finished[row]]
        llguidance.numpy.fill_next_token_bitmask_par(_executor(), unfinished, self._bitmask)
        self._bitmask[self._finished] = -1  # finished rows are padded by generate(): leave them as they are
        return scores.masked_fill(~self._allowed(scores), float("-inf"))

    def _consume(self, tokens: list[int]) -> None:
        """Advance each unfinished row by the token generated at the previous step. Prompts never
        reach the matchers: only the right edge moves, so left padding does not matter."""
        for row, (matcher, token) in enumerate(zip(self._matchers, tokens)):
            if self._finished[row]:
                continue
            if not matcher.consume_token(token):  # another logits processor forced a token the grammar forbids
                raise RuntimeError(f"constrained row {row} left its JSON schema at token {token}: {matcher.get_error()}")
            self._finished[row] = token == self._ll_tokenizer.eos_token

    def _allowed(self, scores: torch.Tensor) -> torch.Tensor:
        """The bitmask (bit i of word j: token 32j + i) as booleans the shape of ``scores``; the
        model's vocabulary may be padded past the tokenizer's, and those extra ids stay banned."""
        bitmask = torch.from_numpy(self._bitmask).to(scores.device)
        bits = (bitmask.unsqueeze(-1) >> _BIT_POSITIONS.to(scores.device)) & 1
        bits = bits.flatten(1).bool()
        allowed = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
        width = min(bits.shape[1], scores.shape[1])
        allowed[:, :width] = bits[:, :width]
        return allowed


def constrained_generate_kwargs(tokenizer, schema: dict, rows: int) -> dict:
    """Keyword arguments for ``model.generate`` that force each of ``rows`` outputs (batch size x
    num_return_sequences) to be JSON matching ``schema``. Raises ValueError for a schema llguidance
    rejects or a tokenizer that is not a fast one."""
    return {"logits_processor": transformers.LogitsProcessorList([JsonSchemaLogitsProcessor(tokenizer, schema, rows)])}
