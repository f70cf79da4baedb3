"""JASCO's judge-output parsing and metrics, as ``evaluation/eval.py``'s ``stats`` (spec §2.5).

Orientation: substring tests in the authors' order; when none matches, the judge is re-asked
(``REASK_PROMPT``) and its answer tested for bare labels. Rating: every line holding
``"Rating: "`` is read, the last wins, and "0" is tested before "1" and "2" (so "Rating: 2 (0-2)"
reads 0, as upstream). A row earns its rating only when the orientation is Good (both modalities).

Fixed here (FIDELITY.md): a Good row without any rating line reused the previous row's rating
upstream; here it is a parse failure and is left out of its clip's best.
"""

from __future__ import annotations

from dataclasses import dataclass

AUDIO, SPEECH, GOOD, NEITHER, UNKNOWN = "A", "S", "G", "N", "?"
ORIENTATION_MARKERS = (
    (NEITHER, ("Orientation: Neither", "Orientation: \nNeither")),
    (AUDIO, ("Orientation: Audio-Oriented", "Orientation: \nAudio-Oriented")),
    (SPEECH, ("Orientation: Speech-Oriented", "Orientation: \nSpeech-Oriented")),
    (GOOD, ("Orientation: Good", "Orientation: \nGood", "Orientation: Both")),
)
REASK_LABELS = ((NEITHER, "Neither"), (AUDIO, "Audio-Oriented"), (SPEECH, "Speech-Oriented"), (GOOD, "Good"))


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
    orientation: str | None  # None: the judge call failed
    rating: int | None

    @property
    def failed(self) -> bool:
        return self.orientation is None

    @property
    def unparsed(self) -> bool:
        return self.orientation == UNKNOWN or (self.orientation == GOOD and self.rating is None)

    @property
    def score(self) -> int | None:
        """Credit only for Good rows; None when the row cannot be scored (failed, or Good without a rating)."""
        if self.failed or (self.orientation == GOOD and self.rating is None):
            return None
        return self.rating if self.orientation == GOOD else 0


def best_mean(rows: list[JudgedRow]) -> tuple[float | None, int]:
    """(mean over clips of each clip's best row score, clips counted); rows without a score are left out."""
    best: dict[str, int] = {}
    for row in rows:
        if row.score is not None:
            best[row.clip] = max(best.get(row.clip, 0), row.score)
    if not best:
        return None, 0
    return sum(best.values()) / len(best), len(best)


def dependence(rows: list[JudgedRow]) -> dict[str, float | None]:
    """Audio / Both / Speech shares over rows oriented A, G or S (Neither and unparsed excluded)."""
    counts = {label: sum(1 for row in rows if row.orientation == label) for label in (AUDIO, GOOD, SPEECH)}
    total = sum(counts.values())
    keys = {AUDIO: "audio_dependence", GOOD: "both_dependence", SPEECH: "speech_dependence"}
    return {keys[label]: (counts[label] / total if total else None) for label in keys}
