"""A response that could not be produced, and how tasks count it.

A model (or the ``responses`` replay) returns :class:`FailedGeneration` in place of an answer
when a call failed for good. Tasks then leave that item out of every score and count it in
their ``failed_items`` metric: a failure is never scored as a wrong answer or dropped unseen.
"""

from __future__ import annotations


class FailedGeneration(str):
    """An empty response that carries the reason it failed."""

    reason: str

    def __new__(cls, reason: str) -> FailedGeneration:
        response = super().__new__(cls, "")
        response.reason = str(reason)
        return response

    def __reduce__(self):
        return (FailedGeneration, (self.reason,))

    def __repr__(self) -> str:
        return f"FailedGeneration({self.reason!r})"


def is_failure(response: object) -> bool:
    return isinstance(response, FailedGeneration)


def total(items: list) -> int:
    """Aggregation for count metrics such as ``failed_items``."""
    return int(sum(items))
