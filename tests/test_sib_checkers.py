"""SpeechInstructBench closed-ended checkers: every id in English and Chinese, strict vs loose,
what upstream does with each argument (use, draw, crash), and that lm-eval's own IFEval checkers
stay unchanged.

Expectations are worked out by hand from the authors' code (SpeechInstructBench @34f7681).
"""

from __future__ import annotations

import importlib.util
import itertools

import pytest


import langdetect
from lm_eval.tasks.ifeval import instructions as ifeval
from lm_eval.tasks.ifeval import instructions_registry as ifeval_registry
from lm_eval.tasks.ifeval import instructions_util as ifeval_util

from lm_eval_speech.tasks.speechinstruct import arguments, checkers, verdicts

PROMPT = "Write a poem about cats."


def follows(ids, kwargs_list, response, prompt=PROMPT):
    """Verdicts for arguments that need no draw (the common case: complete, valid data)."""
    plans = [arguments.plan(i, k) for i, k in zip(ids, kwargs_list, strict=True)]
    assert not any(p.drawable for p in plans), [p.drawable for p in plans]
    no_draws = {"strict": [{} for _ in plans], "loose": [{} for _ in plans]}
    return verdicts.follows(ids, plans, no_draws, prompt, response)


def strict(iid, kwargs, response):
    return follows([iid], [kwargs], response)[0][0]


def loose(iid, kwargs, response):
    return follows([iid], [kwargs], response)[1][0]


AT_LEAST, LESS_THAN = "at least", "less than"

