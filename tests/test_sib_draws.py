"""Arguments upstream draws at random: drawn from the same distributions (seeded), and bounded.

"Upstream" here is IFEval's ``build_description`` as lm-eval ships it, which is SpeechInstructBench's
line for line (only our checks differ, and those take complete arguments): run with a seeded
stand-in for its global ``random``, it shows which values a draw takes and how often.
"""

from __future__ import annotations

import itertools
import random
import re
from collections import Counter

import pytest
from lm_eval.tasks.ifeval import instructions as ifeval
from lm_eval.tasks.ifeval import instructions_registry as ifeval_registry
from lm_eval.tasks.ifeval import instructions_util as ifeval_util

from lm_eval_speech.tasks.speechinstruct import arguments, checkers, verdicts

PROMPT = "Write a poem about cats."
LESS_THAN, AT_LEAST = "less than", "at least"
# (id, kwargs) that upstream completes with draws; one case per kind of draw.
DRAWING = [
    ("keywords:letter_frequency", {"letter": "#", "let_frequency": 4, "let_relation": AT_LEAST}),
    ("keywords:letter_frequency", {"letter": "!", "let_frequency": None, "let_relation": None}),
    ("length_constraints:number_words", {"num_words": None, "relation": LESS_THAN}),
    ("length_constraints:number_sentences", {"num_sentences": -1, "relation": None}),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": None, "nth_paragraph": 3, "first_word": "the"}),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 5, "first_word": "the"}),
    ("detectable_format:multiple_sections", {"section_spliter": None, "num_sections": 0}),
    ("detectable_content:postscript", {"postscript_marker": ""}),
    ("startend:end_checker", {"end_phrase": None}),
    ("change_case:capital_word_frequency", {"capital_frequency": None, "capital_relation": None}),
    ("detectable_format:number_bullet_lists", {"num_bullets": None}),
    ("language:response_language", {"language": None}),
    ("keywords:frequency", {"keyword": "cat", "frequency": None, "relation": None}),
]
RESPONSES = [
    "Hello world, this is a story about the western signal.\n\nSecond paragraph HERE WITH CAPS.\n\nThird one. P.S. bye",
    "* one\n* two\n* three\nAny other questions?",
    "SECTION 1\nThe cat.\nSECTION 2\nThe dog!!! Is there anything else I can help with?",
    "short",
    "你好。世界很大！P.P.S 再见",
    "",
]


def _upstream_args(iid: str, kwargs: dict, seed: int) -> dict:
    """The arguments upstream's checker ends up with, its global random seeded."""
    generator = random.Random(seed)
    saved = ifeval.random, ifeval_util.random
    ifeval.random = ifeval_util.random = generator
    try:
        instruction = ifeval_registry.INSTRUCTION_DICT[iid](iid)  # lm-eval's build is SIB's, line for line
        instruction.build_description(**{k: v for k, v in kwargs.items() if v})
        return instruction.get_instruction_args()
    finally:
        ifeval.random, ifeval_util.random = saved


def _ours(iid: str, kwargs: dict, seed: int) -> dict:
    plan = arguments.plan(iid, kwargs)
    drawn = arguments.draw(plan, arguments.draw_rng(seed, "task", 1, 0, "strict"))
    return checkers.build_instruction(iid, arguments.resolve(plan, drawn), PROMPT).get_instruction_args()


def _views(args: dict) -> dict:
    """Each argument on its own, and nth_paragraph jointly with the num_paragraphs it depends on."""
    views = {name: tuple(v) if isinstance(v, list) else v for name, v in args.items()}
    if "nth_paragraph" in args:
        views["num_paragraphs, nth_paragraph"] = (args["num_paragraphs"], args["nth_paragraph"])
    return views


@pytest.mark.parametrize("iid, kwargs", DRAWING, ids=[f"{c[0]}-{i}" for i, c in enumerate(DRAWING)])
def test_draws_follow_upstreams_distribution(iid, kwargs):
    samples = 3000
    ours = [_views(_ours(iid, kwargs, seed)) for seed in range(samples)]
    theirs = [_views(_upstream_args(iid, kwargs, seed)) for seed in range(samples)]
    for view in theirs[0]:
        mine, upstream = Counter(o[view] for o in ours), Counter(t[view] for t in theirs)
        # The same values, each about as often (a uniform draw over k values: 3000/k each).
        assert set(mine) == set(upstream), (view, set(mine) ^ set(upstream))
        for value, count in upstream.items():
            expected = count / samples
            assert abs(mine[value] / samples - expected) < 4 * (expected * (1 - expected) / samples) ** 0.5 + 0.01, (view, value)


def test_a_drawn_word_is_a_word_of_ifevals_list():
    plan = arguments.plan("keywords:existence", {"keywords": None})
    words = arguments.draw(plan, random.Random(0))["keywords"]
    assert len(set(words)) == 2 and set(words) <= set(ifeval_util.WORD_LIST)
    assert arguments.WORD_LIST == tuple(ifeval_util.WORD_LIST) and len(arguments.WORD_LIST) == 1525


