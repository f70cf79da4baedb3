"""What SpeechInstructBench's checker code does with each argument of an item: use it, draw it, or crash.

Upstream (SIB @34f7681 ``close.py``, whose ``build_description`` code is IFEval's) first drops every
falsy argument (``None``, ``0``, ``""``, ``[]``), then fills a missing argument, or replaces one it
rejects (a negative count, ``letter: "#"``, ``nth_paragraph`` past ``num_paragraphs``), with a draw
from Python's global ``random``; some values make it raise instead. This module states those
rules once, per argument, in upstream's order:

* :func:`plan` sorts an instruction's arguments into given and drawn, or raises
  :class:`CheckerArgumentError` naming the argument where upstream would crash;
* :func:`draw` draws the missing ones from upstream's distributions with a seeded generator;
* :func:`space` lists every value a draw could take (the bounds enumerate it).
"""

from __future__ import annotations

import hashlib
import random
import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from lm_eval_speech.tasks.speechinstruct import checkers
from lm_eval_speech.tasks.speechinstruct.checkers import CheckerArgumentError

_ifeval, _util = checkers._ifeval, checkers._util
RELATIONS = _ifeval._COMPARISON_RELATION
# IFEval's own word list: what generate_keywords samples for missing keywords and first words.
WORD_LIST: tuple[str, ...] = tuple(_util.WORD_LIST)
LANGUAGES: tuple[str, ...] = tuple(_util.LANGUAGE_CODES)

GIVEN, DRAWN = "given", "drawn"


class _Crash(Exception):
    """Upstream raises on this value (when building the checker, or when checking a response)."""


@dataclass(frozen=True)
class Space:
    """The values one draw can take, and how upstream draws it (uniformly)."""

    values: Sequence  # for the bounds (each a possible outcome)
    sample: Callable[[random.Random], object]  # for a draw, as upstream calls random
    words: int = 0  # > 0: a sample of this many distinct words of WORD_LIST (too many to enumerate naively)


def _randint(low: int, high: int) -> Space:
    return Space(range(low, high + 1), lambda rng: rng.randint(low, high))


def _choice(options: Sequence) -> Space:
    return Space(tuple(options), lambda rng: rng.choice(options))


def _words(count: int) -> Space:
    # generate_keywords: random.sample(WORD_LIST, k); one word is used bare (keyword, first_word).
    if count == 1:
        return Space(WORD_LIST, lambda rng: rng.sample(WORD_LIST, k=1)[0], words=1)
    return Space(WORD_LIST, lambda rng: rng.sample(WORD_LIST, k=count), words=count)


# random.choice(string.ascii_letters), then lower(): each lowercase letter with probability 2/52.
_LETTER = Space(tuple(string.ascii_lowercase), lambda rng: rng.choice(string.ascii_letters).lower())


# -- per-argument rules: value (None when absent or falsy) -> GIVEN | DRAWN, or _Crash ------------
def _probed(probe: Callable, what: str) -> Callable:
    """A rule: an absent value is drawn; a present one is used as given, unless ``probe`` (what
    upstream does with it) raises."""

    def rule(value, _):
        if value is None:
            return DRAWN
        try:
            probe(value)
        except (AttributeError, TypeError, re.error) as err:
            raise _Crash(f"{value!r} {what} ({err})") from None
        return GIVEN

    return rule


def _string(value) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{type(value).__name__}, not str")


_text = _probed(_string, "is not a string")
_regex_list = _probed(lambda v: [re.compile(k) for k in sorted(v)], "is not a list of regular expressions")
_regex = _probed(lambda v: re.compile(v.strip()), "is not a regular expression")
# The check tests each word with re.escape and as a substring of the response.
_word_list = _probed(lambda v: [(re.escape(w), w in "") for w in set(v)], "is not a list of words")
_section_spliter = _probed(lambda v: re.compile(r"\s?" + v.strip() + r"\s?\d+\s?"), "does not make a section pattern")
# Drawn only when absent: a negative value is used as given; the check compares a count with it.
_capital_frequency = _probed(lambda v: 0 < v, "is not a number")


def _count(value, _):
    if value is None:
        return DRAWN
    try:
        return DRAWN if value < 0 else GIVEN
    except TypeError as err:
        raise _Crash(f"cannot compare {value!r} with 0 ({err})") from None


def _relation(value, _):
    if value is None:
        return DRAWN
    if value not in RELATIONS:
        raise _Crash(f"must be one of {RELATIONS}")
    return GIVEN