# (id, kwargs, response, expected strict result)
CASES = [
    # keywords:existence: a case-insensitive regex search, so substrings count
    ("keywords:existence", {"keywords": ["cat"]}, "I have a Cat.", True),
    ("keywords:existence", {"keywords": ["cat"]}, "I have a dog.", False),
    ("keywords:existence", {"keywords": ["cat"]}, "A category.", True),
    ("keywords:existence", {"keywords": ["cat", "dog"]}, "A cat only.", False),
    ("keywords:existence", {"keywords": ["天气"]}, "今天天气很好。", True),
    ("keywords:existence", {"keywords": ["天气"]}, "今天很好。", False),
    # keywords:frequency
    ("keywords:frequency", {"keyword": "the", "frequency": 2, "relation": LESS_THAN}, "The end.", True),
    ("keywords:frequency", {"keyword": "the", "frequency": 2, "relation": LESS_THAN}, "The cat and the dog.", False),
    ("keywords:frequency", {"keyword": "the", "frequency": 2, "relation": LESS_THAN}, "The theme.", False),
    ("keywords:frequency", {"keyword": "猫", "frequency": 2, "relation": AT_LEAST}, "猫和猫。", True),
    ("keywords:frequency", {"keyword": "猫", "frequency": 2, "relation": AT_LEAST}, "一只猫。", False),
    # keywords:forbidden_words: escaped \b match (any case) OR plain substring (case-sensitive)
    ("keywords:forbidden_words", {"forbidden_words": ["cat"]}, "A dog barked.", True),
    ("keywords:forbidden_words", {"forbidden_words": ["cat"]}, "The CAT slept.", False),
    ("keywords:forbidden_words", {"forbidden_words": ["cat"]}, "A category of items.", False),
    ("keywords:forbidden_words", {"forbidden_words": ["cat"]}, "A CATEGORY of items.", True),
    ("keywords:forbidden_words", {"forbidden_words": ["p.m."]}, "At 3 pm sharp.", True),
    ("keywords:forbidden_words", {"forbidden_words": ["猫"]}, "我喜欢狗。", True),
    ("keywords:forbidden_words", {"forbidden_words": ["猫"]}, "我喜欢猫。", False),
    # keywords:letter_frequency: counts the lowercased letter
    ("keywords:letter_frequency", {"letter": "a", "let_frequency": 3, "let_relation": AT_LEAST}, "bAnana", True),
    ("keywords:letter_frequency", {"letter": "A", "let_frequency": 3, "let_relation": AT_LEAST}, "apple", False),
    ("keywords:letter_frequency", {"letter": "a", "let_frequency": 1, "let_relation": LESS_THAN}, "中文没有字母。", True),
    ("keywords:letter_frequency", {"letter": "a", "let_frequency": 1, "let_relation": AT_LEAST}, "中文没有字母。", False),
    # language:response_language
    ("language:response_language", {"language": "en"}, "This is a simple English sentence about the weather today.", True),
    ("language:response_language", {"language": "en"}, "今天天气很好，我们一起去公园散步吧。", False),
    ("language:response_language", {"language": "zh"}, "今天天气很好，我们一起去公园散步吧。", True),
    ("language:response_language", {"language": "zh"}, "This is a simple English sentence about the weather today.", False),
    ("language:response_language", {"language": "zh"}, "12345 !!!", True),  # LangDetectException: followed
    # length_constraints:number_sentences: with CJK only ！？。 split, and the last piece counts
    ("length_constraints:number_sentences", {"num_sentences": 2, "relation": AT_LEAST}, "Hello there. How are you?", True),
    ("length_constraints:number_sentences", {"num_sentences": 2, "relation": AT_LEAST}, "Hello there.", False),
    ("length_constraints:number_sentences", {"num_sentences": 2, "relation": AT_LEAST}, "今天很好。明天也好！", True),
    ("length_constraints:number_sentences", {"num_sentences": 2, "relation": AT_LEAST}, "今天很好。明天", True),
    ("length_constraints:number_sentences", {"num_sentences": 2, "relation": AT_LEAST}, "今天很好. 明天也好.", False),
    ("length_constraints:number_sentences", {"num_sentences": 2, "relation": AT_LEAST}, "今天很好；明天也好", False),
    ("length_constraints:number_sentences", {"num_sentences": 2, "relation": AT_LEAST}, "Hi there. How are you? 你好", False),
    ("length_constraints:number_sentences", {"num_sentences": 2, "relation": LESS_THAN}, "今天很好。。。", True),
    # length_constraints:number_paragraphs: split on ***; an empty middle piece fails
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "First para.\n***\nSecond para.", True),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "***\nFirst.\n***\nSecond.", True),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "Only one.", False),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "A\n***\n\n***\nB", False),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "第一段。\n***\n第二段。", True),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2}, "第一段。第二段。", False),
    # length_constraints:number_words: with CJK, the number of ideographs (other words ignored)
    ("length_constraints:number_words", {"num_words": 5, "relation": AT_LEAST}, "one two three four five", True),
    ("length_constraints:number_words", {"num_words": 5, "relation": AT_LEAST}, "one two three", False),
    ("length_constraints:number_words", {"num_words": 5, "relation": AT_LEAST}, "今天天气很好", True),
    ("length_constraints:number_words", {"num_words": 5, "relation": AT_LEAST}, "你好，，，，。", False),
    ("length_constraints:number_words", {"num_words": 5, "relation": AT_LEAST}, "你好 one two three four five", False),
    ("length_constraints:number_words", {"num_words": 3, "relation": LESS_THAN}, "你好 hello world foo 12345", True),
    # length_constraints:nth_paragraph_first_word
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "hello"},
     "Intro text.\n\nHello, world.", True),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "hello"},
     'Intro text.\n\n"Hello" she said.', True),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "hello"},
     "Intro text.\n\nHello。World", True),  # CJK marks end the word too (IFEval: "hello。world")
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "hello"},
     "Intro text.\n\nGoodbye world.", False),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "hello"},
     "Intro.\n\nHello.\n\nExtra.", False),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "今天"},
     "第一段。\n\n今天天气很好。", True),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "今"},
     "第一段。\n\n今天天气很好。", True),  # a prefix, not a word
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "今天"},
     "第一段。\n\n明天会更好。", False),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "Hello"},
     "第一段。\n\nHello 世界", False),  # CJK paragraph: case-sensitive prefix vs the lowercased word
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "Hello"},
     "第一段。\n\nhello 世界", True),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "今天"},
     "今天。", False),
    # detectable_content:number_placeholders: [] and 【】, even mixed
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "Dear [name], at [address].", True),
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "Dear [name].", False),
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "尊敬的【姓名】，地址【地址】。", True),
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "尊敬的【姓名】。", False),
    ("detectable_content:number_placeholders", {"num_placeholders": 2}, "[a】 and 【b]", True),
    # detectable_content:postscript: any PS / P.S. / P.P.S. counts, whatever marker was asked for
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, "Main text.\nP.P.S. Call me.", True),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, "Main text.\nPS: call me", True),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, "Main text. No postscript.", False),
    ("detectable_content:postscript", {"postscript_marker": "P.P.S"}, "Main text, psst.", False),
    ("detectable_content:postscript", {"postscript_marker": "P.S."}, "Body.\np.s. hi", True),
    ("detectable_content:postscript", {"postscript_marker": "附言"}, "正文。\n附言：记得回复。", True),
    ("detectable_content:postscript", {"postscript_marker": "附言"}, "正文。附言记得回复。", False),  # no \b before 记
    ("detectable_content:postscript", {"postscript_marker": "附言"}, "正文内容，没有附录。", False),
    # detectable_format:number_bullet_lists: exact count of "* x" and "-..." lines
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "* one\n* two", True),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "* one\n* two\n- three", False),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "**bold** line\n* one\n-5 degrees", True),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "* 第一\n- 第二", True),
    ("detectable_format:number_bullet_lists", {"num_bullets": 2}, "第一\n第二", False),
    # detectable_format:constrained_response: English and Chinese options, substring match
    ("detectable_format:constrained_response", {}, "My answer is yes.", True),
    ("detectable_format:constrained_response", {}, "Yes.", False),
    ("detectable_format:constrained_response", {}, "我的答案是是的。", True),
    ("detectable_format:constrained_response", {}, "想了想，我的答案是可能。", True),
    ("detectable_format:constrained_response", {}, "我的答案是对的。", False),
    ("detectable_format:constrained_response", {}, "我的答案是可能", False),
    # detectable_format:number_highlighted_sections: *x* plus **x**; ***x*** counts twice
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "*one* and *two*", True),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "*one* only", False),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "**bold**", False),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "***bold***", True),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "*重点*和*要点*", True),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2}, "**重点**", False),
    # detectable_format:multiple_sections
    ("detectable_format:multiple_sections", {"section_spliter": "Section", "num_sections": 2},
     "Section 1\nIntro\nSection 2\nBody", True),
    ("detectable_format:multiple_sections", {"section_spliter": "Section", "num_sections": 2}, "Section 1 only", False),
    ("detectable_format:multiple_sections", {"section_spliter": "第", "num_sections": 2}, "第1部分内容 第2部分内容", True),
    ("detectable_format:multiple_sections", {"section_spliter": "第", "num_sections": 2}, "第一部分，第二部分", False),
    # detectable_format:json_format
    ("detectable_format:json_format", {}, '```json\n{"a": 1}\n```', True),
    ("detectable_format:json_format", {}, "{'a': 1}", False),
    ("detectable_format:json_format", {}, '{"名字": "小明"}', True),
    ("detectable_format:json_format", {}, "名字：小明", False),
    # detectable_format:title: << >> or 《》
    ("detectable_format:title", {}, "<<My Title>>\nText", True),
    ("detectable_format:title", {}, "My Title", False),
    ("detectable_format:title", {}, "《静夜思》\n床前明月光", True),
    ("detectable_format:title", {}, "静夜思", False),
    ("detectable_format:title", {}, "《 》空标题", False),
    # combination:two_responses
    ("combination:two_responses", {}, "Answer one.\n******\nAnswer two.", True),
    ("combination:two_responses", {}, "Same.\n******\nSame.", False),
    ("combination:two_responses", {}, "第一个回答。\n******\n第二个回答。", True),
    ("combination:two_responses", {}, "只有一个回答。", False),
    # combination:repeat_prompt: case-insensitive prefix
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a poem about cats."},
     "WRITE A POEM ABOUT CATS. Cats purr.", True),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a poem about cats."}, "Here is a poem.", False),
    ("combination:repeat_prompt", {"prompt_to_repeat": "请写一首关于猫的诗。"}, "请写一首关于猫的诗。猫咪很可爱。", True),
    ("combination:repeat_prompt", {"prompt_to_repeat": "请写一首关于猫的诗。"}, "猫咪很可爱。", False),
    # startend:end_checker: punctuation (English and Chinese) removed everywhere before endswith
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, "Thanks. Any other questions?", True),
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, "Thanks. any other questions!!!", True),
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, '"Thanks. Any other, questions"', True),
    ("startend:end_checker", {"end_phrase": "Any other questions?"}, "Any other questions? Thanks.", False),
    ("startend:end_checker", {"end_phrase": "还有其他问题吗？"}, "谢谢。还有其他问题吗？", True),
    ("startend:end_checker", {"end_phrase": "还有其他问题吗？"}, "谢谢。还有其他问题吗", True),
    ("startend:end_checker", {"end_phrase": "还有其他问题吗？"}, "还有其他问题吗？谢谢", False),
    # change_case:capital_word_frequency: nltk tokens that are isupper()
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": AT_LEAST},
     "THIS is VERY good", True),
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": AT_LEAST}, "This is good", False),
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": AT_LEAST}, "我爱 NASA 和 FBI", True),
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": AT_LEAST}, "我爱中国", False),
    ("change_case:capital_word_frequency", {"capital_frequency": 1, "capital_relation": LESS_THAN}, "我爱中国", True),
    # change_case:english_capital / english_lowercase: Chinese has no case, so it always fails
    ("change_case:english_capital", {}, "THIS IS AN ENGLISH SENTENCE ABOUT THE WEATHER TODAY.", True),
    ("change_case:english_capital", {}, "This is an English sentence about the weather today.", False),
    ("change_case:english_capital", {}, "今天天气很好。", False),
    ("change_case:english_lowercase", {}, "this is an english sentence about the weather today.", True),
    ("change_case:english_lowercase", {}, "This is an English sentence about the weather today.", False),
    ("change_case:english_lowercase", {}, "今天天气很好。", False),
    # punctuation:no_comma: ASCII and full-width commas; 、 is allowed
    ("punctuation:no_comma", {}, "No commas here.", True),
    ("punctuation:no_comma", {}, "Yes, commas.", False),
    ("punctuation:no_comma", {}, "这里没有逗号。", True),
    ("punctuation:no_comma", {}, "这里，有逗号。", False),
    ("punctuation:no_comma", {}, "列表、顿号、都可以", True),
    # startend:quotation: "..." or “...”, mixed pairs allowed
    ("startend:quotation", {}, '"Hello world"', True),
    ("startend:quotation", {}, 'Hello "world"', False),
    ("startend:quotation", {}, "“你好世界”", True),
    ("startend:quotation", {}, "你好世界", False),
    ("startend:quotation", {}, '“Hello"', True),
    ("startend:quotation", {}, '"', False),
]


