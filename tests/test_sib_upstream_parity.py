"""Differential check of our SIB checkers against the authors' evaluator (opt-in).

Set ``SIB_UPSTREAM_DIR`` to a checkout of dingdongwang/SpeechInstructBench (or its ``evaluator/``
folder). The authors' ``close.py`` strict/loose functions and checkers are loaded from there, never
copied here, and compared with ours on generated English, Chinese and mixed responses.
``SIB_PARITY_RESPONSES`` sets how many responses (default 100). The one intended difference:
upstream cannot build ``language="zh"`` (KeyError); we can. Where upstream draws an argument at
random, its verdict (under several seeds of its global ``random``) must lie within our bounds, and
equal our verdict when the bounds say no draw can change it.
"""

from __future__ import annotations

import importlib
import os
import random
import sys
import types
from pathlib import Path

import langdetect
import pytest
from lm_eval.tasks.ifeval import instructions_registry as ifeval_registry

from lm_eval_speech.tasks.speechinstruct import arguments, checkers, verdicts


UPSTREAM_DIR = os.environ.get("SIB_UPSTREAM_DIR")
pytestmark = pytest.mark.skipif(
    not UPSTREAM_DIR,
    reason="set SIB_UPSTREAM_DIR to a SpeechInstructBench checkout to compare with the authors' evaluator",
)


_PACKAGE = "_sib_upstream_evaluator"


@pytest.fixture(scope="module")
def upstream_close():
    """The authors' close.py module, imported without running evaluator/__init__.py (it needs openai)."""
    root = Path(UPSTREAM_DIR)
    evaluator = root / "evaluator" if (root / "evaluator" / "close.py").is_file() else root
    if not (evaluator / "close.py").is_file():
        pytest.fail(f"SIB_UPSTREAM_DIR={UPSTREAM_DIR} holds no evaluator/close.py")
    added = []

    def register(name, module):
        sys.modules[name] = module
        added.append(name)
        return module

    for name, attribute, value in (
        ("absl", "logging", types.SimpleNamespace(error=lambda *a, **k: None)),
        ("loguru", "logger", types.SimpleNamespace()),
    ):
        try:
            importlib.import_module(name)
        except ImportError:  # only logging objects are used from these
            register(name, types.ModuleType(name)).__dict__[attribute] = value
    package = register(_PACKAGE, types.ModuleType(_PACKAGE))
    package.__path__ = [str(evaluator)]
    subpackage = register(f"{_PACKAGE}.instruction_following_eval", types.ModuleType(f"{_PACKAGE}.instruction_following_eval"))
    subpackage.__path__ = [str(evaluator / "instruction_following_eval")]
    instructions = importlib.import_module(f"{_PACKAGE}.instruction_following_eval.instructions")
    added += [f"{_PACKAGE}.instruction_following_eval.{m}" for m in ("instructions", "instructions_util")]
    registry_name = f"{_PACKAGE}.instruction_following_eval.instructions_registry"
    try:
        registry = importlib.import_module(registry_name)
    except ImportError:  # Google's registry imports its package absolutely; it maps the same class names
        registry = register(registry_name, types.ModuleType(registry_name))
        registry.INSTRUCTION_DICT = {
            iid: getattr(instructions, cls.__name__) for iid, cls in ifeval_registry.INSTRUCTION_DICT.items()
        }
    added.append(registry_name)
    subpackage.instructions_registry = registry
    assert {i: c.__name__ for i, c in registry.INSTRUCTION_DICT.items()} == {
        i: c.__name__ for i, c in ifeval_registry.INSTRUCTION_DICT.items()
    }
    close = importlib.import_module(f"{_PACKAGE}.close")
    added += [f"{_PACKAGE}.close", f"{_PACKAGE}.base"]
    yield close
    for name in added:
        sys.modules.pop(name, None)


# --- generated cases ------------------------------------------------------------------------