def _nth_paragraph(value, resolved):
    paragraphs = resolved["num_paragraphs"]
    try:
        invalid = value is None or value <= 0 or value > paragraphs
    except TypeError as err:
        raise _Crash(f"cannot compare {value!r} ({err})") from None
    if invalid:
        if not isinstance(paragraphs, int):
            raise _Crash(f"random.randint(1, {paragraphs!r} + 1) fails")
        return DRAWN
    if not isinstance(value, int):
        raise _Crash(f"{value!r} cannot index paragraphs")
    return GIVEN


def _letter(value, _):
    if value is None:
        return DRAWN
    try:  # upstream's test, in its order: a list of 2+ items is replaced, not a crash
        if len(value) > 1 or ord(value.lower()) < 97 or ord(value.lower()) > 122:
            return DRAWN
        value.strip()
    except (AttributeError, TypeError) as err:
        raise _Crash(f"{value!r} is not a letter ({err})") from None
    return GIVEN


def _language(value, _):
    if value is None:
        return DRAWN
    try:
        known = value == "zh" or value in _util.LANGUAGE_CODES  # "zh": our crash fix (FIDELITY.md #1)
    except TypeError:
        known = False
    if not known:
        raise _Crash(f"not one of the codes {sorted(LANGUAGES)} (or zh)")
    return GIVEN


def _required_text(value, _):
    if value is None:
        raise _Crash("is missing (upstream raises 'prompt_to_repeat must be set')")
    if not isinstance(value, str):
        raise _Crash(f"{value!r} is not a string")
    return GIVEN


@dataclass(frozen=True)
class Argument:
    name: str
    rule: Callable
    space: Callable[[dict], Space] = field(default=lambda resolved: Space((), lambda rng: None))


def _count_argument(name: str, low: int, high: int) -> Argument:
    return Argument(name, _count, lambda _: _randint(low, high))


def _relation_argument(name: str) -> Argument:
    return Argument(name, _relation, lambda _: _choice(RELATIONS))


# Each id's arguments in the order upstream's build_description handles them (draws may depend on
# earlier values: nth_paragraph on num_paragraphs). Ids not listed take no argument.
ARGUMENTS: dict[str, tuple[Argument, ...]] = {
    "keywords:existence": (Argument("keywords", _regex_list, lambda _: _words(_ifeval._NUM_KEYWORDS)),),
    "keywords:frequency": (
        Argument("keyword", _regex, lambda _: _words(1)),
        _count_argument("frequency", 1, _ifeval._KEYWORD_FREQUENCY),
        _relation_argument("relation"),
    ),
    "keywords:forbidden_words": (Argument("forbidden_words", _word_list, lambda _: _words(_ifeval._NUM_KEYWORDS)),),
    "keywords:letter_frequency": (
        Argument("letter", _letter, lambda _: _LETTER),
        _count_argument("let_frequency", 1, _ifeval._LETTER_FREQUENCY),
        _relation_argument("let_relation"),
    ),
    "language:response_language": (Argument("language", _language, lambda _: _choice(LANGUAGES)),),
    "length_constraints:number_sentences": (
        _count_argument("num_sentences", 1, _ifeval._MAX_NUM_SENTENCES),
        _relation_argument("relation"),
    ),
    "length_constraints:number_paragraphs": (_count_argument("num_paragraphs", 1, _ifeval._NUM_PARAGRAPHS),),
    "length_constraints:number_words": (
        _count_argument("num_words", _ifeval._NUM_WORDS_LOWER_LIMIT, _ifeval._NUM_WORDS_UPPER_LIMIT),
        _relation_argument("relation"),
    ),
    "length_constraints:nth_paragraph_first_word": (
        _count_argument("num_paragraphs", 1, _ifeval._NUM_PARAGRAPHS),
        Argument("nth_paragraph", _nth_paragraph, lambda resolved: _randint(1, resolved["num_paragraphs"] + 1)),
        Argument("first_word", _text, lambda _: _words(1)),
    ),
    "detectable_content:number_placeholders": (_count_argument("num_placeholders", 1, _ifeval._NUM_PLACEHOLDERS),),
    "detectable_content:postscript": (Argument("postscript_marker", _text, lambda _: _choice(_ifeval._POSTSCRIPT_MARKER)),),
    "detectable_format:number_bullet_lists": (_count_argument("num_bullets", 1, _ifeval._NUM_BULLETS),),
    "detectable_format:number_highlighted_sections": (
        _count_argument("num_highlights", 1, _ifeval._NUM_HIGHLIGHTED_SECTIONS),
    ),
    "detectable_format:multiple_sections": (
        Argument("section_spliter", _section_spliter, lambda _: _choice(_ifeval._SECTION_SPLITER)),
        _count_argument("num_sections", 1, _ifeval._NUM_SECTIONS),
    ),
    "combination:repeat_prompt": (Argument("prompt_to_repeat", _required_text),),
    "startend:end_checker": (Argument("end_phrase", _text, lambda _: _choice(_ifeval._ENDING_OPTIONS)),),
    "change_case:capital_word_frequency": (
        Argument("capital_frequency", _capital_frequency, lambda _: _randint(1, _ifeval._ALL_CAPITAL_WORD_FREQUENCY)),
        _relation_argument("capital_relation"),
    ),
}