def test_cases_cover_every_id_with_pass_and_fail():
    outcomes = {(iid, expected) for iid, _, _, expected in CASES}
    for iid in ifeval_registry.INSTRUCTION_DICT:
        assert (iid, True) in outcomes and (iid, False) in outcomes, iid


@pytest.mark.parametrize("iid, kwargs, response, expected", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_strict(iid, kwargs, response, expected):
    assert strict(iid, kwargs, response) is expected


def test_registry_reuses_lm_eval_classes_where_identical():
    assert set(checkers.INSTRUCTION_DICT) == set(ifeval_registry.INSTRUCTION_DICT)
    assert len(checkers.INSTRUCTION_DICT) == 25
    overridden = {iid for iid, cls in checkers.INSTRUCTION_DICT.items() if cls is not ifeval_registry.INSTRUCTION_DICT[iid]}
    assert overridden == {
        "language:response_language",
        "length_constraints:number_sentences",
        "length_constraints:number_words",
        "length_constraints:nth_paragraph_first_word",
        "keywords:forbidden_words",
        "detectable_content:number_placeholders",
        "detectable_content:postscript",
        "detectable_format:constrained_response",
        "detectable_format:title",
        "startend:end_checker",
        "punctuation:no_comma",
        "startend:quotation",
        "change_case:capital_word_frequency",  # the same check, its token count cached
    }
    for iid in overridden:
        assert issubclass(checkers.INSTRUCTION_DICT[iid], ifeval_registry.INSTRUCTION_DICT[iid])


def test_sib_counting():
    assert checkers.count_words("你好 hello world, 12345!") == 2
    assert checkers.count_words("hello world, 12345!") == 3
    assert checkers.count_words("") == 0
    assert checkers.count_sentences("一。二！三？四；五.六") == 4
    assert checkers.count_sentences("好。！？") == 1
    assert checkers.count_sentences("。！？") == 1  # no ideograph: punkt, one "sentence"
    assert checkers.count_sentences("Hello there. How are you?") == 2


# --- strict vs loose ------------------------------------------------------------------------

LOOSE_CASES = [
    # (id, kwargs, response, strict, loose)
    ("startend:quotation", {}, 'Sure, here it is:\n"Hello world"', False, True),  # first line dropped
    ("startend:end_checker", {"end_phrase": "Any other questions?"},
     "Thanks. Any other questions?\nHope this helps!", False, True),  # last line dropped
    ("detectable_format:json_format", {}, '**{"a": 1}**', False, True),  # * removed
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 1, "nth_paragraph": 1, "first_word": "今天"},
     "**今天**天气很好。", False, True),  # * removed before the CJK prefix compare
    ("detectable_format:title", {}, "Intro\n《静夜思》\nOutro", True, True),
    ("punctuation:no_comma", {}, "a, b", False, False),  # one line: dropping it leaves nothing
    ("punctuation:no_comma", {}, "", False, False),
    ("punctuation:no_comma", {}, "   \n ", False, False),  # blank: never followed, though no comma
    ("detectable_format:number_highlighted_sections", {"num_highlights": 1}, "*one*", True, True),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 1}, "one", False, False),
    ("startend:quotation", {}, '“第一行\n中间\n最后”', True, True),
    ("startend:quotation", {}, '好的：\n“你好”\n希望有帮助', False, True),  # both first and last lines dropped
]


