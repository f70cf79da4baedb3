"""SpeechInstructBench closed-ended instruction checkers (SpeechInstructBench @34f7681, ``evaluator/``).

SIB's checkers are Google's IFEval checkers (Apache-2.0) with Chinese-aware changes, so this module
reuses lm-eval's IFEval classes and subclasses only those SIB changed: ``number_words`` and
``number_sentences`` (SIB counting: with any CJK ideograph U+4E00–U+9FFF present, words are the
ideographs and sentences are split on ``！？。`` only), ``forbidden_words`` (escaped ``\\b`` match
or plain substring), ``nth_paragraph_first_word`` (CJK prefix compare, CJK punctuation),
``number_placeholders`` (``【】``), ``postscript`` (any P.S./P.P.S./PS counts),
``constrained_response`` (Chinese options), ``title`` (``《》``), ``end_checker`` (punctuation,
incl. Chinese, ignored), ``no_comma`` (``，``) and ``quotation`` (``“”``); plus one fix of our own:
``response_language`` accepts ``"zh"`` (a KeyError upstream) and counts langdetect's
``zh-cn``/``zh-tw`` as ``zh``. Arguments that would make upstream draw random values or crash are
rejected with :class:`CheckerArgumentError`.
"""

from __future__ import annotations

import logging
import re
import string

import langdetect

from lm_eval_speech.nltk_data import require_punkt

# lm-eval's instructions_util downloads punkt_tab on import when it is missing; never do that.
require_punkt()

from lm_eval.tasks.ifeval import instructions as _ifeval  # noqa: E402
from lm_eval.tasks.ifeval import instructions_registry as _registry  # noqa: E402
from lm_eval.tasks.ifeval import instructions_util as _util  # noqa: E402

# langdetect samples randomly unless seeded, so the same response could pass or fail between runs
# (upstream never seeds it). The seed is process-wide; seeded results are order-independent.
langdetect.DetectorFactory.seed = 0

logger = logging.getLogger(__name__)

_CJK = re.compile("[\u4e00-\u9fff]")
_LESS_THAN, _AT_LEAST = _ifeval._COMPARISON_RELATION


def count_words(text: str) -> int:
    """SIB word count: CJK ideographs if the text has any (other words ignored), else IFEval's."""
    ideographs = len(_CJK.findall(text))
    return ideographs if ideographs else _util.count_words(text)


def count_sentences(text: str) -> int:
    """SIB sentence count: with CJK, non-blank pieces between ``！？。``; else IFEval's punkt."""
    if _CJK.search(text):
        return sum(1 for piece in re.split("[！？。]", text) if piece.strip())
    return _util.count_sentences(text)


def _compare(actual, relation, threshold) -> bool:
    return actual < threshold if relation == _LESS_THAN else actual >= threshold


class NumberOfSentences(_ifeval.NumberOfSentences):
    def check_following(self, value):
        return _compare(count_sentences(value), self._comparison_relation, self._num_sentences_threshold)


class NumberOfWords(_ifeval.NumberOfWords):
    def check_following(self, value):
        return _compare(count_words(value), self._comparison_relation, self._num_words)


class ForbiddenWords(_ifeval.ForbiddenWords):
    def check_following(self, value):
        # SIB adds the substring test for Chinese; it also catches English words inside longer ones.
        return not any(
            re.search(r"\b" + re.escape(word) + r"\b", value, flags=re.IGNORECASE) or word in value
            for word in self._forbidden_words
        )


class ParagraphFirstWordCheck(_ifeval.ParagraphFirstWordCheck):
    _PUNCTUATION = frozenset(".,?!'\"。，？！‘“”")

    def check_following(self, value):
        paragraphs = value.split("\n\n")
        num_paragraphs = sum(1 for p in paragraphs if p.strip())
        if self._nth_paragraph > num_paragraphs:
            return False
        paragraph = paragraphs[self._nth_paragraph - 1].strip()
        if not paragraph:
            return False
        if _CJK.search(paragraph):
            # Case-sensitive prefix of the same length (the expected word is lowercased at build).
            first_word = paragraph[: len(self._first_word)]
        else:
            word = paragraph.split()[0].lstrip("'").lstrip('"')
            first_word = ""
            for char in word:
                if char in self._PUNCTUATION:
                    break
                first_word += char.lower()  # per character, as upstream (str.lower differs for final sigma)
        return num_paragraphs == self._num_paragraphs and first_word == self._first_word


class PlaceholderChecker(_ifeval.PlaceholderChecker):
    def check_following(self, value):
        return len(re.findall(r"[\[【].*?[\]】]", value)) >= self._num_placeholders


