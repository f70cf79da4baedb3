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
``zh-cn``/``zh-tw`` as ``zh``. What upstream does with each argument (use, draw, crash) is
``arguments.py``; checkers here are built from complete arguments only.
"""

from __future__ import annotations

import functools
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


# The text statistics are cached: the bounds of a drawn argument check one response many times.
@functools.lru_cache(maxsize=1024)
def count_words(text: str) -> int:
    """SIB word count: CJK ideographs if the text has any (other words ignored), else IFEval's."""
    ideographs = len(_CJK.findall(text))
    return ideographs if ideographs else _util.count_words(text)


@functools.lru_cache(maxsize=1024)
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


@functools.lru_cache(maxsize=1024)
def count_capital_words(text: str) -> int:
    """IFEval's: nltk tokens that are all upper case (hyphenated words count once)."""
    return sum(1 for word in _util.nltk.word_tokenize(text) if word.isupper())


@functools.lru_cache(maxsize=1024)
def detect_language(text: str) -> str | None:
    """langdetect's answer (seeded, so the same for the same text); None when it cannot tell."""
    try:
        return langdetect.detect(text)
    except langdetect.LangDetectException as err:
        logger.warning("Unable to detect language for text %r (%s); counted as followed", text, err)
        return None


class CapitalWordFrequencyChecker(_ifeval.CapitalWordFrequencyChecker):
    def check_following(self, value):
        return _compare(count_capital_words(value), self._comparison_relation, self._frequency)


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

    def build_description(self, num_paragraphs=None, nth_paragraph=None, first_word=None):
        # Upstream's own draw can give nth_paragraph = num_paragraphs + 1 (never followed). Passed in,
        # the builder would take it for invalid and draw again: build with paragraph 1, then set it.
        beyond = isinstance(num_paragraphs, int) and nth_paragraph == num_paragraphs + 1
        description = super().build_description(num_paragraphs, 1 if beyond else nth_paragraph, first_word)
        if not beyond:
            return description
        self._nth_paragraph = nth_paragraph
        return self._description_pattern.format(
            num_paragraphs=self._num_paragraphs, nth_paragraph=nth_paragraph, first_word=self._first_word
        )

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
        detected = detect_language(value)
        if detected is None:
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
    "change_case:capital_word_frequency": CapitalWordFrequencyChecker,
}
INSTRUCTION_DICT: dict[str, type] = {
    iid: _OVERRIDES.get(iid, cls) for iid, cls in _registry.INSTRUCTION_DICT.items()
}


class CheckerArgumentError(ValueError):
    """An instruction id or argument that upstream's code crashes on (see ``arguments.py``)."""


def build_instruction(instruction_id: str, kwargs: dict, prompt: str):
    """Build one checker as SIB's ``close.py`` does, from complete arguments: the given ones after
    the falsy-drop, plus drawn ones where upstream draws (``arguments.plan`` / ``arguments.draw``)."""
    if instruction_id not in INSTRUCTION_DICT:
        raise CheckerArgumentError(f"unknown instruction id {instruction_id!r}")
    instruction = INSTRUCTION_DICT[instruction_id](instruction_id)
    instruction.build_description(**kwargs)
    args = instruction.get_instruction_args()
    if args and "prompt" in args:
        instruction.build_description(prompt=prompt)
    return instruction


def strict_verdict(checker, response: str) -> bool:
    """IFEval/SIB strict: a blank response fails, else the checker on the response as is."""
    return bool(response.strip() and checker.check_following(response))


def loose_variants(response: str) -> list[str]:
    """IFEval/SIB loose: the response, without ``*``, without its first/last/both lines, and those without ``*``."""
    lines = response.split("\n")
    trimmed = ["\n".join(lines[1:]).strip(), "\n".join(lines[:-1]).strip(), "\n".join(lines[1:-1]).strip()]
    return [response, response.replace("*", ""), *trimmed, *(t.replace("*", "") for t in trimmed)]


def loose_verdict(checker, variants: list[str]) -> bool:
    return any(v.strip() and checker.check_following(v) for v in variants)