@pytest.mark.parametrize("iid, kwargs, response, expected_strict, expected_loose", LOOSE_CASES)
def test_strict_and_loose(iid, kwargs, response, expected_strict, expected_loose):
    assert strict(iid, kwargs, response) is expected_strict
    assert loose(iid, kwargs, response) is expected_loose


def test_several_instructions_in_one_prompt():
    ids = ["punctuation:no_comma", "detectable_format:title", "length_constraints:number_words"]
    kwargs = [{}, {}, {"num_words": 4, "relation": AT_LEAST}]
    response = "《春，夏》\n春天来了，花开了。"  # a comma on every line: loose cannot drop it
    assert follows(ids, kwargs, response) == ([False, True, True], [False, True, True])
    with pytest.raises(ValueError):
        follows(ids, kwargs[:2], response)


# --- response_language: the zh fix ----------------------------------------------------------


def test_langdetect_is_seeded():
    assert langdetect.DetectorFactory.seed == 0


def test_zh_crashes_upstream_but_not_here():
    with pytest.raises(KeyError):
        ifeval.ResponseLanguageChecker("language:response_language").build_description(language="zh")
    checker = checkers.build_instruction("language:response_language", {"language": "zh"}, PROMPT)
    assert checker.get_instruction_args() == {"language": "zh"}