EN = [
    "The cat sat on the mat.", "I love my category of books!", "Is this the right way?",
    "Dr. Smith arrived at 3.5 p.m. yesterday.", "HELLO WORLD THIS IS LOUD.", "all lowercase words here.",
    "My answer is yes.", "My answer is maybe.", "Wait... what?", 'He said "no".',
    "E.g. this one, that one; and more.", "Dogs, cats, and birds.", "Section 1 is here.", "SECTION 2",
    "P.S. see you soon", "P.P.S. one more", "PS: bye", "p. s. lower", "ps", "psst, a PSA",
    "Thanks for reading. Any other questions?", "Is there anything else I can help with?",
    "<<A Poem of Joy>>", "<< >>", "[name]", "[address] and [date]", "*important*", "**bold text**",
    "***", "* bullet one", "- bullet two", "******", "```json", '{"key": "value"}', "```", "[1, 2]",
    "ΟΔΟΣ Ωμέγα", "naïve café résumé", "1. First item", "The end.", "The END!", "'Quoted' start",
    '"Hello," she said.', "I THINK SO TOO. YES!", "so quiet and calm today", "Mr. and Mrs. Lee",
]
ZH = [
    "今天天气很好。", "我喜欢猫和狗！", "你吃饭了吗？", "这是一个测试句子", "我的答案是是的。", "我的答案是可能。",
    "我的答案是不是。", "他说：“你好”。", "《静夜思》是一首诗。", "【姓名】和【地址】", "请注意，这里有逗号，",
    "列表、顿号、都可以", "附言：再见", "P.S. 记得回复", "第一段的开头", "猫咪很可爱；狗狗也是。", "结束了。",
    "还有其他问题吗？", "这是English混合文本。", "数字123和汉字", "“引号包裹的句子”", "……省略号", "总结：好的！！",
    "第 2 部分", "*重点*内容", "**加粗**", "- 列表项", "* 要点一", "《》", "【】", "ＡＢＣ全角",
]
MIXED = ["Hello 世界!", "The word 猫 means cat.", "Title: 《红楼梦》 is famous.", "I think 这个 is good.", "OK。Fine. 好的！"]
SEPARATORS = [" ", "", "\n", "\n\n", " *** ", "\n***\n", "\n******\n", "\n\n\n", "\t", "。", ". "]
PROMPTS = ["Write a poem about cats.", "请写一首关于猫的诗。", "Tell me a joke"]

REL = ("less than", "at least")
KWARGS = {
    "keywords:existence": [{"keywords": k} for k in (["cat"], ["猫", "dog"], ["category", "the"], ["天气"], ["P.S"])],
    "keywords:frequency": [
        {"keyword": k, "frequency": f, "relation": r} for k in ("cat", "the", "猫", "a", " ps ") for f in (1, 2, 3)
        for r in REL
    ],
    "keywords:forbidden_words": [
        {"forbidden_words": w} for w in (["cat"], ["猫"], ["dog", "the"], ["a"], ["HELLO"], ["逗号"], ["p.m."])
    ],
    "keywords:letter_frequency": [
        {"letter": c, "let_frequency": f, "let_relation": r} for c in "aeSz" for f in (1, 3, 10) for r in REL
    ],
    "language:response_language": [{"language": lang} for lang in ("en", "es", "fr", "de", "ja", "ko", "it", "zh")],
    "length_constraints:number_sentences": [
        {"num_sentences": n, "relation": r} for n in (1, 2, 3, 5) for r in REL
    ],
    "length_constraints:number_paragraphs": [{"num_paragraphs": n} for n in (1, 2, 3)],
    "length_constraints:number_words": [{"num_words": n, "relation": r} for n in (3, 5, 10, 20) for r in REL],
    "length_constraints:nth_paragraph_first_word": [
        {"num_paragraphs": n, "nth_paragraph": k, "first_word": w}
        for n in (1, 2, 3) for k in range(1, n + 1)
        for w in ("the", "i", "is", "hello", "Hello", "今天", "我", "这是", "section", "οδος", "p", "*important*")
    ],
    "detectable_content:number_placeholders": [{"num_placeholders": n} for n in (1, 2)],
    "detectable_content:postscript": [{"postscript_marker": m} for m in ("P.S.", "P.P.S", "PS", "附言")],
    "detectable_format:number_bullet_lists": [{"num_bullets": n} for n in (1, 2, 3)],
    "detectable_format:constrained_response": [{}],
    "detectable_format:number_highlighted_sections": [{"num_highlights": n} for n in (1, 2, 3)],
    "detectable_format:multiple_sections": [
        {"section_spliter": s, "num_sections": n} for s in ("Section", "SECTION", "第") for n in (1, 2)
    ],
    "detectable_format:json_format": [{}],
    "detectable_format:title": [{}],
    "combination:two_responses": [{}],
    "combination:repeat_prompt": [{"prompt_to_repeat": p} for p in PROMPTS],
    "startend:end_checker": [
        {"end_phrase": p} for p in ("Any other questions?", "The end.", "还有其他问题吗？", "结束了", "see you soon", "bye")
    ],
    "change_case:capital_word_frequency": [
        {"capital_frequency": f, "capital_relation": r} for f in (1, 2, 5) for r in REL
    ],
    "change_case:english_capital": [{}],
    "change_case:english_lowercase": [{}],
    "punctuation:no_comma": [{}],
    "startend:quotation": [{}],
}
ALL_ARGUMENT_NAMES = sorted({name for variants in KWARGS.values() for kw in variants for name in kw})