class PostscriptChecker(_ifeval.PostscriptChecker):
    # Whatever marker was asked for, any PS / P.S. / P.P.S. counts.
    _COMMON_PATTERNS = (r"\bps\b.*$", r"\bp\.\s*s\..*$", r"\bp\.\s?p\.\s*s\..*$")

    def check_following(self, value):
        value = value.lower()
        marker_pattern = r"\b" + re.escape(self._postscript_marker.lower()) + r"\b.*$"
        return any(re.search(p, value, flags=re.MULTILINE) for p in (*self._COMMON_PATTERNS, marker_pattern))


class ConstrainedResponseChecker(_ifeval.ConstrainedResponseChecker):
    _CHINESE_OPTIONS = ("我的答案是是的。", "我的答案是不是。", "我的答案是可能。")

    def build_description(self):
        super().build_description()
        self._constrained_responses = (*self._constrained_responses, *self._CHINESE_OPTIONS)
        return self._description_pattern.format(response_options=self._constrained_responses)


class TitleChecker(_ifeval.TitleChecker):
    def check_following(self, value):
        return super().check_following(value.replace("《", "<<").replace("》", ">>"))


class EndChecker(_ifeval.EndChecker):
    # Punctuation is deleted everywhere (not only at the end) before comparing.
    _DELETE_PUNCTUATION = str.maketrans("", "", string.punctuation + "，。！？；：“”‘’（）—【】《》〈〉、·")

    def _clean(self, text):
        return text.strip().lower().translate(self._DELETE_PUNCTUATION)

    def check_following(self, value):
        return self._clean(value).endswith(self._clean(self._end_phrase))


class CommaChecker(_ifeval.CommaChecker):
    def check_following(self, value):
        return "," not in value and "，" not in value


class QuotationChecker(_ifeval.QuotationChecker):
    def check_following(self, value):
        value = value.strip()
        return len(value) > 1 and value[0] in '"“' and value[-1] in '"”'


class ResponseLanguageChecker(_ifeval.ResponseLanguageChecker):
    # Our fix: upstream cannot build "zh" (KeyError), and langdetect reports Chinese as zh-cn/zh-tw.
    _DETECTED_AS = {"zh-cn": "zh", "zh-tw": "zh"}

    def build_description(self, *, language=None):
        if language != "zh":
            return super().build_description(language=language)
        self._language = language
        self._description_pattern = (
            "Your ENTIRE response should be in {language} language, no other language is allowed."
        )
        return self._description_pattern.format(language="Chinese")

    def check_following(self, value):
        try:
            detected = langdetect.detect(value)
        except langdetect.LangDetectException as err:
            logger.warning("Unable to detect language for text %r (%s); counted as followed", value, err)
            return True
        return self._DETECTED_AS.get(detected, detected) == self._language


_OVERRIDES = {
    "language:response_language": ResponseLanguageChecker,
    "length_constraints:number_sentences": NumberOfSentences,
    "length_constraints:number_words": NumberOfWords,
    "length_constraints:nth_paragraph_first_word": ParagraphFirstWordCheck,
    "keywords:forbidden_words": ForbiddenWords,
    "detectable_content:number_placeholders": PlaceholderChecker,
    "detectable_content:postscript": PostscriptChecker,
    "detectable_format:constrained_response": ConstrainedResponseChecker,
    "detectable_format:title": TitleChecker,
    "startend:end_checker": EndChecker,
    "punctuation:no_comma": CommaChecker,
    "startend:quotation": QuotationChecker,
}
INSTRUCTION_DICT: dict[str, type] = {
    iid: _OVERRIDES.get(iid, cls) for iid, cls in _registry.INSTRUCTION_DICT.items()
}


class CheckerArgumentError(ValueError):
    """An instruction id or argument that upstream would replace by a random value, or crash on."""


# Arguments each id accepts, each with a test that holds where upstream uses the value as given
# (a missing argument, or one failing its test, is drawn at random upstream, or crashes it when
# building or checking). Order matters: nth_paragraph is compared with num_paragraphs.
def _non_negative(value, _):
    return value >= 0


def _number(value, _):
    return isinstance(value >= 0, bool)  # capital_frequency: upstream takes any number, even < 0


def _relation(value, _):
    return value in (_LESS_THAN, _AT_LEAST)


def _text(value, _):
    return isinstance(value, str)


def _texts(value, _):
    return all(isinstance(item, str) for item in value)


def _regexes(value, _):
    return all(isinstance(k, str) and re.compile(k) for k in sorted(value))  # searched as regexes