def test_traditional_chinese_counts_as_zh():
    text = "今天天氣很好，我們一起去公園散步吧。這裡的風景非常漂亮。"
    assert langdetect.detect(text) == "zh-tw"
    assert strict("language:response_language", {"language": "zh"}, text) is True
    assert strict("language:response_language", {"language": "en"}, text) is False


def test_other_languages_still_work():
    french = "Bonjour, je voudrais réserver une table pour deux personnes ce soir, s'il vous plaît."
    assert strict("language:response_language", {"language": "fr"}, french) is True
    assert strict("language:response_language", {"language": "de"}, french) is False


# --- arguments: used as given, drawn, or a crash, as upstream -------------------------------

NO_ARGUMENT_IDS = [
    "detectable_format:constrained_response", "detectable_format:json_format", "detectable_format:title",
    "combination:two_responses", "change_case:english_capital", "change_case:english_lowercase",
    "punctuation:no_comma", "startend:quotation",
]
# IFEval's HF layout: every argument key present, None where unused
ALL_NONE = {
    k: None for k in (
        "capital_frequency", "capital_relation", "end_phrase", "first_word", "forbidden_words", "frequency",
        "keyword", "keywords", "language", "let_frequency", "let_relation", "letter", "nth_paragraph",
        "num_bullets", "num_highlights", "num_paragraphs", "num_placeholders", "num_sections", "num_sentences",
        "num_words", "postscript_marker", "prompt_to_repeat", "relation", "section_spliter",
    )
}


@pytest.mark.parametrize("iid", NO_ARGUMENT_IDS)
def test_ids_without_arguments_build_from_empty_or_null_kwargs(iid):
    for kwargs in ({}, ALL_NONE, {"num_words": 0, "keywords": [], "end_phrase": ""}):
        plan = arguments.plan(iid, kwargs)
        assert plan.drawable == () and plan.present == {}
        assert isinstance(checkers.build_instruction(iid, plan.present, PROMPT), ifeval_registry.INSTRUCTION_DICT[iid])
    with pytest.raises(checkers.CheckerArgumentError, match="num_words"):
        arguments.plan(iid, {"num_words": 5})  # upstream: TypeError, unexpected keyword argument
    with pytest.raises(checkers.CheckerArgumentError, match="not an object"):
        arguments.plan(iid, None)  # upstream: None.items()


def test_null_keys_of_other_ids_are_dropped():
    kwargs = dict(ALL_NONE, num_words=3, relation=AT_LEAST)
    assert strict("length_constraints:number_words", kwargs, "one two three") is True


def test_unknown_id():
    with pytest.raises(checkers.CheckerArgumentError, match="keywords:nonexistent"):
        arguments.plan("keywords:nonexistent", {})
    with pytest.raises(checkers.CheckerArgumentError, match="multi-turn:constrained_start"):
        arguments.plan("multi-turn:constrained_start", {"starter": "I"})