def test_the_same_seed_draws_the_same_values_and_passes_draw_apart():
    plan = arguments.plan("length_constraints:number_words", {"num_words": None, "relation": None})
    first = [arguments.draw(plan, arguments.draw_rng(0, "t", key, 0, "strict")) for key in range(50)]
    again = [arguments.draw(plan, arguments.draw_rng(0, "t", key, 0, "strict")) for key in range(50)]
    loose = [arguments.draw(plan, arguments.draw_rng(0, "t", key, 0, "loose")) for key in range(50)]
    other_seed = [arguments.draw(plan, arguments.draw_rng(1, "t", key, 0, "strict")) for key in range(50)]
    assert first == again
    assert first != loose and first != other_seed


def _sampled_range(iid: str, kwargs: dict, response: str, samples: int) -> tuple[set, set]:
    """Verdicts upstream gives over many draws: strict and loose, each pass drawing on its own."""
    strict, loose = set(), set()
    variants = checkers.loose_variants(response)
    for seed in range(samples):
        args = _upstream_args(iid, kwargs, seed)
        checker = checkers.build_instruction(iid, args, PROMPT)
        strict.add(checkers.strict_verdict(checker, response))
        loose.add(checkers.loose_verdict(checker, variants))
    return strict, loose


@pytest.mark.parametrize("iid, kwargs", DRAWING, ids=[f"{c[0]}-{i}" for i, c in enumerate(DRAWING)])
def test_bounds_are_what_upstreams_draws_reach(iid, kwargs):
    plan = arguments.plan(iid, kwargs)
    for response in RESPONSES:
        bounds = verdicts.verdict_range(plan, PROMPT, response)
        strict, loose = _sampled_range(iid, kwargs, response, 1500)
        # 1500 draws reach every outcome of these spaces (at most 802 values, none rarer than 1/802).
        assert (min(strict), max(strict)) == bounds.strict, response
        assert (min(loose), max(loose)) == bounds.loose, response


def test_bounds_equal_the_verdict_when_nothing_is_drawn():
    plan = arguments.plan("length_constraints:number_words", {"num_words": 3, "relation": AT_LEAST})
    assert plan.drawable == ()
    bounds = verdicts.verdict_range(plan, PROMPT, "one two three")
    assert bounds == verdicts.VerdictRange((True, True), (True, True))


# -- drawn words: the full space, brute force, on a short word list ---------------------------------
SHORT_LIST = ("cat", "dog", "story", "western", "signal", "a", "it", "the", "sea", "river", "bird", "moon")
WORD_RESPONSES = [
    "The cat and the dog.",
    "A story\nabout the western signal",
    "**River** moon\n\nsea bird it",
    "Cats everywhere, cat after CAT.",
    "nothing to see",
    "\u017ftory of the \u212aind",  # long s and Kelvin sign: IGNORECASE matches "story", "kind"
    "",
]


@pytest.fixture
def short_word_list(monkeypatch):
    monkeypatch.setattr(arguments, "WORD_LIST", SHORT_LIST)
    monkeypatch.setattr(verdicts, "_WORD_PATTERNS", tuple(re.compile(w, re.IGNORECASE) for w in SHORT_LIST))
    return SHORT_LIST


def _brute_force(iid: str, kwargs: dict, response: str) -> tuple[tuple, tuple]:
    """Every value upstream can draw, one checker each."""
    plan = arguments.plan(iid, kwargs)
    variants = checkers.loose_variants(response)
    strict, loose = set(), set()
    for drawn in arguments.outcomes(plan):
        choices = []
        for name, value in drawn.items():
            if isinstance(value, arguments.Space):
                picks = itertools.permutations(SHORT_LIST, value.words)
                choices.append([(name, list(p) if value.words > 1 else p[0]) for p in picks])
            else:
                choices.append([(name, value)])
        for assignment in itertools.product(*choices):
            checker = checkers.build_instruction(iid, arguments.resolve(plan, dict(assignment)), PROMPT)
            strict.add(checkers.strict_verdict(checker, response))
            loose.add(checkers.loose_verdict(checker, variants))
    return (min(strict), max(strict)), (min(loose), max(loose))


@pytest.mark.parametrize(
    "iid, kwargs",
    [
        ("keywords:existence", {"keywords": None}),
        ("keywords:forbidden_words", {"forbidden_words": []}),
        ("keywords:frequency", {"keyword": None, "frequency": 2, "relation": None}),
        ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": None, "nth_paragraph": 1, "first_word": None}),
    ],
)
def test_word_bounds_equal_brute_force(iid, kwargs, short_word_list):
    plan = arguments.plan(iid, kwargs)
    for response in WORD_RESPONSES:
        bounds = verdicts.verdict_range(plan, PROMPT, response)
        assert (bounds.strict, bounds.loose) == _brute_force(iid, kwargs, response), response


def test_verdicts_never_use_upstreams_random(monkeypatch):
    class NoRandom:
        def __getattr__(self, name):
            raise AssertionError(f"random.{name} called")

    monkeypatch.setattr(ifeval, "random", NoRandom())
    monkeypatch.setattr(ifeval_util, "random", NoRandom())
    for iid, kwargs in DRAWING:
        plan = arguments.plan(iid, kwargs)
        draws = {p: [arguments.draw(plan, arguments.draw_rng(0, "t", 1, 0, p))] for p in ("strict", "loose")}
        verdicts.follows([iid], [plan], draws, PROMPT, RESPONSES[0])
        verdicts.verdict_range(plan, PROMPT, RESPONSES[0])