_ARGUMENTS = {
    "keywords:existence": {"keywords": _regexes},
    "keywords:frequency": {
        "keyword": lambda v, _: _regexes([v.strip()], _),
        "frequency": _non_negative,
        "relation": _relation,
    },
    "keywords:forbidden_words": {"forbidden_words": _texts},
    "keywords:letter_frequency": {
        "letter": lambda v, _: len(v) == 1 and 97 <= ord(v.lower()) <= 122,
        "let_frequency": _non_negative,
        "let_relation": _relation,
    },
    "language:response_language": {"language": lambda v, _: v == "zh" or v in _util.LANGUAGE_CODES},
    "length_constraints:number_sentences": {"num_sentences": _non_negative, "relation": _relation},
    "length_constraints:number_paragraphs": {"num_paragraphs": _non_negative},
    "length_constraints:number_words": {"num_words": _non_negative, "relation": _relation},
    "length_constraints:nth_paragraph_first_word": {
        "num_paragraphs": _non_negative,
        "nth_paragraph": lambda v, kw: isinstance(v, int) and 0 < v <= kw["num_paragraphs"],
        "first_word": _text,
    },
    "detectable_content:number_placeholders": {"num_placeholders": _non_negative},
    "detectable_content:postscript": {"postscript_marker": _text},
    "detectable_format:number_bullet_lists": {"num_bullets": _non_negative},
    "detectable_format:number_highlighted_sections": {"num_highlights": _non_negative},
    "detectable_format:multiple_sections": {
        "section_spliter": lambda v, _: _regexes([r"\s?" + v.strip() + r"\s?\d+\s?"], _),
        "num_sections": _non_negative,
    },
    "combination:repeat_prompt": {"prompt_to_repeat": _text},
    "startend:end_checker": {"end_phrase": _text},
    "change_case:capital_word_frequency": {"capital_frequency": _number, "capital_relation": _relation},
}


def _check_arguments(instruction_id: str, kwargs: dict) -> None:
    accepted = _ARGUMENTS.get(instruction_id, {})
    for name in kwargs:
        if name not in accepted:
            raise CheckerArgumentError(f"{instruction_id}: unexpected argument {name!r}")
    for name, holds in accepted.items():
        if name not in kwargs:
            raise CheckerArgumentError(
                f"{instruction_id}: argument {name!r} is missing, null or falsy (upstream would pick a random value)"
            )
        try:
            valid = holds(kwargs[name], kwargs)
        except Exception:  # e.g. a wrong type, which upstream would crash on
            valid = False
        if not valid:
            raise CheckerArgumentError(
                f"{instruction_id}: argument {name}={kwargs[name]!r} is invalid "
                "(upstream would pick a random value or fail)"
            )


def build_instruction(instruction_id: str, kwargs: dict | None, prompt: str):
    """Build one checker as SIB's evaluator does, refusing arguments it would randomise or crash on."""
    if instruction_id not in INSTRUCTION_DICT:
        raise CheckerArgumentError(f"unknown instruction id {instruction_id!r}")
    # As upstream: drop every falsy value (None, 0, "", []), so a 0 counts as missing.
    kwargs = {k: v for k, v in (kwargs or {}).items() if v}
    _check_arguments(instruction_id, kwargs)
    instruction = INSTRUCTION_DICT[instruction_id](instruction_id)
    try:
        instruction.build_description(**kwargs)
        args = instruction.get_instruction_args()
        if args and "prompt" in args:
            instruction.build_description(prompt=prompt)
    except Exception as err:
        raise CheckerArgumentError(f"{instruction_id}: cannot build with arguments {kwargs!r}: {err!r}") from err
    return instruction


def _build_all(instruction_ids, kwargs_list, prompt):
    return [build_instruction(i, k, prompt) for i, k in zip(instruction_ids, kwargs_list, strict=True)]


def _strict(checkers, response) -> list[bool]:
    return [bool(response.strip() and c.check_following(response)) for c in checkers]


def _loose(checkers, response) -> list[bool]:
    lines = response.split("\n")
    trimmed = ["\n".join(lines[1:]).strip(), "\n".join(lines[:-1]).strip(), "\n".join(lines[1:-1]).strip()]
    variants = [response, response.replace("*", ""), *trimmed, *(t.replace("*", "") for t in trimmed)]
    return [any(v.strip() and c.check_following(v) for v in variants) for c in checkers]


def follows_strict(instruction_ids, kwargs_list, prompt, response) -> list[bool]:
    """IFEval/SIB strict: a blank response fails, else each checker on the response as is."""
    return _strict(_build_all(instruction_ids, kwargs_list, prompt), response)


def follows_loose(instruction_ids, kwargs_list, prompt, response) -> list[bool]:
    """IFEval/SIB loose: followed if any of 8 variants (first/last line dropped, ``*`` removed) passes."""
    return _loose(_build_all(instruction_ids, kwargs_list, prompt), response)


def follows(instruction_ids, kwargs_list, prompt, response) -> tuple[list[bool], list[bool]]:
    """Strict and loose verdicts together, each checker built once (its checks keep no state)."""
    checkers = _build_all(instruction_ids, kwargs_list, prompt)
    return _strict(checkers, response), _loose(checkers, response)