def _response(rng: random.Random) -> str:
    pool = rng.choice([EN, ZH, EN + ZH + MIXED, EN, ZH])
    pieces = [rng.choice(pool) for _ in range(rng.randint(1, 8))]
    text = pieces[0]
    for piece in pieces[1:]:
        text += rng.choice(SEPARATORS) + piece
    shape = rng.random()
    if shape < 0.1:
        text = rng.choice(['"', "“"]) + text + rng.choice(['"', "”"])
    elif shape < 0.2:
        text = rng.choice(["Sure, here it is:\n", "好的：\n", "**Answer**\n"]) + text
    elif shape < 0.3:
        text = text + rng.choice(["\nHope this helps!", "\n希望有帮助", "\n*"])
    elif shape < 0.35:
        text = rng.choice(PROMPTS) + " " + text
    elif shape < 0.4:
        text = rng.choice([text.upper(), text.lower()])
    elif shape < 0.42:
        text = rng.choice(["", "   ", "\n", "***", "。"])
    return rng.choice(["", " ", "\n"]) + text + rng.choice(["", " ", "\n", "  \n"])


# Values upstream replaces by a random draw: missing or falsy, or rejected by its builder.
DRAWN_VALUES = {
    "letter": ["#", "!", "ab", None], "nth_paragraph": [9, -1, None], "num_paragraphs": [None, -2],
    "keywords": [None, []], "keyword": [None, ""], "forbidden_words": [None], "first_word": [None, ""],
    "language": [None], "section_spliter": [None], "postscript_marker": [None, ""], "end_phrase": [None],
    "relation": [None, ""], "let_relation": [None], "capital_relation": [None, ""],
}


def _kwargs(rng: random.Random, iid: str, drawn: bool = False) -> dict:
    kwargs = dict(rng.choice(KWARGS[iid]))
    if drawn and kwargs and iid != "combination:repeat_prompt":  # a missing prompt_to_repeat crashes upstream
        for name in rng.sample(sorted(kwargs), rng.randint(1, len(kwargs))):
            kwargs[name] = rng.choice(DRAWN_VALUES.get(name, [None, 0, -1]))
    if rng.random() < 0.3:  # IFEval's HF layout: every argument key, None where unused
        kwargs = {name: kwargs.get(name) for name in ALL_ARGUMENT_NAMES}
    return kwargs