VALID = {
    "keywords:existence": {"keywords": ["cat"]},
    "keywords:frequency": {"keyword": "cat", "frequency": 2, "relation": AT_LEAST},
    "keywords:forbidden_words": {"forbidden_words": ["cat"]},
    "keywords:letter_frequency": {"letter": "a", "let_frequency": 2, "let_relation": AT_LEAST},
    "language:response_language": {"language": "en"},
    "length_constraints:number_sentences": {"num_sentences": 2, "relation": AT_LEAST},
    "length_constraints:number_paragraphs": {"num_paragraphs": 2},
    "length_constraints:number_words": {"num_words": 2, "relation": AT_LEAST},
    "length_constraints:nth_paragraph_first_word": {"num_paragraphs": 3, "nth_paragraph": 2, "first_word": "cat"},
    "detectable_content:number_placeholders": {"num_placeholders": 2},
    "detectable_content:postscript": {"postscript_marker": "P.S."},
    "detectable_format:number_bullet_lists": {"num_bullets": 2},
    "detectable_format:number_highlighted_sections": {"num_highlights": 2},
    "detectable_format:multiple_sections": {"section_spliter": "Section", "num_sections": 2},
    "combination:repeat_prompt": {"prompt_to_repeat": PROMPT},
    "startend:end_checker": {"end_phrase": "The end."},
    "change_case:capital_word_frequency": {"capital_frequency": 2, "capital_relation": AT_LEAST},
}
# (id, argument, value) that upstream replaces with a random draw (missing, falsy, or rejected)
DRAWN_ARGUMENTS = [
    ("keywords:existence", "keywords", None), ("keywords:existence", "keywords", []),
    ("keywords:frequency", "keyword", ""), ("keywords:frequency", "frequency", None),
    ("keywords:frequency", "frequency", 0), ("keywords:frequency", "frequency", -1),
    ("keywords:frequency", "relation", None),
    ("keywords:forbidden_words", "forbidden_words", []), ("keywords:forbidden_words", "forbidden_words", None),
    ("keywords:letter_frequency", "letter", None), ("keywords:letter_frequency", "letter", "ab"),
    ("keywords:letter_frequency", "letter", "1"), ("keywords:letter_frequency", "letter", "é"),
    ("keywords:letter_frequency", "letter", "#"), ("keywords:letter_frequency", "letter", "!"),
    ("keywords:letter_frequency", "let_frequency", -2), ("keywords:letter_frequency", "let_relation", ""),
    ("language:response_language", "language", None),
    ("length_constraints:number_sentences", "num_sentences", None),
    ("length_constraints:number_sentences", "num_sentences", -1),
    ("length_constraints:number_paragraphs", "num_paragraphs", 0),
    ("length_constraints:number_words", "num_words", None), ("length_constraints:number_words", "num_words", -5),
    ("length_constraints:number_words", "relation", None),
    ("length_constraints:nth_paragraph_first_word", "num_paragraphs", None),
    ("length_constraints:nth_paragraph_first_word", "nth_paragraph", None),
    ("length_constraints:nth_paragraph_first_word", "nth_paragraph", 4),
    ("length_constraints:nth_paragraph_first_word", "nth_paragraph", -1),
    ("length_constraints:nth_paragraph_first_word", "first_word", None),
    ("length_constraints:nth_paragraph_first_word", "first_word", ""),
    ("detectable_content:number_placeholders", "num_placeholders", None),
    ("detectable_content:number_placeholders", "num_placeholders", -1),
    ("detectable_content:postscript", "postscript_marker", None),
    ("detectable_format:number_bullet_lists", "num_bullets", 0),
    ("detectable_format:number_highlighted_sections", "num_highlights", None),
    ("detectable_format:multiple_sections", "section_spliter", None),
    ("detectable_format:multiple_sections", "num_sections", -3),
    ("startend:end_checker", "end_phrase", ""), ("startend:end_checker", "end_phrase", None),
    ("change_case:capital_word_frequency", "capital_frequency", None),
    ("change_case:capital_word_frequency", "capital_relation", None),
]
# (id, argument, value) that upstream's code raises on, when building or when checking
CRASHING_ARGUMENTS = [
    ("keywords:existence", "keywords", ["("]), ("keywords:existence", "keywords", [5]),
    ("keywords:frequency", "keyword", 5), ("keywords:frequency", "relation", "more than"),
    ("keywords:forbidden_words", "forbidden_words", [["x"]]),
    ("keywords:letter_frequency", "letter", 5), ("keywords:letter_frequency", "let_relation", "most"),
    ("language:response_language", "language", "xx"), ("language:response_language", "language", "zh-cn"),
    ("length_constraints:number_sentences", "relation", "at most"),
    ("length_constraints:number_paragraphs", "num_paragraphs", "2"),
    ("length_constraints:number_words", "num_words", "10"),
    ("length_constraints:nth_paragraph_first_word", "nth_paragraph", 2.5),
    ("length_constraints:nth_paragraph_first_word", "first_word", 5),
    ("detectable_content:number_placeholders", "num_placeholders", [1]),
    ("detectable_content:postscript", "postscript_marker", 5),
    ("detectable_format:number_bullet_lists", "num_bullets", "3"),
    ("detectable_format:number_highlighted_sections", "num_highlights", "2"),
    ("detectable_format:multiple_sections", "section_spliter", "*"),
    ("detectable_format:multiple_sections", "num_sections", "2"),
    ("combination:repeat_prompt", "prompt_to_repeat", None), ("combination:repeat_prompt", "prompt_to_repeat", 5),
    ("startend:end_checker", "end_phrase", 5),
    ("change_case:capital_word_frequency", "capital_frequency", "3"),
    ("change_case:capital_word_frequency", "capital_relation", "less"),
]