# Arguments whose value a later rule reads (nth_paragraph is checked against num_paragraphs).
_READ_BY_LATER_RULES = frozenset({"num_paragraphs"})


@dataclass(frozen=True)
class ArgumentPlan:
    """One instruction's arguments after upstream's falsy-drop, and which of them a draw may fill."""

    instruction_id: str
    present: dict
    drawable: tuple[str, ...]  # in upstream's order; empty: the verdict depends on no draw

    @property
    def arguments(self) -> tuple[Argument, ...]:
        return ARGUMENTS.get(self.instruction_id, ())


def plan(instruction_id: str, kwargs: object) -> ArgumentPlan:
    """Sort one instruction's arguments; :class:`CheckerArgumentError` where upstream would crash
    (for any value its draws could take)."""
    if instruction_id not in checkers.INSTRUCTION_DICT:
        raise CheckerArgumentError(f"unknown instruction id {instruction_id!r}")
    if not isinstance(kwargs, dict):  # upstream calls kwargs.items()
        raise CheckerArgumentError(f"{instruction_id}: kwargs is {type(kwargs).__name__}, not an object")
    present = {k: v for k, v in kwargs.items() if v}  # as upstream: every falsy value dropped
    accepted = ARGUMENTS.get(instruction_id, ())
    unexpected = sorted(set(present) - {a.name for a in accepted})
    if unexpected:
        raise CheckerArgumentError(f"{instruction_id}: unexpected argument(s) {unexpected} (upstream raises TypeError)")
    drawable, contexts = [], [{}]
    for argument in accepted:
        value, expanded = present.get(argument.name), []
        for context in contexts:
            try:
                verdict = argument.rule(value, context)
            except _Crash as err:
                raise CheckerArgumentError(f"{instruction_id}: argument {argument.name}={value!r}: {err}") from None
            if verdict == GIVEN:
                expanded.append({**context, argument.name: value})
                continue
            if argument.name not in drawable:
                drawable.append(argument.name)
            values = argument.space(context).values if argument.name in _READ_BY_LATER_RULES else (None,)
            expanded += [{**context, argument.name: v} for v in values]
        contexts = expanded
    return ArgumentPlan(instruction_id, present, tuple(drawable))


def draw(item_plan: ArgumentPlan, rng: random.Random) -> dict:
    """Values for the arguments upstream would draw, from its distributions, in its order."""
    resolved, values = {}, {}
    for argument in item_plan.arguments:
        value = item_plan.present.get(argument.name)
        if argument.rule(value, resolved) == GIVEN:
            resolved[argument.name] = value
        else:
            values[argument.name] = resolved[argument.name] = argument.space(resolved).sample(rng)
    return values


def resolve(item_plan: ArgumentPlan, drawn: dict) -> dict:
    """The arguments the checker is built with: the given ones and the drawn ones."""
    return {**item_plan.present, **drawn}


def outcomes(item_plan: ArgumentPlan):
    """Every (drawn values, word spaces) upstream's draws can reach; word-sample spaces are left
    unexpanded (as the ``Space``) for the caller, which treats them by what the response contains."""

    def walk(arguments, resolved, drawn):
        if not arguments:
            yield drawn
            return
        argument, rest = arguments[0], arguments[1:]
        value = item_plan.present.get(argument.name)
        if argument.rule(value, resolved) == GIVEN:
            yield from walk(rest, {**resolved, argument.name: value}, drawn)
            return
        space = argument.space(resolved)
        if space.words:
            yield from walk(rest, {**resolved, argument.name: space}, {**drawn, argument.name: space})
            return
        for option in dict.fromkeys(space.values):
            yield from walk(rest, {**resolved, argument.name: option}, {**drawn, argument.name: option})

    yield from walk(item_plan.arguments, {}, {})


def draw_rng(seed: object, task: str, key: object, index: int, passage: str) -> random.Random:
    """The generator for one instruction's draws in one pass (upstream builds each checker twice:
    strict and loose draw independently). The same data and seed draw the same values anywhere."""
    material = "\x1f".join(map(str, (seed, task, key, index, passage))).encode("utf-8")
    return random.Random(int.from_bytes(hashlib.sha256(material).digest()[:8], "big"))