def _ours(iid: str, kwargs: dict, prompt: str, response: str, rng: random.Random):
    """Our strict and loose verdicts (each pass with its own draws) and their bounds."""
    plan = arguments.plan(iid, kwargs)
    draws = {p: [arguments.draw(plan, rng)] for p in ("strict", "loose")}
    strict, loose = verdicts.follows([iid], [plan], draws, prompt, response)
    return (strict[0], loose[0]), verdicts.verdict_range(plan, prompt, response), bool(plan.drawable)


def _zh_detected(response: str) -> bool:
    try:
        return langdetect.detect(response) in ("zh-cn", "zh-tw")
    except langdetect.LangDetectException:
        return True


def _theirs(upstream_close, iid, kwargs, prompt, response) -> tuple[bool, bool]:
    inp = upstream_close.InputExample(key=0, instruction_id_list=[iid], prompt=prompt, kwargs=[kwargs])
    return tuple(
        test(inp, {prompt: response}).follow_instruction_list[0]
        for test in (upstream_close.test_instruction_following_strict, upstream_close.test_instruction_following_loose)
    )


def _generated(seed: int, ids, drawn: bool = False):
    """(id, kwargs, prompt, response, rng) over SIB_PARITY_RESPONSES generated responses."""
    rng = random.Random(seed)
    for _ in range(int(os.environ.get("SIB_PARITY_RESPONSES", "100"))):
        response, prompt = _response(rng), rng.choice(PROMPTS)
        for iid in ids:
            for _ in range(2 if len(KWARGS[iid]) > 1 and not drawn else 1):
                yield iid, _kwargs(rng, iid, drawn), prompt, response, rng


def test_generated_cases_match_upstream(upstream_close):
    compared, zh_fixed, mismatches = 0, 0, []
    for iid, kwargs, prompt, response, rng in _generated(20250101, checkers.INSTRUCTION_DICT):
        ours, bounds, drawn = _ours(iid, kwargs, prompt, response, rng)
        assert not drawn and bounds == verdicts.VerdictRange((ours[0],) * 2, (ours[1],) * 2)
        if kwargs.get("language") == "zh":
            inp = upstream_close.InputExample(key=0, instruction_id_list=[iid], prompt=prompt, kwargs=[kwargs])
            with pytest.raises(KeyError):  # the upstream crash we fix
                upstream_close.test_instruction_following_strict(inp, {prompt: response})
            assert ours[0] == bool(response.strip() and _zh_detected(response))
            zh_fixed += 1
            continue
        theirs = _theirs(upstream_close, iid, kwargs, prompt, response)
        compared += 2
        if ours != theirs:
            mismatches.append((iid, kwargs, response, ours, theirs))
    print(f"SIB parity: {compared} comparisons, {len(mismatches)} mismatches, {zh_fixed} zh builds (upstream KeyError)")
    assert not mismatches, mismatches[:10]
    assert compared > 0


def test_drawn_arguments_stay_within_bounds(upstream_close):
    """Upstream's random verdicts (several seeds of its global random) never leave our bounds, and
    where the bounds are one value, upstream gives that value whatever it draws."""
    compared, fixed, outside = 0, 0, []
    for iid, kwargs, prompt, response, rng in _generated(20251206, arguments.ARGUMENTS, drawn=True):
        ours, bounds, drawn = _ours(iid, kwargs, prompt, response, rng)
        if not drawn:
            continue
        for seed in range(5):
            random.seed(seed)  # upstream draws from the global generator
            strict, loose = _theirs(upstream_close, iid, kwargs, prompt, response)
            compared += 2
            if not (bounds.strict[0] <= strict <= bounds.strict[1] and bounds.loose[0] <= loose <= bounds.loose[1]):
                outside.append((iid, kwargs, response, (strict, loose), bounds))
        fixed += bounds.strict[0] == bounds.strict[1]
        assert bounds.strict[0] <= ours[0] <= bounds.strict[1] and bounds.loose[0] <= ours[1] <= bounds.loose[1]
    print(f"SIB drawn arguments: {compared} upstream verdicts, {len(outside)} outside our bounds, {fixed} draw-independent")
    assert not outside, outside[:5]
    assert compared > 0