def test_argument_cases_cover_every_id_with_arguments():
    assert {iid for iid, _, _ in DRAWN_ARGUMENTS} == set(VALID) - {"combination:repeat_prompt"}
    assert {iid for iid, _, _ in CRASHING_ARGUMENTS} == set(VALID)
    assert set(VALID) | set(NO_ARGUMENT_IDS) == set(ifeval_registry.INSTRUCTION_DICT)
    assert set(VALID) == set(arguments.ARGUMENTS)


@pytest.mark.parametrize("iid", sorted(VALID))
def test_valid_arguments_are_used_as_given(iid):
    plan = arguments.plan(iid, VALID[iid])
    assert plan.drawable == () and plan.present == VALID[iid]
    assert checkers.build_instruction(iid, plan.present, PROMPT).get_instruction_args()


@pytest.mark.parametrize("iid, name, value", DRAWN_ARGUMENTS)
def test_argument_upstream_draws_is_drawn(iid, name, value):
    assert name in arguments.plan(iid, dict(VALID[iid], **{name: value})).drawable


@pytest.mark.parametrize("iid, name, value", CRASHING_ARGUMENTS)
def test_argument_upstream_crashes_on_is_refused_and_named(iid, name, value):
    with pytest.raises(checkers.CheckerArgumentError) as err:
        arguments.plan(iid, dict(VALID[iid], **{name: value}))
    assert iid in str(err.value) and name in str(err.value)


def test_unexpected_argument_is_refused():
    with pytest.raises(checkers.CheckerArgumentError, match="num_words"):
        arguments.plan("keywords:existence", {"keywords": ["cat"], "num_words": 3})


class _RecordingRandom:
    """Stands in for upstream's global ``random``: draws from a seeded generator and notes that it did."""

    def __init__(self, seed):
        self.generator, self.used = __import__("random").Random(seed), False

    def __getattr__(self, name):
        self.used = True
        return getattr(self.generator, name)


# Candidate values per argument; every combination is tried per id.
_POOLS = {
    "keywords": [None, [], ["cat"], ["cat", "猫"], "cat", ["("], [5]],
    "keyword": [None, "", "cat", " cat ", "(", 5, ["cat"]],
    "forbidden_words": [None, [], ["cat"], "cat", [5], [["x"]]],
    "letter": [None, "", "a", "Z", "ab", "1", "é", " ", "#", "\u212a", "\u0130", 5, ["a"], ["a", "b"]],
    "language": [None, "", "en", "zh", "xx", "zh-cn", ["en"], 5],
    "section_spliter": [None, "", "Section", "  ", "*", "(", 5],
    "relation": [None, "", LESS_THAN, AT_LEAST, "more than", 1],
    "text": [None, "", "cat", "  ", 5, ["cat"]],
    "number": [None, 0, -1, 1, 3, 2.5, True, "3", ""],
    "nth_paragraph": [None, 0, -1, 1, 2, 3, 4, 2.5, True, "2"],
}
_POOL_OF = {
    "relation": "relation", "let_relation": "relation", "capital_relation": "relation",
    "first_word": "text", "postscript_marker": "text", "prompt_to_repeat": "text", "end_phrase": "text",
}
_PROBES = ("Hello world. *hi* [x] P.S. yes\n\nSecond, para.\n\nThird\n\nFourth\n\nFifth", "你好。世界")


