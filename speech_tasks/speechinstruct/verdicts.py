"""Strict and loose verdicts of an item's instructions, and the range any upstream draw could give.

Upstream builds every checker afresh for the strict pass and again for the loose pass, so where an
argument is drawn the two passes draw independently (:func:`follows` takes each pass's values).
:func:`verdict_range` evaluates an instruction over the whole space of its draws: every count,
relation, letter and language; for a drawn word, every word of IFEval's list that the response
contains plus one that it does not (all absent words give the same verdict); for two drawn words
(``keywords``, ``forbidden_words``), whose check is the conjunction of one check per word, every
pair of those per-word outcomes.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from itertools import combinations_with_replacement

from lm_eval_speech.tasks.speechinstruct import arguments, checkers

# Checks that pass exactly when each of their words passes alone.
_CONJUNCTIVE = frozenset({"keywords:existence", "keywords:forbidden_words"})
_WORD_PATTERNS = tuple(re.compile(word, re.IGNORECASE) for word in arguments.WORD_LIST)


@dataclass(frozen=True)
class VerdictRange:
    """Lowest and highest verdict over every value upstream's draws could take, per pass."""

    strict: tuple[bool, bool]
    loose: tuple[bool, bool]


def follows(
    instruction_ids: list[str], plans: list[arguments.ArgumentPlan], draws: dict, prompt: str, response: str
) -> tuple[list[bool], list[bool]]:
    """Strict and loose verdicts, each pass's checkers built with that pass's drawn values."""
    strict = [
        checkers.strict_verdict(checkers.build_instruction(i, arguments.resolve(p, d), prompt), response)
        for i, p, d in zip(instruction_ids, plans, draws["strict"], strict=True)
    ]
    variants = checkers.loose_variants(response)
    loose = [
        checkers.loose_verdict(checkers.build_instruction(i, arguments.resolve(p, d), prompt), variants)
        for i, p, d in zip(instruction_ids, plans, draws["loose"], strict=True)
    ]
    return strict, loose


def verdict_range(item_plan: arguments.ArgumentPlan, prompt: str, response: str) -> VerdictRange:
    variants = checkers.loose_variants(response)
    strict, loose, candidates = set(), set(), None
    for drawn in arguments.outcomes(item_plan):
        words = [(name, space) for name, space in drawn.items() if isinstance(space, arguments.Space)]
        if words:
            [(name, space)] = words  # one word-sample argument per instruction at most
            candidates = candidates or _candidate_words(variants)
            outcomes = _word_outcomes(item_plan, drawn, name, space, prompt, variants, candidates)
        else:
            checker = checkers.build_instruction(item_plan.instruction_id, arguments.resolve(item_plan, drawn), prompt)
            outcomes = [(checkers.strict_verdict(checker, response), checkers.loose_verdict(checker, variants))]
        for s, lo in outcomes:
            strict.add(s)
            loose.add(lo)
        if len(strict) == 2 and len(loose) == 2:
            break
    return VerdictRange((min(strict), max(strict)), (min(loose), max(loose)))


def _candidate_words(variants: list[str]) -> tuple[list[str], int]:
    """The words of IFEval's list found in any variant (as a case-insensitive regex, or in its
    lower case), one word found in none (if any), and how many words are found in none."""
    lowered = [v.lower() for v in variants]
    present, absent = [], []
    for word, pattern in zip(arguments.WORD_LIST, _WORD_PATTERNS, strict=True):
        found = any(pattern.search(v) for v in variants) or any(word in v for v in lowered)
        (present if found else absent).append(word)
    return present + absent[:1], len(absent)


def _word_outcomes(item_plan, drawn, name, space, prompt, variants, found) -> list[tuple[bool, bool]]:
    response, (candidates, absent) = variants[0], found

    def checker_with(value):
        return checkers.build_instruction(item_plan.instruction_id, arguments.resolve(item_plan, {**drawn, name: value}), prompt)

    if space.words == 1:
        outcomes = []
        for word in candidates:
            checker = checker_with(word)
            outcomes.append((checkers.strict_verdict(checker, response), checkers.loose_verdict(checker, variants)))
        return outcomes
    if space.words != 2 or item_plan.instruction_id not in _CONJUNCTIVE:
        raise NotImplementedError(f"{item_plan.instruction_id}: bounds for {space.words} drawn words")
    # Per word: its strict verdict and the set of variants it passes on; a pair passes where both do.
    usable = [bool(v.strip()) for v in variants]
    per_word = Counter()
    for position, word in enumerate(candidates):
        checker = checker_with([word])
        passes = frozenset(i for i, v in enumerate(variants) if usable[i] and checker.check_following(v))
        # The last candidate stands for every absent word.
        per_word[(0 in passes, passes)] += absent if (absent and position == len(candidates) - 1) else 1
    outcomes = []
    for (strict_a, passes_a), (strict_b, passes_b) in combinations_with_replacement(sorted(per_word, key=repr), 2):
        if (strict_a, passes_a) == (strict_b, passes_b) and per_word[(strict_a, passes_a)] < 2:
            continue  # upstream samples two different words
        outcomes.append((strict_a and strict_b, bool(passes_a & passes_b)))
    return outcomes
