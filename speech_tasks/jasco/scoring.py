"""JASCO's judge-output parsing and metrics, as ``evaluation/eval.py``'s ``stats`` (spec §2.5).

Orientation: substring tests in the authors' order; when none matches, the judge is re-asked
(``REASK_PROMPT``) and its answer tested for bare labels. Rating: every line holding
``"Rating: "`` is read, the last wins, and "0" is tested before "1" and "2" (so "Rating: 2 (0-2)"
reads 0, as upstream). A row earns its rating only when the orientation is Good (both modalities).

A judge answer without any rating line (``missing_rating``, FIDELITY.md #19): upstream's loop
keeps the variable ``score`` of the previous row it read (clips by ascending id, then prompt), so a
Good row scores the previous row's rating (``PREVIOUS_ROW``, the default, as the published
numbers); ``UNSCORED`` leaves it out of its clip's best instead. Where no earlier row has a rating,
upstream raises ``NameError``; here that row is unscored under either reading.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from lm_eval_speech.calls.caller import rewritten

AUDIO, SPEECH, GOOD, NEITHER, UNKNOWN = "A", "S", "G", "N", "?"
ORIENTATION_MARKERS = (
    (NEITHER, ("Orientation: Neither", "Orientation: \nNeither")),
    (AUDIO, ("Orientation: Audio-Oriented", "Orientation: \nAudio-Oriented")),
    (SPEECH, ("Orientation: Speech-Oriented", "Orientation: \nSpeech-Oriented")),
    (GOOD, ("Orientation: Good", "Orientation: \nGood", "Orientation: Both")),
)
REASK_LABELS = ((NEITHER, "Neither"), (AUDIO, "Audio-Oriented"), (SPEECH, "Speech-Oriented"), (GOOD, "Good"))

# How a Good row without a rating line is read (--metadata missing_rating).
PREVIOUS_ROW, UNSCORED = "previous_row", "unscored"
MISSING_RATING_READINGS = (PREVIOUS_ROW, UNSCORED)


# For judges with ``constrained: true``: the authors' four answer fields as JSON, written back out
# in their format (in_authors_format) so that their parser reads it unchanged.
JUDGE_SCHEMA = {
    "type": "object",
    "properties": {
        "explanation1": {"type": "string", "maxLength": 600},
        "rating": {"enum": [0, 1, 2]},
        "explanation2": {"type": "string", "maxLength": 600},
        "orientation": {"enum": ["Audio-Oriented", "Speech-Oriented", "Good", "Neither"]},
    },
    "required": ["explanation1", "rating", "explanation2", "orientation"],
    "additionalProperties": False,
}


def in_authors_format(output):
    """A constrained judge's JSON answer as the lines eval.py reads; other outputs as they are."""
    return rewritten(output, lambda answer: (
        f"Explanation1: {answer['explanation1']}\nRating: {answer['rating']}\n"
        f"Explanation2: {answer['explanation2']}\nOrientation: {answer['orientation']}"
    ))


def orientation_of(response: str) -> str | None:
    """A/S/G/N from the judge's answer; None when it names none (upstream then re-asks)."""
    for label, markers in ORIENTATION_MARKERS:
        if any(marker in response for marker in markers):
            return label
    return None


def reask_explanation(response: str) -> str:
    return response.split("Explanation2: ")[-1]


def orientation_of_reask(answer: str) -> str:
    for label, word in REASK_LABELS:
        if word in answer:
            return label
    return UNKNOWN


def rating_of(response: str) -> int | None:
    """The last ``Rating: `` line's score (0 checked first); None when no line holds one."""
    score = None
    for line in response.split("\n"):
        if "Rating: " in line:
            score = 0 if "0" in line else 1 if "1" in line else 2 if "2" in line else 0
    return score


@dataclass(frozen=True)
class JudgedRow:
    """One (clip, prompt) row as one judge saw it."""

    clip: str
    prompt: int  # the prompt's index, 0-7: example.csv's order within a clip
    orientation: str | None  # None: the judge call (or its re-ask) failed
    rating: int | None  # None: no rating line in the judge's answer
    previous_rating: int | None = None  # the last rating read before this row, in upstream's order (see in_upstream_order)

    @property
    def failed(self) -> bool:
        return self.orientation is None

    @property
    def unparsed(self) -> bool:
        """No usable orientation even after the re-ask, or Good without a rating line (whatever the reading)."""
        return self.orientation == UNKNOWN or (self.orientation == GOOD and self.rating is None)

    @property
    def carried(self) -> bool:
        """A Good row without a rating that upstream scores with the previous row's rating."""
        return self.orientation == GOOD and self.rating is None and self.previous_rating is not None

    def score(self, reading: str) -> int | None:
        """Credit only for Good rows; None when the row cannot be scored (failed, or Good without a rating to use)."""
        if self.failed:
            return None
        if self.orientation != GOOD:
            return 0
        if self.rating is None and reading == PREVIOUS_ROW:
            return self.previous_rating
        return self.rating


def in_upstream_order(rows: list[JudgedRow]) -> list[JudgedRow]:
    """One judge's rows in eval.py's loop order (clip id ascending as a number, then prompt), each with
    the rating last read before it.

    Every row with a judge answer is read: a failed re-ask keeps the first answer's rating line, as
    upstream would have read it. Rows without an answer (model or judge call failed) hold no rating
    and so pass the previous one on unchanged, as if absent.
    """
    ordered, previous = [], None
    for row in sorted(rows, key=lambda row: (int(row.clip), row.prompt)):
        ordered.append(replace(row, previous_rating=previous))
        if row.rating is not None:
            previous = row.rating
    return ordered


def best_mean(rows: list[JudgedRow], reading: str) -> tuple[float | None, int]:
    """(mean over clips of each clip's best row score, clips counted); rows without a score are left out."""
    best: dict[str, int] = {}
    for row in in_upstream_order(rows):
        score = row.score(reading)
        if score is not None:
            best[row.clip] = max(best.get(row.clip, 0), score)
    if not best:
        return None, 0
    return sum(best.values()) / len(best), len(best)


def carried_rows(rows: list[JudgedRow]) -> int:
    """Good rows without a rating that upstream's reading scores with the previous row's rating."""
    return sum(row.carried for row in in_upstream_order(rows))


def dependence(rows: list[JudgedRow]) -> dict[str, float | None]:
    """Audio / Both / Speech shares over rows oriented A, G or S (Neither and unparsed excluded)."""
    counts = {label: sum(1 for row in rows if row.orientation == label) for label in (AUDIO, GOOD, SPEECH)}
    total = sum(counts.values())
    keys = {AUDIO: "audio_dependence", GOOD: "both_dependence", SPEECH: "speech_dependence"}
    return {keys[label]: (counts[label] / total if total else None) for label in keys}