def _upstream_build(iid, kwargs):
    """Upstream's checker: IFEval's build (lm-eval's, line for line SIB's) with SIB's check (ours)."""
    if kwargs.get("language") == "zh":  # upstream raises KeyError here; our fix builds it
        return checkers.build_instruction(iid, kwargs, PROMPT)
    built = ifeval_registry.INSTRUCTION_DICT[iid](iid)
    built.build_description(**kwargs)
    instruction = checkers.INSTRUCTION_DICT[iid](iid)
    instruction.__dict__.update(built.__dict__)
    if iid == "detectable_format:constrained_response":  # SIB's option list has the Chinese answers
        instruction.build_description()
    return instruction


def _upstream(iid, kwargs, monkeypatch):
    """(crashes for some draw, draws at all) when upstream builds and checks with these arguments."""
    crashed, drew = False, False
    for seed in range(12):  # num_paragraphs draws decide whether a later nth_paragraph crashes
        recorder = _RecordingRandom(seed)
        monkeypatch.setattr(ifeval, "random", recorder)
        monkeypatch.setattr(ifeval_util, "random", recorder)
        try:
            instruction = _upstream_build(iid, {k: v for k, v in kwargs.items() if v})
            for probe in _PROBES:
                instruction.check_following(probe)
        except Exception:
            crashed = True
        drew = drew or recorder.used
    return crashed, drew


@pytest.mark.filterwarnings("ignore:randrange:DeprecationWarning")  # upstream's randint(1, True + 1)
@pytest.mark.parametrize("iid", sorted(VALID))
def test_plans_match_upstream_draws_and_crashes(iid, monkeypatch):
    names = list(VALID[iid])
    pools = [_POOLS.get(name) or _POOLS[_POOL_OF.get(name, "number")] for name in names]
    seen = set()
    for values in itertools.product(*pools):
        kwargs = dict(zip(names, values))
        try:
            ours = (False, bool(arguments.plan(iid, kwargs).drawable))
        except checkers.CheckerArgumentError:
            ours = (True, None)
        crashed, drew = _upstream(iid, kwargs, monkeypatch)
        assert ours == ((True, None) if crashed else (False, drew)), kwargs
        seen.add(ours)
    assert len(seen) == (2 if iid == "combination:repeat_prompt" else 3), seen  # given, drawn and crash all occur


# --- lm-eval's IFEval stays as it was -------------------------------------------------------


def test_lm_eval_ifeval_behaviour_is_untouched():
    assert ifeval_registry.INSTRUCTION_DICT["keywords:forbidden_words"] is ifeval.ForbiddenWords
    forbidden = ifeval.ForbiddenWords("keywords:forbidden_words")
    forbidden.build_description(forbidden_words=["cat"])
    assert forbidden.check_following("A category of items.") is True
    assert ifeval_util.count_words("你好世界 hello") == 2
    assert checkers.count_words("你好世界 hello") == 4
    words = ifeval.NumberOfWords("length_constraints:number_words")
    words.build_description(num_words=3, relation=AT_LEAST)
    assert words.check_following("你好世界 hello") is False
    assert strict("length_constraints:number_words", {"num_words": 3, "relation": AT_LEAST}, "你好世界 hello") is True
    comma = ifeval.CommaChecker("punctuation:no_comma")
    comma.build_description()
    assert comma.check_following("这里，有逗号。") is True
    constrained = ifeval.ConstrainedResponseChecker("detectable_format:constrained_response")
    constrained.build_description()
    assert constrained.check_following("我的答案是是的。") is False
    assert ifeval._CONSTRAINED_RESPONSE_OPTIONS == ("My answer is yes.", "My answer is no.", "My answer is maybe.")


def test_missing_punkt_refuses_to_start(monkeypatch):
    import nltk

    def not_found(resource, *args, **kwargs):
        raise LookupError(resource)

    monkeypatch.setattr(nltk.data, "find", not_found)
    monkeypatch.setattr(nltk, "download", lambda *a, **k: pytest.fail("nltk.download called"))
    spec = importlib.util.spec_from_file_location("_sib_checkers_copy", checkers.__file__)
    with pytest.raises(RuntimeError, match="lm-eval-speech setup") as err:
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    assert "NLTK_DATA" in str(err.value)
